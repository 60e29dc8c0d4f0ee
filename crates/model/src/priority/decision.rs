//! The SSVC *deployer* decision: exploitation × system exposure × automatable × human impact →
//! defer, scheduled, out-of-cycle or immediate.
//!
//! The table is CERT/CC's "Deployer Patch Application Priority" (`ssvc:DT_DP` 1.0.0,
//! <https://certcc.github.io/SSVC/howto/deployer_tree/>), transcribed by hand. Every decision point
//! is an ordered scale, and the table is monotone: a situation at least as bad on every point never
//! gets a less urgent outcome (the tests check all 72 × 72 pairs).

use std::fmt;

use serde::{Deserialize, Serialize};

/// SSVC Exploitation (`E` 1.1.0): the evidence that the vulnerability is exploited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exploitation {
    /// No evidence of active exploitation and no public proof of concept.
    None,
    /// A public proof of concept or a well-known method of exploitation exists.
    PublicPoc,
    /// Reliable evidence of use in the wild by real attackers.
    Active,
}

/// SSVC System Exposure (`EXP` 1.0.1): how reachable the vulnerable system is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SystemExposure {
    /// A local service or program; a highly controlled network.
    Small,
    /// A networked service with some access restrictions or mitigations in place.
    Controlled,
    /// The internet or another widely accessible network.
    Open,
}

/// SSVC Automatable (`A` 2.0.0): can attackers reliably automate reconnaissance, weaponisation,
/// delivery and exploitation?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Automatable {
    No,
    Yes,
}

/// SSVC Human Impact (`HI` 2.0.2): the combined safety and mission impact of the system failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HumanImpact {
    Low,
    Medium,
    High,
    VeryHigh,
}

/// What to do about a finding, from least to most urgent (SSVC deployer outcomes `DSOI`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Do not act at present.
    Defer,
    /// Act during regularly scheduled maintenance.
    Scheduled,
    /// Act more quickly than usual, at the next available opportunity.
    OutOfCycle,
    /// Act immediately, with all resources needed.
    Immediate,
}

impl Exploitation {
    pub const ALL: [Exploitation; 3] = [Self::None, Self::PublicPoc, Self::Active];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::PublicPoc => "public-poc",
            Self::Active => "active",
        }
    }
}

impl SystemExposure {
    pub const ALL: [SystemExposure; 3] = [Self::Small, Self::Controlled, Self::Open];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Small => "small",
            Self::Controlled => "controlled",
            Self::Open => "open",
        }
    }
}

impl Automatable {
    pub const ALL: [Automatable; 2] = [Self::No, Self::Yes];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::No => "no",
            Self::Yes => "yes",
        }
    }
}

impl HumanImpact {
    pub const ALL: [HumanImpact; 4] = [Self::Low, Self::Medium, Self::High, Self::VeryHigh];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::VeryHigh => "very-high",
        }
    }

    /// Reads `low`, `medium`, `high`, `very-high` (also `very high`, `very_high`, `veryhigh`), in
    /// any case.
    pub fn parse(s: &str) -> Option<HumanImpact> {
        let folded: String = s
            .trim()
            .chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .flat_map(char::to_lowercase)
            .collect();
        Some(match folded.as_str() {
            "low" => Self::Low,
            "medium" => Self::Medium,
            "high" => Self::High,
            "veryhigh" => Self::VeryHigh,
            _ => return None,
        })
    }
}

impl Decision {
    pub const ALL: [Decision; 4] = [
        Self::Defer,
        Self::Scheduled,
        Self::OutOfCycle,
        Self::Immediate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Defer => "defer",
            Self::Scheduled => "scheduled",
            Self::OutOfCycle => "out-of-cycle",
            Self::Immediate => "immediate",
        }
    }

    pub fn parse(s: &str) -> Option<Decision> {
        Self::ALL.into_iter().find(|d| d.as_str() == s.trim())
    }

    /// The deployer tree's outcome for one combination of decision points.
    pub fn decide(
        exploitation: Exploitation,
        exposure: SystemExposure,
        automatable: Automatable,
        human_impact: HumanImpact,
    ) -> Decision {
        // CERT/CC's CSV orders its rows by E, then EXP, then A, then HI, each from least to most
        // severe; this is the row number in that file.
        let row = 24 * exploitation as usize
            + 8 * exposure as usize
            + 4 * automatable as usize
            + human_impact as usize;
        match DEPLOYER_TABLE[row] {
            b'D' => Decision::Defer,
            b'S' => Decision::Scheduled,
            b'O' => Decision::OutOfCycle,
            _ => Decision::Immediate,
        }
    }
}

