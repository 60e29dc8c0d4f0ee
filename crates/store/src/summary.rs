//! Summaries the store keeps so that the dashboard and the "open findings" sort never aggregate
//! millions of findings per page view: per-asset counts of open and fixed findings (columns of
//! `assets`), refreshed for an integration when one of its runs finishes, in the same
//! transaction (`finish_run`). The dashboard's top fixes are the head of the remediation plan,
//! which keeps its own roll-up (crate::fix_plan). At 2,000,000 findings on
//! SQLite a refresh costs about 2 s of the run; reading the dashboard from them costs
//! milliseconds. A run that reports reading records and changing none skips the refresh (nothing
//! it summarises can have moved).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::common::{Dialect, Sql};
use crate::types::{Counts, RiskyAsset, RunOutcome};
use crate::workspace::Visibility;

/// The dashboard's numbers, as of the last finished run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub counts: Counts,
    /// The assets with the most critical, then high, then any open findings.
    pub riskiest: Vec<RiskyAsset>,
    /// When the last run finished (`None`: no run finished yet).
    pub as_of: Option<DateTime<Utc>>,
}

/// Whether a run's end must refresh the summaries of its integration: unless it read records and
/// reports no change in them (new, updated, resolved, reopened) at all.
pub(crate) fn needs_refresh(o: &RunOutcome) -> bool {
    let changed = |c: &rampart_model::EntityCounts| c.new + c.updated + c.resolved + c.reopened;
    let read = o.assets.read + o.findings.read;
    read == 0 || changed(&o.assets) + changed(&o.findings) > 0
}

/// Recounts the findings of every asset of an integration. $1 integration.
pub(crate) fn refresh_assets_sql(d: Dialect) -> String {
    let least = d.least;
    format!(
        "UPDATE assets SET (open_critical, open_high, open_medium, open_low, open_total, fixed_total, open_rank) = \
         (SELECT c, h, m, l, n, x, {least}(c, 999999) * 1000000000000 + {least}(h, 999999) * 1000000 + {least}(n, 999999) FROM \
         (SELECT COALESCE(sum(CASE WHEN f.status = 'open' AND f.severity = 4 THEN 1 ELSE 0 END), 0) AS c, \
         COALESCE(sum(CASE WHEN f.status = 'open' AND f.severity = 3 THEN 1 ELSE 0 END), 0) AS h, \
         COALESCE(sum(CASE WHEN f.status = 'open' AND f.severity = 2 THEN 1 ELSE 0 END), 0) AS m, \
         COALESCE(sum(CASE WHEN f.status = 'open' AND f.severity = 1 THEN 1 ELSE 0 END), 0) AS l, \
         COALESCE(sum(CASE WHEN f.status = 'open' THEN 1 ELSE 0 END), 0) AS n, \
         COALESCE(sum(CASE WHEN f.status = 'fixed' THEN 1 ELSE 0 END), 0) AS x \
         FROM findings f WHERE f.asset_id = assets.id) s) \
         WHERE integration_id = $1"
    )
}

/// Assets by status with the sums of their findings counts (PostgreSQL's sum of BIGINT is
/// NUMERIC: cast back).
/// `scope` (" WHERE …" or nothing) narrows the assets counted.
pub(crate) fn summary_counts_sql(scope: &str) -> String {
    format!(
        "SELECT status, count(*) AS n, \
         CAST(COALESCE(sum(open_critical), 0) AS BIGINT) AS critical, CAST(COALESCE(sum(open_high), 0) AS BIGINT) AS high, \
         CAST(COALESCE(sum(open_medium), 0) AS BIGINT) AS medium, CAST(COALESCE(sum(open_low), 0) AS BIGINT) AS low, \
         CAST(COALESCE(sum(open_total), 0) AS BIGINT) AS total, CAST(COALESCE(sum(fixed_total), 0) AS BIGINT) AS fixed \
         FROM assets{scope} GROUP BY status"
    )
}

/// The assets with the most open findings. Reads the (open_rank, id) index backwards.
pub(crate) fn summary_riskiest(d: Dialect, vis: &Visibility, top: u32) -> Sql {
    let mut sql = Sql::new("").bind(top);
    let scope = vis.and_text(d, &mut sql, "integration_id");
    sql.text = format!(
        "SELECT id, COALESCE(name, source_id) AS name, open_critical AS critical, \
         open_high AS high, open_total AS n FROM assets WHERE open_rank > 0{scope} ORDER BY open_rank DESC, id DESC LIMIT $1"
    );
    sql
}

/// When the last visible run finished (column `t`).
pub(crate) fn last_finished(d: Dialect, vis: &Visibility) -> Sql {
    let mut sql = Sql::new("");
    let scope = vis.and_text(d, &mut sql, "integration_id");
    sql.text =
        format!("SELECT max(finished_at) AS t FROM sync_runs WHERE finished_at IS NOT NULL{scope}");
    sql
}

/// Adds one row of [`summary_counts_sql`] to `counts`.
pub(crate) fn add_counts(
    counts: &mut Counts,
    r: &impl crate::common::RowExt,
) -> crate::error::Result<()> {
    let n = |c: &str| r.int(c).map(crate::common::as_u64);
    if r.text("status")? == "missing" {
        counts.assets_missing += n("n")?;
    } else {
        counts.assets_active += n("n")?;
    }
    let (critical, high, medium, low, total) = (
        n("critical")?,
        n("high")?,
        n("medium")?,
        n("low")?,
        n("total")?,
    );
    let open = &mut counts.findings_open;
    open.critical += critical;
    open.high += high;
    open.medium += medium;
    open.low += low;
    open.unknown += total.saturating_sub(critical + high + medium + low);
    counts.findings_fixed += n("fixed")?;
    Ok(())
}
