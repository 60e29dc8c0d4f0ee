//! Batches the size the sync engine sends, and the throughput of the bulk path.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};

use futures::TryStreamExt;
use rampart_model::priority::{Decision, FactorContribution, FactorName};
use rampart_model::{Finding, FindingStatus};
use rampart_store::{
    AssessScope, AssetFilter, Explanation, FindingFilter, InsertAssessor, ReconcileOutcome,
    ReconcilePolicy, Store, StoredAssessment, UpsertCounts, VulnerabilityFilter,
};

use crate::support::*;

scenarios!(
    batches_beyond_the_parameter_limit,
    new_findings_are_written_with_their_assessment,
    a_first_load_puts_off_only_what_it_rebuilds,
    a_first_loads_batches_are_stored_as_merged_ones,
    a_first_loads_counts_match_a_recount,
    a_run_that_left_nothing_to_prioritise_reads_no_finding,
    a_first_loads_writer_stores_what_the_stores_writer_stores,
    a_failed_batch_leaves_the_roll_ups_to_a_count,
    #[ignore = "throughput measurement: cargo test -p rampart-store --release -- --ignored --nocapture"]
    throughput_200k_findings,
);

/// 20,000 findings × 10 values per row is far beyond SQLite's 32,766 bound parameters per
/// statement; the store must split it, inside one transaction.
async fn batches_beyond_the_parameter_limit(store: Arc<dyn Store>) {
    const { assert!(20_000 * 10 > rampart_store::SQLITE_MAX_PARAMS) };
    let i = integration(&store, "big").await;
    let run = store.start_run(i.id, "full", t(0)).await.unwrap();
    let assets: Vec<_> = (0..2_000).map(asset).collect();
    assert_eq!(
        store.upsert_assets(i.id, run, &assets).await.unwrap().new,
        2_000
    );
    let batch = findings(200, 100);
    assert_eq!(batch.len(), 20_000);
    let c = store.upsert_findings(i.id, run, &batch).await.unwrap();
    assert_eq!(c.new, 20_000);
    let c = store.upsert_findings(i.id, run, &batch).await.unwrap();
    assert_eq!(
        c,
        UpsertCounts {
            unchanged: 20_000,
            ..Default::default()
        }
    );
    let counts = store
        .counts(&rampart_store::Visibility::All, Some(i.id))
        .await
        .unwrap();
    assert_eq!(counts.findings_open.total(), 20_000);
    assert_eq!(counts.assets_active, 2_000);
}

/// The `i` of `device_id(i)`.
fn device_number(id: &str) -> Option<usize> {
    usize::from_str_radix(id, 16)
        .ok()?
        .checked_sub(0xdead_0000_0000)
}

/// Assesses every finding by its asset: even-numbered devices `immediate`, odd ones `defer`, each
/// decision with its own explanation, first read at `first_read`.
struct ByDevice {
    first_read: DateTime<Utc>,
}

impl ByDevice {
    fn explanation(decision: Decision) -> Explanation {
        let contributions = [FactorContribution {
            factor: FactorName::Decision,
            value: decision.as_str().to_owned(),
            weight: 0,
            points: if decision == Decision::Immediate {
                75
            } else {
                0
            },
        }];
        Explanation::new(&contributions, |text| text.len() as i64)
    }
}

impl InsertAssessor for ByDevice {
    fn assess(&self, finding: &Finding) -> Option<StoredAssessment> {
        let device = device_number(&finding.key.asset_source_id)?;
        let decision = if device.is_multiple_of(2) {
            Decision::Immediate
        } else {
            Decision::Defer
        };
        Some(StoredAssessment {
            decision,
            priority: if device.is_multiple_of(2) { 80 } else { 10 },
            due_at: self.first_read + Duration::days(2),
            clock_start: self.first_read,
            explanation_id: Self::explanation(decision).id,
        })
    }
}

/// The bulk path writes a new finding's assessment with the row (one write per row), and leaves
/// the assessment of a row already stored alone (the run's pass decides about those: escalation
/// needs the stored due date). The explanations the rows refer to are stored after the load, in
/// id order (`write_assessments` with no writes), as the sync's inline assessor does.
async fn new_findings_are_written_with_their_assessment(store: Arc<dyn Store>) {
    let i = integration(&store, "assessed").await;
    let run = store.start_run(i.id, "full", t(0)).await.unwrap();
    let assets: Vec<_> = (0..4).map(asset).collect();
    store.upsert_assets(i.id, run, &assets).await.unwrap();
    let assessor = ByDevice { first_read: t(0) };
    let first = findings(2, 3);
    let c = store
        .upsert_findings_assessed(i.id, run, &first, Some(&assessor))
        .await
        .unwrap();
    assert_eq!(c.new, 6);
    let second = findings_of(2, 2, 3);
    store
        .upsert_findings_assessed(i.id, run, &second, Some(&assessor))
        .await
        .unwrap();
    let mut explanations = [Decision::Immediate, Decision::Defer].map(ByDevice::explanation);
    explanations.sort_by_key(|e| e.id);
    store
        .write_assessments(&explanations, &[], t(0))
        .await
        .unwrap();

    let stored = all_findings(&store, FindingFilter::default()).await;
    assert_eq!(stored.len(), 12);
    let started = t(0);
    for f in &stored {
        let device = device_number(&f.finding.key.asset_source_id).unwrap();
        let (decision, priority) = if device.is_multiple_of(2) {
            (Decision::Immediate, 80.0)
        } else {
            (Decision::Defer, 10.0)
        };
        assert_eq!(f.decision, Some(decision), "{f:?}");
        assert_eq!(f.priority, Some(priority));
        assert_eq!(f.due_at, Some(started + Duration::days(2)));
        let why = f
            .priority_factors
            .as_ref()
            .expect("the explanation was stored");
        assert_eq!(why[0].value, decision.as_str());
    }

    // Rows already stored keep their assessment, whatever the assessor says now; rows written
    // without an assessor have none.
    store.finish_run(run, &succeeded(t(1))).await.unwrap();
    let later = store.start_run(i.id, "full", t(60)).await.unwrap();
    let later_assessor = ByDevice { first_read: t(60) };
    let mut changed = first.clone();
    for f in &mut changed {
        f.cvss = Some(1.0);
    }
    let c = store
        .upsert_findings_assessed(i.id, later, &changed, Some(&later_assessor))
        .await
        .unwrap();
    assert_eq!(c.updated, 6);
    store
        .upsert_findings(i.id, later, &findings_of(4, 1, 2))
        .await
        .unwrap();
    let stored = all_findings(&store, FindingFilter::default()).await;
    for f in &stored {
        if f.finding.key.asset_source_id == device_id(4) {
            assert_eq!((f.decision, f.priority, f.due_at), (None, None, None));
        } else {
            assert_eq!(f.due_at, Some(started + Duration::days(2)), "{f:?}");
        }
    }
}