/// The outcome column of `ssvc:DT_DP` 1.0.0 in row order (D, S, O, I), four Human Impact values per
/// line. Line comments give the other three decision points.
const DEPLOYER_TABLE: &[u8; 72] = concat!(
    "DDSS", // none        small       no
    "DSSS", // none        small       yes
    "DSSS", // none        controlled  no
    "SSSS", // none        controlled  yes
    "DSSS", // none        open        no
    "SSSO", // none        open        yes
    "DSSS", // public-poc  small       no
    "SSSS", // public-poc  small       yes
    "DSSS", // public-poc  controlled  no
    "SSSO", // public-poc  controlled  yes
    "SSSO", // public-poc  open        no
    "SSOO", // public-poc  open        yes
    "SSOO", // active      small       no
    "SOOO", // active      small       yes
    "SSOO", // active      controlled  no
    "OOOO", // active      controlled  yes
    "SOOI", // active      open        no
    "OOII", // active      open        yes
)
.as_bytes()
.first_chunk()
.expect("the table has exactly 72 rows");

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every combination of decision points, in CERT/CC's row order.
    pub(crate) fn all_points() -> Vec<(Exploitation, SystemExposure, Automatable, HumanImpact)> {
        let mut all = Vec::new();
        for e in Exploitation::ALL {
            for x in SystemExposure::ALL {
                for a in Automatable::ALL {
                    for h in HumanImpact::ALL {
                        all.push((e, x, a, h));
                    }
                }
            }
        }
        all
    }

    /// The full reference table, written out independently of `DEPLOYER_TABLE`: the outcome
    /// column of `deployer_patch_application_priority_1_0_0.csv` in row order.
    const REFERENCE: &str =
        "DDSSDSSSDSSSSSSSDSSSSSSODSSSSSSSDSSSSSSOSSSOSSOOSSOOSOOOSSOOOOOOSOOIOOII";

    #[test]
    fn the_whole_tree_matches_the_reference_table() {
        let points = all_points();
        assert_eq!(points.len(), 72);
        for (row, (&(e, x, a, h), expected)) in points.iter().zip(REFERENCE.chars()).enumerate() {
            let got = Decision::decide(e, x, a, h);
            let letter = match got {
                Decision::Defer => 'D',
                Decision::Scheduled => 'S',
                Decision::OutOfCycle => 'O',
                Decision::Immediate => 'I',
            };
            assert_eq!(letter, expected, "row {row}: {e:?} {x:?} {a:?} {h:?}");
        }
        let count = |c| REFERENCE.chars().filter(|&x| x == c).count();
        assert_eq!(
            (count('D'), count('S'), count('O'), count('I')),
            (7, 42, 20, 3)
        );
    }

    #[test]
    fn golden_rows() {
        use Automatable as A;
        use Exploitation as E;
        use HumanImpact as H;
        use SystemExposure as X;
        // Rows 0, 23, 43, 67 and 71 of the CSV.
        assert_eq!(
            Decision::decide(E::None, X::Small, A::No, H::Low),
            Decision::Defer
        );
        assert_eq!(
            Decision::decide(E::None, X::Open, A::Yes, H::VeryHigh),
            Decision::OutOfCycle
        );
        assert_eq!(
            Decision::decide(E::PublicPoc, X::Open, A::No, H::VeryHigh),
            Decision::OutOfCycle
        );
        assert_eq!(
            Decision::decide(E::Active, X::Open, A::No, H::VeryHigh),
            Decision::Immediate
        );
        assert_eq!(
            Decision::decide(E::Active, X::Open, A::Yes, H::VeryHigh),
            Decision::Immediate
        );
    }

    #[test]
    fn immediate_needs_active_and_open_and_active_never_defers() {
        for (e, x, a, h) in all_points() {
            let d = Decision::decide(e, x, a, h);
            if d == Decision::Immediate {
                assert_eq!((e, x), (Exploitation::Active, SystemExposure::Open));
            }
            if e == Exploitation::Active {
                assert_ne!(d, Decision::Defer);
            }
        }
    }

    #[test]
    fn the_tree_is_monotone_over_all_pairs() {
        let points = all_points();
        for &(e1, x1, a1, h1) in &points {
            for &(e2, x2, a2, h2) in &points {
                if e2 >= e1 && x2 >= x1 && a2 >= a1 && h2 >= h1 {
                    assert!(
                        Decision::decide(e2, x2, a2, h2) >= Decision::decide(e1, x1, a1, h1),
                        "{e1:?} {x1:?} {a1:?} {h1:?} → {e2:?} {x2:?} {a2:?} {h2:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn names_round_trip_in_serde_and_text() {
        for d in Decision::ALL {
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.as_str()));
            assert_eq!(Decision::parse(d.as_str()), Some(d));
        }
        assert_eq!(
            serde_json::to_string(&Decision::OutOfCycle).unwrap(),
            "\"out-of-cycle\""
        );
        assert_eq!(HumanImpact::parse("Very High"), Some(HumanImpact::VeryHigh));
        assert_eq!(HumanImpact::parse("critical"), None);
    }
}
