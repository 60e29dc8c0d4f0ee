//! The roll-up's rows of fixes with findings an exception covers, corrected at the moment of a
//! view by taking out what those findings contribute, instead of counting the fixes again from
//! all their findings (which cost about 17 ms a fix at 2,000,000 findings, and one CVE accepted
//! everywhere can touch hundreds of fixes: BENCHMARKS.md, "Fix first from its roll-up").
//!
//! The findings an exception may cover are read once, from the exceptions' side through indexes,
//! each with whether an exception accepts it now and whether it is overdue once paused time is
//! added ([`covered`]). For each fix of a roll-up they touch:
//! - the counts and sums subtract: findings, priority removed, immediate, and overdue (an accepted
//!   finding leaves it; one whose clock an ended exception paused may not be overdue yet);
//! - an asset leaves the fix when every open finding it has there is accepted, and a CVE when
//!   every finding of it there is. Where the covered findings are not all the fix's findings of
//!   that asset or CVE, the rest are counted through the natural key's index (asset, software)
//!   or the open findings' CVE index, for those assets and CVEs only;
//! - the highest priority and the reference are read again, without the accepted findings,
//!   only when an accepted finding held them.
//!
//! The covered findings are all of a fix's counted findings when a fix exception names it (read
//! through the software its row counted), and all of a CVE's when a CVE exception names it, so
//! the common cases need no further read. While a run of the integration is in
//! progress its findings may differ from those counted, so the rows exceptions touch are counted
//! again from their findings (as is a row that does not add up) until the run's end counts the
//! roll-up.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};

use rampart_model::priority::Exception;
use rampart_model::{CveId, IntegrationId};

use super::{Counted, OP, fix_restrict};

use crate::common::{RowExt, corrupt};
use crate::db::{Arg, Dialect, Sql, Tx, q};
use crate::error::Result;
use crate::exceptions::{
    EXCEPTION_COLUMNS, ExceptionScope, FIX_KEY_SQL, StoredException, decode_exception,
    relevant_pause,
};
use crate::types::Backend;

/// An integration's fix, as the roll-up keys its rows.
pub(super) type Key = (IntegrationId, String);

/// An open finding an exception may cover, with what the plan counts of it.
pub(super) struct Covered {
    id: i64,
    asset: i64,
    cve: String,
    pub(super) priority: Option<f64>,
    pub(super) immediate: bool,
    pub(super) due_at: Option<DateTime<Utc>>,
    reference: Option<String>,
    /// An exception in force covers it: it leaves the plan.
    pub(super) accepted: bool,
    /// Overdue at the view's time once the pauses of ended exceptions move its due date.
    pub(super) overdue: bool,
}

/// What is known of the fix's findings of one asset or one CVE: how many are accepted, and how
/// many are open in all (`None` until read).
#[derive(Default)]
struct Share {
    accepted: u64,
    total: Option<u64>,
}

/// A touched row's correction that needs reading more findings.
#[derive(Default)]
struct Pending {
    accepted_ids: Vec<i64>,
    assets: HashMap<i64, Share>,
    cves: HashMap<String, Share>,
    /// The highest priority and the reference must be read without the accepted findings.
    read_highest: bool,
}