/// Findings on devices of 100 findings each, in batches of 20,000 (200,000 by default; set
/// RAMPART_BENCH_FINDINGS=2000000 for the size of the performance budget): first load, an unchanged
/// re-sync, reconciliation and an export stream. Prints rows/s.
async fn throughput_200k_findings(store: Arc<dyn Store>) {
    const PER_DEVICE: usize = 100;
    const BATCH: usize = 20_000;
    let total: usize = std::env::var("RAMPART_BENCH_FINDINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let devices = total / PER_DEVICE;
    let backend = format!("{:?}", store.backend());
    let i = integration(&store, "bench").await;
    let assets: Vec<_> = (0..devices).map(asset).collect();
    // Batches are generated as they are sent, as the engine would: never all rows in memory.
    let batch = |first_device: usize| findings_of(first_device, BATCH / PER_DEVICE, PER_DEVICE);

    let run = store.start_run(i.id, "full", t(0)).await.unwrap();
    store.upsert_assets(i.id, run, &assets).await.unwrap();
    let start = Instant::now();
    let mut counts = UpsertCounts::default();
    for first in (0..devices).step_by(BATCH / PER_DEVICE) {
        counts += store
            .upsert_findings(i.id, run, &batch(first))
            .await
            .unwrap();
    }
    let load = start.elapsed();
    assert_eq!(counts.new, total as u64);
    store.finish_run(run, &succeeded(t(1))).await.unwrap();

    let run2 = store.start_run(i.id, "full", t(60)).await.unwrap();
    store.upsert_assets(i.id, run2, &assets).await.unwrap();
    let start = Instant::now();
    let mut counts = UpsertCounts::default();
    // Everything seen again except the last device's findings: reconciliation has work to do.
    for first in (0..devices).step_by(BATCH / PER_DEVICE) {
        let mut b = batch(first);
        if first + BATCH / PER_DEVICE >= devices {
            b.truncate(b.len() - PER_DEVICE);
        }
        counts += store.upsert_findings(i.id, run2, &b).await.unwrap();
    }
    let resync = start.elapsed();
    let seen = total - PER_DEVICE;
    assert_eq!(counts.unchanged, seen as u64);
    let start = Instant::now();
    let out = store
        .reconcile(i.id, run2, ReconcilePolicy::new(t(61)))
        .await
        .unwrap();
    let reconcile = start.elapsed();
    assert_eq!(
        out,
        ReconcileOutcome::Applied {
            assets_missing: 0,
            findings_fixed: PER_DEVICE as u64,
            recommendations_removed: 0,
        }
    );
    let start = Instant::now();
    let mut exported = 0;
    let mut stream = store.stream_findings(
        rampart_store::Visibility::All,
        FindingFilter {
            integration: Some(i.id),
            status: Some(FindingStatus::Open),
            ..Default::default()
        },
    );
    while let Some(f) = stream.try_next().await.unwrap() {
        assert!(f.finding.severity.is_some());
        exported += 1;
    }
    let export = start.elapsed();
    assert_eq!(exported, seen);

    // The CVE catalogue: MDE's has ~250,000 entries, all sent on a full sync.
    let start = Instant::now();
    let mut counts = UpsertCounts::default();
    for first in (0..250_000).step_by(BATCH) {
        let batch: Vec<_> = (first..first + BATCH).map(vulnerability).collect();
        counts += store.upsert_vulnerabilities(&batch).await.unwrap();
    }
    let catalogue = start.elapsed();
    assert_eq!(counts.total(), 260_000);

    let rate = |n: usize, d: std::time::Duration| (n as f64 / d.as_secs_f64()).round();
    println!(
        "[{backend}] CVE catalogue: 260000 entries in {catalogue:.2?} = {} rows/s",
        rate(260_000, catalogue)
    );
    println!(
        "[{backend}] first load: {total} findings in {load:.2?} = {} rows/s",
        rate(total, load)
    );
    println!(
        "[{backend}] unchanged re-sync: {seen} findings in {resync:.2?} = {} rows/s",
        rate(seen, resync)
    );
    println!("[{backend}] reconcile over {total} findings: {reconcile:.2?}");
    println!(
        "[{backend}] export stream of {exported} findings: {export:.2?} = {} rows/s",
        rate(exported, export)
    );
}

/// Exposure per CVE (the by-CVE index's query) within the integration.
async fn exposure(store: &Arc<dyn Store>, i: rampart_model::IntegrationId) -> Vec<(String, u64)> {
    let all: Vec<_> = store
        .stream_vulnerabilities(
            rampart_store::Visibility::All,
            VulnerabilityFilter {
                integration: Some(i),
                exposed_only: true,
                ..VulnerabilityFilter::default()
            },
        )
        .try_collect()
        .await
        .unwrap();
    let mut v: Vec<_> = all
        .into_iter()
        .map(|s| (s.vulnerability.cve_id.to_string(), s.exposed_assets))
        .collect();
    v.sort();
    v
}

/// The first load of an integration puts off the by-CVE index; queries stay
/// right meanwhile and after the rebuild, and a later load, with findings stored, puts off
/// nothing.
async fn a_first_load_puts_off_only_what_it_rebuilds(store: Arc<dyn Store>) {
    let vulns: Vec<_> = (0..10).map(vulnerability).collect();
    store.upsert_vulnerabilities(&vulns).await.unwrap();
    let i = integration(&store, "first").await;
    let run = store.start_run(i.id, "full", t(0)).await.unwrap();
    assert!(store.begin_bulk_findings(i.id).await.unwrap());
    store
        .upsert_findings(i.id, run, &findings(30, 10))
        .await
        .unwrap();
    let want: Vec<_> = (0..10).map(|j| (cve(j), 30u64)).collect();
    assert_eq!(exposure(&store, i.id).await, want, "during the load");
    store.end_bulk_findings().await.unwrap();
    assert_eq!(exposure(&store, i.id).await, want, "after the rebuild");
    store.end_bulk_findings().await.unwrap();

    assert!(
        !store.begin_bulk_findings(i.id).await.unwrap(),
        "findings are stored: nothing is put off"
    );
    store.end_bulk_findings().await.unwrap();
}

/// A process that died between `begin_bulk_findings` and `end_bulk_findings` left SQLite without
/// the indexes it put off: opening the database again rebuilds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rebuilds_an_index_a_dead_bulk_load_left_out() {
    let (dir, store) = rampart_store::testing::sqlite_store().await;
    let i = integration(&store, "first").await;
    assert!(store.begin_bulk_findings(i.id).await.unwrap());
    store.close().await;
    drop(store);
    let path = dir.path().join("rampart.db");
    let has_index = || async {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
            "sqlite://{}",
            path.display()
        ))
        .await
        .unwrap();
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN \
             ('findings_open_by_cve', 'findings_by_priority', 'findings_open_by_due', \
             'findings_open_by_software')",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        n
    };
    assert_eq!(has_index().await, 0, "the indexes were put off");
    let reopened = rampart_store::SqliteStore::open(&path).await.unwrap();
    reopened.close().await;
    assert_eq!(has_index().await, 4, "opening the database rebuilt them");
}

