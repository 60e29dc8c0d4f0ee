//! One module per command.

mod demo;
mod export;
pub(crate) mod integration;
mod sim;
mod sync;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::output::usage;

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = &cli.global;
    match cli.command {
        Command::Demo(args) => demo::run(global, args).await,
        Command::Sim(args) => sim::run(args).await,
        Command::Integration(command) => integration::run(global, command).await,
        Command::Sync(args) => sync::run(global, args).await,
        Command::Export(args) => export::run(global, args).await,
        Command::Serve(_) | Command::User(_) => Err(usage(
            "the portal (rampart serve, rampart user) is not part of this build yet; use the CLI: integration, sync, export",
        )),
    }
}
