//! Defender for Cloud storage: subscriptions and their reads, posture history and the tenant
//! score, recommendations and their history, subscription-scoped reconciliation, one machine
//! known to two integrations, the posture export, and removal.

use rampart_model::IntegrationId;
use rampart_model::RunId;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use rampart_store::export::posture_records;

use rampart_model::export::{CsvRecord, PostureRecord};
use rampart_model::{
    Asset, AssetKind, AssetStatus, ControlScore, Finding, FindingStatus, Integration, PostureScore,
    Product, Recommendation, Subscription,
};
use rampart_store::{
    AssetFilter, FindingFilter, NewIntegration, PosturePoint, RECOMMENDATION_REMOVED,
    RecommendationFilter, ReconcileOutcome, ReconcilePolicy, ReconcileScope, Store, StoreError,
    StoredControlScore, StoredPostureScore, StoredRecommendation, SubscriptionReadOutcome,
    UpsertCounts,
};

use crate::support::*;

scenarios!(
    subscriptions_keep_names_states_and_read_outcomes,
    tenant_score_is_weighted_not_averaged,
    record_posture_replaces_the_runs_rows,
    recommendations_keep_history,
    recommendation_listing_filters_and_counts,
    reconcile_concludes_only_the_scoped_subscriptions,
    breaker_counts_within_the_scope,
    everything_scope_removes_unseen_recommendations,
    linked_assets_join_endpoint_and_cloud,
    posture_export_rows,
    delete_integration_removes_cloud_rows,
);

const SUB_A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const SUB_B: &str = "bbbbbbbb-0000-4000-8000-000000000002";

async fn cloud_integration(store: &Arc<dyn Store>, name: &str) -> Integration {
    store
        .create_integration(&NewIntegration {
            product: Product::Cloud,
            ..new_integration(name)
        })
        .await
        .unwrap()
}

fn vm_id(sub: &str, i: usize) -> String {
    format!(
        "/subscriptions/{sub}/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm{i}"
    )
}

fn vm(sub: &str, i: usize) -> Asset {
    let id = vm_id(sub, i);
    Asset {
        source_id: id.clone(),
        kind: AssetKind::VirtualMachine,
        name: Some(format!("vm{i}")),
        azure_resource_id: Some(id),
        rbac_group_id: None,
        rbac_group_name: None,
        ..asset(i)
    }
}

/// The subscription itself as an asset (subscription-level recommendations are on it).
fn subscription_asset(sub: &str) -> Asset {
    Asset {
        source_id: format!("/subscriptions/{sub}"),
        kind: AssetKind::CloudResource,
        name: Some(sub.to_owned()),
        azure_resource_id: Some(format!("/subscriptions/{sub}")),
        ..asset(0)
    }
}

/// Finding `j` on VM `i` of `sub`.
fn vm_finding(sub: &str, i: usize, j: usize) -> Finding {
    let mut f = finding(i, j);
    f.key.asset_source_id = vm_id(sub, i);
    f.asset_name = Some(format!("vm{i}"));
    f
}

fn rec(sub: &str, resource: &str, key: &str, status: &str, severity: &str) -> Recommendation {
    Recommendation {
        subscription_id: sub.to_owned(),
        assessment_id: format!("{resource}/providers/microsoft.security/assessments/{key}"),
        key: key.to_owned(),
        resource_id: resource.to_owned(),
        display_name: Some(format!("Recommendation {key}")),
        status: status.to_owned(),
        cause: None,
        severity: Some(severity.to_owned()),
        category: Some("Compute".into()),
        status_changed: Some(t(-30)),
        risk: None,
    }
}

fn score(sub: &str, current: f64, max: f64, weight: i64) -> PostureScore {
    PostureScore {
        subscription_id: sub.to_owned(),
        subscription_name: Some(format!("name of {}", &sub[..4])),
        current,
        max,
        fraction: ((current / max) * 10_000.0).round() / 10_000.0,
        weight,
    }
}

fn control(sub: &str, id: &str, current: f64, max: f64) -> ControlScore {
    ControlScore {
        subscription_id: sub.to_owned(),
        control_id: id.to_owned(),
        display_name: Some(format!("Control {id}")),
        current: Some(current),
        max,
        fraction: Some(current / max),
        healthy: 3,
        unhealthy: 1,
        not_applicable: 0,
        weight: 4,
    }
}

async fn all_recs(
    store: &Arc<dyn Store>,
    filter: RecommendationFilter,
) -> Vec<StoredRecommendation> {
    store
        .stream_recommendations(rampart_store::Visibility::All, filter)
        .try_collect()
        .await
        .unwrap()
}

async fn rec_by_key(store: &Arc<dyn Store>, key: &str) -> StoredRecommendation {
    all_recs(store, RecommendationFilter::default())
        .await
        .into_iter()
        .find(|r| r.recommendation.key == key)
        .unwrap()
}

/// Stores `recs` as read by `run`; returns what changed.
async fn recommend(
    store: &Arc<dyn Store>,
    integration: IntegrationId,
    run: RunId,
    recs: &[Recommendation],
) -> UpsertCounts {
    store
        .upsert_recommendations(integration, run, recs)
        .await
        .unwrap()
}

/// Stores the scores `run` captured at `at`.
async fn record_posture(
    store: &Arc<dyn Store>,
    integration: IntegrationId,
    run: RunId,
    at: DateTime<Utc>,
    scores: &[PostureScore],
    controls: &[ControlScore],
) {
    store
        .record_posture(integration, run, at, scores, controls)
        .await
        .unwrap();
}

/// The newest scores of `integration` (or of all), seen by a global account.
async fn latest_posture(
    store: &Arc<dyn Store>,
    integration: Option<IntegrationId>,
) -> Vec<StoredPostureScore> {
    store
        .latest_posture(&rampart_store::Visibility::All, integration)
        .await
        .unwrap()
}