/// The definitions PostgreSQL holds of the indexes a first load may put off, by name.
async fn postgres_deferrable_indexes(url: &str) -> Vec<(String, String)> {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    sqlx::query_as(
        "SELECT indexname::text, indexdef FROM pg_indexes WHERE tablename = 'findings' AND indexname IN \
         ('findings_open_by_cve', 'findings_by_priority', 'findings_open_by_due', \
         'findings_open_by_software') ORDER BY indexname",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

/// A first load on PostgreSQL rebuilds what it put off exactly as the migrations defined it: the
/// by-CVE index keyed on the CVE alone, with the integration and asset included (migration 0024).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rebuilds_the_indexes_as_the_migrations_define_them() {
    let database = rampart_store::testing::postgres_database().await;
    let store: Arc<dyn Store> = Arc::new(
        rampart_store::PgStore::connect(&database.url)
            .await
            .unwrap(),
    );
    let migrated = postgres_deferrable_indexes(&database.url).await;
    assert_eq!(migrated.len(), 4, "{migrated:?}");
    let by_cve = migrated
        .iter()
        .find(|(name, _)| name == "findings_open_by_cve")
        .map(|(_, def)| def.as_str())
        .unwrap_or_default();
    assert!(
        by_cve
            .contains("(cve_id) INCLUDE (integration_id, asset_id) WHERE (status = 'open'::text)"),
        "{by_cve}"
    );

    let i = integration(&store, "first").await;
    let run = store.start_run(i.id, "full", t(0)).await.unwrap();
    assert!(store.begin_bulk_findings(i.id).await.unwrap());
    assert!(
        postgres_deferrable_indexes(&database.url).await.is_empty(),
        "all four put off"
    );
    store
        .upsert_findings(i.id, run, &findings(3, 4))
        .await
        .unwrap();
    store.end_bulk_findings().await.unwrap();
    assert_eq!(postgres_deferrable_indexes(&database.url).await, migrated);
    store.close().await;
}

/// Which of the indexes a first load may put off are in the SQLite file at `path`.
async fn sqlite_indexes(path: &std::path::Path) -> Vec<String> {
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .unwrap();
    sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name IN \
         ('findings_open_by_cve', 'findings_by_priority', 'findings_open_by_due', \
         'findings_open_by_software') ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

/// The priority and due-date indexes serve every integration's lists: a first load puts them off
/// only while no other integration has findings. (The SQL is the same on PostgreSQL.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_integrations_first_load_keeps_the_priority_indexes() {
    let (dir, store) = rampart_store::testing::sqlite_store().await;
    let path = dir.path().join("rampart.db");
    let first = integration(&store, "first").await;
    let run = store.start_run(first.id, "full", t(0)).await.unwrap();
    assert!(store.begin_bulk_findings(first.id).await.unwrap());
    assert!(sqlite_indexes(&path).await.is_empty(), "all four put off");
    store
        .upsert_findings(first.id, run, &findings(3, 4))
        .await
        .unwrap();
    store.end_bulk_findings().await.unwrap();
    let all = [
        "findings_by_priority",
        "findings_open_by_cve",
        "findings_open_by_due",
        "findings_open_by_software",
    ];
    assert_eq!(sqlite_indexes(&path).await, all);

    let second = integration(&store, "second").await;
    assert!(store.begin_bulk_findings(second.id).await.unwrap());
    assert_eq!(
        sqlite_indexes(&path).await,
        [
            "findings_by_priority",
            "findings_open_by_due",
            "findings_open_by_software"
        ]
    );
    store.end_bulk_findings().await.unwrap();
    assert_eq!(sqlite_indexes(&path).await, all);
}

/// The batches of a first load, as the sync sends them: findings on assets the device list did
/// not return (0–2 are listed, 3–6 are not), values COPY must escape or the store must clean, a
/// batch that repeats rows of the one before (a page read again, one of them changed), and a
/// key twice in one batch.
fn first_load_batches() -> Vec<Vec<Finding>> {
    let mut first = findings_of(0, 5, 4);
    for f in first
        .iter_mut()
        .filter(|f| f.key.asset_source_id == device_id(4))
    {
        f.asset_os_platform = Some("Linux".into());
        f.asset_os_version = Some("22.04".into());
    }
    first[1].exploitability = Some("tab\there, NUL\0 here".into());
    first[2].recommended_update = Some("back\\slash\nnew line\r".into());
    first[3].cvss = Some(f64::NAN);
    first[5].recommendation_reference = Some("va-\u{e9}t\u{e9}".into());
    let mut again = findings_of(4, 3, 4);
    again[0].cvss = Some(9.9);
    again.push(again[1].clone());
    vec![first, again, findings_of(7, 2, 4)]
}

/// On PostgreSQL a first load's batches are copied into the table instead of merged
/// (`postgres/first_load.rs`), and a batch holding a row stored already is merged after all.
/// Whatever the path, what is stored and counted must be the same: one integration gets the
/// batches during its first load, another one after it, and the two are compared row by row.
async fn a_first_loads_batches_are_stored_as_merged_ones(store: Arc<dyn Store>) {
    let mut seen = Vec::new();
    for (name, first_load) in [("first-load", true), ("merged", false)] {
        let i = integration(&store, name).await;
        let run = store.start_run(i.id, "full", t(0)).await.unwrap();
        let listed: Vec<_> = (0..3).map(asset).collect();
        store.upsert_assets(i.id, run, &listed).await.unwrap();
        if first_load {
            assert!(store.begin_bulk_findings(i.id).await.unwrap());
        }
        let assessor = ByDevice { first_read: t(0) };
        let mut counts = Vec::new();
        for batch in first_load_batches() {
            let c = store
                .upsert_findings_assessed(i.id, run, &batch, Some(&assessor))
                .await
                .unwrap();
            counts.push(c);
        }
        if first_load {
            store.end_bulk_findings().await.unwrap();
        }
        // Every row was seen by the run: reconciling it fixes none (nor marks an asset missing).
        let reconciled = store
            .reconcile(i.id, run, ReconcilePolicy::new(t(1)))
            .await
            .unwrap();
        assert_eq!(
            reconciled,
            ReconcileOutcome::Applied {
                assets_missing: 0,
                findings_fixed: 0,
                recommendations_removed: 0,
            }
        );
        let mut rows: Vec<_> = all_findings(
            &store,
            FindingFilter {
                integration: Some(i.id),
                ..Default::default()
            },
        )
        .await
        .into_iter()
        .map(|f| {
            (
                f.finding,
                f.status,
                f.first_observed,
                f.last_observed,
                f.reopened_count,
                f.priority,
                f.decision,
                f.due_at,
                f.clock_start,
            )
        })
        .collect();
        rows.sort_by(|a, b| a.0.key.cmp(&b.0.key));
        let mut assets: Vec<_> = store
            .stream_assets(
                rampart_store::Visibility::All,
                AssetFilter {
                    integration: Some(i.id),
                    ..Default::default()
                },
            )
            .map_ok(|a| {
                (
                    a.asset,
                    a.known_only_from_vulnerability_data,
                    a.status,
                    a.last_observed,
                )
            })
            .try_collect()
            .await
            .unwrap();
        assets.sort_by(|a, b| a.0.source_id.cmp(&b.0.source_id));
        seen.push((counts, rows, assets));
    }
    let (counts, rows, assets) = &seen[0];
    assert_eq!(
        counts,
        &[
            UpsertCounts {
                new: 20,
                ..Default::default()
            },
            UpsertCounts {
                new: 8,
                updated: 1,
                unchanged: 3,
                ..Default::default()
            },
            UpsertCounts {
                new: 8,
                ..Default::default()
            },
        ]
    );
    assert_eq!(rows.len(), 36);
    assert_eq!(assets.len(), 9);
    assert_eq!(
        assets.iter().filter(|a| a.1).count(),
        6,
        "devices 3–8 are known from findings only"
    );
    let linux = assets
        .iter()
        .find(|a| a.0.source_id == device_id(4))
        .unwrap();
    assert_eq!(linux.0.os_platform.as_deref(), Some("Linux"));
    assert_eq!(seen[0], seen[1], "a first load stores what a merge stores");
}

/// Assesses findings with dates spread around the run's start `t(0)`: some overdue, some due
/// soon, some on track, some changing state during the day after the start; a few findings
/// unassessed.
struct Spread;

impl InsertAssessor for Spread {
    fn assess(&self, finding: &Finding) -> Option<StoredAssessment> {
        let i = device_number(&finding.key.asset_source_id)?;
        let j: usize = finding
            .key
            .cve_id
            .as_str()
            .rsplit('-')
            .next()?
            .parse()
            .ok()?;
        if (i + j).is_multiple_of(11) {
            return None;
        }
        let decision = [
            Decision::Defer,
            Decision::Scheduled,
            Decision::OutOfCycle,
            Decision::Immediate,
        ][(i + j) % 4];
        let due_at = t(0) + Duration::hours(((i * 31 + j * 17) % 120) as i64 - 40);
        Some(StoredAssessment {
            decision,
            priority: ((i * 7 + j * 13) % 101) as u8,
            due_at,
            clock_start: due_at - Duration::hours(((i + j) % 5 * 12 + 1) as i64),
            explanation_id: ByDevice::explanation(decision).id,
        })
    }
}

/// Findings of `spread_load`: some without a recommended update or with an empty one (fixed by
/// upgrading their software), references that differ within a fix, severities of every kind.
fn spread_findings() -> Vec<Vec<Finding>> {
    let mut all = findings_of(0, 12, 30);
    for (k, f) in all.iter_mut().enumerate() {
        match k % 6 {
            0 => f.recommended_update = None,
            1 => f.recommended_update = Some(String::new()),
            _ => {}
        }
        if k % 4 == 0 {
            f.recommendation_reference = Some(format!("va-{}", k % 3));
        }
        if k % 9 == 0 {
            f.severity = None;
        }
    }
    all.chunks(50).map(<[Finding]>::to_vec).collect()
}

/// A first load of `spread_findings` (in bulk when `bulk`), with the run's SLA snapshot taken
/// five hours after its start (after `before_snapshot`) and the run finished at six.
async fn spread_loaded(
    store: &Arc<dyn Store>,
    name: &str,
    bulk: bool,
    before_snapshot: impl AsyncFnOnce(rampart_model::IntegrationId),
) -> rampart_model::Integration {
    let i = integration(store, name).await;
    let run = store.start_run(i.id, "full", t(0)).await.unwrap();
    let listed: Vec<_> = (0..14).map(asset).collect();
    store.upsert_assets(i.id, run, &listed).await.unwrap();
    if bulk {
        assert!(store.begin_bulk_findings(i.id).await.unwrap());
    }
    // An empty batch among them (a page with no rows) leaves the tally standing.
    let mut batches = spread_findings();
    batches.insert(1, Vec::new());
    for batch in batches {
        store
            .upsert_findings_assessed(i.id, run, &batch, Some(&Spread))
            .await
            .unwrap();
    }
    if bulk {
        store.end_bulk_findings().await.unwrap();
    }
    store
        .reconcile(i.id, run, ReconcilePolicy::new(t(1)))
        .await
        .unwrap();
    before_snapshot(i.id).await;
    store.record_sla_snapshot(i.id, run, t(300)).await.unwrap();
    store.finish_run(run, &succeeded(t(360))).await.unwrap();
    i
}

/// `spread_loaded`, then the integration's roll-ups as stored in the SQLite file at `path`: the
/// snapshot rows, the remediation plan's rows (lists sorted), and each asset's summary columns.
async fn spread_load(
    store: &Arc<dyn Store>,
    path: &std::path::Path,
    name: &str,
    bulk: bool,
    before_snapshot: impl AsyncFnOnce(rampart_model::IntegrationId),
) -> Vec<Vec<String>> {
    let i = spread_loaded(store, name, bulk, before_snapshot).await;
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .unwrap();
    let texts = async |conn: &mut sqlx::SqliteConnection, sql: &str| -> Vec<String> {
        let rows: Vec<(String,)> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql.replace("$I", &i.id.to_string())))
                .fetch_all(conn)
                .await
                .unwrap();
        rows.into_iter().map(|r| r.0).collect()
    };
    let snapshot = texts(
        &mut conn,
        "SELECT decision || ' ' || severity || ' ' || open_count || ' ' || overdue || ' ' || due_soon || ' ' || accepted \
         FROM sla_snapshots WHERE integration_id = $I ORDER BY decision, severity",
    )
    .await;
    let mut plan = texts(
        &mut conn,
        "SELECT fix || ' | ' || findings || ' ' || assets || ' ' || priority_removed || ' ' || COALESCE(max_priority, 'none') \
         || ' ' || immediate || ' ' || overdue || ' | ' || COALESCE(recommended_update, 'mixed') || ' | ' || COALESCE(reference, 'none') \
         || ' | ' || (SELECT group_concat(value, ',') FROM (SELECT value FROM json_each('[\"' || replace(cves, ',', '\",\"') || '\"]') ORDER BY value)) \
         || ' | ' || (SELECT group_concat(value, ',') FROM (SELECT value FROM json_each('[' || software_ids || ']') ORDER BY value)) \
         FROM fix_plan WHERE integration_id = $I",
    )
    .await;
    plan.sort();
    let summaries = texts(
        &mut conn,
        "SELECT source_id || ' ' || open_critical || ' ' || open_high || ' ' || open_medium || ' ' || open_low || ' ' \
         || open_total || ' ' || fixed_total || ' ' || open_rank FROM assets WHERE integration_id = $I ORDER BY source_id",
    )
    .await;
    vec![snapshot, plan, summaries]
}

