//! Reading the few CVSS vector metrics that decide SSVC's *Automatable* point.
//!
//! Vectors arrive in many shapes: `CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H`, the same with
//! MDE's temporal metrics appended (`/E:U/RL:O/RC:C`), without the `CVSS:3.x/` prefix, in lower
//! case, with spaces, or as CVSS v4 (`CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/…/AU:Y`). The parser takes
//! what it recognises and ignores the rest; a vector it cannot read (or one that names a metric
//! twice with different values) is *unknown*, never a guess.

use serde::{Deserialize, Serialize};

/// Which CVSS reading of *Automatable* to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AutomatableRule {
    /// CERT/CC's reading: Yes when Attack Vector is Network and Privileges Required is None
    /// (<https://certcc.github.io/SSVC/topics/related_systems/>): those make delivery automatable.
    /// Attack Complexity and User Interaction are left out on purpose: CERT/CC says Automatable asks
    /// whether exploitation *can* be automated, not how hard it is, and that user interaction is a
    /// "stochastic barrier", not a firm one.
    #[default]
    NetworkNoPrivileges,
    /// The stricter common proxy `AV:N/AC:L/PR:N/UI:N`: answers No more often.
    NetworkLowComplexityNoPrivilegesNoInteraction,
}

/// Attack Vector, ordered from hardest to easiest to reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum AttackVector {
    Physical,
    Local,
    Adjacent,
    Network,
}

/// The metrics of one vector that matter here; `None` where the vector does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CvssVector {
    major_version: Option<u8>,
    attack_vector: Option<AttackVector>,
    /// `AC:L`.
    low_complexity: Option<bool>,
    /// `PR:N`.
    no_privileges: Option<bool>,
    /// `UI:N`.
    no_interaction: Option<bool>,
    /// CVSS v4's supplemental `AU` (Automatable) metric, which CERT/CC designed to match SSVC's.
    automatable_v4: Option<bool>,
}

