//! Outgoing webhooks (issue 14; docs/webhooks.md): the webhooks administrators configure, the
//! outbox of deliveries with its log of attempts, and what has been alerted already.
//!
//! The store keeps the rules that must hold across processes: a webhook of a workspace receives
//! only that workspace's events ([`Recipients::Subscribers`]), the same breach or expiry is
//! queued once per webhook (a dedup key), and a delivery is claimed by one worker at a time
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the single writer on SQLite). What to send, when to
//! retry and how to sign are `rampart_sync::webhooks`'.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use rampart_model::WorkspaceId;

use crate::common::{RowExt, clean, corrupt};
use crate::db::{Arg, Dialect, Pool, Sql, q};
use crate::error::{Result, StoreError};
use crate::types::{NewAuditEntry, SecretCiphertext};
use crate::workspace::Visibility;

/// How a webhook's body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// Rampart's JSON, signed with HMAC-SHA256.
    Generic,
    /// A Microsoft Teams message with an Adaptive Card.
    Teams,
    /// A Slack message (`text` and `blocks`).
    Slack,
}

impl WebhookFormat {
    pub const ALL: [WebhookFormat; 3] = [
        WebhookFormat::Generic,
        WebhookFormat::Teams,
        WebhookFormat::Slack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Generic => "generic",
            WebhookFormat::Teams => "teams",
            WebhookFormat::Slack => "slack",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s.trim())
    }
}

/// What a webhook can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEventKind {
    /// Findings became `immediate` in a sync run.
    ImmediateFinding,
    /// Findings passed their due date.
    SlaBreach,
    /// A sync run failed or was held.
    SyncFailed,
    /// An integration's client secret expires within 30 days.
    SecretExpiring,
    /// "Send test": sent to one webhook whatever its events.
    Test,
}

impl WebhookEventKind {
    /// The events a webhook may subscribe to.
    pub const SUBSCRIBABLE: [WebhookEventKind; 4] = [
        WebhookEventKind::ImmediateFinding,
        WebhookEventKind::SlaBreach,
        WebhookEventKind::SyncFailed,
        WebhookEventKind::SecretExpiring,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEventKind::ImmediateFinding => "immediate_finding",
            WebhookEventKind::SlaBreach => "sla_breach",
            WebhookEventKind::SyncFailed => "sync_failed",
            WebhookEventKind::SecretExpiring => "secret_expiring",
            WebhookEventKind::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::SUBSCRIBABLE
            .into_iter()
            .chain([WebhookEventKind::Test])
            .find(|k| k.as_str() == s.trim())
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    /// Every attempt failed.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// What `create_webhook` stores. The use case (`rampart_sync::webhooks`) checks the URL, seals
/// it and the signing secret, and makes `url_shown`.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    /// `None`: the events of every workspace.
    pub workspace: Option<WorkspaceId>,
    pub name: String,
    pub format: WebhookFormat,
    pub url: SecretCiphertext,
    /// Scheme and host and an ellipsis.
    pub url_shown: String,
    /// The generic format's signing secret.
    pub secret: Option<SecretCiphertext>,
    pub events: Vec<WebhookEventKind>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// A stored webhook, without its URL or secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredWebhook {
    pub id: i64,
    pub workspace_id: Option<WorkspaceId>,
    pub name: String,
    pub format: WebhookFormat,
    pub url_shown: String,
    pub events: Vec<WebhookEventKind>,
    pub enabled: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// The newest delivery's status, if any.
    pub last_delivery: Option<DeliveryStatus>,
}

/// A webhook's sealed URL and signing secret, for the sender only.
#[derive(Debug, Clone)]
pub struct WebhookSecrets {
    pub url: SecretCiphertext,
    pub secret: Option<SecretCiphertext>,
}

/// Who an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipients {
    /// Every enabled webhook subscribed to the event's kind, of this workspace or of all.
    Subscribers { workspace: WorkspaceId },
    /// One webhook, whatever its events and even if disabled ("Send test").
    One(i64),
}

