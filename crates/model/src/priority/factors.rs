//! The factors of a finding's priority, each with the reason it has its value, gathered from what
//! Rampart stores (a `Finding`, its `Vulnerability`, its `Asset`) plus the inputs Rampart is given
//! from elsewhere (CISA KEV, Defender for Cloud risk, the organisation's rules). How each decision
//! point is derived is in `mapping.rs`.

use serde::{Deserialize, Serialize};

use super::cvss::AutomatableRule;
use super::decision::{Automatable, Exploitation, HumanImpact, SystemExposure};
use super::kev::{KevEntry, RansomwareUse};
use super::mapping::{automatable, exploitation, exposure, human_impact};
use super::rules::CriticalityMatch;
use crate::{Asset, Finding, Vulnerability};

/// A decision point's value and why it has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Factor<V, W> {
    pub value: V,
    pub why: W,
}

/// The evidence behind an [`Exploitation`] value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExploitationWhy {
    /// The CVE is in CISA's Known Exploited Vulnerabilities catalogue: admission needs reliable
    /// evidence of exploitation in the wild.
    Kev,
    /// MDE `exploitInKit`, exploitability `ExploitIsInKit`, or Defender for Cloud's in-kit flag.
    ExploitInKit,
    /// MDE `exploitVerified`, exploitability `ExploitIsVerified`, or the cloud's verified flag.
    ExploitVerified,
    /// MDE `publicExploit`, exploitability `ExploitIsPublic`, or the cloud's published flag.
    PublicExploit,
    /// The source reports no known exploit, and the CVE is not in KEV.
    NoExploit,
    /// Nothing reports on exploits for this finding (no catalogue entry, a `TVM-` id, no flags):
    /// Rampart's search was not "adequate" in SSVC's sense, so it assumes a public PoC.
    NoData,
}

/// The evidence behind a [`SystemExposure`] value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExposureWhy {
    /// An operator rule (a recorded mitigation such as a firewall, or an isolated network).
    OperatorRule,
    /// MDE reports the device as internet-facing (its flag, or its `Internet facing` tag).
    InternetFacing,
    /// Defender for Cloud lists internet exposure among the resource's risk factors.
    CloudInternetExposure,
    /// An onboarded, active Windows device, where MDE would flag internet exposure, is not flagged.
    NoInternetSignal,
    /// Defender for Cloud evaluated the resource's risk and found no internet exposure.
    CloudRiskWithoutInternet,
    /// Defender for Cloud lists an attack path through the resource (SSVC: chaining is Controlled).
    AttackPath,
    /// Nothing tells how reachable the asset is: SSVC says to assume open.
    Unknown,
}

/// The evidence behind an [`Automatable`] value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AutomatableWhy {
    /// Read from the CVE's CVSS vector.
    CvssVector,
    /// No readable CVSS vector: SSVC's "safer answer to assume is yes".
    Unknown,
}

/// The evidence behind a [`HumanImpact`] value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HumanImpactWhy {
    /// MDE `deviceValue` (Low → low, Normal → medium, High → high).
    DeviceValue,
    /// The organisation's criticality rule of this name.
    CriticalityRule(String),
    /// No device value and no rule: medium, the more cautious of SSVC's two readings of its
    /// defaults.
    Default,
}

/// Defender for Cloud's contextual risk level of a recommendation on a resource (`risk.level`,
/// which needs the Defender CSPM plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CloudRiskLevel {
    Low,
    Medium,
    High,
    Critical,
}

/// MDE's per-device `exposureLevel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceExposureLevel {
    None,
    Low,
    Medium,
    High,
}