/// The roll-ups of an integration, as the store's readers give them: the run's SLA snapshot
/// rows, the remediation plan at the run's end, and the dashboard's counts.
async fn roll_ups(store: &Arc<dyn Store>, id: rampart_model::IntegrationId) -> Vec<String> {
    let mut view: Vec<String> = store
        .latest_sla_snapshots(&rampart_store::Visibility::All)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.integration_id == id)
        .map(|s| {
            format!(
                "{:?} {} {} {} {} {}",
                s.decision, s.severity, s.open, s.overdue, s.due_soon, s.accepted
            )
        })
        .collect();
    view.sort();
    let plan = store
        .remediations(
            &rampart_store::Visibility::All,
            &rampart_store::RemediationFilter {
                integration: Some(id),
            },
            rampart_store::RemediationSort::Priority,
            t(360),
            0,
            10_000,
        )
        .await
        .unwrap();
    view.extend(plan.items.into_iter().map(|r| format!("{r:?}")));
    let counts = store
        .counts(&rampart_store::Visibility::All, Some(id))
        .await
        .unwrap();
    view.push(format!("{counts:?}"));
    // Each asset's findings summary, by its source id (the two loads' asset ids differ).
    let assets = store
        .assets_sorted(
            &rampart_store::Visibility::All,
            &AssetFilter {
                integration: Some(id),
                ..Default::default()
            },
            rampart_store::AssetSort::default(),
            None,
            10_000,
        )
        .await
        .unwrap();
    assert!(assets.next.is_none());
    view.extend(
        assets
            .items
            .iter()
            .map(|a| format!("{} {:?}", a.stored.asset.source_id, a.findings)),
    );
    view
}

