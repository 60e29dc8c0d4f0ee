//! Defender for Cloud posture against real tenants' answers (issue 11): the tenant score as
//! Microsoft computes it, Microsoft's risk on recommendations, a control without a score, Defender
//! CSPM's agentless scanning in the plan check, and a connection test that reports what it ran.
//! Each scenario runs against the emulator over HTTP, on SQLite and PostgreSQL.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use rampart_model::Verdict;
use rampart_sim::SimConfig;
use rampart_store::{RecommendationFilter, Store, StoredRecommendation, SubscriptionReadOutcome};
use rampart_sync::{CLOUD_STEPS, StepOutcome, SyncRequest};

use crate::cloud::cloud_tenant;
use crate::harness::*;

/// Assessment id → (level, factors, attack paths) of its risk, if any.
type Risks = BTreeMap<String, Option<(Option<String>, Vec<String>, Vec<String>)>>;

async fn all_recommendations(store: &Arc<dyn Store>) -> Vec<StoredRecommendation> {
    store
        .stream_recommendations(
            rampart_store::Visibility::All,
            RecommendationFilter::default(),
        )
        .try_collect()
        .await
        .expect("recommendations")
}

/// Issue 11 item 6: subscriptions with different maximum scores (the emulator's second
/// subscription has no SQL server, so no "Enable encryption at rest" control): the stored tenant
/// score, the API's source and the export's `tenant` row are Microsoft's
/// Σ(weight × current / max) / Σ weight × 100, not Σ(weight × current) / Σ(weight × max).
pub async fn the_tenant_score_is_microsofts_over_subscriptions_of_different_maxima(
    store: Arc<dyn Store>,
) {
    let h = synced_cloud(store, cloud_tenant()).await;

    let truth = h.sim.sim.truth();
    let scores = truth.secure_scores();
    let mut maxima: Vec<u32> = scores.iter().map(|s| s.max).collect();
    maxima.sort_unstable();
    maxima.dedup();
    assert!(maxima.len() >= 2, "the maxima must differ: {scores:?}");
    let want = truth.tenant_score_percent().expect("tenant score");
    let ratio_of_sums = scores
        .iter()
        .map(|s| s.weight as f64 * s.current)
        .sum::<f64>()
        / scores
            .iter()
            .map(|s| s.weight as f64 * f64::from(s.max))
            .sum::<f64>()
        * 100.0;
    assert!(
        (want - ratio_of_sums).abs() > 0.01,
        "the tenant must tell the two formulas apart: {want} vs {ratio_of_sums}"
    );

    let history = h.posture_history().await;
    let last = history.last().expect("a point");
    assert_eq!(last.percent, Some(want), "stored tenant score");
    assert!(
        (last.parts.score_sum / last.parts.weight_sum * 100.0 - want).abs() < 0.01,
        "{last:?}"
    );

    let rows: Vec<_> = rampart_store::export::posture_records(
        &*h.store,
        rampart_store::Visibility::All,
        Some(h.integration.id),
    )
    .try_collect()
    .await
    .expect("export");
    let tenant = rows
        .iter()
        .find(|r| r.record_type == "tenant")
        .expect("tenant row");
    assert_eq!(tenant.score_percent, Some(want), "exported tenant score");
}

/// Issue 11 item 15b: one control arrives with `"score": null`. It is kept with its score
/// unknown (its maximum from its definition), and its subscription is read in full: the run
/// succeeds and concludes, every subscription's read is `ok`.
pub async fn a_control_without_a_score_keeps_its_subscription_whole(store: Arc<dyn Store>) {
    let h = cloud_harness(
        store,
        SimConfig {
            null_control_score: true,
            ..cloud_tenant()
        },
    )
    .await;
    let run = h.sync_ok(SyncRequest::default()).await;

    assert_eq!(run.verdict, Some(Verdict::Complete));
    for s in h
        .store
        .list_subscriptions(&rampart_store::Visibility::All, Some(h.integration.id))
        .await
        .expect("subscriptions")
    {
        let read = s.last_read.expect("a read");
        assert!(
            matches!(
                read.outcome,
                SubscriptionReadOutcome::Ok | SubscriptionReadOutcome::Skipped(_)
            ),
            "{:?}",
            read.outcome
        );
    }
    let truth = h.sim.sim.truth();
    let first = truth.cloud_subscriptions()[0].subscription_id.clone();
    let controls = h
        .store
        .latest_controls(
            &rampart_store::Visibility::All,
            Some(h.integration.id),
            Some(&first),
        )
        .await
        .expect("controls");
    let want: Vec<_> = truth
        .score_controls()
        .into_iter()
        .filter(|c| c.subscription_id == first)
        .collect();
    assert_eq!(controls.len(), want.len(), "the odd control is kept");
    // "Apply system updates" (max 6) is the one sent without a score.
    let odd = controls
        .iter()
        .find(|c| c.control.control_id == "e9e5ed5c-61b6-4a43-9c41-9e8b1d1b0e44")
        .expect("the control without a score");
    assert_eq!(
        (odd.control.current, odd.control.max, odd.control.fraction),
        (None, 6.0, None)
    );
    assert!(
        controls
            .iter()
            .filter(|c| c.control.control_id != odd.control.control_id)
            .all(|c| c.control.current.is_some())
    );
}