/// An event to queue for its recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhookEvent {
    pub kind: WebhookEventKind,
    /// Queued once per webhook and key; `None`: always queued.
    pub dedup_key: Option<String>,
    /// The event as JSON, free of secrets.
    pub payload: String,
    pub at: DateTime<Utc>,
}

/// A delivery a worker has claimed and now sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub webhook_id: i64,
    pub kind: WebhookEventKind,
    pub payload: String,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
    pub created_at: DateTime<Utc>,
}

/// What became of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptNext {
    Delivered,
    /// Try again then.
    RetryAt(DateTime<Utc>),
    /// No more attempts.
    Failed,
}

/// One attempt, as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    pub attempt: u32,
    pub at: DateTime<Utc>,
    pub http_status: Option<u16>,
    /// In words, never with the URL.
    pub error: Option<String>,
    pub next: AttemptNext,
}

/// An attempt in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    pub attempt: u32,
    pub at: DateTime<Utc>,
    pub http_status: Option<u16>,
    pub error: Option<String>,
}

/// A delivery and its attempts, for the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDelivery {
    pub id: i64,
    pub webhook_id: i64,
    pub kind: WebhookEventKind,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub log: Vec<DeliveryAttempt>,
}

/// The audit log's entry for `action` (`webhook.create`, `webhook.enable`, `webhook.disable`,
/// `webhook.delete`): never the URL, only what lists show of it.
pub fn audit_entry(
    action: &str,
    actor: &str,
    at: DateTime<Utc>,
    w: &StoredWebhook,
) -> NewAuditEntry {
    NewAuditEntry {
        at,
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: Some(format!("webhook {}: {}", w.id, w.name)),
        details: Some(
            serde_json::json!({
                "format": w.format.as_str(),
                "url": w.url_shown,
                "events": w.events.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
                "workspace": w.workspace_id.map(|w| w.0),
            })
            .to_string(),
        ),
    }
}

fn not_found(id: i64) -> StoreError {
    StoreError::NotFound(format!(
        "webhook {id} not found (it may have been removed); the webhooks are listed under Management → Webhooks"
    ))
}

/// " AND " the webhook `w` is in `vis`: one of the visible workspaces'. A webhook of every
/// workspace is only in `All` (it is the operator's, not a workspace's).
fn push_vis(d: Dialect, vis: &Visibility, sql: &mut Sql, column: &str) {
    if let Visibility::Workspaces(ids) = vis {
        let ph = sql.arg(Arg::Ints(ids.iter().map(|w| w.0).collect()));
        sql.text.push_str(" AND ");
        sql.text.push_str(&d.in_list(column, &ph));
    }
}

const COLUMNS: &str = "w.id, w.workspace_id, w.name, w.format, w.url_shown, w.events, w.enabled, \
     w.created_by, w.created_at, (SELECT d.status FROM webhook_deliveries d WHERE d.webhook_id = w.id \
     ORDER BY d.id DESC LIMIT 1) AS last_delivery";

fn decode_events(text: &str) -> Result<Vec<WebhookEventKind>> {
    text.split(',')
        .filter(|e| !e.is_empty())
        .map(|e| WebhookEventKind::parse(e).ok_or_else(|| corrupt("webhook event", e)))
        .collect()
}

fn decode_webhook(r: &impl RowExt) -> Result<StoredWebhook> {
    let format = r.text("format")?;
    Ok(StoredWebhook {
        id: r.int("id")?,
        workspace_id: r.opt_int("workspace_id")?.map(WorkspaceId),
        name: r.text("name")?,
        format: WebhookFormat::parse(&format).ok_or_else(|| corrupt("webhook format", &format))?,
        url_shown: r.text("url_shown")?,
        events: decode_events(&r.text("events")?)?,
        enabled: r.flag("enabled")?,
        created_by: r.text("created_by")?,
        created_at: r.ts("created_at")?,
        last_delivery: match r.opt_text("last_delivery")? {
            None => None,
            Some(s) => {
                Some(DeliveryStatus::parse(&s).ok_or_else(|| corrupt("delivery status", &s))?)
            }
        },
    })
}

fn to_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