/// Corrects `rows` (the roll-ups of the integrations in `counted_at`, with their count times)
/// for the exceptions at `now`: rows whose findings are all accepted are removed. Returns the
/// rows to count again from their findings: those that did not add up, and the touched rows of
/// integrations `in_flux` (a run in progress may have changed their findings since the count).
pub(super) async fn subtract(
    d: Dialect,
    tx: &mut Tx,
    counted_at: &HashMap<IntegrationId, DateTime<Utc>>,
    in_flux: &HashSet<IntegrationId>,
    now: DateTime<Utc>,
    rows: &mut HashMap<Key, Counted>,
) -> Result<HashSet<Key>> {
    let granted = granted(tx, now).await?;
    // Only counted findings can be taken out of a count: a fix exception's findings are those
    // of the software its roll-up rows counted.
    let software: BTreeSet<i64> = rows
        .iter()
        .filter(|(key, _)| granted.fixes_named.contains(&key.1))
        .flat_map(|(_, row)| row.software_ids.iter().copied())
        .collect();
    let integrations = counted_at.keys().copied().collect();
    let covered = covered(d, tx, &granted, integrations, software, now).await?;
    let (fix_named, cve_named) = (&granted.fixes_named, &granted.cves_named);
    let mut recount = HashSet::new();
    let mut pending: HashMap<Key, Pending> = HashMap::new();
    for (key, found) in covered {
        // A fix missing from the roll-up arrived after the count: not in the plan yet.
        let Some(row) = rows.get_mut(&key) else {
            continue;
        };
        if in_flux.contains(&key.0) {
            recount.insert(key);
            continue;
        }
        let counted = counted_at.get(&key.0).copied().unwrap_or(now);
        let whole_fix = fix_named.contains(&key.1);
        match correct(row, &found, counted.max(now), whole_fix, cve_named) {
            Outcome::Done => {}
            Outcome::Empty => {
                rows.remove(&key);
            }
            Outcome::Pending(p) => {
                pending.insert(key, p);
            }
            Outcome::DoesNotAddUp => {
                recount.insert(key);
            }
        }
    }
    if pending.is_empty() {
        return Ok(recount);
    }
    read_asset_totals(d, tx, rows, &mut pending).await?;
    read_cve_totals(d, tx, &mut pending).await?;
    for (key, p) in pending {
        let Some(row) = rows.get_mut(&key) else {
            continue;
        };
        let highest = if p.read_highest {
            Some(read_highest(d, tx, &key, row, &p.accepted_ids).await?)
        } else {
            None
        };
        if !finish(row, p, highest) {
            recount.insert(key);
        }
    }
    Ok(recount)
}

enum Outcome {
    /// The row is corrected.
    Done,
    /// Every finding of the row is accepted.
    Empty,
    /// The row's counts are corrected; its assets, CVEs or highest priority need a read.
    Pending(Pending),
    DoesNotAddUp,
}

/// Takes the covered findings `found` out of `row`. `overdue_until` is what the row's overdue
/// count covers (due dates up to the count or the view, whichever is later: see
/// `add_overdue_since_count`). `whole_fix`: `found` holds every open finding of the fix;
/// `cve_named`: CVEs whose every open finding is in `found`.
fn correct(
    row: &mut Counted,
    found: &[Covered],
    overdue_until: DateTime<Utc>,
    whole_fix: bool,
    cve_named: &HashSet<String>,
) -> Outcome {
    let g = &mut row.group;
    let counted_overdue = |c: &Covered| c.due_at.is_some_and(|d| d <= overdue_until);
    let mut pending = Pending::default();
    for c in found {
        // Overdue in the roll-up but not at the view: accepted, or its clock paused.
        if counted_overdue(c) && (c.accepted || !c.overdue) {
            let Some(left) = g.overdue.checked_sub(1) else {
                return Outcome::DoesNotAddUp;
            };
            g.overdue = left;
        }
        if c.accepted {
            pending.accepted_ids.push(c.id);
            g.priority_removed -= c.priority.unwrap_or(0.0);
            if c.immediate {
                let Some(left) = g.immediate.checked_sub(1) else {
                    return Outcome::DoesNotAddUp;
                };
                g.immediate = left;
            }
            pending.assets.entry(c.asset).or_default().accepted += 1;
            pending.cves.entry(c.cve.clone()).or_default().accepted += 1;
            let held_highest = c.priority.is_some() && c.priority == g.max_priority;
            let held_reference = c.reference.is_some() && c.reference == g.reference;
            pending.read_highest |= held_highest || held_reference;
        }
    }
    let accepted = pending.accepted_ids.len() as u64;
    if accepted == 0 {
        return Outcome::Done;
    }
    match g.findings.checked_sub(accepted) {
        None => return Outcome::DoesNotAddUp,
        Some(0) => return Outcome::Empty,
        Some(left) => g.findings = left,
    }
    // What `found` tells of the totals: every finding of the fix, or of a named CVE.
    for c in found {
        if whole_fix && let Some(share) = pending.assets.get_mut(&c.asset) {
            *share.total.get_or_insert(0) += 1;
        }
        if (whole_fix || cve_named.contains(&c.cve))
            && let Some(share) = pending.cves.get_mut(&c.cve)
        {
            *share.total.get_or_insert(0) += 1;
        }
    }
    if whole_fix && pending.read_highest {
        let rest = found.iter().filter(|c| !c.accepted);
        g.max_priority = rest.clone().filter_map(|c| c.priority).reduce(f64::max);
        g.reference = rest.filter_map(|c| c.reference.clone()).max();
        pending.read_highest = false;
    }
    Outcome::Pending(pending)
}

