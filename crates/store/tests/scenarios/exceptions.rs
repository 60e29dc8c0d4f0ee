//! Exceptions (accepted risk) and the remediation plan (issue 14): what an exception covers,
//! that accepted findings leave the counts and the plan but stay listed, that they come back at
//! expiry with the clock moved by the pause, revoking, the audit trail, and the plan's ranking.
//! The SQL filters and the Rust status of each finding are compared at every step: the store
//! spells the rule twice (crates/store/src/exceptions.rs).

use rampart_model::IntegrationId;
use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use rampart_model::priority::{Decision, SlaStatus};
use rampart_model::{CveId, FindingStatus, WorkspaceId};
use rampart_store::{
    AssessmentWrite, ExceptionFilter, ExceptionScope, ExceptionState, Explanation, FindingFilter,
    NewException, Page, Remediation, RemediationFilter, RemediationSort, Store, StoreError,
    StoredAssessment, StoredException, StoredFinding, UrgentCounts,
};

use crate::support::*;
use rampart_store::Visibility;

scenarios!(
    each_scope_covers_its_findings_and_they_leave_the_counts,
    an_exception_expires_back_into_the_sla_clock,
    a_revoked_exception_ends_at_once_and_is_audited,
    the_plan_groups_findings_by_fix_and_ranks_by_priority_removed,
    any_exception_expires_back_into_the_sla_clock,
    an_upgrade_fix_is_counted_out_as_its_findings_are_filtered,
    the_plan_read_from_its_rollup_is_the_plan_counted_from_the_findings,
    with_any_exceptions_the_rollup_reads_as_the_plan_counted_from_the_findings,
);

/// Integration `a` with 3 assets × 4 findings (finding `j` of each asset: CVE `j`, update
/// `KB50000j`), all assessed: clock started at t(-1000), due at t(0) for CVE 0 and 1 (overdue
/// from then), t(10_000) for the others; CVE 0 is `immediate`. Integration `b`: one asset
/// with the same 4 findings. Returns (a, b).
async fn assessed_estate(store: &Arc<dyn Store>) -> (IntegrationId, IntegrationId) {
    let a = integration(store, "a").await.id;
    let run = full_run_seeing(store, a, t(-2000), 3, 4).await;
    store.finish_run(run, &succeeded(t(-1999))).await.unwrap();
    let b = integration(store, "b").await.id;
    let run = full_run_seeing(store, b, t(-2000), 1, 4).await;
    store.finish_run(run, &succeeded(t(-1999))).await.unwrap();
    let explanation = Explanation {
        id: 42,
        contributions: "[]".into(),
    };
    let writes: Vec<AssessmentWrite> = all_findings(store, FindingFilter::default())
        .await
        .iter()
        .map(|f| {
            let j = cve_index(&f.finding.key.cve_id);
            AssessmentWrite {
                finding_id: f.id,
                assessment: StoredAssessment {
                    decision: if j == 0 {
                        Decision::Immediate
                    } else {
                        Decision::Scheduled
                    },
                    priority: if j == 0 { 90 } else { 30 + j as u8 },
                    due_at: if j < 2 { t(0) } else { t(10_000) },
                    clock_start: t(-1000),
                    explanation_id: 42,
                },
            }
        })
        .collect();
    assert_eq!(
        store
            .write_assessments(&[explanation], &writes, t(-1000))
            .await
            .unwrap(),
        16
    );
    (a, b)
}

fn cve_index(cve: &CveId) -> usize {
    (0..10).find(|j| cve.as_str() == cve_of(*j)).unwrap()
}

fn cve_of(j: usize) -> String {
    cve(j)
}

fn new_exception(
    scope: ExceptionScope,
    integration: Option<IntegrationId>,
    at: DateTime<Utc>,
    until: DateTime<Utc>,
) -> NewException {
    NewException {
        scope,
        integration,
        reason: "compensating control: WAF rule 12".into(),
        owner: "app-team@contoso.com".into(),
        created_by: "admin".into(),
        created_at: at,
        expires_at: until,
    }
}

/// Grants (as a global admin) the exception of [`new_exception`].
async fn grant(
    store: &Arc<dyn Store>,
    scope: ExceptionScope,
    integration: Option<IntegrationId>,
    at: DateTime<Utc>,
    until: DateTime<Utc>,
) -> StoredException {
    store
        .create_exception(
            &Visibility::All,
            &new_exception(scope, integration, at, until),
        )
        .await
        .unwrap()
}

/// The scope of the fix named `fix`.
fn fix_scope(fix: &str) -> ExceptionScope {
    ExceptionScope::Fix(fix.into())
}