/// Issue 11 item 12a: assessments 2025-05-04 carry `properties.risk`; every recommendation holds
/// exactly the risk Microsoft sent (level, factors, attack paths), readable by other code as
/// `Recommendation::risk`.
pub async fn recommendations_carry_microsofts_risk(store: Arc<dyn Store>) {
    let h = synced_cloud(store, cloud_tenant()).await;

    let stored: Risks = all_recommendations(&h.store)
        .await
        .into_iter()
        .map(|r| {
            let m = r.recommendation;
            (
                m.assessment_id,
                m.risk.map(|k| (k.level, k.factors, k.attack_paths)),
            )
        })
        .collect();
    let want: Risks = h
        .sim
        .sim
        .truth()
        .cloud_assessments()
        .into_iter()
        .map(|a| {
            (
                a.id.to_ascii_lowercase(),
                a.risk.map(|k| (Some(k.level), k.factors, k.attack_paths)),
            )
        })
        .collect();
    assert_eq!(stored, want);
    let risky = want.values().flatten().count();
    assert!(risky > 0, "some recommendations carry a risk");
    assert!(
        want.values()
            .flatten()
            .any(|(_, _, paths)| !paths.is_empty()),
        "some lie on an attack path"
    );
    assert!(
        want.values().any(Option::is_none),
        "healthy ones carry none"
    );
}

/// Issue 11 item 12a, fallback: a cloud without assessments 2025-05-04 answers 400
/// `NoRegisteredProviderFound`; the recommendations are read with 2021-06-01 (no risk), the run
/// still succeeds and holds every recommendation.
pub async fn without_assessments_2025_05_04_recommendations_are_read_without_risk(
    store: Arc<dyn Store>,
) {
    let h = synced_cloud(
        store,
        SimConfig {
            assessments_without_2025_05_04: true,
            ..cloud_tenant()
        },
    )
    .await;

    let stored = all_recommendations(&h.store).await;
    assert_eq!(stored.len(), h.sim.sim.truth().cloud_assessments().len());
    assert!(stored.iter().all(|r| r.recommendation.risk.is_none()));
    let report = h.engine.test_connection(&h.integration).await;
    let step = report.step("read recommendations").expect("step");
    assert_eq!(step.outcome, StepOutcome::Passed, "{report}");
    assert!(step.detail.contains("2021-06-01"), "{report}");
}

/// Issue 11 items 10 and 11: a subscription refuses the plan check (403): that step fails, and
/// the later steps still run on a subscription that answers and report what they read, never
/// "not tried". (Item 10, Defender CSPM's agentless scanning in the plan check, is asserted in
/// `the_cloud_connection_test_names_each_step`.)
pub async fn the_cloud_connection_test_reports_each_step_it_ran(store: Arc<dyn Store>) {
    let probe = rampart_sim::spawn(cloud_tenant()).await.expect("sim");
    let subs = probe.sim.truth().cloud_subscriptions();
    drop(probe);
    let denied = subs[0].subscription_id.clone();
    let h = cloud_harness(
        store,
        SimConfig {
            arm_denied_subscriptions: vec![denied.clone()],
            ..cloud_tenant()
        },
    )
    .await;
    let report = h.engine.test_connection(&h.integration).await;
    let text = report.to_string();
    let names: Vec<&str> = report.steps.iter().map(|s| s.name).collect();
    assert_eq!(names, CLOUD_STEPS, "{text}");
    let plans = report.step("check Defender plans").expect("step");
    assert_eq!(plans.outcome, StepOutcome::Failed, "{text}");
    assert!(plans.detail.contains(&denied), "{text}");
    for name in &CLOUD_STEPS[4..] {
        let step = report.step(name).expect("step");
        assert_eq!(step.outcome, StepOutcome::Passed, "{name}: {text}");
        assert!(!step.detail.contains("not tried"), "{text}");
    }
    let scores = report.step("read secure scores").expect("step");
    assert!(scores.detail.contains(&subs[1].subscription_id), "{text}");
}
