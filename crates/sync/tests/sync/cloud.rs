//! Defender for Cloud scenarios: a Cloud integration against the emulator's Azure Resource
//! Manager and Resource Graph, compared with the emulator's truth record by record.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::TryStreamExt;
use rampart_microsoft::{FamilyLimit, RateLimits};
use rampart_model::{AssetStatus, FindingStatus, IntegrationId, Product, RunStatus, Verdict};
use rampart_sim::{CloudResourceKind, Family, RunningSim, SimConfig};
use rampart_store::{Store, VulnerabilityFilter};
use rampart_sync::progress::Silent;
use rampart_sync::{CLOUD_STEPS, Engine, EngineOptions, StepOutcome, SyncRequest};

use crate::cloud_store_checks::*;
use crate::harness::*;

/// A small tenant with small ARM pages, so that every list is paged.
pub fn cloud_tenant() -> SimConfig {
    SimConfig {
        seed: 11,
        devices: 90,
        findings_per_device: 5,
        arm_page_size: 20,
        ..SimConfig::default()
    }
}

fn kind(k: CloudResourceKind) -> &'static str {
    match k {
        CloudResourceKind::Subscription => "cloud_resource",
        CloudResourceKind::VirtualMachine => "virtual_machine",
        CloudResourceKind::ContainerImage => "container_image",
        CloudResourceKind::SqlServer => "sql_server",
        CloudResourceKind::KubernetesCluster => "cloud_resource",
    }
}

/// Resource id (lower-case) → (kind, name), for the given subscriptions (all when `None`).
pub type CloudAssets = BTreeMap<String, (String, Option<String>)>;

pub fn truth_cloud_assets(sim: &RunningSim, only: Option<&[String]>) -> CloudAssets {
    sim.sim
        .truth()
        .cloud_resources()
        .into_iter()
        .filter(|r| only.is_none_or(|o| o.contains(&r.subscription_id)))
        .map(|r| {
            (
                r.id.to_ascii_lowercase(),
                (kind(r.kind).to_owned(), Some(r.name)),
            )
        })
        .collect()
}

pub async fn stored_cloud_assets(
    store: &Arc<dyn Store>,
    integration: IntegrationId,
    status: AssetStatus,
) -> CloudAssets {
    let all = asset_rows(store, Some(integration), Some(status)).await;
    let n = all.len();
    let map: CloudAssets = all
        .into_iter()
        .map(|s| {
            assert_eq!(
                s.asset.azure_resource_id.as_deref(),
                Some(s.asset.source_id.as_str()),
                "a cloud asset's azure_resource_id is its own id"
            );
            (
                s.asset.source_id,
                (s.asset.kind.as_str().to_owned(), s.asset.name),
            )
        })
        .collect();
    assert_eq!(map.len(), n, "duplicate cloud assets");
    map
}

/// An emulated cloud finding's key, as Rampart should store it.
pub fn truth_key(f: &rampart_sim::CloudFinding) -> FindingKey {
    (
        f.resource_id.to_ascii_lowercase(),
        f.software_vendor.clone(),
        f.software_name.clone(),
        f.installed_version.clone(),
        f.cve_id.to_ascii_uppercase(),
    )
}

/// (resource, vendor, package, installed version, CVE) → (severity, CVSS, fixed version).
pub type CloudFindings = BTreeMap<FindingKey, (Option<String>, Option<String>, Option<String>)>;

pub fn truth_cloud_findings(sim: &RunningSim, only: Option<&[String]>) -> CloudFindings {
    sim.sim
        .truth()
        .cloud_findings()
        .into_iter()
        .filter(|f| only.is_none_or(|o| o.contains(&f.subscription_id)))
        .map(|f| {
            (
                truth_key(&f),
                (
                    Some(f.severity).filter(|s| s != "Unknown"),
                    f.cvss.map(|c| format!("{c:.1}")),
                    Some(f.fixed_version).filter(|v| !v.is_empty()),
                ),
            )
        })
        .collect()
}

pub async fn stored_cloud_findings(
    store: &Arc<dyn Store>,
    integration: IntegrationId,
    status: FindingStatus,
) -> CloudFindings {
    let all = finding_rows(store, Some(integration), Some(status)).await;
    by_key(all, "duplicate cloud findings", |f| {
        let (severity, cvss) = severity_and_cvss(&f);
        (severity, cvss, f.recommended_update)
    })
}

