//! Issue 11 ("real tenants"), Defender for Endpoint: what Microsoft documents, reproduced by the
//! emulator, survived by a whole sync on both backends.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, SecondsFormat, Utc};
use futures::TryStreamExt;
use rampart_model::{RunStatus, Verdict};
use rampart_sim::SimConfig;
use rampart_store::{Store, VulnerabilityFilter};
use rampart_sync::{StepOutcome, SyncRequest};

use crate::harness::*;

/// get-machines: 404 Not Found when the tenant has no recently seen machines. The connection test
/// passes with a note, and a sync succeeds with no device.
pub async fn issue11_an_empty_tenant_tests_and_syncs_with_no_devices(store: Arc<dyn Store>) {
    let h = harness(
        store,
        SimConfig {
            devices: 0,
            ..small_tenant()
        },
    )
    .await;
    let report = h.engine.test_connection(&h.integration).await;
    assert!(report.passed(), "{report}");
    let step = report.step("read one device").expect("step");
    assert!(
        step.detail.contains("no device is onboarded yet"),
        "{report}"
    );
    let run = h.sync_ok(full()).await;

    assert_eq!(run.verdict, Some(Verdict::Complete));
    assert_eq!(run.assets.read, 0);
    assert_eq!(run.findings.read, 0);
}

/// Vulnerability rows for devices `GET /api/machines` does not return (retention, device-group
/// scoping): they are assets known only from vulnerability data, with name and OS from the rows,
/// and a delta run is not held by the missing-device circuit breaker because of them.
pub async fn issue11_devices_known_only_from_vulnerability_rows_do_not_trip_the_breaker(
    store: Arc<dyn Store>,
) {
    let h = harness(
        store,
        SimConfig {
            devices: 20,
            findings_per_device: 5,
            unlisted_device_share: 0.6,
            ..small_tenant()
        },
    )
    .await;
    let unlisted: BTreeMap<String, _> = h
        .sim
        .sim
        .truth()
        .unlisted_machines()
        .map(|m| (m.id.to_ascii_lowercase(), m))
        .collect();
    assert!(unlisted.len() >= 3, "{}", unlisted.len());
    h.sync_ok(full()).await;

    let assets: Vec<_> = asset_rows(&h.store, None, None).await;
    let mut flagged = 0;
    for a in &assets {
        match unlisted.get(&a.asset.source_id) {
            Some(m) => {
                flagged += 1;
                assert!(a.known_only_from_vulnerability_data, "{a:?}");
                assert_eq!(a.asset.name, m.computer_dns_name, "name from the rows");
                assert!(a.asset.os_platform.is_some(), "OS from the rows: {a:?}");
            }
            None => assert!(!a.known_only_from_vulnerability_data, "{a:?}"),
        }
    }
    // Every unlisted device with a finding is there (those without a CVE row stay unknown).
    assert!(flagged >= 3, "{flagged}");

    // The next run is a delta: it reads the device list and the changes, not every row. It must
    // neither be held nor mark the vulnerability-only devices missing.
    h.sim.sim.tick(1);
    let delta = h.sync(SyncRequest::default()).await;
    assert_eq!(delta.mode, "delta");
    assert_eq!(delta.status, RunStatus::Succeeded, "{:?}", delta.error);
    assert_eq!(delta.verdict, Some(Verdict::Complete));
    let still: Vec<_> = asset_rows(&h.store, None, None).await;
    for a in still
        .iter()
        .filter(|a| a.known_only_from_vulnerability_data)
    {
        assert_eq!(
            a.status,
            rampart_model::AssetStatus::Active,
            "a delta has no evidence against {}",
            a.asset.source_id
        );
    }
}

/// One record of an unexpected shape is skipped and named in the run record; the run concludes.
pub async fn issue11_an_odd_record_is_named_in_the_run_and_the_run_concludes(
    store: Arc<dyn Store>,
) {
    let h = harness(store, small_tenant()).await;
    h.sim.sim.faults().odd_record_next("/api/machines", 1);
    let run = h.sync_ok(full()).await;

    assert_eq!(run.verdict, Some(Verdict::Complete));
    assert_eq!(run.odd_records.count, 1, "{:?}", run.odd_records);
    assert_eq!(run.odd_records.ids.len(), 1);
    assert!(run.odd_records.ids[0].starts_with("odd-record-"));
    // The record keeps it.
    let stored = h
        .store
        .get_run(&rampart_store::Visibility::All, run.id)
        .await
        .expect("run");
    assert_eq!(stored.odd_records, run.odd_records);
    assert_holds_the_truth(&h).await;
}

/// get-all-vulnerabilities: `updatedOn` is filterable. A delta run reads only the catalogue
/// entries updated since the last read; Microsoft's own `exposedMachines` is kept beside Rampart's
/// count.
pub async fn issue11_a_delta_reads_the_catalogue_incrementally_and_keeps_microsofts_count(
    store: Arc<dyn Store>,
) {
    let h = harness(store, small_tenant()).await;
    let first = h.sync_ok(full()).await;

    let catalogue = h.sim.sim.truth().vulnerabilities().count() as u64;
    assert_eq!(first.vulnerabilities.read, catalogue);

    let stored: Vec<_> = h
        .store
        .stream_vulnerabilities(
            rampart_store::Visibility::All,
            VulnerabilityFilter::default(),
        )
        .try_collect()
        .await
        .expect("catalogue");
    let truth: BTreeMap<String, u64> = h
        .sim
        .sim
        .truth()
        .vulnerabilities()
        .map(|v| (v.id.clone(), v.exposed_machines))
        .collect();
    for v in &stored {
        assert_eq!(
            v.vulnerability.source_exposed_machines,
            truth.get(v.vulnerability.cve_id.as_str()).copied(),
            "{}",
            v.vulnerability.cve_id
        );
    }

    h.sim.sim.tick(1);
    let delta = h.sync(SyncRequest::default()).await;
    assert_eq!(delta.mode, "delta");
    assert_eq!(delta.status, RunStatus::Succeeded, "{:?}", delta.error);
    assert!(
        delta.vulnerabilities.read < catalogue,
        "the delta read {} of {catalogue} catalogue entries",
        delta.vulnerabilities.read
    );
}

/// Microsoft refuses a delta `sinceTime` older than 14 days: a watermark that old re-baselines.
pub async fn issue11_a_watermark_older_than_fourteen_days_rebaselines(store: Arc<dyn Store>) {
    let h = harness(store, small_tenant()).await;
    h.sync_ok(full()).await;

    // The watermark was recorded 15 days ago (a long outage; a re-baseline period set long).
    let old = (Utc::now() - Duration::days(15)).to_rfc3339_opts(SecondsFormat::Micros, true);
    h.store
        .set_sync_state(h.integration.id, "endpoint.delta_since_set_at", &old)
        .await
        .expect("state");
    let next = h.sync(SyncRequest::default()).await;
    assert_eq!(next.mode, "full", "{next:?}");
    assert_eq!(next.status, RunStatus::Succeeded, "{:?}", next.error);
}

/// The connection test's steps are unchanged by the above (a tenant with devices).
pub async fn issue11_a_tenant_with_devices_still_reads_one(store: Arc<dyn Store>) {
    let h = harness(store, small_tenant()).await;
    let report = h.engine.test_connection(&h.integration).await;
    let step = report.step("read one device").expect("step");
    assert_eq!(step.outcome, StepOutcome::Passed);
    assert!(step.detail.starts_with("read device"), "{report}");
}
