//! `rampart serve`: the portal, the REST API and the scheduler.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use rampart_web::{Application, WebConfig};

use crate::cli::{Global, ServeArgs};
use crate::context;

pub async fn run(global: &Global, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let engine = Arc::new(context::open_engine(global).await?);
    let no_account = engine.store().list_users().await?.is_empty();
    let app = Application::build(WebConfig::new(args.listen), engine)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("Rampart portal and API at {}", app.url());
    if no_account {
        println!(
            "No account exists yet: open {}/setup from this machine, or run: rampart user add NAME --role admin --password-stdin",
            app.url()
        );
    }
    println!("Press Ctrl-C to stop.");
    app.run_until_stopped()
        .await
        .context("the web server stopped")?;
    Ok(ExitCode::SUCCESS)
}