/// Rampart holds exactly the emulator's cloud resources and open cloud findings (of `only`'s
/// subscriptions, or all).
pub async fn assert_holds_the_cloud_truth(h: &Harness, only: Option<&[String]>) {
    let want = truth_cloud_assets(&h.sim, only);
    let got = stored_cloud_assets(&h.store, h.integration.id, AssetStatus::Active).await;
    assert_same(&want, &got, "cloud assets");
    let want = truth_cloud_findings(&h.sim, only);
    let got = stored_cloud_findings(&h.store, h.integration.id, FindingStatus::Open).await;
    assert_same(&want, &got, "open cloud findings");
    crate::cloud_store_checks::assert_posture_is_the_truth(
        &h.store,
        h.integration.id,
        &h.sim,
        only,
    )
    .await;
}

fn enabled_subscriptions(sim: &RunningSim) -> Vec<String> {
    sim.sim
        .truth()
        .cloud_subscriptions()
        .into_iter()
        .filter(|s| s.state == "Enabled")
        .map(|s| s.subscription_id)
        .collect()
}

pub async fn a_cloud_sync_under_faults_holds_exactly_the_truth_and_a_rerun_changes_nothing(
    store: Arc<dyn Store>,
) {
    let h = cloud_harness(
        store,
        SimConfig {
            fault_rate: 0.05,
            ..cloud_tenant()
        },
    )
    .await;
    let run = h.sync_ok(SyncRequest::default()).await;

    assert_eq!(run.verdict, Some(Verdict::Complete));
    assert_eq!(run.mode, "full");
    let truth_findings = h.cloud_truth().len() as u64;
    assert!(truth_findings > 20, "the emulator serves findings");
    assert_eq!(run.findings.read, truth_findings, "{run:?}");
    assert_eq!(run.findings.new, truth_findings, "{run:?}");
    let resources = h.sim.sim.truth().cloud_resources().len() as u64;
    assert_eq!(
        (run.assets.read, run.assets.new),
        (resources, resources),
        "{run:?}"
    );
    assert_eq!(
        run.recommendations.new as usize,
        truth_recommendations(&h.sim, None).len(),
        "the run record counts every recommendation: {run:?}"
    );
    assert!(run.api_calls > 10, "{run:?}");
    assert!(
        h.sim.sim.stats().faults_injected > 0,
        "the emulator injected no fault"
    );
    assert!(run.retries > 0, "faults were retried: {run:?}");
    assert!(
        h.sim.sim.stats().calls(Family::ResourceGraph) > 2,
        "Resource Graph was not paged"
    );
    assert_holds_the_cloud_truth(&h, None).await;
    // Every CVE of a cloud finding is in the catalogue (the Vulnerabilities page, exports).
    let catalogue: BTreeSet<String> = h
        .store
        .stream_vulnerabilities(
            rampart_store::Visibility::All,
            VulnerabilityFilter::default(),
        )
        .map_ok(|v| v.vulnerability.cve_id.to_string())
        .try_collect()
        .await
        .expect("catalogue");
    for f in h.cloud_truth() {
        assert!(
            catalogue.contains(&f.cve_id.to_ascii_uppercase()),
            "{} is not in the catalogue",
            f.cve_id
        );
    }
    assert!(run.vulnerabilities.new > 0, "{run:?}");

    let again = h.sync_ok(SyncRequest::default()).await;

    for counts in [&again.findings, &again.assets, &again.recommendations] {
        assert_eq!(
            (counts.new, counts.updated, counts.resolved, counts.reopened),
            (0, 0, 0, 0),
            "a re-run changed something: {again:?}"
        );
    }
    assert_holds_the_cloud_truth(&h, None).await;
}

