//! Outgoing alerts by webhook (issue 14; docs/webhooks.md): adding, listing, enabling, removing
//! and testing webhooks, written once for the portal, the API and the command line, with the same
//! checks and audit entries; the events (`events`), how bodies are written and signed (`format`)
//! and how deliveries are sent and retried (`deliver`).
//!
//! Only administrators call the use cases; the callers check the role and pass the visibility of
//! the workspaces the caller administers.

mod deliver;
mod events;
mod format;

use chrono::{DateTime, Utc};
use rampart_model::WorkspaceId;
use rampart_store::{
    NewWebhook, NewWebhookEvent, Recipients, SecretCiphertext, Store, StoreError, StoredDelivery,
    StoredWebhook, Visibility, WebhookEventKind, WebhookFormat,
};
use secrecy::SecretString;

use crate::vault::{Sealed, Vault, VaultError};

pub use deliver::{DeliveryOptions, Sender};
pub use events::{after_run, check_due, secret_expiring, sla_breaches};
pub use format::{SIGNATURE_HEADER, body_for, sign};

/// The longest name kept.
pub const MAX_NAME: usize = 100;
/// The longest URL accepted.
pub const MAX_URL: usize = 2048;

/// What an administrator asks for.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    /// `None`: the events of every workspace (global admins only).
    pub workspace: Option<WorkspaceId>,
    pub name: String,
    /// A credential for Teams and Slack: never shown again, never logged.
    pub url: SecretString,
    pub format: WebhookFormat,
    pub events: Vec<WebhookEventKind>,
}

/// A webhook just added, with its signing secret (generic format): shown this once.
#[derive(Debug)]
pub struct Created {
    pub webhook: StoredWebhook,
    pub signing_secret: Option<SecretString>,
}

/// Why a webhook was not added, changed or tested. Nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// What the person gave is wrong; they can correct it and try again.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for WebhookError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => WebhookError::NotFound(m),
            StoreError::Conflict(m) => WebhookError::Conflict(m),
            StoreError::InvalidInput(m) => WebhookError::Invalid(m),
            other => WebhookError::Store(other),
        }
    }
}

/// The vault's associated data of a webhook's URL and secret: a ciphertext copied onto another
/// webhook's row does not open.
pub(crate) fn aad(name: &str, what: &str) -> String {
    format!("webhook {name} {what}")
}

/// Reads the format as typed.
pub fn parse_format(text: &str) -> Result<WebhookFormat, WebhookError> {
    WebhookFormat::parse(text).ok_or_else(|| {
        WebhookError::Invalid(format!(
            "'{}' is not a webhook format: use generic, teams or slack",
            text.chars().take(20).collect::<String>()
        ))
    })
}

/// Reads events as typed (names separated by commas or given one by one).
pub fn parse_events<'a>(
    texts: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<WebhookEventKind>, WebhookError> {
    let mut events = Vec::new();
    for text in texts.into_iter().flat_map(|t| t.split(',')) {
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let kind = WebhookEventKind::parse(text)
            .filter(|k| *k != WebhookEventKind::Test)
            .ok_or_else(|| {
                WebhookError::Invalid(format!(
                    "'{}' is not an event: use immediate_finding, sla_breach, sync_failed or secret_expiring",
                    text.chars().take(30).collect::<String>()
                ))
            })?;
        if !events.contains(&kind) {
            events.push(kind);
        }
    }
    if events.is_empty() {
        return Err(WebhookError::Invalid(
            "choose at least one event to send".into(),
        ));
    }
    Ok(events)
}

/// What lists show of a URL: its scheme and host, then an ellipsis (Teams and Slack URLs carry
/// their credential in the path).
pub fn shown_url(url: &url::Url) -> String {
    format!("{}://{}/…", url.scheme(), url.host_str().unwrap_or(""))
}

/// Checks a webhook URL: HTTPS, or plain HTTP to this machine only (a receiver under test); no
/// user name or password in it.
pub fn check_url(text: &str) -> Result<url::Url, WebhookError> {
    let text = text.trim();
    if text.len() > MAX_URL {
        return Err(WebhookError::Invalid(format!(
            "the URL is longer than {MAX_URL} characters"
        )));
    }
    // The URL is a credential: errors never repeat it.
    let url = url::Url::parse(text).map_err(|_| {
        WebhookError::Invalid(
            "the URL is not a valid absolute URL (https://host/path); copy it again from the receiving service".into(),
        )
    })?;
    let loopback = matches!(
        url.host(),
        Some(url::Host::Ipv4(ip)) if ip.is_loopback()
    ) || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
        || url.host_str() == Some("localhost");
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(WebhookError::Invalid(
                "the URL must start with https:// (plain http only to this machine): alerts travel over the internet".into(),
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(WebhookError::Invalid("the URL has no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(WebhookError::Invalid(
            "put no user name or password in the URL: use the receiver's token in its path or query, as Teams and Slack do".into(),
        ));
    }
    Ok(url)
}

fn check_name(name: &str) -> Result<String, WebhookError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(WebhookError::Invalid(format!(
            "a webhook name must have 1 to {MAX_NAME} characters and no control characters"
        )));
    }
    Ok(name.to_owned())
}

