//! The priority: bands, explanation, monotonicity, the documented example.

use super::*;

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
