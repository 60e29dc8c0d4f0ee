//! `rampart demo`: an emulated Microsoft tenant, an integration against it, a first sync, and what
//! to try next. Nothing to configure.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::{DurationRound, Utc};
use rampart_model::{Cloud, IntegrationName, Product, SecretHint};
use rampart_sim::SimConfig;
use rampart_store::{IntegrationUpdate, NewIntegration, SecretCiphertext, StoreError};
use rampart_sync::{Engine, EngineOptions, SyncRequest};
use secrecy::SecretString;

use crate::cli::{DemoArgs, Global};
use crate::context;

const DEMO_INTEGRATION: &str = "demo-endpoint";

pub async fn run(global: &Global, args: DemoArgs) -> anyhow::Result<ExitCode> {
    // The emulated tenant's clock starts now, so the demo data looks current.
    let start_time = Utc::now()
        .duration_trunc(chrono::Duration::hours(6))
        .unwrap_or_else(|_| Utc::now());
    let config = SimConfig {
        devices: args.devices,
        start_time,
        ..SimConfig::default()
    };
    let sim = rampart_sim::spawn(config.clone())
        .await
        .context("cannot start the emulated Microsoft tenant")?;
    println!(
        "Emulated Microsoft tenant with {} devices at {}",
        args.devices, sim.url
    );

    let store = context::open_store(global).await?;
    let vault = context::open_vault(global)?;
    let name: IntegrationName = DEMO_INTEGRATION
        .parse()
        .context("the demo integration name")?;
    let secret = SecretString::from(config.client_secret.clone());
    let sealed = vault.seal(name.as_str(), &secret)?;
    let ciphertext = SecretCiphertext {
        ciphertext: sealed.ciphertext,
        nonce: sealed.nonce,
    };
    let hint = SecretHint::of(&config.client_secret, None);
    let integration = match store.get_integration_by_name(&name).await {
        // The emulator listens on a new port each time: point the demo integration at it.
        Ok(existing) => {
            store
                .update_integration(
                    existing.id,
                    &IntegrationUpdate {
                        secret: Some((ciphertext, hint)),
                        login_url: Some(Some(sim.url.clone())),
                        api_url: Some(Some(sim.url.clone())),
                        tenant_id: Some(config.tenant_id.parse()?),
                        client_id: Some(config.client_id.parse()?),
                        ..IntegrationUpdate::default()
                    },
                )
                .await?
        }
        Err(StoreError::NotFound(_)) => {
            store
                .create_integration(&NewIntegration {
                    name: name.clone(),
                    product: Product::Endpoint,
                    cloud: Cloud::Commercial,
                    tenant_id: config.tenant_id.parse()?,
                    client_id: config.client_id.parse()?,
                    secret: ciphertext,
                    hint,
                    login_url: Some(sim.url.clone()),
                    api_url: Some(sim.url.clone()),
                    schedule_minutes: 360,
                    enabled: true,
                })
                .await?
        }
        Err(e) => return Err(e.into()),
    };
    println!("Integration '{name}' points at it. First sync:");

    let engine = Engine::new(store.clone(), vault, EngineOptions::default());
    let progress = super::sync::TerminalProgress::new(name.as_str());
    let run = engine
        .sync(&integration, SyncRequest::default(), &progress)
        .await?;
    progress.clear();
    super::sync::print_run(name.as_str(), &run);

    let db = context::database_url(global);
    println!();
    println!("Try, in another terminal (this one keeps the emulated tenant running):");
    println!("  rampart --database {db} integration test {name}");
    println!("  rampart --database {db} sync {name}");
    println!("  rampart --database {db} export findings --format csv --output findings.csv");
    println!("  rampart --database {db} export assets --format jsonl | head");
    println!(
        "The emulated tenant moves on by one 6-hour snapshot every minute; sync again to see fixed and new findings."
    );
    println!("Press Ctrl-C to stop.");

    let ticker = sim.sim.clone();
    let mut interval = tokio::time::interval(Duration::from_secs(60));
    interval.tick().await;
    loop {
        tokio::select! {
            _ = interval.tick() => ticker.tick(1),
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(ExitCode::SUCCESS)
}
