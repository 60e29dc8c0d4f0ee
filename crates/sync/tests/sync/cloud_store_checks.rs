//! The posture side of the store compared with the emulator's truth: subscriptions, secure
//! scores, control scores, recommendations, and the link between a device and its VM.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use rampart_model::IntegrationId;
use rampart_sim::RunningSim;
use rampart_store::{RECOMMENDATION_REMOVED, RecommendationFilter, Store};

/// The device and the VM are one machine to the store, both ways.
pub async fn assert_linked(store: &Arc<dyn Store>, device: i64, vm: i64) {
    let from_device = store
        .linked_assets(&rampart_store::Visibility::All, device)
        .await
        .expect("linked");
    assert!(
        from_device.iter().any(|a| a.id == vm),
        "device {device} is not linked to VM {vm}: {from_device:?}"
    );
    let from_vm = store
        .linked_assets(&rampart_store::Visibility::All, vm)
        .await
        .expect("linked");
    assert!(
        from_vm.iter().any(|a| a.id == device),
        "VM {vm} is not linked to device {device}"
    );
}

/// Subscription id → (name, state).
pub type Subs = BTreeMap<String, (Option<String>, Option<String>)>;

pub fn truth_subscriptions(sim: &RunningSim) -> Subs {
    sim.sim
        .truth()
        .cloud_subscriptions()
        .into_iter()
        .map(|s| (s.subscription_id, (Some(s.display_name), Some(s.state))))
        .collect()
}

pub async fn stored_subscriptions(store: &Arc<dyn Store>, id: IntegrationId) -> Subs {
    store
        .list_subscriptions(&rampart_store::Visibility::All, Some(id))
        .await
        .expect("subscriptions")
        .into_iter()
        .map(|s| {
            (
                s.subscription.subscription_id,
                (s.subscription.display_name, s.subscription.state),
            )
        })
        .collect()
}

/// Subscription → (current, max, fraction, weight, percent 0–100).
pub type Scores = BTreeMap<String, (String, String, String, i64, String)>;

fn n(x: f64) -> String {
    format!("{x:.4}")
}

pub fn truth_scores(sim: &RunningSim, only: Option<&[String]>) -> Scores {
    sim.sim
        .truth()
        .secure_scores()
        .into_iter()
        .filter(|s| only.is_none_or(|o| o.contains(&s.subscription_id)))
        .map(|s| {
            (
                s.subscription_id,
                (
                    n(s.current),
                    n(f64::from(s.max)),
                    n(s.percentage),
                    s.weight as i64,
                    n(s.percentage * 100.0),
                ),
            )
        })
        .collect()
}

pub async fn stored_scores(store: &Arc<dyn Store>, id: IntegrationId) -> Scores {
    store
        .latest_posture(&rampart_store::Visibility::All, Some(id))
        .await
        .expect("posture")
        .into_iter()
        .map(|p| {
            let s = &p.score;
            (
                s.subscription_id.clone(),
                (
                    n(s.current),
                    n(s.max),
                    n(s.fraction),
                    s.weight,
                    n(p.percent),
                ),
            )
        })
        .collect()
}

/// (subscription, control) → (name, current, max, fraction, healthy, unhealthy, n/a, weight).
pub type Controls =
    BTreeMap<(String, String), (Option<String>, String, String, String, i64, i64, i64, i64)>;

pub fn truth_controls(sim: &RunningSim, only: Option<&[String]>) -> Controls {
    sim.sim
        .truth()
        .score_controls()
        .into_iter()
        .filter(|c| only.is_none_or(|o| o.contains(&c.subscription_id)))
        .map(|c| {
            (
                (c.subscription_id, c.control_id.to_ascii_lowercase()),
                (
                    Some(c.display_name),
                    n(c.current),
                    n(f64::from(c.max)),
                    n(c.percentage),
                    i64::from(c.healthy),
                    i64::from(c.unhealthy),
                    i64::from(c.not_applicable),
                    c.weight as i64,
                ),
            )
        })
        .collect()
}

pub async fn stored_controls(store: &Arc<dyn Store>, id: IntegrationId) -> Controls {
    store
        .latest_controls(&rampart_store::Visibility::All, Some(id), None)
        .await
        .expect("controls")
        .into_iter()
        .map(|s| {
            let c = s.control;
            (
                (c.subscription_id, c.control_id),
                (
                    c.display_name,
                    c.current.map_or("unknown".into(), n),
                    n(c.max),
                    c.fraction.map_or("unknown".into(), n),
                    c.healthy,
                    c.unhealthy,
                    c.not_applicable,
                    c.weight,
                ),
            )
        })
        .collect()
}

