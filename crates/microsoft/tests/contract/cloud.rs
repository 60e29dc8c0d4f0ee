//! Defender for Cloud: every `mdc-*` example read with the client's wire types, and the ARM client
//! against the emulator over HTTP.

use std::path::PathBuf;

use crate::emulator::arm_client;
use rampart_microsoft::{ArmClient, CloudFinding, RateLimits, is_authorization_failed};
use rampart_microsoft::{
    ArmSubscription, Assessment, AssessmentMetadata, ControlDefinition, GraphPage,
    ScoreControlItem, SecureScoreItem, SubAssessment,
};
use rampart_model::weighted_percent;
use rampart_sim::SimConfig;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn read(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/examples")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn list<T: DeserializeOwned>(name: &str) -> Vec<T> {
    #[derive(serde::Deserialize)]
    struct L<T> {
        value: Vec<T>,
    }
    let bytes = read(name);
    match serde_json::from_slice::<L<T>>(&bytes) {
        Ok(l) => l.value,
        Err(_) => vec![
            serde_json::from_slice::<T>(&bytes)
                .unwrap_or_else(|e| panic!("{name} does not fit its wire type: {e}")),
        ],
    }
}

#[test]
fn every_mdc_example_fits_the_wire_types() {
    let subs: Vec<ArmSubscription> = list("mdc-01-2-1-subscriptions-list.json");
    assert_eq!(
        subs[0].clone().into_model().display_name.as_deref(),
        Some("Prod Workloads")
    );
    let scores: Vec<SecureScoreItem> = list("mdc-02-2-2-secure-scores.json");
    let s = scores[0]
        .clone()
        .into_model("20ff7fc3-e762-44dd-bd96-b71116dcdc23", None);
    assert!(
        (s.percent() - 60.33).abs() < 1e-9,
        "0–1 fraction shown as 0–100"
    );
    let controls: Vec<ScoreControlItem> =
        list("mdc-03-2-3-secure-score-controls-with-expand-definition.json");
    assert!(controls[0].properties.definition.is_some());
    let defs: Vec<ControlDefinition> = list("mdc-04-2-4-secure-score-control-definitions.json");
    assert!(!defs.is_empty());
    let assessments: Vec<Assessment> =
        list("mdc-05-2-5-assessments-recommendations-per-resource.json");
    let r = assessments[0].clone().into_model("x", None);
    assert_eq!(r.key, "1195afff-c881-495e-9bc5-1486211ae03f");
    assert!(r.resource_id.ends_with("/virtualmachines/vm-test"));
    let meta: Vec<AssessmentMetadata> =
        list("mdc-06-2-6-assessment-metadata-severity-category-remedi.json");
    assert_eq!(meta[0].properties.severity.as_deref(), Some("Medium"));
    let subs: Vec<SubAssessment> =
        list("mdc-07-2-7-sub-assessments-legacy-vulnerability-finding.json");
    assert_eq!(
        subs[0].properties.cve_ids(),
        ["CVE-2025-6021", "CVE-2025-49796"]
    );
    let _: Value = serde_json::from_slice(&read("mdc-08-3-1-request.json")).unwrap();
    let page: GraphPage<Value> = serde_json::from_slice(&read("mdc-09-3-2-response.json")).unwrap();
    assert!(!page.result_truncated);
    assert!(page.skip_token.is_some());
}

async fn client(config: SimConfig) -> (rampart_sim::RunningSim, ArmClient) {
    arm_client(config, |cfg| cfg.rate_limits = RateLimits::disabled()).await
}

/// Every cloud finding of `subscriptions`, read to the end (a cut-short read fails the test).
async fn all_findings(client: &ArmClient, subscriptions: &[String]) -> Vec<CloudFinding> {
    let (rows, report) = client
        .vulnerability_rows(subscriptions)
        .collect_all()
        .await
        .expect("vulnerability rows");
    assert!(report.complete, "{}", report.reason);
    rows.into_iter()
        .flat_map(|r| r.into_findings().expect("a cloud finding").findings)
        .collect()
}