fn to_status(v: Option<i64>) -> Option<u16> {
    v.and_then(|v| u16::try_from(v).ok())
}

// ---- the store's webhook methods (called by `SqlStore`'s `Store` implementation) ---------------

pub(crate) async fn create(db: &Pool, vis: &Visibility, new: &NewWebhook) -> Result<StoredWebhook> {
    let op = "adding a webhook";
    let name = clean(new.name.trim()).into_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(StoreError::InvalidInput(
            "a webhook name must have 1 to 100 characters".to_owned(),
        ));
    }
    match new.workspace {
        None if !vis.is_all() => {
            return Err(StoreError::InvalidInput(
                "a webhook for every workspace receives the events of every customer, so only a \
                 global admin can add one: pick the workspace it is for"
                    .to_owned(),
            ));
        }
        Some(w) if !vis.allows(w) => return Err(crate::common::workspace_not_found(w)),
        _ => {}
    }
    let events: Vec<&str> = new.events.iter().map(|e| e.as_str()).collect();
    let mut tx = db.begin().await?;
    let sql = q(
        "INSERT INTO webhooks (workspace_id, name, format, url_ciphertext, url_nonce, url_shown, \
         secret_ciphertext, secret_nonce, events, enabled, created_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
    )
    .bind(new.workspace.map(|w| w.0))
    .bind(name.as_str())
    .bind(new.format.as_str())
    .bind(&new.url.ciphertext)
    .bind(&new.url.nonce)
    .bind(clean(&new.url_shown))
    .bind(new.secret.as_ref().map(|s| s.ciphertext.as_slice()))
    .bind(new.secret.as_ref().map(|s| s.nonce.as_slice()))
    .bind(events.join(","))
    .bind(true)
    .bind(new.created_at)
    .bind(clean(&new.created_by));
    let id = match tx.on().fetch_one(&sql, op).await {
        Ok(row) => row.int("id")?,
        Err(e) if e.is_unique_violation() => {
            return Err(StoreError::Conflict(format!(
                "a webhook named '{name}' already exists (names are compared without case)"
            )));
        }
        Err(e) if e.is_foreign_key_violation() => {
            return Err(crate::common::workspace_not_found(
                new.workspace.unwrap_or(WorkspaceId(0)),
            ));
        }
        Err(e) => return Err(e),
    };
    let read = q(&format!("SELECT {COLUMNS} FROM webhooks w WHERE w.id = $1")).bind(id);
    let stored = decode_webhook(&tx.on().fetch_one(&read, op).await?)?;
    crate::sql_store::insert_audit(
        &mut tx,
        &audit_entry("webhook.create", &new.created_by, new.created_at, &stored),
    )
    .await?;
    tx.commit(op).await?;
    Ok(stored)
}

pub(crate) async fn list(db: &Pool, vis: &Visibility) -> Result<Vec<StoredWebhook>> {
    let mut sql = q(&format!("SELECT {COLUMNS} FROM webhooks w WHERE true"));
    push_vis(db.dialect(), vis, &mut sql, "w.workspace_id");
    sql.text.push_str(" ORDER BY lower(w.name), w.id");
    db.read()
        .all(&sql, "listing webhooks", decode_webhook)
        .await
}

pub(crate) async fn get(db: &Pool, vis: &Visibility, id: i64) -> Result<StoredWebhook> {
    let mut sql = q(&format!("SELECT {COLUMNS} FROM webhooks w WHERE w.id = $1")).bind(id);
    push_vis(db.dialect(), vis, &mut sql, "w.workspace_id");
    db.read()
        .maybe(&sql, "reading a webhook", decode_webhook)
        .await?
        .ok_or_else(|| not_found(id))
}