/// The newest control scores of `integration` (or of all), in `subscription` (or all), seen by a
/// global account.
async fn latest_controls(
    store: &Arc<dyn Store>,
    integration: Option<IntegrationId>,
    subscription: Option<&str>,
) -> Vec<StoredControlScore> {
    store
        .latest_controls(&rampart_store::Visibility::All, integration, subscription)
        .await
        .unwrap()
}

/// The score history of `integration` (or of all) since `since`, seen by a global account.
async fn posture_history(
    store: &Arc<dyn Store>,
    integration: Option<IntegrationId>,
    since: Option<DateTime<Utc>>,
) -> Vec<PosturePoint> {
    store
        .posture_history(&rampart_store::Visibility::All, integration, since)
        .await
        .unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

async fn subscriptions_keep_names_states_and_read_outcomes(store: Arc<dyn Store>) {
    let c = cloud_integration(&store, "cloud").await;
    let run1 = store.start_run(c.id, "full", t(0)).await.unwrap();
    let subs = [
        Subscription {
            subscription_id: SUB_A.to_uppercase(),
            display_name: Some("Prod".into()),
            state: Some("Enabled".into()),
        },
        Subscription {
            subscription_id: SUB_B.into(),
            display_name: Some("Old".into()),
            state: Some("Disabled".into()),
        },
    ];
    let got = store.upsert_subscriptions(c.id, run1, &subs).await.unwrap();
    assert_eq!(got, counts(2, 0, 0, 0));
    store
        .record_subscription_read(c.id, run1, SUB_A, &SubscriptionReadOutcome::Ok)
        .await
        .unwrap();
    let skipped = SubscriptionReadOutcome::Skipped("the subscription is Disabled".into());
    store
        .record_subscription_read(c.id, run1, SUB_B, &skipped)
        .await
        .unwrap();
    store.finish_run(run1, &succeeded(t(1))).await.unwrap();
    // A finished run takes no more reads.
    let late = store
        .record_subscription_read(c.id, run1, SUB_A, &SubscriptionReadOutcome::Ok)
        .await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");

    let run2 = store.start_run(c.id, "full", t(60)).await.unwrap();
    let renamed = [
        Subscription {
            display_name: Some("Production".into()),
            ..subs[0].clone()
        },
        subs[1].clone(),
    ];
    let got = store
        .upsert_subscriptions(c.id, run2, &renamed)
        .await
        .unwrap();
    assert_eq!(got, counts(0, 1, 1, 0));
    // First recorded as ok, then replaced by the failure of the same run.
    store
        .record_subscription_read(c.id, run2, SUB_A, &SubscriptionReadOutcome::Ok)
        .await
        .unwrap();
    let denied = SubscriptionReadOutcome::Failed(
        "AuthorizationFailed: the app has no Reader role on this subscription".into(),
    );
    store
        .record_subscription_read(c.id, run2, &SUB_A.to_uppercase(), &denied)
        .await
        .unwrap();
    // A read of a subscription never listed makes it known.
    let sub_c = "cccccccc-0000-4000-8000-000000000003";
    store
        .record_subscription_read(c.id, run2, sub_c, &SubscriptionReadOutcome::Ok)
        .await
        .unwrap();

    let list = store
        .list_subscriptions(&rampart_store::Visibility::All, Some(c.id))
        .await
        .unwrap();
    let ids: Vec<&str> = list
        .iter()
        .map(|s| s.subscription.subscription_id.as_str())
        .collect();
    assert_eq!(ids, vec![SUB_A, SUB_B, sub_c]);
    let a = &list[0];
    assert_eq!(a.integration, "cloud");
    assert_eq!(a.subscription.display_name.as_deref(), Some("Production"));
    assert_eq!(a.subscription.state.as_deref(), Some("Enabled"));
    assert_eq!((a.first_observed, a.last_observed), (t(0), t(60)));
    let last = a.last_read.as_ref().unwrap();
    assert_eq!((last.run_id, last.at), (run2, t(60)));
    assert_eq!(last.outcome, denied);
    let b = &list[1];
    assert_eq!(b.last_observed, t(60));
    assert_eq!(b.last_read.as_ref().unwrap().outcome, skipped);
    assert_eq!(b.last_read.as_ref().unwrap().run_id, run1);
    let c3 = &list[2];
    assert_eq!(c3.subscription.display_name, None);
    assert_eq!(
        c3.last_read.as_ref().unwrap().outcome,
        SubscriptionReadOutcome::Ok
    );

    let reads1 = store
        .subscription_reads(&rampart_store::Visibility::All, run1)
        .await
        .unwrap();
    assert_eq!(reads1.len(), 2);
    assert_eq!(reads1[1].0, SUB_B);
    assert_eq!(reads1[1].1.outcome, skipped);
    let reads2 = store
        .subscription_reads(&rampart_store::Visibility::All, run2)
        .await
        .unwrap();
    assert_eq!(reads2.len(), 2);
    assert_eq!(reads2[0].1.outcome, denied);

    // Another integration's subscriptions stay apart.
    let other = cloud_integration(&store, "other").await;
    let run = store.start_run(other.id, "full", t(0)).await.unwrap();
    store
        .upsert_subscriptions(other.id, run, &subs[..1])
        .await
        .unwrap();
    assert_eq!(
        store
            .list_subscriptions(&rampart_store::Visibility::All, Some(other.id))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .list_subscriptions(&rampart_store::Visibility::All, None)
            .await
            .unwrap()
            .len(),
        4
    );
    assert_eq!(
        store
            .counts(&rampart_store::Visibility::All, Some(c.id))
            .await
            .unwrap()
            .subscriptions,
        3
    );
    assert_eq!(
        store
            .counts(&rampart_store::Visibility::All, None)
            .await
            .unwrap()
            .subscriptions,
        4
    );
}

async fn tenant_score_is_weighted_not_averaged(store: Arc<dyn Store>) {
    let c = cloud_integration(&store, "cloud").await;
    // Run 1: A 5/10 with weight 10, B 9/10 with weight 1.
    let run1 = store.start_run(c.id, "full", t(0)).await.unwrap();
    let scores1 = [score(SUB_A, 5.0, 10.0, 10), score(SUB_B, 9.0, 10.0, 1)];
    let controls1 = [control(SUB_A, "ctl-1", 1.0, 2.0)];
    record_posture(&store, c.id, run1, t(5), &scores1, &controls1).await;
    store.finish_run(run1, &succeeded(t(6))).await.unwrap();
    // Run 2: A 8/10.
    let run2 = store.start_run(c.id, "full", t(60)).await.unwrap();
    let scores2 = [score(SUB_A, 8.0, 10.0, 10), score(SUB_B, 9.0, 10.0, 1)];
    let controls2 = [
        control(SUB_A, "CTL-1", 2.0, 2.0),
        control(SUB_A, "ctl-2", 3.0, 8.0),
        control(SUB_B, "ctl-1", 1.0, 2.0),
    ];
    record_posture(&store, c.id, run2, t(65), &scores2, &controls2).await;
    store.finish_run(run2, &succeeded(t(66))).await.unwrap();
    // Run 3 could read only A: 9/10.
    let run3 = store.start_run(c.id, "full", t(120)).await.unwrap();
    record_posture(
        &store,
        c.id,
        run3,
        t(125),
        &[score(SUB_A, 9.0, 10.0, 10)],
        &[],
    )
    .await;

    let history = posture_history(&store, Some(c.id), None).await;
    assert_eq!(history.len(), 3);
    let p1 = &history[0];
    assert_eq!(
        (p1.run_id, p1.captured_at, p1.subscriptions),
        (run1, t(5), 2)
    );
    // Microsoft's (10·5/10 + 1·9/10) / (10 + 1) = 5.9 / 11 = 53.64 % (rounded to 2 decimals as
    // Microsoft's query rounds), not the average of 50 % and 90 %.
    let want = 53.64;
    assert!(close(p1.percent.unwrap(), want), "{p1:?}");
    assert!(!close(p1.percent.unwrap(), 70.0));
    assert!(close(p1.parts.score_sum, 5.9) && close(p1.parts.weight_sum, 11.0));
    assert_eq!(
        p1.percent,
        rampart_model::weighted_percent(&scores1),
        "the model's formula"
    );
    // (10·8/10 + 1·9/10) / 11 = 8.9 / 11.
    assert!(close(history[1].percent.unwrap(), 80.91));
    assert_eq!((history[2].run_id, history[2].subscriptions), (run3, 1));
    assert!(close(history[2].percent.unwrap(), 90.0));

    let since = posture_history(&store, Some(c.id), Some(t(60))).await;
    assert_eq!(
        since.iter().map(|p| p.run_id).collect::<Vec<_>>(),
        vec![run2, run3]
    );
    let other = cloud_integration(&store, "other").await;
    assert!(
        posture_history(&store, Some(other.id), None)
            .await
            .is_empty()
    );
    assert_eq!(posture_history(&store, None, None).await.len(), 3);

    // Latest per subscription: A from run 3, B still from run 2 (run 3 could not read it).
    let latest = latest_posture(&store, Some(c.id)).await;
    assert_eq!(latest.len(), 2);
    assert_eq!(latest[0].score.subscription_id, SUB_A);
    assert_eq!((latest[0].run_id, latest[0].captured_at), (run3, t(125)));
    assert!(close(latest[0].percent, 90.0));
    assert!(close(latest[0].score.fraction, 0.9));
    assert_eq!(latest[0].integration, "cloud");
    assert_eq!((latest[1].run_id, latest[1].captured_at), (run2, t(65)));
    assert_eq!(latest[1].score.weight, 1);
    assert_eq!(latest, latest_posture(&store, None).await);

    // Controls of the newest run that captured controls, per subscription, largest max first.
    let a_controls = latest_controls(&store, Some(c.id), Some(&SUB_A.to_uppercase())).await;
    let ids: Vec<(&str, RunId)> = a_controls
        .iter()
        .map(|c| (c.control.control_id.as_str(), c.run_id))
        .collect();
    assert_eq!(ids, vec![("ctl-2", run2), ("ctl-1", run2)]);
    assert_eq!(a_controls[1].control.current, Some(2.0));
    assert_eq!(a_controls[0].control.healthy, 3);
    assert_eq!(latest_controls(&store, None, None).await.len(), 3);
    assert!(
        latest_controls(&store, Some(other.id), None)
            .await
            .is_empty()
    );
}

async fn record_posture_replaces_the_runs_rows(store: Arc<dyn Store>) {
    let c = cloud_integration(&store, "cloud").await;
    let run = store.start_run(c.id, "full", t(0)).await.unwrap();
    let scores = [score(SUB_A, 5.0, 10.0, 10), score(SUB_B, 9.0, 10.0, 1)];
    let controls = [
        control(SUB_A, "ctl-1", 1.0, 2.0),
        control(SUB_B, "ctl-1", 1.0, 2.0),
    ];
    for _ in 0..2 {
        record_posture(&store, c.id, run, t(5), &scores, &controls).await;
    }
    assert_eq!(latest_posture(&store, Some(c.id)).await.len(), 2);
    assert_eq!(latest_controls(&store, Some(c.id), None).await.len(), 2);
    assert_eq!(posture_history(&store, Some(c.id), None).await.len(), 1);

    // Again for A only, with new numbers: A's rows of the run are replaced, B's kept.
    record_posture(
        &store,
        c.id,
        run,
        t(7),
        &[score(SUB_A, 6.0, 10.0, 10)],
        &[control(SUB_A, "ctl-9", 2.0, 2.0)],
    )
    .await;
    let latest = latest_posture(&store, Some(c.id)).await;
    assert_eq!(latest.len(), 2);
    assert_eq!(
        (latest[0].score.current, latest[0].captured_at),
        (6.0, t(7))
    );
    assert_eq!(
        (latest[1].score.current, latest[1].captured_at),
        (9.0, t(5))
    );
    let controls: Vec<(String, String)> = latest_controls(&store, Some(c.id), None)
        .await
        .into_iter()
        .map(|c| (c.control.subscription_id, c.control.control_id))
        .collect();
    assert_eq!(
        controls,
        vec![
            (SUB_A.to_owned(), "ctl-9".to_owned()),
            (SUB_B.to_owned(), "ctl-1".to_owned())
        ]
    );
    let history = posture_history(&store, Some(c.id), None).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].captured_at, t(7));
    // Microsoft's (10·6/10 + 1·9/10) / 11 = 6.9 / 11, rounded to 2 decimals.
    assert!(close(history[0].percent.unwrap(), 62.73));

    // Only a running run of this integration writes posture.
    store.finish_run(run, &succeeded(t(8))).await.unwrap();
    let late = store.record_posture(c.id, run, t(9), &scores, &[]).await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
}

