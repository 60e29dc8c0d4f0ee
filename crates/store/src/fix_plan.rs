//! The remediation plan ("Fix first") read from its roll-up, so that a view costs milliseconds at
//! millions of findings instead of grouping every open finding (docs/prioritisation.md, "The
//! remediation plan").
//!
//! Per integration and fix, `fix_plan` (migration 0017) holds what the plan shows of the open
//! findings: counted when a run of the integration finishes ([`rebuild`] after `finish_run`, in a
//! transaction of its own so that a failed count never loses the run's outcome), by a scheduler
//! pass when a count is missing or stale, or when its findings are assessed outside a run (a KEV refresh, through
//! `Store::refresh_fix_plan`). Assessing findings marks the integration's roll-up stale. A view
//! then puts together, per integration in its scope:
//! - no roll-up, or a stale one: the plan counted from the findings, as [`exact_sql`] does;
//! - otherwise the roll-up's rows, with two corrections worked out at the moment of the view:
//!   - findings whose due date passed since the count are added to `overdue`, found through the
//!     open findings' due-date index (`findings_open_by_due`);
//!   - what the findings an exception covers (in force, or ended and so pausing its clock)
//!     contribute is taken out of their fixes' rows ([`accepted`]). Exceptions change the plan
//!     at the moment they are granted or end, with no roll-up to refresh.
//!
//! The rows of a roll-up are as of its count: a finding a run adds or fixes enters the plan when
//! that run finishes, like the dashboard's summaries.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};

use rampart_model::{CveId, IntegrationId};

use crate::common::{RowExt, as_u64};
use crate::db::{Arg, Dialect, Pool, Sql, Tx, q};
use crate::error::Result;
use crate::exceptions::{FIX_KEY_SQL, effective_due_sql, in_force_sql};
use crate::first_load_tally::{self, FixRow, Standing};
use crate::priority::UrgentCounts;
use crate::remediation::{Remediation, RemediationFilter, RemediationSort, microsoft_link};
use crate::types::Page;
use crate::workspace::Visibility;

mod accepted;
pub(crate) mod urgent;

use accepted::Key;

/// Counts the integration's plan again (`$1` integration, `$2` the time of the count).
pub(crate) async fn rebuild(
    d: Dialect,
    tx: &mut Tx,
    integration: IntegrationId,
    at: DateTime<Utc>,
    counted: Option<Standing<Vec<FixRow>>>,
) -> Result<bool> {
    let op = "counting the remediation plan";
    tx.plan_counts(false, op).await?;
    // The count's row first: two processes counting one integration at once take turns here
    // (PostgreSQL's row lock; SQLite has one writer), so the second one's delete sees the rows
    // of the first.
    let claim = q(
        "INSERT INTO fix_plan_builds (integration_id, built_at, stale) VALUES ($1, $2, $3) \
         ON CONFLICT (integration_id) DO UPDATE SET stale = excluded.stale",
    )
    .bind(integration)
    .bind(at)
    .bind(true);
    tx.on().execute(&claim, op).await?;
    let clear = q("DELETE FROM fix_plan WHERE integration_id = $1").bind(integration);
    tx.on().execute(&clear, op).await?;
    let tallied = match counted {
        // A first load's rows, counted as they were inserted: no pass over them.
        Some(rows) if rows.holds(tx, integration, false).await? => {
            first_load_tally::insert_fix_plan(d.backend, tx, integration, &rows.rows).await?;
            true
        }
        _ => {
            let count = q(&build_sql(d)).bind(integration).bind(at);
            tx.scan_cache(op).await?;
            let counted = tx.on().execute(&count, op).await;
            let restored = tx.writer_cache(op).await;
            counted.and(restored)?;
            false
        }
    };
    let stamp = q(
        "INSERT INTO fix_plan_builds (integration_id, built_at, stale) VALUES ($1, $2, $3) \
         ON CONFLICT (integration_id) DO UPDATE SET built_at = excluded.built_at, stale = excluded.stale",
    )
    .bind(integration)
    .bind(at)
    .bind(false);
    tx.on().execute(&stamp, op).await?;
    Ok(tallied)
}

