//! SLA clocks.

use super::*;

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
