//! `rampart serve`: the portal, the REST API and the scheduler.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rampart_web::{Application, ConnectionLimits, ServerRole, Tls, WebConfig};
use secrecy::{ExposeSecret, SecretString};

use crate::cli::{Global, ServeArgs, TlsArgs};
use crate::context;
use crate::output::usage;

pub async fn run(global: &Global, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let metrics_token = match &args.metrics_token_env {
        None => None,
        Some(var) => Some(read_token(var)?),
    };
    // Before the database is opened and long before the port is bound: a wrong certificate
    // stops the start with nothing changed.
    let tls = load_tls(&args.tls)?;
    let engine =
        Arc::new(context::open_engine(global, context::engine_options(&args.engine)).await?);
    let mut config = WebConfig::new(args.listen);
    config.limits = ConnectionLimits {
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        header_read_timeout: Duration::from_secs(args.header_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
    };
    config.trusted_proxies = args.trusted_proxies;
    config.secure_cookies = args.secure_cookies;
    config.session_lifetime = Duration::from_secs(args.session_lifetime * 3600);
    config.metrics_token = metrics_token;
    config.kev_url = (!args.no_kev_refresh).then_some(args.kev.kev_url);
    config.tls = tls;
    config.role = args.role.into();
    config.job_lease = Duration::from_secs(args.job_lease);
    config.stop_grace = Duration::from_secs(args.stop_grace);
    config.scheduler_tick = Duration::from_secs(args.scheduler_tick);
    let role = config.role;
    let app = Application::build(config, engine)
        .await
        .with_context(|| format!("cannot start rampart serve on {}", args.listen))?;
    match role {
        ServerRole::All => println!("Rampart portal and API at {}", app.url()),
        ServerRole::Web => println!(
            "Rampart portal and API at {} (role web: sync jobs are left to the workers)",
            app.url()
        ),
        ServerRole::Worker => println!(
            "Rampart worker: running sync jobs; health and metrics at {}",
            app.url()
        ),
    }
    if let Some(token) = app.setup_token() {
        // Whoever can read this server's output may create the first admin: that is the point.
        println!(
            "No admin exists yet. Open {}/setup and enter this one-time setup token (valid for an hour, once; each start prints a new one):\n\n    {}\n\nOr create one on this machine: rampart user add NAME --role admin --password-stdin",
            app.url(),
            token.expose_secret()
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

/// The certificate and key of `--tls-cert`/`--tls-key` (or RAMPART_TLS_CERT/RAMPART_TLS_KEY, or
/// `tls_cert`/`tls_key` in rampart.toml), read and checked; both or neither.
pub fn load_tls(args: &TlsArgs) -> anyhow::Result<Option<Tls>> {
    const WHERE: &str = "(as an option, in the environment or in rampart.toml's [serve])";
    match (&args.tls_cert, &args.tls_key) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(usage(format!(
            "--tls-cert is set but --tls-key is not: HTTPS needs the certificate's private key too; give --tls-key FILE {WHERE}, or neither to serve plain HTTP"
        ))),
        (None, Some(_)) => Err(usage(format!(
            "--tls-key is set but --tls-cert is not: HTTPS needs the certificate too; give --tls-cert FILE {WHERE}, or neither to serve plain HTTP"
        ))),
        (Some(cert), Some(key)) => Tls::load(cert, key)
            .map(Some)
            .map_err(|e| usage(e.to_string())),
    }
}