/// Marks the integration's roll-up stale: it is not read until counted again.
pub(crate) async fn mark_stale(tx: &mut Tx, integration: IntegrationId) -> Result<()> {
    let sql = q("UPDATE fix_plan_builds SET stale = $2 WHERE integration_id = $1")
        .bind(integration)
        .bind(true);
    tx.on()
        .execute(&sql, "marking the remediation plan to count again")
        .await?;
    Ok(())
}

/// Whether the integration's roll-up must be counted again before it can be read: missing, or
/// marked stale by an assessment.
pub(crate) async fn needs_rebuild(tx: &mut Tx, integration: IntegrationId) -> Result<bool> {
    let sql = q("SELECT stale FROM fix_plan_builds WHERE integration_id = $1").bind(integration);
    let row = tx
        .on()
        .fetch_optional(&sql, "reading the remediation plan's count")
        .await?;
    match row {
        Some(r) => r.flag("stale"),
        None => Ok(true),
    }
}

/// The integrations whose roll-up is missing or stale, that have open findings and no run in
/// progress (a run's end counts its own): what a scheduler pass counts again. `$1` is true.
pub(crate) const TO_COUNT_SQL: &str = "SELECT i.id FROM integrations i \
     LEFT JOIN fix_plan_builds b ON b.integration_id = i.id \
     WHERE (b.integration_id IS NULL OR b.stale = $1) \
     AND NOT EXISTS (SELECT 1 FROM sync_runs r WHERE r.integration_id = i.id AND r.status = 'running') \
     AND EXISTS (SELECT 1 FROM findings f WHERE f.integration_id = i.id AND f.status = 'open') ORDER BY i.id";

/// The roll-up's count of one integration: `$1` integration, `$2` the time of the count.
fn build_sql(d: Dialect) -> String {
    let cves = (d.distinct_list)("x.cve_id");
    let software = (d.distinct_list)("CAST(x.software_id AS TEXT)");
    format!(
        "INSERT INTO fix_plan (integration_id, fix, findings, assets, priority_removed, max_priority, immediate, \
         overdue, cves, software_ids, recommended_update, reference) \
         SELECT $1, x.fix, count(*), count(DISTINCT x.asset_id), sum(COALESCE(x.priority, 0.0)), max(x.priority), \
         sum(CASE WHEN x.decision = 'immediate' THEN 1 ELSE 0 END), \
         sum(CASE WHEN x.due_at <= $2 THEN 1 ELSE 0 END), {cves}, {software}, \
         (CASE WHEN min(x.ru) = max(x.ru) THEN max(x.ru) END), max(x.reference{collate}) \
         FROM (SELECT {FIX_KEY_SQL} AS fix, f.asset_id, f.cve_id, f.priority, f.decision, f.due_at, f.software_id, \
         COALESCE(f.recommended_update, '') AS ru, f.recommendation_reference AS reference \
         FROM findings f JOIN software s ON s.id = f.software_id JOIN integrations i ON i.id = f.integration_id \
         WHERE f.integration_id = $1 AND f.status = 'open') x GROUP BY x.fix",
        collate = d.collate_c
    )
}

/// The plan counted from the findings, as the roll-up and its corrections count it: open
/// findings no exception accepts at `now`, grouped by fix, per integration when `per_integration`.
/// `restrict` (" AND …" over `f`, `s`, `i`, with its values already in `sql`) narrows the
/// findings.
pub(crate) fn exact_sql(
    d: Dialect,
    mut sql: Sql,
    now: &str,
    restrict: &str,
    per_integration: bool,
) -> Sql {
    let accepted = in_force_sql(now);
    let due = effective_due_sql(d, now);
    let cves = (d.distinct_list)("x.cve_id");
    let group = if per_integration {
        "x.integration_id, "
    } else {
        ""
    };
    sql.text = format!(
        "SELECT {group}x.fix, count(*) AS findings, count(DISTINCT x.asset_id) AS assets, {cves} AS cves, \
         sum(COALESCE(x.priority, 0.0)) AS priority_removed, max(x.priority) AS max_priority, \
         sum(x.overdue) AS overdue, sum(CASE WHEN x.decision = 'immediate' THEN 1 ELSE 0 END) AS immediate, \
         max(x.reference{collate}) AS reference \
         FROM (SELECT f.integration_id, {FIX_KEY_SQL} AS fix, f.asset_id, f.cve_id, f.priority, f.decision, \
         f.recommendation_reference AS reference, \
         (CASE WHEN f.due_at <= {now} AND {due} <= {now} THEN 1 ELSE 0 END) AS overdue \
         FROM findings f JOIN software s ON s.id = f.software_id JOIN integrations i ON i.id = f.integration_id \
         WHERE f.status = 'open'{restrict} AND NOT {accepted}) x \
         GROUP BY {group}x.fix",
        collate = d.collate_c
    );
    sql
}

