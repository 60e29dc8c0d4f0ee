//! What the portal and the API ask of the store at scale: sorted keyset listings, changed_since,
//! the summaries kept when runs finish, and the job table.

use rampart_model::IntegrationId;
use rampart_model::RunId;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rampart_model::FindingStatus;
use rampart_store::{
    AssetFilter, AssetSort, AssetSortKey, Enqueued, FindingChange, FindingFilter, JobKind,
    JobState, ListedAsset, RecommendationFilter, ReconcilePolicy, SortCursor, Store, StoreError,
    VulnerabilityFilter,
};

use crate::support::*;

scenarios!(
    sorted_pages_follow_the_order_and_visit_every_asset_once,
    cursors_belong_to_their_order,
    summary_agrees_with_the_exact_counts,
    changed_since_selects_rows_observed_or_concluded_after,
    changed_since_selects_recommendations_observed_or_concluded_after,
    jobs_one_active_per_integration,
    jobs_of_a_dead_worker_are_taken_over,
    concurrent_claims_take_a_job_once,
    jobs_of_one_app_registration_run_one_at_a_time,
    a_taken_over_job_closes_the_run_its_worker_left,
    a_released_job_is_due_at_once_and_its_run_closed,
    a_lost_job_closes_its_run_and_a_job_put_off_waits,
);

const EXPOSURE: [Option<&str>; 6] = [
    Some("High"),
    Some("medium"),
    Some("Low"),
    Some("None"),
    None,
    Some("Unheard-of"),
];
const RISK: [Option<&str>; 7] = [
    Some("Informational"),
    Some("HIGH"),
    None,
    Some("Low"),
    Some("Medium"),
    Some("None"),
    Some("?"),
];

/// Integration `a`: 30 assets of varied names (some without: the source id stands in),
/// exposure, risk and last-seen times, asset `i` with `i % 5` findings; asset 29 went missing in
/// a second run. Integration `b`: 4 assets. Returns (a, b).
async fn varied_estate(store: &Arc<dyn Store>) -> (IntegrationId, IntegrationId) {
    let a = integration(store, "a").await.id;
    let b = integration(store, "b").await.id;
    let varied = |i: usize| {
        let mut x = asset(i);
        x.name = match i % 4 {
            0 => None,
            1 => Some(format!("Host-{:02}", 30 - i % 30)),
            2 => Some(format!("host-{:02}", i % 7)),
            _ => Some(format!("zeta-{i}")),
        };
        x.exposure_level = EXPOSURE[i % 6].map(str::to_owned);
        x.risk_score = RISK[i % 7].map(str::to_owned);
        x.last_seen = (!i.is_multiple_of(3)).then(|| t(-(i as i64 % 5) * 60));
        x
    };
    let run = store.start_run(a, "full", t(0)).await.unwrap();
    let assets: Vec<_> = (0..30).map(varied).collect();
    store.upsert_assets(a, run, &assets).await.unwrap();
    let found: Vec<_> = (0..30)
        .flat_map(|i| (0..i % 5).map(move |j| finding(i, j + i % 3)))
        .collect();
    store.upsert_findings(a, run, &found).await.unwrap();
    store.finish_run(run, &succeeded(t(1))).await.unwrap();
    let run = store.start_run(a, "full", t(10)).await.unwrap();
    store.upsert_assets(a, run, &assets[..29]).await.unwrap();
    let seen: Vec<_> = found
        .iter()
        .filter(|f| f.key.asset_source_id != device_id(29))
        .cloned()
        .collect();
    store.upsert_findings(a, run, &seen).await.unwrap();
    store
        .reconcile(a, run, ReconcilePolicy::new(t(11)))
        .await
        .unwrap();
    store.finish_run(run, &succeeded(t(12))).await.unwrap();
    let rb = store.start_run(b, "full", t(0)).await.unwrap();
    store
        .upsert_assets(b, rb, &(100..104).map(varied).collect::<Vec<_>>())
        .await
        .unwrap();
    store.finish_run(rb, &succeeded(t(1))).await.unwrap();
    (a, b)
}

fn level(v: &Option<String>, order: &[&str]) -> i64 {
    v.as_deref()
        .and_then(|v| order.iter().position(|o| o.eq_ignore_ascii_case(v)))
        .map_or(-1, |p| p as i64)
}

