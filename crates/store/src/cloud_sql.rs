//! What both backends share for Defender for Cloud: input preparation, the SQL of the cloud
//! writes and reads, the reconcile statements of each scope, and the row decoders.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use rampart_model::{
    ControlScore, IntegrationId, PostureScore, Recommendation, RunId, Severity, Subscription,
    TenantScoreParts, weighted_percent,
};

use crate::common::*;
use crate::error::{Result, StoreError};
use crate::types::*;
use crate::types_cloud::*;
use crate::workspace::Visibility;

// ---- input preparation ---------------------------------------------------------------------------

/// A recommendation as stored: ids lower-cased (ARM spells them in mixed case), NUL cleaned.
#[derive(Clone)]
pub(crate) struct RecommendationRow {
    pub assessment_id: String,
    pub subscription_id: String,
    pub key: String,
    pub resource_id: String,
    pub display_name: Option<String>,
    pub status: String,
    pub cause: Option<String>,
    pub severity: Option<String>,
    pub category: Option<String>,
    pub status_changed: Option<DateTime<Utc>>,
    pub risk_level: Option<String>,
    /// [`rampart_model::RecommendationRisk`] as JSON.
    pub risk: Option<String>,
}

fn lower(s: &str) -> String {
    clean(s).to_ascii_lowercase()
}

fn owned(s: &Option<String>) -> Option<String> {
    clean_opt(s).map(|c| c.into_owned())
}

/// The batch's recommendations, one per assessment id (the last occurrence wins).
pub(crate) fn recommendation_rows(recs: &[Recommendation]) -> Vec<RecommendationRow> {
    let rows: Vec<RecommendationRow> = recs
        .iter()
        .map(|r| RecommendationRow {
            assessment_id: lower(&r.assessment_id),
            subscription_id: lower(&r.subscription_id),
            key: lower(&r.key),
            resource_id: lower(&r.resource_id),
            display_name: owned(&r.display_name),
            status: clean(&r.status).into_owned(),
            cause: owned(&r.cause),
            severity: owned(&r.severity),
            category: owned(&r.category),
            status_changed: r.status_changed.map(truncate_micros),
            risk_level: r.risk.as_ref().and_then(|k| owned(&k.level)),
            risk: r
                .risk
                .as_ref()
                .and_then(|k| serde_json::to_string(k).ok())
                .map(|j| clean(&j).into_owned()),
        })
        .collect();
    dedupe_last(&rows, |r| r.assessment_id.as_str())
        .into_iter()
        .cloned()
        .collect()
}

/// The batch's subscriptions, one per lower-cased id (the last occurrence wins).
pub(crate) fn subscription_rows(subs: &[Subscription]) -> Vec<Subscription> {
    let rows: Vec<Subscription> = subs
        .iter()
        .map(|s| Subscription {
            subscription_id: lower(&s.subscription_id),
            display_name: owned(&s.display_name),
            state: owned(&s.state),
        })
        .collect();
    dedupe_last(&rows, |s| s.subscription_id.clone())
        .into_iter()
        .cloned()
        .collect()
}

/// What `upsert_subscriptions` finds stored: id → (display name, state).
pub(crate) type StoredSubscriptionFacts = HashMap<String, (Option<String>, Option<String>)>;

/// Counts a subscription upsert from what was stored before it.
pub(crate) fn count_subscriptions(
    before: &StoredSubscriptionFacts,
    rows: &[Subscription],
) -> UpsertCounts {
    let mut counts = UpsertCounts::default();
    for s in rows {
        match before.get(&s.subscription_id) {
            None => counts.new += 1,
            Some((name, state)) if *name == s.display_name && *state == s.state => {
                counts.unchanged += 1
            }
            Some(_) => counts.updated += 1,
        }
    }
    counts
}

/// The scores and controls of one `record_posture` call, ids lower-cased and deduplicated, and
/// the subscriptions whose rows of the run they replace.
pub(crate) struct PostureRows {
    pub scores: Vec<PostureScore>,
    pub controls: Vec<ControlScore>,
    pub subscriptions: Vec<String>,
}

