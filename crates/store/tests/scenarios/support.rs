//! Fixtures shared by the scenarios: deterministic records and small helpers over the read API.

use rampart_model::IntegrationId;
use rampart_model::RunId;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use futures::TryStreamExt;

use rampart_model::{
    Asset, AssetKind, Cloud, Finding, FindingKey, FindingStatus, Integration, Product, RunStatus,
    SecretHint, Severity, Vulnerability,
};
use rampart_store::{
    AssetFilter, FindingFilter, NewIntegration, ReconcileOutcome, RunOutcome, SecretCiphertext,
    Store, StoredAsset, StoredFinding, UpsertCounts,
};

/// A fixed clock: 2026-01-01T00:00:00Z plus `minutes`.
pub fn t(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap() + chrono::Duration::minutes(minutes)
}

pub fn new_integration(name: &str) -> NewIntegration {
    NewIntegration {
        name: name.parse().unwrap(),
        product: Product::Endpoint,
        cloud: Cloud::Commercial,
        tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".parse().unwrap(),
        client_id: "00000000-0000-0000-0000-000000000001".parse().unwrap(),
        secret: SecretCiphertext {
            ciphertext: vec![1, 2, 3, 0, 255],
            nonce: vec![9; 24],
        },
        hint: SecretHint {
            last4: "a1b2".into(),
            expires_on: chrono::NaiveDate::from_ymd_opt(2027, 6, 30),
        },
        login_url: None,
        api_url: Some("http://127.0.0.1:9999".into()),
        schedule_minutes: 360,
        enabled: true,
    }
}

/// An integration of its own app registration (client `n`): Microsoft's rate limits, and so
/// the job table's one-running-job rule, are per app registration.
pub async fn integration_of_app(store: &Arc<dyn Store>, name: &str, n: u32) -> Integration {
    let mut new = new_integration(name);
    new.client_id = format!("00000000-0000-0000-0000-{:012x}", 0x100 + n)
        .parse()
        .unwrap();
    store.create_integration(&new).await.unwrap()
}

pub async fn integration(store: &Arc<dyn Store>, name: &str) -> Integration {
    store
        .create_integration(&new_integration(name))
        .await
        .unwrap()
}

/// 40 hex characters, distinct per `i`.
pub fn device_id(i: usize) -> String {
    format!("{:040x}", 0xdead_0000_0000_usize + i)
}

pub fn asset(i: usize) -> Asset {
    Asset {
        name: Some(format!("host-{i}.contoso.local")),
        os_platform: Some("Windows11".into()),
        os_version: Some("22H2".into()),
        health_status: Some("Active".into()),
        onboarding_status: Some("Onboarded".into()),
        exposure_level: Some("Medium".into()),
        risk_score: Some("Low".into()),
        device_value: Some("Normal".into()),
        ip_addresses: vec![format!("10.0.{}.{}", i / 250, i % 250)],
        tags: vec!["prod".into()],
        rbac_group_id: Some(7),
        rbac_group_name: Some("Servers".into()),
        first_seen: Some(t(-10_000)),
        last_seen: Some(t(-5)),
        ..Asset::new(device_id(i), AssetKind::Device)
    }
}

pub fn cve(i: usize) -> String {
    format!("CVE-2024-{:06}", 100_000 + i)
}

/// Finding `j` of asset `i`: software `j % 7`, CVE `j`.
pub fn finding(i: usize, j: usize) -> Finding {
    Finding {
        key: FindingKey {
            asset_source_id: device_id(i),
            software_vendor: "microsoft".into(),
            software_name: format!("app_{}", j % 7),
            software_version: format!("1.{}.0", j % 3),
            cve_id: cve(j).parse().unwrap(),
        },
        asset_name: Some(format!("host-{i}.contoso.local")),
        asset_os_platform: None,
        asset_os_version: None,
        severity: Some(match j % 4 {
            0 => Severity::Critical,
            1 => Severity::High,
            2 => Severity::Medium,
            _ => Severity::Low,
        }),
        cvss: Some(5.0 + (j % 5) as f64),
        exploitability: Some("NoExploit".into()),
        recommended_update: Some(format!("KB50{j:05}")),
        recommendation_reference: None,
        first_seen: Some(t(-1_000)),
        last_seen: Some(t(-1)),
    }
}

