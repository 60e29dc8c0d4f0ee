//! Fixed data written straight through the store (as the syncs write it), for pages and API
//! answers whose content the tests pin: a Defender for Cloud tenant with two syncs, and an
//! Endpoint device that is the same machine as one of its VMs.

use chrono::{DateTime, Duration, Utc};
use rampart_model::RunId;
use rampart_model::{
    Asset, AssetKind, Cloud, ControlScore, Finding, FindingKey, IntegrationId, IntegrationName,
    PostureScore, Product, Recommendation, RecommendationRisk, RunStatus, SecretHint, Severity,
    Subscription,
};
use rampart_store::{NewIntegration, RunOutcome, SecretCiphertext, Store, SubscriptionReadOutcome};

use crate::helpers::{TestApp, first_asset_id};

pub const SUB_A: &str = "11111111-1111-1111-1111-111111111111";
pub const SUB_B: &str = "22222222-2222-2222-2222-222222222222";
pub const VM: &str = "/subscriptions/11111111-1111-1111-1111-111111111111/resourcegroups/web/providers/microsoft.compute/virtualmachines/web-01";
pub const AAD_DEVICE: &str = "6f1c2d3e-0000-4000-8000-00000000beef";

/// What [`seed_cloud`] made.
pub struct CloudEstate {
    /// The VM as Defender for Cloud knows it, and the same machine as an Endpoint device.
    pub vm_asset: i64,
    pub device_asset: i64,
    /// When the two syncs captured their scores.
    pub first: DateTime<Utc>,
    pub second: DateTime<Utc>,
}

fn new_integration(app: &TestApp, name: &str, product: Product) -> NewIntegration {
    NewIntegration {
        name: name.parse::<IntegrationName>().unwrap(),
        product,
        cloud: Cloud::Commercial,
        tenant_id: app.sim_config.tenant_id.parse().unwrap(),
        client_id: app.sim_config.client_id.parse().unwrap(),
        secret: SecretCiphertext {
            ciphertext: vec![1; 32],
            nonce: vec![2; 24],
        },
        hint: SecretHint::of("xxxxxxxxxxxxfixture", None),
        login_url: None,
        api_url: None,
        schedule_minutes: 480,
        enabled: false,
    }
}

fn machine(source_id: &str, kind: AssetKind, name: &str) -> Asset {
    Asset {
        name: Some(name.to_owned()),
        os_platform: Some("Linux".into()),
        aad_device_id: Some(AAD_DEVICE.into()),
        azure_resource_id: Some(VM.into()),
        ..Asset::new(source_id, kind)
    }
}

fn recommendation(key: &str, status: &str, severity: &str, resource: &str) -> Recommendation {
    let sub = if resource.contains(SUB_A) {
        SUB_A
    } else {
        SUB_B
    };
    Recommendation {
        subscription_id: sub.into(),
        assessment_id: format!("{resource}/providers/microsoft.security/assessments/{key}"),
        key: key.into(),
        resource_id: resource.into(),
        display_name: Some(format!("Recommendation {key}")),
        status: status.into(),
        cause: None,
        severity: Some(severity.into()),
        category: Some("Compute".into()),
        status_changed: None,
        risk: None,
    }
}

fn score(sub: &str, name: &str, current: f64, max: f64) -> PostureScore {
    PostureScore {
        subscription_id: sub.into(),
        subscription_name: Some(name.into()),
        current,
        max,
        fraction: current / max,
        weight: 10,
    }
}

fn control(sub: &str, id: &str, name: &str, current: f64, unhealthy: i64) -> ControlScore {
    ControlScore {
        subscription_id: sub.into(),
        control_id: id.into(),
        display_name: Some(name.into()),
        current: Some(current),
        max: 10.0,
        fraction: Some(current / 10.0),
        healthy: 3,
        unhealthy,
        not_applicable: 1,
        weight: 10,
    }
}

/// What a Cloud sync read of the secure score.
struct Posture {
    scores: Vec<PostureScore>,
    controls: Vec<ControlScore>,
}

/// The end of a Cloud sync at `at`: the posture and recommendations it read, and its outcome.
async fn conclude_cloud_run(
    store: &dyn Store,
    cloud: IntegrationId,
    run: RunId,
    at: DateTime<Utc>,
    posture: &Posture,
    recs: &[Recommendation],
    status: RunStatus,
) {
    store
        .record_posture(cloud, run, at, &posture.scores, &posture.controls)
        .await
        .unwrap();
    store
        .upsert_recommendations(cloud, run, recs)
        .await
        .unwrap();
    store
        .finish_run(run, &RunOutcome::new(status, at))
        .await
        .unwrap();
}