pub(crate) fn posture_rows(scores: &[PostureScore], controls: &[ControlScore]) -> PostureRows {
    let scores: Vec<PostureScore> = scores
        .iter()
        .map(|s| PostureScore {
            subscription_id: lower(&s.subscription_id),
            subscription_name: owned(&s.subscription_name),
            ..s.clone()
        })
        .collect();
    let controls: Vec<ControlScore> = controls
        .iter()
        .map(|c| ControlScore {
            subscription_id: lower(&c.subscription_id),
            control_id: lower(&c.control_id),
            display_name: owned(&c.display_name),
            ..c.clone()
        })
        .collect();
    let scores: Vec<PostureScore> = dedupe_last(&scores, |s| s.subscription_id.clone())
        .into_iter()
        .cloned()
        .collect();
    let controls: Vec<ControlScore> = dedupe_last(&controls, |c| {
        (c.subscription_id.clone(), c.control_id.clone())
    })
    .into_iter()
    .cloned()
    .collect();
    let mut subscriptions: Vec<String> = scores
        .iter()
        .map(|s| s.subscription_id.clone())
        .chain(controls.iter().map(|c| c.subscription_id.clone()))
        .collect();
    subscriptions.sort_unstable();
    subscriptions.dedup();
    PostureRows {
        scores,
        controls,
        subscriptions,
    }
}

// ---- writes --------------------------------------------------------------------------------------

/// $1 integration, $2 subscription, $3 display name, $4 state, $5 run start, $6 run.
pub(crate) const UPSERT_SUBSCRIPTION: &str = "INSERT INTO subscriptions \
(integration_id, subscription_id, display_name, state, first_observed, last_observed, seen_run) \
VALUES ($1, $2, $3, $4, $5, $5, $6) ON CONFLICT (integration_id, subscription_id) DO UPDATE SET \
display_name = excluded.display_name, state = excluded.state, last_observed = excluded.last_observed, \
seen_run = excluded.seen_run";

/// $1 integration.
pub(crate) const SUBSCRIPTION_FACTS: &str =
    "SELECT subscription_id, display_name, state FROM subscriptions WHERE integration_id = $1";

/// $1 run, $2 integration, $3 subscription, $4 outcome, $5 detail, $6 run start.
pub(crate) const RECORD_READ: &str = "INSERT INTO subscription_reads \
(run_id, integration_id, subscription_id, outcome, detail, at) VALUES ($1, $2, $3, $4, $5, $6) \
ON CONFLICT (run_id, subscription_id) DO UPDATE SET outcome = excluded.outcome, detail = excluded.detail, at = excluded.at";

/// A read of a subscription never listed: the subscription is known from it. $1 integration,
/// $2 subscription, $3 run start.
pub(crate) const SUBSCRIPTION_FROM_READ: &str = "INSERT INTO subscriptions \
(integration_id, subscription_id, first_observed, last_observed) VALUES ($1, $2, $3, $3) \
ON CONFLICT (integration_id, subscription_id) DO NOTHING";

/// The subscription's last read, unless a later run already recorded one. $1 integration,
/// $2 subscription, $3 run, $4 outcome, $5 detail, $6 run start.
pub(crate) const SUBSCRIPTION_LAST_READ: &str = "UPDATE subscriptions SET last_read_run = $3, \
last_read_outcome = $4, last_read_detail = $5, last_read_at = $6 \
WHERE integration_id = $1 AND subscription_id = $2 AND (last_read_run IS NULL OR last_read_run <= $3)";

/// $1 run, $2 subscription.
pub(crate) const DELETE_RUN_SCORES: &str =
    "DELETE FROM posture_scores WHERE run_id = $1 AND subscription_id = $2";
pub(crate) const DELETE_RUN_CONTROLS: &str =
    "DELETE FROM posture_controls WHERE run_id = $1 AND subscription_id = $2";

/// $1 integration, $2 run, $3 subscription, $4 name, $5 captured, $6 current, $7 max,
/// $8 fraction, $9 weight.
pub(crate) const INSERT_SCORE: &str = "INSERT INTO posture_scores \
(integration_id, run_id, subscription_id, subscription_name, captured_at, score_current, score_max, fraction, weight) \
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// $1 integration, $2 run, $3 subscription, $4 control, $5 name, $6 captured, $7 current,
/// $8 max, $9 fraction, $10 healthy, $11 unhealthy, $12 not applicable, $13 weight.
pub(crate) const INSERT_CONTROL: &str = "INSERT INTO posture_controls \
(integration_id, run_id, subscription_id, control_id, display_name, captured_at, score_current, score_max, fraction, \
healthy, unhealthy, not_applicable, weight) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