/// The scope of CVE `j` (see [`cve`]).
fn cve_scope(j: usize) -> ExceptionScope {
    ExceptionScope::Cve(cve(j).parse().unwrap())
}

/// The first page of the whole plan at `now`, by priority.
async fn whole_plan(store: &Arc<dyn Store>, now: DateTime<Utc>) -> Page<Remediation, u32> {
    store
        .remediations(
            &Visibility::All,
            &RemediationFilter::default(),
            RemediationSort::Priority,
            now,
            0,
            10,
        )
        .await
        .unwrap()
}

/// The overdue and immediate counts at `now`, seen by a global account.
async fn urgent(store: &Arc<dyn Store>, now: DateTime<Utc>) -> UrgentCounts {
    store.urgent_counts(&Visibility::All, now).await.unwrap()
}

/// The ids of the findings with this SLA status at `now`, by the store's filter; and checks that
/// the status each finding reports agrees.
async fn ids_with(store: &Arc<dyn Store>, status: SlaStatus, now: DateTime<Utc>) -> BTreeSet<i64> {
    let by_filter: BTreeSet<i64> = all_findings(
        store,
        FindingFilter {
            sla_status: Some((status, now)),
            ..Default::default()
        },
    )
    .await
    .iter()
    .map(|f| f.id)
    .collect();
    let by_finding: BTreeSet<i64> = all_findings(store, FindingFilter::default())
        .await
        .iter()
        .filter(|f| f.sla_status(now) == Some(status))
        .map(|f| f.id)
        .collect();
    assert_eq!(
        by_filter, by_finding,
        "{status:?} at {now}: SQL and Rust disagree"
    );
    by_filter
}

async fn findings_where(
    store: &Arc<dyn Store>,
    keep: impl Fn(&StoredFinding) -> bool,
) -> BTreeSet<i64> {
    all_findings(store, FindingFilter::default())
        .await
        .iter()
        .filter(|f| keep(f))
        .map(|f| f.id)
        .collect()
}

async fn each_scope_covers_its_findings_and_they_leave_the_counts(store: Arc<dyn Store>) {
    let (a, b) = assessed_estate(&store).await;
    let now = t(100);
    let before = urgent(&store, now).await;
    // CVE 0 and 1 on 4 assets each are overdue; CVE 0 (4 findings) is immediate.
    assert_eq!((before.overdue, before.immediate), (8, 4));

    // A CVE across the assets of every integration.
    grant(&store, cve_scope(0), None, t(50), t(5000)).await;
    // A fix, in integration a only.
    grant(&store, fix_scope("KB5000001"), Some(a), t(50), t(5000)).await;
    // One finding of integration b.
    let of_b = findings_where(&store, |f| {
        f.integration_id == b && f.finding.key.cve_id.as_str() == cve(3)
    })
    .await;
    let single = *of_b.iter().next().unwrap();
    grant(
        &store,
        ExceptionScope::Finding(single),
        Some(b),
        t(50),
        t(5000),
    )
    .await;

    let expected = findings_where(&store, |f| {
        let c = f.finding.key.cve_id.as_str();
        c == cve(0) || (c == cve(1) && f.integration_id == a) || f.id == single
    })
    .await;
    assert_eq!(expected.len(), 4 + 3 + 1);
    assert_eq!(ids_with(&store, SlaStatus::Accepted, now).await, expected);
    // Only CVE 1 on b's asset is still overdue, and nothing is immediate.
    let after = urgent(&store, now).await;
    assert_eq!((after.overdue, after.immediate), (1, 0));
    assert_eq!(ids_with(&store, SlaStatus::Overdue, now).await.len(), 1);
    assert_eq!(
        ids_with(&store, SlaStatus::OnTrack, now).await.len(),
        16 - 8 - 1
    );
    // Accepted findings are still listed, open, with their priority.
    let all = all_findings(&store, FindingFilter::default()).await;
    assert_eq!(all.len(), 16);
    assert!(
        all.iter()
            .filter(|f| expected.contains(&f.id))
            .all(|f| f.status == FindingStatus::Open && f.priority.is_some())
    );
    // Before it was granted, nothing was accepted.
    assert!(
        ids_with(&store, SlaStatus::Accepted, t(49))
            .await
            .is_empty()
    );

    // A finding scope must name a finding of the integration.
    let wrong = store
        .create_exception(
            &Visibility::All,
            &new_exception(ExceptionScope::Finding(single), Some(a), t(60), t(5000)),
        )
        .await;
    assert!(matches!(wrong, Err(StoreError::NotFound(_))), "{wrong:?}");
    let listed = store
        .list_exceptions(
            &Visibility::All,
            &ExceptionFilter {
                integration: Some(a),
                in_force_at: Some(now),
            },
            100,
        )
        .await
        .unwrap();
    // The CVE one (all integrations) and a's fix; not b's finding.
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|e| e.state(now) == ExceptionState::InForce)
    );
}