impl CloudRiskLevel {
    pub const ALL: [CloudRiskLevel; 4] = [Self::Low, Self::Medium, Self::High, Self::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// Microsoft's `Low`, `Medium`, `High`, `Critical` in any case; anything else is unknown.
    pub fn parse(s: &str) -> Option<CloudRiskLevel> {
        Self::ALL
            .into_iter()
            .find(|l| s.trim().eq_ignore_ascii_case(l.as_str()))
    }
}

impl DeviceExposureLevel {
    pub const ALL: [DeviceExposureLevel; 4] = [Self::None, Self::Low, Self::Medium, Self::High];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    /// MDE's `None`, `Low`, `Medium`, `High` in any case; anything else is unknown.
    pub fn parse(s: &str) -> Option<DeviceExposureLevel> {
        Self::ALL
            .into_iter()
            .find(|l| s.trim().eq_ignore_ascii_case(l.as_str()))
    }
}

impl ExploitationWhy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kev => "kev",
            Self::ExploitInKit => "exploit-in-kit",
            Self::ExploitVerified => "exploit-verified",
            Self::PublicExploit => "public-exploit",
            Self::NoExploit => "no-exploit",
            Self::NoData => "no-data",
        }
    }
}

impl ExposureWhy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OperatorRule => "operator-rule",
            Self::InternetFacing => "internet-facing",
            Self::CloudInternetExposure => "cloud-internet-exposure",
            Self::NoInternetSignal => "no-internet-signal",
            Self::CloudRiskWithoutInternet => "cloud-risk-without-internet",
            Self::AttackPath => "attack-path",
            Self::Unknown => "unknown",
        }
    }
}

impl AutomatableWhy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CvssVector => "cvss-vector",
            Self::Unknown => "unknown",
        }
    }
}

impl HumanImpactWhy {
    pub fn label(&self) -> String {
        match self {
            Self::DeviceValue => "device-value".into(),
            Self::CriticalityRule(rule) => format!("rule {rule}"),
            Self::Default => "default".into(),
        }
    }
}

/// The judgement calls in the mappings, each with Rampart's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FactorPolicy {
    /// An exploit in a kit counts as active exploitation (on by default). Microsoft does not say
    /// the flag means use in the wild, but kits exist to be used.
    pub in_kit_is_active: bool,
    /// A verified exploit counts as active exploitation (on by default, as issue 14 asks).
    /// Microsoft's "verified" means it confirmed the exploit works, not that attackers use it;
    /// turned off, it counts as a public PoC.
    pub verified_is_active: bool,
    pub automatable_rule: AutomatableRule,
    /// What to assume when nothing tells how reachable an asset is (SSVC: open).
    pub unknown_exposure: SystemExposure,
}

impl Default for FactorPolicy {
    fn default() -> Self {
        FactorPolicy {
            in_kit_is_active: true,
            verified_is_active: true,
            automatable_rule: AutomatableRule::default(),
            unknown_exposure: SystemExposure::Open,
        }
    }
}

/// What Rampart knows about an asset's reachability beyond the `Asset` record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExposureSignals {
    /// MDE's internet-facing flag (`DeviceInfo.IsInternetFacing`, Windows only), when read.
    pub internet_facing: Option<bool>,
    /// Defender for Cloud's `risk.riskFactors` for the resource; `None` when risk was not
    /// evaluated (no Defender CSPM plan, or not a cloud resource).
    pub cloud_risk_factors: Option<Vec<String>>,
    /// Defender for Cloud lists attack paths through the resource (`risk.attackPathsReferences`).
    pub attack_paths: bool,
    /// An operator rule's exposure for this asset. It wins over every signal: it is how a recorded
    /// mitigation (a firewall turning open into controlled) or an isolated network is expressed.
    pub operator_rule: Option<SystemExposure>,
}

/// Everything about one finding besides the finding itself.
#[derive(Debug, Clone, Default)]
pub struct FindingContext<'a> {
    /// The CVE's catalogue entry, when the source has one (MDE does; Defender for Cloud does not).
    /// Pass `None` rather than `Vulnerability::from_finding`: its all-false exploit flags would
    /// read as "no known exploit" where nothing was actually searched.
    pub vulnerability: Option<&'a Vulnerability>,
    pub asset: Option<&'a Asset>,
    /// The CVE's KEV entry, when it is in the catalogue.
    pub kev: Option<&'a KevEntry>,
    pub exposure: ExposureSignals,
    /// The organisation's criticality for the asset (see [`super::criticality_for`]).
    pub criticality: Option<CriticalityMatch>,
    /// Defender for Cloud's risk level of the recommendation on the resource.
    pub cloud_risk: Option<CloudRiskLevel>,
}