macro_rules! recommendation_insert_columns {
    () => {
        "integration_id, assessment_id, subscription_id, assessment_key, resource_id, asset_id, display_name, status, cause, severity, category, status_changed, first_observed, last_observed, seen_run, risk_level, risk"
    };
}
pub(crate) use recommendation_insert_columns;

/// The recommendation upsert's conflict clause (both backends). `recommendations.x` is the stored
/// row before the update, `excluded.x` the incoming one; see the trait for the rules.
macro_rules! recommendation_on_conflict {
    () => {
        " ON CONFLICT (integration_id, assessment_id) DO UPDATE SET \
change_kind = CASE WHEN excluded.status = 'Unhealthy' AND recommendations.status IN ('Healthy', 'Removed') THEN 3 \
WHEN recommendations.status IS DISTINCT FROM excluded.status \
OR recommendations.subscription_id IS DISTINCT FROM excluded.subscription_id \
OR recommendations.assessment_key IS DISTINCT FROM excluded.assessment_key \
OR recommendations.resource_id IS DISTINCT FROM excluded.resource_id \
OR recommendations.display_name IS DISTINCT FROM excluded.display_name \
OR recommendations.cause IS DISTINCT FROM excluded.cause \
OR recommendations.severity IS DISTINCT FROM excluded.severity \
OR recommendations.category IS DISTINCT FROM excluded.category \
OR recommendations.risk IS DISTINCT FROM excluded.risk THEN 1 ELSE 2 END, \
reopened_count = recommendations.reopened_count + CASE WHEN excluded.status = 'Unhealthy' \
AND recommendations.status IN ('Healthy', 'Removed') THEN 1 ELSE 0 END, \
resolved_at = CASE WHEN excluded.status = 'Unhealthy' THEN NULL \
WHEN recommendations.status = 'Unhealthy' AND excluded.status = 'Healthy' THEN excluded.last_observed \
ELSE recommendations.resolved_at END, \
removed_at = NULL, \
subscription_id = excluded.subscription_id, assessment_key = excluded.assessment_key, \
resource_id = excluded.resource_id, asset_id = COALESCE(excluded.asset_id, recommendations.asset_id), \
display_name = excluded.display_name, status = excluded.status, cause = excluded.cause, \
severity = excluded.severity, category = excluded.category, status_changed = excluded.status_changed, \
last_observed = excluded.last_observed, seen_run = excluded.seen_run, \
risk_level = excluded.risk_level, risk = excluded.risk \
RETURNING change_kind"
    };
}
pub(crate) use recommendation_on_conflict;

// ---- reconciliation ------------------------------------------------------------------------------

/// One statement of a reconciliation and the text values bound after its leading parameters.
pub(crate) struct Stmt {
    pub sql: String,
    pub args: Vec<String>,
}

impl Stmt {
    pub(crate) fn fixed(sql: &str) -> Self {
        Self {
            sql: sql.to_owned(),
            args: Vec::new(),
        }
    }
}

/// The statements of one reconciliation. `count` binds $1 integration, $2 run, then its args;
/// the others bind $1 integration, $2 run, $3 time, then their args.
pub(crate) struct ReconcilePlan {
    pub count: Stmt,
    pub assets: Stmt,
    pub findings: Stmt,
    pub recommendations: Option<Stmt>,
}

/// Recommendations not seen by the run become `Removed`. $1 integration, $2 run, $3 time.
const RECONCILE_RECOMMENDATIONS: &str = "UPDATE recommendations SET status = 'Removed', removed_at = $3, \
resolved_at = CASE WHEN status = 'Unhealthy' THEN $3 ELSE resolved_at END \
WHERE integration_id = $1 AND status <> 'Removed' AND seen_run IS DISTINCT FROM $2";

/// `(… OR …)`: `source_id` is `/subscriptions/{id}` or below it, for one of `prefixes`
/// (`/subscriptions/{id}/`), bound from `$first` on. An empty list matches nothing.
fn in_subscriptions(prefixes: &[String], first: usize) -> String {
    if prefixes.is_empty() {
        return "(1 = 0)".to_owned();
    }
    let parts: Vec<String> = prefixes
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let ph = first + k;
            // The length is ours (not user input); substr compares bytes exactly on both
            // backends, whatever PostgreSQL's collation.
            format!(
                "substr(source_id, 1, {len}) = ${ph} OR source_id || '/' = ${ph}",
                len = p.chars().count()
            )
        })
        .collect();
    format!("({})", parts.join(" OR "))
}