/// The order the store must produce, computed here from the records.
fn expected(mut all: Vec<ListedAsset>, sort: AssetSort) -> Vec<i64> {
    fn key(a: &ListedAsset, k: AssetSortKey) -> (i64, String) {
        let s = &a.stored;
        match k {
            AssetSortKey::Id => (s.id, String::new()),
            AssetSortKey::Name => (
                0,
                s.asset
                    .name
                    .clone()
                    .unwrap_or_else(|| s.asset.source_id.clone())
                    .to_ascii_lowercase(),
            ),
            AssetSortKey::LastSeen => (
                s.asset
                    .last_seen
                    .unwrap_or(s.last_observed)
                    .timestamp_micros(),
                String::new(),
            ),
            AssetSortKey::Exposure => (
                level(&s.asset.exposure_level, &["none", "low", "medium", "high"]),
                String::new(),
            ),
            AssetSortKey::Risk => (
                level(
                    &s.asset.risk_score,
                    &["none", "informational", "low", "medium", "high"],
                ),
                String::new(),
            ),
            AssetSortKey::OpenFindings => {
                let f = a.findings;
                (
                    (f.critical * 1_000_000_000_000 + f.high * 1_000_000 + f.total) as i64,
                    String::new(),
                )
            }
        }
    }
    all.sort_by(|x, y| {
        let o = key(x, sort.key)
            .cmp(&key(y, sort.key))
            .then(x.stored.id.cmp(&y.stored.id));
        if sort.descending { o.reverse() } else { o }
    });
    all.into_iter().map(|a| a.stored.id).collect()
}

async fn walk(
    store: &Arc<dyn Store>,
    filter: &AssetFilter,
    sort: AssetSort,
    limit: u32,
) -> Vec<ListedAsset> {
    let mut out = Vec::new();
    let mut after: Option<SortCursor> = None;
    loop {
        let page = store
            .assets_sorted(
                &rampart_store::Visibility::All,
                filter,
                sort,
                after.as_ref(),
                limit,
            )
            .await
            .unwrap();
        assert!(page.items.len() <= limit as usize);
        out.extend(page.items);
        match page.next {
            // Cursors travel as text between requests.
            Some(c) => after = Some(SortCursor::decode(&c.encode(), sort).unwrap()),
            None => return out,
        }
    }
}

async fn sorted_pages_follow_the_order_and_visit_every_asset_once(store: Arc<dyn Store>) {
    let (a, _b) = varied_estate(&store).await;
    let everything = walk(&store, &AssetFilter::default(), AssetSort::default(), 1000).await;
    assert_eq!(everything.len(), 34);
    // The summaries were refreshed when the runs finished.
    let of = |i: usize| {
        everything
            .iter()
            .find(|x| x.stored.asset.source_id == device_id(i))
            .unwrap()
            .findings
    };
    assert_eq!(of(4).total, 4);
    assert_eq!(of(4).critical + of(4).high + of(4).medium + of(4).low, 4);
    assert_eq!(of(29).total, 0, "the missing asset's findings are fixed");
    assert_eq!(of(29).fixed, 4);
    let filters = [
        AssetFilter::default(),
        AssetFilter {
            integration: Some(a),
            ..Default::default()
        },
        AssetFilter {
            integration: Some(a),
            status: Some(rampart_model::AssetStatus::Active),
            ..Default::default()
        },
        AssetFilter {
            search: Some("host".into()),
            ..Default::default()
        },
    ];
    for filter in &filters {
        let reference = walk(&store, filter, AssetSort::default(), 1000).await;
        for key in AssetSortKey::ALL {
            for sort in [AssetSort::asc(key), AssetSort::desc(key)] {
                let want = expected(reference.clone(), sort);
                for limit in [1, 4, 7, 1000] {
                    let got: Vec<i64> = walk(&store, filter, sort, limit)
                        .await
                        .iter()
                        .map(|x| x.stored.id)
                        .collect();
                    assert_eq!(got, want, "{filter:?} sorted {sort} by pages of {limit}");
                    assert_eq!(got.iter().collect::<HashSet<_>>().len(), got.len());
                }
            }
        }
    }
}