/// Two Cloud syncs (two and one day ago): the second could not read subscription B (its score
/// stays the first one's), 12 recommendations (8 unhealthy), controls; and an Endpoint device
/// that is the VM `web-01`, with 9 open findings (1 critical, 2 high, 3 medium, 3 low).
pub async fn seed_cloud(app: &TestApp) -> CloudEstate {
    let store = &app.store;
    let cloud = store
        .create_integration(&new_integration(app, "contoso-cloud", Product::Cloud))
        .await
        .unwrap()
        .id;
    let endpoint = store
        .create_integration(&new_integration(app, "contoso-endpoint", Product::Endpoint))
        .await
        .unwrap()
        .id;
    let first = Utc::now() - Duration::days(2);
    let second = Utc::now() - Duration::days(1);
    let subs = [
        Subscription {
            subscription_id: SUB_A.into(),
            display_name: Some("Production".into()),
            state: Some("Enabled".into()),
        },
        Subscription {
            subscription_id: SUB_B.into(),
            display_name: Some("Sandbox".into()),
            state: Some("Enabled".into()),
        },
    ];
    let resources: Vec<String> = (0..6)
        .map(|n| {
            let sub = if n < 4 { SUB_A } else { SUB_B };
            if n == 0 {
                VM.to_owned()
            } else {
                format!("/subscriptions/{sub}/resourcegroups/app/providers/microsoft.storage/storageaccounts/st{n}")
            }
        })
        .collect();
    let mut recs: Vec<Recommendation> = (0..12)
        .map(|n| {
            recommendation(
                &format!("assessment-{n:02}"),
                if n % 3 == 2 { "Healthy" } else { "Unhealthy" },
                ["High", "Medium", "Low", "Critical"][n % 4],
                &resources[n % 6],
            )
        })
        .collect();
    // Microsoft's risk (assessments 2025-05-04) on one unhealthy recommendation.
    recs[1].risk = Some(RecommendationRisk {
        level: Some("High".into()),
        factors: vec!["Internet exposure".into(), "Sensitive data".into()],
        attack_paths: vec!["attack-path-1".into()],
        contextual: Some(true),
    });

    // Sync 1: both subscriptions read.
    let run = store.start_run(cloud, "full", first).await.unwrap();
    store.upsert_subscriptions(cloud, run, &subs).await.unwrap();
    store
        .upsert_assets(
            cloud,
            run,
            &[machine(VM, AssetKind::VirtualMachine, "web-01")],
        )
        .await
        .unwrap();
    for sub in [SUB_A, SUB_B] {
        store
            .record_subscription_read(cloud, run, sub, &SubscriptionReadOutcome::Ok)
            .await
            .unwrap();
    }
    let posture = Posture {
        scores: vec![
            score(SUB_A, "Production", 20.0, 50.0),
            score(SUB_B, "Sandbox", 30.0, 50.0),
        ],
        controls: vec![
            control(SUB_A, "c-mfa", "Enable MFA", 4.0, 2),
            control(SUB_B, "c-mfa", "Enable MFA", 8.0, 1),
        ],
    };
    conclude_cloud_run(
        store.as_ref(),
        cloud,
        run,
        first,
        &posture,
        &recs,
        RunStatus::Succeeded,
    )
    .await;

    // Sync 2: subscription A better; B could not be read.
    let run = store.start_run(cloud, "full", second).await.unwrap();
    store.upsert_subscriptions(cloud, run, &subs).await.unwrap();
    store
        .record_subscription_read(cloud, run, SUB_A, &SubscriptionReadOutcome::Ok)
        .await
        .unwrap();
    store
        .record_subscription_read(
            cloud,
            run,
            SUB_B,
            &SubscriptionReadOutcome::Failed(
                "AuthorizationFailed: the app has no Reader role on this subscription".into(),
            ),
        )
        .await
        .unwrap();
    let posture = Posture {
        scores: vec![score(SUB_A, "Production", 35.0, 50.0)],
        controls: vec![
            control(SUB_A, "c-mfa", "Enable MFA", 7.0, 1),
            control(SUB_A, "c-patch", "Apply system updates", 2.0, 4),
        ],
    };
    conclude_cloud_run(
        store.as_ref(),
        cloud,
        run,
        second,
        &posture,
        &recs,
        RunStatus::Partial,
    )
    .await;

    // The same machine, onboarded to Defender for Endpoint.
    let run = store.start_run(endpoint, "full", second).await.unwrap();
    store
        .upsert_assets(
            endpoint,
            run,
            &[machine(
                &"e".repeat(40),
                AssetKind::Device,
                "web-01.contoso.local",
            )],
        )
        .await
        .unwrap();
    let findings: Vec<Finding> = (0..9)
        .map(|n| Finding {
            key: FindingKey {
                asset_source_id: "e".repeat(40),
                software_vendor: "openbsd".into(),
                software_name: ["openssh", "openssl", "curl"][n % 3].into(),
                software_version: format!("9.{n}"),
                cve_id: format!("CVE-2025-{:05}", 10_000 + n).parse().unwrap(),
            },
            asset_name: None,
            asset_os_platform: None,
            asset_os_version: None,
            severity: Some(
                [
                    Severity::Critical,
                    Severity::High,
                    Severity::High,
                    Severity::Medium,
                    Severity::Medium,
                    Severity::Medium,
                    Severity::Low,
                    Severity::Low,
                    Severity::Low,
                ][n],
            ),
            cvss: Some(9.8 - n as f64),
            exploitability: Some("ExploitIsPublic".into()),
            recommended_update: Some(format!(
                "Update {} to 10.0",
                ["openssh", "openssl", "curl"][n % 3]
            )),
            recommendation_reference: None,
            first_seen: None,
            last_seen: None,
        })
        .collect();
    store
        .upsert_findings(endpoint, run, &findings)
        .await
        .unwrap();
    store
        .finish_run(run, &RunOutcome::new(RunStatus::Succeeded, second))
        .await
        .unwrap();

    CloudEstate {
        vm_asset: first_asset_id(store.as_ref(), cloud).await,
        device_asset: first_asset_id(store.as_ref(), endpoint).await,
        first,
        second,
    }
}
