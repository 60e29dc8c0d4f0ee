//! The SQL of SLA settings, criticality rules, run snapshots and the SLA report (types and the
//! report's arithmetic: `crate::sla`).

use chrono::{DateTime, Utc};
use rampart_model::RunId;

use rampart_model::IntegrationId;
use rampart_model::priority::{
    AssetMatcher, CriticalityRule, Decision, HumanImpact, SlaDays, SlaPolicy,
};

use crate::common::{RowExt, as_u64, clean, integration_not_found};
use crate::db::{Sql, q};
use crate::error::{Result, StoreError};
use crate::first_load_tally;
use crate::sla::{
    FixedGroup, IntegrationSla, MAX_RULE_TEXT, MAX_RULES, SlaSettings, SlaSnapshot, StoredRule,
};
use crate::sql_store::{SqlStore, insert_audit};
use crate::types::Backend;
use crate::types::NewAuditEntry;
use crate::workspace::Visibility;

/// The days checked as the model checks them, in words a person can act on.
fn valid(days: SlaDays) -> Result<SlaDays> {
    SlaPolicy::new(days)
        .map(SlaDays::from)
        .map_err(|e| StoreError::InvalidInput(e.to_string()))
}

fn decode_days(r: &impl RowExt) -> Result<SlaDays> {
    let day = |c: &str| -> Result<u32> {
        u32::try_from(r.int(c)?).map_err(|_| StoreError::Corrupt(format!("SLA {c} is negative")))
    };
    Ok(SlaDays {
        immediate: day("immediate")?,
        out_of_cycle: day("out_of_cycle")?,
        scheduled: day("scheduled")?,
        defer: day("defer")?,
    })
}

fn bind_days(sql: Sql, d: SlaDays) -> Sql {
    sql.bind(i64::from(d.immediate))
        .bind(i64::from(d.out_of_cycle))
        .bind(i64::from(d.scheduled))
        .bind(i64::from(d.defer))
}

fn days_text(d: SlaDays) -> String {
    format!(
        "immediate {} days, out-of-cycle {}, scheduled {}, defer {}",
        d.immediate, d.out_of_cycle, d.scheduled, d.defer
    )
}

pub(crate) async fn sla_settings(s: &SqlStore) -> Result<SlaSettings> {
    let sql = q(
        "SELECT immediate, out_of_cycle, scheduled, defer, updated_by, updated_at FROM sla_settings WHERE id = 1",
    );
    let row =
        s.db.read()
            .fetch_optional(&sql, "reading the SLA settings")
            .await?;
    match row {
        None => Ok(SlaSettings::default()),
        Some(r) => Ok(SlaSettings {
            days: decode_days(&r)?,
            updated_by: Some(r.text("updated_by")?),
            updated_at: Some(r.ts("updated_at")?),
        }),
    }
}

pub(crate) async fn set_sla_settings(
    s: &SqlStore,
    days: SlaDays,
    by: &str,
    at: DateTime<Utc>,
) -> Result<SlaSettings> {
    let days = valid(days)?;
    let op = "saving the SLA settings";
    let mut tx = s.db.begin().await?;
    let sql = bind_days(
        q("INSERT INTO sla_settings (id, immediate, out_of_cycle, scheduled, defer, updated_by, updated_at) \
           VALUES (1, $1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET immediate = excluded.immediate, \
           out_of_cycle = excluded.out_of_cycle, scheduled = excluded.scheduled, defer = excluded.defer, \
           updated_by = excluded.updated_by, updated_at = excluded.updated_at"),
        days,
    )
    .bind(clean(by).into_owned())
    .bind(at);
    tx.on().execute(&sql, op).await?;
    insert_audit(
        &mut tx,
        &NewAuditEntry {
            at,
            actor: by.to_owned(),
            action: "sla.update".to_owned(),
            target: Some("installation".to_owned()),
            details: Some(days_text(days)),
        },
    )
    .await?;
    tx.commit(op).await?;
    sla_settings(s).await
}

/// The integration's name, when it is in `vis`.
async fn integration_name(
    tx: &mut crate::db::Tx,
    d: crate::db::Dialect,
    vis: &Visibility,
    id: IntegrationId,
    op: &'static str,
) -> Result<String> {
    let mut sql = q("SELECT name FROM integrations WHERE id = $1").bind(id);
    vis.push_and(d, &mut sql, "id");
    match tx.on().fetch_optional(&sql, op).await? {
        Some(r) => r.text("name"),
        None => Err(integration_not_found(id)),
    }
}