pub async fn after_the_clock_moves_a_cloud_sync_records_exactly_the_changes(store: Arc<dyn Store>) {
    let h = synced_cloud(store, cloud_tenant()).await;

    let before = truth_cloud_findings(&h.sim, None);
    let recs_before = truth_recommendations(&h.sim, None);

    h.sim.sim.tick(6);
    let after = truth_cloud_findings(&h.sim, None);
    let recs_after = truth_recommendations(&h.sim, None);
    let gone: BTreeSet<_> = recs_before
        .keys()
        .filter(|k| !recs_after.contains_key(*k))
        .cloned()
        .collect();
    let flipped = recs_before
        .iter()
        .filter(|(k, v)| recs_after.get(*k).is_some_and(|a| a.4 != v.4))
        .count();
    assert!(flipped > 0, "no recommendation changed status");
    let fixed: BTreeSet<_> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    let new: BTreeSet<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert!(
        !fixed.is_empty() && !new.is_empty(),
        "the emulator did not change"
    );

    let second = h.sync_ok(SyncRequest::default()).await;

    assert_holds_the_cloud_truth(&h, None).await;
    assert_eq!(second.findings.resolved as usize, fixed.len(), "{second:?}");
    assert_eq!(
        (second.findings.new + second.findings.reopened) as usize,
        new.len(),
        "{second:?}"
    );
    let stored_fixed =
        stored_cloud_findings(&h.store, h.integration.id, FindingStatus::Fixed).await;
    assert_eq!(
        stored_fixed.keys().collect::<BTreeSet<_>>(),
        fixed,
        "the fixed findings are not exactly those that disappeared"
    );
    assert_eq!(
        second.recommendations.resolved as usize,
        gone.len(),
        "{second:?}"
    );
    let removed = stored_recommendations(&h.store, h.integration.id, true).await;
    assert_eq!(
        removed.keys().cloned().collect::<BTreeSet<_>>(),
        gone,
        "the removed recommendations are not exactly those that disappeared"
    );
    let history = h.posture_history().await;
    assert_eq!(history.len(), 2, "one tenant score per run");
}

pub async fn a_failed_cloud_run_concludes_nothing(store: Arc<dyn Store>) {
    let h = synced_cloud(store, cloud_tenant()).await;

    let open_before = stored_cloud_findings(&h.store, h.integration.id, FindingStatus::Open).await;
    let active_before = stored_cloud_assets(&h.store, h.integration.id, AssetStatus::Active).await;

    h.sim.sim.tick(6);
    h.sim
        .sim
        .faults()
        .fail_next("providers/microsoft.security/assessments", 500, 10_000);
    let failed = h.sync(SyncRequest::default()).await;
    assert_eq!(failed.status, RunStatus::Failed, "{failed:?}");
    let error = failed.error.clone().unwrap_or_default();
    assert!(error.contains("kept failing"), "{error}");
    assert!(error.contains("nothing was concluded"), "{error}");
    assert_eq!((failed.findings.resolved, failed.assets.resolved), (0, 0));
    assert_eq!(
        stored_cloud_findings(&h.store, h.integration.id, FindingStatus::Open).await,
        open_before,
        "a failed run changed findings"
    );
    assert!(
        stored_cloud_findings(&h.store, h.integration.id, FindingStatus::Fixed)
            .await
            .is_empty()
    );
    assert_eq!(
        stored_cloud_assets(&h.store, h.integration.id, AssetStatus::Active).await,
        active_before
    );

    h.sim.sim.faults().clear();
    h.sync_ok(SyncRequest::default()).await;

    assert_holds_the_cloud_truth(&h, None).await;
}

pub async fn no_azure_role_fails_the_run_and_the_test_with_the_rbac_steps(store: Arc<dyn Store>) {
    let h = cloud_harness(
        store,
        SimConfig {
            arm_role: None,
            ..cloud_tenant()
        },
    )
    .await;
    let run = h.sync(SyncRequest::default()).await;
    assert_eq!(
        run.status,
        RunStatus::Failed,
        "no subscriptions is not a success"
    );
    let error = run.error.unwrap_or_default();
    for words in [
        "no Azure role",
        "Security Reader",
        "Access control (IAM)",
        "not an API permission",
        "management-group",
    ] {
        assert!(error.contains(words), "{words:?} missing from: {error}");
    }
    assert_eq!(run.assets.new + run.findings.new, 0);

    let report = h.engine.test_connection(&h.integration).await;
    assert!(!report.passed());
    let text = report.to_string();
    assert_eq!(
        report.step("get a token").map(|s| &s.outcome),
        Some(&StepOutcome::Passed),
        "{text}"
    );
    let step = report.step("list subscriptions").expect("step");
    assert_eq!(step.outcome, StepOutcome::Failed, "{text}");
    let fix = step.fix.clone().unwrap_or_default();
    assert!(
        fix.contains("Add role assignment") && fix.contains("Review + assign"),
        "{fix}"
    );
    assert!(
        report.steps[3..]
            .iter()
            .all(|s| s.outcome == StepOutcome::Skipped),
        "{text}"
    );
}

