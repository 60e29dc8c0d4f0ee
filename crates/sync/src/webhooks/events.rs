//! The one place where what happened becomes webhook deliveries: after a sync run (it failed or
//! was held; findings became `immediate`) and on the scheduler's periodic check (findings passed
//! their due date; a client secret expires within 30 days). Each event goes, once, to every
//! enabled webhook of the integration's workspace (or of every workspace) subscribed to it.
//!
//! Payloads are built from what the portal shows (names, CVEs, priorities, dates, the run's
//! error in words) and never from a secret. A finding is alerted as immediate once and as
//! breaching its due date once (`Store::mark_alerted`), so a webhook is not told the same thing
//! on every run or check.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rampart_model::priority::{Decision, SlaStatus};
use rampart_model::{FindingStatus, Integration, RunStatus, SyncRun, Verdict, WorkspaceId};
use rampart_store::{
    FindingFilter, FindingOrder, NewWebhookEvent, Recipients, Store, StoreError, StoredFinding,
    StoredWebhook, Visibility, WebhookEventKind,
};
use serde_json::{Value, json};

/// Findings an event names (the count covers them all).
pub const TOP: usize = 10;
/// Findings one event looks at, at most (the most urgent first).
const SCAN: usize = 5_000;
/// A secret expiring within this many days is alerted.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Whether any enabled webhook of `workspace` (or of every workspace) wants `kind`: when none
/// does, nothing is read or marked.
async fn wanted(
    store: &dyn Store,
    workspace: WorkspaceId,
    kind: WebhookEventKind,
) -> Result<bool, StoreError> {
    Ok(store
        .list_webhooks(&Visibility::All)
        .await?
        .iter()
        .any(|w: &StoredWebhook| {
            w.enabled && w.events.contains(&kind) && w.workspace_id.is_none_or(|ws| ws == workspace)
        }))
}

async fn workspace_name(store: &dyn Store, id: WorkspaceId) -> Option<String> {
    store
        .list_workspaces()
        .await
        .ok()?
        .into_iter()
        .find(|w| w.id == id)
        .map(|w| w.name)
}

/// `base` + `path`, when a public base URL is configured.
fn link(base: Option<&str>, path: &str) -> Value {
    match base {
        Some(b) if !b.trim().is_empty() => {
            json!(format!("{}{path}", b.trim().trim_end_matches('/')))
        }
        _ => Value::Null,
    }
}

/// The generic body of an event (docs/webhooks.md).
#[allow(clippy::too_many_arguments)]
fn envelope(
    kind: WebhookEventKind,
    at: DateTime<Utc>,
    workspace: Option<(WorkspaceId, Option<String>)>,
    integration: Option<&Integration>,
    title: &str,
    text: &str,
    link: Value,
    data: Value,
) -> String {
    json!({
        "event": kind.as_str(),
        "occurred_at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "workspace": workspace.map(|(id, name)| json!({"id": id.0, "name": name})),
        "integration": integration.map(|i| json!({
            "id": i.id,
            "name": i.name.as_str(),
            "product": i.product.as_str(),
        })),
        "title": title,
        "text": text,
        "link": link,
        "data": data,
    })
    .to_string()
}

async fn queue(
    store: &dyn Store,
    integration: &Integration,
    kind: WebhookEventKind,
    dedup_key: String,
    payload: String,
    at: DateTime<Utc>,
) -> Result<usize, StoreError> {
    Ok(store
        .enqueue_webhook_event(
            &NewWebhookEvent {
                kind,
                dedup_key: Some(dedup_key),
                payload,
                at,
            },
            Recipients::Subscribers {
                workspace: integration.workspace_id,
            },
        )
        .await?
        .len())
}

/// Microsoft's error code in a run's error, if it names one (`AADSTS7000215`, `Authorization_RequestDenied`, …).
fn microsoft_code(error: &str) -> Option<String> {
    let start = error.find("AADSTS")?;
    let code: String = error[start..]
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    Some(code)
}

