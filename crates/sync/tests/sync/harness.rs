//! A sim, a store, an engine and one integration pointing at the sim.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use rampart_microsoft::{PagingOptions, RateLimits, RetryPolicy};
use rampart_model::{
    AssetStatus, Cloud, FindingStatus, Integration, IntegrationId, Product, RunStatus, SecretHint,
    SyncRun,
};
use rampart_sim::{RunningSim, SimConfig};
use rampart_store::{
    AssetFilter, FindingFilter, NewIntegration, SecretCiphertext, Store, StoredAsset, StoredFinding,
};
use rampart_sync::progress::Silent;
use rampart_sync::vault::Vault;
use rampart_sync::{Engine, EngineOptions, SyncMode, SyncRequest};
use secrecy::SecretString;

pub struct Harness {
    pub sim: RunningSim,
    pub engine: Engine,
    pub store: Arc<dyn Store>,
    pub integration: Integration,
}

/// A small tenant: enough devices for several machine pages and several export pages.
pub fn small_tenant() -> SimConfig {
    SimConfig {
        seed: 7,
        devices: 120,
        findings_per_device: 15,
        ..SimConfig::default()
    }
}

pub fn test_options() -> EngineOptions {
    EngineOptions {
        export_page_size: 700,
        write_batch: 250,
        // The emulator enforces Microsoft's limits itself; the client-side buckets would only
        // make the tests wait.
        rate_limits: RateLimits::disabled(),
        retry: RetryPolicy::with_base_delay(Duration::from_millis(5)),
        paging: PagingOptions {
            machines_page_size: 50,
            vulnerabilities_page_size: 400,
            // Several Resource Graph pages ($skipToken) on a small tenant: a row is one
            // recommendation with all its CVEs.
            graph_page_size: 10,
            ..PagingOptions::default()
        },
        ..EngineOptions::default()
    }
}

pub async fn harness(store: Arc<dyn Store>, config: SimConfig) -> Harness {
    harness_with_secret(store, config, None).await
}

/// A full read (a new baseline), whatever the last run was.
pub fn full() -> SyncRequest {
    SyncRequest {
        mode: SyncMode::Full,
        ..SyncRequest::default()
    }
}

impl Harness {
    /// The cloud findings the emulator holds now: what a Defender for Cloud sync must store.
    pub fn cloud_truth(&self) -> Vec<rampart_sim::CloudFinding> {
        self.sim.sim.truth().cloud_findings()
    }

    /// Syncs the harness's integration and returns the run's record, whatever its status.
    pub async fn sync(&self, request: SyncRequest) -> SyncRun {
        self.engine
            .sync(&self.integration, request, &Silent)
            .await
            .expect("run")
    }

    /// [`Harness::sync`], asserting that the run succeeded (its error shown if not).
    pub async fn sync_ok(&self, request: SyncRequest) -> SyncRun {
        let run = self.sync(request).await;
        assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
        run
    }

    /// The tenant score of every run of the harness's integration that captured scores.
    pub async fn posture_history(&self) -> Vec<rampart_store::PosturePoint> {
        self.store
            .posture_history(
                &rampart_store::Visibility::All,
                Some(self.integration.id),
                None,
            )
            .await
            .expect("history")
    }

    /// Another engine over the same store and integration, with other options (a process started
    /// with another configuration).
    pub fn engine_with(&self, options: EngineOptions) -> Engine {
        Engine::new(Arc::clone(&self.store), vault(), options)
    }
}

fn vault() -> Vault {
    Vault::from_key(&[9u8; 32])
}

/// `secret`: what the integration stores, when it should differ from the sim's (a wrong secret).
pub async fn harness_with_secret(
    store: Arc<dyn Store>,
    config: SimConfig,
    secret: Option<&str>,
) -> Harness {
    harness_for(store, config, Product::Endpoint, secret).await
}

/// A Defender for Cloud integration against the emulator.
pub async fn cloud_harness(store: Arc<dyn Store>, config: SimConfig) -> Harness {
    harness_for(store, config, Product::Cloud, None).await
}

