//! `rampart demo`: an emulated Microsoft tenant, a Defender for Endpoint and a Defender for Cloud
//! integration against it, a first sync of each, an admin account with a one-time password, and
//! the portal. Nothing to configure.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DurationRound, Utc};
use rampart_model::{Cloud, Integration, IntegrationName, Product, SecretHint};
use rampart_sim::SimConfig;
use rampart_store::{IntegrationUpdate, NewIntegration, SecretCiphertext, StoreError};
use rampart_sync::intel::{KevClient, refresh_kev};
use rampart_sync::{Engine, SyncRequest};
use rampart_web::{Application, WebConfig};
use secrecy::SecretString;

use crate::cli::{DemoArgs, Global};
use crate::context;

const DEMO_ENDPOINT: &str = "demo-endpoint";
const DEMO_CLOUD: &str = "demo-cloud";

pub async fn run(global: &Global, args: DemoArgs) -> anyhow::Result<ExitCode> {
    // A wrong certificate is found before anything starts.
    let tls = super::serve::load_tls(&args.tls)?;
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
    let vault = context::open_vault(global, store.as_ref()).await?;
    let mut integrations = Vec::new();
    for (name, product) in [
        (DEMO_ENDPOINT, Product::Endpoint),
        (DEMO_CLOUD, Product::Cloud),
    ] {
        integrations.push(
            demo_integration(store.as_ref(), &vault, name, product, &sim.url, &config).await?,
        );
    }
    println!(
        "Integrations '{DEMO_ENDPOINT}' (Defender for Endpoint) and '{DEMO_CLOUD}' (Defender for Cloud) point at it. First syncs:"
    );

    let engine = Engine::new(store.clone(), vault, context::engine_options(&args.engine));
    for integration in &integrations {
        let progress = super::sync::TerminalProgress::new(integration.name.as_str());
        let run = engine
            .sync(integration, SyncRequest::default(), &progress)
            .await?;
        progress.clear();
        super::sync::print_run(integration, &run);
    }

    // CISA's KEV catalogue from the emulator's copy of the feed: the real code path, offline.
    let kev_url = format!("{}{}", sim.url, rampart_sim::KEV_PATH);
    let kev = KevClient::new(&kev_url)?;
    let update = refresh_kev(store.as_ref(), &kev, Utc::now()).await?;
    println!(
        "KEV catalogue: {} known exploited vulnerabilities from the emulator's feed.",
        update.source.count
    );

    // The account first: with an admin, the server issues no first-run setup token.
    let login = demo_account(store.as_ref()).await?;
    let engine = Arc::new(engine);
    let mut web = WebConfig::new(args.listen);
    web.tls = tls;
    web.kev_url = Some(kev_url);
    let app = Application::build(web, engine)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;

    println!();
    println!("Portal: {}", app.url());
    match login {
        Some(password) => println!(
            "Sign in as '{DEMO_ADMIN}' with the one-time password {password} (it is shown only now; you choose your own at the first sign-in)."
        ),
        None => println!(
            "Sign in as '{DEMO_ADMIN}' with the password shown when this database's demo first ran, or add an account: rampart user add NAME --role admin --password-stdin"
        ),
    }
    println!("API documentation: {}/api/docs/", app.url());
    println!(
        "The emulated tenant moves on by one 6-hour snapshot every minute; press Sync now in the portal to see fixed and new findings."
    );
    println!("Press Ctrl-C to stop.");

    let ticker = sim.sim.clone();
    let ticking = tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(60));
        interval.tick().await;
        loop {
            interval.tick().await;
            ticker.tick(1);
        }
    });
    let served = app.run_until_stopped().await;
    ticking.abort();
    served.context("the web server stopped")?;
    Ok(ExitCode::SUCCESS)
}

/// Creates the demo integration `name`, or points the one an earlier demo left at this emulator
/// (it listens on a new port each time).
async fn demo_integration(
    store: &dyn rampart_store::Store,
    vault: &rampart_sync::vault::Vault,
    name: &str,
    product: Product,
    url: &str,
    config: &SimConfig,
) -> anyhow::Result<Integration> {
    let name: IntegrationName = name.parse().context("the demo integration name")?;
    let secret = SecretString::from(config.client_secret.clone());
    let sealed = vault.seal(name.as_str(), &secret)?;
    let ciphertext = SecretCiphertext {
        ciphertext: sealed.ciphertext,
        nonce: sealed.nonce,
    };
    let hint = SecretHint::of(&config.client_secret, None);
    Ok(
        match store
            .get_integration_by_name(&rampart_store::Visibility::All, &name)
            .await
        {
            Ok(existing) => {
                store
                    .update_integration(
                        existing.id,
                        &IntegrationUpdate {
                            secret: Some((ciphertext, hint)),
                            login_url: Some(Some(url.to_owned())),
                            api_url: Some(Some(url.to_owned())),
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
                        name,
                        product,
                        cloud: Cloud::Commercial,
                        tenant_id: config.tenant_id.parse()?,
                        client_id: config.client_id.parse()?,
                        secret: ciphertext,
                        hint,
                        login_url: Some(url.to_owned()),
                        api_url: Some(url.to_owned()),
                        schedule_minutes: Integration::default_schedule_minutes(product),
                        enabled: true,
                    })
                    .await?
            }
            Err(e) => return Err(e.into()),
        },
    )
}

const DEMO_ADMIN: &str = "admin";

/// Creates the demo's admin account with a random one-time password (to be replaced at the first
/// sign-in) and returns the password, or `None` when the account exists already (from an earlier
/// demo on the same database).
async fn demo_account(store: &dyn rampart_store::Store) -> anyhow::Result<Option<String>> {
    if store.user_credentials(DEMO_ADMIN).await?.is_some() {
        return Ok(None);
    }
    let password = one_time_password();
    rampart_web::create_user(
        store,
        DEMO_ADMIN,
        rampart_store::Role::Admin,
        &SecretString::from(password.clone()),
        rampart_web::PasswordChosenBy::Others,
        "demo",
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot create the demo account: {e}"))?;
    Ok(Some(password))
}

/// 16 characters from an alphabet without look-alikes.
fn one_time_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789";
    use rand::Rng;
    let mut rng = rand::rng();
    (0..16)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}
