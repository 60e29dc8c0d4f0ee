//! One module per command.

mod backup;
mod bench_download;
mod demo;
mod export;
pub(crate) mod integration;
mod intel;
mod serve;
mod sim;
mod sla;
mod sync;
mod user;
mod webhook;
pub(crate) mod workspace;

pub use serve::load_tls;

use std::process::ExitCode;

use crate::cli::{Cli, Command, ConfigCommand};
use crate::config::ConfigContext;

pub async fn run(cli: Cli, config: &ConfigContext) -> anyhow::Result<ExitCode> {
    let global = &cli.global;
    match cli.command {
        Command::Demo(args) => demo::run(global, args).await,
        Command::Sim(args) => sim::run(args).await,
        Command::Integration(command) => integration::run(global, command).await,
        Command::Sync(args) => sync::run(global, args).await,
        Command::Export(args) => export::run(global, args).await,
        Command::Serve(args) => serve::run(global, args).await,
        Command::User(command) => user::run(global, command).await,
        Command::Workspace(command) => workspace::run(global, command).await,
        Command::Webhook(command) => webhook::run(global, command).await,
        Command::Sla(command) => sla::run(global, command).await,
        Command::Backup(args) => backup::backup(global, args).await,
        Command::Restore(args) => backup::restore(global, args).await,
        Command::Intel(command) => intel::run(global, command).await,
        Command::Config(ConfigCommand::Check) => {
            print!("{}", crate::config::effective(global, config)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::BenchDownload(args) => bench_download::run(args).await,
    }
}