async fn an_exception_expires_back_into_the_sla_clock(store: Arc<dyn Store>) {
    let (a, _) = assessed_estate(&store).await;
    // CVE 2 is due at t(10_000) (clock from t(-1000)): accepted from t(1000) to t(4000).
    grant(&store, cve_scope(2), Some(a), t(1000), t(4000)).await;
    // CVE 1, already overdue, accepted from t(500) to t(600).
    grant(&store, cve_scope(1), Some(a), t(500), t(600)).await;
    let of = |j: usize| {
        let store = store.clone();
        async move {
            findings_where(&store, |f| {
                f.integration_id == a && f.finding.key.cve_id.as_str() == cve(j)
            })
            .await
        }
    };
    let (cve1, cve2) = (of(1).await, of(2).await);
    assert!(
        ids_with(&store, SlaStatus::Accepted, t(550))
            .await
            .is_superset(&cve1)
    );
    assert!(
        ids_with(&store, SlaStatus::Accepted, t(3999))
            .await
            .is_superset(&cve2)
    );
    // Back on the clock at expiry, by itself: CVE 1 overdue again (it was when accepted).
    let overdue = ids_with(&store, SlaStatus::Overdue, t(600)).await;
    assert!(overdue.is_superset(&cve1));
    assert_eq!(urgent(&store, t(600)).await.overdue, 8);
    // CVE 2 comes back with the time it had left: due at t(10_000) + 3000 minutes.
    let back = t(4000);
    assert!(
        ids_with(&store, SlaStatus::OnTrack, back)
            .await
            .is_superset(&cve2)
    );
    let f = all_findings(&store, FindingFilter::default())
        .await
        .into_iter()
        .find(|f| cve2.contains(&f.id))
        .unwrap();
    assert_eq!(
        f.due_at,
        Some(t(10_000)),
        "the stored due date is not rewritten"
    );
    assert_eq!(f.due_at_now(back), Some(t(13_000)));
    // Due soon in its last fifth (of 11,000 minutes: 2,200), overdue at the moved date.
    assert!(
        ids_with(&store, SlaStatus::DueSoon, t(13_000 - 2_200))
            .await
            .is_superset(&cve2)
    );
    assert!(
        !ids_with(&store, SlaStatus::Overdue, t(12_999))
            .await
            .contains(&f.id)
    );
    assert!(
        ids_with(&store, SlaStatus::Overdue, t(13_000))
            .await
            .is_superset(&cve2)
    );

    // The ends reach the audit log once, however often it is asked.
    let expired = store
        .record_expired_exceptions(t(5000), "rampart")
        .await
        .unwrap();
    assert_eq!(expired.len(), 2);
    assert!(
        store
            .record_expired_exceptions(t(6000), "rampart")
            .await
            .unwrap()
            .is_empty()
    );
    let audit = store.list_audit(10).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.action == "exception.expire")
            .count(),
        2
    );
}

async fn a_revoked_exception_ends_at_once_and_is_audited(store: Arc<dyn Store>) {
    let (a, _) = assessed_estate(&store).await;
    let e = grant(&store, fix_scope("KB5000000"), Some(a), t(50), t(5000)).await;
    assert_eq!(urgent(&store, t(100)).await.immediate, 1);
    let revoked = store
        .revoke_exception(&Visibility::All, e.id, t(200), "admin")
        .await
        .unwrap();
    assert_eq!(revoked.ends_at, t(200));
    assert_eq!(revoked.expires_at, t(5000));
    assert_eq!(revoked.revoked_by.as_deref(), Some("admin"));
    assert_eq!(revoked.state(t(201)), ExceptionState::Revoked);
    assert!(
        ids_with(&store, SlaStatus::Accepted, t(201))
            .await
            .is_empty()
    );
    assert_eq!(urgent(&store, t(201)).await.immediate, 4);
    // Twice is a conflict; an unknown id is not found.
    let again = store
        .revoke_exception(&Visibility::All, e.id, t(300), "admin")
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let none = store
        .revoke_exception(&Visibility::All, 999, t(300), "admin")
        .await;
    assert!(matches!(none, Err(StoreError::NotFound(_))), "{none:?}");
    // Revoked is not expired: its end was audited when revoked.
    assert!(
        store
            .record_expired_exceptions(t(9000), "rampart")
            .await
            .unwrap()
            .is_empty()
    );
    let actions: Vec<String> = store
        .list_audit(10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["exception.revoke", "exception.create"]);
}

