//! `rampart integration add | list | test | remove`.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use rampart_microsoft::supports;
use rampart_model::{Integration, IntegrationName, Product, SecretHint};
use rampart_store::{NewAuditEntry, NewIntegration, SecretCiphertext};
use secrecy::{ExposeSecret, SecretString};

use crate::cli::{Global, IntegrationAddArgs, IntegrationCommand};
use crate::context;
use crate::output::usage;

/// The longest client secret accepted (Entra's are 40 characters; this only bounds hostile input).
const MAX_SECRET_LEN: usize = 1024;

pub async fn run(global: &Global, command: IntegrationCommand) -> anyhow::Result<ExitCode> {
    match command {
        IntegrationCommand::Add(args) => add(global, args).await,
        IntegrationCommand::List => list(global).await,
        IntegrationCommand::Test { name } => test(global, &name).await,
        IntegrationCommand::Remove { name, yes } => remove(global, &name, yes).await,
    }
}

/// Reads the secret from where the user said, before anything is written.
fn read_secret(args: &IntegrationAddArgs) -> anyhow::Result<SecretString> {
    let raw = if args.client_secret_stdin {
        let mut buf = String::new();
        std::io::stdin()
            .take(MAX_SECRET_LEN as u64 + 2)
            .read_to_string(&mut buf)
            .map_err(|_| usage("the client secret on standard input is not text"))?;
        buf
    } else if let Some(var) = &args.client_secret_env {
        std::env::var(var).map_err(|_| {
            usage(format!(
                "the environment variable {var} is not set (or not text): put the client secret's Value in it, or use --client-secret-stdin"
            ))
        })?
    } else {
        return Err(usage(
            "no client secret given: use --client-secret-stdin or --client-secret-env VAR",
        ));
    };
    // A trailing newline from `echo` or a file is not part of the secret.
    let secret = raw.trim_end_matches(['\n', '\r']).to_owned();
    if secret.trim().is_empty() {
        return Err(usage(
            "the client secret is empty: paste the secret's Value from Microsoft Entra (App registrations > your app > Certificates & secrets)",
        ));
    }
    if secret.len() > MAX_SECRET_LEN {
        return Err(usage("the client secret is longer than any Entra secret"));
    }
    if secret.chars().any(char::is_control) {
        return Err(usage(
            "the client secret contains control characters: paste only the secret's Value",
        ));
    }
    Ok(SecretString::from(secret))
}

async fn add(global: &Global, args: IntegrationAddArgs) -> anyhow::Result<ExitCode> {
    if !supports(args.cloud, args.product) && args.api_url.is_none() {
        return Err(usage(format!(
            "Microsoft documents no Defender for Endpoint API in the {} cloud; choose commercial, gcc, gcc-high or dod, or give --api-url",
            args.cloud.label()
        )));
    }
    let secret = read_secret(&args)?;
    let store = context::open_store(global).await?;
    let vault = context::open_vault(global, store.as_ref()).await?;
    let sealed = vault.seal(args.name.as_str(), &secret)?;
    let hint = SecretHint::of(secret.expose_secret(), args.secret_expires);
    let schedule = args
        .schedule
        .unwrap_or_else(|| Integration::default_schedule_minutes(args.product));
    let integration = store
        .create_integration(&NewIntegration {
            name: args.name.clone(),
            product: args.product,
            cloud: args.cloud,
            tenant_id: args.tenant_id,
            client_id: args.client_id,
            secret: SecretCiphertext {
                ciphertext: sealed.ciphertext,
                nonce: sealed.nonce,
            },
            hint,
            login_url: args.login_url,
            api_url: args.api_url,
            schedule_minutes: schedule,
            enabled: true,
        })
        .await?;
    store
        .record_audit(&NewAuditEntry {
            at: Utc::now(),
            actor: "cli".into(),
            action: "integration.create".into(),
            target: Some(integration.name.to_string()),
            details: Some(format!(
                "product {}, cloud {}, tenant {}, client {}",
                integration.product,
                integration.cloud,
                integration.tenant_id,
                integration.client_id
            )),
        })
        .await?;
    println!(
        "Added integration '{}' ({} in the {} cloud, secret {}).",
        integration.name,
        product_label(integration.product),
        integration.cloud.label(),
        integration.secret_hint.masked()
    );
    if integration.product == Product::Cloud {
        println!(
            "The app needs the Azure role Security Reader (or Reader) on the subscriptions or on a management group; \
             no API permission in the app registration is needed (docs/setup-cloud.md)."
        );
    }
    println!(
        "Next: rampart integration test {}   then   rampart sync {}",
        integration.name, integration.name
    );
    Ok(ExitCode::SUCCESS)
}

