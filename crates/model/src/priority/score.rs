//! The priority: a number 0–100 that orders findings inside a decision and across decisions, with
//! the part each factor contributed.
//!
//! `priority = base[decision] + (width[decision] − 1) · s / S_MAX`, in integers with floor
//! division, where `s = Σ weightᵢ · featureᵢ`, each feature is 0–1000 and never decreases as the
//! finding gets worse, and `S_MAX = 1000 · Σ weightᵢ`. The decision picks a band (defer 0–24,
//! scheduled 25–49, out-of-cycle 50–74, immediate 75–100) and the weighted features place the
//! finding inside it. So no score can contradict the SSVC decision, and the whole is monotone:
//! a finding at least as bad on every factor has a decision at least as urgent (the tree is
//! monotone) and, in the same band, an `s` at least as large.

use serde::{Deserialize, Serialize};

use super::decision::Decision;
use super::factors::{CloudRiskLevel, DeviceExposureLevel, Factors};

/// The EPSS assumed when the CVE has none: above FIRST's observation that only about 5 % of
/// vulnerabilities are ever exploited, so an unscored CVE is not ranked as harmless.
pub const EPSS_WHEN_UNKNOWN: f64 = 0.1;
/// The CVSS assumed when there is none: the middle of the scale.
pub const CVSS_WHEN_UNKNOWN: f64 = 5.0;
/// The cloud risk feature when Defender for Cloud gave none: the middle of the scale.
const CLOUD_RISK_WHEN_UNKNOWN: u32 = 500;

/// Which factor a contribution comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorName {
    /// The decision's band: its lowest priority.
    Decision,
    Exploitation,
    Exposure,
    Automatable,
    HumanImpact,
    Epss,
    Cvss,
    KevRansomware,
    CloudRisk,
    DeviceExposure,
}

impl FactorName {
    pub const ALL: [FactorName; 10] = [
        Self::Decision,
        Self::Exploitation,
        Self::Exposure,
        Self::Automatable,
        Self::HumanImpact,
        Self::Epss,
        Self::Cvss,
        Self::KevRansomware,
        Self::CloudRisk,
        Self::DeviceExposure,
    ];

    /// The factor named `name` as serialised (`human_impact`).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }

    /// The name as serialised (`human_impact`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decision => "decision",
            Self::Exploitation => "exploitation",
            Self::Exposure => "exposure",
            Self::Automatable => "automatable",
            Self::HumanImpact => "human_impact",
            Self::Epss => "epss",
            Self::Cvss => "cvss",
            Self::KevRansomware => "kev_ransomware",
            Self::CloudRisk => "cloud_risk",
            Self::DeviceExposure => "device_exposure",
        }
    }
}

/// One line of "why this priority".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactorContribution {
    pub factor: FactorName,
    /// The factor's value as shown (`active (kev)`, `0.42`, `unknown, counted as 5.0`).
    pub value: String,
    /// The factor's weight in `s` (0 for the decision band and for factors shown but not weighted).
    pub weight: u32,
    /// The points it adds; all contributions of a priority sum to its score.
    pub points: u8,
}

/// A finding's decision, priority and explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Priority {
    pub decision: Decision,
    /// 0–100; higher is more urgent.
    pub score: u8,
    /// Sums to `score`: the decision's band first, then each factor.
    pub contributions: Vec<FactorContribution>,
}

/// The lowest priority of each decision's band, and the band's width. Immediate is one wider so
/// that the top of the scale is exactly 100.
fn band(decision: Decision) -> (u32, u32) {
    match decision {
        Decision::Defer => (0, 25),
        Decision::Scheduled => (25, 25),
        Decision::OutOfCycle => (50, 25),
        Decision::Immediate => (75, 26),
    }
}

/// One weighted feature: 0–1000, never decreasing as the finding gets worse.
struct Feature {
    factor: FactorName,
    value: String,
    weight: u32,
    amount: u32,
}

/// 0 for the lowest of `n` ordered values, 1000 for the highest, evenly in between.
fn rank(ordinal: usize, n: usize) -> u32 {
    (ordinal as u32 * 1000) / (n as u32 - 1)
}

