//! Stored prioritisation (issue 14) over real syncs from the emulator: every open finding gets a
//! decision, a priority with its explanation and a due date; a fixed one has nothing pending; a
//! re-assessment with nothing changed writes nothing; a CVE entering CISA KEV escalates its
//! findings by the rule of docs/prioritisation.md and shows them in `changed_since`.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use futures::TryStreamExt;
use rampart_microsoft::KevClient;
use rampart_model::FindingStatus;
use rampart_model::priority::{Decision, SlaPolicy, SlaStatus};
use rampart_sim::{KEV_PATH, SimConfig};
use rampart_store::{AssessScope, FindingFilter, FindingOrder, Store, StoredFinding};
use rampart_sync::intel::refresh_kev;
use rampart_sync::priority::{PriorityPolicy, assess_integration};

use crate::harness::{Harness, finding_rows, full, harness, small_tenant};

type Stored = (Option<Decision>, Option<f64>, Option<DateTime<Utc>>, String);

/// Finding id → its stored decision, priority, due date and explanation.
fn assessments(findings: &[StoredFinding]) -> BTreeMap<i64, Stored> {
    findings
        .iter()
        .map(|f| {
            (
                f.id,
                (
                    f.decision,
                    f.priority,
                    f.due_at,
                    serde_json::to_string(&f.priority_factors).expect("json"),
                ),
            )
        })
        .collect()
}

/// What must hold of every finding after any sync.
fn assert_every_finding_is_prioritised(findings: &[StoredFinding], now: DateTime<Utc>) {
    assert!(!findings.is_empty());
    let sla = SlaPolicy::default();
    for f in findings {
        let factors = f.priority_factors.as_ref().expect("an explanation");
        let priority = f.priority.expect("a priority");
        let points: u32 = factors.iter().map(|c| u32::from(c.points)).sum();
        assert_eq!(f64::from(points), priority, "finding {}", f.id);
        assert!((0.0..=100.0).contains(&priority));
        match f.status {
            FindingStatus::Open => {
                let decision = f.decision.expect("a decision");
                let due = f.due_at.expect("a due date");
                let start = f.clock_start.expect("a clock start");
                // First assessed on this sync: due the decision's SLA after Microsoft's first-seen.
                assert_eq!(due, sla.due_at(decision, start), "finding {}", f.id);
                assert!(f.sla_status(now).is_some());
            }
            FindingStatus::Fixed => {
                assert_eq!((f.decision, f.due_at), (None, None), "finding {}", f.id);
                assert_eq!(
                    f.sla_status(now),
                    Some(rampart_model::priority::SlaStatus::Closed)
                );
            }
        }
    }
}

async fn filtered(h: &Harness, filter: FindingFilter) -> Vec<StoredFinding> {
    h.store
        .stream_findings(
            rampart_store::Visibility::All,
            FindingFilter {
                integration: Some(h.integration.id),
                ..filter
            },
        )
        .try_collect()
        .await
        .expect("findings")
}

async fn all_findings(h: &Harness) -> Vec<StoredFinding> {
    finding_rows(&h.store, Some(h.integration.id), None).await
}

/// Over several generated tenants and points in simulated time (findings appearing, being fixed
/// and reopened), every open finding has a decision, a priority that its explanation adds up to
/// and a due date; every fixed one has none pending.
pub async fn every_open_finding_is_prioritised_and_fixed_ones_have_nothing_pending(
    store: Arc<dyn Store>,
) {
    let h = harness(
        Arc::clone(&store),
        SimConfig {
            seed: 31,
            devices: 60,
            findings_per_device: 12,
            ..SimConfig::default()
        },
    )
    .await;
    for ticks in [0, 8, 40, 3] {
        h.sim.sim.tick(ticks);
        h.sync_ok(full()).await;
        let findings = all_findings(&h).await;
        let now = Utc::now();
        assert_every_finding_is_prioritised(&findings, now);
        // A run re-assesses only the findings whose inputs changed: assessing all of them again
        // finds nothing stale.
        let again = assess_integration(
            &*h.store,
            &h.integration,
            AssessScope::All,
            &PriorityPolicy::default(),
            now,
        )
        .await
        .expect("assess");
        assert_eq!(
            (again.assessed, again.changed),
            (0, 0),
            "tick {ticks}: {again:?}"
        );
        // The store's SLA status and decision filters agree with the model's, on both engines.
        for status in [
            SlaStatus::OnTrack,
            SlaStatus::DueSoon,
            SlaStatus::Overdue,
            SlaStatus::Closed,
            SlaStatus::Accepted,
        ] {
            let filtered = filtered(
                &h,
                FindingFilter {
                    sla_status: Some((status, now)),
                    ..FindingFilter::default()
                },
            )
            .await;
            let expected = findings
                .iter()
                .filter(|f| f.sla_status(now) == Some(status))
                .count();
            assert_eq!(filtered.len(), expected, "{status:?} at tick {ticks}");
        }
        for decision in Decision::ALL {
            let filtered = filtered(
                &h,
                FindingFilter {
                    decision: Some(decision),
                    ..FindingFilter::default()
                },
            )
            .await;
            let expected = findings
                .iter()
                .filter(|f| f.decision == Some(decision))
                .count();
            assert_eq!(filtered.len(), expected, "{decision} at tick {ticks}");
        }
        if ticks == 40 {
            assert!(
                findings.iter().any(|f| f.status == FindingStatus::Fixed),
                "the clock moved far enough for some findings to be fixed"
            );
        }
    }
}

