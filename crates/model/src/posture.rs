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
    /// Only these states serve Defender data (<https://learn.microsoft.com/en-us/rest/api/defenderforcloud/>).
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

/// The tenant score of several subscriptions, 0–100, as Microsoft computes it: each subscription
/// contributes `round(weight × current / max, 2)` (0 when its max is 0), the sum is divided by the
/// sum of the weights (a weight of 0 counts as 1 there) and multiplied by 100:
/// Σ(weight × current / max) / Σ weight × 100.
///
/// This is the query of Microsoft Learn's Resource Graph sample "Secure score per management group"
/// (<https://learn.microsoft.com/en-us/azure/defender-for-cloud/resource-graph-samples>). It is
/// neither an average of percentages nor Σ(weight × current) / Σ(weight × max): the last differs
/// whenever subscriptions' maxima differ, and is not the number the Azure portal shows.
pub fn weighted_percent(scores: &[PostureScore]) -> Option<f64> {
    let parts = TenantScoreParts::of(scores)?;
    (parts.weight_sum > 0.0).then(|| parts.percent())
}

/// The two sums of [`weighted_percent`], kept so that pages and exports can show how the tenant
/// score was made.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TenantScoreParts {
    /// Σ round(weight × current / max, 2).
    pub score_sum: f64,
    /// Σ weight, a weight of 0 counting as 1.
    pub weight_sum: f64,
}

impl TenantScoreParts {
    /// `None` for no subscriptions.
    pub fn of(scores: &[PostureScore]) -> Option<TenantScoreParts> {
        if scores.is_empty() {
            return None;
        }
        let score_sum = scores
            .iter()
            .map(|s| {
                if s.max > 0.0 {
                    round2(s.weight as f64 * s.current / s.max)
                } else {
                    0.0
                }
            })
            .sum();
        let weight_sum = scores.iter().map(|s| s.weight.max(1) as f64).sum();
        Some(TenantScoreParts {
            score_sum,
            weight_sum,
        })
    }

    /// 0–100, rounded to 2 decimals as Microsoft's query rounds it.
    pub fn percent(&self) -> f64 {
        if self.weight_sum > 0.0 {
            round2(self.score_sum / self.weight_sum * 100.0)
        } else {
            0.0
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// One security control's score in one subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlScore {
    pub subscription_id: String,
    /// The control definition's GUID, lower-case.
    pub control_id: String,
    pub display_name: Option<String>,
    /// `None` when Microsoft sent no score for the control (`"score": null`): unknown, not 0.
    pub current: Option<f64>,
    /// The control's maximum points (from its definition when the score is missing).
    pub max: f64,
    /// 0–1; `None` when the score is unknown.
    pub fraction: Option<f64>,
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
    /// Microsoft's risk assessment of this recommendation on this resource (assessments
    /// api-version 2025-05-04, with Defender CSPM); `None` when Microsoft sent none.
    #[serde(default)]
    pub risk: Option<RecommendationRisk>,
}

/// `properties.risk` of an assessment (api-version 2025-05-04,
/// <https://github.com/Azure/azure-rest-api-specs/blob/main/specification/security/resource-manager/Microsoft.Security/stable/2025-05-04/assessments.json>):
/// the level Defender for Cloud gives the recommendation on this resource, the factors that raised
/// it (`Internet exposure`, `Sensitive data`, …) and the attack paths it lies on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RecommendationRisk {
    /// `Low`, `Medium`, `High` or `Critical` (Microsoft's spelling; unknown words kept as sent).
    pub level: Option<String>,
    pub factors: Vec<String>,
    /// Attack path references (ids of attack paths in Defender for Cloud).
    pub attack_paths: Vec<String>,
    /// Whether the level comes from the resource's context (true) or is the static default.
    pub contextual: Option<bool>,
}

impl RecommendationRisk {
    /// 0 (none or unknown) to 4 (`Critical`): for sorting and for prioritisation, which reads a
    /// recommendation's risk the way it reads a CVE's severity.
    pub fn rank(&self) -> u8 {
        match self
            .level
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("critical") => 4,
            Some("high") => 3,
            Some("medium") => 2,
            Some("low") => 1,
            _ => 0,
        }
    }

    /// Nothing to say: no level, no factor, no path.
    pub fn is_empty(&self) -> bool {
        self.level.is_none() && self.factors.is_empty() && self.attack_paths.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(current: f64, max: f64, weight: i64) -> PostureScore {
        PostureScore {
            subscription_id: "s".into(),
            subscription_name: None,
            current,
            max,
            fraction: current / max,
            weight,
        }
    }

    #[test]
    fn the_tenant_score_is_microsofts_not_a_ratio_of_weighted_sums() {
        // Different maxima: A 10 of 40 (25 %), weight 10; B 9 of 10 (90 %), weight 10.
        let scores = [score(10.0, 40.0, 10), score(9.0, 10.0, 10)];
        // Microsoft: (10·10/40 + 10·9/10) / (10 + 10) = (2.5 + 9) / 20 = 57.5 %.
        assert_eq!(weighted_percent(&scores), Some(57.5));
        // Σ(w·current) / Σ(w·max) would say 190 / 500 = 38 %.
        let ratio: f64 = (10.0 * 10.0 + 10.0 * 9.0) / (10.0 * 40.0 + 10.0 * 10.0) * 100.0;
        assert!((ratio - 38.0).abs() < 1e-9);
        let parts = TenantScoreParts::of(&scores).unwrap();
        assert_eq!((parts.score_sum, parts.weight_sum), (11.5, 20.0));
    }

    #[test]
    fn zero_maxima_and_weights_follow_microsofts_query() {
        // A subscription without points contributes 0; a weight of 0 counts as 1 below the line.
        let scores = [score(0.0, 0.0, 5), score(3.0, 4.0, 0)];
        let parts = TenantScoreParts::of(&scores).unwrap();
        assert_eq!((parts.score_sum, parts.weight_sum), (0.0, 6.0));
        assert_eq!(weighted_percent(&scores), Some(0.0));
        assert_eq!(weighted_percent(&[]), None);
        // Rounded like the query: per subscription to 2 decimals, then the percentage.
        let odd = [score(1.0, 3.0, 1)];
        assert_eq!(weighted_percent(&odd), Some(33.0));
    }

    #[test]
    fn risk_levels_rank_like_severities() {
        let r = |l: &str| RecommendationRisk {
            level: Some(l.into()),
            ..Default::default()
        };
        assert!(r("Critical").rank() > r("high").rank());
        assert_eq!(RecommendationRisk::default().rank(), 0);
        assert!(RecommendationRisk::default().is_empty());
    }
}
