//! `rampart`: the command-line entry point. Thin on purpose: parsing lives in `cli`, each command in
//! `commands`, and every library error becomes one plain sentence and an exit code here.

mod allocator;
mod cli;
mod commands;
mod config;
mod context;
mod output;

use std::process::ExitCode;

fn main() -> ExitCode {
    allocator::tune();
    let (cli, config) = match config::load(std::env::args_os().collect()) {
        Ok(loaded) => loaded,
        Err(e) => return output::report_error(&e),
    };
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
    match runtime.block_on(commands::run(cli, &config)) {
        Ok(code) => code,
        Err(e) => output::report_error(&e),
    }
}
