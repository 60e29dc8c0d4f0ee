//! `rampart`: the command-line entry point. Thin on purpose: parsing lives in `cli`, each command in
//! `commands`, and every library error becomes one plain sentence and an exit code here.

mod cli;
mod commands;
mod context;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    output::init_tracing(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => output::report_error(&e),
    }
}