/// One fix's numbers, as they are added up across integrations.
#[derive(Debug, Default)]
struct Group {
    findings: u64,
    assets: u64,
    priority_removed: f64,
    max_priority: Option<f64>,
    immediate: u64,
    overdue: u64,
    /// Comma-separated CVE lists, joined when the page is made.
    cves: Vec<String>,
    /// Roll-up rows whose CVE lists are read only if the fix makes the page (they are most of
    /// the roll-up's bytes: 17 MB of 17.3 at 2,000,000 findings), each with the CVEs its
    /// accepted findings took out of it.
    rollup_cves: Vec<(IntegrationId, HashSet<String>)>,
    reference: Option<String>,
}

impl Group {
    fn read(r: &impl RowExt) -> Result<Group> {
        Ok(Group {
            findings: as_u64(r.int("findings")?),
            assets: as_u64(r.int("assets")?),
            priority_removed: r.opt_f64("priority_removed")?.unwrap_or(0.0),
            max_priority: r.opt_f64("max_priority")?,
            immediate: as_u64(r.int("immediate")?),
            overdue: as_u64(r.int("overdue")?),
            cves: r.opt_text("cves")?.into_iter().collect(),
            rollup_cves: Vec::new(),
            reference: r.opt_text("reference")?,
        })
    }

    fn add(&mut self, other: Group) {
        self.findings += other.findings;
        // Assets belong to one integration: the sum of distinct counts is the distinct count.
        self.assets += other.assets;
        self.priority_removed += other.priority_removed;
        self.max_priority = match (self.max_priority, other.max_priority) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.immediate += other.immediate;
        self.overdue += other.overdue;
        self.cves.extend(other.cves);
        self.rollup_cves.extend(other.rollup_cves);
        self.reference = self.reference.take().max(other.reference);
    }

    fn into_remediation(self, fix: String) -> Remediation {
        let cves: BTreeSet<CveId> = self
            .cves
            .iter()
            .flat_map(|list| list.split(','))
            .filter_map(|c| c.parse().ok())
            .collect();
        Remediation {
            link: microsoft_link(&fix, self.reference.as_deref()),
            priority_removed: self.priority_removed,
            max_priority: self.max_priority,
            findings: self.findings,
            assets: self.assets,
            overdue: self.overdue,
            immediate: self.immediate,
            cves: cves.into_iter().collect(),
            reference: self.reference,
            fix,
        }
    }
}

/// A roll-up row, with what leads to its findings.
struct Counted {
    group: Group,
    software_ids: Vec<i64>,
    recommended_update: Option<String>,
}

/// Fixes by their text, their numbers added up across integrations.
type Groups = HashMap<String, Group>;

fn merge(groups: &mut Groups, fix: String, group: Group) {
    groups.entry(fix).or_default().add(group);
}

/// The plan at `now` for the integrations `vis` and `filter` allow: one page in `sort` order,
/// and the immediate and overdue findings of the whole plan (each open finding is in one fix, so
/// they are the sums over its fixes).
pub(crate) async fn read(
    db: &Pool,
    vis: &Visibility,
    filter: &RemediationFilter,
    sort: RemediationSort,
    now: DateTime<Utc>,
    offset: u32,
    limit: u32,
) -> Result<(Page<Remediation, u32>, UrgentCounts)> {
    let d = db.dialect();
    // One snapshot for every part of the view.
    let mut tx = db.begin_read().await?;
    let scope = scope(d, &mut tx, vis, filter).await?;
    let mut groups = Groups::new();
    if !scope.uncounted.is_empty() {
        count_from_findings(d, &mut tx, scope.uncounted, now, &mut groups).await?;
    }
    if !scope.counted_at.is_empty() {
        read_rollups(
            d,
            &mut tx,
            &scope.counted_at,
            &scope.in_flux,
            now,
            &mut groups,
        )
        .await?;
    }
    let totals = UrgentCounts {
        immediate: groups.values().map(|g| g.immediate).sum(),
        overdue: groups.values().map(|g| g.overdue).sum(),
    };
    let (mut items, next) = page(groups, sort, offset, limit);
    read_rollup_cves(d, &mut tx, &mut items).await?;
    drop(tx);
    let page = Page {
        items: items
            .into_iter()
            .map(|(fix, g)| g.into_remediation(fix))
            .collect(),
        next,
    };
    Ok((page, totals))
}