/// The statements of a reconciliation; `sighted`: the run left unchanged findings alone and
/// listed them in the temporary table `sighted` (see `unseen_finding`).
pub(crate) fn reconcile_plan(scope: &ReconcileScope, sighted: bool) -> ReconcilePlan {
    match scope {
        ReconcileScope::Everything => ReconcilePlan {
            count: Stmt::fixed(RECONCILE_COUNT),
            assets: Stmt::fixed(RECONCILE_ASSETS),
            findings: Stmt::fixed(&reconcile_findings(sighted)),
            recommendations: Some(Stmt::fixed(RECONCILE_RECOMMENDATIONS)),
        },
        ReconcileScope::AssetsOnly => ReconcilePlan {
            count: Stmt::fixed(RECONCILE_COUNT),
            assets: Stmt::fixed(RECONCILE_LISTED_ASSETS),
            findings: Stmt::fixed(RECONCILE_FINDINGS_OF_MISSING),
            recommendations: None,
        },
        ReconcileScope::Subscriptions(subs) => {
            let mut ids: Vec<String> = subs.iter().map(|s| lower(s.trim())).collect();
            ids.sort_unstable();
            ids.dedup();
            let prefixes: Vec<String> =
                ids.iter().map(|s| format!("/subscriptions/{s}/")).collect();
            let count = Stmt {
                sql: format!("{RECONCILE_COUNT} AND {}", in_subscriptions(&prefixes, 3)),
                args: prefixes.clone(),
            };
            let assets = Stmt {
                sql: format!("{RECONCILE_ASSETS} AND {}", in_subscriptions(&prefixes, 4)),
                args: prefixes.clone(),
            };
            let findings = Stmt {
                sql: format!(
                    "{FIX_BY_RECONCILING} \
                     WHERE integration_id = $1 AND status = 'open' \
                     AND asset_id IN (SELECT id FROM assets WHERE integration_id = $1 AND {}) \
                     AND ({} \
                     OR asset_id IN (SELECT id FROM assets WHERE integration_id = $1 AND status = 'missing'))",
                    in_subscriptions(&prefixes, 4),
                    unseen_finding(sighted)
                ),
                args: prefixes,
            };
            let list = if ids.is_empty() {
                "(1 = 0)".to_owned()
            } else {
                let phs: Vec<String> = (0..ids.len()).map(|k| format!("${}", 4 + k)).collect();
                format!("subscription_id IN ({})", phs.join(", "))
            };
            let recommendations = Stmt {
                sql: format!("{RECONCILE_RECOMMENDATIONS} AND {list}"),
                args: ids,
            };
            ReconcilePlan {
                count,
                assets,
                findings,
                recommendations: Some(recommendations),
            }
        }
    }
}

// ---- reads ---------------------------------------------------------------------------------------

const SUBSCRIPTION_SELECT: &str = "SELECT id, integration_id, subscription_id, display_name, state, first_observed, \
last_observed, last_read_run, last_read_outcome, last_read_detail, last_read_at FROM subscriptions";

pub(crate) fn subscriptions_query(
    d: Dialect,
    vis: &Visibility,
    integration: Option<IntegrationId>,
) -> Sql {
    let mut sql = Sql::new(SUBSCRIPTION_SELECT);
    if let Some(i) = integration {
        let ph = sql.arg(Arg::Int(i.get()));
        sql.and(&format!("integration_id = {ph}"));
    }
    vis.restrict(d, &mut sql, "integration_id");
    sql.text
        .push_str(" ORDER BY integration_id, subscription_id");
    sql
}

/// $1 run; a visibility's condition on the run's integration follows.
pub(crate) const SUBSCRIPTION_READS: &str = "SELECT subscription_id, run_id, outcome, detail, at \
FROM subscription_reads WHERE run_id = $1";

fn read_outcome(word: &str, detail: Option<String>) -> Result<SubscriptionReadOutcome> {
    Ok(match word {
        "ok" => SubscriptionReadOutcome::Ok,
        "failed" => SubscriptionReadOutcome::Failed(detail.unwrap_or_default()),
        "skipped" => SubscriptionReadOutcome::Skipped(detail.unwrap_or_default()),
        other => return Err(corrupt("subscription read outcome", other)),
    })
}

