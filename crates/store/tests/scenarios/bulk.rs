//! Batches the size the sync engine sends, and the throughput of the bulk path.

use std::sync::Arc;
use std::time::Instant;

use futures::TryStreamExt;
use rampart_model::FindingStatus;
use rampart_store::{
    FindingFilter, ReconcileOutcome, ReconcilePolicy, Store, UpsertCounts, VulnerabilityFilter,
};

use crate::support::*;

scenarios!(
    batches_beyond_the_parameter_limit,
    a_first_load_puts_off_only_what_it_rebuilds,
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
/// its by-CVE index: opening the database again rebuilds it.
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
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'findings_open_by_cve'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        n == 1
    };
    assert!(!has_index().await, "the index was put off");
    let reopened = rampart_store::SqliteStore::open(&path).await.unwrap();
    reopened.close().await;
    assert!(has_index().await, "opening the database rebuilt it");
}
