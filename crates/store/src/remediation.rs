//! The remediation plan ("Fix first", issue 14): open findings grouped by the fix that closes
//! them ([`crate::exceptions::fix_key`]), ranked by the priority that applying the fix removes.
//! The ranking is documented in docs/prioritisation.md ("The remediation plan").

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use rampart_model::{CveId, IntegrationId};

use crate::common::{RowExt, as_u64};
use crate::db::{Arg, Dialect, Sql};
use crate::error::Result;
use crate::exceptions::{FIX_KEY_SQL, effective_due_sql, in_force_sql};
use crate::workspace::Visibility;

/// Which findings the plan is made of. Empty = every integration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemediationFilter {
    pub integration: Option<IntegrationId>,
}

/// The order of the plan; every order is largest first, ties by the fix's text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RemediationSort {
    /// The sum of the priorities the fix removes (the plan's ranking).
    #[default]
    Priority,
    /// Overdue findings it closes, then the priority.
    Overdue,
    /// Assets it touches, then the priority.
    Assets,
    /// Findings it closes, then the priority.
    Findings,
}

/// One fix and what applying it closes: open findings that no exception covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Remediation {
    /// The update or upgrade, as Microsoft names it (see [`crate::exceptions::fix_key`]).
    pub fix: String,
    /// The sum of the stored priorities of the findings it closes (findings not assessed yet
    /// count 0).
    pub priority_removed: f64,
    /// The highest of those priorities.
    pub max_priority: Option<f64>,
    pub findings: u64,
    pub assets: u64,
    /// Findings past their due date.
    pub overdue: u64,
    /// Findings whose decision is `immediate`.
    pub immediate: u64,
    /// The CVEs it closes, in id order.
    pub cves: Vec<CveId>,
    /// Microsoft's reference of the recommendation (Defender for Endpoint's recommendation id,
    /// Defender for Cloud's assessment id), one of them when the findings differ.
    pub reference: Option<String>,
    /// Where Microsoft describes it, where Rampart knows: see [`microsoft_link`].
    pub link: Option<String>,
}

/// The plan's query: `$1` is now; a page from `offset`, one row more than `limit` to tell whether
/// another page follows.
pub(crate) fn remediations_sql(
    d: Dialect,
    vis: &Visibility,
    filter: &RemediationFilter,
    sort: RemediationSort,
    now: DateTime<Utc>,
    offset: u32,
    limit: u32,
) -> Sql {
    let mut sql = Sql::default();
    let pn = sql.arg(Arg::Time(now));
    let mut within = match filter.integration {
        Some(i) => format!(" AND f.integration_id = {}", sql.arg(Arg::Int(i))),
        None => String::new(),
    };
    within.push_str(&vis.and_text(d, &mut sql, "f.integration_id"));
    let accepted = in_force_sql(&pn);
    let due = effective_due_sql(d, &pn);
    let cves = (d.distinct_list)("x.cve_id");
    let order = match sort {
        RemediationSort::Priority => "priority_removed DESC",
        RemediationSort::Overdue => "overdue DESC, priority_removed DESC",
        RemediationSort::Assets => "assets DESC, priority_removed DESC",
        RemediationSort::Findings => "findings DESC, priority_removed DESC",
    };
    let pl = sql.arg(Arg::Int(i64::from(limit.clamp(1, 1000)) + 1));
    let po = sql.arg(Arg::Int(i64::from(offset)));
    sql.text = format!(
        "SELECT x.fix, count(*) AS findings, count(DISTINCT x.asset_id) AS assets, {cves} AS cves, \
         sum(COALESCE(x.priority, 0.0)) AS priority_removed, max(x.priority) AS max_priority, \
         sum(x.overdue) AS overdue, sum(CASE WHEN x.decision = 'immediate' THEN 1 ELSE 0 END) AS immediate, \
         max(x.reference) AS reference \
         FROM (SELECT {FIX_KEY_SQL} AS fix, f.asset_id, f.cve_id, f.priority, f.decision, \
         f.recommendation_reference AS reference, \
         (CASE WHEN f.due_at <= {pn} AND {due} <= {pn} THEN 1 ELSE 0 END) AS overdue \
         FROM findings f JOIN software s ON s.id = f.software_id JOIN integrations i ON i.id = f.integration_id \
         WHERE f.status = 'open'{within} AND NOT {accepted}) x \
         GROUP BY x.fix ORDER BY {order}, x.fix{} LIMIT {pl} OFFSET {po}",
        d.collate_c
    );
    sql
}

pub(crate) fn decode_remediation(r: &impl RowExt) -> Result<Remediation> {
    let fix = r.text("fix")?;
    let mut cves: Vec<CveId> = r
        .opt_text("cves")?
        .unwrap_or_default()
        .split(',')
        .filter_map(|c| c.parse().ok())
        .collect();
    cves.sort();
    let reference = r.opt_text("reference")?;
    Ok(Remediation {
        link: microsoft_link(&fix, reference.as_deref()),
        priority_removed: r.opt_f64("priority_removed")?.unwrap_or(0.0),
        max_priority: r.opt_f64("max_priority")?,
        findings: as_u64(r.int("findings")?),
        assets: as_u64(r.int("assets")?),
        overdue: as_u64(r.int("overdue")?),
        immediate: as_u64(r.int("immediate")?),
        cves,
        reference,
        fix,
    })
}

/// Microsoft's page for a fix, where Rampart can tell it: a security update named by its KB
/// number (Microsoft Support's article, <https://support.microsoft.com/help/5034441> for
/// KB5034441), or a Defender for Cloud assessment (its resource in the Azure portal).
pub fn microsoft_link(fix: &str, reference: Option<&str>) -> Option<String> {
    let kb = fix.trim().strip_prefix("KB").unwrap_or(fix.trim());
    if kb.len() >= 6 && kb.chars().all(|c| c.is_ascii_digit()) {
        return Some(format!("https://support.microsoft.com/help/{kb}"));
    }
    match reference {
        Some(r) if r.starts_with("/subscriptions/") => {
            Some(format!("https://portal.azure.com/#@/resource{r}"))
        }
        Some(r) if r.starts_with("https://") => Some(r.to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_to_microsoft_where_known() {
        assert_eq!(
            microsoft_link("KB5034441", None).as_deref(),
            Some("https://support.microsoft.com/help/5034441")
        );
        assert_eq!(
            microsoft_link("5034441", Some("va-_-microsoft-_-windows_11")).as_deref(),
            Some("https://support.microsoft.com/help/5034441")
        );
        assert_eq!(
            microsoft_link("February 2025 Security Updates", Some("va-_-x-_-y")),
            None
        );
        assert!(
            microsoft_link("Upgrade openssl to 3.0.15", Some("/subscriptions/s/x"))
                .is_some_and(|l| l.starts_with("https://portal.azure.com/"))
        );
    }
}