/// Applies what was read: assets and CVEs all of whose findings are accepted leave the row.
/// False when the row does not add up.
fn finish(row: &mut Counted, p: Pending, highest: Option<(Option<f64>, Option<String>)>) -> bool {
    let g = &mut row.group;
    let (Some(assets_gone), Some(_)) = (gone(p.assets.values()), gone(p.cves.values())) else {
        return false;
    };
    let Some(assets) = g.assets.checked_sub(assets_gone) else {
        return false;
    };
    g.assets = assets;
    let gone_cves = p
        .cves
        .into_iter()
        .filter(|(_, s)| s.total == Some(s.accepted))
        .map(|(cve, _)| cve);
    // Taken out of the row's CVE list when the page reads it (`read_rollup_cves`).
    match g.rollup_cves.first_mut() {
        Some((_, gone)) => gone.extend(gone_cves),
        None => return false,
    }
    if let Some((max_priority, reference)) = highest {
        g.max_priority = max_priority;
        g.reference = reference;
    }
    true
}

/// How many of `shares` lose all their findings; `None` if a total is unknown or smaller than
/// what is accepted.
fn gone<'a>(shares: impl Iterator<Item = &'a Share>) -> Option<u64> {
    let mut gone = 0;
    for s in shares {
        let total = s.total?;
        if s.accepted > total {
            return None;
        }
        if s.accepted == total {
            gone += 1;
        }
    }
    Some(gone)
}

/// The exceptions granted by `now` (in force or ended), in (end, id) order as
/// `relevant_pause` wants them, and the fixes and CVEs they name: the covered findings hold
/// every open finding of each.
pub(super) struct Granted {
    exceptions: Vec<StoredException>,
    pub(super) fixes_named: HashSet<String>,
    cves_named: HashSet<String>,
}

impl Granted {
    /// No exception was granted by then.
    pub(super) fn is_empty(&self) -> bool {
        self.exceptions.is_empty()
    }
}

pub(super) async fn granted(tx: &mut Tx, now: DateTime<Utc>) -> Result<Granted> {
    let sql = q(&format!(
        "SELECT {EXCEPTION_COLUMNS} FROM exceptions WHERE created_at <= $1 ORDER BY ends_at, id"
    ))
    .bind(now);
    let exceptions: Vec<StoredException> = tx.on().all(&sql, OP, decode_exception).await?;
    let mut granted = Granted {
        exceptions,
        fixes_named: HashSet::new(),
        cves_named: HashSet::new(),
    };
    for e in &granted.exceptions {
        match &e.scope {
            ExceptionScope::Fix(fix) => {
                granted.fixes_named.insert(fix.clone());
            }
            ExceptionScope::Cve(cve) => {
                granted.cves_named.insert(cve.as_str().to_owned());
            }
            ExceptionScope::Finding(_) => {}
        }
    }
    Ok(granted)
}