async fn the_plan_groups_findings_by_fix_and_ranks_by_priority_removed(store: Arc<dyn Store>) {
    let (a, _) = assessed_estate(&store).await;
    let now = t(100);
    let plan = whole_plan(&store, now).await;
    let fixes: Vec<&str> = plan.items.iter().map(|r| r.fix.as_str()).collect();
    // 4 assets each: priority 90, then 33, 32, 31 per finding.
    assert_eq!(fixes, ["KB5000000", "KB5000003", "KB5000002", "KB5000001"]);
    let top = &plan.items[0];
    assert_eq!(
        (top.findings, top.assets, top.overdue, top.immediate),
        (4, 4, 4, 4)
    );
    assert_eq!(top.priority_removed, 360.0);
    assert_eq!(top.max_priority, Some(90.0));
    assert_eq!(top.cves, vec![cve(0).parse::<CveId>().unwrap()]);
    assert_eq!(plan.next, None);
    // Sorted by overdue findings, then priority; paged.
    let by_overdue = store
        .remediations(
            &Visibility::All,
            &RemediationFilter {
                integration: Some(a),
            },
            RemediationSort::Overdue,
            now,
            0,
            2,
        )
        .await
        .unwrap();
    let fixes: Vec<&str> = by_overdue.items.iter().map(|r| r.fix.as_str()).collect();
    assert_eq!(fixes, ["KB5000000", "KB5000001"]);
    assert_eq!(by_overdue.items[0].findings, 3);
    assert_eq!(by_overdue.next, Some(2));
    // An accepted fix leaves the plan; a CVE accepted in one integration leaves its findings.
    grant(&store, fix_scope("KB5000000"), None, t(50), t(5000)).await;
    grant(&store, cve_scope(3), Some(a), t(50), t(5000)).await;
    let plan = whole_plan(&store, now).await;
    let rows: Vec<(&str, u64)> = plan
        .items
        .iter()
        .map(|r| (r.fix.as_str(), r.findings))
        .collect();
    assert_eq!(rows, [("KB5000002", 4), ("KB5000001", 4), ("KB5000003", 1)]);
}

/// One random case of [`any_exception_expires_back_into_the_sla_clock`], in minutes from t(0).
#[derive(Debug, Clone)]
struct Timing {
    /// The clock's start and the SLA (due = start + sla).
    start: i64,
    sla: i64,
    /// The exception's grant and length; revoked this many minutes after the grant, if any.
    granted: i64,
    length: i64,
    revoked_after: Option<i64>,
    /// When the status is looked at, after the exception ended.
    after_end: i64,
}

fn timings() -> impl proptest::strategy::Strategy<Value = Timing> {
    use proptest::prelude::*;
    (
        -5_000..5_000i64,
        1..10_000i64,
        -5_000..10_000i64,
        1..10_000i64,
        proptest::option::of(0..10_000i64),
        0..20_000i64,
    )
        .prop_map(
            |(start, sla, granted, length, revoked_after, after_end)| Timing {
                start,
                sla,
                granted,
                length,
                revoked_after,
                after_end,
            },
        )
}

