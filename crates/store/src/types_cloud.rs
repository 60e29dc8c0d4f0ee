//! The store's Defender for Cloud types: subscriptions and their reads, secure-score history,
//! control scores and recommendations as stored. Records themselves are `rampart_model::posture`
//! types; these add what only the store knows (ids, integration names, Rampart's history).

use chrono::{DateTime, Utc};
use rampart_model::RunId;
use serde::{Deserialize, Serialize};

use rampart_model::{
    ControlScore, IntegrationId, PostureScore, Recommendation, Subscription, TenantScoreParts,
};

/// The status Rampart gives a recommendation that a complete read of its subscription no longer
/// contains (Microsoft's own statuses are `Healthy`, `Unhealthy` and `NotApplicable`).
pub const RECOMMENDATION_REMOVED: &str = "Removed";

/// How one run's read of one subscription went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "lowercase")]
pub enum SubscriptionReadOutcome {
    /// Read in full.
    Ok,
    /// The read failed: what happened, in words, with Microsoft's code where there is one
    /// (e.g. `AuthorizationFailed: the app has no Reader role on this subscription`).
    Failed(String),
    /// Not read, and why (e.g. `the subscription is Disabled`).
    Skipped(String),
}

impl SubscriptionReadOutcome {
    /// `ok`, `failed` or `skipped` (the stored word).
    pub fn as_str(&self) -> &'static str {
        match self {
            SubscriptionReadOutcome::Ok => "ok",
            SubscriptionReadOutcome::Failed(_) => "failed",
            SubscriptionReadOutcome::Skipped(_) => "skipped",
        }
    }

    /// The error or the reason for skipping.
    pub fn detail(&self) -> Option<&str> {
        match self {
            SubscriptionReadOutcome::Ok => None,
            SubscriptionReadOutcome::Failed(d) | SubscriptionReadOutcome::Skipped(d) => Some(d),
        }
    }
}

/// One recorded read of a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRead {
    pub run_id: RunId,
    /// The run's start.
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub outcome: SubscriptionReadOutcome,
}

/// A subscription as stored for one integration, with the outcome of its last read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSubscription {
    pub id: i64,
    pub integration_id: IntegrationId,
    pub integration: String,
    /// As last listed (display name and state); a subscription only known from a recorded read
    /// has neither.
    pub subscription: Subscription,
    /// First and last run start that listed it (or recorded a read of it).
    pub first_observed: DateTime<Utc>,
    pub last_observed: DateTime<Utc>,
    pub last_read: Option<SubscriptionRead>,
}

/// One subscription's secure score captured by one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPostureScore {
    pub integration_id: IntegrationId,
    pub integration: String,
    pub run_id: RunId,
    pub captured_at: DateTime<Utc>,
    /// Microsoft's score: `fraction` is 0–1.
    pub score: PostureScore,
    /// The same score as people read it, 0–100 (`score.fraction × 100`).
    pub percent: f64,
}

/// The tenant score of one run of one integration over the subscriptions that run captured, as
/// Microsoft computes it ([`rampart_model::weighted_percent`]): Σ(weight·current/max) / Σ weight
/// × 100 (never an average of percentages).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PosturePoint {
    pub integration_id: IntegrationId,
    pub integration: String,
    pub run_id: RunId,
    /// The newest capture time among the run's rows.
    pub captured_at: DateTime<Utc>,
    /// How many subscriptions the run captured (a partial run captures fewer).
    pub subscriptions: u64,
    /// The two sums the percent is made of.
    pub parts: TenantScoreParts,
    /// 0–100.
    pub percent: Option<f64>,
}

/// One control's score in one subscription, captured by one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredControlScore {
    pub integration_id: IntegrationId,
    pub integration: String,
    pub run_id: RunId,
    pub captured_at: DateTime<Utc>,
    pub control: ControlScore,
}

/// A recommendation with Rampart's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRecommendation {
    pub id: i64,
    pub integration_id: IntegrationId,
    pub integration: String,
    /// The asset row of the same integration whose `source_id` is the assessed resource id, when
    /// one existed when the recommendation was last written.
    pub asset_id: Option<i64>,
    /// `status` is Microsoft's last status, or [`RECOMMENDATION_REMOVED`].
    pub recommendation: Recommendation,
    /// Run starts of the first and last run that reported it.
    pub first_observed: DateTime<Utc>,
    pub last_observed: DateTime<Utc>,
    /// When it stopped being `Unhealthy`: turned `Healthy` (the observing run's start), or was
    /// removed while unhealthy (the reconciliation time). Cleared when it turns unhealthy again.
    pub resolved_at: Option<DateTime<Utc>>,
    /// When reconciliation concluded it gone (status `Removed`); cleared when seen again.
    pub removed_at: Option<DateTime<Utc>>,
    /// Times it turned `Unhealthy` again after being `Healthy` or `Removed`.
    pub reopened_count: u64,
}

/// Filters of recommendation listings. Empty = everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecommendationFilter {
    pub integration: Option<IntegrationId>,
    /// This subscription (GUID, any case).
    pub subscription: Option<String>,
    /// Exactly this status (case-insensitive): `Healthy`, `Unhealthy`, `NotApplicable`, `Removed`.
    pub status: Option<String>,
    /// Exactly this severity (case-insensitive): `Low`, `Medium`, `High`, `Critical`.
    pub severity: Option<String>,
    /// Recommendations of this asset row.
    pub asset_id: Option<i64>,
    /// Case-insensitive substring of the display name, the resource id or the assessment key.
    /// `%` and `_` are literal.
    pub search: Option<String>,
    /// Only recommendations a run observed, or that were resolved or removed, after this time.
    pub changed_since: Option<DateTime<Utc>>,
}
