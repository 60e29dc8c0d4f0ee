//! `rampart serve`: the portal, the REST API and the scheduler.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rampart_web::{Application, ConnectionLimits, WebConfig};

use crate::cli::{Global, ServeArgs};
use crate::context;

pub async fn run(global: &Global, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let engine = Arc::new(context::open_engine(global).await?);
    let no_account = engine.store().list_users().await?.is_empty();
    let mut config = WebConfig::new(args.listen);
    config.limits = ConnectionLimits {
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        header_read_timeout: Duration::from_secs(args.header_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
    };
    let app = Application::build(config, engine)
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