/// Everything a finding's decision and priority are computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Factors {
    pub exploitation: Factor<Exploitation, ExploitationWhy>,
    pub exposure: Factor<SystemExposure, ExposureWhy>,
    pub automatable: Factor<Automatable, AutomatableWhy>,
    pub human_impact: Factor<HumanImpact, HumanImpactWhy>,
    /// EPSS probability of exploitation activity in the next 30 days, 0–1.
    pub epss: Option<f64>,
    /// CVSS v3 base score, 0–10.
    pub cvss: Option<f64>,
    /// KEV says the CVE is known to be used in ransomware campaigns.
    pub kev_ransomware: bool,
    pub cloud_risk: Option<CloudRiskLevel>,
    /// MDE's device exposure level: shown with the factors, not weighted (see `score.rs`).
    pub device_exposure: Option<DeviceExposureLevel>,
}

/// Keeps a number only when it is finite and inside `0..=max`: an out-of-range EPSS or CVSS is a
/// broken feed, and unknown is more honest than a clamp.
fn within(value: Option<f64>, max: f64) -> Option<f64> {
    value.filter(|v| v.is_finite() && (0.0..=max).contains(v))
}

impl Factors {
    /// The factors of one finding.
    pub fn for_finding(
        finding: &Finding,
        context: &FindingContext,
        policy: &FactorPolicy,
    ) -> Factors {
        let vulnerability = context.vulnerability;
        let cvss = [finding.cvss, vulnerability.and_then(|v| v.cvss)]
            .into_iter()
            .filter_map(|c| within(c, 10.0))
            .reduce(f64::max);
        Factors {
            exploitation: exploitation(
                vulnerability,
                finding.exploitability.as_deref(),
                context.kev.is_some(),
                policy,
            ),
            exposure: exposure(context.asset, &context.exposure, policy),
            automatable: automatable(
                vulnerability.and_then(|v| v.cvss_vector.as_deref()),
                policy.automatable_rule,
            ),
            human_impact: human_impact(context.asset, context.criticality.as_ref()),
            epss: within(vulnerability.and_then(|v| v.epss), 1.0),
            cvss,
            kev_ransomware: context
                .kev
                .is_some_and(|k| k.known_ransomware_campaign_use == RansomwareUse::Known),
            cloud_risk: context.cloud_risk,
            device_exposure: context
                .asset
                .and_then(|a| a.exposure_level.as_deref())
                .and_then(DeviceExposureLevel::parse),
        }
    }

    /// The factors on one line, `exploitation=active(kev); exposure=open(unknown); …`, as CSV
    /// exports show them.
    pub fn summary_line(&self) -> String {
        self.summary()
            .into_iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The factors as `key=value` pairs (`exploitation=active(kev)`), for exports and logs.
    pub fn summary(&self) -> Vec<(&'static str, String)> {
        let number = |v: Option<f64>| v.map_or_else(|| "unknown".to_owned(), |v| format!("{v}"));
        vec![
            (
                "exploitation",
                format!(
                    "{}({})",
                    self.exploitation.value.as_str(),
                    self.exploitation.why.as_str()
                ),
            ),
            (
                "exposure",
                format!(
                    "{}({})",
                    self.exposure.value.as_str(),
                    self.exposure.why.as_str()
                ),
            ),
            (
                "automatable",
                format!(
                    "{}({})",
                    self.automatable.value.as_str(),
                    self.automatable.why.as_str()
                ),
            ),
            (
                "human_impact",
                format!(
                    "{}({})",
                    self.human_impact.value.as_str(),
                    self.human_impact.why.label()
                ),
            ),
            ("epss", number(self.epss)),
            ("cvss", number(self.cvss)),
            ("kev_ransomware", self.kev_ransomware.to_string()),
            (
                "cloud_risk",
                self.cloud_risk
                    .map_or("unknown", CloudRiskLevel::as_str)
                    .to_owned(),
            ),
            (
                "device_exposure",
                self.device_exposure
                    .map_or("unknown", DeviceExposureLevel::as_str)
                    .to_owned(),
            ),
        ]
    }
}
