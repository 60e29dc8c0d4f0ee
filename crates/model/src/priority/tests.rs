//! Tests across the priority modules: the factor mappings from Rampart's records, the priority's
//! bands, explanation and monotonicity, and the SLA clock.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;

use super::rules::tests::device;
use super::*;
use crate::{Asset, AssetKind, CveId, Finding, FindingKey, Severity, Vulnerability};

fn cve(s: &str) -> CveId {
    s.parse().unwrap()
}

fn vulnerability(id: &str) -> Vulnerability {
    Vulnerability {
        cve_id: cve(id),
        severity: Some(Severity::Critical),
        cvss: Some(9.8),
        cvss_vector: Some("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".into()),
        epss: Some(0.94),
        public_exploit: false,
        exploit_verified: false,
        exploit_in_kit: false,
        exploit_types: Vec::new(),
        published_on: None,
        updated_on: None,
        description: None,
    }
}

fn finding(id: &str, exploitability: Option<&str>) -> Finding {
    Finding {
        key: FindingKey {
            asset_source_id: "0123456789abcdef0123456789abcdef01234567".into(),
            software_vendor: "apache".into(),
            software_name: "log4j".into(),
            software_version: "2.14.1".into(),
            cve_id: cve(id),
        },
        asset_name: Some("web1".into()),
        severity: Some(Severity::Critical),
        cvss: Some(9.8),
        exploitability: exploitability.map(str::to_owned),
        recommended_update: None,
        recommendation_reference: None,
        first_seen: None,
        last_seen: None,
    }
}

fn kev_entry(id: &str, ransomware: bool) -> KevEntry {
    let json = format!(
        r#"{{"cveID":"{id}","knownRansomwareCampaignUse":"{}"}}"#,
        if ransomware { "Known" } else { "Unknown" }
    );
    serde_json::from_str(&json).unwrap()
}

fn day(n: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + TimeDelta::days(n)
}

// ---------------------------------------------------------------- factors from Rampart's records

mod exploitation_evidence {
    use super::*;

    fn level(
        v: Option<&Vulnerability>,
        exploitability: Option<&str>,
        in_kev: bool,
        policy: &FactorPolicy,
    ) -> (Exploitation, ExploitationWhy) {
        let f = exploitation(v, exploitability, in_kev, policy);
        (f.value, f.why)
    }

    #[test]
    fn each_source_gives_its_level() {
        let p = FactorPolicy::default();
        let mut v = vulnerability("CVE-2021-44228");
        assert_eq!(
            level(Some(&v), None, false, &p),
            (Exploitation::None, ExploitationWhy::NoExploit)
        );
        assert_eq!(
            level(Some(&v), None, true, &p),
            (Exploitation::Active, ExploitationWhy::Kev)
        );
        v.public_exploit = true;
        assert_eq!(
            level(Some(&v), None, false, &p),
            (Exploitation::PublicPoc, ExploitationWhy::PublicExploit)
        );
        v.exploit_verified = true;
        assert_eq!(
            level(Some(&v), None, false, &p),
            (Exploitation::Active, ExploitationWhy::ExploitVerified)
        );
        v.exploit_in_kit = true;
        assert_eq!(
            level(Some(&v), None, false, &p),
            (Exploitation::Active, ExploitationWhy::ExploitInKit)
        );
        // KEV is named first among equally strong evidence: it is the most authoritative.
        assert_eq!(
            level(Some(&v), None, true, &p),
            (Exploitation::Active, ExploitationWhy::Kev)
        );
    }

    #[test]
    fn exploitability_levels_of_mde_and_the_cloud_count() {
        let p = FactorPolicy::default();
        for (word, expected) in [
            (
                "ExploitIsInKit",
                (Exploitation::Active, ExploitationWhy::ExploitInKit),
            ),
            (
                "exploitisverified",
                (Exploitation::Active, ExploitationWhy::ExploitVerified),
            ),
            (
                "ExploitIsPublic",
                (Exploitation::PublicPoc, ExploitationWhy::PublicExploit),
            ),
            (
                "NoExploit",
                (Exploitation::None, ExploitationWhy::NoExploit),
            ),
            (
                "Unheard-of",
                (Exploitation::PublicPoc, ExploitationWhy::NoData),
            ),
        ] {
            assert_eq!(level(None, Some(word), false, &p), expected, "{word}");
        }
    }