/// Reads the open findings of `integrations` that `granted` may cover, by fix (from the
/// exceptions' side through indexes: a finding by its id, a CVE through the open findings' CVE
/// index, a fix exception's through `fix_software`, the software its roll-up rows counted), and
/// works out for each, in Rust, whether it is accepted and whether it is overdue once paused
/// time is added: the rule of `StoredFinding::sla_status`, which the scenario tests hold equal
/// to the SQL of [`crate::exceptions`]. (As correlated subqueries per finding, the same took
/// 55–75 ms for 2,700 findings at 2,000,000; probing every software for a fix's name, as
/// `covered_sql` does, 50–70 ms at 12,000 software.)
pub(super) async fn covered(
    d: Dialect,
    tx: &mut Tx,
    granted: &Granted,
    integrations: Vec<IntegrationId>,
    fix_software: BTreeSet<i64>,
    now: DateTime<Utc>,
) -> Result<HashMap<Key, Vec<Covered>>> {
    let mut by_fix: HashMap<Key, Vec<Covered>> = HashMap::new();
    if granted.exceptions.is_empty() || integrations.is_empty() {
        return Ok(by_fix);
    }
    let exceptions = &granted.exceptions;
    let mut sql = Sql::new("");
    let pn = sql.arg(Arg::Time(now));
    let ids = sql.arg(Arg::Ints(integrations.iter().map(|i| i.get()).collect()));
    let mut covered = format!(
        "SELECT e.finding_id FROM exceptions e WHERE e.finding_id IS NOT NULL AND e.created_at <= {pn} \
         UNION SELECT c.id FROM findings c WHERE c.status = 'open' AND c.cve_id IN \
         (SELECT e.cve_id FROM exceptions e WHERE e.scope = 'cve' AND e.created_at <= {pn})"
    );
    if !fix_software.is_empty() {
        let ps = sql.arg(Arg::Ints(fix_software.into_iter().collect()));
        covered.push_str(&format!(
            " UNION SELECT c.id FROM findings c WHERE c.status = 'open' AND {}",
            d.in_list("c.software_id", &ps)
        ));
    }
    sql.text = format!(
        "SELECT f.id, f.integration_id, {FIX_KEY_SQL} AS fix, f.asset_id, f.cve_id, f.priority, f.decision, \
         f.due_at, f.clock_start, f.recommendation_reference AS reference \
         FROM findings f JOIN software s ON s.id = f.software_id JOIN integrations i ON i.id = f.integration_id \
         WHERE f.id IN ({covered}) AND f.status = 'open' AND {within}",
        within = d.in_list("f.integration_id", &ids),
    );
    for r in tx.on().fetch_all(&sql, OP).await? {
        let (id, integration, fix) = (
            r.int("id")?,
            r.integration("integration_id")?,
            r.text("fix")?,
        );
        let cve_text = r.text("cve_id")?;
        let cve: CveId = cve_text.parse().map_err(|_| corrupt("CVE id", &cve_text))?;
        // `exceptions` is in (end, id) order, as `relevant_pause` wants it.
        let covering: Vec<Exception> = exceptions
            .iter()
            .filter(|e| e.covers(integration, id, &cve, &fix))
            .map(StoredException::pause)
            .collect();
        let due_at = r.opt_ts("due_at")?;
        let overdue = match (due_at, r.opt_ts("clock_start")?) {
            (Some(due), Some(start)) => {
                let due_now = match relevant_pause(&covering, start, now) {
                    Some(e) if !e.in_force(now) => e.resumed_due(due),
                    _ => due,
                };
                due <= now && due_now <= now
            }
            (Some(due), None) => due <= now,
            (None, _) => false,
        };
        by_fix.entry((integration, fix)).or_default().push(Covered {
            id,
            asset: r.int("asset_id")?,
            cve: cve_text,
            priority: r.opt_f64("priority")?,
            immediate: r.opt_text("decision")?.as_deref() == Some("immediate"),
            due_at,
            reference: r.opt_text("reference")?,
            accepted: covering.iter().any(|e| e.in_force(now)),
            overdue,
        });
    }
    Ok(by_fix)
}

/// Reads the open findings of each pending row's assets whose totals are unknown, through the
/// natural key's index: one probe per (asset, software of the fix).
async fn read_asset_totals(
    d: Dialect,
    tx: &mut Tx,
    rows: &HashMap<Key, Counted>,
    pending: &mut HashMap<Key, Pending>,
) -> Result<()> {
    let mut pairs = BTreeSet::new();
    for (key, p) in pending.iter() {
        let Some(row) = rows.get(key) else { continue };
        for (asset, share) in &p.assets {
            if share.total.is_none() {
                pairs.extend(row.software_ids.iter().map(|s| (*asset, *s)));
            }
        }
    }
    if pairs.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new("");
    // The pairs lead (SQLite's CROSS JOIN keeps that order), each probing the natural key's
    // index on (asset_id, software_id). On SQLite they are one JSON array of [asset, software]:
    // two `json_each` lists joined on their positions are a nested loop over both (0.9 s for
    // 5,000 pairs); the index is named because SQLite, left to choose, may probe the open
    // findings' (software_id, recommended_update) index by software alone.
    let (pairs, natural_key) = match d.backend {
        Backend::Sqlite => {
            let list: Vec<[i64; 2]> = pairs.into_iter().map(|(a, s)| [a, s]).collect();
            let json = serde_json::to_string(&list).unwrap_or_else(|_| "[]".into());
            let pp = sql.arg(Arg::Text(json));
            (
                format!(
                    "(SELECT json_extract(value, '$[0]') AS asset, json_extract(value, '$[1]') AS software \
                     FROM json_each({pp})) p"
                ),
                " INDEXED BY findings_natural_key",
            )
        }
        Backend::Postgres => {
            let (assets, software): (Vec<i64>, Vec<i64>) = pairs.into_iter().unzip();
            let pa = sql.arg(Arg::Ints(assets));
            let ps = sql.arg(Arg::Ints(software));
            (
                format!(
                    "unnest(CAST({pa} AS BIGINT[]), CAST({ps} AS BIGINT[])) AS p(asset, software)"
                ),
                "",
            )
        }
    };
    sql.text = format!(
        "SELECT x.integration_id, x.fix, x.asset_id, count(*) AS n FROM \
         (SELECT f.integration_id, {FIX_KEY_SQL} AS fix, f.asset_id FROM {pairs} \
         CROSS JOIN findings f{natural_key} CROSS JOIN software s CROSS JOIN integrations i \
         WHERE f.asset_id = p.asset AND f.software_id = p.software AND f.status = 'open' \
         AND s.id = f.software_id AND i.id = f.integration_id) x \
         GROUP BY x.integration_id, x.fix, x.asset_id"
    );
    for r in tx.on().fetch_all(&sql, OP).await? {
        let key = (r.integration("integration_id")?, r.text("fix")?);
        let asset = r.int("asset_id")?;
        if let Some(share) = pending.get_mut(&key).and_then(|p| p.assets.get_mut(&asset)) {
            share.total = Some(r.int("n")?.max(0) as u64);
        }
    }
    Ok(())
}