/// A new signing secret: 32 random bytes, hex-encoded.
fn new_signing_secret() -> SecretString {
    use rand::RngCore;
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(&mut bytes[..]);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    SecretString::from(format!("whsec_{hex}"))
}

fn sealed(s: Sealed) -> SecretCiphertext {
    SecretCiphertext {
        ciphertext: s.ciphertext,
        nonce: s.nonce,
    }
}

/// Adds a webhook at `now`; `actor` is the administrator, `vis` the workspaces it administers.
/// A generic webhook gets a new signing secret, returned this once.
pub async fn create(
    store: &dyn Store,
    vault: &Vault,
    vis: &Visibility,
    request: &WebhookRequest,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Created, WebhookError> {
    use secrecy::ExposeSecret;
    let name = check_name(&request.name)?;
    let url = check_url(request.url.expose_secret())?;
    if request.events.is_empty() {
        return Err(WebhookError::Invalid(
            "choose at least one event to send".into(),
        ));
    }
    let signing_secret = (request.format == WebhookFormat::Generic).then(new_signing_secret);
    let secret = match &signing_secret {
        Some(s) => Some(sealed(vault.seal(&aad(&name, "secret"), s)?)),
        None => None,
    };
    let new = NewWebhook {
        workspace: request.workspace,
        name: name.clone(),
        format: request.format,
        url: sealed(vault.seal(
            &aad(&name, "url"),
            &SecretString::from(url.as_str().to_owned()),
        )?),
        url_shown: shown_url(&url),
        secret,
        events: request.events.clone(),
        created_by: actor.to_owned(),
        created_at: now,
    };
    let webhook = store.create_webhook(vis, &new).await?;
    Ok(Created {
        webhook,
        signing_secret,
    })
}

pub async fn list(store: &dyn Store, vis: &Visibility) -> Result<Vec<StoredWebhook>, WebhookError> {
    Ok(store.list_webhooks(vis).await?)
}

pub async fn set_enabled(
    store: &dyn Store,
    vis: &Visibility,
    id: i64,
    enabled: bool,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<StoredWebhook, WebhookError> {
    Ok(store
        .set_webhook_enabled(vis, id, enabled, actor, now)
        .await?)
}

pub async fn remove(
    store: &dyn Store,
    vis: &Visibility,
    id: i64,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<StoredWebhook, WebhookError> {
    Ok(store.delete_webhook(vis, id, actor, now).await?)
}

/// The newest deliveries of a webhook in `vis`, with their attempts.
pub async fn deliveries(
    store: &dyn Store,
    vis: &Visibility,
    id: i64,
    limit: u32,
) -> Result<Vec<StoredDelivery>, WebhookError> {
    Ok(store.list_webhook_deliveries(vis, id, limit).await?)
}

/// "Send test": queues a `test` event for the webhook and sends it at once (one attempt; a
/// failure is retried like any delivery); returns the delivery as it stands after the attempt.
pub async fn send_test(
    store: &dyn Store,
    vault: &Vault,
    sender: &Sender,
    vis: &Visibility,
    id: i64,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<StoredDelivery, WebhookError> {
    let webhook = store.get_webhook(vis, id).await?;
    let payload = events::test_payload(&webhook, actor, now);
    let queued = store
        .enqueue_webhook_event(
            &NewWebhookEvent {
                kind: WebhookEventKind::Test,
                dedup_key: None,
                payload,
                at: now,
            },
            Recipients::One(webhook.id),
        )
        .await?;
    for delivery in &queued {
        sender.deliver_now(store, vault, *delivery).await?;
    }
    let listed = store.list_webhook_deliveries(vis, id, 20).await?;
    listed
        .into_iter()
        .find(|d| queued.contains(&d.id))
        .ok_or_else(|| WebhookError::NotFound(format!("webhook {id} not found")))
}