pub(crate) fn decode_subscription_read(r: &impl RowExt) -> Result<(String, SubscriptionRead)> {
    Ok((
        r.text("subscription_id")?,
        SubscriptionRead {
            run_id: r.run("run_id")?,
            at: r.ts("at")?,
            outcome: read_outcome(&r.text("outcome")?, r.opt_text("detail")?)?,
        },
    ))
}

pub(crate) fn decode_subscription(
    r: &impl RowExt,
    names: &IntegrationNames,
) -> Result<StoredSubscription> {
    let integration_id = r.integration("integration_id")?;
    let (integration, _) = integration_of(names, integration_id)?;
    let last_read = match (
        r.opt_int("last_read_run")?,
        r.opt_text("last_read_outcome")?,
    ) {
        (Some(run_id), Some(word)) => Some(SubscriptionRead {
            run_id: RunId(run_id),
            at: r.ts("last_read_at")?,
            outcome: read_outcome(&word, r.opt_text("last_read_detail")?)?,
        }),
        _ => None,
    };
    Ok(StoredSubscription {
        id: r.int("id")?,
        integration_id,
        integration,
        subscription: Subscription {
            subscription_id: r.text("subscription_id")?,
            display_name: r.opt_text("display_name")?,
            state: r.opt_text("state")?,
        },
        first_observed: r.ts("first_observed")?,
        last_observed: r.ts("last_observed")?,
        last_read,
    })
}

/// The rows of the newest run per (integration, subscription) of `table` (`posture_scores` or
/// `posture_controls`): newest = latest `captured_at`, then the later run.
fn latest_of(table: &str, columns: &str, filter: &str, order: &str) -> String {
    format!(
        "SELECT {columns} FROM (SELECT d.integration_id, d.subscription_id, \
         (SELECT q.run_id FROM {table} q WHERE q.integration_id = d.integration_id AND q.subscription_id = d.subscription_id \
         ORDER BY q.captured_at DESC, q.run_id DESC LIMIT 1) AS run_id \
         FROM (SELECT DISTINCT integration_id, subscription_id FROM {table}{filter}) d) l \
         JOIN {table} t ON t.run_id = l.run_id AND t.subscription_id = l.subscription_id \
         ORDER BY {order}"
    )
}

fn scope_filter(
    d: Dialect,
    sql: &mut Sql,
    vis: &Visibility,
    integration: Option<IntegrationId>,
    subscription: Option<&str>,
) -> String {
    let mut clauses = Vec::new();
    clauses.extend(vis.condition(d, sql, "integration_id"));
    if let Some(i) = integration {
        let ph = sql.arg(Arg::Int(i.get()));
        clauses.push(format!("integration_id = {ph}"));
    }
    if let Some(s) = subscription {
        let ph = sql.arg(Arg::Text(lower(s.trim())));
        clauses.push(format!("subscription_id = {ph}"));
    }
    if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    }
}

const SCORE_COLUMNS: &str = "t.integration_id, t.run_id, t.subscription_id, t.subscription_name, t.captured_at, \
t.score_current, t.score_max, t.fraction, t.weight";

pub(crate) fn latest_posture_query(
    d: Dialect,
    vis: &Visibility,
    integration: Option<IntegrationId>,
) -> Sql {
    let mut sql = Sql::default();
    let filter = scope_filter(d, &mut sql, vis, integration, None);
    sql.text = latest_of(
        "posture_scores",
        SCORE_COLUMNS,
        &filter,
        "t.integration_id, t.subscription_id",
    );
    sql
}

pub(crate) fn latest_controls_query(
    d: Dialect,
    vis: &Visibility,
    integration: Option<IntegrationId>,
    subscription: Option<&str>,
) -> Sql {
    let mut sql = Sql::default();
    let filter = scope_filter(d, &mut sql, vis, integration, subscription);
    sql.text = latest_of(
        "posture_controls",
        "t.integration_id, t.run_id, t.subscription_id, t.control_id, t.display_name, t.captured_at, \
         t.score_current, t.score_max, t.fraction, t.healthy, t.unhealthy, t.not_applicable, t.weight",
        &filter,
        "t.integration_id, t.subscription_id, t.score_max DESC, t.control_id",
    );
    sql
}