    #[test]
    fn the_judgement_calls_can_be_turned_off() {
        let p = FactorPolicy {
            in_kit_is_active: false,
            verified_is_active: false,
            ..FactorPolicy::default()
        };
        assert_eq!(
            level(None, Some("ExploitIsInKit"), false, &p),
            (Exploitation::PublicPoc, ExploitationWhy::ExploitInKit)
        );
        assert_eq!(
            level(None, Some("ExploitIsVerified"), false, &p),
            (Exploitation::PublicPoc, ExploitationWhy::ExploitVerified)
        );
    }

    #[test]
    fn no_exploit_data_is_assumed_public_poc() {
        let p = FactorPolicy::default();
        assert_eq!(
            level(None, None, false, &p),
            (Exploitation::PublicPoc, ExploitationWhy::NoData)
        );
        // A TVM- entry's all-false flags are not a search for exploits.
        let tvm = vulnerability("TVM-2024-0001");
        assert_eq!(
            level(Some(&tvm), None, false, &p),
            (Exploitation::PublicPoc, ExploitationWhy::NoData)
        );
    }
}

mod exposure_evidence {
    use super::*;

    fn of(asset: Option<&Asset>, signals: ExposureSignals) -> (SystemExposure, ExposureWhy) {
        let f = exposure(asset, &signals, &FactorPolicy::default());
        (f.value, f.why)
    }

    #[test]
    fn an_active_onboarded_windows_device_without_the_flag_is_controlled() {
        let d = device("web1", &[]);
        assert_eq!(
            of(Some(&d), ExposureSignals::default()),
            (SystemExposure::Controlled, ExposureWhy::NoInternetSignal)
        );
    }

    #[test]
    fn internet_facing_by_flag_or_tag_is_open() {
        let d = device("web1", &[]);
        let flagged = ExposureSignals {
            internet_facing: Some(true),
            ..Default::default()
        };
        assert_eq!(
            of(Some(&d), flagged),
            (SystemExposure::Open, ExposureWhy::InternetFacing)
        );
        let tagged = device("web1", &["Internet facing"]);
        assert_eq!(
            of(Some(&tagged), ExposureSignals::default()),
            (SystemExposure::Open, ExposureWhy::InternetFacing)
        );
    }

    #[test]
    fn where_the_flag_says_nothing_exposure_is_unknown_and_open() {
        let mut linux = device("web1", &[]);
        linux.os_platform = Some("Linux".into());
        let mut inactive = device("web1", &[]);
        inactive.health_status = Some("Inactive".into());
        let mut discovered = device("web1", &[]);
        discovered.onboarding_status = Some("CanBeOnboarded".into());
        for asset in [Some(&linux), Some(&inactive), Some(&discovered), None] {
            assert_eq!(
                of(asset, ExposureSignals::default()),
                (SystemExposure::Open, ExposureWhy::Unknown)
            );
        }
    }

    #[test]
    fn defender_for_cloud_risk_factors_decide_for_cloud_resources() {
        let mut vm = device("vm1", &[]);
        vm.kind = AssetKind::VirtualMachine;
        let internet = ExposureSignals {
            cloud_risk_factors: Some(vec!["Sensitive data".into(), "Internet exposure".into()]),
            ..Default::default()
        };
        assert_eq!(
            of(Some(&vm), internet),
            (SystemExposure::Open, ExposureWhy::CloudInternetExposure)
        );
        let evaluated = ExposureSignals {
            cloud_risk_factors: Some(vec!["Sensitive data".into()]),
            ..Default::default()
        };
        assert_eq!(
            of(Some(&vm), evaluated),
            (
                SystemExposure::Controlled,
                ExposureWhy::CloudRiskWithoutInternet
            )
        );
    }

    #[test]
    fn an_operator_rule_wins_and_an_attack_path_is_at_least_controlled() {
        let d = device("web1", &["internet-facing"]);
        let firewalled = ExposureSignals {
            operator_rule: Some(SystemExposure::Controlled),
            ..Default::default()
        };
        assert_eq!(
            of(Some(&d), firewalled),
            (SystemExposure::Controlled, ExposureWhy::OperatorRule)
        );

        let cautious_off = FactorPolicy {
            unknown_exposure: SystemExposure::Small,
            ..FactorPolicy::default()
        };
        let path = ExposureSignals {
            attack_paths: true,
            ..Default::default()
        };
        let f = exposure(None, &path, &cautious_off);
        assert_eq!(
            (f.value, f.why),
            (SystemExposure::Controlled, ExposureWhy::AttackPath)
        );
        let f = exposure(None, &ExposureSignals::default(), &cautious_off);
        assert_eq!(
            (f.value, f.why),
            (SystemExposure::Small, ExposureWhy::Unknown)
        );
    }
}