pub fn product_label(p: Product) -> &'static str {
    match p {
        Product::Endpoint => "Defender for Endpoint",
        Product::Cloud => "Defender for Cloud",
    }
}

/// A warning about the secret's expiry, 30 days ahead.
pub fn expiry_warning(integration: &Integration) -> Option<String> {
    let days = integration.secret_hint.days_left(Utc::now().date_naive())?;
    if days < 0 {
        Some(format!(
            "the client secret of '{}' expired {} days ago: create a new one and update the integration",
            integration.name, -days
        ))
    } else if days <= 30 {
        Some(format!(
            "the client secret of '{}' expires in {days} days: create a new one in Microsoft Entra and update the integration before then",
            integration.name
        ))
    } else {
        None
    }
}

async fn list(global: &Global) -> anyhow::Result<ExitCode> {
    let store = context::open_store(global).await?;
    let integrations = store.list_integrations().await?;
    if integrations.is_empty() {
        println!("No integrations yet. Add one with: rampart integration add --help");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<9} {:<11} {:<38} {:<38} {:<10} {:<12} LAST RUN",
        "NAME", "PRODUCT", "CLOUD", "TENANT", "CLIENT", "SECRET", "EXPIRES"
    );
    let mut warnings = Vec::new();
    for i in &integrations {
        let last = store.list_runs(i.id, 1).await?;
        let last = match last.first() {
            Some(run) => format!(
                "{} {} ({} findings read)",
                run.started_at.format("%Y-%m-%d %H:%M"),
                run.status.as_str(),
                run.findings.read
            ),
            None => "never".to_owned(),
        };
        println!(
            "{:<24} {:<9} {:<11} {:<38} {:<38} {:<10} {:<12} {}",
            i.name.as_str(),
            i.product.as_str(),
            i.cloud.as_str(),
            i.tenant_id.as_str(),
            i.client_id.to_string(),
            i.secret_hint.masked(),
            i.secret_hint
                .expires_on
                .map(|d| d.to_string())
                .unwrap_or_else(|| "-".into()),
            last
        );
        warnings.extend(expiry_warning(i));
    }
    for w in warnings {
        eprintln!("warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn test(global: &Global, name: &IntegrationName) -> anyhow::Result<ExitCode> {
    let engine = context::open_engine(global, rampart_sync::EngineOptions::default()).await?;
    let integration = engine.store().get_integration_by_name(name).await?;
    println!(
        "Testing '{}' ({}, {} cloud):",
        integration.name,
        product_label(integration.product),
        integration.cloud.label()
    );
    let report = engine.test_connection(&integration).await;
    print!("{report}");
    if let Some(w) = expiry_warning(&integration) {
        eprintln!("warning: {w}");
    }
    if report.passed() {
        println!(
            "All steps passed: rampart sync {} will work.",
            integration.name
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: the connection test failed; fix the step marked ✗ and test again");
        Ok(ExitCode::from(1))
    }
}

async fn remove(global: &Global, name: &IntegrationName, yes: bool) -> anyhow::Result<ExitCode> {
    let store = context::open_store(global).await?;
    let integration = store.get_integration_by_name(name).await?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(usage(format!(
                "removing '{name}' deletes everything synced from it: add --yes to confirm"
            )));
        }
        eprint!("Remove '{name}' and everything synced from it? Type its name to confirm: ");
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .context("cannot read the confirmation")?;
        if answer.trim() != name.as_str() {
            eprintln!("Not removed.");
            return Ok(ExitCode::from(1));
        }
    }
    store.delete_integration(integration.id).await?;
    store
        .record_audit(&NewAuditEntry {
            at: Utc::now(),
            actor: "cli".into(),
            action: "integration.delete".into(),
            target: Some(name.to_string()),
            details: None,
        })
        .await?;
    println!("Removed integration '{name}' and its data.");
    Ok(ExitCode::SUCCESS)
}
