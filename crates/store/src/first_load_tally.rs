//! A first load's roll-ups, counted from the rows as the bulk writer inserts them.
//!
//! At the end of an integration's first load the store used to read every open finding three
//! more times: for the run's SLA snapshot (`sla_sql::snapshot_sql`), for the remediation plan's
//! roll-up (`fix_plan::build_sql`) and for the per-asset summaries (`summary::refresh_assets_sql`)
//! — 3.9 s of a 19 s load at 20,000 devices on SQLite (BENCHMARKS.md). Every row of such a load
//! passes through a bulk writer once, with its assessment (SQLite's `sqlite::bulk`, PostgreSQL's
//! `postgres::first_load`), so the same numbers can be added up there, after each batch commits.
//!
//! The tally stands for the stored rows only while nothing else has written the integration's
//! findings. It is dropped (and the store counts from the rows, as before) when:
//! - a batch was not entirely new rows with their assessments (a row repeated, updated or
//!   reopened), or belonged to another run, or held text the store cleaned (a NUL);
//! - a batch's write failed, or its caller stopped waiting for it ([`BatchGuard`]);
//! - an asset's rows came back after other assets' rows had filled [`RECENT_BATCHES`] batches;
//! - the run's reconciliation fixed a finding;
//! - an assessment was written for the integration after the load began, by this process or by
//!   another (`integrations.findings_generation`, migration 0021, moves on every such write);
//! - for the SLA snapshot, an exception exists that may cover the integration's findings;
//! - the time the numbers are asked for lies outside the window the tally can answer for (below).
//!
//! Whether a finding is overdue or due soon depends on the time of the count, which is not known
//! while the rows stream in. Every such predicate moves at most once as time passes, so a row
//! whose predicates are the same at the run's start and [`HORIZON_MICROS`] later has the same answer at
//! any time in between: those are counted at once. The few whose answer changes in that window
//! are kept with their dates and decided when the count is made.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rampart_model::priority::Decision;
use rampart_model::{IntegrationId, Product, RunId};

use rampart_model::Finding;

use crate::common::{FastMap, FastSet, RowExt, micros, severity_code};
use crate::db::{Tx, q};
use crate::error::{Result, StoreError};
use crate::exceptions::fix_key;
use crate::priority::StoredAssessment;
use crate::types::{Backend, UpsertCounts};

/// How long after the run's start the tally can say which rows are overdue or due soon. A first
/// load that ends later than this counts from the rows.
pub(crate) const HORIZON_MICROS: i64 = 24 * 3_600 * 1_000_000;

/// More rows than this whose answer changes inside the window, and the tally gives up (it would
/// hold their dates in memory): counting from the rows is always right.
const MAX_UNSETTLED: usize = 1_000_000;

/// How many of the last batches' assets keep their fixes (see `FirstLoadTally::recent`). Export
/// files are read three at a time, so a device whose rows a file boundary splits has them ~40
/// batches apart (~65,000 rows per file); with 8, the tally gave up on 2 of 5 first loads of
/// 100,000 devices from files (82–88 s instead of 67–72 s). 128 batches hold ~50 assets' fixes
/// each, a few MB.
const RECENT_BATCHES: u64 = 128;

/// The tallies of the first loads a store is writing, by integration.
pub(crate) type Tallies = std::sync::Mutex<FastMap<IntegrationId, FirstLoadTally>>;

/// The tallies, whatever a panic elsewhere did: each change to the map is one insert or removal.
pub(crate) fn lock(
    t: &Tallies,
) -> std::sync::MutexGuard<'_, FastMap<IntegrationId, FirstLoadTally>> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// One row as the bulk writer inserted it: the values stored, as stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TallyRow<'a> {
    pub asset_id: i64,
    pub software_id: i64,
    pub vendor: &'a str,
    pub name: &'a str,
    pub cve_id: &'a str,
    /// The stored severity code (1 low … 4 critical).
    pub severity: Option<i64>,
    pub recommended_update: Option<&'a str>,
    pub reference: Option<&'a str>,
    pub assessment: Option<TallyAssessment>,
}

/// A row of a committed batch as a backend's bulk writer resolved it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolved<'a> {
    pub finding: &'a Finding,
    pub asset_id: i64,
    pub software_id: i64,
    pub assessment: Option<StoredAssessment>,
}

impl<'a> Resolved<'a> {
    /// The row as stored, or `None` when a text of it was stored cleaned (`common::clean`: a
    /// NUL replaced), which the tally does not follow.
    fn stored(&self) -> Option<TallyRow<'a>> {
        let f = self.finding;
        let plain = |t: &'a str| (!t.contains('\0')).then_some(t);
        let plain_opt = |t: &'a Option<String>| match t.as_deref() {
            None => Some(None),
            Some(t) => plain(t).map(Some),
        };
        Some(TallyRow {
            asset_id: self.asset_id,
            software_id: self.software_id,
            vendor: plain(&f.key.software_vendor)?,
            name: plain(&f.key.software_name)?,
            cve_id: f.key.cve_id.as_str(),
            severity: f.severity.map(severity_code),
            recommended_update: plain_opt(&f.recommended_update)?,
            reference: plain_opt(&f.recommendation_reference)?,
            assessment: self.assessment.map(|a| TallyAssessment {
                decision: a.decision,
                priority: a.priority,
                due_at: micros(a.due_at),
                clock_start: micros(a.clock_start),
            }),
        })
    }
}