/// After a run: a run that failed or was held becomes `sync_failed`; findings that became
/// `immediate` in it become one `immediate_finding` event. Returns how many deliveries were
/// queued. Errors are the store's; the caller logs them (an alert never fails a sync).
pub async fn after_run(
    store: &dyn Store,
    public_url: Option<&str>,
    integration: &Integration,
    run: &SyncRun,
) -> Result<usize, StoreError> {
    let at = run.finished_at.unwrap_or_else(Utc::now);
    let mut queued = 0;
    let held = matches!(run.verdict, Some(Verdict::Held(_)));
    if (run.status == RunStatus::Failed || held)
        && wanted(
            store,
            integration.workspace_id,
            WebhookEventKind::SyncFailed,
        )
        .await?
    {
        let workspace = workspace_name(store, integration.workspace_id).await;
        let error = run.error.clone().unwrap_or_default();
        let (title, state) = if held {
            (format!("Sync of {} held", integration.name), "held")
        } else {
            (format!("Sync of {} failed", integration.name), "failed")
        };
        let payload = envelope(
            WebhookEventKind::SyncFailed,
            at,
            Some((integration.workspace_id, workspace)),
            Some(integration),
            &title,
            &error,
            link(public_url, &format!("/integrations/{}", integration.id)),
            json!({
                "run_id": run.id,
                "status": state,
                "error": error,
                "microsoft_error_code": microsoft_code(&error),
            }),
        );
        queued += queue(
            store,
            integration,
            WebhookEventKind::SyncFailed,
            format!("run:{}", run.id),
            payload,
            at,
        )
        .await?;
    }
    if run.status != RunStatus::Failed
        && wanted(
            store,
            integration.workspace_id,
            WebhookEventKind::ImmediateFinding,
        )
        .await?
    {
        let filter = FindingFilter {
            integration: Some(integration.id),
            status: Some(FindingStatus::Open),
            // Every immediate finding, not only those this run changed: one escalated by a KEV
            // refresh since the last run is alerted now. What was alerted before is skipped.
            decision: Some(Decision::Immediate),
            ..FindingFilter::default()
        };
        let fresh = fresh_findings(
            store,
            &filter,
            "immediate_finding",
            |f| f.id.to_string(),
            at,
        )
        .await?;
        if !fresh.is_empty() {
            let workspace = workspace_name(store, integration.workspace_id).await;
            let count = fresh.len();
            let title = format!(
                "{count} finding{} became immediate",
                if count == 1 { "" } else { "s" }
            );
            let text = format!(
                "{}: {count} finding{} need{} action now (SSVC decision immediate)",
                integration.name,
                if count == 1 { "" } else { "s" },
                if count == 1 { "s" } else { "" }
            );
            let payload = envelope(
                WebhookEventKind::ImmediateFinding,
                at,
                Some((integration.workspace_id, workspace)),
                Some(integration),
                &title,
                &text,
                link(
                    public_url,
                    &format!(
                        "/findings?integration={}&decision=immediate",
                        integration.id
                    ),
                ),
                json!({"run_id": run.id, "count": count, "top": top(&fresh, public_url)}),
            );
            queued += queue(
                store,
                integration,
                WebhookEventKind::ImmediateFinding,
                format!("run:{}", run.id),
                payload,
                at,
            )
            .await?;
        }
    }
    Ok(queued)
}

/// The findings of `filter` (most urgent first, at most [`SCAN`]) not alerted for `kind` before,
/// now marked alerted.
async fn fresh_findings(
    store: &dyn Store,
    filter: &FindingFilter,
    kind: &str,
    subject: impl Fn(&StoredFinding) -> String,
    at: DateTime<Utc>,
) -> Result<Vec<StoredFinding>, StoreError> {
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .findings_sorted(
                &Visibility::All,
                filter,
                FindingOrder::PriorityDesc,
                after,
                1000,
            )
            .await?;
        seen.extend(page.items);
        match page.next {
            Some(next) if seen.len() < SCAN => after = Some(next),
            _ => break,
        }
    }
    let subjects: Vec<String> = seen.iter().map(&subject).collect();
    let fresh = store.mark_alerted(kind, &subjects, at).await?;
    let fresh: std::collections::HashSet<String> = fresh.into_iter().collect();
    Ok(seen
        .into_iter()
        .filter(|f| fresh.contains(&subject(f)))
        .collect())
}

/// The first [`TOP`] findings as events list them.
fn top(findings: &[StoredFinding], public_url: Option<&str>) -> Vec<Value> {
    findings
        .iter()
        .take(TOP)
        .map(|f| {
            let cve = f.finding.key.cve_id.as_str();
            json!({
                "finding_id": f.id,
                "cve": cve,
                "asset": f.finding.asset_name.clone().unwrap_or_else(|| f.finding.key.asset_source_id.clone()),
                "software": format!("{} {}", f.finding.key.software_vendor, f.finding.key.software_name).trim().to_owned(),
                "priority": f.priority,
                "decision": f.decision.map(|d| d.as_str()),
                "due_at": f.due_at.map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                "link": link(public_url, &format!("/vulnerabilities/{cve}")),
            })
        })
        .collect()
}