pub(crate) async fn secrets(db: &Pool, id: i64) -> Result<WebhookSecrets> {
    let op = "reading a webhook's URL";
    let sql = q("SELECT url_ciphertext, url_nonce FROM webhooks WHERE id = $1").bind(id);
    let row = db
        .read()
        .fetch_optional(&sql, op)
        .await?
        .ok_or_else(|| not_found(id))?;
    let url = SecretCiphertext {
        ciphertext: row.bytes("url_ciphertext")?,
        nonce: row.bytes("url_nonce")?,
    };
    let sql = q("SELECT secret_ciphertext, secret_nonce FROM webhooks \
         WHERE id = $1 AND secret_ciphertext IS NOT NULL AND secret_nonce IS NOT NULL")
    .bind(id);
    let secret = match db.read().fetch_optional(&sql, op).await? {
        None => None,
        Some(row) => Some(SecretCiphertext {
            ciphertext: row.bytes("secret_ciphertext")?,
            nonce: row.bytes("secret_nonce")?,
        }),
    };
    Ok(WebhookSecrets { url, secret })
}

pub(crate) async fn set_enabled(
    db: &Pool,
    vis: &Visibility,
    id: i64,
    enabled: bool,
    by: &str,
    at: DateTime<Utc>,
) -> Result<StoredWebhook> {
    let op = "enabling or disabling a webhook";
    let mut tx = db.begin().await?;
    let mut sql = q("UPDATE webhooks SET enabled = $2 WHERE id = $1")
        .bind(id)
        .bind(enabled);
    push_vis(db.dialect(), vis, &mut sql, "workspace_id");
    if tx.on().execute(&sql, op).await? == 0 {
        return Err(not_found(id));
    }
    let read = q(&format!("SELECT {COLUMNS} FROM webhooks w WHERE w.id = $1")).bind(id);
    let stored = decode_webhook(&tx.on().fetch_one(&read, op).await?)?;
    let action = if enabled {
        "webhook.enable"
    } else {
        "webhook.disable"
    };
    crate::sql_store::insert_audit(&mut tx, &audit_entry(action, by, at, &stored)).await?;
    tx.commit(op).await?;
    Ok(stored)
}

pub(crate) async fn delete(
    db: &Pool,
    vis: &Visibility,
    id: i64,
    by: &str,
    at: DateTime<Utc>,
) -> Result<StoredWebhook> {
    let op = "removing a webhook";
    let mut tx = db.begin().await?;
    let mut read = q(&format!("SELECT {COLUMNS} FROM webhooks w WHERE w.id = $1")).bind(id);
    push_vis(db.dialect(), vis, &mut read, "w.workspace_id");
    let stored = tx
        .on()
        .maybe(&read, op, decode_webhook)
        .await?
        .ok_or_else(|| not_found(id))?;
    // Its deliveries and their attempts go with it (ON DELETE CASCADE).
    tx.on()
        .execute(&q("DELETE FROM webhooks WHERE id = $1").bind(id), op)
        .await?;
    crate::sql_store::insert_audit(&mut tx, &audit_entry("webhook.delete", by, at, &stored))
        .await?;
    tx.commit(op).await?;
    Ok(stored)
}

pub(crate) async fn enqueue(
    db: &Pool,
    event: &NewWebhookEvent,
    to: Recipients,
) -> Result<Vec<i64>> {
    let op = "queueing a webhook event";
    let mut tx = db.begin().await?;
    let pick = match to {
        Recipients::One(id) => q("SELECT id, events FROM webhooks WHERE id = $1").bind(id),
        Recipients::Subscribers { workspace } => {
            q("SELECT id, events FROM webhooks WHERE enabled = $1 \
             AND (workspace_id IS NULL OR workspace_id = $2) ORDER BY id")
            .bind(true)
            .bind(workspace.0)
        }
    };
    let candidates: Vec<(i64, String)> = tx
        .on()
        .all(&pick, op, |r| Ok((r.int("id")?, r.text("events")?)))
        .await?;
    if let (Recipients::One(id), true) = (to, candidates.is_empty()) {
        return Err(not_found(id));
    }
    let mut queued = Vec::new();
    for (webhook, events) in candidates {
        let subscribed = decode_events(&events)?.contains(&event.kind);
        if !subscribed && !matches!(to, Recipients::One(_)) {
            continue;
        }
        let sql = q(
            "INSERT INTO webhook_deliveries (webhook_id, event, dedup_key, payload, status, attempts, \
             next_attempt_at, created_at) VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5) \
             ON CONFLICT (webhook_id, dedup_key) DO NOTHING RETURNING id",
        )
        .bind(webhook)
        .bind(event.kind.as_str())
        .bind(event.dedup_key.as_deref().map(clean))
        .bind(clean(&event.payload))
        .bind(event.at);
        if let Some(row) = tx.on().fetch_optional(&sql, op).await? {
            queued.push(row.int("id")?);
        }
    }
    tx.commit(op).await?;
    Ok(queued)
}

