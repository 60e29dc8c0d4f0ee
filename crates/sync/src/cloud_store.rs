//! The posture side of the store for a Cloud run (subscriptions, per-subscription read outcomes,
//! scores, controls, recommendations) and the reconcile scope of a run.
//!
//! WORK IN PROGRESS: the store methods are being added on the `cloud-store` branch; until it is
//! merged these calls write nothing and the scope concludes nothing.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rampart_model::{ControlScore, IntegrationId, PostureScore, Recommendation, Subscription};
use rampart_store::{ReconcileScope, Store, StoreError, UpsertCounts};

/// How the read of one subscription ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubscriptionOutcome {
    Ok,
    Failed(String),
    Skipped(String),
}

pub(crate) async fn subscriptions(
    _store: &Arc<dyn Store>,
    _id: IntegrationId,
    _run: i64,
    _subs: &[Subscription],
) -> Result<(), StoreError> {
    Ok(())
}

pub(crate) async fn subscription_read(
    _store: &Arc<dyn Store>,
    _id: IntegrationId,
    _run: i64,
    _subscription: &str,
    _outcome: SubscriptionOutcome,
) -> Result<(), StoreError> {
    Ok(())
}

pub(crate) async fn recommendations(
    _store: &Arc<dyn Store>,
    _id: IntegrationId,
    _run: i64,
    recs: &[Recommendation],
) -> Result<UpsertCounts, StoreError> {
    Ok(UpsertCounts {
        unchanged: recs.len() as u64,
        ..UpsertCounts::default()
    })
}

pub(crate) async fn posture(
    _store: &Arc<dyn Store>,
    _id: IntegrationId,
    _run: i64,
    _at: DateTime<Utc>,
    _scores: &[PostureScore],
    _controls: &[ControlScore],
) -> Result<(), StoreError> {
    Ok(())
}

pub(crate) fn scope(_subscriptions: Vec<String>) -> ReconcileScope {
    ReconcileScope::AssetsOnly
}