pub async fn a_resync_with_nothing_changed_leaves_every_priority_as_it_was(store: Arc<dyn Store>) {
    let h = harness(Arc::clone(&store), small_tenant()).await;
    h.sync_ok(full()).await;
    let first = assessments(&all_findings(&h).await);

    h.sync_ok(full()).await;
    assert_eq!(assessments(&all_findings(&h).await), first);

    // Walked page by page in either priority order, on both engines: every open finding once,
    // strictly ordered by (priority, id).
    let open = FindingFilter {
        integration: Some(h.integration.id),
        status: Some(FindingStatus::Open),
        ..FindingFilter::default()
    };
    let expected = first.values().filter(|a| a.0.is_some()).count();
    for order in [FindingOrder::PriorityDesc, FindingOrder::PriorityAsc] {
        let mut walked: Vec<(f64, i64)> = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .findings_sorted(&rampart_store::Visibility::All, &open, order, after, 37)
                .await
                .expect("page");
            walked.extend(page.items.iter().map(|f| (f.priority.expect("p"), f.id)));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(walked.len(), expected, "{order:?}");
        for w in walked.windows(2) {
            match order {
                FindingOrder::PriorityDesc => assert!(w[0] > w[1], "{w:?}"),
                FindingOrder::PriorityAsc => assert!(w[0] < w[1], "{w:?}"),
            }
        }
    }

    // Assessing again writes nothing, so nothing is changed since.
    let after = Utc::now();
    let counts = assess_integration(
        &*store,
        &h.integration,
        AssessScope::All,
        &PriorityPolicy::default(),
        Utc::now(),
    )
    .await
    .expect("assess");
    assert_eq!((counts.assessed, counts.changed), (0, 0), "{counts:?}");
    assert!(
        counts.computed > 0 && counts.computed < counts.read,
        "{counts:?}"
    );
    let changed: Vec<StoredFinding> = store
        .stream_findings(
            rampart_store::Visibility::All,
            FindingFilter {
                integration: Some(h.integration.id),
                changed_since: Some(after),
                ..FindingFilter::default()
            },
        )
        .try_collect()
        .await
        .expect("findings");
    assert!(changed.is_empty(), "{} changed", changed.len());
    assert_eq!(assessments(&all_findings(&h).await), first);
}