pub(crate) async fn integration_sla(
    s: &SqlStore,
    vis: &Visibility,
    id: IntegrationId,
) -> Result<Option<IntegrationSla>> {
    let op = "reading an integration's SLA";
    let mut tx = s.db.begin_read().await?;
    integration_name(&mut tx, s.d, vis, id, op).await?;
    let sql = q(
        "SELECT integration_id, immediate, out_of_cycle, scheduled, defer, updated_by, updated_at \
         FROM integration_sla WHERE integration_id = $1",
    )
    .bind(id);
    let row = tx.on().fetch_optional(&sql, op).await?;
    tx.commit(op).await?;
    row.map(|r| {
        Ok(IntegrationSla {
            integration_id: r.integration("integration_id")?,
            days: decode_days(&r)?,
            updated_by: r.text("updated_by")?,
            updated_at: r.ts("updated_at")?,
        })
    })
    .transpose()
}

pub(crate) async fn set_integration_sla(
    s: &SqlStore,
    vis: &Visibility,
    id: IntegrationId,
    days: Option<SlaDays>,
    by: &str,
    at: DateTime<Utc>,
) -> Result<Option<IntegrationSla>> {
    let days = days.map(valid).transpose()?;
    let op = "saving an integration's SLA";
    let mut tx = s.db.begin().await?;
    let name = integration_name(&mut tx, s.d, vis, id, op).await?;
    let details = match days {
        Some(d) => {
            let sql = bind_days(
                q("INSERT INTO integration_sla (integration_id, immediate, out_of_cycle, scheduled, defer, updated_by, updated_at) \
                   VALUES ($5, $1, $2, $3, $4, $6, $7) ON CONFLICT (integration_id) DO UPDATE SET immediate = excluded.immediate, \
                   out_of_cycle = excluded.out_of_cycle, scheduled = excluded.scheduled, defer = excluded.defer, \
                   updated_by = excluded.updated_by, updated_at = excluded.updated_at"),
                d,
            )
            .bind(id)
            .bind(clean(by).into_owned())
            .bind(at);
            tx.on().execute(&sql, op).await?;
            days_text(d)
        }
        None => {
            let sql = q("DELETE FROM integration_sla WHERE integration_id = $1").bind(id);
            tx.on().execute(&sql, op).await?;
            "the installation's SLA applies".to_owned()
        }
    };
    insert_audit(
        &mut tx,
        &NewAuditEntry {
            at,
            actor: by.to_owned(),
            action: "integration.sla".to_owned(),
            target: Some(name),
            details: Some(details),
        },
    )
    .await?;
    tx.commit(op).await?;
    integration_sla(s, vis, id).await
}

fn matcher_parts(m: &AssetMatcher) -> (&'static str, &str) {
    match m {
        AssetMatcher::Tag(v) => ("tag", v),
        AssetMatcher::DeviceGroup(v) => ("device-group", v),
        AssetMatcher::NameGlob(v) => ("name-glob", v),
        AssetMatcher::ResourceIdPrefix(v) => ("resource-id-prefix", v),
    }
}

/// A matcher from its stored kind and value (also what the API and portal accept).
pub fn matcher_from(kind: &str, value: String) -> Option<AssetMatcher> {
    Some(match kind {
        "tag" => AssetMatcher::Tag(value),
        "device-group" => AssetMatcher::DeviceGroup(value),
        "name-glob" => AssetMatcher::NameGlob(value),
        "resource-id-prefix" => AssetMatcher::ResourceIdPrefix(value),
        _ => return None,
    })
}

fn decode_rule(r: &impl RowExt) -> Result<StoredRule> {
    let kind = r.text("matcher")?;
    let level = r.text("criticality")?;
    Ok(StoredRule {
        rule: CriticalityRule {
            name: r.text("name")?,
            matcher: matcher_from(&kind, r.text("value")?)
                .ok_or_else(|| StoreError::Corrupt(format!("rule matcher '{kind}'")))?,
            criticality: HumanImpact::parse(&level)
                .ok_or_else(|| StoreError::Corrupt(format!("rule criticality '{level}'")))?,
        },
        updated_by: r.text("updated_by")?,
        updated_at: r.ts("updated_at")?,
    })
}