pub(crate) fn posture_history_query(
    d: Dialect,
    vis: &Visibility,
    integration: Option<IntegrationId>,
    since: Option<DateTime<Utc>>,
) -> Sql {
    let mut sql = Sql::new(
        "SELECT t.integration_id, t.run_id, t.subscription_id, t.subscription_name, t.captured_at, \
         t.score_current, t.score_max, t.fraction, t.weight FROM posture_scores t",
    );
    if let Some(i) = integration {
        let ph = sql.arg(Arg::Int(i.get()));
        sql.and(&format!("t.integration_id = {ph}"));
    }
    if let Some(since) = since {
        let ph = sql.arg(Arg::Time(since));
        sql.and(&format!("t.captured_at >= {ph}"));
    }
    vis.restrict(d, &mut sql, "t.integration_id");
    sql.text.push_str(" ORDER BY t.run_id");
    sql
}

pub(crate) fn decode_posture_score(
    r: &impl RowExt,
    names: &IntegrationNames,
) -> Result<StoredPostureScore> {
    let integration_id = r.integration("integration_id")?;
    let (integration, _) = integration_of(names, integration_id)?;
    let score = PostureScore {
        subscription_id: r.text("subscription_id")?,
        subscription_name: r.opt_text("subscription_name")?,
        current: r.opt_f64("score_current")?.unwrap_or(0.0),
        max: r.opt_f64("score_max")?.unwrap_or(0.0),
        fraction: r.opt_f64("fraction")?.unwrap_or(0.0),
        weight: r.int("weight")?,
    };
    Ok(StoredPostureScore {
        integration_id,
        integration,
        run_id: r.run("run_id")?,
        captured_at: r.ts("captured_at")?,
        percent: score.percent(),
        score,
    })
}

/// Groups score rows into one tenant point per run, oldest capture first.
pub(crate) fn posture_points(rows: Vec<StoredPostureScore>) -> Vec<PosturePoint> {
    let mut runs: BTreeMap<i64, Vec<StoredPostureScore>> = BTreeMap::new();
    for r in rows {
        runs.entry(r.run_id.get()).or_default().push(r);
    }
    let mut points: Vec<PosturePoint> = runs
        .into_iter()
        .filter_map(|(run_id, rows)| {
            let first = rows.first()?;
            let scores: Vec<PostureScore> = rows.iter().map(|r| r.score.clone()).collect();
            Some(PosturePoint {
                integration_id: first.integration_id,
                integration: first.integration.clone(),
                run_id: RunId(run_id),
                captured_at: rows.iter().map(|r| r.captured_at).max()?,
                subscriptions: rows.len() as u64,
                parts: TenantScoreParts::of(&scores)?,
                percent: weighted_percent(&scores),
            })
        })
        .collect();
    points.sort_by(|a, b| {
        a.captured_at
            .cmp(&b.captured_at)
            .then(a.run_id.cmp(&b.run_id))
    });
    points
}

pub(crate) fn decode_control(
    r: &impl RowExt,
    names: &IntegrationNames,
) -> Result<StoredControlScore> {
    let integration_id = r.integration("integration_id")?;
    let (integration, _) = integration_of(names, integration_id)?;
    Ok(StoredControlScore {
        integration_id,
        integration,
        run_id: r.run("run_id")?,
        captured_at: r.ts("captured_at")?,
        control: ControlScore {
            subscription_id: r.text("subscription_id")?,
            control_id: r.text("control_id")?,
            display_name: r.opt_text("display_name")?,
            current: r.opt_f64("score_current")?,
            max: r.opt_f64("score_max")?.unwrap_or(0.0),
            fraction: r.opt_f64("fraction")?,
            healthy: r.int("healthy")?,
            unhealthy: r.int("unhealthy")?,
            not_applicable: r.int("not_applicable")?,
            weight: r.int("weight")?,
        },
    })
}

/// Microsoft's spelling of a status typed in any case (`unhealthy` → `Unhealthy`), so that the
/// (integration, status) index serves the filter; other words are compared as given.
fn canonical_status(s: &str) -> String {
    [
        "Healthy",
        "Unhealthy",
        "NotApplicable",
        RECOMMENDATION_REMOVED,
    ]
    .into_iter()
    .find(|c| c.eq_ignore_ascii_case(s.trim()))
    .map(str::to_owned)
    .unwrap_or_else(|| clean(s).into_owned())
}

