//! Tests across the priority modules: the factor mappings from Rampart's records (`factors`), the
//! priority's bands, explanation and monotonicity (`priority`), and the SLA clock (`sla`).

mod factors;
mod priority;
mod sla;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;

use super::rules::tests::device;
use super::*;
use crate::{Asset, AssetKind, CveId, Finding, FindingKey, Severity, Vulnerability};

pub(super) fn cve(s: &str) -> CveId {
    s.parse().unwrap()
}

pub(super) fn vulnerability(id: &str) -> Vulnerability {
    Vulnerability {
        severity: Some(Severity::Critical),
        cvss: Some(9.8),
        cvss_vector: Some("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".into()),
        epss: Some(0.94),
        ..Vulnerability::new(cve(id))
    }
}

pub(super) fn finding(id: &str, exploitability: Option<&str>) -> Finding {
    Finding {
        key: FindingKey {
            asset_source_id: "0123456789abcdef0123456789abcdef01234567".into(),
            software_vendor: "apache".into(),
            software_name: "log4j".into(),
            software_version: "2.14.1".into(),
            cve_id: cve(id),
        },
        asset_name: Some("web1".into()),
        asset_os_platform: None,
        asset_os_version: None,
        severity: Some(Severity::Critical),
        cvss: Some(9.8),
        exploitability: exploitability.map(str::to_owned),
        recommended_update: None,
        recommendation_reference: None,
        first_seen: None,
        last_seen: None,
    }
}

pub(super) fn kev_entry(id: &str, ransomware: bool) -> KevEntry {
    let json = format!(
        r#"{{"cveID":"{id}","knownRansomwareCampaignUse":"{}"}}"#,
        if ransomware { "Known" } else { "Unknown" }
    );
    serde_json::from_str(&json).unwrap()
}

pub(super) fn day(n: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + TimeDelta::days(n)
}

// Any factors: every decision point value, known and unknown numbers.
prop_compose! {
    pub(super) fn arb_factors()(
        e in 0..3usize, x in 0..3usize, a in 0..2usize, h in 0..4usize,
        epss in proptest::option::of(0.0..=1.0f64),
        cvss in proptest::option::of(0.0..=10.0f64),
        kev_ransomware in any::<bool>(),
        cloud in proptest::option::of(0..4usize),
        device in proptest::option::of(0..4usize),
    ) -> Factors {
        Factors {
            exploitation: Factor { value: Exploitation::ALL[e], why: ExploitationWhy::NoData },
            exposure: Factor { value: SystemExposure::ALL[x], why: ExposureWhy::Unknown },
            automatable: Factor { value: Automatable::ALL[a], why: AutomatableWhy::Unknown },
            human_impact: Factor { value: HumanImpact::ALL[h], why: HumanImpactWhy::Default },
            epss,
            cvss,
            kev_ransomware,
            cloud_risk: cloud.map(|c| CloudRiskLevel::ALL[c]),
            device_exposure: device.map(|d| DeviceExposureLevel::ALL[d]),
        }
    }
}