/// On both backends, a first load's roll-ups are written from its tally of the rows it inserted
/// (`first_load_tally.rs`), and read the same as those of a load counted from its rows.
async fn a_first_loads_counts_match_a_recount(store: Arc<dyn Store>) {
    let before = store.roll_ups_from_tallies();
    let tallied = spread_loaded(&store, "tallied", true, async |_| {}).await;
    assert_eq!(
        store.roll_ups_from_tallies() - before,
        3,
        "snapshot, summaries and plan"
    );
    let counted = spread_loaded(&store, "counted", false, async |_| {}).await;
    assert_eq!(store.roll_ups_from_tallies() - before, 3);
    let tallied = roll_ups(&store, tallied.id).await;
    let counted = roll_ups(&store, counted.id).await;
    assert!(tallied.len() > 20, "{tallied:?}");
    assert_eq!(tallied, counted);
}

/// A first load of 6 devices' findings in bulk, each assessed by `assessor`; `rename_asset`: one
/// of its assets changes later in the run (its name), as a device list read again would.
async fn assessed_first_load(
    store: &Arc<dyn Store>,
    name: &str,
    assessor: &dyn InsertAssessor,
    rename_asset: bool,
) -> (rampart_model::IntegrationId, rampart_model::RunId) {
    let i = integration(store, name).await;
    let run = store.start_run(i.id, "full", t(0)).await.unwrap();
    let listed: Vec<_> = (0..6).map(asset).collect();
    store.upsert_assets(i.id, run, &listed).await.unwrap();
    assert!(store.begin_bulk_findings(i.id).await.unwrap());
    for batch in findings_of(0, 6, 20).chunks(40) {
        store
            .upsert_findings_assessed(i.id, run, batch, Some(assessor))
            .await
            .unwrap();
    }
    store.end_bulk_findings().await.unwrap();
    if rename_asset {
        let mut renamed = asset(2);
        renamed.name = Some("renamed-during-the-run".to_owned());
        store.upsert_assets(i.id, run, &[renamed]).await.unwrap();
    }
    store
        .reconcile(i.id, run, ReconcilePolicy::new(t(1)))
        .await
        .unwrap();
    (i.id, run)
}