pub(crate) async fn criticality_rules(s: &SqlStore) -> Result<Vec<StoredRule>> {
    let sql = q(
        "SELECT name, matcher, value, criticality, updated_by, updated_at FROM criticality_rules ORDER BY position, id",
    );
    s.db.read()
        .all(&sql, "reading the criticality rules", decode_rule)
        .await
}

/// Each rule has a name and a value of sensible length; names are unique (the explanation of a
/// priority names the rule).
fn check_rules(rules: &[CriticalityRule]) -> Result<()> {
    if rules.len() > MAX_RULES {
        return Err(StoreError::InvalidInput(format!(
            "{} criticality rules is too many: keep at most {MAX_RULES}, matching by tag or device group rather than by single assets",
            rules.len()
        )));
    }
    let mut names = std::collections::HashSet::new();
    for (n, r) in rules.iter().enumerate() {
        let (_, value) = matcher_parts(&r.matcher);
        let name = r.name.trim();
        if name.is_empty() || value.trim().is_empty() {
            return Err(StoreError::InvalidInput(format!(
                "criticality rule {} has no name or nothing to match: give it a name and a tag, group, name pattern or resource id",
                n + 1
            )));
        }
        if name.chars().count() > MAX_RULE_TEXT || value.chars().count() > MAX_RULE_TEXT {
            return Err(StoreError::InvalidInput(format!(
                "criticality rule '{name}' is longer than {MAX_RULE_TEXT} characters: shorten its name or value"
            )));
        }
        if !names.insert(name.to_lowercase()) {
            return Err(StoreError::InvalidInput(format!(
                "two criticality rules are named '{name}': give each its own name, which explanations show"
            )));
        }
    }
    Ok(())
}