/// Reads the CVE lists of the page's fixes that come from roll-up rows, less the CVEs accepted
/// findings took out of them.
async fn read_rollup_cves(d: Dialect, tx: &mut Tx, items: &mut [(String, Group)]) -> Result<()> {
    let fixes: Vec<String> = items
        .iter()
        .filter(|(_, g)| !g.rollup_cves.is_empty())
        .map(|(fix, _)| fix.clone())
        .collect();
    if fixes.is_empty() {
        return Ok(());
    }
    let integrations: BTreeSet<IntegrationId> = items
        .iter()
        .flat_map(|(_, g)| g.rollup_cves.iter().map(|(i, _)| *i))
        .collect();
    let mut sql = Sql::new("");
    let pi = sql.arg(Arg::Ints(
        integrations.into_iter().map(IntegrationId::get).collect(),
    ));
    let pf = sql.arg(Arg::Texts(fixes));
    // Both columns of the primary key, so that the rows are looked up, not scanned for.
    sql.text = format!(
        "SELECT integration_id, fix, cves FROM fix_plan WHERE {} AND {}",
        d.in_list("integration_id", &pi),
        d.in_list("fix", &pf)
    );
    let mut lists: HashMap<(IntegrationId, String), String> = HashMap::new();
    for r in tx.on().fetch_all(&sql, OP).await? {
        if let Some(cves) = r.opt_text("cves")? {
            lists.insert((r.integration("integration_id")?, r.text("fix")?), cves);
        }
    }
    for (fix, g) in items.iter_mut() {
        for (integration, gone) in std::mem::take(&mut g.rollup_cves) {
            let Some(list) = lists.remove(&(integration, fix.clone())) else {
                continue;
            };
            if gone.is_empty() {
                g.cves.push(list);
            } else {
                let kept: Vec<&str> = list
                    .split(',')
                    .filter(|c| !c.is_empty() && !gone.contains(*c))
                    .collect();
                g.cves.push(kept.join(","));
            }
        }
    }
    Ok(())
}

const OP: &str = "reading the remediation plan";

/// The integrations of a view.
#[derive(Default)]
struct Scope {
    /// With a roll-up to read, and when it was counted.
    counted_at: HashMap<IntegrationId, DateTime<Utc>>,
    /// Of those, the ones with a run in progress: their findings may have changed since the
    /// count, so the covered findings need not be the ones counted, and the fixes exceptions
    /// touch are counted again from their findings until the run's end counts the roll-up.
    in_flux: HashSet<IntegrationId>,
    /// Without a roll-up to read (missing or stale): counted from their findings.
    uncounted: Vec<IntegrationId>,
}

/// The integrations in scope, sorted into those to count from their findings and those with a
/// roll-up to read.
async fn scope(
    d: Dialect,
    tx: &mut Tx,
    vis: &Visibility,
    filter: &RemediationFilter,
) -> Result<Scope> {
    let mut sql = Sql::new("");
    let mut within = match filter.integration {
        Some(i) => format!(" AND i.id = {}", sql.arg(Arg::Int(i.get()))),
        None => String::new(),
    };
    within.push_str(&vis.and_text(d, &mut sql, "i.id"));
    sql.text = format!(
        "SELECT i.id, b.built_at, b.stale, \
         CASE WHEN EXISTS (SELECT 1 FROM sync_runs r WHERE r.integration_id = i.id AND r.status = 'running') \
         THEN 1 ELSE 0 END AS running \
         FROM integrations i LEFT JOIN fix_plan_builds b ON b.integration_id = i.id WHERE 1 = 1{within}"
    );
    let mut scope = Scope::default();
    for r in tx.on().fetch_all(&sql, OP).await? {
        let id = r.integration("id")?;
        match (r.opt_ts("built_at")?, r.opt_flag("stale")?) {
            (Some(at), Some(false)) => {
                scope.counted_at.insert(id, at);
                if r.int("running")? != 0 {
                    scope.in_flux.insert(id);
                }
            }
            _ => scope.uncounted.push(id),
        }
    }
    Ok(scope)
}