pub async fn a_cve_entering_kev_escalates_its_findings_and_shows_them_changed(
    store: Arc<dyn Store>,
) {
    let h = harness(Arc::clone(&store), small_tenant()).await;
    h.sync_ok(full()).await;
    let before = all_findings(&h).await;

    let listed: Vec<String> = h.sim.sim.kev_listed();
    let affected: Vec<&StoredFinding> = before
        .iter()
        .filter(|f| {
            f.status == FindingStatus::Open
                && listed.iter().any(|c| c == f.finding.key.cve_id.as_str())
        })
        .collect();
    assert!(!affected.is_empty(), "the tenant has findings of KEV CVEs");

    // Stored to the microsecond.
    let refreshed_at = Utc::now().trunc_subsecs(6);
    let client = KevClient::new(&format!("{}{KEV_PATH}", h.sim.url)).expect("client");
    let update = refresh_kev(&*store, &client, refreshed_at)
        .await
        .expect("refresh");
    assert!(update.replaced);

    let after: BTreeMap<i64, StoredFinding> = all_findings(&h)
        .await
        .into_iter()
        .map(|f| (f.id, f))
        .collect();
    let changed: BTreeMap<i64, StoredFinding> = store
        .stream_findings(
            rampart_store::Visibility::All,
            FindingFilter {
                integration: Some(h.integration.id),
                changed_since: Some(refreshed_at - chrono::TimeDelta::microseconds(1)),
                ..FindingFilter::default()
            },
        )
        .map_ok(|f| (f.id, f))
        .try_collect()
        .await
        .expect("findings");
    let sla = SlaPolicy::default();
    let mut escalated = 0;
    for old in &affected {
        let new = &after[&old.id];
        let (d0, d1) = (old.decision.expect("d0"), new.decision.expect("d1"));
        assert!(d1 >= d0, "finding {}: {d0} → {d1}", old.id);
        assert!(
            d1 >= Decision::Scheduled,
            "an exploited CVE is never deferred"
        );
        assert!(new.priority >= old.priority, "finding {}", old.id);
        let exploitation = new
            .priority_factors
            .as_ref()
            .expect("factors")
            .iter()
            .find(|c| c.factor == rampart_model::priority::FactorName::Exploitation)
            .expect("exploitation")
            .value
            .clone();
        assert_eq!(exploitation, "active (kev)");
        let (due0, due1) = (old.due_at.expect("due0"), new.due_at.expect("due1"));
        if d1 == d0 {
            assert_eq!(
                due1, due0,
                "finding {}: same decision, same due date",
                old.id
            );
        } else {
            escalated += 1;
            assert_eq!(
                due1,
                due0.min(refreshed_at + sla.window(d1)),
                "finding {}: the earlier of the old date and the change + the new SLA",
                old.id
            );
        }
        assert!(changed.contains_key(&old.id), "finding {} changed", old.id);
    }
    assert!(escalated > 0, "some findings changed decision");
    // Findings of CVEs not in KEV were not touched.
    for f in &before {
        if !affected.iter().any(|a| a.id == f.id) {
            assert!(!changed.contains_key(&f.id), "finding {} untouched", f.id);
            assert_eq!(after[&f.id].due_at, f.due_at);
        }
    }
}