/// Adds a committed batch of the run (started at `start`) to the integration's tally, if it has
/// one: `rows` are the batch's rows when every one of them was inserted new with its assessment,
/// `None` otherwise (the tally is dropped then).
pub(crate) fn add_batch(
    tallies: &Tallies,
    integration: IntegrationId,
    run_id: RunId,
    start: DateTime<Utc>,
    rows: Option<&[Resolved<'_>]>,
) {
    let mut map = lock(tallies);
    let Some(tally) = map.get_mut(&integration) else {
        return;
    };
    // The rows go to the tally as they are read, not collected into a list first (a list new for
    // each batch was ~11 % of a first load's page faults). A row the tally cannot stand for ends
    // the batch there, and the tally, counted that far, is dropped below.
    let counted = rows.is_some_and(|rows| {
        let mut plain = true;
        let stored = rows.iter().map_while(|r| {
            let row = r.stored();
            plain &= row.is_some();
            row
        });
        tally.add(run_id, micros(start), stored) && plain
    });
    if !counted {
        map.remove(&integration);
        tracing::debug!(
            message = "A first load's roll-ups will be counted from its rows: a batch was not one its tally can count.",
            integration = %integration
        );
    }
}

/// What one batch's upsert did, as both backends' bulk writers report it.
pub(crate) struct Written<'a> {
    pub counts: UpsertCounts,
    /// The stored open findings it repeated unchanged and left alone.
    pub unchanged: Vec<i64>,
    /// The run's start, as every row was stamped.
    pub started_at: DateTime<Utc>,
    /// Every row as resolved, when all of them were inserted new with their assessments (what
    /// [`add_batch`] can count); `None` otherwise.
    pub inserted: Option<Vec<Resolved<'a>>>,
}

impl<'a> Written<'a> {
    /// A batch that was merged into what is stored, not all inserted new.
    pub(crate) fn merged(
        started_at: DateTime<Utc>,
        counts: UpsertCounts,
        unchanged: Vec<i64>,
    ) -> Self {
        Self {
            counts,
            unchanged,
            started_at,
            inserted: None,
        }
    }
}

/// Drops an integration's tally unless the batch it stands for is declared counted
/// ([`BatchGuard::counted`]): a batch whose write failed part way, or whose caller stopped
/// waiting for it (SQLite's first-load writer commits it all the same), may be stored without
/// being counted. Giving up is always right: the roll-ups are then counted from the rows.
pub(crate) struct BatchGuard<'a> {
    tallies: &'a Tallies,
    integration: IntegrationId,
    counted: bool,
}

impl<'a> BatchGuard<'a> {
    pub(crate) fn new(tallies: &'a Tallies, integration: IntegrationId) -> Self {
        Self {
            tallies,
            integration,
            counted: false,
        }
    }

    /// The batch went to the tally (`add_batch`) as written.
    pub(crate) fn counted(mut self) {
        self.counted = true;
    }
}

impl Drop for BatchGuard<'_> {
    fn drop(&mut self) {
        if !self.counted {
            lock(self.tallies).remove(&self.integration);
        }
    }
}

/// A row's stored assessment, times in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TallyAssessment {
    pub decision: Decision,
    pub priority: u8,
    pub due_at: i64,
    pub clock_start: i64,
}

/// `sla_snapshots`' counts of one (decision, severity).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SnapshotCounts {
    pub open: u64,
    pub overdue: u64,
    pub due_soon: u64,
}

/// One `fix_plan` row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FixRow {
    pub fix: String,
    pub findings: u64,
    pub assets: u64,
    pub priority_removed: f64,
    pub max_priority: Option<f64>,
    pub immediate: u64,
    pub overdue: u64,
    /// Comma-separated, in first-seen order (as `group_concat(DISTINCT …)` leaves them).
    pub cves: String,
    pub software_ids: String,
    pub recommended_update: Option<String>,
    pub reference: Option<String>,
}

/// One asset's summary columns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AssetCounts {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub open: u64,
}

impl AssetCounts {
    /// `assets.open_rank`, as `summary::refresh_assets_sql` computes it.
    pub(crate) fn rank(&self) -> i64 {
        let capped = |n: u64| i64::try_from(n.min(999_999)).unwrap_or(999_999);
        capped(self.critical) * 1_000_000_000_000
            + capped(self.high) * 1_000_000
            + capped(self.open)
    }
}

/// The fixes (sorted) of an asset's rows in the recent batches, and the last batch it was in.
#[derive(Debug)]
struct RecentAsset {
    batch: u64,
    fixes: Vec<u32>,
}

