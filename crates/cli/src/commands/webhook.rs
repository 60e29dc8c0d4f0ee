//! `rampart webhook add | list | remove | test`: outgoing alerts (docs/webhooks.md), through the
//! same use cases as the portal and the API. The URL is read from standard input or an
//! environment variable, never from the command line: for Teams and Slack it is a credential.

use std::io::Read;
use std::process::ExitCode;

use chrono::Utc;
use rampart_store::{StoredWebhook, Visibility};
use rampart_sync::webhooks::{self, WebhookError, WebhookRequest};
use secrecy::{ExposeSecret, SecretString};

use crate::cli::{Global, WebhookAddArgs, WebhookCommand};
use crate::context;
use crate::output::usage;

/// Who the audit log names for changes made on the command line.
const ACTOR: &str = "cli";

fn problem(e: WebhookError) -> anyhow::Error {
    match e {
        WebhookError::Invalid(m) | WebhookError::NotFound(m) | WebhookError::Conflict(m) => {
            usage(m)
        }
        other => other.into(),
    }
}

fn read_url(args: &WebhookAddArgs) -> anyhow::Result<SecretString> {
    let raw = if args.url_stdin {
        let mut buf = String::new();
        std::io::stdin()
            .take(webhooks::MAX_URL as u64 + 2)
            .read_to_string(&mut buf)
            .map_err(|_| usage("the URL on standard input is not text"))?;
        buf
    } else if let Some(var) = &args.url_env {
        std::env::var(var).map_err(|_| {
            usage(format!(
                "the environment variable {var} is not set (or not text): put the webhook URL in it, or use --url-stdin"
            ))
        })?
    } else {
        return Err(usage(
            "no URL given: use --url-stdin or --url-env VAR (the URL is a credential for Teams and Slack, so it is not taken from the command line)",
        ));
    };
    Ok(SecretString::from(raw.trim().to_owned()))
}

async fn named(store: &dyn rampart_store::Store, name: &str) -> anyhow::Result<StoredWebhook> {
    store
        .list_webhooks(&Visibility::All)
        .await?
        .into_iter()
        .find(|w| w.name.eq_ignore_ascii_case(name.trim()))
        .ok_or_else(|| {
            usage(format!(
                "no webhook named '{}'; list them with `rampart webhook list`",
                name.chars().take(100).collect::<String>()
            ))
        })
}

pub async fn run(global: &Global, command: WebhookCommand) -> anyhow::Result<ExitCode> {
    let engine = context::open_engine(global, rampart_sync::EngineOptions::default()).await?;
    let store = engine.store().as_ref();
    let all = Visibility::All;
    match command {
        WebhookCommand::Add(args) => {
            let url = read_url(&args)?;
            let workspace = match &args.workspace {
                Some(w) => Some(super::workspace::named(store, w).await?.id),
                None => None,
            };
            let request = WebhookRequest {
                workspace,
                name: args.name.clone(),
                url,
                format: webhooks::parse_format(&args.format).map_err(problem)?,
                events: webhooks::parse_events(args.events.iter().map(String::as_str))
                    .map_err(problem)?,
            };
            let created =
                webhooks::create(store, engine.vault(), &all, &request, ACTOR, Utc::now())
                    .await
                    .map_err(problem)?;
            println!(
                "Added webhook '{}' ({}, {}).",
                created.webhook.name,
                created.webhook.format.as_str(),
                created.webhook.url_shown
            );
            if let Some(secret) = created.signing_secret {
                println!(
                    "Signing secret (shown once; the receiver checks X-Rampart-Signature with it): {}",
                    secret.expose_secret()
                );
            }
        }
        WebhookCommand::List => {
            let workspaces = store.list_workspaces().await?;
            println!(
                "{:<6} {:<24} {:<8} {:<8} {:<16} {:<10} EVENTS",
                "ID", "NAME", "FORMAT", "ENABLED", "WORKSPACE", "LAST"
            );
            for w in webhooks::list(store, &all).await.map_err(problem)? {
                let ws = match w.workspace_id {
                    None => "all".to_owned(),
                    Some(id) => workspaces
                        .iter()
                        .find(|x| x.id == id)
                        .map_or_else(|| id.to_string(), |x| x.name.clone()),
                };
                println!(
                    "{:<6} {:<24} {:<8} {:<8} {:<16} {:<10} {}",
                    w.id,
                    w.name,
                    w.format.as_str(),
                    if w.enabled { "yes" } else { "no" },
                    ws,
                    w.last_delivery.map_or("-", |s| s.as_str()),
                    w.events
                        .iter()
                        .map(|e| e.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
        }
        WebhookCommand::Remove { name } => {
            let w = named(store, &name).await?;
            webhooks::remove(store, &all, w.id, ACTOR, Utc::now())
                .await
                .map_err(problem)?;
            println!("Removed webhook '{}' and its delivery log.", w.name);
        }
        WebhookCommand::Test { name } => {
            let w = named(store, &name).await?;
            let d = webhooks::send_test(
                store,
                engine.vault(),
                engine.webhooks(),
                &all,
                w.id,
                ACTOR,
                Utc::now(),
            )
            .await
            .map_err(problem)?;
            match (d.status, d.log.last()) {
                (rampart_store::DeliveryStatus::Delivered, Some(a)) => println!(
                    "Test delivered to '{}': HTTP {}.",
                    w.name,
                    a.http_status.unwrap_or(0)
                ),
                (_, attempt) => {
                    println!(
                        "Test not delivered to '{}': {}. A running `rampart serve` retries it.",
                        w.name,
                        attempt
                            .and_then(|a| a.error.as_deref())
                            .unwrap_or("no answer")
                    );
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