/// A run that left nothing for its prioritising step to read (what the run changed:
/// `AssessScope::ChangedBy`) reads no finding: a first load that inserted every row with its
/// assessment, a later run that repeated every row unchanged. The store knows it without reading
/// them. It reads them, and finds what there is, when a row is open without an assessment, when
/// the run changed a row's content, or when an asset changed during the run.
async fn a_run_that_left_nothing_to_prioritise_reads_no_finding(store: Arc<dyn Store>) {
    let changed = async |id, run| -> Vec<String> {
        let scope = AssessScope::ChangedBy {
            run_id: run,
            since: t(0),
        };
        let page = store
            .assessment_inputs(id, scope, None, 10_000)
            .await
            .unwrap();
        assert!(page.next.is_none());
        let mut listed: Vec<String> = page
            .items
            .iter()
            .map(|f| format!("{} {}", f.asset_id, f.cve_id))
            .collect();
        listed.sort();
        listed
    };
    let by_device = ByDevice { first_read: t(0) };
    let skipped = store.prioritising_reads_skipped();

    let (id, run) = assessed_first_load(&store, "assessed", &by_device, false).await;
    assert_eq!(changed(id, run).await, Vec::<String>::new());
    assert_eq!(store.prioritising_reads_skipped(), skipped + 1);

    // A later run that repeats every row unchanged reads nothing either.
    store.finish_run(run, &succeeded(t(1))).await.unwrap();
    let again = store.start_run(id, "delta", t(10)).await.unwrap();
    let rows = findings_of(0, 6, 20);
    let c = store.upsert_findings(id, again, &rows).await.unwrap();
    assert_eq!(c.unchanged, 120);
    assert_eq!(changed(id, again).await, Vec::<String>::new());
    assert_eq!(store.prioritising_reads_skipped(), skipped + 2);
    // One that changes a row's content reads that row (its other rows are assessed and as
    // they were), in a batch of its own among unchanged ones.
    store.finish_run(again, &succeeded(t(11))).await.unwrap();
    let third = store.start_run(id, "delta", t(20)).await.unwrap();
    let mut edited = rows.clone();
    edited[7].severity = Some(rampart_model::Severity::Critical);
    for batch in edited.chunks(40) {
        store.upsert_findings(id, third, batch).await.unwrap();
    }
    let read = changed(id, third).await;
    assert_eq!(read.len(), 1, "{read:?}");
    assert!(read[0].ends_with(edited[7].key.cve_id.as_str()), "{read:?}");
    // And a new row, stored without an assessment, is read by any run until it has one.
    store.finish_run(third, &succeeded(t(21))).await.unwrap();
    let fourth = store.start_run(id, "delta", t(30)).await.unwrap();
    store
        .upsert_findings(id, fourth, &findings_of(0, 1, 21)[20..])
        .await
        .unwrap();
    store.finish_run(fourth, &succeeded(t(31))).await.unwrap();
    let fifth = store.start_run(id, "delta", t(40)).await.unwrap();
    assert_eq!(changed(id, fifth).await.len(), 1);
    assert_eq!(store.prioritising_reads_skipped(), skipped + 2);

    // Some rows inserted without an assessment: those are read, and only those.
    let (id, run) = assessed_first_load(&store, "partly", &Spread, false).await;
    let unassessed = findings_of(0, 6, 20)
        .iter()
        .filter(|f| Spread.assess(f).is_none())
        .count();
    assert!(unassessed > 0);
    assert_eq!(changed(id, run).await.len(), unassessed);

    // An asset that changed during the run: its findings are read.
    let (id, run) = assessed_first_load(&store, "renamed", &by_device, true).await;
    let read = changed(id, run).await;
    assert_eq!(read.len(), 20, "{read:?}");
    assert_eq!(store.prioritising_reads_skipped(), skipped + 2);
}