pub(crate) async fn set_criticality_rules(
    s: &SqlStore,
    rules: &[CriticalityRule],
    by: &str,
    at: DateTime<Utc>,
) -> Result<Vec<StoredRule>> {
    check_rules(rules)?;
    let op = "saving the criticality rules";
    let mut tx = s.db.begin().await?;
    tx.on()
        .execute(&q("DELETE FROM criticality_rules"), op)
        .await?;
    for (position, r) in rules.iter().enumerate() {
        let (kind, value) = matcher_parts(&r.matcher);
        let sql = q("INSERT INTO criticality_rules (position, name, matcher, value, criticality, updated_by, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(position as i64)
            .bind(clean(r.name.trim()).into_owned())
            .bind(kind)
            .bind(clean(value.trim()).into_owned())
            .bind(r.criticality.as_str())
            .bind(clean(by).into_owned())
            .bind(at);
        tx.on().execute(&sql, op).await?;
    }
    let details = rules
        .iter()
        .map(|r| {
            let (kind, value) = matcher_parts(&r.matcher);
            format!(
                "{}: {kind}:{} → {}",
                r.name.trim(),
                value.trim(),
                r.criticality.as_str()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    insert_audit(
        &mut tx,
        &NewAuditEntry {
            at,
            actor: by.to_owned(),
            action: "criticality_rules.update".to_owned(),
            target: Some("installation".to_owned()),
            details: Some(if details.is_empty() {
                "no rules".to_owned()
            } else {
                details
            }),
        },
    )
    .await?;
    tx.commit(op).await?;
    criticality_rules(s).await
}

/// Counts the integration's open assessed findings by decision and severity at `$3`, as the
/// model's `sla_status` would (accepted ones apart, due dates moved by ended exceptions' pauses,
/// due soon when a fifth or less of the time is left). Exceptions are checked only for the few
/// findings they may cover (`crate::exceptions::covered_sql`), so the cost is one pass over the
/// integration's open findings through findings_status.
fn snapshot_sql(d: crate::db::Dialect) -> String {
    let covered = crate::exceptions::covered_sql(d, "$3");
    let accepted = crate::exceptions::in_force_sql("$3");
    let due = crate::exceptions::effective_due_sql(d, "$3");
    format!(
        "INSERT INTO sla_snapshots (integration_id, run_id, taken_at, decision, severity, open_count, overdue, due_soon, accepted) \
         SELECT $1, $2, $3, x.decision, x.severity, count(*), \
         sum(CASE WHEN x.acc = 0 AND x.due <= $3 THEN 1 ELSE 0 END), \
         sum(CASE WHEN x.acc = 0 AND x.due > $3 AND (x.due - $3) * 5 <= (x.due_at - x.clock_start) THEN 1 ELSE 0 END), \
         sum(x.acc) \
         FROM (SELECT f.decision, COALESCE(f.severity, 0) AS severity, f.due_at, f.clock_start, \
               CASE WHEN f.id IN ({covered}) THEN (CASE WHEN {accepted} THEN 1 ELSE 0 END) ELSE 0 END AS acc, \
               CASE WHEN f.id IN ({covered}) THEN {due} ELSE f.due_at END AS due \
               FROM findings f WHERE f.integration_id = $1 AND f.status = 'open' AND f.decision IS NOT NULL) x \
         GROUP BY x.decision, x.severity"
    )
}

pub(crate) async fn record_sla_snapshot(
    s: &SqlStore,
    integration: IntegrationId,
    run_id: RunId,
    at: DateTime<Utc>,
) -> Result<()> {
    let op = "recording the run's SLA snapshot";
    let mut tx = s.db.begin().await?;
    tx.plan_counts(true, op).await?;
    let tallied = first_load_tally::from_tally(&s.tallies, integration, run_id, |t| {
        t.snapshot_at(crate::common::micros(at))
    });
    if let Some(lines) = tallied
        && lines.holds(&mut tx, integration, true).await?
    {
        // A first load's rows, counted as they were inserted: no pass over them.
        let written = first_load_tally::insert_snapshot(
            s.d.backend,
            &mut tx,
            integration,
            run_id,
            at,
            &lines.rows,
        )
        .await?;
        if written == 0 {
            insert_empty_snapshot(&mut tx, integration, run_id, at).await?;
        }
        s.tallied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return tx.commit(op).await;
    }
    let sql = q(&snapshot_sql(s.d))
        .bind(integration)
        .bind(run_id)
        .bind(at);
    tx.scan_cache(op).await?;
    let counted = tx.on().execute(&sql, op).await;
    let restored = tx.writer_cache(op).await;
    if counted.and_then(|n| restored.map(|()| n))? == 0 {
        insert_empty_snapshot(&mut tx, integration, run_id, at).await?;
    }
    tx.commit(op).await
}

/// No open finding: a row of zeros, so that the burn-down and report show the drop to 0.
async fn insert_empty_snapshot(
    tx: &mut crate::db::Tx,
    integration: IntegrationId,
    run_id: RunId,
    at: DateTime<Utc>,
) -> Result<()> {
    let empty = q("INSERT INTO sla_snapshots (integration_id, run_id, taken_at, decision, severity, open_count, overdue, due_soon, accepted) \
                   VALUES ($1, $2, $3, 'none', 0, 0, 0, 0, 0)")
        .bind(integration)
        .bind(run_id)
        .bind(at);
    tx.on()
        .execute(&empty, "recording the run's SLA snapshot")
        .await?;
    Ok(())
}

fn decode_snapshot(r: &impl RowExt) -> Result<SlaSnapshot> {
    let decision = r.text("decision")?;
    Ok(SlaSnapshot {
        integration_id: r.integration("integration_id")?,
        run_id: r.run("run_id")?,
        taken_at: r.ts("taken_at")?,
        decision: match decision.as_str() {
            "none" => None,
            other => Some(
                Decision::parse(other)
                    .ok_or_else(|| StoreError::Corrupt(format!("snapshot decision '{other}'")))?,
            ),
        },
        severity: u8::try_from(r.int("severity")?).unwrap_or(0),
        open: as_u64(r.int("open_count")?),
        overdue: as_u64(r.int("overdue")?),
        due_soon: as_u64(r.int("due_soon")?),
        accepted: as_u64(r.int("accepted")?),
    })
}

const SNAPSHOT_COLUMNS: &str = "s.integration_id, s.run_id, s.taken_at, s.decision, s.severity, s.open_count, s.overdue, s.due_soon, s.accepted";

/// The rows of snapshots taken since `since` (of one integration, or of every one in `vis`),
/// summed over severities: a few rows per run. Each integration's range is read through
/// sla_snapshots_by_time.
pub(crate) async fn sla_snapshots(
    s: &SqlStore,
    vis: &Visibility,
    integration: Option<IntegrationId>,
    since: DateTime<Utc>,
) -> Result<Vec<SlaSnapshot>> {
    let mut sql = q(
        "SELECT s.integration_id, s.run_id, s.taken_at, s.decision, 0 AS severity, \
         CAST(sum(s.open_count) AS BIGINT) AS open_count, CAST(sum(s.overdue) AS BIGINT) AS overdue, \
         CAST(sum(s.due_soon) AS BIGINT) AS due_soon, CAST(sum(s.accepted) AS BIGINT) AS accepted \
         FROM integrations i JOIN sla_snapshots s ON s.integration_id = i.id AND s.taken_at >= $1 WHERE 1 = 1",
    )
    .bind(since);
    if let Some(id) = integration {
        let ph = sql.arg(crate::db::Arg::Int(id.get()));
        sql.text.push_str(&format!(" AND i.id = {ph}"));
    }
    vis.push_and(s.d, &mut sql, "i.id");
    sql.text.push_str(
        " GROUP BY s.integration_id, s.run_id, s.taken_at, s.decision ORDER BY s.taken_at, s.run_id",
    );
    s.db.read()
        .all(&sql, "reading SLA snapshots", decode_snapshot)
        .await
}

/// The rows of each integration's latest snapshot in `vis`: per integration, one probe of
/// sla_snapshots_by_time for its latest time and one for its rows.
pub(crate) async fn latest_sla_snapshots(
    s: &SqlStore,
    vis: &Visibility,
) -> Result<Vec<SlaSnapshot>> {
    let mut sql = q(&format!(
        "SELECT {SNAPSHOT_COLUMNS} FROM integrations i JOIN sla_snapshots s ON s.integration_id = i.id \
         AND s.taken_at = (SELECT max(m.taken_at) FROM sla_snapshots m WHERE m.integration_id = i.id) WHERE 1 = 1"
    ));
    vis.push_and(s.d, &mut sql, "i.id");
    s.db.read()
        .all(&sql, "reading the latest SLA snapshots", decode_snapshot)
        .await
}

/// The findings fixed from `since` to `until`, grouped (`crate::sla::FixedGroup`), read through
/// findings_fixed_by_time.
pub(crate) async fn fixed_groups(
    s: &SqlStore,
    vis: &Visibility,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<FixedGroup>> {
    let hours = match s.d.backend {
        Backend::Sqlite => "(f.fixed_at - f.clock_start) / 3600000000",
        Backend::Postgres => {
            "CAST(floor(extract(epoch FROM (f.fixed_at - f.clock_start)) / 3600) AS BIGINT)"
        }
    };
    let mut sql = q(&format!(
        "SELECT f.integration_id, COALESCE(f.severity, 0) AS severity, f.fixed_decision, {hours} AS hours, \
         count(*) AS fixed, \
         sum(CASE WHEN f.fixed_due_at IS NOT NULL THEN 1 ELSE 0 END) AS with_due, \
         sum(CASE WHEN f.fixed_due_at IS NOT NULL AND f.fixed_at <= f.fixed_due_at THEN 1 ELSE 0 END) AS on_time \
         FROM findings f WHERE f.status = 'fixed' AND f.fixed_at >= $1 AND f.fixed_at <= $2"
    ))
    .bind(since)
    .bind(until);
    vis.push_and(s.d, &mut sql, "f.integration_id");
    sql.text.push_str(" GROUP BY 1, 2, 3, 4");
    s.db.read()
        .all(&sql, "reading fixed findings for the SLA report", |r| {
            let decision = r.opt_text("fixed_decision")?;
            Ok(FixedGroup {
                integration_id: r.integration("integration_id")?,
                severity: u8::try_from(r.int("severity")?).unwrap_or(0),
                decision: decision.as_deref().and_then(Decision::parse),
                hours: r.opt_int("hours")?,
                fixed: as_u64(r.int("fixed")?),
                with_due: as_u64(r.int("with_due")?),
                on_time: as_u64(r.int("on_time")?),
            })
        })
        .await
}
