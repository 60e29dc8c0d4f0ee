//! The factor mappings from Rampart's records.

use super::*;

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