pub(crate) fn recommendations_query(
    d: Dialect,
    vis: &Visibility,
    f: &RecommendationFilter,
    after: Option<i64>,
    limit: u32,
) -> Sql {
    let mut sql = Sql::new(
        "SELECT r.id, r.integration_id, r.assessment_id, r.subscription_id, r.assessment_key, r.resource_id, \
         r.asset_id, r.display_name, r.status, r.cause, r.severity, r.category, r.status_changed, r.first_observed, \
         r.last_observed, r.resolved_at, r.removed_at, r.reopened_count, r.risk FROM recommendations r",
    );
    if let Some(after) = after {
        let ph = sql.arg(Arg::Int(after));
        sql.and(&format!("r.id > {ph}"));
    }
    // As in findings_query: either both leading columns of an index are fixed (rows come in id
    // order) or the primary key is walked and the rest filtered.
    match (f.integration, f.status.as_deref()) {
        (Some(i), Some(s)) => {
            let pi = sql.arg(Arg::Int(i.get()));
            let ps = sql.arg(Arg::Text(canonical_status(s)));
            sql.and(&format!("r.integration_id = {pi} AND r.status = {ps}"));
        }
        (Some(i), None) => {
            let pi = sql.arg(Arg::Int(i.get()));
            sql.and(&format!("+r.integration_id = {pi}"));
        }
        (None, Some(s)) => {
            let ps = sql.arg(Arg::Text(canonical_status(s)));
            sql.and(&format!("r.status || '' = {ps}"));
        }
        (None, None) => {}
    }
    if let Some(s) = f.subscription.as_deref().filter(|s| !s.is_empty()) {
        let ph = sql.arg(Arg::Text(lower(s.trim())));
        sql.and(&format!("r.subscription_id || '' = {ph}"));
    }
    if let Some(s) = f.severity.as_deref().filter(|s| !s.is_empty()) {
        let ph = sql.arg(Arg::Text(lower(s.trim())));
        sql.and(&format!("lower(r.severity) = {ph}"));
    }
    if let Some(a) = f.asset_id {
        let ph = sql.arg(Arg::Int(a));
        sql.and(&format!("r.asset_id = {ph}"));
    }
    if let Some(q) = f.search.as_deref().filter(|q| !q.is_empty()) {
        let ph = sql.arg(Arg::Text(like_pattern(q)));
        sql.and(&format!(
            "(r.display_name {op} {ph} ESCAPE '\\' OR r.resource_id {op} {ph} ESCAPE '\\' OR r.assessment_key {op} {ph} ESCAPE '\\')",
            op = d.ilike
        ));
    }
    if let Some(t) = f.changed_since {
        let ph = sql.arg(Arg::Time(t));
        sql.and(&format!(
            "(r.last_observed > {ph} OR r.resolved_at > {ph} OR r.removed_at > {ph})"
        ));
    }
    vis.restrict(d, &mut sql, "r.integration_id");
    sql.text.push_str(" ORDER BY r.id");
    page_limit(&mut sql, limit);
    sql
}

pub(crate) fn decode_recommendation(
    r: &impl RowExt,
    names: &IntegrationNames,
) -> Result<StoredRecommendation> {
    let integration_id = r.integration("integration_id")?;
    let (integration, _) = integration_of(names, integration_id)?;
    Ok(StoredRecommendation {
        id: r.int("id")?,
        integration_id,
        integration,
        asset_id: r.opt_int("asset_id")?,
        recommendation: Recommendation {
            subscription_id: r.text("subscription_id")?,
            assessment_id: r.text("assessment_id")?,
            key: r.text("assessment_key")?,
            resource_id: r.text("resource_id")?,
            display_name: r.opt_text("display_name")?,
            status: r.text("status")?,
            cause: r.opt_text("cause")?,
            severity: r.opt_text("severity")?,
            category: r.opt_text("category")?,
            status_changed: r.opt_ts("status_changed")?,
            // Rampart's own JSON; unreadable (never expected) reads as "no risk" rather than
            // failing the whole listing.
            risk: r
                .opt_text("risk")?
                .and_then(|j| serde_json::from_str(&j).ok()),
        },
        first_observed: r.ts("first_observed")?,
        last_observed: r.ts("last_observed")?,
        resolved_at: r.opt_ts("resolved_at")?,
        removed_at: r.opt_ts("removed_at")?,
        reopened_count: as_u64(r.int("reopened_count")?),
    })
}