#[derive(Debug, Default)]
struct FixLine {
    findings: u64,
    /// Distinct assets.
    assets: u64,
    priority_removed: f64,
    max_priority: Option<u8>,
    immediate: u64,
    overdue_settled: u64,
    /// Due dates inside the window, decided at the count.
    due_unsettled: Vec<i64>,
    cves: Vec<u32>,
    cve_set: FastSet<u32>,
    software: Vec<i64>,
    software_set: FastSet<i64>,
    /// The least and greatest `COALESCE(recommended_update, '')`.
    updates: Option<(String, String)>,
    reference: Option<String>,
}

/// Whether a row with these dates is overdue at `at`, and whether it is due soon then (as
/// `sla_sql::snapshot_sql` decides both).
fn due_state(due: i64, clock_start: i64, at: i64) -> (bool, bool) {
    let overdue = due <= at;
    let soon = !overdue
        && (i128::from(due) - i128::from(at)) * 5 <= i128::from(due) - i128::from(clock_start);
    (overdue, soon)
}

/// The part of the due-soon test that grows true as time passes (`(due - at) * 5 <= due - start`).
fn little_left(due: i64, clock_start: i64, at: i64) -> bool {
    (i128::from(due) - i128::from(at)) * 5 <= i128::from(due) - i128::from(clock_start)
}

/// What a first load has inserted, added up.
#[derive(Debug)]
pub(crate) struct FirstLoadTally {
    /// The run whose rows it counts: the first to add a batch.
    pub run_id: Option<RunId>,
    /// `integrations.findings_generation` when the load began.
    pub generation: i64,
    product: Product,
    /// The run's start (µs): the window's beginning.
    start: Option<i64>,
    snapshot: BTreeMap<(Decision, i64), SnapshotCounts>,
    /// (decision, severity, due, clock start) of assessed rows whose state changes in the window.
    unsettled: Vec<(Decision, i64, i64, i64)>,
    assets: FastMap<i64, AssetCounts>,
    /// How many distinct assets each fix has (`fix_plan.assets`) is counted as batches come:
    /// Microsoft's pages and export files list a device's rows together, so an asset's rows
    /// fall in one batch or a few consecutive ones. The fixes of the assets of the last
    /// [`RECENT_BATCHES`] batches are kept to see which of them an asset already had; an asset
    /// that comes back after that cannot be counted, and the tally gives up. Keeping every
    /// asset's fixes instead (~1,000,000 (fix, asset) pairs at 20,000 devices) cost 10-15 MiB of
    /// peak RSS.
    recent: FastMap<i64, RecentAsset>,
    batches: u64,
    fix_at: FastMap<String, u32>,
    fixes: Vec<FixLine>,
    cve_at: FastMap<String, u32>,
    cve_names: Vec<String>,
}

impl FirstLoadTally {
    pub(crate) fn new(generation: i64, product: Product) -> Self {
        Self {
            run_id: None,
            generation,
            product,
            start: None,
            snapshot: BTreeMap::new(),
            unsettled: Vec::new(),
            assets: FastMap::default(),
            recent: FastMap::default(),
            batches: 0,
            fix_at: FastMap::default(),
            fixes: Vec::new(),
            cve_at: FastMap::default(),
            cve_names: Vec::new(),
        }
    }