async fn recommendations_keep_history(store: Arc<dyn Store>) {
    let c = cloud_integration(&store, "cloud").await;
    let vm0 = vm_id(SUB_A, 0);
    let vm1 = vm_id(SUB_A, 1);
    let batch = |s1: &str, s2: &str| {
        vec![
            rec(SUB_A, &vm0, "k1", s1, "High"),
            rec(SUB_A, &vm1, "k2", s2, "Low"),
            rec(
                SUB_A,
                &format!("/subscriptions/{SUB_A}"),
                "k3",
                "NotApplicable",
                "Medium",
            ),
        ]
    };

    let run1 = store.start_run(c.id, "full", t(0)).await.unwrap();
    // The asset of vm0 exists before its recommendation; vm1 has none.
    store
        .upsert_assets(c.id, run1, &[vm(SUB_A, 0)])
        .await
        .unwrap();
    let first = batch("Unhealthy", "Healthy");
    assert_eq!(
        store
            .upsert_recommendations(c.id, run1, &first)
            .await
            .unwrap(),
        counts(3, 0, 0, 0)
    );
    let snapshot = all_recs(&store, RecommendationFilter::default()).await;
    // Idempotent: the same batch again changes nothing.
    assert_eq!(
        store
            .upsert_recommendations(c.id, run1, &first)
            .await
            .unwrap(),
        counts(0, 0, 3, 0)
    );
    assert_eq!(
        all_recs(&store, RecommendationFilter::default()).await,
        snapshot
    );
    let r1 = rec_by_key(&store, "k1").await;
    let asset0 = all_assets(&store, AssetFilter::default()).await[0].id;
    assert_eq!(r1.asset_id, Some(asset0));
    assert_eq!(r1.integration, "cloud");
    assert_eq!(r1.recommendation, first[0]);
    assert_eq!((r1.first_observed, r1.last_observed), (t(0), t(0)));
    assert_eq!(
        (r1.resolved_at, r1.removed_at, r1.reopened_count),
        (None, None, 0)
    );
    assert_eq!(rec_by_key(&store, "k2").await.asset_id, None);
    store.finish_run(run1, &succeeded(t(1))).await.unwrap();

    // Run 2: k1 Unhealthy → Healthy (resolved), k2 Healthy → Unhealthy (reopened). The ids come
    // in upper case this time: still the same recommendations.
    let run2 = store.start_run(c.id, "full", t(60)).await.unwrap();
    let mut second = batch("Healthy", "Unhealthy");
    for r in &mut second {
        r.assessment_id = r.assessment_id.to_uppercase();
        r.resource_id = r.resource_id.to_uppercase();
    }
    assert_eq!(
        store
            .upsert_recommendations(c.id, run2, &second)
            .await
            .unwrap(),
        counts(0, 1, 1, 1)
    );
    let r1 = rec_by_key(&store, "k1").await;
    assert_eq!(r1.recommendation.status, "Healthy");
    assert_eq!(r1.recommendation.assessment_id, first[0].assessment_id);
    assert_eq!((r1.first_observed, r1.last_observed), (t(0), t(60)));
    assert_eq!(r1.resolved_at, Some(t(60)));
    assert_eq!(r1.asset_id, Some(asset0));
    let r2 = rec_by_key(&store, "k2").await;
    assert_eq!(
        (r2.recommendation.status.as_str(), r2.reopened_count),
        ("Unhealthy", 1)
    );
    assert_eq!(r2.resolved_at, None);
    assert_eq!(
        all_recs(&store, RecommendationFilter::default())
            .await
            .len(),
        3
    );
    store.finish_run(run2, &succeeded(t(61))).await.unwrap();

    // Run 3: k1 unhealthy again: reopened, resolved_at cleared.
    let run3 = store.start_run(c.id, "full", t(120)).await.unwrap();
    assert_eq!(
        store
            .upsert_recommendations(c.id, run3, &batch("Unhealthy", "Unhealthy"))
            .await
            .unwrap(),
        counts(0, 0, 2, 1)
    );
    let r1 = rec_by_key(&store, "k1").await;
    assert_eq!((r1.resolved_at, r1.reopened_count), (None, 1));
    assert_eq!(r1.last_observed, t(120));
}