/// [`cloud_harness`] after one successful default sync: where most Defender for Cloud checks start.
pub async fn synced_cloud(store: Arc<dyn Store>, config: SimConfig) -> Harness {
    let h = cloud_harness(store, config).await;
    h.sync_ok(SyncRequest::default()).await;
    h
}

pub async fn harness_for(
    store: Arc<dyn Store>,
    config: SimConfig,
    product: Product,
    secret: Option<&str>,
) -> Harness {
    let sim = rampart_sim::spawn(config.clone())
        .await
        .expect("sim starts");
    let vault = vault();
    let integration =
        add_integration(&store, &vault, &sim, product, product.as_str(), secret).await;
    let engine = Engine::new(Arc::clone(&store), vault, test_options());
    Harness {
        sim,
        engine,
        store,
        integration,
    }
}

/// Adds an integration of `product` named `name` pointing at `sim`.
pub async fn add_integration(
    store: &Arc<dyn Store>,
    vault: &Vault,
    sim: &RunningSim,
    product: Product,
    name: &str,
    secret: Option<&str>,
) -> Integration {
    let config = sim.sim.config();
    let secret = secret.unwrap_or(&config.client_secret).to_owned();
    let sealed = vault
        .seal(name, &SecretString::from(secret.clone()))
        .expect("seal");
    store
        .create_integration(&NewIntegration {
            name: name.parse().expect("name"),
            product,
            cloud: Cloud::Commercial,
            tenant_id: config.tenant_id.parse().expect("tenant"),
            client_id: config.client_id.parse().expect("client"),
            secret: SecretCiphertext {
                ciphertext: sealed.ciphertext,
                nonce: sealed.nonce,
            },
            hint: SecretHint::of(&secret, None),
            login_url: Some(sim.url.clone()),
            api_url: Some(sim.url.clone()),
            schedule_minutes: 360,
            enabled: true,
        })
        .await
        .expect("integration")
}

/// What identifies a finding, and the content Rampart keeps of it.
pub type FindingKey = (String, String, String, String, String);
pub type FindingContent = (Option<String>, Option<String>, String, Option<String>);

/// A stored finding's key, as the comparisons with the emulator's truth spell it.
pub fn key_of(f: &rampart_model::Finding) -> FindingKey {
    (
        f.key.asset_source_id.clone(),
        f.key.software_vendor.clone(),
        f.key.software_name.clone(),
        f.key.software_version.clone(),
        f.key.cve_id.to_string(),
    )
}

/// The open findings the emulator holds now.
pub fn truth_findings(sim: &RunningSim) -> BTreeMap<FindingKey, FindingContent> {
    sim.sim
        .truth()
        .findings()
        .map(|f| {
            (
                (
                    f.device_id.to_ascii_lowercase(),
                    f.software_vendor.clone(),
                    f.software_name.clone(),
                    f.software_version.clone(),
                    f.cve_id.to_ascii_uppercase(),
                ),
                (
                    Some(f.vulnerability_severity_level.clone()),
                    f.cvss_score.map(|c| format!("{c:.1}")),
                    f.exploitability_level.clone(),
                    f.recommended_security_update
                        .clone()
                        .filter(|s| !s.trim().is_empty())
                        .or(f.recommended_security_update_id.clone()),
                ),
            )
        })
        .collect()
}

/// Every finding the store holds, of one integration and one status (or all).
pub async fn finding_rows(
    store: &Arc<dyn Store>,
    integration: Option<IntegrationId>,
    status: Option<FindingStatus>,
) -> Vec<StoredFinding> {
    store
        .stream_findings(
            rampart_store::Visibility::All,
            FindingFilter {
                integration,
                status,
                ..FindingFilter::default()
            },
        )
        .try_collect()
        .await
        .expect("findings")
}