    /// Adds a batch the run (started at `start`, µs) inserted, every row new. Returns false when
    /// the tally can no longer stand for the rows (the caller drops it).
    pub(crate) fn add<'a>(
        &mut self,
        run_id: RunId,
        start: i64,
        rows: impl IntoIterator<Item = TallyRow<'a>>,
    ) -> bool {
        if self.run_id.is_some_and(|r| r != run_id) || self.start.is_some_and(|s| s != start) {
            return false;
        }
        self.run_id = Some(run_id);
        self.start = Some(start);
        let end = start.saturating_add(HORIZON_MICROS);
        // The batch's (asset, fix) pairs, merged into each asset's list once at the end.
        let mut pairs = Vec::with_capacity(5_000);
        // The assets this batch is the first to have rows of.
        let mut fresh = Vec::new();
        for row in rows {
            let fix = self.fix_of(&row);
            if self.add_asset(&row) {
                fresh.push(row.asset_id);
            }
            pairs.push((row.asset_id, fix));
            let cve = self.cve_of(row.cve_id);
            if let Some(a) = row.assessment {
                let settled = due_state(a.due_at, a.clock_start, start)
                    == due_state(a.due_at, a.clock_start, end)
                    && little_left(a.due_at, a.clock_start, start)
                        == little_left(a.due_at, a.clock_start, end);
                let severity = row.severity.unwrap_or(0);
                let line = self.snapshot.entry((a.decision, severity)).or_default();
                line.open += 1;
                if settled {
                    let (overdue, soon) = due_state(a.due_at, a.clock_start, start);
                    line.overdue += u64::from(overdue);
                    line.due_soon += u64::from(soon);
                } else {
                    self.unsettled
                        .push((a.decision, severity, a.due_at, a.clock_start));
                }
            }
            let Some(line) = self.fixes.get_mut(fix as usize) else {
                return false;
            };
            line.findings += 1;
            if let Some(a) = row.assessment {
                line.priority_removed += f64::from(a.priority);
                line.max_priority = line.max_priority.max(Some(a.priority));
                line.immediate += u64::from(a.decision == Decision::Immediate);
                if a.due_at <= start {
                    line.overdue_settled += 1;
                } else if a.due_at <= end {
                    line.due_unsettled.push(a.due_at);
                }
            }
            if line.cve_set.insert(cve) {
                line.cves.push(cve);
            }
            if line.software_set.insert(row.software_id) {
                line.software.push(row.software_id);
            }
            let update = row.recommended_update.unwrap_or("");
            match &mut line.updates {
                None => line.updates = Some((update.to_owned(), update.to_owned())),
                Some((least, greatest)) => {
                    if update < least.as_str() {
                        *least = update.to_owned();
                    } else if update > greatest.as_str() {
                        *greatest = update.to_owned();
                    }
                }
            }
            if let Some(r) = row.reference
                && line.reference.as_deref().is_none_or(|old| r > old)
            {
                line.reference = Some(r.to_owned());
            }
        }
        pairs.sort_unstable();
        pairs.dedup();
        fresh.sort_unstable();
        self.batches += 1;
        for group in pairs.chunk_by(|a, b| a.0 == b.0) {
            let Some(&(asset, _)) = group.first() else {
                continue;
            };
            let fixes = group.iter().map(|p| p.1);
            let known = match self.recent.get_mut(&asset) {
                Some(recent) => {
                    recent.batch = self.batches;
                    &mut recent.fixes
                }
                // Rows (besides this batch's) counted already, but no longer in the window.
                None if fresh.binary_search(&asset).is_err() => return false,
                None => {
                    &mut self
                        .recent
                        .entry(asset)
                        .or_insert(RecentAsset {
                            batch: self.batches,
                            fixes: Vec::new(),
                        })
                        .fixes
                }
            };
            for fix in fixes {
                if let Err(at) = known.binary_search(&fix) {
                    known.insert(at, fix);
                    if let Some(line) = self.fixes.get_mut(fix as usize) {
                        line.assets += 1;
                    }
                }
            }
        }
        let oldest = self.batches.saturating_sub(RECENT_BATCHES);
        self.recent.retain(|_, r| r.batch > oldest);
        self.unsettled.len()
            + self
                .fixes
                .iter()
                .map(|f| f.due_unsettled.len())
                .sum::<usize>()
            <= MAX_UNSETTLED
    }

    /// Counts the row in its asset's summary; true when it is the asset's first.
    fn add_asset(&mut self, row: &TallyRow<'_>) -> bool {
        let counts = self.assets.entry(row.asset_id).or_default();
        counts.open += 1;
        match row.severity {
            Some(4) => counts.critical += 1,
            Some(3) => counts.high += 1,
            Some(2) => counts.medium += 1,
            Some(1) => counts.low += 1,
            _ => {}
        }
        counts.open == 1
    }

    fn fix_of(&mut self, row: &TallyRow<'_>) -> u32 {
        // An Endpoint row with a recommended update is fixed by that update (`fix_key`): looked
        // up by the text it has, without building a key.
        let by_update = row
            .recommended_update
            .filter(|u| self.product == Product::Endpoint && !u.is_empty());
        if let Some(&at) = by_update.and_then(|u| self.fix_at.get(u)) {
            return at;
        }
        let key = fix_key(self.product, row.vendor, row.name, row.recommended_update);
        if let Some(&at) = self.fix_at.get(&key) {
            return at;
        }
        let at = u32::try_from(self.fixes.len()).unwrap_or(u32::MAX);
        self.fix_at.insert(key, at);
        self.fixes.push(FixLine::default());
        at
    }

    fn cve_of(&mut self, cve: &str) -> u32 {
        if let Some(&at) = self.cve_at.get(cve) {
            return at;
        }
        let at = u32::try_from(self.cve_names.len()).unwrap_or(u32::MAX);
        self.cve_at.insert(cve.to_owned(), at);
        self.cve_names.push(cve.to_owned());
        at
    }

    /// Whether the tally can say what is overdue and due soon at `at` (µs).
    fn answers_at(&self, at: i64) -> bool {
        match self.start {
            // No row: nothing is overdue at any time.
            None => true,
            Some(start) => at >= start && at <= start.saturating_add(HORIZON_MICROS),
        }
    }

    /// The SLA snapshot's rows at `at` (µs): (decision, severity, counts), or `None` when `at`
    /// is outside the window.
    pub(crate) fn snapshot_at(&self, at: i64) -> Option<Vec<(Decision, i64, SnapshotCounts)>> {
        if !self.answers_at(at) {
            return None;
        }
        let mut lines = self.snapshot.clone();
        for &(decision, severity, due, clock_start) in &self.unsettled {
            let (overdue, soon) = due_state(due, clock_start, at);
            let line = lines.entry((decision, severity)).or_default();
            line.overdue += u64::from(overdue);
            line.due_soon += u64::from(soon);
        }
        Some(lines.into_iter().map(|((d, s), c)| (d, s, c)).collect())
    }

    /// The remediation plan's rows at `at` (µs), or `None` when `at` is outside the window.
    pub(crate) fn fix_plan_at(&self, at: i64) -> Option<Vec<FixRow>> {
        if !self.answers_at(at) {
            return None;
        }
        let mut keys: Vec<(&String, u32)> = self.fix_at.iter().map(|(k, &v)| (k, v)).collect();
        keys.sort_unstable_by_key(|&(_, at)| at);
        let join = |items: &mut dyn Iterator<Item = String>| items.collect::<Vec<_>>().join(",");
        let rows = keys
            .into_iter()
            .filter_map(|(fix, k)| {
                let line = self.fixes.get(k as usize)?;
                let overdue = line.overdue_settled
                    + line.due_unsettled.iter().filter(|&&d| d <= at).count() as u64;
                Some(FixRow {
                    fix: fix.clone(),
                    findings: line.findings,
                    assets: line.assets,
                    priority_removed: line.priority_removed,
                    max_priority: line.max_priority.map(f64::from),
                    immediate: line.immediate,
                    overdue,
                    cves: join(
                        &mut line
                            .cves
                            .iter()
                            .filter_map(|&c| self.cve_names.get(c as usize).cloned()),
                    ),
                    software_ids: join(&mut line.software.iter().map(i64::to_string)),
                    recommended_update: line
                        .updates
                        .as_ref()
                        .filter(|(least, greatest)| least == greatest)
                        .map(|(u, _)| u.clone()),
                    reference: line.reference.clone(),
                })
            })
            .collect();
        Some(rows)
    }

    /// The summary columns of every asset with rows (the others have none open and none fixed).
    pub(crate) fn asset_counts(&self) -> impl Iterator<Item = (i64, AssetCounts)> + '_ {
        self.assets.iter().map(|(&id, &c)| (id, c))
    }
}