pub async fn a_refused_subscription_makes_the_run_partial_and_only_it_unconcluded(
    store: Arc<dyn Store>,
) {
    // A first sync with full access, then the same tenant (same seed, a later tick) where the
    // app lost its role on one subscription.
    let mut h = synced_cloud(store, cloud_tenant()).await;

    let subs = enabled_subscriptions(&h.sim);
    let denied = subs[0].clone();
    let others: Vec<String> = subs[1..].to_vec();
    let before_denied = truth_cloud_findings(&h.sim, Some(std::slice::from_ref(&denied)));

    let restricted = rampart_sim::spawn(SimConfig {
        arm_denied_subscriptions: vec![denied.clone()],
        ..cloud_tenant()
    })
    .await
    .expect("sim");
    restricted.sim.tick(6);
    h.integration = h
        .store
        .update_integration(
            h.integration.id,
            &rampart_store::IntegrationUpdate {
                login_url: Some(Some(restricted.url.clone())),
                api_url: Some(Some(restricted.url.clone())),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    h.sim = restricted;

    let run = h.sync(SyncRequest::default()).await;
    assert_eq!(run.status, RunStatus::Partial, "{run:?}");
    let error = run.error.clone().unwrap_or_default();
    assert!(error.contains(&denied), "{error}");
    assert!(error.contains("AuthorizationFailed"), "{error}");
    assert!(error.contains("Security Reader"), "{error}");
    assert!(error.contains("Nothing was concluded for it"), "{error}");
    assert!(
        matches!(run.verdict, Some(Verdict::Incomplete(_))),
        "{run:?}"
    );

    // The other subscriptions hold their truth at the new tick, fixed findings included…
    let open = stored_cloud_findings(&h.store, h.integration.id, FindingStatus::Open).await;
    let want = truth_cloud_findings(&h.sim, Some(&others));
    for (k, v) in &want {
        assert_eq!(open.get(k), Some(v), "{k:?} not open");
    }
    assert!(
        run.findings.resolved > 0,
        "the others' fixed findings: {run:?}"
    );
    // …while the refused one keeps what the last complete read said: nothing fixed, nothing missing.
    for k in before_denied.keys() {
        assert!(
            open.contains_key(k),
            "{k:?} of the refused subscription was concluded"
        );
    }
    let missing = stored_cloud_assets(&h.store, h.integration.id, AssetStatus::Missing).await;
    assert!(
        missing
            .keys()
            .all(|id| !id.starts_with(&format!("/subscriptions/{denied}"))),
        "{missing:?}"
    );

    let report = h.engine.test_connection(&h.integration).await;
    let plans = report.step("check Defender plans").expect("step");
    assert_eq!(plans.outcome, StepOutcome::Failed, "{report}");
    assert!(plans.detail.contains(&denied), "{report}");
    assert!(
        plans
            .fix
            .as_deref()
            .unwrap_or("")
            .contains("Security Reader")
    );
}

pub async fn arm_throttling_is_honoured_without_a_429_storm(store: Arc<dyn Store>) {
    // Microsoft's buckets, shrunk: 5 reads at once, refilled at 10 per second; small pages, so
    // that each subscription needs more reads than its bucket holds.
    let config = SimConfig {
        arm_read_burst: 5,
        arm_read_refill: 10,
        arm_page_size: 5,
        ..cloud_tenant()
    };
    // Client-side buckets as the product ships them, scaled to the emulator's: no 429 at all.
    let h = cloud_harness(Arc::clone(&store), config.clone()).await;
    let paced = Engine::new(
        Arc::clone(&h.store),
        rampart_sync::vault::Vault::from_key(&[9u8; 32]),
        EngineOptions {
            rate_limits: RateLimits {
                arm: FamilyLimit {
                    per_minute: Some(10 * 60),
                    per_hour: None,
                    burst: Some(5),
                },
                ..RateLimits::default()
            },
            ..test_options()
        },
    );
    let run = paced
        .sync(&h.integration, SyncRequest::default(), &Silent)
        .await
        .expect("run");
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    let stats = h.sim.sim.stats();
    assert!(stats.calls(Family::Arm) > 40, "{stats:?}");
    assert!(
        stats.throttled <= 2,
        "client-side pacing let 429s through: {stats:?}"
    );
    assert_holds_the_cloud_truth(&h, None).await;

    // Without client-side buckets, Microsoft's 429s are met, each waited out as Retry-After says:
    // one 429 per emptied bucket, never a storm of retries into an empty bucket.
    let h2 = harness_for(store_again(&h).await, config, Product::Cloud, None).await;
    let run = h2.sync_ok(SyncRequest::default()).await;

    let stats = h2.sim.sim.stats();
    let calls = stats.calls(Family::Arm);
    assert!(
        stats.throttled > 0,
        "the emulator never throttled: {stats:?}"
    );
    assert_eq!(
        run.throttled, stats.throttled,
        "every 429 is counted in the run"
    );
    assert!(
        stats.throttled * 4 <= calls,
        "a 429 storm: {} of {calls} calls throttled",
        stats.throttled
    );
}

/// The harness's store (the second integration of the throttling test needs its own name).
async fn store_again(h: &Harness) -> Arc<dyn Store> {
    h.store
        .delete_integration(h.integration.id)
        .await
        .expect("delete");
    Arc::clone(&h.store)
}

pub async fn the_cloud_connection_test_names_each_step(store: Arc<dyn Store>) {
    let h = cloud_harness(store, cloud_tenant()).await;
    let report = h.engine.test_connection(&h.integration).await;
    let text = report.to_string();
    assert!(report.passed(), "{text}");
    let names: Vec<&str> = report.steps.iter().map(|s| s.name).collect();
    assert_eq!(names, CLOUD_STEPS, "{text}");
    // The third subscription runs without Defender for Servers: a warning naming it.
    let plans = report.step("check Defender plans").expect("step");
    assert_eq!(plans.outcome, StepOutcome::Warning, "{text}");
    assert!(plans.detail.contains("Shared Services"), "{text}");
    assert!(plans.detail.contains("Defender for Servers"), "{text}");
    // Issue 11 item 10: "Test and Staging" has no Defender for Servers but Defender CSPM with
    // agentless machine scanning, which produces the same vulnerability findings: no warning.
    assert!(!plans.detail.contains("Test and Staging"), "{text}");
    assert!(text.contains("⚠"), "{text}");
    for s in &report.steps {
        if s.name != "check Defender plans" {
            assert_eq!(s.outcome, StepOutcome::Passed, "{text}");
        }
    }

    let wrong = "Wr0ng~Cloud~Secret~0123456789abcdefghij";
    let bad = harness_for(
        store_again(&h).await,
        cloud_tenant(),
        Product::Cloud,
        Some(wrong),
    )
    .await;
    let report = bad.engine.test_connection(&bad.integration).await;
    let text = report.to_string();
    assert!(!report.passed());
    assert_eq!(report.steps[0].outcome, StepOutcome::Passed, "{text}");
    assert_eq!(report.steps[1].outcome, StepOutcome::Failed, "{text}");
    assert!(text.contains("AADSTS7000215"), "{text}");
    assert!(!text.contains(wrong), "the secret leaked into the report");
    assert!(
        report.steps[2..]
            .iter()
            .all(|s| s.outcome == StepOutcome::Skipped),
        "{text}"
    );
    let run = bad.sync(SyncRequest::default()).await;
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains("7000215") && !error.contains(wrong),
        "{error}"
    );
}

pub async fn an_endpoint_device_and_a_cloud_vm_are_linked(store: Arc<dyn Store>) {
    let h = harness(store, cloud_tenant()).await;
    let cloud = add_integration(
        &h.store,
        h.engine.vault(),
        &h.sim,
        Product::Cloud,
        "cloud",
        None,
    )
    .await;
    h.sync_ok(SyncRequest::default()).await;

    let cloud_run = h
        .engine
        .sync(&cloud, SyncRequest::default(), &Silent)
        .await
        .expect("run");
    assert_eq!(
        cloud_run.status,
        RunStatus::Succeeded,
        "{:?}",
        cloud_run.error
    );

    // Every VM onboarded to Defender for Endpoint is one machine with two identities.
    let pairs: Vec<(String, String)> = h
        .sim
        .sim
        .truth()
        .cloud_resources()
        .into_iter()
        .filter_map(|r| {
            Some((
                r.mde_machine_id?.to_ascii_lowercase(),
                r.id.to_ascii_lowercase(),
            ))
        })
        .collect();
    assert!(pairs.len() > 5, "the emulator onboards VMs to MDE");
    let assets = asset_rows(&h.store, None, None).await;
    let by_source: BTreeMap<(IntegrationId, String), &rampart_store::StoredAsset> = assets
        .iter()
        .map(|a| ((a.integration_id, a.asset.source_id.clone()), a))
        .collect();
    for (device, vm) in &pairs {
        let d = by_source
            .get(&(h.integration.id, device.clone()))
            .expect("the device is stored");
        let v = by_source
            .get(&(cloud.id, vm.clone()))
            .expect("the VM is stored");
        assert_eq!(d.asset.azure_resource_id.as_deref(), Some(vm.as_str()));
        assert_eq!(v.asset.azure_resource_id.as_deref(), Some(vm.as_str()));
        crate::cloud_store_checks::assert_linked(&h.store, d.id, v.id).await;
    }
}
