//! SLA settings, criticality rules, run snapshots and the SLA report (issue 14): settings read
//! back as saved and are audited, an integration's own SLA replaces the installation's, rules
//! keep their order, and the report's numbers on a hand-built estate (exact counts, time to fix,
//! compliance), the snapshot's statuses agreeing with the findings' own `sla_status`.

use rampart_model::IntegrationId;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use rampart_model::priority::{
    AssetMatcher, CriticalityRule, Decision, HumanImpact, SlaDays, SlaStatus,
};
use rampart_model::{Asset, WorkspaceId};
use rampart_store::{
    AssessmentWrite, Enqueued, ExceptionScope, Explanation, FindingFilter, IntegrationUpdate,
    JobKind, NewException, ReconcilePolicy, SlaReport, Store, StoreError, StoredAssessment,
    Visibility, burndown,
};

use crate::support::*;

scenarios!(
    sla_settings_round_trip_and_are_audited,
    an_integrations_own_sla_replaces_the_installations,
    criticality_rules_keep_their_order,
    snapshots_and_the_report_count_a_hand_built_estate,
    a_reassessment_job_merges_with_syncs_and_needs_no_app_slot,
);

fn days(immediate: u32, out_of_cycle: u32, scheduled: u32, defer: u32) -> SlaDays {
    SlaDays {
        immediate,
        out_of_cycle,
        scheduled,
        defer,
    }
}

async fn last_audit(store: &Arc<dyn Store>) -> (String, String, String) {
    let entry = store.list_audit(1).await.unwrap().remove(0);
    (entry.actor, entry.action, entry.details.unwrap_or_default())
}

async fn sla_settings_round_trip_and_are_audited(store: Arc<dyn Store>) {
    let defaults = store.sla_settings().await.unwrap();
    assert_eq!(defaults.days, days(2, 7, 30, 90));
    assert_eq!(defaults.updated_by, None);

    let saved = store
        .set_sla_settings(days(1, 5, 20, 60), "alice", t(0))
        .await
        .unwrap();
    assert_eq!(saved.days, days(1, 5, 20, 60));
    assert_eq!(saved.updated_by.as_deref(), Some("alice"));
    assert_eq!(saved.updated_at, Some(t(0)));
    assert_eq!(store.sla_settings().await.unwrap(), saved);
    assert_eq!(
        last_audit(&store).await,
        (
            "alice".into(),
            "sla.update".into(),
            "immediate 1 days, out-of-cycle 5, scheduled 20, defer 60".into()
        )
    );

    // Refused in words, and nothing changes.
    for (bad, words) in [
        (days(0, 7, 30, 90), "from 1 to 3650"),
        (days(2, 7, 30, 3651), "from 1 to 3650"),
        (days(10, 7, 30, 90), "must not get more time"),
    ] {
        match store.set_sla_settings(bad, "alice", t(1)).await {
            Err(StoreError::InvalidInput(m)) => assert!(m.contains(words), "{m}"),
            other => panic!("{bad:?} was not refused: {other:?}"),
        }
    }
    assert_eq!(store.sla_settings().await.unwrap(), saved);

    // Saving again replaces the one row.
    let again = store
        .set_sla_settings(days(3, 7, 30, 90), "bob", t(2))
        .await
        .unwrap();
    assert_eq!(again.days, days(3, 7, 30, 90));
    assert_eq!(again.updated_by.as_deref(), Some("bob"));
}