/// `per_asset` findings on each of `assets` assets.
pub fn findings(assets: usize, per_asset: usize) -> Vec<Finding> {
    findings_of(0, assets, per_asset)
}

/// `per_asset` findings on each of the assets `first..first + assets`.
pub fn findings_of(first: usize, assets: usize, per_asset: usize) -> Vec<Finding> {
    (first..first + assets)
        .flat_map(|i| (0..per_asset).map(move |j| finding(i, j)))
        .collect()
}

pub fn vulnerability(j: usize) -> Vulnerability {
    Vulnerability {
        cve_id: cve(j).parse().unwrap(),
        severity: Some(Severity::High),
        cvss: Some(7.8),
        cvss_vector: Some("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".into()),
        epss: Some(0.0123),
        public_exploit: j.is_multiple_of(2),
        exploit_verified: false,
        exploit_in_kit: j.is_multiple_of(5),
        exploit_types: vec!["RemoteCodeExecution".into()],
        published_on: Some(t(-100_000)),
        updated_on: Some(t(-50_000)),
        description: Some(format!("Remote code execution in app {j}")),
        source_exposed_machines: None,
    }
}

pub async fn all_assets(store: &Arc<dyn Store>, filter: AssetFilter) -> Vec<StoredAsset> {
    store
        .stream_assets(rampart_store::Visibility::All, filter)
        .try_collect()
        .await
        .unwrap()
}

pub async fn all_findings(store: &Arc<dyn Store>, filter: FindingFilter) -> Vec<StoredFinding> {
    store
        .stream_findings(rampart_store::Visibility::All, filter)
        .try_collect()
        .await
        .unwrap()
}

/// The findings with `status`, of one integration or of all.
pub async fn findings_with_status(
    store: &Arc<dyn Store>,
    integration: Option<IntegrationId>,
    status: FindingStatus,
) -> Vec<StoredFinding> {
    all_findings(
        store,
        FindingFilter {
            integration,
            status: Some(status),
            ..Default::default()
        },
    )
    .await
}

pub fn succeeded(at: DateTime<Utc>) -> RunOutcome {
    RunOutcome::new(RunStatus::Succeeded, at)
}

/// Starts a full run at `at` that writes assets `0..assets`, each with `per_asset` findings
/// ([`findings`]); returns the run, still running.
pub async fn full_run_seeing(
    store: &Arc<dyn Store>,
    integration_id: IntegrationId,
    at: DateTime<Utc>,
    assets: usize,
    per_asset: usize,
) -> RunId {
    let run = store.start_run(integration_id, "full", at).await.unwrap();
    let all: Vec<Asset> = (0..assets).map(asset).collect();
    store
        .upsert_assets(integration_id, run, &all)
        .await
        .unwrap();
    store
        .upsert_findings(integration_id, run, &findings(assets, per_asset))
        .await
        .unwrap();
    run
}

/// What an upsert did: new, updated, unchanged, reopened.
pub fn counts(new: u64, updated: u64, unchanged: u64, reopened: u64) -> UpsertCounts {
    UpsertCounts {
        new,
        updated,
        unchanged,
        reopened,
    }
}

/// A reconciliation that changed this many assets, findings and recommendations.
pub fn applied(
    assets_missing: u64,
    findings_fixed: u64,
    recommendations_removed: u64,
) -> ReconcileOutcome {
    ReconcileOutcome::Applied {
        assets_missing,
        findings_fixed,
        recommendations_removed,
    }
}