/// The weighted features of `factors`, with the reasons for each weight:
/// - EPSS 3: the only factor that is a measured probability of exploitation in the next 30 days,
///   so the best at separating findings the tree puts in the same band.
/// - Exploitation, exposure, human impact 2 each: they already chose the band; inside it they
///   still separate, e.g. the many combinations that all give *scheduled*.
/// - CVSS 2: technical severity, which says how bad an exploit would be but not how likely it is.
/// - Automatable 1: two values only, and much of it is already in exposure.
/// - KEV ransomware use 1: a bonus on top of active exploitation, which KEV already implies.
/// - Defender for Cloud risk 1: Microsoft's own contextual judgement, opaque and only for cloud
///   resources under Defender CSPM.
/// - MDE exposure level 0: shown, not weighted: it measures how many weaknesses a device has, not
///   how reachable or valuable it is, and a device's other findings should not rank this one.
fn features(f: &Factors) -> Vec<Feature> {
    let decided = |factor, value: String, why: String, weight, amount| Feature {
        factor,
        value: format!("{value} ({why})"),
        weight,
        amount,
    };
    let epss = f.epss.unwrap_or(EPSS_WHEN_UNKNOWN);
    let cvss = f.cvss.unwrap_or(CVSS_WHEN_UNKNOWN);
    let shown = |known: bool, value: String, assumed: String| {
        if known {
            value
        } else {
            format!("unknown, counted as {assumed}")
        }
    };
    vec![
        decided(
            FactorName::Exploitation,
            f.exploitation.value.as_str().into(),
            f.exploitation.why.as_str().into(),
            2,
            rank(f.exploitation.value as usize, 3),
        ),
        decided(
            FactorName::Exposure,
            f.exposure.value.as_str().into(),
            f.exposure.why.as_str().into(),
            2,
            rank(f.exposure.value as usize, 3),
        ),
        decided(
            FactorName::Automatable,
            f.automatable.value.as_str().into(),
            f.automatable.why.as_str().into(),
            1,
            rank(f.automatable.value as usize, 2),
        ),
        decided(
            FactorName::HumanImpact,
            f.human_impact.value.as_str().into(),
            f.human_impact.why.label(),
            2,
            rank(f.human_impact.value as usize, 4),
        ),
        Feature {
            factor: FactorName::Epss,
            value: shown(
                f.epss.is_some(),
                format!("{epss}"),
                format!("{EPSS_WHEN_UNKNOWN}"),
            ),
            weight: 3,
            amount: (epss * 1000.0).round() as u32,
        },
        Feature {
            factor: FactorName::Cvss,
            value: shown(
                f.cvss.is_some(),
                format!("{cvss}"),
                format!("{CVSS_WHEN_UNKNOWN:.1}"),
            ),
            weight: 2,
            amount: (cvss * 100.0).round() as u32,
        },
        Feature {
            factor: FactorName::KevRansomware,
            value: if f.kev_ransomware {
                "known"
            } else {
                "not known"
            }
            .into(),
            weight: 1,
            amount: if f.kev_ransomware { 1000 } else { 0 },
        },
        Feature {
            factor: FactorName::CloudRisk,
            value: f.cloud_risk.map_or_else(
                || "unknown, counted as between medium and high".into(),
                |r| r.as_str().into(),
            ),
            weight: 1,
            amount: f.cloud_risk.map_or(CLOUD_RISK_WHEN_UNKNOWN, |r| {
                rank(r as usize, CloudRiskLevel::ALL.len())
            }),
        },
        Feature {
            factor: FactorName::DeviceExposure,
            value: f
                .device_exposure
                .map_or("unknown", DeviceExposureLevel::as_str)
                .to_owned()
                + ", shown, not weighted",
            weight: 0,
            amount: 0,
        },
    ]
}

impl Factors {
    /// The SSVC deployer decision for these factors.
    pub fn decision(&self) -> Decision {
        Decision::decide(
            self.exploitation.value,
            self.exposure.value,
            self.automatable.value,
            self.human_impact.value,
        )
    }

    /// The decision, the priority and its explanation.
    pub fn priority(&self) -> Priority {
        let decision = self.decision();
        let (base, width) = band(decision);
        let features = features(self);
        let s_max: u32 = 1000 * features.iter().map(|f| f.weight).sum::<u32>();
        // Each factor's exact share of the in-band points is (width − 1)·wᵢ·fᵢ / S_MAX. The score
        // floors the sum; the shares are floored one by one and the points lost to flooring go to
        // the largest remainders, so the parts add up to the score exactly.
        let shares: Vec<u32> = features
            .iter()
            .map(|f| (width - 1) * f.weight * f.amount)
            .collect();
        let in_band = shares.iter().sum::<u32>() / s_max;
        let mut points: Vec<u32> = shares.iter().map(|s| s / s_max).collect();
        let mut by_remainder: Vec<usize> = (0..shares.len()).collect();
        by_remainder.sort_by_key(|&i| std::cmp::Reverse(shares[i] % s_max));
        let missing = in_band - points.iter().sum::<u32>();
        for &i in by_remainder.iter().take(missing as usize) {
            points[i] += 1;
        }
        let mut contributions = vec![FactorContribution {
            factor: FactorName::Decision,
            value: decision.as_str().into(),
            weight: 0,
            points: base as u8,
        }];
        contributions.extend(
            features
                .into_iter()
                .zip(points)
                .map(|(f, p)| FactorContribution {
                    factor: f.factor,
                    value: f.value,
                    weight: f.weight,
                    points: p as u8,
                }),
        );
        Priority {
            decision,
            score: (base + in_band) as u8,
            contributions,
        }
    }
}