async fn an_integrations_own_sla_replaces_the_installations(store: Arc<dyn Store>) {
    let a = integration(&store, "a").await;
    let all = Visibility::All;
    assert_eq!(store.integration_sla(&all, a.id).await.unwrap(), None);

    let own = store
        .set_integration_sla(&all, a.id, Some(days(1, 3, 10, 30)), "alice", t(0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(own.days, days(1, 3, 10, 30));
    assert_eq!(own.updated_by, "alice");
    // The installation's is untouched.
    assert_eq!(store.sla_settings().await.unwrap().days, days(2, 7, 30, 90));
    let (_, action, details) = last_audit(&store).await;
    assert_eq!(action, "integration.sla");
    assert!(details.contains("immediate 1 days"), "{details}");

    // Another workspace's caller finds no such integration, reading or writing.
    let other = Visibility::Workspaces(vec![WorkspaceId(999)]);
    assert!(matches!(
        store.integration_sla(&other, a.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .set_integration_sla(&other, a.id, None, "mallory", t(1))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.integration_sla(&all, IntegrationId(999_999)).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .set_integration_sla(&all, a.id, Some(days(5, 3, 10, 30)), "alice", t(1))
            .await,
        Err(StoreError::InvalidInput(_))
    ));
    assert_eq!(
        store
            .integration_sla(&all, a.id)
            .await
            .unwrap()
            .unwrap()
            .days,
        days(1, 3, 10, 30)
    );

    // Removed: the installation's applies again.
    assert_eq!(
        store
            .set_integration_sla(&all, a.id, None, "alice", t(2))
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.integration_sla(&all, a.id).await.unwrap(), None);
    let (_, action, details) = last_audit(&store).await;
    assert_eq!(
        (action.as_str(), details.as_str()),
        ("integration.sla", "the installation's SLA applies")
    );

    // Removing the integration removes its SLA.
    store
        .set_integration_sla(&all, a.id, Some(days(1, 3, 10, 30)), "alice", t(3))
        .await
        .unwrap();
    store.delete_integration(a.id).await.unwrap();
    assert!(matches!(
        store.integration_sla(&all, a.id).await,
        Err(StoreError::NotFound(_))
    ));
}

fn rule(name: &str, matcher: AssetMatcher, criticality: HumanImpact) -> CriticalityRule {
    CriticalityRule {
        name: name.into(),
        matcher,
        criticality,
    }
}

async fn criticality_rules_keep_their_order(store: Arc<dyn Store>) {
    assert!(store.criticality_rules().await.unwrap().is_empty());
    let rules = vec![
        rule("pci", AssetMatcher::Tag("pci".into()), HumanImpact::High),
        rule(
            "lab",
            AssetMatcher::NameGlob("lab-*".into()),
            HumanImpact::Low,
        ),
        rule(
            "scada",
            AssetMatcher::DeviceGroup("OT".into()),
            HumanImpact::VeryHigh,
        ),
        rule(
            "prod-rg",
            AssetMatcher::ResourceIdPrefix("/subscriptions/1/resourceGroups/prod".into()),
            HumanImpact::High,
        ),
    ];
    let saved = store
        .set_criticality_rules(&rules, "alice", t(0))
        .await
        .unwrap();
    let read: Vec<CriticalityRule> = saved.iter().map(|r| r.rule.clone()).collect();
    assert_eq!(read, rules);
    assert!(
        saved
            .iter()
            .all(|r| r.updated_by == "alice" && r.updated_at == t(0))
    );
    let (_, action, details) = last_audit(&store).await;
    assert_eq!(action, "criticality_rules.update");
    assert!(
        details.starts_with("pci: tag:pci → high; lab:"),
        "{details}"
    );

    // Reordered and one removed: read back in the new order.
    let reordered = vec![rules[2].clone(), rules[0].clone(), rules[3].clone()];
    store
        .set_criticality_rules(&reordered, "bob", t(1))
        .await
        .unwrap();
    let read: Vec<CriticalityRule> = store
        .criticality_rules()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.rule)
        .collect();
    assert_eq!(read, reordered);

    // Refused in words: a name used twice, a rule matching nothing; the rules stay.
    for (bad, words) in [
        (
            vec![
                rules[0].clone(),
                rule("PCI", AssetMatcher::Tag("x".into()), HumanImpact::Low),
            ],
            "two criticality rules are named",
        ),
        (
            vec![rule(
                "empty",
                AssetMatcher::Tag(" ".into()),
                HumanImpact::Low,
            )],
            "nothing to match",
        ),
    ] {
        match store.set_criticality_rules(&bad, "bob", t(2)).await {
            Err(StoreError::InvalidInput(m)) => assert!(m.contains(words), "{m}"),
            other => panic!("{bad:?} was not refused: {other:?}"),
        }
    }
    assert_eq!(store.criticality_rules().await.unwrap().len(), 3);

    // Cleared.
    store.set_criticality_rules(&[], "bob", t(3)).await.unwrap();
    assert!(store.criticality_rules().await.unwrap().is_empty());
    assert_eq!(last_audit(&store).await.2, "no rules");
}

/// Asset `i`'s finding of CVE `j` (support's estate: CVE `j` has severity critical, high,
/// medium, low for `j` 0..4).
async fn finding_id(store: &Arc<dyn Store>, i: usize, j: usize) -> i64 {
    all_findings(store, FindingFilter::default())
        .await
        .iter()
        .find(|f| {
            f.finding.key.asset_source_id == device_id(i) && f.finding.key.cve_id.as_str() == cve(j)
        })
        .unwrap()
        .id
}

/// The statuses of the open findings at `now`, as each finding reports it.
async fn statuses(store: &Arc<dyn Store>, now: DateTime<Utc>) -> [u64; 3] {
    let mut counts = [0; 3];
    for f in all_findings(store, FindingFilter::default()).await {
        match f.sla_status(now) {
            Some(SlaStatus::Overdue) => counts[0] += 1,
            Some(SlaStatus::DueSoon) => counts[1] += 1,
            Some(SlaStatus::Accepted) => counts[2] += 1,
            _ => {}
        }
    }
    counts
}

/// The snapshot rows' (overdue, due soon, accepted) totals.
fn snapshot_statuses(rows: &[rampart_store::SlaSnapshot]) -> [u64; 3] {
    rows.iter().fold([0; 3], |mut c, r| {
        c[0] += r.overdue;
        c[1] += r.due_soon;
        c[2] += r.accepted;
        c
    })
}

async fn snapshots_and_the_report_count_a_hand_built_estate(store: Arc<dyn Store>) {
    // Two assets with CVEs 0..4 each; CVE j is immediate, out-of-cycle, scheduled, defer for j
    // 0..4, due t(0), t(100), t(10_000), t(20_000). Clocks start at t(-1000), but asset 1's
    // CVE 3 at t(-3000).
    let a = integration(&store, "a").await.id;
    let run1 = full_run_seeing(&store, a, t(-2000), 2, 4).await;
    store.finish_run(run1, &succeeded(t(-1999))).await.unwrap();
    let decisions = [
        (Decision::Immediate, t(0)),
        (Decision::OutOfCycle, t(100)),
        (Decision::Scheduled, t(10_000)),
        (Decision::Defer, t(20_000)),
    ];
    let mut writes = Vec::new();
    for i in 0..2 {
        for (j, (decision, due_at)) in decisions.iter().enumerate() {
            writes.push(AssessmentWrite {
                finding_id: finding_id(&store, i, j).await,
                assessment: StoredAssessment {
                    decision: *decision,
                    priority: 10 + j as u8,
                    due_at: *due_at,
                    clock_start: if (i, j) == (1, 3) { t(-3000) } else { t(-1000) },
                    explanation_id: 7,
                },
            });
        }
    }
    let explanation = Explanation {
        id: 7,
        contributions: "[]".into(),
    };
    store
        .write_assessments(&[explanation], &writes, t(-1000))
        .await
        .unwrap();
    // CVE 3 accepted in this integration.
    store
        .create_exception(
            &Visibility::All,
            &NewException {
                scope: ExceptionScope::Cve(cve(3).parse().unwrap()),
                integration: Some(a),
                reason: "isolated network".into(),
                owner: "ops".into(),
                created_by: "alice".into(),
                created_at: t(-10),
                expires_at: t(100_000),
            },
        )
        .await
        .unwrap();

    // At t(50): CVE 0 overdue; CVE 1 due soon (50 of 1,100 minutes left); CVE 2 on track;
    // CVE 3 accepted.
    store.record_sla_snapshot(a, run1, t(50)).await.unwrap();
    let first = store.latest_sla_snapshots(&Visibility::All).await.unwrap();
    assert_eq!(first.len(), 4, "{first:?}");
    for r in &first {
        let (open, overdue, due_soon, accepted) = match r.decision {
            Some(Decision::Immediate) => (2, 2, 0, 0),
            Some(Decision::OutOfCycle) => (2, 0, 2, 0),
            Some(Decision::Scheduled) => (2, 0, 0, 0),
            Some(Decision::Defer) => (2, 0, 0, 2),
            None => panic!("{r:?}"),
        };
        assert_eq!(
            (r.open, r.overdue, r.due_soon, r.accepted),
            (open, overdue, due_soon, accepted),
            "{r:?}"
        );
        assert_eq!((r.integration_id, r.run_id, r.taken_at), (a, run1, t(50)));
    }
    // The snapshot's SQL and the findings' own status agree.
    assert_eq!(snapshot_statuses(&first), statuses(&store, t(50)).await);

    // The second run no longer sees asset 1's CVEs 0 and 3: fixed at t(61), CVE 0 after its due
    // date (17 hours after its clock started), CVE 3 before (51 hours after).
    let run2 = store.start_run(a, "full", t(60)).await.unwrap();
    let assets: Vec<Asset> = (0..2).map(asset).collect();
    store.upsert_assets(a, run2, &assets).await.unwrap();
    let mut seen = findings(1, 4);
    seen.push(finding(1, 1));
    seen.push(finding(1, 2));
    store.upsert_findings(a, run2, &seen).await.unwrap();
    store
        .reconcile(a, run2, ReconcilePolicy::new(t(61)))
        .await
        .unwrap();
    store.finish_run(run2, &succeeded(t(62))).await.unwrap();
    store.record_sla_snapshot(a, run2, t(70)).await.unwrap();
    let latest = store.latest_sla_snapshots(&Visibility::All).await.unwrap();
    assert!(latest.iter().all(|r| r.run_id == run2), "{latest:?}");
    assert_eq!(snapshot_statuses(&latest), statuses(&store, t(70)).await);

    let fixed = store
        .fixed_for_sla(&Visibility::All, t(0), t(100))
        .await
        .unwrap();
    let report = SlaReport::build(&latest, &fixed);
    let total = &report.total;
    assert_eq!(
        (
            total.open,
            total.on_track,
            total.due_soon,
            total.overdue,
            total.accepted
        ),
        (6, 2, 2, 1, 1)
    );
    assert_eq!(
        (total.fixed, total.fixed_with_due, total.fixed_on_time),
        (2, 2, 1)
    );
    assert_eq!(total.median_hours_to_fix, Some(17));
    assert_eq!(total.p90_hours_to_fix, Some(51));
    assert_eq!(total.compliance_percent, Some(50.0));

    // (decision, open, fixed, compliance, median hours)
    type Line = (Decision, u64, u64, Option<f64>, Option<i64>);
    let by_decision: Vec<Line> = report
        .by_decision
        .iter()
        .map(|(d, l)| {
            (
                *d,
                l.open,
                l.fixed,
                l.compliance_percent,
                l.median_hours_to_fix,
            )
        })
        .collect();
    assert_eq!(
        by_decision,
        vec![
            (Decision::Immediate, 1, 1, Some(0.0), Some(17)),
            (Decision::OutOfCycle, 2, 0, None, None),
            (Decision::Scheduled, 2, 0, None, None),
            (Decision::Defer, 1, 1, Some(100.0), Some(51)),
        ]
    );
    let by_severity: Vec<(u8, u64, u64)> = report
        .by_severity
        .iter()
        .map(|(s, l)| (*s, l.open, l.fixed))
        .collect();
    assert_eq!(
        by_severity,
        vec![(4, 1, 1), (3, 2, 0), (2, 2, 0), (1, 1, 1)]
    );
    assert_eq!(report.by_integration.len(), 1);
    assert_eq!(report.as_of, vec![(a, t(70))]);
    // Outside the period, nothing was fixed.
    assert!(
        store
            .fixed_for_sla(&Visibility::All, t(62), t(100))
            .await
            .unwrap()
            .is_empty()
    );

    // The burn-down: one point per run.
    let rows = store
        .sla_snapshots(&Visibility::All, Some(a), t(0))
        .await
        .unwrap();
    let points = burndown(&rows);
    let open: Vec<[u64; 4]> = points.iter().map(|p| p.open).collect();
    assert_eq!(open, vec![[2, 2, 2, 2], [1, 2, 2, 1]]);
    assert_eq!(
        points.iter().map(|p| p.at).collect::<Vec<_>>(),
        vec![t(50), t(70)]
    );

    // An integration without open findings records a row of zeros.
    let b = integration(&store, "b").await.id;
    let run_b = store.start_run(b, "full", t(80)).await.unwrap();
    store.record_sla_snapshot(b, run_b, t(81)).await.unwrap();
    let all = store
        .sla_snapshots(&Visibility::All, None, t(0))
        .await
        .unwrap();
    let zero: Vec<_> = all.iter().filter(|r| r.integration_id == b).collect();
    assert_eq!(zero.len(), 1);
    assert_eq!((zero[0].decision, zero[0].open), (None, 0));
    assert_eq!(burndown(&all).last().unwrap().open, [1, 2, 2, 1]);

    // Another workspace sees none of it.
    let other = Visibility::Workspaces(vec![WorkspaceId(999)]);
    assert!(store.latest_sla_snapshots(&other).await.unwrap().is_empty());
    assert!(
        store
            .sla_snapshots(&other, None, t(0))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .fixed_for_sla(&other, t(0), t(100))
            .await
            .unwrap()
            .is_empty()
    );
}

/// A re-assessment job (after a settings change): it takes a sync's later slot, a sync asked for
/// replaces it (a sync assesses too), it leaves a requested sync alone; and since it calls no
/// API it runs for a disabled integration and while another integration of the same app
/// registration syncs.
async fn a_reassessment_job_merges_with_syncs_and_needs_no_app_slot(store: Arc<dyn Store>) {
    let a = integration(&store, "a").await.id;
    // The same app registration as a.
    let b = integration(&store, "b").await.id;
    // Longer than the test's clock runs: no job is taken over.
    let lease = std::time::Duration::from_secs(3600);

    store
        .enqueue_job(a, JobKind::Scheduled, t(60), t(0))
        .await
        .unwrap();
    let e = store
        .enqueue_job(a, JobKind::Reassess, t(0), t(0))
        .await
        .unwrap();
    assert_eq!((e.job().kind, e.job().run_at), (JobKind::Reassess, t(0)));
    let e = store
        .enqueue_job(a, JobKind::Requested, t(1), t(1))
        .await
        .unwrap();
    assert_eq!((e.job().kind, e.job().run_at), (JobKind::Requested, t(0)));
    assert!(matches!(
        store
            .enqueue_job(a, JobKind::Reassess, t(2), t(2))
            .await
            .unwrap(),
        Enqueued::AlreadyQueued(_)
    ));

    // a's sync runs with the app registration.
    let running = store
        .claim_job("w1", t(3), lease, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (running.integration_id, running.kind),
        (a, JobKind::Requested)
    );
    assert!(matches!(
        store
            .enqueue_job(a, JobKind::Reassess, t(3), t(3))
            .await
            .unwrap(),
        Enqueued::Running(_)
    ));
    // b, disabled, is re-assessed meanwhile; a sync of b would wait for the app registration.
    store
        .update_integration(
            b,
            &IntegrationUpdate {
                enabled: Some(false),
                ..IntegrationUpdate::default()
            },
        )
        .await
        .unwrap();
    store
        .enqueue_job(b, JobKind::Reassess, t(4), t(4))
        .await
        .unwrap();
    let claimed = store
        .claim_job("w2", t(5), lease, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (claimed.integration_id, claimed.kind),
        (b, JobKind::Reassess)
    );
    store
        .finish_job(claimed.id, "w2", t(6), None)
        .await
        .unwrap();
    store
        .enqueue_job(b, JobKind::Requested, t(7), t(7))
        .await
        .unwrap();
    assert_eq!(
        store.claim_job("w2", t(8), lease, None).await.unwrap(),
        None
    );
}