#[test]
fn human_impact_is_the_higher_of_device_value_and_rule() {
    let mut d = device("db1", &[]);
    let rule = |level| CriticalityMatch {
        rule: "pci".into(),
        criticality: level,
    };
    let of = |asset: Option<&Asset>, rule: Option<&CriticalityMatch>| {
        let f = human_impact(asset, rule);
        (f.value, f.why)
    };
    assert_eq!(
        of(None, None),
        (HumanImpact::Medium, HumanImpactWhy::Default)
    );
    assert_eq!(
        of(Some(&d), None),
        (HumanImpact::Medium, HumanImpactWhy::Default)
    );
    for (value, level) in [
        ("Low", HumanImpact::Low),
        ("Normal", HumanImpact::Medium),
        ("HIGH", HumanImpact::High),
    ] {
        d.device_value = Some(value.into());
        assert_eq!(of(Some(&d), None), (level, HumanImpactWhy::DeviceValue));
    }
    assert_eq!(
        of(Some(&d), Some(&rule(HumanImpact::Medium))),
        (HumanImpact::High, HumanImpactWhy::DeviceValue)
    );
    assert_eq!(
        of(Some(&d), Some(&rule(HumanImpact::VeryHigh))),
        (
            HumanImpact::VeryHigh,
            HumanImpactWhy::CriticalityRule("pci".into())
        )
    );
}

#[test]
fn automatable_unknown_is_yes() {
    let rule = AutomatableRule::default();
    let f = automatable(None, rule);
    assert_eq!(
        (f.value, f.why),
        (Automatable::Yes, AutomatableWhy::Unknown)
    );
    let f = automatable(Some("garbage"), rule);
    assert_eq!(
        (f.value, f.why),
        (Automatable::Yes, AutomatableWhy::Unknown)
    );
    let f = automatable(Some("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"), rule);
    assert_eq!(
        (f.value, f.why),
        (Automatable::No, AutomatableWhy::CvssVector)
    );
}

#[test]
fn factors_of_a_finding_from_what_rampart_stores() {
    let f = finding("CVE-2021-44228", Some("ExploitIsPublic"));
    let mut v = vulnerability("CVE-2021-44228");
    v.cvss = Some(10.0);
    let mut d = device("web1", &["Internet facing", "pci"]);
    d.device_value = Some("High".into());
    d.exposure_level = Some("High".into());
    let kev = kev_entry("CVE-2021-44228", true);
    let rules = [CriticalityRule {
        name: "pci".into(),
        matcher: AssetMatcher::Tag("PCI".into()),
        criticality: HumanImpact::VeryHigh,
    }];
    let context = FindingContext {
        vulnerability: Some(&v),
        asset: Some(&d),
        kev: Some(&kev),
        exposure: ExposureSignals::default(),
        criticality: criticality_for(&d, &rules),
        cloud_risk: None,
    };
    let factors = Factors::for_finding(&f, &context, &FactorPolicy::default());
    assert_eq!(
        factors.summary_line(),
        "exploitation=active(kev); exposure=open(internet-facing); automatable=yes(cvss-vector); \
         human_impact=very-high(rule pci); epss=0.94; cvss=10; kev_ransomware=true; \
         cloud_risk=unknown; device_exposure=high"
    );
    assert_eq!(factors.decision(), Decision::Immediate);

    // Nothing known at all: the cautious defaults, never a better-looking finding.
    let bare = Factors::for_finding(
        &finding("CVE-2024-0001", None),
        &FindingContext::default(),
        &FactorPolicy::default(),
    );
    assert_eq!(
        bare.summary_line(),
        "exploitation=public-poc(no-data); exposure=open(unknown); automatable=yes(unknown); \
         human_impact=medium(default); epss=unknown; cvss=9.8; kev_ransomware=false; \
         cloud_risk=unknown; device_exposure=unknown"
    );
    assert_eq!(bare.decision(), Decision::Scheduled);
}