async fn recommendation_listing_filters_and_counts(store: Arc<dyn Store>) {
    let c = cloud_integration(&store, "cloud").await;
    let other = cloud_integration(&store, "other").await;
    let run = store.start_run(c.id, "full", t(0)).await.unwrap();
    let mut recs = Vec::new();
    for i in 0..6 {
        let sub = if i < 4 { SUB_A } else { SUB_B };
        let status = if i % 2 == 0 { "Unhealthy" } else { "Healthy" };
        let severity = ["High", "Low", "Critical"][i % 3];
        recs.push(rec(
            sub,
            &vm_id(sub, i),
            &format!("key-{i}"),
            status,
            severity,
        ));
    }
    recs[5].severity = None;
    recs[4].display_name = Some("Enable 100%_encryption".into());
    recommend(&store, c.id, run, &recs).await;
    let orun = store.start_run(other.id, "full", t(0)).await.unwrap();
    recommend(
        &store,
        other.id,
        orun,
        &[rec(SUB_A, &vm_id(SUB_A, 9), "x", "Unhealthy", "High")],
    )
    .await;

    // Keyset pages in id order, every row once.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .recommendations_page(
                &rampart_store::Visibility::All,
                &RecommendationFilter::default(),
                after,
                4,
            )
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|r| r.id));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));

    let keys = |v: Vec<StoredRecommendation>| -> Vec<String> {
        v.into_iter().map(|r| r.recommendation.key).collect()
    };
    let f = |integration,
             subscription: Option<&str>,
             status: Option<&str>,
             severity: Option<&str>,
             search: Option<&str>| {
        RecommendationFilter {
            integration,
            subscription: subscription.map(str::to_owned),
            status: status.map(str::to_owned),
            severity: severity.map(str::to_owned),
            search: search.map(str::to_owned),
            asset_id: None,
            changed_since: None,
        }
    };
    assert_eq!(
        keys(all_recs(&store, f(Some(c.id), None, Some("unhealthy"), None, None)).await),
        vec!["key-0", "key-2", "key-4"]
    );
    assert_eq!(
        keys(all_recs(&store, f(None, None, Some("Unhealthy"), Some("high"), None)).await),
        vec!["key-0", "x"]
    );
    assert_eq!(
        keys(
            all_recs(
                &store,
                f(Some(c.id), Some(&SUB_B.to_uppercase()), None, None, None)
            )
            .await
        ),
        vec!["key-4", "key-5"]
    );
    // Wildcards are literal; the resource id is searched too.
    assert_eq!(
        keys(all_recs(&store, f(None, None, None, None, Some("100%_enc"))).await),
        vec!["key-4"]
    );
    assert_eq!(
        keys(
            all_recs(
                &store,
                f(Some(c.id), None, None, None, Some("VIRTUALMACHINES/VM3"))
            )
            .await
        ),
        vec!["key-3"]
    );

    let counts = store
        .counts(&rampart_store::Visibility::All, Some(c.id))
        .await
        .unwrap();
    // Unhealthy: key-0 High, key-2 Critical, key-4 Low.
    let u = counts.recommendations_unhealthy;
    assert_eq!(
        (u.critical, u.high, u.medium, u.low, u.unknown),
        (1, 1, 0, 1, 0)
    );
    assert_eq!(
        store
            .counts(&rampart_store::Visibility::All, None)
            .await
            .unwrap()
            .recommendations_unhealthy
            .high,
        2
    );
}