/// The plan of integrations without a roll-up to read, counted from their findings.
async fn count_from_findings(
    d: Dialect,
    tx: &mut Tx,
    integrations: Vec<IntegrationId>,
    now: DateTime<Utc>,
    groups: &mut Groups,
) -> Result<()> {
    let mut sql = Sql::new("");
    let pn = sql.arg(Arg::Time(now));
    let ids = sql.arg(Arg::Ints(integrations.iter().map(|i| i.get()).collect()));
    let restrict = format!(" AND {}", d.in_list("f.integration_id", &ids));
    let sql = exact_sql(d, sql, &pn, &restrict, false);
    for r in tx.on().fetch_all(&sql, OP).await? {
        merge(groups, r.text("fix")?, Group::read(&r)?);
    }
    Ok(())
}

/// The plan of integrations with a roll-up: its rows, corrected for due dates passed since the
/// count and for the findings exceptions cover ([`accepted`]).
async fn read_rollups(
    d: Dialect,
    tx: &mut Tx,
    counted_at: &HashMap<IntegrationId, DateTime<Utc>>,
    in_flux: &HashSet<IntegrationId>,
    now: DateTime<Utc>,
    groups: &mut Groups,
) -> Result<()> {
    let counted: Vec<IntegrationId> = counted_at.keys().copied().collect();
    let mut rows = rollup_rows(d, tx, &counted).await?;
    let earliest = counted_at.values().min().copied().unwrap_or(now);
    if earliest < now {
        add_overdue_since_count(d, tx, &counted, earliest, now, &mut rows).await?;
    }
    let recount = accepted::subtract(d, tx, counted_at, in_flux, now, &mut rows).await?;
    for (key, c) in rows {
        if recount.contains(&key) {
            recount_fix(d, tx, key, c, now, groups).await?;
        } else {
            merge(groups, key.1, c.group);
        }
    }
    Ok(())
}

/// The roll-up's rows of these integrations.
async fn rollup_rows(
    d: Dialect,
    tx: &mut Tx,
    integrations: &[IntegrationId],
) -> Result<HashMap<Key, Counted>> {
    let mut sql = Sql::new("");
    let ids = sql.arg(Arg::Ints(integrations.iter().map(|i| i.get()).collect()));
    sql.text = format!(
        "SELECT integration_id, fix, findings, assets, priority_removed, max_priority, immediate, overdue, \
         NULL AS cves, software_ids, recommended_update, reference FROM fix_plan WHERE {}",
        d.in_list("integration_id", &ids)
    );
    let mut rows = HashMap::new();
    for r in tx.on().fetch_all(&sql, OP).await? {
        let key = (r.integration("integration_id")?, r.text("fix")?);
        let software_ids = r
            .text("software_ids")?
            .split(',')
            .filter_map(|s| s.parse().ok())
            .collect();
        let mut group = Group::read(&r)?;
        group.rollup_cves = vec![(key.0, HashSet::new())];
        let counted = Counted {
            group,
            software_ids,
            recommended_update: r.opt_text("recommended_update")?,
        };
        rows.insert(key, counted);
    }
    Ok(rows)
}