/// Assessment id → (subscription, key, resource, name, status, cause, severity, category).
pub type Recs = BTreeMap<
    String,
    (
        String,
        String,
        String,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
    ),
>;

pub fn truth_recommendations(sim: &RunningSim, only: Option<&[String]>) -> Recs {
    sim.sim
        .truth()
        .cloud_assessments()
        .into_iter()
        .filter(|a| only.is_none_or(|o| o.contains(&a.subscription_id)))
        .map(|a| {
            (
                a.id.to_ascii_lowercase(),
                (
                    a.subscription_id,
                    a.key.to_ascii_lowercase(),
                    a.resource_id.to_ascii_lowercase(),
                    Some(a.display_name),
                    a.status,
                    a.cause,
                    Some(a.severity),
                    Some(a.category),
                ),
            )
        })
        .collect()
}

/// Recommendations Rampart holds; `removed` picks the concluded-gone ones instead of the others.
pub async fn stored_recommendations(
    store: &Arc<dyn Store>,
    id: IntegrationId,
    removed: bool,
) -> Recs {
    let all: Vec<_> = store
        .stream_recommendations(
            rampart_store::Visibility::All,
            RecommendationFilter {
                integration: Some(id),
                ..RecommendationFilter::default()
            },
        )
        .try_collect()
        .await
        .expect("recommendations");
    let n = all.len();
    let map: BTreeMap<_, _> = all
        .iter()
        .map(|s| {
            let r = &s.recommendation;
            (
                r.assessment_id.clone(),
                (
                    r.subscription_id.clone(),
                    r.key.clone(),
                    r.resource_id.clone(),
                    r.display_name.clone(),
                    r.status.clone(),
                    r.cause.clone(),
                    r.severity.clone(),
                    r.category.clone(),
                ),
            )
        })
        .collect();
    assert_eq!(map.len(), n, "duplicate recommendations");
    map.into_iter()
        .filter(|(_, v)| (v.4 == RECOMMENDATION_REMOVED) == removed)
        .collect()
}

/// Subscriptions, scores (0–100 and the weighted tenant score), controls and recommendations
/// are exactly the emulator's (of `only`'s subscriptions, or all).
pub async fn assert_posture_is_the_truth(
    store: &Arc<dyn Store>,
    id: IntegrationId,
    sim: &RunningSim,
    only: Option<&[String]>,
) {
    if only.is_none() {
        assert_eq!(
            stored_subscriptions(store, id).await,
            truth_subscriptions(sim),
            "subscriptions differ"
        );
        let history = store
            .posture_history(&rampart_store::Visibility::All, Some(id), None)
            .await
            .expect("history");
        let last = history.last().expect("a posture point");
        let want = sim
            .sim
            .truth()
            .tenant_score_percent()
            .expect("tenant score");
        let got = last.percent.expect("tenant score");
        assert!(
            (got - want).abs() < 1e-9,
            "tenant score {got} is not the weighted {want}"
        );
        assert!(got > 0.0 && got <= 100.0);
    }
    let stored = stored_scores(store, id).await;
    let want = truth_scores(sim, only);
    for (k, v) in &want {
        assert_eq!(stored.get(k), Some(v), "secure score of {k}");
    }
    if only.is_none() {
        assert_eq!(stored, want, "secure scores differ");
    }
    let stored = stored_controls(store, id).await;
    let want = truth_controls(sim, only);
    for (k, v) in &want {
        assert_eq!(stored.get(k), Some(v), "control score {k:?}");
    }
    let stored = stored_recommendations(store, id, false).await;
    let want = truth_recommendations(sim, only);
    let missing: Vec<_> = want
        .keys()
        .filter(|k| !stored.contains_key(*k))
        .take(3)
        .collect();
    assert!(
        missing.is_empty(),
        "recommendations missing: {} in truth, {} stored, e.g. {missing:?}",
        want.len(),
        stored.len()
    );
    for (k, v) in &want {
        assert_eq!(stored.get(k), Some(v), "recommendation {k}");
    }
    if only.is_none() {
        assert_eq!(stored.len(), want.len(), "extra recommendations");
    }
}
