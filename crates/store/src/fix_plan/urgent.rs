//! `Store::urgent_counts` (the workspaces page; "Fix first" and the dashboard show the plan's own
//! totals instead) when exceptions exist:
//! the open findings of each count, less what exceptions take out of it, worked out from the
//! findings they cover as the plan's correction does ([`super::accepted`]), instead of checking
//! every candidate finding against every exception in SQL (0.2 s with ten exceptions at
//! 2,000,000 findings, BENCHMARKS.md "Fix first with exceptions").
//!
//! A fix exception's findings are reached through the software the fix's roll-up rows counted,
//! which are all of them only while each roll-up is current: when an integration in view has
//! open findings and no current roll-up, or a run in progress, the counts are made by the SQL of
//! [`crate::priority::urgent_counts_sql`] instead.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use rampart_model::IntegrationId;

use super::OP;
use super::accepted::{covered, granted};
use crate::common::{RowExt, as_u64};
use crate::db::{Arg, Pool, Sql};
use crate::error::Result;
use crate::priority::{
    IMMEDIATE_FROM, UrgentCounts, urgent_counts_before_exceptions_sql, urgent_counts_sql,
};
use crate::workspace::Visibility;

pub(crate) async fn counts(
    db: &Pool,
    vis: &Visibility,
    now: DateTime<Utc>,
) -> Result<UrgentCounts> {
    let d = db.dialect();
    // One snapshot for every part of the count.
    let mut tx = db.begin_read().await?;
    let granted = granted(&mut tx, now).await?;

    let mut sql = Sql::new("");
    let within = vis.and_text(d, &mut sql, "i.id");
    sql.text = format!(
        "SELECT i.id, b.built_at, b.stale, \
         CASE WHEN EXISTS (SELECT 1 FROM sync_runs r WHERE r.integration_id = i.id AND r.status = 'running') \
         THEN 1 ELSE 0 END AS running, \
         CASE WHEN EXISTS (SELECT 1 FROM findings f WHERE f.integration_id = i.id AND f.status = 'open') \
         THEN 1 ELSE 0 END AS has_open \
         FROM integrations i LEFT JOIN fix_plan_builds b ON b.integration_id = i.id WHERE 1 = 1{within}"
    );
    let mut integrations: Vec<IntegrationId> = Vec::new();
    let mut current = true;
    for r in tx.on().fetch_all(&sql, OP).await? {
        integrations.push(r.integration("id")?);
        let counted = r.opt_ts("built_at")?.is_some() && r.opt_flag("stale")? == Some(false);
        if r.int("has_open")? != 0 && (!counted || r.int("running")? != 0) {
            current = false;
        }
    }

    if granted.is_empty() || (!granted.fixes_named.is_empty() && !current) {
        let mut sql = Sql::new("");
        // `urgent_counts_sql` names the time `$1`: the first argument.
        sql.arg(Arg::Time(now));
        let scope = vis.and_text(d, &mut sql, "f.integration_id");
        sql.text = urgent_counts_sql(d, &scope);
        let row = tx.on().fetch_one(&sql, "counting urgent findings").await?;
        return Ok(UrgentCounts {
            immediate: as_u64(row.int("immediate")?),
            overdue: as_u64(row.int("overdue")?),
        });
    }

    let mut software = BTreeSet::new();
    if !granted.fixes_named.is_empty() && !integrations.is_empty() {
        let mut sql = Sql::new("");
        let ids = sql.arg(Arg::Ints(integrations.iter().map(|i| i.get()).collect()));
        let fixes = sql.arg(Arg::Texts(granted.fixes_named.iter().cloned().collect()));
        sql.text = format!(
            "SELECT software_ids FROM fix_plan WHERE {} AND {}",
            d.in_list("integration_id", &ids),
            d.in_list("fix", &fixes)
        );
        for r in tx.on().fetch_all(&sql, OP).await? {
            software.extend(
                r.text("software_ids")?
                    .split(',')
                    .filter_map(|s| s.parse::<i64>().ok()),
            );
        }
    }

    let mut sql = Sql::new("");
    // The SQL names the time `$1`: the first argument.
    sql.arg(Arg::Time(now));
    let scope = vis.and_text(d, &mut sql, "f.integration_id");
    sql.text = urgent_counts_before_exceptions_sql(&scope);
    let row = tx.on().fetch_one(&sql, "counting urgent findings").await?;
    let mut counts = UrgentCounts {
        immediate: as_u64(row.int("immediate")?),
        overdue: as_u64(row.int("overdue")?),
    };
    let covered = covered(d, &mut tx, &granted, integrations, software, now).await?;
    for c in covered.values().flatten() {
        let counted_immediate =
            c.immediate && c.priority.is_some_and(|p| p >= f64::from(IMMEDIATE_FROM));
        if c.accepted && counted_immediate {
            counts.immediate = counts.immediate.saturating_sub(1);
        }
        let counted_overdue = c.due_at.is_some_and(|due| due <= now);
        if counted_overdue && (c.accepted || !c.overdue) {
            counts.overdue = counts.overdue.saturating_sub(1);
        }
    }
    Ok(counts)
}