fn small() -> SimConfig {
    SimConfig {
        devices: 120,
        findings_per_device: 10,
        rate_limits: false,
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn the_client_reads_what_the_emulator_holds() {
    let (sim, client) = client(small()).await;
    let truth = sim.sim.truth();
    let (subs, report) = client.subscriptions().collect_all().await.unwrap();
    assert!(report.complete, "{}", report.reason);
    assert_eq!(subs.len(), 4);
    let mut scores = Vec::new();
    for s in subs
        .into_iter()
        .map(|s| s.into_model())
        .filter(|s| s.is_readable())
    {
        let (items, _) = client
            .secure_scores(&s.subscription_id)
            .collect_all()
            .await
            .unwrap();
        scores.extend(
            items
                .into_iter()
                .map(|i| i.into_model(&s.subscription_id, None)),
        );
        let (assessments, report) = client
            .assessments(&s.subscription_id)
            .collect_all()
            .await
            .unwrap();
        assert!(
            report.complete,
            "the empty first page is not the end: {}",
            report.reason
        );
        let builtin = assessments.iter().filter(|a| !a.is_individual()).count();
        assert_eq!(
            builtin,
            truth
                .cloud_assessments()
                .iter()
                .filter(|a| a.subscription_id == s.subscription_id)
                .count()
        );
        let (controls, _) = client
            .secure_score_controls(&s.subscription_id)
            .collect_all()
            .await
            .unwrap();
        // Five controls, but none without resources: the subscription without a SQL server has
        // no "Enable encryption at rest".
        assert_eq!(
            controls.len(),
            truth
                .score_controls()
                .iter()
                .filter(|c| c.subscription_id == s.subscription_id)
                .count()
        );
        assert!((4..=5).contains(&controls.len()));
        assert!(
            !client
                .pricings(&s.subscription_id)
                .await
                .unwrap()
                .is_empty()
        );
        let (legacy, _) = client
            .sub_assessments(&s.subscription_id)
            .collect_all()
            .await
            .unwrap();
        assert!(
            legacy.is_empty(),
            "grouped findings are gone after 2026-07-31"
        );
    }
    assert_eq!(scores.len(), 3);
    let expected = truth.tenant_score_percent().unwrap();
    assert!((weighted_percent(&scores).unwrap() - expected).abs() < 1e-9);

    let ids: Vec<String> = truth
        .cloud_subscriptions()
        .into_iter()
        .map(|s| s.subscription_id)
        .collect();
    let findings: Vec<_> = all_findings(&client, &ids)
        .await
        .into_iter()
        .map(|f| f.finding)
        .collect();
    assert_eq!(findings.len(), truth.cloud_findings().len());
    assert!(
        findings
            .iter()
            .all(|f| f.key.asset_source_id == f.key.asset_source_id.to_ascii_lowercase())
    );
}

#[tokio::test]
async fn no_role_and_a_denied_subscription_are_recognisable() {
    let (_sim, client) = client(SimConfig {
        arm_role: None,
        ..small()
    })
    .await;
    let (subs, report) = client.subscriptions().collect_all().await.unwrap();
    assert!(subs.is_empty() && report.complete);

    let probe = rampart_sim::Sim::new(small()).unwrap();
    let denied = probe.truth().cloud_subscriptions()[0]
        .subscription_id
        .clone();
    let (_sim, client) = client_with(SimConfig {
        arm_denied_subscriptions: vec![denied.clone()],
        ..small()
    })
    .await;
    let err = client
        .secure_scores(&denied)
        .collect_all()
        .await
        .unwrap_err();
    assert!(is_authorization_failed(&err), "{err}");
    assert!(err.to_string().contains(&denied), "{err}");
}

async fn client_with(config: SimConfig) -> (rampart_sim::RunningSim, ArmClient) {
    client(config).await
}

fn subscription_ids(sim: &rampart_sim::RunningSim) -> Vec<String> {
    sim.sim
        .truth()
        .cloud_subscriptions()
        .into_iter()
        .map(|s| s.subscription_id)
        .collect()
}

/// Issue 11 item 2: Resource Graph's `mv-expand` keeps 128 elements per row, so the client
/// expands `CvesDetails` itself and a package with 300 CVEs arrives whole.
#[tokio::test]
async fn a_package_with_300_cves_arrives_whole() {
    let (sim, client) = client(SimConfig {
        cloud_cves_in_one_package: 300,
        ..small()
    })
    .await;
    let findings = all_findings(&client, &subscription_ids(&sim)).await;
    let kernel = findings
        .iter()
        .filter(|f| f.finding.key.software_name == "linux-image-generic")
        .count();
    assert_eq!(kernel, 300);
    assert_eq!(findings.len(), sim.sim.truth().cloud_findings().len());
}

/// Issue 11 item 3: an answer over Resource Graph's size limit is asked again with half the rows
/// (the emulator's limit is set low so that small pages reach it), and the error's `details` are
/// shown when even one row is too large.
#[tokio::test]
async fn an_answer_over_the_size_limit_is_asked_again_smaller() {
    let (sim, client) = client(SimConfig {
        graph_max_response_bytes: 40_000,
        ..small()
    })
    .await;
    let findings = all_findings(&client, &subscription_ids(&sim)).await.len();
    assert_eq!(findings, sim.sim.truth().cloud_findings().len());

    let (sim, client) = client_with(SimConfig {
        graph_max_response_bytes: 1024,
        ..small()
    })
    .await;
    let err = client
        .vulnerability_rows(&subscription_ids(&sim))
        .collect_all()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("ResponsePayloadTooLarge"), "{text}");
    assert!(text.contains("exceeded the limit of 1024"), "{text}");
    assert!(text.contains("16 MiB"), "{text}");
}