/// A first load counts its SLA snapshot, remediation plan and asset summaries from the rows as
/// it inserts them (`first_load_tally.rs`) instead of reading them back: what it stores must be
/// what a count from the rows stores. The tally is not used for what another write changed: an
/// assessment written during the load, or an exception that may cover its findings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_first_load_counts_match_a_recount() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.db");
    let sql = Arc::new(rampart_store::SqliteStore::open(&path).await.unwrap());
    let store: Arc<dyn Store> = sql.clone();
    let nothing = async |_| {};

    let tallied = spread_load(&store, &path, "tallied", true, nothing).await;
    assert_eq!(
        sql.roll_ups_from_tallies(),
        3,
        "the snapshot, the summaries and the plan came from the tally"
    );
    let counted = spread_load(&store, &path, "counted", false, nothing).await;
    assert_eq!(sql.roll_ups_from_tallies(), 3);
    assert!(tallied[0].len() > 8 && tallied[1].len() > 10, "{tallied:?}");
    let due = |rows: &[String], column: usize| -> u64 {
        rows.iter()
            .map(|r| r.split(' ').nth(column).unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert!(
        due(&tallied[0], 3) > 0 && due(&tallied[0], 4) > 0,
        "some overdue and some due soon: {tallied:?}"
    );
    assert_eq!(tallied, counted);

    // An exception that may cover the findings: the snapshot is counted from the rows.
    let excepted = spread_load(&store, &path, "excepted", true, async |id| {
        store
            .create_exception(
                &rampart_store::Visibility::All,
                &rampart_store::NewException {
                    scope: rampart_store::ExceptionScope::Cve(cve(3).parse().unwrap()),
                    integration: Some(id),
                    reason: "compensating control".into(),
                    owner: "secops".into(),
                    created_by: "admin".into(),
                    created_at: t(2),
                    expires_at: t(100_000),
                },
            )
            .await
            .unwrap();
    })
    .await;
    assert_eq!(
        sql.roll_ups_from_tallies(),
        5,
        "the plan and the summaries only"
    );
    assert_eq!(excepted[1..], counted[1..]);
    assert_ne!(
        excepted[0], counted[0],
        "the accepted findings left the counts"
    );

    // An assessment written during the load: nothing comes from the tally.
    let reassessed = spread_load(&store, &path, "reassessed", true, async |id| {
        let first = all_findings(
            &store,
            FindingFilter {
                integration: Some(id),
                ..Default::default()
            },
        )
        .await
        .into_iter()
        .find(|f| f.decision.is_some())
        .unwrap();
        let write = rampart_store::AssessmentWrite {
            finding_id: first.id,
            assessment: StoredAssessment {
                decision: Decision::Immediate,
                priority: 100,
                due_at: t(-10_000),
                clock_start: t(-20_000),
                explanation_id: ByDevice::explanation(Decision::Immediate).id,
            },
        };
        store.write_assessments(&[], &[write], t(2)).await.unwrap();
    })
    .await;
    assert_eq!(sql.roll_ups_from_tallies(), 5);
    assert_ne!(reassessed, counted, "the counts include the new assessment");
}

/// An integration's stored findings, ids left out, sorted.
async fn findings_listed(store: &Arc<dyn Store>, id: rampart_model::IntegrationId) -> Vec<String> {
    let filter = FindingFilter {
        integration: Some(id),
        ..Default::default()
    };
    let mut stored: Vec<String> = all_findings(store, filter)
        .await
        .into_iter()
        .map(|f| {
            format!(
                "{:?} {:?} {} {} {:?} {:?} {:?} {:?} {:?} {}",
                f.finding,
                f.status,
                f.first_observed,
                f.last_observed,
                f.fixed_at,
                f.priority,
                f.decision,
                f.due_at,
                f.clock_start,
                f.reopened_count
            )
        })
        .collect();
    stored.sort();
    stored
}

/// One integration's first load, batch by batch: with `bulk` begun as the sync begins one (on
/// SQLite its batches then go through the first-load writer, `sqlite/first_load_writer.rs`),
/// else written on the store's writer connection. The batches hold stub assets (devices the
/// device list did not return), a text with a NUL, rows repeated by a later batch (one of them
/// changed, its recommended update too) and an empty batch. Then a later full read (its bulk
/// begun too with `bulk`) that leaves most rows unchanged, changes, adds and drops some, and its
/// reconciliation. Returns each batch's counts, the stored findings (at the end, then after the
/// first load) and assets (ids left out), and what a write after the first run ended and the
/// reconciliation answered.
async fn first_load_written(
    store: &Arc<dyn Store>,
    name: &str,
    bulk: bool,
) -> (Vec<UpsertCounts>, Vec<String>, Vec<String>, String) {
    let i = integration(store, name).await;
    let run = store.start_run(i.id, "full", t(0)).await.unwrap();
    let listed: Vec<_> = (0..4).map(asset).collect();
    store.upsert_assets(i.id, run, &listed).await.unwrap();
    if bulk {
        assert!(store.begin_bulk_findings(i.id).await.unwrap());
    }
    let mut first = findings_of(0, 3, 5);
    first[1].recommended_update = Some("KB\0 5001".into());
    first[2].recommended_update = None;
    let mut second = findings_of(2, 4, 5);
    second[0].cvss = Some(9.9);
    second[0].recommended_update = Some("KB5009999".into());
    second[3].exploitability = None;
    let mut counts = Vec::new();
    for batch in [first, Vec::new(), second] {
        let c = store
            .upsert_findings_assessed(i.id, run, &batch, Some(&Spread))
            .await
            .unwrap();
        counts.push(c);
    }
    store.finish_run(run, &succeeded(t(1))).await.unwrap();
    let refused = store
        .upsert_findings_assessed(i.id, run, &findings_of(9, 1, 2), Some(&Spread))
        .await
        .unwrap_err()
        .to_string()
        .replace(&format!("sync run {run} "), "sync run R ");
    if bulk {
        store.end_bulk_findings().await.unwrap();
    }
    let after_first_load = findings_listed(store, i.id).await;

    // A later full read: most rows unchanged, one changed (its recommended update too), one
    // new, the fifth finding of each device and all of device 5's gone.
    let later = store.start_run(i.id, "full", t(100)).await.unwrap();
    store.upsert_assets(i.id, later, &listed).await.unwrap();
    if bulk {
        assert!(!store.begin_bulk_findings(i.id).await.unwrap());
    }
    let mut again = findings_of(0, 5, 4);
    again[1].cvss = Some(1.5);
    again[1].recommended_update = Some("KB5008888".into());
    again.push(finding(3, 9));
    counts.push(store.upsert_findings(i.id, later, &again).await.unwrap());
    let reconciled = store
        .reconcile(i.id, later, ReconcilePolicy::new(t(101)))
        .await
        .unwrap();
    store.finish_run(later, &succeeded(t(102))).await.unwrap();
    let refused = format!("{refused} / {reconciled:?}");

    let mut stored = findings_listed(store, i.id).await;
    stored.extend(after_first_load);
    let mut assets: Vec<String> = all_assets(
        store,
        AssetFilter {
            integration: Some(i.id),
            ..Default::default()
        },
    )
    .await
    .into_iter()
    .map(|a| {
        format!(
            "{} {:?} {:?} {:?} {}",
            a.asset.source_id,
            a.asset.name,
            a.status,
            a.known_only_from_vulnerability_data,
            a.last_observed
        )
    })
    .collect();
    assets.sort();
    (counts, stored, assets, refused)
}

/// SQLite writes a first load's batches on a connection of its own, through rusqlite
/// (`sqlite/first_load_writer.rs`): what it stores, counts and refuses must be what the store's
/// own writer does with the same batches.
async fn a_first_loads_writer_stores_what_the_stores_writer_stores(store: Arc<dyn Store>) {
    let before = store.batches_by_first_load_writer();
    let by_writer = first_load_written(&store, "by-writer", true).await;
    let sqlite = store.backend() == rampart_store::Backend::Sqlite;
    assert_eq!(
        store.batches_by_first_load_writer() - before,
        if sqlite { 2 } else { 0 },
        "the first load's batches with rows went through the first-load writer"
    );
    let by_store = first_load_written(&store, "by-store", false).await;
    assert_eq!(
        store.batches_by_first_load_writer() - before,
        if sqlite { 2 } else { 0 }
    );
    let (counts, stored, assets, refused) = &by_writer;
    assert_eq!(counts[0].new, 15);
    assert_eq!(counts[2].new, 15, "{counts:?}");
    assert_eq!(counts[2].updated, 2, "{counts:?}");
    assert_eq!(counts[2].unchanged, 3, "{counts:?}");
    assert_eq!(
        counts[3],
        UpsertCounts {
            new: 1,
            updated: 4,
            unchanged: 16,
            reopened: 0
        },
        "the changed row and the three the first load's later batch had changed"
    );
    assert!(
        refused.contains("assets_missing: 1, findings_fixed: 10"),
        "device 5 and its five findings, and the fifth of devices 0-4: {refused}"
    );
    assert_eq!(
        stored.len(),
        31 + 30,
        "after the later read, and after the first load"
    );
    assert!(
        stored.iter().any(|f| f.contains("KB5009999")),
        "the repeated row's new recommended update: {stored:?}"
    );
    assert!(
        stored.iter().any(|f| f.contains("KB5008888")),
        "the later read's new recommended update: {stored:?}"
    );
    assert_eq!(assets.len(), 6, "two stub assets: {assets:?}");
    assert!(refused.contains("no longer running"), "{refused}");
    assert_eq!(by_writer, by_store);
}

/// A batch of a first load that fails (here: written for a run of another integration) leaves
/// the roll-ups to a count from the rows: the tally cannot know what a failed or abandoned
/// write left stored. They read the same as a load without failure's.
async fn a_failed_batch_leaves_the_roll_ups_to_a_count(store: Arc<dyn Store>) {
    let other = integration(&store, "other").await;
    let others_run = store.start_run(other.id, "full", t(0)).await.unwrap();
    let before = store.roll_ups_from_tallies();
    let clean = spread_loaded(&store, "clean", true, async |_| {}).await;
    let after_clean = store.roll_ups_from_tallies();
    assert_eq!(
        after_clean - before,
        3,
        "a load without failure uses its tally"
    );

    let i = integration(&store, "with-failure").await;
    let run = store.start_run(i.id, "full", t(0)).await.unwrap();
    let listed: Vec<_> = (0..14).map(asset).collect();
    store.upsert_assets(i.id, run, &listed).await.unwrap();
    assert!(store.begin_bulk_findings(i.id).await.unwrap());
    let batches = spread_findings();
    let err = store
        .upsert_findings_assessed(i.id, others_run, &batches[0], Some(&Spread))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("belongs to integration"), "{err}");
    for batch in batches {
        store
            .upsert_findings_assessed(i.id, run, &batch, Some(&Spread))
            .await
            .unwrap();
    }
    store.end_bulk_findings().await.unwrap();
    store
        .reconcile(i.id, run, ReconcilePolicy::new(t(1)))
        .await
        .unwrap();
    store.record_sla_snapshot(i.id, run, t(300)).await.unwrap();
    store.finish_run(run, &succeeded(t(360))).await.unwrap();
    assert_eq!(
        store.roll_ups_from_tallies(),
        after_clean,
        "counted from the rows"
    );
    assert_eq!(
        roll_ups(&store, i.id).await,
        roll_ups(&store, clean.id).await
    );
}