pub(crate) async fn claim(
    db: &Pool,
    now: DateTime<Utc>,
    lease: chrono::Duration,
    limit: u32,
    only: Option<i64>,
) -> Result<Vec<ClaimedDelivery>> {
    let d = db.dialect();
    let mut sql = q(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $2 \
         WHERE id IN (SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
         WHERE d.status = 'pending' AND d.next_attempt_at <= $1",
    )
    .bind(now)
    .bind(now + lease);
    match only {
        // "Send test" sends its delivery now, even to a disabled webhook.
        Some(id) => {
            let p = sql.arg(Arg::Int(id));
            sql.text.push_str(&format!(" AND d.id = {p}"));
        }
        None => {
            let p = sql.arg(Arg::Bool(true));
            sql.text.push_str(&format!(" AND w.enabled = {p}"));
        }
    }
    let pl = sql.arg(Arg::Int(i64::from(limit.clamp(1, 1000))));
    // On PostgreSQL a row another worker is claiming is passed over, not waited for; the
    // UPDATE then moves it a lease ahead, so no other worker claims it until then.
    let lock = match d.backend {
        crate::types::Backend::Postgres => " FOR UPDATE OF d SKIP LOCKED",
        crate::types::Backend::Sqlite => "",
    };
    sql.text.push_str(&format!(
        " ORDER BY d.next_attempt_at, d.id LIMIT {pl}{lock}) \
         RETURNING id, webhook_id, event, payload, attempts, created_at"
    ));
    let mut claimed = db
        .write()
        .all(&sql, "claiming webhook deliveries", |r| {
            let kind = r.text("event")?;
            Ok(ClaimedDelivery {
                id: r.int("id")?,
                webhook_id: r.int("webhook_id")?,
                kind: WebhookEventKind::parse(&kind)
                    .ok_or_else(|| corrupt("webhook event", &kind))?,
                payload: r.text("payload")?,
                attempt: to_u32(r.int("attempts")?),
                created_at: r.ts("created_at")?,
            })
        })
        .await?;
    claimed.sort_by_key(|c| c.id);
    Ok(claimed)
}

pub(crate) async fn record_attempt(
    db: &Pool,
    delivery: i64,
    outcome: &AttemptOutcome,
) -> Result<()> {
    let op = "recording a webhook attempt";
    let mut tx = db.begin().await?;
    let status = outcome.http_status.map(i64::from);
    let error = outcome.error.as_deref().map(clean);
    let insert = q(
        "INSERT INTO webhook_attempts (delivery_id, attempt, at, http_status, error) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(delivery)
    .bind(outcome.attempt)
    .bind(outcome.at)
    .bind(status)
    .bind(error.clone());
    tx.on().execute(&insert, op).await?;
    let (state, next, delivered) = match outcome.next {
        AttemptNext::Delivered => (DeliveryStatus::Delivered, outcome.at, Some(outcome.at)),
        AttemptNext::RetryAt(t) => (DeliveryStatus::Pending, t, None),
        AttemptNext::Failed => (DeliveryStatus::Failed, outcome.at, None),
    };
    let update = q(
        "UPDATE webhook_deliveries SET status = $2, next_attempt_at = $3, last_status = $4, \
         last_error = $5, delivered_at = $6 WHERE id = $1 AND status = 'pending'",
    )
    .bind(delivery)
    .bind(state.as_str())
    .bind(next)
    .bind(status)
    .bind(error)
    .bind(delivered);
    tx.on().execute(&update, op).await?;
    tx.commit(op).await
}

pub(crate) async fn deliveries(
    db: &Pool,
    vis: &Visibility,
    webhook: i64,
    limit: u32,
) -> Result<Vec<StoredDelivery>> {
    let op = "reading a webhook's deliveries";
    // `NotFound` for a webhook outside `vis`, as for one that does not exist.
    get(db, vis, webhook).await?;
    let sql = q(
        "SELECT id, webhook_id, event, status, attempts, next_attempt_at, last_status, \
         last_error, created_at, delivered_at FROM webhook_deliveries WHERE webhook_id = $1 \
         ORDER BY id DESC LIMIT $2",
    )
    .bind(webhook)
    .bind(i64::from(limit.clamp(1, 1000)));
    let mut listed = db
        .read()
        .all(&sql, op, |r| {
            let kind = r.text("event")?;
            let status = r.text("status")?;
            let status = DeliveryStatus::parse(&status)
                .ok_or_else(|| corrupt("delivery status", &status))?;
            Ok(StoredDelivery {
                id: r.int("id")?,
                webhook_id: r.int("webhook_id")?,
                kind: WebhookEventKind::parse(&kind)
                    .ok_or_else(|| corrupt("webhook event", &kind))?,
                status,
                attempts: to_u32(r.int("attempts")?),
                next_attempt_at: (status == DeliveryStatus::Pending)
                    .then(|| r.opt_ts("next_attempt_at"))
                    .transpose()?
                    .flatten(),
                last_status: to_status(r.opt_int("last_status")?),
                last_error: r.opt_text("last_error")?,
                created_at: r.ts("created_at")?,
                delivered_at: r.opt_ts("delivered_at")?,
                log: Vec::new(),
            })
        })
        .await?;
    let Some(oldest) = listed.last().map(|d| d.id) else {
        return Ok(listed);
    };
    let sql = q(
        "SELECT a.delivery_id, a.attempt, a.at, a.http_status, a.error FROM webhook_attempts a \
         JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.webhook_id = $1 AND d.id >= $2 \
         ORDER BY a.delivery_id, a.attempt, a.id",
    )
    .bind(webhook)
    .bind(oldest);
    let attempts = db
        .read()
        .all(&sql, op, |r| {
            Ok((
                r.int("delivery_id")?,
                DeliveryAttempt {
                    attempt: to_u32(r.int("attempt")?),
                    at: r.ts("at")?,
                    http_status: to_status(r.opt_int("http_status")?),
                    error: r.opt_text("error")?,
                },
            ))
        })
        .await?;
    for (delivery, attempt) in attempts {
        if let Some(d) = listed.iter_mut().find(|d| d.id == delivery) {
            d.log.push(attempt);
        }
    }
    Ok(listed)
}

pub(crate) async fn mark_alerted(
    db: &Pool,
    kind: &str,
    subjects: &[String],
    at: DateTime<Utc>,
) -> Result<Vec<String>> {
    let op = "recording what was alerted";
    let d = db.dialect();
    let mut fresh = Vec::new();
    let mut tx = db.begin().await?;
    // Most subjects were alerted before (every immediate finding is looked at after each run):
    // those are read in one statement per chunk, and only the new ones inserted.
    for chunk in subjects.chunks(1000) {
        let mut known = q("SELECT subject FROM webhook_alerted WHERE kind = $1").bind(kind);
        let ph = known.arg(Arg::Texts(
            chunk.iter().map(|s| clean(s).into_owned()).collect(),
        ));
        known
            .text
            .push_str(&format!(" AND {}", d.in_list("subject", &ph)));
        let known: std::collections::HashSet<String> = tx
            .on()
            .all(&known, op, |r| r.text("subject"))
            .await?
            .into_iter()
            .collect();
        for subject in chunk {
            if known.contains(clean(subject).as_ref()) {
                continue;
            }
            let sql = q(
                "INSERT INTO webhook_alerted (kind, subject, alerted_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (kind, subject) DO NOTHING RETURNING subject",
            )
            .bind(kind)
            .bind(clean(subject))
            .bind(at);
            if tx.on().fetch_optional(&sql, op).await?.is_some() {
                fresh.push(subject.clone());
            }
        }
    }
    tx.commit(op).await?;
    Ok(fresh)
}