/// Changing an integration's SLA days re-assesses its findings: each open finding is due the new
/// SLA after its clock started (none was escalated here), and shows in `changed_since`. A
/// `tag:VIP → very-high` rule raises the human impact and priority of findings on tagged devices;
/// removing it gives them back the priorities they had. Each run records its burn-down snapshot.
pub async fn changed_sla_days_and_rules_reassess_the_findings(store: Arc<dyn Store>) {
    use rampart_model::priority::{
        AssetMatcher, CriticalityRule, FactorName, HumanImpact, SlaDays,
    };
    use rampart_store::Visibility;
    use rampart_sync::priority::{queue_if_stale, queue_reassessment, reassess};

    let h = harness(Arc::clone(&store), small_tenant()).await;
    h.sync_ok(full()).await;
    let snapshots = store
        .latest_sla_snapshots(&Visibility::All)
        .await
        .expect("snapshots");
    let open: Vec<StoredFinding> = all_findings(&h)
        .await
        .into_iter()
        .filter(|f| f.status == FindingStatus::Open)
        .collect();
    assert_eq!(
        snapshots.iter().map(|s| s.open).sum::<u64>(),
        open.len() as u64,
        "the run recorded its open findings"
    );
    let before = assessments(&all_findings(&h).await);

    // The integration's own SLA.
    let days = SlaDays {
        immediate: 1,
        out_of_cycle: 3,
        scheduled: 10,
        defer: 30,
    };
    let changed_at = Utc::now().trunc_subsecs(6);
    store
        .set_integration_sla(
            &Visibility::All,
            h.integration.id,
            Some(days),
            "alice",
            changed_at,
        )
        .await
        .expect("saved");
    assert_eq!(
        queue_reassessment(&*store, &[h.integration.id], changed_at)
            .await
            .expect("queued"),
        1
    );
    // As a worker runs the job: claimed, run, finished.
    let job = store
        .claim_job(
            "test-worker",
            Utc::now(),
            rampart_store::JOB_LEASE,
            Some(h.integration.id),
        )
        .await
        .expect("claim")
        .expect("the re-assessment is due");
    assert_eq!(job.kind, rampart_store::JobKind::Reassess);
    let counts = reassess(&*store, &h.integration, Utc::now())
        .await
        .expect("reassessed");
    store
        .finish_job(job.id, "test-worker", Utc::now(), None)
        .await
        .expect("finished");
    assert_eq!(counts.changed, open.len() as u64, "{counts:?}");
    let sla = SlaPolicy::new(days).expect("valid");
    let changed: BTreeMap<i64, StoredFinding> = filtered(
        &h,
        FindingFilter {
            changed_since: Some(changed_at - chrono::TimeDelta::microseconds(1)),
            ..FindingFilter::default()
        },
    )
    .await
    .into_iter()
    .map(|f| (f.id, f))
    .collect();
    for f in &open {
        let new = changed.get(&f.id).expect("changed since");
        let decision = new.decision.expect("decision");
        assert_eq!(f.decision, Some(decision), "the decision stays");
        assert_eq!(
            new.due_at,
            Some(sla.due_at(decision, new.clock_start.expect("clock"))),
            "finding {}",
            f.id
        );
    }
    // Nothing left to do: a second re-assessment changes nothing.
    let again = reassess(&*store, &h.integration, Utc::now())
        .await
        .expect("again");
    assert_eq!((again.read, again.changed), (0, 0), "{again:?}");

    // A rule for the VIP tag.
    let tagged: Vec<String> = store
        .stream_assets(
            Visibility::All,
            rampart_store::AssetFilter {
                integration: Some(h.integration.id),
                ..rampart_store::AssetFilter::default()
            },
        )
        .try_collect::<Vec<_>>()
        .await
        .expect("assets")
        .into_iter()
        .filter(|a| a.asset.tags.iter().any(|t| t.eq_ignore_ascii_case("vip")))
        .map(|a| a.asset.source_id)
        .collect();
    let on_tagged: Vec<&StoredFinding> = open
        .iter()
        .filter(|f| tagged.contains(&f.finding.key.asset_source_id))
        .collect();
    assert!(
        !on_tagged.is_empty(),
        "the tenant has VIP devices with findings"
    );
    let with_rule = Utc::now().trunc_subsecs(6);
    store
        .set_criticality_rules(
            &[CriticalityRule {
                name: "vip".into(),
                matcher: AssetMatcher::Tag("VIP".into()),
                criticality: HumanImpact::VeryHigh,
            }],
            "alice",
            with_rule,
        )
        .await
        .expect("rules");
    // A worker finishing a job sees the findings were assessed under other settings.
    assert!(
        queue_if_stale(&*store, h.integration.id, with_rule)
            .await
            .expect("checked"),
        "a re-assessment is queued"
    );
    reassess(&*store, &h.integration, with_rule)
        .await
        .expect("reassessed");
    let after: BTreeMap<i64, StoredFinding> = all_findings(&h)
        .await
        .into_iter()
        .map(|f| (f.id, f))
        .collect();
    let human_impact = |f: &StoredFinding| {
        f.priority_factors
            .as_ref()
            .expect("factors")
            .iter()
            .find(|c| c.factor == FactorName::HumanImpact)
            .expect("human impact")
            .value
            .clone()
    };
    for f in &on_tagged {
        let new = &after[&f.id];
        assert!(
            human_impact(new).contains("rule vip"),
            "{}",
            human_impact(new)
        );
        assert!(new.priority > f.priority, "finding {}", f.id);
        assert!(new.decision >= f.decision, "finding {}", f.id);
    }
    for f in open
        .iter()
        .filter(|f| !tagged.contains(&f.finding.key.asset_source_id))
    {
        assert_eq!(
            after[&f.id].priority, f.priority,
            "untagged finding {}",
            f.id
        );
    }

    // Removed: the priorities and explanations are back.
    store
        .set_criticality_rules(&[], "alice", Utc::now())
        .await
        .expect("rules");
    reassess(&*store, &h.integration, Utc::now())
        .await
        .expect("reassessed");
    let reverted = assessments(&all_findings(&h).await);
    for f in &open {
        let (d0, p0, _, e0) = &before[&f.id];
        let (d1, p1, _, e1) = &reverted[&f.id];
        assert_eq!((d0, p0, e0), (d1, p1, e1), "finding {}", f.id);
    }

    // A run that changes nothing within the hour records no new point (the last one stands);
    // the next run that changes findings records the burn-down's second point.
    let points = || async {
        let rows = store
            .sla_snapshots(
                &Visibility::All,
                Some(h.integration.id),
                changed_at - chrono::TimeDelta::days(1),
            )
            .await
            .expect("rows");
        rampart_store::burndown(&rows).len()
    };
    h.sync_ok(full()).await;
    assert_eq!(points().await, 1);
    h.sim.sim.tick(3);
    h.sync_ok(full()).await;
    assert_eq!(points().await, 2);
}