/// $1 asset. The asset's own integration is excluded; the partial expression indexes of 0003
/// serve each half.
pub(crate) const LINKED_ASSETS: &str = concat!(
    asset_select!(),
    " WHERE a.id IN (\
SELECT b.id FROM assets me JOIN assets b ON lower(b.azure_resource_id) = lower(me.azure_resource_id) \
WHERE me.id = $1 AND me.azure_resource_id IS NOT NULL AND b.azure_resource_id IS NOT NULL \
AND b.integration_id <> me.integration_id \
UNION SELECT b.id FROM assets me JOIN assets b ON lower(b.aad_device_id) = lower(me.aad_device_id) \
WHERE me.id = $1 AND me.aad_device_id IS NOT NULL AND b.aad_device_id IS NOT NULL \
AND b.integration_id <> me.integration_id)"
);

pub(crate) fn asset_not_found(id: i64) -> StoreError {
    StoreError::NotFound(format!(
        "asset {id} not found (it may have been removed with its integration)"
    ))
}

// ---- dashboard -----------------------------------------------------------------------------------

pub(crate) fn subscription_count_query(
    d: Dialect,
    vis: &Visibility,
    integration: Option<IntegrationId>,
) -> Sql {
    let mut sql = Sql::new("SELECT count(*) AS n FROM subscriptions");
    if let Some(i) = integration {
        let ph = sql.arg(Arg::Int(i.get()));
        sql.and(&format!("integration_id = {ph}"));
    }
    vis.restrict(d, &mut sql, "integration_id");
    sql
}

pub(crate) fn unhealthy_by_severity_query(
    d: Dialect,
    vis: &Visibility,
    integration: Option<IntegrationId>,
) -> Sql {
    let mut sql = Sql::new("SELECT severity, count(*) AS n FROM recommendations");
    if let Some(i) = integration {
        let ph = sql.arg(Arg::Int(i.get()));
        sql.and(&format!("integration_id = {ph}"));
    }
    vis.restrict(d, &mut sql, "integration_id");
    sql.and("status = 'Unhealthy'");
    sql.text.push_str(" GROUP BY severity");
    sql
}

/// Adds one `severity, n` row of `unhealthy_by_severity_query` to the counts.
pub(crate) fn tally_unhealthy(counts: &mut Counts, r: &impl RowExt) -> Result<()> {
    let severity = r
        .opt_text("severity")?
        .as_deref()
        .and_then(Severity::parse_lenient);
    counts
        .recommendations_unhealthy
        .add(severity, as_u64(r.int("n")?));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_scope_binds_prefixes_after_the_fixed_parameters() {
        let plan = reconcile_plan(
            &ReconcileScope::Subscriptions(vec!["AAAA-1".into(), "bbbb-2".into(), "aaaa-1".into()]),
            false,
        );
        assert_eq!(
            plan.count.args,
            vec!["/subscriptions/aaaa-1/", "/subscriptions/bbbb-2/"]
        );
        assert!(plan.count.sql.contains("$3") && plan.count.sql.contains("$4"));
        assert!(!plan.count.sql.contains("$5"));
        assert!(plan.assets.sql.contains("$5") && !plan.assets.sql.contains("$6"));
        let recs = plan.recommendations.unwrap();
        assert_eq!(recs.args, vec!["aaaa-1", "bbbb-2"]);
        assert!(recs.sql.contains("subscription_id IN ($4, $5)"));
    }

    #[test]
    fn an_empty_subscription_scope_matches_nothing() {
        let plan = reconcile_plan(&ReconcileScope::Subscriptions(vec![]), false);
        assert!(plan.assets.sql.contains("(1 = 0)"));
        assert!(plan.recommendations.unwrap().sql.contains("(1 = 0)"));
    }

    #[test]
    fn status_filter_uses_microsofts_spelling() {
        assert_eq!(canonical_status("unhealthy"), "Unhealthy");
        assert_eq!(canonical_status("notapplicable"), "NotApplicable");
        assert_eq!(canonical_status("Other"), "Other");
    }
}