// ---- writing the roll-ups from a tally ------------------------------------------------------

/// A tally's rows, taken out of the lock, with what is checked against the database before they
/// are written.
pub(crate) struct Standing<T> {
    generation: i64,
    pub rows: T,
}

/// `make`'s result from the integration's tally when it counted `run_id`'s rows.
pub(crate) fn from_tally<T>(
    tallies: &Tallies,
    integration: IntegrationId,
    run_id: RunId,
    make: impl FnOnce(&FirstLoadTally) -> Option<T>,
) -> Option<Standing<T>> {
    standing(lock(tallies).get(&integration)?, run_id, make)
}

/// `make`'s result from `tally` when it counted `run_id`'s rows.
pub(crate) fn standing<T>(
    tally: &FirstLoadTally,
    run_id: RunId,
    make: impl FnOnce(&FirstLoadTally) -> Option<T>,
) -> Option<Standing<T>> {
    if tally.run_id != Some(run_id) {
        return None;
    }
    Some(Standing {
        generation: tally.generation,
        rows: make(tally)?,
    })
}

impl<T> Standing<T> {
    /// Whether the rows still stand for the stored findings in `tx`'s view: no assessment of
    /// the integration was written since its load began (`findings_generation`), and, for the
    /// SLA snapshot (`exceptions`), no exception exists that may cover its findings.
    pub(crate) async fn holds(
        &self,
        tx: &mut Tx,
        integration: IntegrationId,
        exceptions: bool,
    ) -> Result<bool> {
        let op = "checking a first load's counts";
        let sql = q(
            "SELECT findings_generation, EXISTS (SELECT 1 FROM exceptions e \
             WHERE e.integration_id IS NULL OR e.integration_id = $1) AS excepted \
             FROM integrations WHERE id = $1",
        )
        .bind(integration);
        let Some(row) = tx.on().fetch_optional(&sql, op).await? else {
            return Ok(false);
        };
        Ok(row.int("findings_generation")? == self.generation
            && !(exceptions && row.flag("excepted")?))
    }
}

