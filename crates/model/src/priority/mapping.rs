//! How each SSVC decision point is derived from what Rampart stores and is given.
//!
//! Every mapping follows the same rules: it is monotone in its raw inputs (more evidence never
//! lowers a value), signals combine by maximum, and an unknown gets a fixed, cautious value that is
//! recorded as such (`exposure=open(unknown)`), so a missing feed can make a finding look worse but
//! never better.

use super::cvss::{AutomatableRule, CvssVector};
use super::decision::{Automatable, Exploitation, HumanImpact, SystemExposure};
use super::factors::{
    AutomatableWhy, ExploitationWhy, ExposureSignals, ExposureWhy, Factor, FactorPolicy,
    HumanImpactWhy,
};
use super::rules::CriticalityMatch;
use crate::{Asset, AssetKind, Vulnerability};

/// Exploitation from the CVE's catalogue flags, the finding's exploitability level (MDE's, or the
/// cloud's mapped onto the same words) and KEV membership. The strongest evidence wins; among equal
/// levels, the more authoritative source is named (KEV first).
pub fn exploitation(
    vulnerability: Option<&Vulnerability>,
    exploitability: Option<&str>,
    in_kev: bool,
    policy: &FactorPolicy,
) -> Factor<Exploitation, ExploitationWhy> {
    let level = exploitability.map(str::trim).unwrap_or_default();
    let said = |word: &str| level.eq_ignore_ascii_case(word);
    // A `TVM-` entry's flags are Microsoft's placeholder, not a search for exploits.
    let flags = vulnerability.filter(|v| v.cve_id.as_str().starts_with("CVE-"));
    let in_kit = flags.is_some_and(|v| v.exploit_in_kit) || said("ExploitIsInKit");
    let verified = flags.is_some_and(|v| v.exploit_verified) || said("ExploitIsVerified");
    let public = flags.is_some_and(|v| v.public_exploit) || said("ExploitIsPublic");
    let reported = flags.is_some() || said("NoExploit") || in_kit || verified || public;
    let judged = |active: bool| {
        if active {
            Exploitation::Active
        } else {
            Exploitation::PublicPoc
        }
    };
    let candidates = [
        (in_kev, Exploitation::Active, ExploitationWhy::Kev),
        (
            in_kit,
            judged(policy.in_kit_is_active),
            ExploitationWhy::ExploitInKit,
        ),
        (
            verified,
            judged(policy.verified_is_active),
            ExploitationWhy::ExploitVerified,
        ),
        (
            public,
            Exploitation::PublicPoc,
            ExploitationWhy::PublicExploit,
        ),
        (!reported, Exploitation::PublicPoc, ExploitationWhy::NoData),
        (true, Exploitation::None, ExploitationWhy::NoExploit),
    ];
    let mut best = Factor {
        value: Exploitation::None,
        why: ExploitationWhy::NoExploit,
    };
    // Walked from the end so that, among equally strong evidence, the first listed is named.
    for (applies, value, why) in candidates.into_iter().rev() {
        if applies && value >= best.value {
            best = Factor { value, why };
        }
    }
    best
}

/// True for MDE's system tag for internet-facing devices, however it is spelt
/// (`Internet facing`, `internet-facing`, `InternetFacing`).
fn is_internet_facing_tag(tag: &str) -> bool {
    let folded: String = tag
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    folded == "internetfacing"
}

/// MDE only flags internet-facing *Windows* devices that it actively watches, so only for those
/// does the absence of the flag say anything.
fn internet_flag_is_meaningful(asset: &Asset) -> bool {
    let is = |field: &Option<String>, word: &str| {
        field
            .as_deref()
            .is_some_and(|v| v.trim().eq_ignore_ascii_case(word))
    };
    asset.kind == AssetKind::Device
        && asset
            .os_platform
            .as_deref()
            .is_some_and(|p| p.trim().to_ascii_lowercase().starts_with("windows"))
        && is(&asset.onboarding_status, "Onboarded")
        && is(&asset.health_status, "Active")
}

/// System exposure from the asset and the reachability signals. Any positive internet signal
/// makes it open; an evaluation that found none makes it controlled; with nothing to go on it is
/// `policy.unknown_exposure` (open by default), raised to controlled by a known attack path.
pub fn exposure(
    asset: Option<&Asset>,
    signals: &ExposureSignals,
    policy: &FactorPolicy,
) -> Factor<SystemExposure, ExposureWhy> {
    let factor = |value, why| Factor { value, why };
    if let Some(value) = signals.operator_rule {
        return factor(value, ExposureWhy::OperatorRule);
    }
    let tagged = asset.is_some_and(|a| a.tags.iter().any(|t| is_internet_facing_tag(t)));
    if signals.internet_facing == Some(true) || tagged {
        return factor(SystemExposure::Open, ExposureWhy::InternetFacing);
    }
    let cloud_factors = signals.cloud_risk_factors.as_deref();
    if cloud_factors.is_some_and(|f| {
        f.iter()
            .any(|f| f.to_ascii_lowercase().contains("internet"))
    }) {
        return factor(SystemExposure::Open, ExposureWhy::CloudInternetExposure);
    }
    if asset.is_some_and(internet_flag_is_meaningful) {
        return factor(SystemExposure::Controlled, ExposureWhy::NoInternetSignal);
    }
    if cloud_factors.is_some() {
        return factor(
            SystemExposure::Controlled,
            ExposureWhy::CloudRiskWithoutInternet,
        );
    }
    if signals.attack_paths && policy.unknown_exposure < SystemExposure::Controlled {
        return factor(SystemExposure::Controlled, ExposureWhy::AttackPath);
    }
    factor(policy.unknown_exposure, ExposureWhy::Unknown)
}

/// Automatable from the CVE's CVSS vector; unknown (no vector, or one that cannot be read) is yes.
pub fn automatable(
    cvss_vector: Option<&str>,
    rule: AutomatableRule,
) -> Factor<Automatable, AutomatableWhy> {
    match cvss_vector
        .and_then(CvssVector::parse)
        .and_then(|v| v.automatable(rule))
    {
        Some(yes) => Factor {
            value: if yes {
                Automatable::Yes
            } else {
                Automatable::No
            },
            why: AutomatableWhy::CvssVector,
        },
        None => Factor {
            value: Automatable::Yes,
            why: AutomatableWhy::Unknown,
        },
    }
}

/// Human impact: the higher of MDE's `deviceValue` and the organisation's criticality rule; medium
/// when neither says. Only a rule can reach very high.
pub fn human_impact(
    asset: Option<&Asset>,
    criticality: Option<&CriticalityMatch>,
) -> Factor<HumanImpact, HumanImpactWhy> {
    let from_device = asset.and_then(|a| a.device_value.as_deref()).and_then(|v| {
        match v.trim().to_ascii_lowercase().as_str() {
            "low" => Some(HumanImpact::Low),
            "normal" => Some(HumanImpact::Medium),
            "high" => Some(HumanImpact::High),
            _ => None,
        }
    });
    match (from_device, criticality) {
        (Some(device), Some(rule)) if device > rule.criticality => Factor {
            value: device,
            why: HumanImpactWhy::DeviceValue,
        },
        (_, Some(rule)) => Factor {
            value: rule.criticality,
            why: HumanImpactWhy::CriticalityRule(rule.rule.clone()),
        },
        (Some(device), None) => Factor {
            value: device,
            why: HumanImpactWhy::DeviceValue,
        },
        (None, None) => Factor {
            value: HumanImpact::Medium,
            why: HumanImpactWhy::Default,
        },
    }
}