/// Adds to the rows the findings whose due date passed after their integration's count, from
/// `earliest` (the earliest count) to `now`.
async fn add_overdue_since_count(
    d: Dialect,
    tx: &mut Tx,
    integrations: &[IntegrationId],
    earliest: DateTime<Utc>,
    now: DateTime<Utc>,
    rows: &mut HashMap<Key, Counted>,
) -> Result<()> {
    let mut sql = Sql::new("");
    let pn = sql.arg(Arg::Time(now));
    let pe = sql.arg(Arg::Time(earliest));
    let ids = sql.arg(Arg::Ints(integrations.iter().map(|i| i.get()).collect()));
    // Spelt so that SQLite reads the due-date range (findings_open_by_due) and looks the rest
    // up: given a plain join it walked every open finding of the integrations (findings_status)
    // instead, 0.5 s at 2,000,000 findings to find none.
    sql.text = format!(
        "SELECT f.integration_id, {FIX_KEY_SQL} AS fix, count(*) AS n FROM findings f \
         CROSS JOIN fix_plan_builds b CROSS JOIN software s CROSS JOIN integrations i \
         WHERE f.status = 'open' AND f.due_at <= {pn} AND f.due_at > {pe} \
         AND b.integration_id = +f.integration_id AND f.due_at > b.built_at \
         AND s.id = f.software_id AND i.id = +f.integration_id AND {} \
         GROUP BY f.integration_id, {FIX_KEY_SQL}",
        d.in_list("+f.integration_id", &ids)
    );
    for r in tx.on().fetch_all(&sql, OP).await? {
        let key = (r.integration("integration_id")?, r.text("fix")?);
        // A finding whose fix is not in the roll-up arrived after the count: not in the plan yet.
        if let Some(c) = rows.get_mut(&key) {
            c.group.overdue += as_u64(r.int("n")?);
        }
    }
    Ok(())
}

/// Counts one fix of one integration again from its findings, reached through
/// findings_open_by_software with the software ids and update its roll-up row kept.
async fn recount_fix(
    d: Dialect,
    tx: &mut Tx,
    key: Key,
    counted: Counted,
    now: DateTime<Utc>,
    groups: &mut Groups,
) -> Result<()> {
    let mut sql = Sql::new("");
    let pn = sql.arg(Arg::Time(now));
    let restrict = fix_restrict(d, &mut sql, &key, &counted);
    let sql = exact_sql(d, sql, &pn, &restrict, false);
    if let Some(r) = tx.on().fetch_optional(&sql, OP).await? {
        merge(groups, key.1, Group::read(&r)?);
    }
    Ok(())
}

/// " AND …" over `f`, `s`, `i` narrowing findings to one roll-up row's: its integration and fix,
/// reached through findings_open_by_software with the software ids and update the row kept.
fn fix_restrict(d: Dialect, sql: &mut Sql, (integration, fix): &Key, counted: &Counted) -> String {
    let pi = sql.arg(Arg::Int(integration.get()));
    let pf = sql.arg(Arg::Text(fix.clone()));
    let ps = sql.arg(Arg::Ints(counted.software_ids.clone()));
    let update = match counted.recommended_update.as_deref() {
        None => String::new(),
        Some("") => " AND (f.recommended_update IS NULL OR f.recommended_update = '')".into(),
        Some(u) => format!(
            " AND f.recommended_update = {}",
            sql.arg(Arg::Text(u.to_owned()))
        ),
    };
    format!(
        " AND f.integration_id = {pi} AND {}{update} AND {FIX_KEY_SQL} = {pf}",
        d.in_list("f.software_id", &ps)
    )
}

/// One page of the plan in `sort` order: largest first, ties by the priority removed, then by
/// the fix's text in byte order.
fn page(
    groups: Groups,
    sort: RemediationSort,
    offset: u32,
    limit: u32,
) -> (Vec<(String, Group)>, Option<u32>) {
    let mut plan: Vec<(String, Group)> = groups.into_iter().collect();
    plan.sort_by(|(fa, a), (fb, b)| {
        let by = |x: &Group| match sort {
            RemediationSort::Priority => (0, x.priority_removed),
            RemediationSort::Overdue => (x.overdue, x.priority_removed),
            RemediationSort::Assets => (x.assets, x.priority_removed),
            RemediationSort::Findings => (x.findings, x.priority_removed),
        };
        let ((ka, pa), (kb, pb)) = (by(a), by(b));
        kb.cmp(&ka)
            .then(pb.total_cmp(&pa))
            .then_with(|| fa.as_bytes().cmp(fb.as_bytes()))
    });
    let limit = limit.clamp(1, 1000) as usize;
    let start = (offset as usize).min(plan.len());
    let next = (plan.len() > start + limit).then(|| offset.saturating_add(limit as u32));
    let items = plan.into_iter().skip(start).take(limit).collect();
    (items, next)
}