/// Defender for Cloud's risk as a priority input (docs/prioritisation.md, "Exposure"): a cloud
/// finding's exposure comes from the risk factors of its resource's unhealthy recommendations
/// (internet exposure makes it open; a risk evaluated without one, controlled; an attack path
/// alone, at least controlled), and the risk level of the recommendation it came from is its
/// `cloud_risk` factor, all as the store holds the recommendations after the sync.
pub async fn cloud_findings_take_exposure_and_risk_from_defender_for_clouds_risk(
    store: Arc<dyn Store>,
) {
    use std::collections::HashMap;

    use rampart_store::{RecommendationFilter, Visibility};

    let h = crate::harness::synced_cloud(Arc::clone(&store), crate::cloud::cloud_tenant()).await;
    let recommendations: Vec<_> = store
        .stream_recommendations(
            Visibility::All,
            RecommendationFilter {
                integration: Some(h.integration.id),
                status: Some("Unhealthy".into()),
                ..RecommendationFilter::default()
            },
        )
        .try_collect()
        .await
        .expect("recommendations");
    // Per resource with an asset: whether a risk was evaluated, an internet factor, an attack
    // path.
    let mut of_asset: HashMap<String, (bool, bool, bool)> = HashMap::new();
    let mut level_of: HashMap<String, String> = HashMap::new();
    // The emulator's vulnerability recommendations (machines, registry images), by resource.
    let mut vulnerability_level_of: HashMap<String, String> = HashMap::new();
    for r in &recommendations {
        let Some(risk) = r.recommendation.risk.as_ref().filter(|k| !k.is_empty()) else {
            continue;
        };
        if let Some(level) = &risk.level {
            level_of.insert(
                r.recommendation.assessment_id.clone(),
                level.to_ascii_lowercase(),
            );
            if [
                "1195afff-c881-495e-9bc5-1486211ae03f",
                "c0b7cfc6-3172-465a-b378-53c7ff2cc0d5",
            ]
            .contains(&r.recommendation.key.as_str())
            {
                // One per resource in the emulator.
                vulnerability_level_of.insert(
                    r.recommendation.resource_id.clone(),
                    level.to_ascii_lowercase(),
                );
            }
        }
        if r.asset_id.is_some() {
            let resource = r.recommendation.resource_id.to_ascii_lowercase();
            let e = of_asset.entry(resource).or_default();
            e.0 = true;
            e.1 |= risk
                .factors
                .iter()
                .any(|f| f.to_ascii_lowercase().contains("internet"));
            e.2 |= !risk.attack_paths.is_empty();
        }
    }
    let findings = finding_rows(&store, Some(h.integration.id), Some(FindingStatus::Open)).await;
    assert!(!findings.is_empty());
    let mut seen = std::collections::BTreeSet::new();
    for f in &findings {
        let factors = f.priority_factors.as_ref().expect("an explanation");
        let value = |name: &str| {
            factors
                .iter()
                .find(|c| c.factor.as_str() == name)
                .map(|c| c.value.clone())
                .unwrap_or_else(|| panic!("no {name} factor on finding {}", f.id))
        };
        let exposure = value("exposure");
        let resource = f.finding.key.asset_source_id.to_ascii_lowercase();
        let want = match of_asset.get(&resource) {
            Some((_, true, _)) => "open (cloud-internet-exposure)",
            Some((true, false, _)) => "controlled (cloud-risk-without-internet)",
            _ => "open (unknown)",
        };
        assert_eq!(exposure, want, "finding {}", f.id);
        seen.insert(want);
        let reference = f
            .finding
            .recommendation_reference
            .clone()
            .expect("a cloud finding names its recommendation");
        // Its own recommendation's, its parent's (a legacy sub-assessment), else its resource's
        // vulnerability recommendation's.
        let level = level_of
            .get(&reference)
            .cloned()
            .or_else(|| {
                let parent = &reference[..reference.rfind("/subassessments/")?];
                level_of.get(parent).cloned()
            })
            .or_else(|| vulnerability_level_of.get(&resource).cloned());
        let cloud_risk = value("cloud_risk");
        match level {
            Some(level) => assert_eq!(cloud_risk, level, "finding {}", f.id),
            None => assert!(cloud_risk.starts_with("unknown"), "finding {}", f.id),
        }
        if !cloud_risk.starts_with("unknown") {
            seen.insert("a risk level");
        }
    }
    // The tenant exercises each case, so the test cannot pass by never reading the risk.
    for case in [
        "open (cloud-internet-exposure)",
        "controlled (cloud-risk-without-internet)",
        "a risk level",
    ] {
        assert!(seen.contains(case), "no finding with {case}: {seen:?}");
    }
}