async fn cursors_belong_to_their_order(store: Arc<dyn Store>) {
    varied_estate(&store).await;
    let by_name = AssetSort::asc(AssetSortKey::Name);
    let page = store
        .assets_sorted(
            &rampart_store::Visibility::All,
            &AssetFilter::default(),
            by_name,
            None,
            5,
        )
        .await
        .unwrap();
    let cursor = page.next.unwrap();
    let other = AssetSort::desc(AssetSortKey::Risk);
    let err = store
        .assets_sorted(
            &rampart_store::Visibility::All,
            &AssetFilter::default(),
            other,
            Some(&cursor),
            5,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err}");
    assert!(SortCursor::decode(&cursor.encode(), other).is_err());
    // A cursor's key travels as a bound value, never as SQL: a quote in it is just text.
    let hostile = SortCursor::decode("name.1.27204f522031", by_name).unwrap();
    let page = store
        .assets_sorted(
            &rampart_store::Visibility::All,
            &AssetFilter::default(),
            by_name,
            Some(&hostile),
            100,
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 34, "every name sorts after \"' or 1\"");
    // get_asset finds one asset, with its summary.
    let first = &page.items[0];
    let one = store
        .get_asset(&rampart_store::Visibility::All, first.stored.id)
        .await
        .unwrap();
    assert_eq!(&one, first);
    assert!(matches!(
        store
            .get_asset(&rampart_store::Visibility::All, 9_999_999)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

async fn summary_agrees_with_the_exact_counts(store: Arc<dyn Store>) {
    let i = integration(&store, "sum").await;
    store
        .upsert_vulnerabilities(&(0..12).map(vulnerability).collect::<Vec<_>>())
        .await
        .unwrap();
    let empty = store
        .summary(&rampart_store::Visibility::All, 10)
        .await
        .unwrap();
    assert_eq!(empty.counts.findings_open.total(), 0);
    assert_eq!(empty.as_of, None);

    let run = store.start_run(i.id, "full", t(0)).await.unwrap();
    store
        .upsert_assets(i.id, run, &(0..6).map(asset).collect::<Vec<_>>())
        .await
        .unwrap();
    let mut found = findings(6, 12);
    found[3].severity = None;
    found[5].recommended_update = None;
    store.upsert_findings(i.id, run, &found).await.unwrap();
    // Until the run finishes, the summary is that of the last finished run.
    assert_eq!(
        store
            .summary(&rampart_store::Visibility::All, 10)
            .await
            .unwrap()
            .counts
            .findings_open
            .total(),
        0
    );
    store.finish_run(run, &succeeded(t(1))).await.unwrap();
    let check = |s: rampart_store::Summary, exact: rampart_store::Counts| {
        assert_eq!(s.counts, exact);
    };
    check(
        store
            .summary(&rampart_store::Visibility::All, 10)
            .await
            .unwrap(),
        store
            .counts(&rampart_store::Visibility::All, None)
            .await
            .unwrap(),
    );

    // A delta fixes two findings; the run's end refreshes the summary.
    let run = store.start_run(i.id, "delta", t(10)).await.unwrap();
    store
        .apply_finding_changes(
            i.id,
            run,
            &[
                FindingChange::Fixed {
                    key: finding(0, 0).key,
                    at: t(5),
                },
                FindingChange::Fixed {
                    key: finding(1, 1).key,
                    at: t(5),
                },
            ],
        )
        .await
        .unwrap();
    let mut outcome = succeeded(t(11));
    outcome.findings.resolved = 2;
    outcome.assets.read = 6;
    store.finish_run(run, &outcome).await.unwrap();
    let s = store
        .summary(&rampart_store::Visibility::All, 3)
        .await
        .unwrap();
    assert_eq!(s.as_of, Some(t(11)));
    assert_eq!(
        s.counts,
        store
            .counts(&rampart_store::Visibility::All, None)
            .await
            .unwrap()
    );
    assert_eq!(s.counts.findings_fixed, 2);
    assert_eq!(s.counts.findings_open.unknown, 1);
    // The ranking agrees with the exact one.
    let exact_risky = store
        .riskiest_assets(&rampart_store::Visibility::All, 100)
        .await
        .unwrap();
    assert_eq!(s.riskiest.len(), 3);
    for (x, y) in s.riskiest.iter().zip(&exact_risky) {
        assert_eq!(
            (x.critical, x.high, x.open_findings),
            (y.critical, y.high, y.open_findings)
        );
    }

    // A run that read records and changed none leaves the summary alone (and is cheap).
    let run = store.start_run(i.id, "delta", t(20)).await.unwrap();
    let mut quiet = succeeded(t(21));
    quiet.assets.read = 6;
    store.finish_run(run, &quiet).await.unwrap();
    let after = store
        .summary(&rampart_store::Visibility::All, 3)
        .await
        .unwrap();
    assert_eq!(after.counts, s.counts);
    assert_eq!(after.as_of, Some(t(21)));

    // Removing the integration removes its summaries.
    store.delete_integration(i.id).await.unwrap();
    let gone = store
        .summary(&rampart_store::Visibility::All, 3)
        .await
        .unwrap();
    assert_eq!(gone.counts.findings_open.total(), 0);
    assert!(gone.riskiest.is_empty());
}

async fn changed_since_selects_rows_observed_or_concluded_after(store: Arc<dyn Store>) {
    let i = integration(&store, "changes").await.id;
    store
        .upsert_vulnerabilities(&(0..3).map(vulnerability).collect::<Vec<_>>())
        .await
        .unwrap();
    let run = full_run_seeing(&store, i, t(0), 4, 3).await;
    store.finish_run(run, &succeeded(t(1))).await.unwrap();
    // Run 2 (started at t(10)) sees assets 0 and 1 only; the reconciliation at t(11) marks 2 and 3
    // missing and their findings fixed.
    let run = full_run_seeing(&store, i, t(10), 2, 3).await;
    let mut policy = ReconcilePolicy::new(t(11));
    policy.max_missing_share = 1.0;
    store.reconcile(i, run, policy).await.unwrap();
    store.finish_run(run, &succeeded(t(12))).await.unwrap();
    // Run 3 (started at t(30)) learns from a delta of a fix Microsoft dated t(2).
    let run = store.start_run(i, "delta", t(30)).await.unwrap();
    store
        .apply_finding_changes(
            i,
            run,
            &[FindingChange::Fixed {
                key: finding(0, 0).key,
                at: t(2),
            }],
        )
        .await
        .unwrap();
    store.finish_run(run, &succeeded(t(31))).await.unwrap();

    let assets_since = |m: i64| {
        let store = store.clone();
        async move {
            all_assets(
                &store,
                AssetFilter {
                    changed_since: Some(t(m)),
                    ..Default::default()
                },
            )
            .await
            .len()
        }
    };
    assert_eq!(assets_since(-1).await, 4);
    assert_eq!(
        assets_since(5).await,
        4,
        "0, 1 observed and 2, 3 missing since t(11)"
    );
    assert_eq!(assets_since(11).await, 0, "strictly after");
    let findings_since = |m: i64, status: Option<FindingStatus>| {
        let store = store.clone();
        async move {
            all_findings(
                &store,
                FindingFilter {
                    changed_since: Some(t(m)),
                    status,
                    ..Default::default()
                },
            )
            .await
        }
    };
    assert_eq!(findings_since(5, None).await.len(), 12);
    assert_eq!(findings_since(5, Some(FindingStatus::Fixed)).await.len(), 7);
    let late = findings_since(20, None).await;
    assert_eq!(late.len(), 1, "the delta's fix, recorded at t(30)");
    assert_eq!(late[0].finding.key, finding(0, 0).key);
    assert_eq!(late[0].fixed_at, Some(t(2)));
    assert!(findings_since(30, None).await.is_empty());
    // After the last run finished, no finding can have changed (answered from the runs).
    assert!(findings_since(31, None).await.is_empty());
    // A run still going could be writing: the findings are read.
    let running = store.start_run(i, "delta", t(40)).await.unwrap();
    store
        .upsert_findings(i, running, &[finding(1, 1)])
        .await
        .unwrap();
    assert_eq!(findings_since(35, None).await.len(), 1);

    // Combined with pagination: pages of 2 visit the same rows.
    let mut after = None;
    let mut seen = 0;
    loop {
        let page = store
            .findings_page(
                &rampart_store::Visibility::All,
                &FindingFilter {
                    changed_since: Some(t(5)),
                    ..Default::default()
                },
                after,
                2,
            )
            .await
            .unwrap();
        seen += page.items.len();
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, 12);

    // The catalogue: an entry changed after t counts, one merely seen again does not.
    let since = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut changed = vulnerability(1);
    changed.epss = Some(0.9);
    store
        .upsert_vulnerabilities(&[vulnerability(0), changed, vulnerability(7)])
        .await
        .unwrap();
    let page = store
        .vulnerabilities_page(
            &rampart_store::Visibility::All,
            &VulnerabilityFilter {
                changed_since: Some(since),
                ..Default::default()
            },
            None,
            100,
        )
        .await
        .unwrap();
    let ids: Vec<String> = page
        .items
        .iter()
        .map(|v| v.vulnerability.cve_id.to_string())
        .collect();
    assert_eq!(ids, [cve(1), cve(7)]);
}

async fn jobs_one_active_per_integration(store: Arc<dyn Store>) {
    let i = integration(&store, "jobs").await.id;
    let lease = Duration::from_secs(120);
    // Scheduled for later: nothing is due now.
    let queued = store
        .enqueue_job(i, JobKind::Scheduled, t(60), t(0))
        .await
        .unwrap();
    let Enqueued::Queued(job) = queued else {
        panic!("{queued:?}")
    };
    assert_eq!(
        (job.state, job.kind, job.run_at),
        (JobState::Queued, JobKind::Scheduled, t(60))
    );
    assert!(
        store
            .claim_job("w1", t(0), lease, None)
            .await
            .unwrap()
            .is_none()
    );
    // The same schedule again changes nothing; "Sync now" brings the same job forward.
    assert!(matches!(
        store
            .enqueue_job(i, JobKind::Scheduled, t(90), t(1))
            .await
            .unwrap(),
        Enqueued::AlreadyQueued(_)
    ));
    let now = store
        .enqueue_job(i, JobKind::Requested, t(2), t(2))
        .await
        .unwrap();
    let Enqueued::Queued(moved) = now else {
        panic!("{now:?}")
    };
    assert_eq!(
        (moved.id, moved.kind, moved.run_at),
        (job.id, JobKind::Requested, t(2))
    );
    assert_eq!(
        store
            .list_jobs(&rampart_store::Visibility::All, Some(i), true, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // Claimed once; while it runs, another request reports it and queues nothing.
    let claimed = store
        .claim_job("w1", t(3), lease, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (claimed.id, claimed.state, claimed.attempts),
        (job.id, JobState::Running, 1)
    );
    assert_eq!(claimed.claimed_by.as_deref(), Some("w1"));
    assert!(
        store
            .claim_job("w2", t(3), lease, None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        store
            .enqueue_job(i, JobKind::Requested, t(4), t(4))
            .await
            .unwrap(),
        Enqueued::Running(_)
    ));
    store.heartbeat_job(job.id, "w1", t(5)).await.unwrap();
    assert!(matches!(
        store.heartbeat_job(job.id, "w2", t(5)).await,
        Err(StoreError::Conflict(_))
    ));
    let done = store.finish_job(job.id, "w1", t(6), None).await.unwrap();
    assert_eq!(
        (done.state, done.heartbeat_at),
        (JobState::Done, Some(t(6)))
    );
    assert!(matches!(
        store.finish_job(job.id, "w1", t(7), None).await,
        Err(StoreError::Conflict(_))
    ));

    // A scheduled job of a disabled integration waits; a requested one runs.
    store
        .update_integration(
            i,
            &rampart_store::IntegrationUpdate {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store
        .enqueue_job(i, JobKind::Scheduled, t(8), t(8))
        .await
        .unwrap();
    assert!(
        store
            .claim_job("w1", t(9), lease, None)
            .await
            .unwrap()
            .is_none()
    );
    store
        .enqueue_job(i, JobKind::Requested, t(9), t(9))
        .await
        .unwrap();
    let j = store
        .claim_job("w1", t(9), lease, Some(i))
        .await
        .unwrap()
        .unwrap();
    let failed = store
        .finish_job(j.id, "w1", t(10), Some("the token request failed"))
        .await
        .unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(
        failed.last_error.as_deref(),
        Some("the token request failed")
    );

    // Only this integration's jobs, when asked for one.
    let other = integration(&store, "other").await.id;
    store
        .enqueue_job(other, JobKind::Requested, t(10), t(10))
        .await
        .unwrap();
    assert!(
        store
            .claim_job("w1", t(11), lease, Some(i))
            .await
            .unwrap()
            .is_none()
    );
    // Old finished jobs are pruned; the newest are kept.
    for n in 0..25 {
        store
            .enqueue_job(i, JobKind::Requested, t(20 + n), t(20 + n))
            .await
            .unwrap();
        let j = store
            .claim_job("w1", t(20 + n), lease, Some(i))
            .await
            .unwrap()
            .unwrap();
        store.finish_job(j.id, "w1", t(20 + n), None).await.unwrap();
    }
    let kept = store
        .list_jobs(&rampart_store::Visibility::All, Some(i), false, 100)
        .await
        .unwrap();
    assert_eq!(kept.len(), 20);
    assert!(kept.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert_eq!(
        store
            .list_jobs(&rampart_store::Visibility::All, None, true, 100)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(matches!(
        store
            .enqueue_job(IntegrationId(999_999), JobKind::Requested, t(0), t(0))
            .await,
        Err(StoreError::NotFound(_))
    ));
    store.delete_integration(i).await.unwrap();
    assert!(
        store
            .list_jobs(&rampart_store::Visibility::All, Some(i), false, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn jobs_of_a_dead_worker_are_taken_over(store: Arc<dyn Store>) {
    let i = integration(&store, "lease").await.id;
    let lease = Duration::from_secs(120);
    store
        .enqueue_job(i, JobKind::Requested, t(0), t(0))
        .await
        .unwrap();
    let first = store
        .claim_job("dead", t(0), lease, None)
        .await
        .unwrap()
        .unwrap();
    store.heartbeat_job(first.id, "dead", t(1)).await.unwrap();
    // Within the lease after its last heartbeat, the job stays with its worker.
    assert!(
        store
            .claim_job("alive", t(2), lease, None)
            .await
            .unwrap()
            .is_none()
    );
    let taken = store
        .claim_job("alive", t(4), lease, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.id, first.id);
    assert_eq!(taken.attempts, 2);
    assert_eq!(taken.claimed_by.as_deref(), Some("alive"));
    // The old worker learns that it lost the job.
    assert!(matches!(
        store.heartbeat_job(first.id, "dead", t(4)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.finish_job(first.id, "dead", t(5), None).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .finish_job(first.id, "alive", t(5), None)
        .await
        .unwrap();
}

async fn concurrent_claims_take_a_job_once(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for n in 0..4 {
        // Four app registrations: jobs of one registration never run at once.
        let i = integration_of_app(&store, &format!("c{n}"), n).await.id;
        ids.push(i);
        store
            .enqueue_job(i, JobKind::Requested, t(0), t(0))
            .await
            .unwrap();
    }
    let lease = Duration::from_secs(120);
    let claims = futures::future::join_all((0..8).map(|w| {
        let store = store.clone();
        async move {
            store
                .claim_job(&format!("w{w}"), t(1), lease, None)
                .await
                .unwrap()
        }
    }))
    .await;
    let taken: Vec<_> = claims.into_iter().flatten().collect();
    assert_eq!(taken.len(), 4, "{taken:?}");
    let distinct: HashSet<_> = taken.iter().map(|j| j.id).collect();
    assert_eq!(distinct.len(), 4);
}

async fn jobs_of_one_app_registration_run_one_at_a_time(store: Arc<dyn Store>) {
    // Two integrations of one app registration (product, tenant, client), one of another.
    let a = integration(&store, "same-app-a").await.id;
    let b = integration(&store, "same-app-b").await.id;
    let other = integration_of_app(&store, "other-app", 7).await.id;
    for i in [a, b, other] {
        store
            .enqueue_job(i, JobKind::Requested, t(0), t(0))
            .await
            .unwrap();
    }
    let lease = Duration::from_secs(120);
    let first = store
        .claim_job("w1", t(1), lease, None)
        .await
        .unwrap()
        .unwrap();
    let second = store
        .claim_job("w2", t(1), lease, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.integration_id, a);
    assert_eq!(
        second.integration_id, other,
        "b waits for a's app registration"
    );
    assert!(
        store
            .claim_job("w3", t(1), lease, None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .claim_job("w3", t(1), lease, Some(b))
            .await
            .unwrap()
            .is_none()
    );
    // Once a's job ends, b's may run.
    store.finish_job(first.id, "w1", t(2), None).await.unwrap();
    let third = store
        .claim_job("w3", t(2), lease, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(third.integration_id, b);
    // A job whose worker died holds its app registration only for the lease.
    let stale = t(2) + chrono::Duration::from_std(lease).unwrap() + chrono::Duration::seconds(1);
    store
        .enqueue_job(a, JobKind::Requested, t(2), t(2))
        .await
        .unwrap();
    let mut taken = Vec::new();
    while let Some(job) = store.claim_job("w4", stale, lease, None).await.unwrap() {
        taken.push(job.integration_id);
    }
    taken.sort();
    let mut expected = vec![b, other];
    expected.sort();
    // b's and other's jobs are taken over; a's new job waits, now for b's new worker.
    assert_eq!(taken, expected);
}

/// A worker name as `rampart serve` makes it: the process (`RunOwner`) and a random part.
fn worker_of(process: &str) -> String {
    format!("{process}:0badc0de")
}

async fn a_taken_over_job_closes_the_run_its_worker_left(store: Arc<dyn Store>) {
    let i = integration(&store, "takeover").await.id;
    let mine = integration(&store, "untouched").await.id;
    // Processes on another host: this process cannot tell whether they are alive.
    let dead = rampart_store::RunOwner::parse("far-host:boot-1:4242:99").unwrap();
    let other = rampart_store::RunOwner::parse("far-host:boot-1:4343:99").unwrap();
    let lease = Duration::from_secs(120);
    store
        .enqueue_job(i, JobKind::Requested, t(0), t(0))
        .await
        .unwrap();
    let job = store
        .claim_job(&worker_of(&dead.to_string()), t(0), lease, Some(i))
        .await
        .unwrap()
        .unwrap();
    let run = store
        .start_run_owned(i, "full", t(0), Some(&dead))
        .await
        .unwrap();
    // A run of another process on another integration is nobody's business here.
    let unrelated = store
        .start_run_owned(mine, "full", t(0), Some(&other))
        .await
        .unwrap();
    let taken = store
        .claim_job("alive:0", t(10), lease, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.id, job.id);
    let runs = store
        .list_runs(&rampart_store::Visibility::All, i, 5)
        .await
        .unwrap();
    let closed = runs.iter().find(|r| r.id == run).unwrap();
    assert_eq!(closed.status, rampart_model::RunStatus::Failed);
    let why = closed.error.as_deref().unwrap_or_default();
    assert!(
        why.contains("abandoned") && why.contains("took the job over"),
        "{why}"
    );
    // So the new worker's run starts at once, not after the 30-minute stale-run wait.
    store.start_run_owned(i, "full", t(10), None).await.unwrap();
    let still = store
        .list_runs(&rampart_store::Visibility::All, mine, 5)
        .await
        .unwrap();
    assert_eq!(
        still.iter().find(|r| r.id == unrelated).unwrap().status,
        rampart_model::RunStatus::Running
    );
}

/// An integration `name` whose job a worker of process `pid` (on this host) holds and runs:
/// (integration, worker, job, run).
async fn running_job(
    store: &Arc<dyn Store>,
    name: &str,
    pid: u32,
    lease: Duration,
) -> (i64, String, rampart_store::Job, i64) {
    let i = integration(store, name).await.id;
    let me = rampart_store::RunOwner::parse(&format!("this-host:boot-1:{pid}:5")).unwrap();
    let worker = worker_of(&me.to_string());
    store
        .enqueue_job(i, JobKind::Requested, t(0), t(0))
        .await
        .unwrap();
    let job = store
        .claim_job(&worker, t(0), lease, None)
        .await
        .unwrap()
        .unwrap();
    let run = store
        .start_run_owned(i, "full", t(0), Some(&me))
        .await
        .unwrap();
    (i.get(), worker, job, run.get())
}

async fn a_released_job_is_due_at_once_and_its_run_closed(store: Arc<dyn Store>) {
    let lease = Duration::from_secs(120);
    let (i, worker, job, run) = running_job(&store, "released", 777, lease).await;
    let released = store
        .release_job(job.id, &worker, t(1), t(1), "the worker was stopped")
        .await
        .unwrap();
    assert_eq!(released.state, JobState::Queued);
    assert_eq!(released.run_at, t(1));
    assert_eq!(
        released.last_error.as_deref(),
        Some("the worker was stopped")
    );
    // Only the holder may hand it back, once.
    assert!(matches!(
        store
            .release_job(job.id, &worker, t(1), t(1), "again")
            .await,
        Err(StoreError::Conflict(_))
    ));
    let runs = store
        .list_runs(&rampart_store::Visibility::All, IntegrationId(i), 5)
        .await
        .unwrap();
    let closed = runs.iter().find(|r| r.id == RunId(run)).unwrap();
    assert_eq!(closed.status, rampart_model::RunStatus::Failed);
    assert!(
        closed
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("interrupted"),
        "{closed:?}"
    );
    // Another worker takes it at once, without waiting for a lease.
    let next = store
        .claim_job("next:0", t(1), lease, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.id, job.id);
    assert_eq!(next.attempts, 2);
}

async fn a_lost_job_closes_its_run_and_a_job_put_off_waits(store: Arc<dyn Store>) {
    let lease = Duration::from_secs(120);
    let (i, worker, job, run) = running_job(&store, "lost", 778, lease).await;
    // The worker learnt it lost the job and stopped its sync: it closes its own run.
    store
        .close_runs_of_worker(
            IntegrationId(i),
            &worker,
            t(1),
            "stopped: the job was taken over",
        )
        .await
        .unwrap();
    let closed = store
        .list_runs(&rampart_store::Visibility::All, IntegrationId(i), 5)
        .await
        .unwrap();
    let closed = closed.iter().find(|r| r.id == RunId(run)).unwrap();
    assert_eq!(closed.status, rampart_model::RunStatus::Failed);
    assert_eq!(
        closed.error.as_deref(),
        Some("stopped: the job was taken over")
    );
    // A job handed back for later is not claimed before then.
    store
        .release_job(job.id, &worker, t(1), t(5), "another run is open")
        .await
        .unwrap();
    assert!(
        store
            .claim_job("other:0", t(4), lease, None)
            .await
            .unwrap()
            .is_none()
    );
    let later = store
        .claim_job("other:0", t(5), lease, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(later.id, job.id);
}

async fn changed_since_selects_recommendations_observed_or_concluded_after(store: Arc<dyn Store>) {
    let mut new = new_integration("cloudy");
    new.product = rampart_model::Product::Cloud;
    let i = store.create_integration(&new).await.unwrap().id;
    let sub = "00000000-0000-0000-0000-0000000000aa";
    let rec = |key: &str, status: &str| rampart_model::Recommendation {
        subscription_id: sub.into(),
        assessment_id: format!(
            "/subscriptions/{sub}/providers/microsoft.security/assessments/{key}"
        ),
        key: key.into(),
        resource_id: format!(
            "/subscriptions/{sub}/resourcegroups/rg/providers/microsoft.compute/virtualmachines/{key}"
        ),
        display_name: Some(format!("Fix {key}")),
        status: status.into(),
        cause: None,
        severity: Some("High".into()),
        category: Some("Compute".into()),
        status_changed: None,
        risk: None,
    };
    let run = store.start_run(i, "full", t(0)).await.unwrap();
    store
        .upsert_recommendations(i, run, &[rec("a", "Unhealthy"), rec("b", "Unhealthy")])
        .await
        .unwrap();
    store.finish_run(run, &succeeded(t(1))).await.unwrap();
    // Run 2 (t(10)) sees "a" healthy (resolved at t(10)); "b" is gone: removed at t(11).
    let run = store.start_run(i, "full", t(10)).await.unwrap();
    store
        .upsert_recommendations(i, run, &[rec("a", "Healthy")])
        .await
        .unwrap();
    store
        .reconcile(i, run, ReconcilePolicy::new(t(11)))
        .await
        .unwrap();
    store.finish_run(run, &succeeded(t(12))).await.unwrap();
    let since = |m: i64| {
        let store = store.clone();
        async move {
            let page = store
                .recommendations_page(
                    &rampart_store::Visibility::All,
                    &RecommendationFilter {
                        changed_since: Some(t(m)),
                        ..Default::default()
                    },
                    None,
                    100,
                )
                .await
                .unwrap();
            page.items
                .into_iter()
                .map(|r| r.recommendation.key)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(since(5).await, ["a", "b"]);
    assert_eq!(since(10).await, ["b"], "removed at t(11)");
    assert!(since(11).await.is_empty());
}