/// The property of issue 14 at the store: for any clock, exception and revocation, the finding is
/// `accepted` exactly while the exception is in force, and once it has ended its status is the
/// one it would have had without the exception, at a time earlier by the part of the pause that
/// fell after its clock started. Checked through the SQL filter and the finding's own status.
async fn any_exception_expires_back_into_the_sla_clock(store: Arc<dyn Store>) {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    use rampart_model::priority::sla_status;

    let mut runner = TestRunner::deterministic();
    let explanation = Explanation {
        id: 42,
        contributions: "[]".into(),
    };
    for case in 0..24 {
        let c = timings().new_tree(&mut runner).unwrap().current();
        let i = integration(&store, &format!("p{case}")).await.id;
        let run = full_run_seeing(&store, i, t(-20_000), 1, 1).await;
        store.finish_run(run, &succeeded(t(-20_000))).await.unwrap();
        let scope = FindingFilter {
            integration: Some(i),
            ..Default::default()
        };
        let id = all_findings(&store, scope.clone()).await[0].id;
        let (start, due) = (t(c.start), t(c.start + c.sla));
        let write = AssessmentWrite {
            finding_id: id,
            assessment: StoredAssessment {
                decision: Decision::Scheduled,
                priority: 30,
                due_at: due,
                clock_start: start,
                explanation_id: 42,
            },
        };
        store
            .write_assessments(std::slice::from_ref(&explanation), &[write], t(-20_000))
            .await
            .unwrap();
        let granted = t(c.granted);
        let e = store
            .create_exception(
                &Visibility::All,
                &new_exception(
                    ExceptionScope::Finding(id),
                    Some(i),
                    granted,
                    t(c.granted + c.length),
                ),
            )
            .await
            .unwrap();
        let ends = match c.revoked_after {
            Some(r) if r < c.length => {
                store
                    .revoke_exception(&Visibility::All, e.id, t(c.granted + r), "admin")
                    .await
                    .unwrap()
                    .ends_at
            }
            _ => e.ends_at,
        };
        // Status by the SQL filter of this integration, and by the finding itself.
        let described = format!("{c:?}");
        let status_at = |now: DateTime<Utc>| {
            let store = store.clone();
            let scope = scope.clone();
            let described = described.clone();
            async move {
                let mut by_filter = Vec::new();
                for s in [
                    SlaStatus::OnTrack,
                    SlaStatus::DueSoon,
                    SlaStatus::Overdue,
                    SlaStatus::Accepted,
                ] {
                    let f = FindingFilter {
                        sla_status: Some((s, now)),
                        ..scope.clone()
                    };
                    if !all_findings(&store, f).await.is_empty() {
                        by_filter.push(s);
                    }
                }
                let own = all_findings(&store, scope).await[0]
                    .sla_status(now)
                    .unwrap();
                assert_eq!(by_filter, vec![own], "{described} at {now}");
                own
            }
        };
        if ends > granted {
            let during = granted + (ends - granted) / 2;
            assert_eq!(status_at(during).await, SlaStatus::Accepted, "{c:?}");
        }
        let now = ends + chrono::TimeDelta::minutes(c.after_end);
        let status = status_at(now).await;
        assert_ne!(status, SlaStatus::Accepted, "{c:?}");
        // The pause counts from the later of the grant and the clock's start.
        let paused = if ends > start {
            ends - granted.max(start)
        } else {
            chrono::TimeDelta::zero()
        };
        assert_eq!(
            status,
            sla_status(now - paused, due, start, None, false),
            "{c:?}"
        );
    }
}

/// A fix that is an upgrade (no security update named): the dashboard's counts find its findings
/// through the software, and agree with the filters.
async fn an_upgrade_fix_is_counted_out_as_its_findings_are_filtered(store: Arc<dyn Store>) {
    let a = integration(&store, "a").await.id;
    let run = store.start_run(a, "full", t(-2000)).await.unwrap();
    store
        .upsert_assets(a, run, &[asset(0), asset(1)])
        .await
        .unwrap();
    let mut findings = findings(2, 3);
    for f in &mut findings {
        f.recommended_update = None;
    }
    store.upsert_findings(a, run, &findings).await.unwrap();
    store.finish_run(run, &succeeded(t(-1999))).await.unwrap();
    // Not assessed yet: in the plan, removing no priority.
    let unassessed = whole_plan(&store, t(100)).await;
    assert_eq!(unassessed.items.len(), 3);
    assert!(
        unassessed
            .items
            .iter()
            .all(|r| r.priority_removed == 0.0 && r.max_priority.is_none() && r.overdue == 0)
    );
    let all = all_findings(&store, FindingFilter::default()).await;
    let writes: Vec<AssessmentWrite> = all
        .iter()
        .map(|f| AssessmentWrite {
            finding_id: f.id,
            assessment: StoredAssessment {
                decision: Decision::Immediate,
                priority: 80,
                due_at: t(0),
                clock_start: t(-1000),
                explanation_id: 42,
            },
        })
        .collect();
    let explanation = Explanation {
        id: 42,
        contributions: "[]".into(),
    };
    store
        .write_assessments(&[explanation], &writes, t(-1000))
        .await
        .unwrap();
    // Findings j = 0, 1, 2 are software app_0, app_1, app_2 (versions differ): app_1 on 2 assets.
    let fix = "Upgrade microsoft app_1";
    let covered: BTreeSet<i64> = all
        .iter()
        .filter(|f| f.finding.key.software_name == "app_1")
        .map(|f| f.id)
        .collect();
    assert_eq!(covered.len(), 2);
    grant(&store, fix_scope(fix), None, t(50), t(500)).await;
    let counts = urgent(&store, t(100)).await;
    assert_eq!((counts.overdue, counts.immediate), (4, 4));
    assert_eq!(ids_with(&store, SlaStatus::Accepted, t(100)).await, covered);
    // In force until t(500); then, paused 450 minutes, due at t(450): overdue at once.
    assert_eq!(urgent(&store, t(449)).await.overdue, 4);
    assert_eq!(urgent(&store, t(500)).await.overdue, 6);
    assert_eq!(urgent(&store, t(500)).await.immediate, 6);
    let plan = whole_plan(&store, t(100)).await;
    let fixes: Vec<&str> = plan.items.iter().map(|r| r.fix.as_str()).collect();
    assert_eq!(
        fixes,
        ["Upgrade microsoft app_0", "Upgrade microsoft app_2"]
    );
}