/// Findings that passed their due date (not accepted by an exception) and were not alerted
/// before: one `sla_breach` event per integration. Returns how many deliveries were queued.
pub async fn sla_breaches(
    store: &dyn Store,
    public_url: Option<&str>,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut queued = 0;
    let mut names: HashMap<WorkspaceId, Option<String>> = HashMap::new();
    for integration in store.list_integrations(&Visibility::All).await? {
        if !wanted(store, integration.workspace_id, WebhookEventKind::SlaBreach).await? {
            continue;
        }
        let filter = FindingFilter {
            integration: Some(integration.id),
            status: Some(FindingStatus::Open),
            sla_status: Some((SlaStatus::Overdue, now)),
            ..FindingFilter::default()
        };
        // A finding whose due date moves (an exception ended, it reopened) may breach again.
        let subject = |f: &StoredFinding| {
            format!(
                "{}@{}",
                f.id,
                f.due_at.map(|d| d.timestamp()).unwrap_or_default()
            )
        };
        let fresh = fresh_findings(store, &filter, "sla_breach", subject, now).await?;
        if fresh.is_empty() {
            continue;
        }
        let workspace = match names.get(&integration.workspace_id) {
            Some(n) => n.clone(),
            None => {
                let n = workspace_name(store, integration.workspace_id).await;
                names.insert(integration.workspace_id, n.clone());
                n
            }
        };
        let count = fresh.len();
        let title = format!(
            "{count} finding{} passed {} due date",
            if count == 1 { "" } else { "s" },
            if count == 1 { "its" } else { "their" }
        );
        let text = format!(
            "{}: {count} open finding{} not accepted by an exception {} overdue",
            integration.name,
            if count == 1 { "" } else { "s" },
            if count == 1 { "is" } else { "are" }
        );
        let payload = envelope(
            WebhookEventKind::SlaBreach,
            now,
            Some((integration.workspace_id, workspace)),
            Some(&integration),
            &title,
            &text,
            link(
                public_url,
                &format!("/findings?integration={}&sla=overdue", integration.id),
            ),
            json!({"count": count, "top": top(&fresh, public_url)}),
        );
        queued += queue(
            store,
            &integration,
            WebhookEventKind::SlaBreach,
            format!("sla:{}:{}", integration.id, now.timestamp_micros()),
            payload,
            now,
        )
        .await?;
    }
    Ok(queued)
}

/// Integrations whose client secret expires within [`EXPIRY_WARNING_DAYS`] (or has expired):
/// one `secret_expiring` event per integration and expiry date. Returns how many deliveries
/// were queued.
pub async fn secret_expiring(
    store: &dyn Store,
    public_url: Option<&str>,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut queued = 0;
    let today = now.date_naive();
    for integration in store.list_integrations(&Visibility::All).await? {
        let Some(days) = integration.secret_hint.days_left(today) else {
            continue;
        };
        let Some(expires_on) = integration.secret_hint.expires_on else {
            continue;
        };
        if days > EXPIRY_WARNING_DAYS
            || !wanted(
                store,
                integration.workspace_id,
                WebhookEventKind::SecretExpiring,
            )
            .await?
        {
            continue;
        }
        let workspace = workspace_name(store, integration.workspace_id).await;
        let title = format!("Client secret of {} expires", integration.name);
        let text = if days < 0 {
            format!(
                "The client secret of {} expired on {expires_on}: syncs fail until a new secret is entered",
                integration.name
            )
        } else {
            format!(
                "The client secret of {} expires on {expires_on} ({days} days): create a new secret in Microsoft Entra ID and enter it in Rampart before then",
                integration.name
            )
        };
        let payload = envelope(
            WebhookEventKind::SecretExpiring,
            now,
            Some((integration.workspace_id, workspace)),
            Some(&integration),
            &title,
            &text,
            link(public_url, &format!("/integrations/{}", integration.id)),
            // The expiry date and the secret's last characters as the portal shows them; never
            // the secret.
            json!({"expires_on": expires_on.to_string(), "days_left": days}),
        );
        queued += queue(
            store,
            &integration,
            WebhookEventKind::SecretExpiring,
            format!("secret:{}:{expires_on}", integration.id),
            payload,
            now,
        )
        .await?;
    }
    Ok(queued)
}

/// The periodic check: SLA breaches and expiring secrets.
pub async fn check_due(
    store: &dyn Store,
    public_url: Option<&str>,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    Ok(sla_breaches(store, public_url, now).await?
        + secret_expiring(store, public_url, now).await?)
}

/// The body of "Send test".
pub(crate) fn test_payload(webhook: &StoredWebhook, actor: &str, at: DateTime<Utc>) -> String {
    envelope(
        WebhookEventKind::Test,
        at,
        webhook.workspace_id.map(|w| (w, None)),
        None,
        "Rampart test message",
        &format!(
            "A test of webhook '{}', sent by {actor}: this receiver gets Rampart's alerts",
            webhook.name
        ),
        Value::Null,
        json!({"webhook_id": webhook.id, "requested_by": actor}),
    )
}
