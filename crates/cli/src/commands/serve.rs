//! `rampart serve`: the portal, the REST API and the scheduler.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use rampart_web::{Application, WebConfig};
use secrecy::SecretString;

use crate::cli::{Global, ServeArgs};
use crate::context;

pub async fn run(global: &Global, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let metrics_token = match &args.metrics_token_env {
        None => None,
        Some(var) => Some(read_token(var)?),
    };
    let engine =
        Arc::new(context::open_engine(global, context::engine_options(&args.engine)).await?);
    let no_account = engine.store().list_users().await?.is_empty();
    let mut config = WebConfig::new(args.listen);
    config.metrics_token = metrics_token;
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

/// The /metrics token from the environment variable `var`: set and not blank, or a clear error.
fn read_token(var: &str) -> anyhow::Result<SecretString> {
    match std::env::var(var) {
        Ok(token) if !token.trim().is_empty() => Ok(SecretString::from(token.trim().to_owned())),
        _ => anyhow::bail!(
            "--metrics-token-env {var}: the environment variable {var} is not set or empty; set it to the token Prometheus sends (Authorization: Bearer TOKEN)"
        ),
    }
}