/// Every view of the plan (each order, integration filter, visibility and page, at moments
/// before, during and after exceptions of each scope, and as due dates pass) is the same read
/// from the roll-up (crates/store/src/fix_plan.rs) as counted from the findings, which is how
/// the store counts an integration whose roll-up an assessment made stale. Then the roll-up is
/// shown to be what is read: rows a run adds enter the plan when the run finishes.
async fn the_plan_read_from_its_rollup_is_the_plan_counted_from_the_findings(
    store: Arc<dyn Store>,
) {
    let (a, b) = assessed_estate(&store).await;
    // A fix accepted in a; a CVE everywhere, accepted and ended before the due dates (it moves
    // them); one finding of b for long; CVE 0 in b for a while.
    grant(&store, fix_scope("KB5000001"), Some(a), t(50), t(5000)).await;
    grant(&store, cve_scope(2), None, t(-500), t(-100)).await;
    let in_b: Vec<StoredFinding> = all_findings(
        &store,
        FindingFilter {
            integration: Some(b),
            ..Default::default()
        },
    )
    .await;
    let of_cve_3 = in_b
        .iter()
        .find(|f| cve_index(&f.finding.key.cve_id) == 3)
        .unwrap();
    grant(
        &store,
        ExceptionScope::Finding(of_cve_3.id),
        Some(b),
        t(20),
        t(30_000),
    )
    .await;
    grant(&store, cve_scope(0), Some(b), t(200), t(400)).await;

    let nows = [t(-1500), t(10), t(100), t(300), t(6000), t(20_000)];
    let sorts = [
        RemediationSort::Priority,
        RemediationSort::Overdue,
        RemediationSort::Assets,
        RemediationSort::Findings,
    ];
    let filters = [None, Some(a), Some(b)];
    let visibilities = [
        Visibility::All,
        Visibility::Workspaces(vec![WorkspaceId::DEFAULT]),
        Visibility::Workspaces(Vec::new()),
    ];
    let pages = [(0, 10), (1, 2), (3, 2)];
    let views = || {
        let mut all = Vec::new();
        for now in nows {
            for sort in sorts {
                for integration in filters {
                    for vis in &visibilities {
                        for (offset, limit) in pages {
                            all.push((now, sort, integration, vis.clone(), offset, limit));
                        }
                    }
                }
            }
        }
        all
    };
    let read_all = |store: Arc<dyn Store>| async move {
        let mut plans = Vec::new();
        for (now, sort, integration, vis, offset, limit) in views() {
            let page = store
                .remediations(
                    &vis,
                    &RemediationFilter { integration },
                    sort,
                    now,
                    offset,
                    limit,
                )
                .await
                .unwrap();
            plans.push((page.items, page.next));
        }
        plans
    };
    // The assessments made both roll-ups stale: counted from the findings.
    let counted = read_all(store.clone()).await;
    assert!(
        counted
            .iter()
            .any(|(items, _)| items.iter().any(|r| r.overdue > 0)),
        "the views include overdue findings"
    );
    store.refresh_fix_plan(a, t(-1500)).await.unwrap();
    store.refresh_fix_plan(b, t(-1500)).await.unwrap();
    let read = read_all(store.clone()).await;
    for ((view, counted), read) in views().iter().zip(&counted).zip(&read) {
        assert_eq!(read, counted, "view {view:?}");
    }

    // Read from the roll-up: a fourth asset's findings enter the plan when their run ends (the
    // fix no exception touches). While the run is in progress, a fix an exception touches
    // (KB5000002: CVE 2's ended exception paused its clocks) is counted from its findings, as
    // the findings covered now need not be the ones counted.
    let view = |store: Arc<dyn Store>, fix: &'static str| async move {
        store
            .remediations(
                &Visibility::All,
                &RemediationFilter {
                    integration: Some(a),
                },
                RemediationSort::Findings,
                t(6000),
                0,
                10,
            )
            .await
            .unwrap()
            .items
            .iter()
            .find(|r| r.fix == fix)
            .map(|r| (r.findings, r.assets))
    };
    assert_eq!(view(store.clone(), "KB5000003").await, Some((3, 3)));
    assert_eq!(view(store.clone(), "KB5000002").await, Some((3, 3)));
    let run = full_run_seeing(&store, a, t(5900), 4, 4).await;
    assert_eq!(view(store.clone(), "KB5000003").await, Some((3, 3)));
    assert_eq!(view(store.clone(), "KB5000002").await, Some((4, 4)));
    store.finish_run(run, &succeeded(t(5901))).await.unwrap();
    assert_eq!(view(store.clone(), "KB5000003").await, Some((4, 4)));
    assert_eq!(view(store.clone(), "KB5000002").await, Some((4, 4)));
}