#[test]
fn out_of_range_numbers_are_unknown_not_clamped() {
    let mut f = finding("CVE-2021-44228", None);
    f.cvss = Some(f64::NAN);
    let mut v = vulnerability("CVE-2021-44228");
    v.epss = Some(1.5);
    v.cvss = Some(11.0);
    let context = FindingContext {
        vulnerability: Some(&v),
        ..Default::default()
    };
    let factors = Factors::for_finding(&f, &context, &FactorPolicy::default());
    assert_eq!((factors.epss, factors.cvss), (None, None));
}

#[test]
fn factors_round_trip_through_json() {
    let v = vulnerability("CVE-2021-44228");
    let d = device("web1", &[]);
    let rules = [CriticalityRule {
        name: "all".into(),
        matcher: AssetMatcher::NameGlob("*".into()),
        criticality: HumanImpact::High,
    }];
    let context = FindingContext {
        vulnerability: Some(&v),
        asset: Some(&d),
        criticality: criticality_for(&d, &rules),
        cloud_risk: CloudRiskLevel::parse("Critical"),
        ..Default::default()
    };
    let factors = Factors::for_finding(
        &finding("CVE-2021-44228", None),
        &context,
        &FactorPolicy::default(),
    );
    let json = serde_json::to_string(&factors).unwrap();
    assert!(
        json.contains(r#""exploitation":{"value":"none","why":"no-exploit"}"#),
        "{json}"
    );
    assert!(
        json.contains(r#""why":{"criticality-rule":"all"}"#),
        "{json}"
    );
    assert_eq!(serde_json::from_str::<Factors>(&json).unwrap(), factors);
}

// ---------------------------------------------------------------- the priority

prop_compose! {
    fn arb_factors()(
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

/// How bad a finding is on each factor, as the documentation defines it: unknown EPSS and CVSS
/// count as their documented defaults, unknown cloud risk as between medium and high.
fn badness(f: &Factors) -> [f64; 8] {
    [
        f.exploitation.value as usize as f64,
        f.exposure.value as usize as f64,
        f.automatable.value as usize as f64,
        f.human_impact.value as usize as f64,
        f.epss.unwrap_or(EPSS_WHEN_UNKNOWN),
        f.cvss.unwrap_or(CVSS_WHEN_UNKNOWN),
        f64::from(u8::from(f.kev_ransomware)),
        f.cloud_risk.map_or(1.5, |c| c as usize as f64),
    ]
}

fn at_least_as_bad(y: &Factors, x: &Factors) -> bool {
    badness(y).iter().zip(badness(x)).all(|(a, b)| *a >= b)
}

/// `x` made worse on the factors `raise` picks, each to the worse of its value and `other`'s.
fn raised(x: &Factors, other: &Factors, raise: [bool; 9]) -> Factors {
    let mut y = x.clone();
    let (bx, bo) = (badness(x), badness(other));
    let worse = |i: usize| raise[i] && bo[i] > bx[i];
    if worse(0) {
        y.exploitation = other.exploitation;
    }
    if worse(1) {
        y.exposure = other.exposure;
    }
    if worse(2) {
        y.automatable = other.automatable;
    }
    if worse(3) {
        y.human_impact = other.human_impact.clone();
    }
    if worse(4) {
        y.epss = other.epss;
    }
    if worse(5) {
        y.cvss = other.cvss;
    }
    if worse(6) {
        y.kev_ransomware = true;
    }
    if worse(7) {
        y.cloud_risk = other.cloud_risk;
    }
    // Shown, not weighted: any value, worse or better, must not change the order.
    if raise[8] {
        y.device_exposure = other.device_exposure;
    }
    y
}

proptest! {
    #[test]
    fn worse_on_some_factors_never_ranks_lower(
        x in arb_factors(), other in arb_factors(), raise in any::<[bool; 9]>(),
    ) {
        let y = raised(&x, &other, raise);
        prop_assert!(at_least_as_bad(&y, &x));
        let (px, py) = (x.priority(), y.priority());
        prop_assert!(py.decision >= px.decision, "{:?} → {:?}", px, py);
        prop_assert!(py.score >= px.score, "{:?} → {:?}", px, py);
    }

    #[test]
    fn any_pair_where_one_dominates_is_ordered(x in arb_factors(), y in arb_factors()) {
        if at_least_as_bad(&y, &x) {
            prop_assert!(y.priority().score >= x.priority().score);
        }
        if at_least_as_bad(&x, &y) {
            prop_assert!(x.priority().score >= y.priority().score);
        }
    }

    #[test]
    fn the_explanation_sums_to_the_score_inside_the_decisions_band(f in arb_factors()) {
        let p = f.priority();
        prop_assert_eq!(p.decision, f.decision());
        let sum: u32 = p.contributions.iter().map(|c| u32::from(c.points)).sum();
        prop_assert_eq!(sum, u32::from(p.score));
        let (low, high) = match p.decision {
            Decision::Defer => (0, 24),
            Decision::Scheduled => (25, 49),
            Decision::OutOfCycle => (50, 74),
            Decision::Immediate => (75, 100),
        };
        prop_assert!((low..=high).contains(&p.score), "{:?}", p);
        prop_assert_eq!(p.contributions[0].factor, FactorName::Decision);
        prop_assert_eq!(p.contributions[0].points, low);
        let device = p.contributions.iter().find(|c| c.factor == FactorName::DeviceExposure);
        prop_assert_eq!(device.map(|c| c.points), Some(0));
    }
}

fn extreme(worst: bool) -> Factors {
    let pick = |n: usize| if worst { n - 1 } else { 0 };
    Factors {
        exploitation: Factor {
            value: Exploitation::ALL[pick(3)],
            why: ExploitationWhy::Kev,
        },
        exposure: Factor {
            value: SystemExposure::ALL[pick(3)],
            why: ExposureWhy::OperatorRule,
        },
        automatable: Factor {
            value: Automatable::ALL[pick(2)],
            why: AutomatableWhy::CvssVector,
        },
        human_impact: Factor {
            value: HumanImpact::ALL[pick(4)],
            why: HumanImpactWhy::DeviceValue,
        },
        epss: Some(if worst { 1.0 } else { 0.0 }),
        cvss: Some(if worst { 10.0 } else { 0.0 }),
        kev_ransomware: worst,
        cloud_risk: Some(CloudRiskLevel::ALL[pick(4)]),
        device_exposure: None,
    }
}

#[test]
fn the_scale_runs_from_0_to_100() {
    assert_eq!(
        (
            extreme(false).priority().decision,
            extreme(false).priority().score
        ),
        (Decision::Defer, 0)
    );
    assert_eq!(
        (
            extreme(true).priority().decision,
            extreme(true).priority().score
        ),
        (Decision::Immediate, 100)
    );
}

/// The worked example of docs/prioritisation.md, number for number.
#[test]
fn the_documented_worked_example() {
    let f = Factors {
        exploitation: Factor {
            value: Exploitation::PublicPoc,
            why: ExploitationWhy::PublicExploit,
        },
        exposure: Factor {
            value: SystemExposure::Open,
            why: ExposureWhy::InternetFacing,
        },
        automatable: Factor {
            value: Automatable::Yes,
            why: AutomatableWhy::CvssVector,
        },
        human_impact: Factor {
            value: HumanImpact::High,
            why: HumanImpactWhy::DeviceValue,
        },
        epss: Some(0.42),
        cvss: Some(8.8),
        kev_ransomware: false,
        cloud_risk: None,
        device_exposure: Some(DeviceExposureLevel::Medium),
    };
    let p = f.priority();
    let lines: Vec<String> = p
        .contributions
        .iter()
        .map(|c| format!("{:?} {} w{} +{}", c.factor, c.value, c.weight, c.points))
        .collect();
    assert_eq!(
        lines,
        [
            "Decision out-of-cycle w0 +50",
            "Exploitation public-poc (public-exploit) w2 +2",
            "Exposure open (internet-facing) w2 +3",
            "Automatable yes (cvss-vector) w1 +2",
            "HumanImpact high (device-value) w2 +2",
            "Epss 0.42 w3 +2",
            "Cvss 8.8 w2 +3",
            "KevRansomware not known w1 +0",
            "CloudRisk unknown, counted as between medium and high w1 +1",
            "DeviceExposure medium, shown, not weighted w0 +0",
        ]
    );
    assert_eq!((p.decision, p.score), (Decision::OutOfCycle, 65));

    let at = |d, h, m| Utc.with_ymd_and_hms(2026, 3, d, h, m, 0).unwrap();
    let policy = SlaPolicy::default();
    let first = Assessment::new(&f, &policy, at(2, 0, 0));
    assert_eq!(first.due_at, at(9, 0, 0));

    // CISA adds the CVE to KEV on 4 March.
    let mut kev = f.clone();
    kev.exploitation = Factor {
        value: Exploitation::Active,
        why: ExploitationWhy::Kev,
    };
    let now = first.reassess(&kev, &policy, at(4, 0, 0));
    assert_eq!(
        (now.priority.decision, now.priority.score),
        (Decision::Immediate, 92)
    );
    assert_eq!(now.due_at, at(6, 0, 0));
    let status = |d, h, m| sla_status(at(d, h, m), now.due_at, at(2, 0, 0), None, false);
    assert_eq!(status(5, 4, 47), SlaStatus::OnTrack);
    assert_eq!(status(5, 4, 48), SlaStatus::DueSoon);
    assert_eq!(status(6, 0, 0), SlaStatus::Overdue);
}

// ---------------------------------------------------------------- SLA clocks

#[test]
fn sla_defaults_and_validation() {
    let p = SlaPolicy::default();
    let days: Vec<u32> = Decision::ALL.iter().map(|d| p.days(*d)).collect();
    assert_eq!(days, [90, 30, 7, 2]);
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(
        json,
        r#"{"immediate":2,"out_of_cycle":7,"scheduled":30,"defer":90}"#
    );
    assert_eq!(serde_json::from_str::<SlaPolicy>(&json).unwrap(), p);

    let days = |immediate, out_of_cycle, scheduled, defer| SlaDays {
        immediate,
        out_of_cycle,
        scheduled,
        defer,
    };
    assert_eq!(
        SlaPolicy::new(days(0, 7, 30, 90)).unwrap_err().to_string(),
        "the SLA for immediate findings is 0 days: use a whole number of days from 1 to 3650"
    );
    assert_eq!(
        SlaPolicy::new(days(10, 7, 30, 90)).unwrap_err().to_string(),
        "the SLA for immediate findings (10 days) is longer than for out-of-cycle findings (7 days): a more urgent decision must not get more time"
    );
    let err = serde_json::from_str::<SlaPolicy>(
        r#"{"immediate":2,"out_of_cycle":7,"scheduled":30,"defer":4000}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("the SLA for defer findings is 4000 days"),
        "{err}"
    );
    assert!(SlaPolicy::new(days(1, 1, 1, 1)).is_ok());
}

#[test]
fn the_clock_starts_at_microsofts_first_seen_time() {
    assert_eq!(clock_start(Some(day(0)), day(5)), day(0));
    assert_eq!(clock_start(None, day(5)), day(5));
    assert_eq!(clock_start(Some(day(9)), day(5)), day(5));
}

#[test]
fn escalation_brings_the_due_date_forward_and_it_never_goes_back() {
    let p = SlaPolicy::default();
    let due = p.due_at(Decision::Scheduled, day(0));
    assert_eq!(due, day(30));
    // An exploit appears on day 20: immediate, due two days later.
    let due = p.due_after_change(due, Decision::Immediate, day(20));
    assert_eq!(due, day(22));
    // An escalation late in a long clock never gives more time than the old due date.
    assert_eq!(
        p.due_after_change(day(30), Decision::OutOfCycle, day(27)),
        day(30)
    );
    // The exploit flag disappears on day 21: scheduled again, still due on day 22.
    assert_eq!(
        p.due_after_change(due, Decision::Scheduled, day(21)),
        day(22)
    );
}

#[test]
fn status_thresholds() {
    let (start, due) = (day(0), day(30));
    let at = |n| sla_status(day(n), due, start, None, false);
    assert_eq!(at(0), SlaStatus::OnTrack);
    assert_eq!(at(23), SlaStatus::OnTrack);
    assert_eq!(at(24), SlaStatus::DueSoon); // 6 of 30 days left: 20 %
    assert_eq!(at(29), SlaStatus::DueSoon);
    assert_eq!(at(30), SlaStatus::Overdue);
    assert_eq!(at(400), SlaStatus::Overdue);
    assert_eq!(
        sla_status(day(40), due, start, None, true),
        SlaStatus::Closed
    );
    assert_eq!(
        serde_json::to_string(&SlaStatus::DueSoon).unwrap(),
        "\"due_soon\""
    );
}

#[test]
fn an_exception_pauses_the_clock_until_it_expires() {
    let (start, due) = (day(0), day(30));
    // Accepted on day 10 with 20 days left, for 60 days.
    let e = Exception {
        accepted_at: day(10),
        expires_at: day(70),
    };
    assert_eq!(
        sla_status(day(10), due, start, Some(&e), false),
        SlaStatus::Accepted
    );
    assert_eq!(
        sla_status(day(69), due, start, Some(&e), false),
        SlaStatus::Accepted
    );
    // Back on the clock with the same 20 days left: due on day 90.
    assert_eq!(e.resumed_due(due), day(90));
    assert_eq!(
        sla_status(day(70), due, start, Some(&e), false),
        SlaStatus::OnTrack
    );
    assert_eq!(
        sla_status(day(90), due, start, Some(&e), false),
        SlaStatus::Overdue
    );
    // An exception granted while already overdue hands the finding back overdue.
    let late = Exception {
        accepted_at: day(35),
        expires_at: day(45),
    };
    assert_eq!(
        sla_status(day(45), due, start, Some(&late), false),
        SlaStatus::Overdue
    );
}

prop_compose! {
    fn arb_time()(days in 0..400i64, secs in 0..86_400i64) -> DateTime<Utc> {
        day(days) + TimeDelta::seconds(secs)
    }
}

proptest! {
    #[test]
    fn every_open_finding_has_a_decision_a_priority_and_a_due_date(
        f in arb_factors(), start in arb_time(), now in arb_time(),
    ) {
        let policy = SlaPolicy::default();
        let a = Assessment::new(&f, &policy, start);
        prop_assert_eq!(a.priority.decision, f.decision());
        prop_assert!(a.priority.score <= 100);
        prop_assert_eq!(a.due_at, start + policy.window(a.priority.decision));
        prop_assert!(a.due_at > start);
        let status = sla_status(now, a.due_at, start, None, false);
        prop_assert!(
            matches!(status, SlaStatus::OnTrack | SlaStatus::DueSoon | SlaStatus::Overdue),
            "{:?}", status
        );
        prop_assert_eq!(status == SlaStatus::Overdue, now >= a.due_at);
    }

    #[test]
    fn closed_findings_have_nothing_pending(
        due in arb_time(), start in arb_time(), now in arb_time(),
        accepted in arb_time(), length in 0..200i64, excepted in any::<bool>(),
    ) {
        let e = Exception { accepted_at: accepted, expires_at: accepted + TimeDelta::days(length) };
        let e = excepted.then_some(e);
        prop_assert_eq!(sla_status(now, due, start, e.as_ref(), true), SlaStatus::Closed);
    }

    #[test]
    fn an_exception_expires_back_into_the_sla_clock(
        f in arb_factors(), start in arb_time(), accepted_after in 0..100i64,
        length in 1..200i64, after_expiry in 0..200i64,
    ) {
        let policy = SlaPolicy::default();
        let a = Assessment::new(&f, &policy, start);
        let e = Exception {
            accepted_at: start + TimeDelta::days(accepted_after),
            expires_at: start + TimeDelta::days(accepted_after + length),
        };
        let during = e.accepted_at + TimeDelta::days(length / 2);
        prop_assert_eq!(sla_status(during, a.due_at, start, Some(&e), false), SlaStatus::Accepted);
        let now = e.expires_at + TimeDelta::days(after_expiry);
        let status = sla_status(now, a.due_at, start, Some(&e), false);
        prop_assert_ne!(status, SlaStatus::Accepted);
        // Exactly as if the paused time had never passed.
        let shifted = now - (e.expires_at - e.accepted_at);
        prop_assert_eq!(status, sla_status(shifted, a.due_at, start, None, false));
    }

    #[test]
    fn reassessing_never_moves_the_due_date_later(
        before in arb_factors(), after in arb_factors(), start in arb_time(), later in 0..100i64,
    ) {
        let policy = SlaPolicy::default();
        let old = Assessment::new(&before, &policy, start);
        let at = start + TimeDelta::days(later);
        let new = old.reassess(&after, &policy, at);
        prop_assert!(new.due_at <= old.due_at);
        if new.priority.decision > old.priority.decision {
            prop_assert_eq!(new.due_at, old.due_at.min(at + policy.window(new.priority.decision)));
        } else {
            prop_assert_eq!(new.due_at, old.due_at);
        }
    }
}
