//! The completeness verdict: may this run conclude anything (fixed findings, missing assets)?
//!
//! A read is complete when the client saw its natural end (a short or empty last page, no next
//! link), with no repeated page or link and no unreadable record. On top of that the counts must be
//! plausible against the last complete run: Microsoft has served empty or truncated exports during
//! incidents, and a tool that trusts them marks a whole estate fixed.

use rampart_microsoft::ReadReport;
use rampart_model::Verdict;

/// Below this many findings in the last complete run, a drop is not judged (small tenants change a
/// lot in relative terms).
const PLAUSIBILITY_FLOOR: u64 = 1_000;

/// The verdict over a run's reads. `reads` names each read (`devices`, `findings`, ...);
/// `findings_before` is what the last complete run read.
pub(crate) fn judge(
    reads: &[(&str, &ReadReport)],
    findings_read: u64,
    findings_before: Option<u64>,
    accept_mass_changes: bool,
) -> Verdict {
    for (what, report) in reads {
        if !report.complete {
            return Verdict::Incomplete(format!(
                "the {what} read did not provably reach its end ({})",
                report.reason
            ));
        }
    }
    if accept_mass_changes {
        return Verdict::Complete;
    }
    collapse(
        "vulnerability rows",
        findings_read,
        findings_before,
        "devices offboarded, a big patch wave",
    )
    .unwrap_or(Verdict::Complete)
}

/// `Held` when a run read less than half of what the last complete run read of the same thing
/// (`before`), above [`PLAUSIBILITY_FLOOR`]. `real_causes` names what would make such a drop real.
pub(crate) fn collapse(
    what: &str,
    read: u64,
    before: Option<u64>,
    real_causes: &str,
) -> Option<Verdict> {
    let before = before.filter(|&b| b >= PLAUSIBILITY_FLOOR && read < b / 2)?;
    Some(Verdict::Held(format!(
        "Microsoft returned {read} {what}, less than half of the {before} the last complete run read; \
         Rampart concluded nothing from it, because Microsoft has served truncated answers during incidents. \
         If the drop is real ({real_causes}), sync again with --accept-mass-changes"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_microsoft::{ApiFamily, ReadEnd};

    fn report(complete: bool) -> ReadReport {
        ReadReport {
            family: ApiFamily::JsonExport,
            pages: 3,
            records: 10,
            duplicates_dropped: 0,
            unreadable: 0,
            unreadable_ids: Vec::new(),
            first_unreadable: None,
            restarts: 0,
            complete,
            reason: if complete {
                ReadEnd::NoNextLink { page: 2 }
            } else {
                ReadEnd::MaxPages { pages: 3 }
            },
        }
    }

    #[test]
    fn an_incomplete_read_names_itself() {
        let ok = report(true);
        let bad = report(false);
        let v = judge(&[("devices", &ok), ("findings", &bad)], 10, None, false);
        match v {
            Verdict::Incomplete(why) => assert!(why.contains("findings"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_collapse_of_findings_is_held_unless_accepted() {
        let ok = report(true);
        let prev = Some(10_000);
        assert!(matches!(
            judge(&[("findings", &ok)], 4_000, prev, false),
            Verdict::Held(_)
        ));
        assert_eq!(
            judge(&[("findings", &ok)], 4_000, prev, true),
            Verdict::Complete
        );
        assert_eq!(
            judge(&[("findings", &ok)], 6_000, prev, false),
            Verdict::Complete
        );
        // Small tenants are not judged by ratio.
        assert_eq!(
            judge(&[("findings", &ok)], 0, Some(100), false),
            Verdict::Complete
        );
    }

    #[test]
    fn a_collapse_names_what_dropped_and_why_it_might_be_real() {
        match collapse("recommendations", 900, Some(2_000), "plans turned off") {
            Some(Verdict::Held(why)) => {
                assert!(why.contains("900 recommendations"), "{why}");
                assert!(why.contains("2000"), "{why}");
                assert!(why.contains("plans turned off"), "{why}");
                assert!(why.contains("--accept-mass-changes"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(collapse("recommendations", 1_000, Some(2_000), ""), None);
        assert_eq!(collapse("recommendations", 0, Some(999), ""), None);
        assert_eq!(collapse("recommendations", 0, None, ""), None);
    }
}