/// Every asset the store holds, of one integration and one status (or all).
pub async fn asset_rows(
    store: &Arc<dyn Store>,
    integration: Option<IntegrationId>,
    status: Option<AssetStatus>,
) -> Vec<StoredAsset> {
    store
        .stream_assets(
            rampart_store::Visibility::All,
            AssetFilter {
                integration,
                status,
                ..AssetFilter::default()
            },
        )
        .try_collect()
        .await
        .expect("assets")
}

/// The findings Rampart holds with the given status.
pub async fn stored_findings(
    store: &Arc<dyn Store>,
    status: FindingStatus,
) -> BTreeMap<FindingKey, FindingContent> {
    let all = finding_rows(store, None, Some(status)).await;
    by_key(all, "duplicate findings in the store", |f| {
        let (severity, cvss) = severity_and_cvss(&f);
        (
            severity,
            cvss,
            f.exploitability.unwrap_or_default(),
            f.recommended_update,
        )
    })
}

/// Stored findings keyed as the comparisons with the emulator's truth key them; two rows of one
/// key fail the test with `duplicates`.
pub fn by_key<V>(
    rows: Vec<StoredFinding>,
    duplicates: &str,
    content: impl Fn(rampart_model::Finding) -> V,
) -> BTreeMap<FindingKey, V> {
    let count = rows.len();
    let map: BTreeMap<_, _> = rows
        .into_iter()
        .map(|s| (key_of(&s.finding), content(s.finding)))
        .collect();
    assert_eq!(map.len(), count, "{duplicates}");
    map
}

/// Severity and CVSS as the emulator's truth spells them (`High`, one decimal).
pub fn severity_and_cvss(f: &rampart_model::Finding) -> (Option<String>, Option<String>) {
    (
        f.severity.map(|s| s.as_str().to_owned()),
        f.cvss.map(|c| format!("{c:.1}")),
    )
}

/// Device id → (name, platform, health, onboarding) as the emulator holds them now.
pub type AssetContent = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

pub fn truth_assets(sim: &RunningSim) -> BTreeMap<String, AssetContent> {
    sim.sim
        .truth()
        .machines()
        .map(|m| {
            (
                m.id.to_ascii_lowercase(),
                (
                    m.computer_dns_name.clone(),
                    Some(m.os_platform.clone()),
                    Some(m.health_status.clone()),
                    Some(m.onboarding_status.clone()),
                ),
            )
        })
        .collect()
}

pub async fn stored_assets(
    store: &Arc<dyn Store>,
    status: AssetStatus,
) -> BTreeMap<String, AssetContent> {
    let all = asset_rows(store, None, Some(status)).await;
    let count = all.len();
    let map: BTreeMap<_, _> = all
        .into_iter()
        .map(|s| {
            let a = s.asset;
            (
                a.source_id,
                (a.name, a.os_platform, a.health_status, a.onboarding_status),
            )
        })
        .collect();
    assert_eq!(map.len(), count, "duplicate assets in the store");
    map
}

/// Asserts that `got` holds exactly `want`: the keys first (naming a few missing and extra ones),
/// then the content.
pub fn assert_same<K: Ord + Debug, V: PartialEq + Debug>(
    want: &BTreeMap<K, V>,
    got: &BTreeMap<K, V>,
    what: &str,
) {
    let missing: Vec<_> = want
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(3)
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !want.contains_key(*k))
        .take(3)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what} differ: {} in truth, {} stored; missing e.g. {missing:?}; extra e.g. {extra:?}",
        want.len(),
        got.len()
    );
    assert_eq!(want, got, "{what}: content differs");
}

/// Asserts that Rampart holds exactly what the emulator holds now: every device active, every
/// open finding open with the same content, nothing else active or open.
pub async fn assert_holds_the_truth(h: &Harness) {
    let want = truth_assets(&h.sim);
    let got = stored_assets(&h.store, AssetStatus::Active).await;
    assert_same(&want, &got, "active assets (the emulator's devices)");
    let want = truth_findings(&h.sim);
    let got = stored_findings(&h.store, FindingStatus::Open).await;
    assert_same(&want, &got, "open findings");
}