/// Writes the SLA snapshot rows of a tally: the rows `sla_sql::snapshot_sql` would
/// insert.
pub(crate) async fn insert_snapshot(
    backend: Backend,
    tx: &mut Tx,
    integration: IntegrationId,
    run_id: RunId,
    at: DateTime<Utc>,
    lines: &[(Decision, i64, SnapshotCounts)],
) -> Result<u64> {
    let json: Vec<_> = lines
        .iter()
        .map(|(d, severity, c)| (d.as_str(), severity, c.open, c.overdue, c.due_soon))
        .collect();
    let values = match backend {
        Backend::Sqlite => {
            "j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4 FROM json_each($4) j"
        }
        Backend::Postgres => {
            "j ->> 0, CAST(j ->> 1 AS SMALLINT), CAST(j ->> 2 AS BIGINT), CAST(j ->> 3 AS BIGINT), \
             CAST(j ->> 4 AS BIGINT) FROM jsonb_array_elements(CAST($4 AS JSONB)) j"
        }
    };
    let sql = q(&format!(
        "INSERT INTO sla_snapshots (integration_id, run_id, taken_at, accepted, decision, severity, open_count, \
         overdue, due_soon) SELECT $1, $2, $3, 0, {values}"
    ))
    .bind(integration)
    .bind(run_id)
    .bind(at)
    .bind(to_json(&json)?);
    tx.on()
        .execute(&sql, "recording the run's SLA snapshot")
        .await
}

/// Writes a tally's remediation plan rows: the rows `fix_plan::build_sql` would insert.
pub(crate) async fn insert_fix_plan(
    backend: Backend,
    tx: &mut Tx,
    integration: IntegrationId,
    rows: &[FixRow],
) -> Result<()> {
    let json: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                &r.fix,
                r.findings,
                r.assets,
                r.priority_removed,
                r.max_priority,
                r.immediate,
                r.overdue,
                &r.cves,
                &r.software_ids,
                &r.recommended_update,
                &r.reference,
            )
        })
        .collect();
    let values = match backend {
        Backend::Sqlite => {
            "j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, j.value ->> 5, \
             j.value ->> 6, j.value ->> 7, j.value ->> 8, j.value ->> 9, j.value ->> 10 FROM json_each($2) j"
        }
        Backend::Postgres => {
            "j ->> 0, CAST(j ->> 1 AS BIGINT), CAST(j ->> 2 AS BIGINT), \
             CAST(j ->> 3 AS DOUBLE PRECISION), CAST(j ->> 4 AS DOUBLE PRECISION), CAST(j ->> 5 AS BIGINT), \
             CAST(j ->> 6 AS BIGINT), j ->> 7, j ->> 8, j ->> 9, j ->> 10 FROM jsonb_array_elements(CAST($2 AS JSONB)) j"
        }
    };
    let sql = q(&format!(
        "INSERT INTO fix_plan (integration_id, fix, findings, assets, priority_removed, max_priority, immediate, \
         overdue, cves, software_ids, recommended_update, reference) SELECT $1, {values}"
    ))
    .bind(integration)
    .bind(to_json(&json)?);
    tx.on()
        .execute(&sql, "counting the remediation plan")
        .await?;
    Ok(())
}

/// Writes a tally's per-asset summaries: what `summary::refresh_assets_sql` would set.
/// Every other asset of the integration has no finding, open or fixed.
pub(crate) async fn update_asset_summaries(
    backend: Backend,
    tx: &mut Tx,
    integration: IntegrationId,
    counts: &[(i64, AssetCounts)],
) -> Result<()> {
    let op = "refreshing the findings summaries";
    if backend == Backend::Postgres {
        return update_asset_summaries_postgres(tx, integration, counts).await;
    }
    let zero = q(
        "UPDATE assets SET open_critical = 0, open_high = 0, open_medium = 0, open_low = 0, \
         open_total = 0, fixed_total = 0, open_rank = 0 WHERE integration_id = $1",
    )
    .bind(integration);
    tx.on().execute(&zero, op).await?;
    let json: Vec<_> = counts
        .iter()
        .map(|(id, c)| (id, c.critical, c.high, c.medium, c.low, c.open, c.rank()))
        .collect();
    // Through a temporary table keyed by id: joined straight to `json_each`, SQLite's bundled
    // planner walked the JSON once per asset (129 s for 18,000 assets, measured).
    let steps = [
        "CREATE TEMP TABLE IF NOT EXISTS asset_tally (id INTEGER PRIMARY KEY, critical INTEGER, high INTEGER, \
         medium INTEGER, low INTEGER, open INTEGER, rank INTEGER)",
        "DELETE FROM asset_tally",
        "INSERT INTO asset_tally (id, critical, high, medium, low, open, rank) SELECT j.value ->> 0, j.value ->> 1, \
         j.value ->> 2, j.value ->> 3, j.value ->> 4, j.value ->> 5, j.value ->> 6 FROM json_each($1) j",
        "UPDATE assets SET (open_critical, open_high, open_medium, open_low, open_total, open_rank) = \
         (t.critical, t.high, t.medium, t.low, t.open, t.rank) FROM asset_tally t WHERE assets.id = t.id",
        "DELETE FROM asset_tally",
    ];
    let json = to_json(&json)?;
    for step in steps {
        let mut sql = q(step);
        if step.contains("$1") {
            sql = sql.bind(json.as_str());
        }
        tx.on().execute(&sql, op).await?;
    }
    Ok(())
}