/// Reads the open findings of each pending row's CVEs whose totals are unknown (CVEs a finding
/// exception touches), through the open findings' CVE index.
async fn read_cve_totals(
    d: Dialect,
    tx: &mut Tx,
    pending: &mut HashMap<Key, Pending>,
) -> Result<()> {
    let mut cves = BTreeSet::new();
    let mut integrations = BTreeSet::new();
    for (key, p) in pending.iter() {
        for (cve, share) in &p.cves {
            if share.total.is_none() {
                cves.insert(cve.clone());
                integrations.insert(key.0);
            }
        }
    }
    if cves.is_empty() {
        return Ok(());
    }
    let mut sql = Sql::new("");
    let pc = sql.arg(Arg::Texts(cves.into_iter().collect()));
    let pi = sql.arg(Arg::Ints(
        integrations.into_iter().map(IntegrationId::get).collect(),
    ));
    sql.text = format!(
        "SELECT x.integration_id, x.fix, x.cve_id, count(*) AS n FROM \
         (SELECT f.integration_id, {FIX_KEY_SQL} AS fix, f.cve_id FROM findings f \
         JOIN software s ON s.id = f.software_id JOIN integrations i ON i.id = f.integration_id \
         WHERE f.status = 'open' AND {} AND {}) x GROUP BY x.integration_id, x.fix, x.cve_id",
        d.in_list("f.cve_id", &pc),
        d.in_list("f.integration_id", &pi)
    );
    for r in tx.on().fetch_all(&sql, OP).await? {
        let key = (r.integration("integration_id")?, r.text("fix")?);
        let cve = r.text("cve_id")?;
        if let Some(share) = pending.get_mut(&key).and_then(|p| p.cves.get_mut(&cve)) {
            share.total = Some(r.int("n")?.max(0) as u64);
        }
    }
    Ok(())
}

/// The highest priority and the reference of the row's open findings other than `accepted`.
async fn read_highest(
    d: Dialect,
    tx: &mut Tx,
    key: &Key,
    row: &Counted,
    accepted: &[i64],
) -> Result<(Option<f64>, Option<String>)> {
    let mut sql = Sql::new("");
    let restrict = fix_restrict(d, &mut sql, key, row);
    let ids = sql.arg(Arg::Ints(accepted.to_vec()));
    sql.text = format!(
        "SELECT max(f.priority) AS max_priority, max(f.recommendation_reference{collate}) AS reference \
         FROM findings f JOIN software s ON s.id = f.software_id JOIN integrations i ON i.id = f.integration_id \
         WHERE f.status = 'open'{restrict} AND NOT {}",
        d.in_list("f.id", &ids),
        collate = d.collate_c
    );
    match tx.on().fetch_optional(&sql, OP).await? {
        Some(r) => Ok((r.opt_f64("max_priority")?, r.opt_text("reference")?)),
        None => Ok((None, None)),
    }
}