/// One estate and its exceptions for [`with_any_exceptions_the_rollup_reads_as_the_plan_counted_from_the_findings`].
#[derive(Debug, Clone)]
struct PlanCase {
    /// The (asset, CVE index) of each finding of integration `a` (5 assets) and `b` (2).
    in_a: BTreeSet<(usize, usize)>,
    in_b: BTreeSet<(usize, usize)>,
    /// Per finding in order (a's, then b's), cycled: priority, due date, reference.
    assessments: Vec<(u8, i64, Option<u8>)>,
    /// (scope: 0 fix, 1 CVE, 2 finding; what it names; within b, a or everywhere; granted; length).
    exceptions: Vec<(u8, usize, u8, i64, i64)>,
}

fn plan_cases() -> impl proptest::strategy::Strategy<Value = PlanCase> {
    use proptest::collection::{btree_set, vec};
    use proptest::prelude::*;
    (
        btree_set((0..5usize, 0..10usize), 4..30),
        btree_set((0..2usize, 0..10usize), 1..12),
        vec(
            (
                prop_oneof![Just(30u8), Just(45), Just(90)],
                -800..3_000i64,
                proptest::option::of(0..3u8),
            ),
            1..12,
        ),
        vec(
            (0..3u8, 0..40usize, 0..3u8, -1_400..2_000i64, 1..3_000i64),
            1..5,
        ),
    )
        .prop_map(|(in_a, in_b, assessments, exceptions)| PlanCase {
            in_a,
            in_b,
            assessments,
            exceptions,
        })
}

/// The fix of finding `j` in [`plan_cases`]: security updates shared by several CVEs (and so
/// several findings of one asset), and upgrades of software with several versions.
fn plan_finding(i: usize, j: usize, reference: Option<u8>) -> rampart_model::Finding {
    let mut f = finding(i, j);
    f.recommended_update = (j % 4 != 3).then(|| format!("KB{}", j % 3));
    f.recommendation_reference = reference.map(|r| format!("ref-{r}"));
    f
}