/// PostgreSQL's [`update_asset_summaries`]: each asset row is written once. Zeroing every asset
/// and then setting the tallied ones wrote each tallied row twice, and the second UPDATE met the
/// first one's row versions (0.05 s and 0.56 s at 20,000 devices). The tally comes as arrays,
/// which the server reads faster than JSON.
async fn update_asset_summaries_postgres(
    tx: &mut Tx,
    integration: IntegrationId,
    counts: &[(i64, AssetCounts)],
) -> Result<()> {
    let op = "refreshing the findings summaries";
    let column =
        |f: fn(&(i64, AssetCounts)) -> i64| crate::db::Arg::Ints(counts.iter().map(f).collect());
    let ids = column(|(id, _)| *id);
    // The integration's other assets have no finding: zeroed where they are not already.
    let zero = q(
        "UPDATE assets SET open_critical = 0, open_high = 0, open_medium = 0, open_low = 0, \
         open_total = 0, fixed_total = 0, open_rank = 0 WHERE integration_id = $1 \
         AND NOT (id = ANY(CAST($2 AS BIGINT[]))) \
         AND (open_critical, open_high, open_medium, open_low, open_total, fixed_total, open_rank) \
         IS DISTINCT FROM (0, 0, 0, 0, 0, 0, 0)",
    )
    .bind(integration)
    .bind(ids.clone());
    tx.on().execute(&zero, op).await?;
    let set = q(
        "UPDATE assets SET open_critical = c.critical, open_high = c.high, open_medium = c.medium, \
         open_low = c.low, open_total = c.open, fixed_total = 0, open_rank = c.rank \
         FROM unnest(CAST($1 AS BIGINT[]), CAST($2 AS BIGINT[]), CAST($3 AS BIGINT[]), CAST($4 AS BIGINT[]), \
         CAST($5 AS BIGINT[]), CAST($6 AS BIGINT[]), CAST($7 AS BIGINT[])) \
         AS c(id, critical, high, medium, low, open, rank) WHERE assets.id = c.id",
    )
    .bind(ids)
    .bind(column(|(_, c)| crate::common::as_i64(c.critical)))
    .bind(column(|(_, c)| crate::common::as_i64(c.high)))
    .bind(column(|(_, c)| crate::common::as_i64(c.medium)))
    .bind(column(|(_, c)| crate::common::as_i64(c.low)))
    .bind(column(|(_, c)| crate::common::as_i64(c.open)))
    .bind(column(|(_, c)| c.rank()));
    tx.on().execute(&set, op).await?;
    Ok(())
}