/// Records a metric value, refusing a second, different value for the same metric.
fn set<T: PartialEq>(slot: &mut Option<T>, value: T) -> Result<(), ()> {
    match slot {
        Some(old) if *old != value => Err(()),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

impl CvssVector {
    /// Parses a vector leniently. `None` when it is not a CVSS vector at all or contradicts itself.
    pub fn parse(raw: &str) -> Option<CvssVector> {
        let text = raw.trim().to_ascii_uppercase();
        let mut v = CvssVector::default();
        let mut metrics = 0;
        for part in text.split('/').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once(':')?;
            let (key, value) = (key.trim(), value.trim());
            let ok = match key {
                "CVSS" => {
                    let major = value.split('.').next()?.parse().ok()?;
                    set(&mut v.major_version, major)
                }
                "AV" => set(
                    &mut v.attack_vector,
                    match value {
                        "N" => AttackVector::Network,
                        "A" => AttackVector::Adjacent,
                        "L" => AttackVector::Local,
                        "P" => AttackVector::Physical,
                        _ => return None,
                    },
                ),
                "AC" => set(&mut v.low_complexity, Self::flag(value, "L", "H")?),
                "PR" => set(&mut v.no_privileges, Self::flag(value, "N", "LH")?),
                "UI" => set(&mut v.no_interaction, Self::flag(value, "N", "RPA")?),
                // In v2 vectors `Au` is Authentication, not Automatable; only v4 is read (below).
                "AU" => match Self::flag(value, "Y", "N") {
                    Some(yes) => set(&mut v.automatable_v4, yes),
                    None => Ok(()),
                },
                _ => Ok(()),
            };
            ok.ok()?;
            metrics += 1;
        }
        if v.major_version != Some(4) {
            v.automatable_v4 = None;
        }
        (metrics > 0 && v.attack_vector.is_some()).then_some(v)
    }

    /// `Some(true)` for the `yes` letter, `Some(false)` for any of the `no` letters, `None` otherwise
    /// (including `X`, "not defined").
    fn flag(value: &str, yes: &str, no: &str) -> Option<bool> {
        if value == yes {
            Some(true)
        } else if value.len() == 1 && no.contains(value) {
            Some(false)
        } else {
            None
        }
    }

    /// SSVC Automatable under `rule`: `Some(true)` yes, `Some(false)` no, `None` when the vector
    /// does not carry enough to say. Monotone: a vector that is easier to reach on every metric
    /// never answers No where a harder one answers Yes.
    pub fn automatable(&self, rule: AutomatableRule) -> Option<bool> {
        if let Some(au) = self.automatable_v4 {
            return Some(au);
        }
        let network = self.attack_vector.map(|av| av == AttackVector::Network);
        let needed: &[Option<bool>] = match rule {
            AutomatableRule::NetworkNoPrivileges => &[network, self.no_privileges],
            AutomatableRule::NetworkLowComplexityNoPrivilegesNoInteraction => &[
                network,
                self.low_complexity,
                self.no_privileges,
                self.no_interaction,
            ],
        };
        if needed.contains(&Some(false)) {
            Some(false)
        } else if needed.iter().all(|m| *m == Some(true)) {
            Some(true)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: AutomatableRule = AutomatableRule::NetworkNoPrivileges;
    const STRICT: AutomatableRule = AutomatableRule::NetworkLowComplexityNoPrivilegesNoInteraction;

    fn automatable(raw: &str, rule: AutomatableRule) -> Option<bool> {
        CvssVector::parse(raw).and_then(|v| v.automatable(rule))
    }

    #[test]
    fn network_without_privileges_is_automatable() {
        let v = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H";
        assert_eq!(automatable(v, CERT), Some(true));
        assert_eq!(automatable(v, STRICT), Some(true));
    }

    #[test]
    fn the_two_rules_differ_on_complexity_and_interaction() {
        let v = "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:H/I:H/A:H";
        assert_eq!(automatable(v, CERT), Some(true));
        assert_eq!(automatable(v, STRICT), Some(false));
    }

    #[test]
    fn local_or_privileged_is_not_automatable() {
        // MDE's documented example, with temporal metrics appended.
        let mde = "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O/RC:C";
        assert_eq!(automatable(mde, CERT), Some(false));
        assert_eq!(
            automatable("CVSS:3.0/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H", CERT),
            Some(false)
        );
    }

    #[test]
    fn lenient_shapes_parse() {
        for v in [
            "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            " cvss:3.1/av:n/ac:l/pr:n/ui:n/s:u/c:h/i:h/a:h ",
            "CVSS:3.1 / AV:N / PR:N /",
            "CVSS:3.1/AV:N/PR:N/AV:N",
        ] {
            assert_eq!(automatable(v, CERT), Some(true), "{v}");
        }
    }

    #[test]
    fn cvss_v4_automatable_metric_wins() {
        let v = "CVSS:4.0/AV:L/AC:L/AT:N/PR:H/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/AU:Y";
        assert_eq!(automatable(v, CERT), Some(true));
        let v = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/AU:N";
        assert_eq!(automatable(v, CERT), Some(false));
    }

    #[test]
    fn cvss_v2_authentication_is_not_read_as_automatable() {
        // v2 has no PR, so the answer is unknown rather than v2's `Au:N` misread as "not automatable".
        assert_eq!(automatable("AV:N/AC:L/Au:N/C:P/I:P/A:P", CERT), None);
    }

    #[test]
    fn unreadable_or_contradictory_vectors_are_unknown() {
        for v in [
            "",
            "   ",
            "not a vector",
            "CVSS:3.1",
            "CVSS:3.1/AV:Q/PR:N",
            "CVSS:3.1/AV:N/AV:L/PR:N",
            "CVSS:x/AV:N/PR:N",
            "CVSS:3.1/AV:N/AC:L/PR:X/UI:N",
        ] {
            assert_eq!(automatable(v, CERT), None, "{v:?}");
        }
    }

    #[test]
    fn harder_to_reach_never_answers_yes_where_easier_answers_no() {
        let avs = ["P", "L", "A", "N"];
        let prs = ["H", "L", "N"];
        let answer = |av: usize, pr: usize| {
            automatable(
                &format!("CVSS:3.1/AV:{}/AC:L/PR:{}/UI:N", avs[av], prs[pr]),
                CERT,
            ) == Some(true)
        };
        for (av, pr) in (0..4).flat_map(|a| (0..3).map(move |p| (a, p))) {
            for (av2, pr2) in (av..4).flat_map(|a| (pr..3).map(move |p| (a, p))) {
                assert!(answer(av2, pr2) >= answer(av, pr));
            }
        }
    }
}