/// Run 1 reads subscriptions A and B in full; run 2 can read only A (B answers 403).
async fn reconcile_concludes_only_the_scoped_subscriptions(store: Arc<dyn Store>) {
    let c = cloud_integration(&store, "cloud").await;
    let run1 = store.start_run(c.id, "full", t(0)).await.unwrap();
    let mut assets: Vec<Asset> = (0..4).map(|i| vm(SUB_A, i)).collect();
    assets.extend((0..4).map(|i| vm(SUB_B, i)));
    assets.push(subscription_asset(SUB_A));
    store.upsert_assets(c.id, run1, &assets).await.unwrap();
    let mut findings: Vec<Finding> = Vec::new();
    let mut recs = Vec::new();
    for sub in [SUB_A, SUB_B] {
        for i in 0..4 {
            findings.extend((0..2).map(|j| vm_finding(sub, i, j)));
            recs.push(rec(
                sub,
                &vm_id(sub, i),
                &format!("{}-{i}", &sub[..1]),
                "Unhealthy",
                "High",
            ));
        }
    }
    store.upsert_findings(c.id, run1, &findings).await.unwrap();
    recommend(&store, c.id, run1, &recs).await;
    let scope = ReconcileScope::Subscriptions(vec![SUB_A.into(), SUB_B.into()]);
    let out = store
        .reconcile(
            c.id,
            run1,
            ReconcilePolicy {
                scope,
                ..ReconcilePolicy::new(t(1))
            },
        )
        .await
        .unwrap();
    assert_eq!(out, applied(0, 0, 0));
    store.finish_run(run1, &succeeded(t(1))).await.unwrap();

    // Run 2, subscription A: vm3 and the subscription asset are gone, vm0 lost finding 1,
    // a-0 turned Healthy, a-1 still Unhealthy, a-2 and a-3 no longer reported.
    let run2 = store.start_run(c.id, "full", t(60)).await.unwrap();
    store
        .upsert_assets(
            c.id,
            run2,
            &(0..3).map(|i| vm(SUB_A, i)).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let seen: Vec<Finding> = (0..3)
        .flat_map(|i| (0..2).map(move |j| (i, j)))
        .filter(|&(i, j)| !(i == 0 && j == 1))
        .map(|(i, j)| vm_finding(SUB_A, i, j))
        .collect();
    store.upsert_findings(c.id, run2, &seen).await.unwrap();
    recommend(
        &store,
        c.id,
        run2,
        &[
            rec(SUB_A, &vm_id(SUB_A, 0), "a-0", "Healthy", "High"),
            rec(SUB_A, &vm_id(SUB_A, 1), "a-1", "Unhealthy", "High"),
        ],
    )
    .await;
    let policy = ReconcilePolicy {
        max_missing_share: 0.5,
        scope: ReconcileScope::Subscriptions(vec![SUB_A.to_uppercase()]),
        ..ReconcilePolicy::new(t(61))
    };
    let out = store.reconcile(c.id, run2, policy).await.unwrap();
    // vm3 and /subscriptions/A missing; vm0's finding 1 and vm3's 2 findings fixed; a-2, a-3
    // removed.
    assert_eq!(out, applied(2, 3, 2));

    for a in all_assets(&store, AssetFilter::default()).await {
        let gone = a.asset.source_id == vm_id(SUB_A, 3)
            || a.asset.source_id == format!("/subscriptions/{SUB_A}");
        if gone {
            assert_eq!(
                (a.status, a.missing_since),
                (AssetStatus::Missing, Some(t(61)))
            );
        } else {
            // B's assets were not seen by run 2 and are untouched.
            assert_eq!(a.status, AssetStatus::Active, "{}", a.asset.source_id);
        }
    }
    for f in all_findings(&store, FindingFilter::default()).await {
        let k = &f.finding.key;
        let fixed = k.asset_source_id == vm_id(SUB_A, 3)
            || (k.asset_source_id == vm_id(SUB_A, 0) && k.cve_id.as_str() == cve(1));
        let want = if fixed {
            FindingStatus::Fixed
        } else {
            FindingStatus::Open
        };
        assert_eq!(f.status, want, "{k:?}");
        if fixed {
            assert_eq!(f.fixed_at, Some(t(61)));
        }
    }
    for r in all_recs(&store, RecommendationFilter::default()).await {
        let m = &r.recommendation;
        match m.key.as_str() {
            "a-0" => assert_eq!((m.status.as_str(), r.resolved_at), ("Healthy", Some(t(60)))),
            "a-1" => assert_eq!((m.status.as_str(), r.resolved_at), ("Unhealthy", None)),
            "a-2" | "a-3" => {
                assert_eq!(m.status, RECOMMENDATION_REMOVED);
                assert_eq!((r.removed_at, r.resolved_at), (Some(t(61)), Some(t(61))));
            }
            _ => {
                assert_eq!(m.subscription_id, SUB_B);
                assert_eq!((m.status.as_str(), r.removed_at), ("Unhealthy", None));
            }
        }
    }
    store.finish_run(run2, &succeeded(t(62))).await.unwrap();

    // Run 3 reports a-2 again: no longer Removed, counted as reopened.
    let run3 = store.start_run(c.id, "full", t(120)).await.unwrap();
    let got = recommend(
        &store,
        c.id,
        run3,
        &[rec(SUB_A, &vm_id(SUB_A, 2), "a-2", "Unhealthy", "High")],
    )
    .await;
    assert_eq!(got, counts(0, 0, 0, 1));
    let r = rec_by_key(&store, "a-2").await;
    assert_eq!(
        (
            r.recommendation.status.as_str(),
            r.removed_at,
            r.resolved_at
        ),
        ("Unhealthy", None, None)
    );
}

async fn breaker_counts_within_the_scope(store: Arc<dyn Store>) {
    let c = cloud_integration(&store, "cloud").await;
    let run1 = store.start_run(c.id, "full", t(0)).await.unwrap();
    let mut assets: Vec<Asset> = (0..4).map(|i| vm(SUB_A, i)).collect();
    assets.extend((0..10).map(|i| vm(SUB_B, i)));
    store.upsert_assets(c.id, run1, &assets).await.unwrap();
    store
        .upsert_findings(c.id, run1, &[vm_finding(SUB_A, 3, 0)])
        .await
        .unwrap();
    recommend(
        &store,
        c.id,
        run1,
        &[rec(SUB_A, &vm_id(SUB_A, 3), "a-3", "Unhealthy", "High")],
    )
    .await;
    store.finish_run(run1, &succeeded(t(1))).await.unwrap();

    // Run 2 sees 2 of A's 4 VMs: 50 % of the scope, though only 2 of all 14 assets.
    let run2 = store.start_run(c.id, "full", t(60)).await.unwrap();
    store
        .upsert_assets(c.id, run2, &[vm(SUB_A, 0), vm(SUB_A, 1)])
        .await
        .unwrap();
    let policy = ReconcilePolicy {
        scope: ReconcileScope::Subscriptions(vec![SUB_A.into()]),
        ..ReconcilePolicy::new(t(61))
    };
    let out = store.reconcile(c.id, run2, policy.clone()).await.unwrap();
    assert_eq!(
        out,
        ReconcileOutcome::Held {
            would_mark_missing: 2,
            active: 4
        }
    );
    // Nothing changed.
    let c_counts = store
        .counts(&rampart_store::Visibility::All, Some(c.id))
        .await
        .unwrap();
    assert_eq!((c_counts.assets_active, c_counts.assets_missing), (14, 0));
    assert_eq!(c_counts.findings_open.total(), 1);
    assert_eq!(
        rec_by_key(&store, "a-3").await.recommendation.status,
        "Unhealthy"
    );

    // Scoped to B (nothing of it seen by run 2 either): 10 of 10, held too.
    let out = store
        .reconcile(
            c.id,
            run2,
            ReconcilePolicy {
                scope: ReconcileScope::Subscriptions(vec![SUB_B.into()]),
                ..policy.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        ReconcileOutcome::Held {
            would_mark_missing: 10,
            active: 10
        }
    );
    // A confirmed mass change goes through, within the scope only.
    let out = store
        .reconcile(
            c.id,
            run2,
            ReconcilePolicy {
                max_missing_share: 1.0,
                ..policy
            },
        )
        .await
        .unwrap();
    assert_eq!(out, applied(2, 1, 1));
    assert_eq!(
        store
            .counts(&rampart_store::Visibility::All, Some(c.id))
            .await
            .unwrap()
            .assets_active,
        12
    );
}

/// How many recommendations a reconcile removed; one that was held fails the test.
fn recommendations_removed(out: ReconcileOutcome) -> u64 {
    match out {
        ReconcileOutcome::Applied {
            recommendations_removed,
            ..
        } => recommendations_removed,
        held => panic!("the reconcile was not applied: {held:?}"),
    }
}

async fn everything_scope_removes_unseen_recommendations(store: Arc<dyn Store>) {
    let c = cloud_integration(&store, "cloud").await;
    let run1 = store.start_run(c.id, "full", t(0)).await.unwrap();
    let recs = [
        rec(SUB_A, &vm_id(SUB_A, 0), "k0", "Unhealthy", "High"),
        rec(SUB_B, &vm_id(SUB_B, 1), "k1", "Healthy", "Low"),
    ];
    recommend(&store, c.id, run1, &recs).await;
    store.finish_run(run1, &succeeded(t(1))).await.unwrap();

    let run2 = store.start_run(c.id, "full", t(60)).await.unwrap();
    // AssetsOnly leaves recommendations alone.
    let out = store
        .reconcile(
            c.id,
            run2,
            ReconcilePolicy {
                scope: ReconcileScope::AssetsOnly,
                ..ReconcilePolicy::new(t(61))
            },
        )
        .await
        .unwrap();
    assert_eq!(recommendations_removed(out), 0);
    let out = store
        .reconcile(c.id, run2, ReconcilePolicy::new(t(62)))
        .await
        .unwrap();
    assert_eq!(recommendations_removed(out), 2);
    let k0 = rec_by_key(&store, "k0").await;
    assert_eq!(
        (k0.recommendation.status.as_str(), k0.resolved_at),
        (RECOMMENDATION_REMOVED, Some(t(62)))
    );
    // A Healthy one removed was never unhealthy: nothing resolved.
    let k1 = rec_by_key(&store, "k1").await;
    assert_eq!((k1.removed_at, k1.resolved_at), (Some(t(62)), None));
    // Already removed ones are not removed again.
    let out = store
        .reconcile(c.id, run2, ReconcilePolicy::new(t(63)))
        .await
        .unwrap();
    assert_eq!(recommendations_removed(out), 0);
}

async fn linked_assets_join_endpoint_and_cloud(store: Arc<dyn Store>) {
    let mde = integration(&store, "mde").await;
    let mde2 = integration(&store, "mde-eu").await;
    let cloud = cloud_integration(&store, "cloud").await;
    let vm_arm = vm_id(SUB_A, 0);

    let run = store.start_run(mde.id, "full", t(0)).await.unwrap();
    // MDE reports the VM's resource id in its own casing; a re-imaged machine carries it too.
    let device = Asset {
        azure_resource_id: Some(vm_arm.replace("virtualmachines/vm0", "virtualMachines/VM0")),
        aad_device_id: Some("11111111-2222-3333-4444-555555555555".into()),
        ..asset(0)
    };
    let reimaged = Asset {
        azure_resource_id: Some(vm_arm.clone()),
        ..asset(1)
    };
    let unrelated = asset(2);
    store
        .upsert_assets(mde.id, run, &[device, reimaged, unrelated])
        .await
        .unwrap();
    let run = store.start_run(mde2.id, "full", t(0)).await.unwrap();
    // Same Entra device id, no resource id.
    let entra_twin = Asset {
        aad_device_id: Some("11111111-2222-3333-4444-555555555555".to_uppercase()),
        ..asset(7)
    };
    store
        .upsert_assets(mde2.id, run, &[entra_twin])
        .await
        .unwrap();
    let run = store.start_run(cloud.id, "full", t(0)).await.unwrap();
    store
        .upsert_assets(cloud.id, run, &[vm(SUB_A, 0), vm(SUB_A, 1)])
        .await
        .unwrap();

    let id_of = |assets: &[rampart_store::StoredAsset], integration: i64, source: &str| {
        assets
            .iter()
            .find(|a| a.integration_id == IntegrationId(integration) && a.asset.source_id == source)
            .unwrap()
            .id
    };
    let all = all_assets(&store, AssetFilter::default()).await;
    let device_id0 = id_of(&all, mde.id.get(), &device_id(0));
    let reimaged_id = id_of(&all, mde.id.get(), &device_id(1));
    let unrelated_id = id_of(&all, mde.id.get(), &device_id(2));
    let twin_id = id_of(&all, mde2.id.get(), &device_id(7));
    let vm0_id = id_of(&all, cloud.id.get(), &vm_arm);
    let vm1_id = id_of(&all, cloud.id.get(), &vm_id(SUB_A, 1));

    let ids =
        |v: Vec<rampart_store::StoredAsset>| -> Vec<i64> { v.into_iter().map(|a| a.id).collect() };
    // The device: the cloud VM (by resource id) and the other tenant's twin (by Entra id); not
    // the re-imaged device of its own integration.
    let mut want = vec![vm0_id, twin_id];
    want.sort_unstable();
    assert_eq!(
        ids(store
            .linked_assets(&rampart_store::Visibility::All, device_id0)
            .await
            .unwrap()),
        want
    );
    // The VM: both MDE devices that carry its resource id.
    let mut want = vec![device_id0, reimaged_id];
    want.sort_unstable();
    let linked = store
        .linked_assets(&rampart_store::Visibility::All, vm0_id)
        .await
        .unwrap();
    assert_eq!(linked[0].integration, "mde");
    assert_eq!(ids(linked), want);
    assert_eq!(
        ids(store
            .linked_assets(&rampart_store::Visibility::All, twin_id)
            .await
            .unwrap()),
        vec![device_id0]
    );
    assert!(
        store
            .linked_assets(&rampart_store::Visibility::All, unrelated_id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .linked_assets(&rampart_store::Visibility::All, vm1_id)
            .await
            .unwrap()
            .is_empty()
    );
    let missing = store
        .linked_assets(&rampart_store::Visibility::All, 9_999_999)
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

async fn posture_export_rows(store: Arc<dyn Store>) {
    let c = cloud_integration(&store, "cloud").await;
    let run1 = store.start_run(c.id, "full", t(0)).await.unwrap();
    store
        .upsert_subscriptions(
            c.id,
            run1,
            &[Subscription {
                subscription_id: SUB_A.into(),
                display_name: Some("Prod".into()),
                state: Some("Enabled".into()),
            }],
        )
        .await
        .unwrap();
    record_posture(
        &store,
        c.id,
        run1,
        t(5),
        &[score(SUB_A, 5.0, 10.0, 10), score(SUB_B, 9.0, 10.0, 1)],
        &[control(SUB_A, "ctl-1", 1.0, 2.0)],
    )
    .await;
    recommend(
        &store,
        c.id,
        run1,
        &[
            rec(SUB_A, &vm_id(SUB_A, 0), "k0", "Unhealthy", "High"),
            rec(SUB_B, &vm_id(SUB_B, 0), "k1", "Healthy", "Low"),
        ],
    )
    .await;
    store.finish_run(run1, &succeeded(t(6))).await.unwrap();
    // Run 2 no longer reports k1 (removed: not exported).
    let run2 = store.start_run(c.id, "full", t(60)).await.unwrap();
    recommend(
        &store,
        c.id,
        run2,
        &[rec(SUB_A, &vm_id(SUB_A, 0), "k0", "Unhealthy", "High")],
    )
    .await;
    store
        .reconcile(c.id, run2, ReconcilePolicy::new(t(61)))
        .await
        .unwrap();
    // An Endpoint integration has no posture rows.
    integration(&store, "mde").await;

    let rows: Vec<PostureRecord> = posture_records(&*store, rampart_store::Visibility::All, None)
        .try_collect()
        .await
        .unwrap();
    let types: Vec<&str> = rows.iter().map(|r| r.record_type.as_str()).collect();
    assert_eq!(
        types,
        vec!["tenant", "score", "score", "control", "recommendation"]
    );
    let tenant = &rows[0];
    assert_eq!(
        (tenant.integration.as_str(), tenant.subscription_id.as_str()),
        ("cloud", "")
    );
    // Microsoft's two sums: Σ round(weight·current/max, 2) = 5 + 0.9 and Σ weight = 11.
    assert!(close(tenant.score_percent.unwrap(), 53.64));
    assert_eq!(
        (tenant.score_current, tenant.score_max, tenant.weight),
        (Some(5.9), Some(11.0), Some(11))
    );
    assert_eq!(tenant.captured_at, Some(t(5)));
    let a = &rows[1];
    assert_eq!(a.subscription_id, SUB_A);
    // A score row keeps the name captured with it; the other rows take the listed name.
    assert_eq!(a.subscription_name.as_deref(), Some("name of aaaa"));
    assert_eq!(
        (a.score_current, a.score_max, a.weight),
        (Some(5.0), Some(10.0), Some(10))
    );
    assert!(close(a.score_percent.unwrap(), 50.0));
    let ctl = &rows[3];
    assert_eq!(
        (ctl.control_id.as_deref(), ctl.healthy, ctl.unhealthy),
        (Some("ctl-1"), Some(3), Some(1))
    );
    assert_eq!(ctl.subscription_name.as_deref(), Some("Prod"));
    let r = &rows[4];
    assert_eq!(r.subscription_name.as_deref(), Some("Prod"));
    assert_eq!(
        (
            r.status.as_deref(),
            r.severity.as_deref(),
            r.assessment_key.as_deref()
        ),
        (Some("Unhealthy"), Some("High"), Some("k0"))
    );
    assert_eq!(
        (r.first_seen, r.last_seen, r.resolved_at),
        (Some(t(0)), Some(t(60)), None)
    );
    assert_eq!(r.resource_id.as_deref(), Some(vm_id(SUB_A, 0).as_str()));
    for row in &rows {
        assert_eq!(row.cells().len(), PostureRecord::HEADER.len());
    }

    let only: Vec<PostureRecord> = posture_records(
        &*store,
        rampart_store::Visibility::All,
        Some(IntegrationId(c.id.get() + 1)),
    )
    .try_collect()
    .await
    .unwrap();
    assert!(only.is_empty());
}

async fn delete_integration_removes_cloud_rows(store: Arc<dyn Store>) {
    let mut kept = None;
    for name in ["gone", "kept"] {
        let c = cloud_integration(&store, name).await;
        let run = store.start_run(c.id, "full", t(0)).await.unwrap();
        store
            .upsert_subscriptions(
                c.id,
                run,
                &[Subscription {
                    subscription_id: SUB_A.into(),
                    display_name: None,
                    state: None,
                }],
            )
            .await
            .unwrap();
        store
            .record_subscription_read(c.id, run, SUB_A, &SubscriptionReadOutcome::Ok)
            .await
            .unwrap();
        store
            .upsert_assets(c.id, run, &[vm(SUB_A, 0)])
            .await
            .unwrap();
        store
            .upsert_findings(c.id, run, &[vm_finding(SUB_A, 0, 0)])
            .await
            .unwrap();
        record_posture(
            &store,
            c.id,
            run,
            t(1),
            &[score(SUB_A, 1.0, 2.0, 1)],
            &[control(SUB_A, "c", 1.0, 1.0)],
        )
        .await;
        recommend(
            &store,
            c.id,
            run,
            &[rec(SUB_A, &vm_id(SUB_A, 0), "k", "Unhealthy", "High")],
        )
        .await;
        store.finish_run(run, &succeeded(t(2))).await.unwrap();
        kept = Some((c.id, run));
        if name == "gone" {
            kept = None;
            store.delete_integration(c.id).await.unwrap();
            assert!(
                store
                    .subscription_reads(&rampart_store::Visibility::All, run)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
    }
    let (kept_id, kept_run) = kept.unwrap();
    // Every listing holds the kept integration's rows only.
    macro_rules! only_kept {
        ($rows:expr) => {{
            let ids: Vec<IntegrationId> = $rows.iter().map(|r| r.integration_id).collect();
            assert!(ids == [kept_id], "{ids:?}");
        }};
    }
    only_kept!(
        store
            .list_subscriptions(&rampart_store::Visibility::All, None)
            .await
            .unwrap()
    );
    only_kept!(latest_posture(&store, None).await);
    only_kept!(posture_history(&store, None, None).await);
    only_kept!(latest_controls(&store, None, None).await);
    only_kept!(all_recs(&store, RecommendationFilter::default()).await);
    only_kept!(all_assets(&store, AssetFilter::default()).await);
    assert_eq!(
        store
            .subscription_reads(&rampart_store::Visibility::All, kept_run)
            .await
            .unwrap()
            .len(),
        1
    );
    let counts = store
        .counts(&rampart_store::Visibility::All, None)
        .await
        .unwrap();
    assert_eq!(
        (
            counts.subscriptions,
            counts.recommendations_unhealthy.total()
        ),
        (1, 1)
    );
}