fn to_json(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::InvalidInput(format!("cannot encode a first load's counts: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600 * 1_000_000;

    /// A batch with a text the store cleaned (a NUL), anywhere in it, drops the tally: it
    /// cannot stand for what was stored. A batch without one keeps it.
    #[test]
    fn a_batch_with_a_cleaned_text_drops_the_tally() {
        let finding = |software: &str| {
            rampart_model::Finding::of_key(rampart_model::FindingKey {
                asset_source_id: "d1".into(),
                software_vendor: "v".into(),
                software_name: software.into(),
                software_version: "1".into(),
                cve_id: "CVE-2024-0001".parse().expect("a CVE id"),
            })
        };
        let findings = [
            finding("a"),
            finding("b"),
            finding("nul\0name"),
            finding("c"),
        ];
        fn resolved(fs: &[rampart_model::Finding]) -> Vec<Resolved<'_>> {
            fs.iter()
                .enumerate()
                .map(|(k, f)| Resolved {
                    finding: f,
                    asset_id: 1,
                    software_id: k as i64,
                    assessment: None,
                })
                .collect()
        }
        let integration = IntegrationId(3);
        let start = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("a time");
        for (rows, kept) in [
            (&findings[..2], true),
            (&findings[..], false),
            (&findings[2..], false),
        ] {
            let tallies = Tallies::default();
            lock(&tallies).insert(integration, FirstLoadTally::new(0, Product::Endpoint));
            add_batch(&tallies, integration, run(), start, Some(&resolved(rows)));
            assert_eq!(
                lock(&tallies).contains_key(&integration),
                kept,
                "{} rows",
                rows.len()
            );
        }
    }

    fn run() -> RunId {
        RunId(7)
    }

    fn row<'a>(
        asset: i64,
        software: i64,
        cve: &'a str,
        update: Option<&'a str>,
        a: Option<TallyAssessment>,
    ) -> TallyRow<'a> {
        TallyRow {
            asset_id: asset,
            software_id: software,
            vendor: "microsoft",
            name: "edge",
            cve_id: cve,
            severity: Some(asset % 5),
            recommended_update: update,
            reference: None,
            assessment: a,
        }
    }

    /// Every (due, clock start) around the window's edges: the tally's answer at any time inside
    /// it must be the one a count made then gives.
    #[test]
    fn overdue_and_due_soon_are_what_a_count_at_that_time_says() {
        let start = 1_000 * HOUR;
        let mut tally = FirstLoadTally::new(0, Product::Endpoint);
        let mut dates = Vec::new();
        for due_h in -30..60 {
            for span_h in [0, 1, 5, 24, 48, 200] {
                let due = start + due_h * HOUR + (due_h % 7) * 1_000;
                dates.push((due, due - span_h * HOUR));
            }
        }
        let rows: Vec<_> = dates
            .iter()
            .enumerate()
            .map(|(k, &(due, clock_start))| {
                row(
                    1 + (k % 3) as i64,
                    1,
                    "CVE-2024-0001",
                    Some("KB1"),
                    Some(TallyAssessment {
                        decision: Decision::Scheduled,
                        priority: 40,
                        due_at: due,
                        clock_start,
                    }),
                )
            })
            .collect();
        assert!(tally.add(run(), start, rows.iter().copied()));
        for at in (0..=48).map(|h| start + (h * HOUR / 2 - (h % 3) * 17).max(0)) {
            let (mut overdue, mut soon) = (0, 0);
            for &(due, clock_start) in &dates {
                let (o, s) = due_state(due, clock_start, at);
                overdue += u64::from(o);
                soon += u64::from(s);
            }
            let snapshot = tally.snapshot_at(at).unwrap_or_default();
            let counts: u64 = snapshot.iter().map(|l| l.2.overdue).sum();
            let soons: u64 = snapshot.iter().map(|l| l.2.due_soon).sum();
            assert_eq!((counts, soons), (overdue, soon), "at {at}");
            let plan = tally.fix_plan_at(at).unwrap_or_default();
            assert_eq!(plan.iter().map(|f| f.overdue).sum::<u64>(), overdue);
        }
        assert!(tally.snapshot_at(start - 1).is_none());
        assert!(tally.fix_plan_at(start + HORIZON_MICROS + 1).is_none());
        assert!(
            tally.unsettled.len() < dates.len() / 2,
            "most rows are settled at once"
        );
    }

    #[test]
    fn fixes_group_rows_as_the_roll_up_does() {
        let mut tally = FirstLoadTally::new(0, Product::Endpoint);
        let assess = |decision, priority| {
            Some(TallyAssessment {
                decision,
                priority,
                due_at: 10 * HOUR,
                clock_start: 0,
            })
        };
        let rows = [
            row(1, 5, "CVE-1", Some("KB1"), assess(Decision::Immediate, 90)),
            row(2, 5, "CVE-2", Some("KB1"), assess(Decision::Defer, 10)),
            row(1, 6, "CVE-1", Some("KB1"), None),
            row(1, 7, "CVE-3", None, assess(Decision::Scheduled, 30)),
            row(3, 7, "CVE-3", Some(""), assess(Decision::Scheduled, 30)),
        ];
        assert!(tally.add(run(), 0, rows));
        let plan = tally.fix_plan_at(HOUR).unwrap_or_default();
        assert_eq!(plan.len(), 2);
        let kb = &plan[0];
        assert_eq!(
            (
                kb.fix.as_str(),
                kb.findings,
                kb.assets,
                kb.priority_removed,
                kb.max_priority
            ),
            ("KB1", 3, 2, 100.0, Some(90.0))
        );
        assert_eq!((kb.immediate, kb.overdue), (1, 0));
        assert_eq!(
            (kb.cves.as_str(), kb.software_ids.as_str()),
            ("CVE-1,CVE-2", "5,6")
        );
        assert_eq!(kb.recommended_update.as_deref(), Some("KB1"));
        let upgrade = &plan[1];
        assert_eq!(upgrade.fix, "Upgrade microsoft edge");
        assert_eq!((upgrade.findings, upgrade.assets), (2, 2));
        // NULL and '' are the same update: the rows share it.
        assert_eq!(upgrade.recommended_update.as_deref(), Some(""));
        // A run other than the tally's cannot add to it.
        let other = RunId(8);
        assert!(!tally.add(other, 0, []));
    }

    /// An asset whose rows span a few consecutive batches counts once per fix; one that comes
    /// back after its fixes left the window makes the tally give up rather than guess.
    #[test]
    fn an_asset_counts_once_per_fix_or_the_tally_gives_up() {
        let mut tally = FirstLoadTally::new(0, Product::Endpoint);
        let batch = |asset: i64| {
            [
                row(asset, 1, "CVE-1", Some("KB1"), None),
                row(asset, 2, "CVE-2", Some("KB2"), None),
            ]
        };
        assert!(tally.add(run(), 0, batch(1)));
        assert!(tally.add(run(), 0, batch(2)));
        assert!(
            tally.add(run(), 0, batch(1)),
            "asset 1 is still in the window"
        );
        let plan = tally.fix_plan_at(0).unwrap_or_default();
        assert_eq!(
            plan.iter()
                .map(|f| (f.findings, f.assets))
                .collect::<Vec<_>>(),
            [(3, 2), (3, 2)]
        );
        for asset in 3..3 + RECENT_BATCHES as i64 {
            assert!(tally.add(run(), 0, batch(asset)));
        }
        assert!(!tally.add(run(), 0, batch(1)), "asset 1 left the window");
    }
}
