//! `rampart integration add | list | test | remove`.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use rampart_model::{Integration, IntegrationName, Product};
use rampart_sync::integrations::{
    InputProblem, IntegrationError, IntegrationInput, Integrations, SecretExpiry, check_secret,
    remove_integration, secret_expiry,
};
use secrecy::SecretString;

use crate::cli::{Global, IntegrationAddArgs, IntegrationCommand};
use crate::context;
use crate::output::usage;

/// Who the audit log says made a change from the command line.
const ACTOR: &str = "cli";

/// Read no more of standard input than the longest secret accepted and a line end: enough for the
/// service to tell a too-long secret from a good one, without reading a hostile stream to its end.
const MAX_SECRET_READ: u64 = 1024 + 2;

pub async fn run(global: &Global, command: IntegrationCommand) -> anyhow::Result<ExitCode> {
    match command {
        IntegrationCommand::Add(args) => add(global, args).await,
        IntegrationCommand::List => list(global).await,
        IntegrationCommand::Test { name } => test(global, &name).await,
        IntegrationCommand::Remove { name, yes } => remove(global, &name, yes).await,
        IntegrationCommand::Move { name, workspace } => move_to(global, &name, &workspace).await,
    }
}

/// Reads the secret from where the user said, before anything is written.
fn read_secret(args: &IntegrationAddArgs) -> anyhow::Result<SecretString> {
    let raw = if args.client_secret_stdin {
        let mut buf = String::new();
        std::io::stdin()
            .take(MAX_SECRET_READ)
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
    check_secret(&raw).map_err(|problem| usage(problem.to_string()))
}

/// The options as the service takes every surface's input: text, checked in one place.
fn input(args: &IntegrationAddArgs, secret: SecretString) -> IntegrationInput {
    IntegrationInput {
        name: args.name.to_string(),
        product: args.product.as_str().into(),
        cloud: args.cloud.as_str().into(),
        tenant_id: args.tenant_id.to_string(),
        client_id: args.client_id.to_string(),
        client_secret: Some(secret),
        secret_expires: args
            .secret_expires
            .map(|d| d.to_string())
            .unwrap_or_default(),
        login_url: args.login_url.clone().unwrap_or_default(),
        api_url: args.api_url.clone().unwrap_or_default(),
        schedule_minutes: args.schedule.map(|m| m.to_string()).unwrap_or_default(),
        enabled: true,
    }
}

/// What was given wrong, in the command line's words (its options, not a form's fields). A name
/// already taken is no misuse of the command (exit code 1, not 2).
fn rejected(e: IntegrationError) -> anyhow::Error {
    match e {
        IntegrationError::Invalid(problems)
            if problems
                .0
                .iter()
                .all(|p| matches!(p, InputProblem::Refused(_))) =>
        {
            anyhow::anyhow!("{problems}")
        }
        IntegrationError::Invalid(problems) => usage(
            problems
                .0
                .iter()
                .map(|p| match p {
                    InputProblem::NoEndpointApi(cloud) => format!(
                        "Microsoft documents no Defender for Endpoint API in the {} cloud; choose commercial, gcc, gcc-high or dod, or give --api-url",
                        cloud.label()
                    ),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        other => other.into(),
    }
}

async fn add(global: &Global, args: IntegrationAddArgs) -> anyhow::Result<ExitCode> {
    let input = input(&args, read_secret(&args)?);
    // Bad input writes nothing: not even the database or the master key file.
    input.check_new().map_err(|e| rejected(e.into()))?;
    let engine = context::open_engine(global, rampart_sync::EngineOptions::default()).await?;
    let workspace = match &args.workspace {
        Some(w) => {
            super::workspace::named(engine.store().as_ref(), w)
                .await?
                .id
        }
        None => rampart_model::WorkspaceId::DEFAULT,
    };
    let integration = Integrations::new(&engine)
        .add_in(&input, workspace, ACTOR)
        .await
        .map_err(rejected)?;
    println!(
        "Added integration '{}' ({} in the {} cloud, secret {}).",
        integration.name,
        integration.product.label(),
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

/// A warning about the secret's expiry, 30 days ahead, saying what to do from here.
pub fn expiry_warning(integration: &Integration) -> Option<String> {
    Some(match secret_expiry(integration, Utc::now().date_naive())? {
        SecretExpiry::Expired { days_ago } => format!(
            "the client secret of '{}' expired {days_ago} days ago: create a new one and update the integration",
            integration.name
        ),
        SecretExpiry::Soon { days } => format!(
            "the client secret of '{}' expires in {days} days: create a new one in Microsoft Entra and update the integration before then",
            integration.name
        ),
    })
}

async fn move_to(
    global: &Global,
    name: &IntegrationName,
    workspace: &str,
) -> anyhow::Result<ExitCode> {
    let store = context::open_store(global).await?;
    let integration = store
        .get_integration_by_name(&rampart_store::Visibility::All, name)
        .await?;
    let w = super::workspace::named(store.as_ref(), workspace).await?;
    store.move_integration(integration.id, w.id).await?;
    store
        .record_audit(&rampart_store::NewAuditEntry {
            at: Utc::now(),
            actor: ACTOR.into(),
            action: "integration.move".into(),
            target: Some(integration.name.to_string()),
            details: Some(format!("to workspace '{}'", w.name)),
        })
        .await?;
    println!(
        "Moved integration '{}' to workspace '{}'.",
        integration.name, w.name
    );
    Ok(ExitCode::SUCCESS)
}

async fn list(global: &Global) -> anyhow::Result<ExitCode> {
    let store = context::open_store(global).await?;
    let integrations = store
        .list_integrations(&rampart_store::Visibility::All)
        .await?;
    if integrations.is_empty() {
        println!("No integrations yet. Add one with: rampart integration add --help");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<16} {:<9} {:<11} {:<38} {:<38} {:<10} {:<12} LAST RUN",
        "NAME", "WORKSPACE", "PRODUCT", "CLOUD", "TENANT", "CLIENT", "SECRET", "EXPIRES"
    );
    let workspaces = store.list_workspaces().await?;
    let mut warnings = Vec::new();
    for i in &integrations {
        let last = store
            .list_runs(&rampart_store::Visibility::All, i.id, 1)
            .await?;
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
            "{:<24} {:<16} {:<9} {:<11} {:<38} {:<38} {:<10} {:<12} {}",
            i.name.as_str(),
            workspaces
                .iter()
                .find(|w| w.id == i.workspace_id)
                .map_or("?", |w| w.name.as_str()),
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
    let integration = engine
        .store()
        .get_integration_by_name(&rampart_store::Visibility::All, name)
        .await?;
    println!(
        "Testing '{}' ({}, {} cloud):",
        integration.name,
        integration.product.label(),
        integration.cloud.label()
    );
    let report = Integrations::new(&engine).test(&integration, ACTOR).await?;
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
    // The store alone: an integration whose secret no master key opens any more can be removed.
    let store = context::open_store(global).await?;
    let integration = store
        .get_integration_by_name(&rampart_store::Visibility::All, name)
        .await?;
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
    remove_integration(store.as_ref(), &integration, ACTOR).await?;
    println!("Removed integration '{name}' and its data.");
    Ok(ExitCode::SUCCESS)
}
