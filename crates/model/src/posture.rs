//! Security posture from Defender for Cloud: secure scores per subscription, control scores and
//! recommendations (assessments) per resource.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An Azure subscription the integration can see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    /// Lower-case GUID.
    pub subscription_id: String,
    pub display_name: Option<String>,
    /// `Enabled`, `Warned`, `PastDue`, `Disabled`, `Deleted`.
    pub state: Option<String>,
}

impl Subscription {
    /// Only these states serve Defender data (reference §2.1).
    pub fn is_readable(&self) -> bool {
        matches!(
            self.state.as_deref(),
            None | Some("Enabled" | "Warned" | "PastDue")
        )
    }
}

/// The secure score (`ascScore`) of one subscription at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostureScore {
    pub subscription_id: String,
    pub subscription_name: Option<String>,
    pub current: f64,
    pub max: f64,
    /// Microsoft's 0–1 fraction (4 decimals). Shown to people as 0–100: [`PostureScore::percent`].
    pub fraction: f64,
    pub weight: i64,
}

impl PostureScore {
    /// The score as people read it, 0–100.
    pub fn percent(&self) -> f64 {
        self.fraction * 100.0
    }
}

/// The score of several subscriptions: Σ(weight·current) / Σ(weight·max) × 100. Never an average of
/// percentages: Microsoft weights subscriptions by their assessed resources (reference §2.2).
pub fn weighted_percent(scores: &[PostureScore]) -> Option<f64> {
    let num: f64 = scores.iter().map(|s| s.weight as f64 * s.current).sum();
    let den: f64 = scores.iter().map(|s| s.weight as f64 * s.max).sum();
    (den > 0.0).then(|| num / den * 100.0)
}

/// One security control's score in one subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlScore {
    pub subscription_id: String,
    /// The control definition's GUID, lower-case.
    pub control_id: String,
    pub display_name: Option<String>,
    pub current: f64,
    pub max: f64,
    pub fraction: f64,
    pub healthy: i64,
    pub unhealthy: i64,
    pub not_applicable: i64,
    pub weight: i64,
}

/// One recommendation evaluated on one resource. Keyed by the lower-cased assessment id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub subscription_id: String,
    /// The full assessment id, lower-cased.
    pub assessment_id: String,
    /// The assessment key (metadata name), lower-cased.
    pub key: String,
    /// The assessed resource's id, lower-cased.
    pub resource_id: String,
    pub display_name: Option<String>,
    /// `Healthy`, `Unhealthy`, `NotApplicable`.
    pub status: String,
    pub cause: Option<String>,
    /// From the metadata: `Low`, `Medium`, `High` (`Critical` in newer versions).
    pub severity: Option<String>,
    pub category: Option<String>,
    pub status_changed: Option<DateTime<Utc>>,
}