/// The plan read from the roll-ups, which takes out what the findings exceptions cover
/// (crates/store/src/fix_plan/accepted.rs), is the plan counted from the findings for any
/// estate and exceptions of any scope and time: fixes with several CVEs and several findings
/// per asset, partly and wholly accepted, tied highest priorities, references, paused clocks.
async fn with_any_exceptions_the_rollup_reads_as_the_plan_counted_from_the_findings(
    store: Arc<dyn Store>,
) {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let explanation = Explanation {
        id: 42,
        contributions: "[]".into(),
    };
    for case in 0..12 {
        let c = plan_cases().new_tree(&mut runner).unwrap().current();
        let reference = |n: usize| c.assessments[n % c.assessments.len()].2;
        let mut ids = Vec::new();
        let mut n = 0;
        for (name, set, assets) in [("a", &c.in_a, 5), ("b", &c.in_b, 2)] {
            let i = integration(&store, &format!("plan-{case}-{name}")).await.id;
            let run = store.start_run(i, "full", t(-2000)).await.unwrap();
            let all: Vec<_> = (0..assets).map(asset).collect();
            store.upsert_assets(i, run, &all).await.unwrap();
            let found: Vec<_> = set
                .iter()
                .map(|(a, j)| {
                    n += 1;
                    plan_finding(*a, *j, reference(n - 1))
                })
                .collect();
            store.upsert_findings(i, run, &found).await.unwrap();
            store.finish_run(run, &succeeded(t(-1999))).await.unwrap();
            ids.push(i);
        }
        let (a, b) = (ids[0], ids[1]);
        let mut findings = all_findings(
            &store,
            FindingFilter {
                integration: Some(a),
                ..Default::default()
            },
        )
        .await;
        findings.extend(
            all_findings(
                &store,
                FindingFilter {
                    integration: Some(b),
                    ..Default::default()
                },
            )
            .await,
        );
        let writes: Vec<AssessmentWrite> = findings
            .iter()
            .enumerate()
            .map(|(n, f)| {
                let (priority, due, _) = c.assessments[n % c.assessments.len()];
                AssessmentWrite {
                    finding_id: f.id,
                    assessment: StoredAssessment {
                        decision: if priority == 90 {
                            Decision::Immediate
                        } else {
                            Decision::Scheduled
                        },
                        priority,
                        due_at: t(due),
                        clock_start: t(-1000),
                        explanation_id: 42,
                    },
                }
            })
            .collect();
        store
            .write_assessments(std::slice::from_ref(&explanation), &writes, t(-1000))
            .await
            .unwrap();
        for (kind, target, within, granted, length) in &c.exceptions {
            let f = &findings[target % findings.len()];
            let j = cve_index(&f.finding.key.cve_id);
            let within = match within {
                0 => Some(a),
                1 => Some(b),
                _ => None,
            };
            let (scope, within) = match kind {
                0 => {
                    let fix = match plan_finding(0, j, None).recommended_update {
                        Some(kb) => kb,
                        None => format!("Upgrade microsoft app_{}", j % 7),
                    };
                    (ExceptionScope::Fix(fix), within)
                }
                1 => (cve_scope(j), within),
                _ => (ExceptionScope::Finding(f.id), Some(f.integration_id)),
            };
            grant(&store, scope, within, t(*granted), t(granted + length)).await;
        }
        let views = || {
            let mut all = Vec::new();
            for now in [t(-1400), t(-300), t(700), t(2_500), t(6_000)] {
                for sort in [RemediationSort::Priority, RemediationSort::Overdue] {
                    for integration in [Some(a), Some(b)] {
                        all.push((now, sort, integration));
                    }
                }
            }
            all
        };
        let read_all = |store: Arc<dyn Store>| async move {
            let mut plans = Vec::new();
            for (now, sort, integration) in views() {
                let page = store
                    .remediations(
                        &Visibility::All,
                        &RemediationFilter { integration },
                        sort,
                        now,
                        0,
                        100,
                    )
                    .await
                    .unwrap();
                plans.push(page.items);
            }
            plans
        };
        // The immediate and overdue counts agree with each finding's own status, whether
        // exceptions are worked out in SQL (a fix exception and a stale roll-up) or from the
        // roll-up's software (crates/store/src/fix_plan/urgent.rs).
        let urgent_agree = |store: Arc<dyn Store>| async move {
            let all = all_findings(&store, FindingFilter::default()).await;
            for now in [t(-1400), t(-300), t(700), t(2_500), t(6_000)] {
                let counts = urgent(&store, now).await;
                let status = |f: &StoredFinding| f.sla_status(now);
                let overdue = all
                    .iter()
                    .filter(|f| status(f) == Some(SlaStatus::Overdue))
                    .count() as u64;
                let immediate = all
                    .iter()
                    .filter(|f| {
                        f.status == FindingStatus::Open
                            && f.decision == Some(Decision::Immediate)
                            && f.priority.is_some_and(|p| p >= 75.0)
                            && status(f) != Some(SlaStatus::Accepted)
                    })
                    .count() as u64;
                assert_eq!(
                    (counts.immediate, counts.overdue),
                    (immediate, overdue),
                    "case {case}, now {now}"
                );
                // The plan's own totals, which "Fix first" and the dashboard show.
                let (_, totals) = store
                    .remediations_and_counts(
                        &Visibility::All,
                        &RemediationFilter::default(),
                        RemediationSort::Priority,
                        now,
                        0,
                        1,
                    )
                    .await
                    .unwrap();
                assert_eq!(totals, counts, "case {case}, now {now}");
            }
        };
        // The assessments made both roll-ups stale: counted from the findings.
        let counted = read_all(store.clone()).await;
        urgent_agree(store.clone()).await;
        store.refresh_fix_plan(a, t(-1500)).await.unwrap();
        store.refresh_fix_plan(b, t(-1500)).await.unwrap();
        let read = read_all(store.clone()).await;
        for ((view, counted), read) in views().iter().zip(&counted).zip(&read) {
            assert_eq!(read, counted, "case {case} {c:?}, view {view:?}");
        }
        urgent_agree(store.clone()).await;
    }
}
