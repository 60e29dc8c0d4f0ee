use rampart_model::IntegrationId;
use std::collections::HashSet;
use std::sync::Arc;

use futures::TryStreamExt;
use rampart_model::{AssetStatus, FindingStatus, Severity};
use rampart_store::{AssetFilter, FindingFilter, ReconcilePolicy, Store, VulnerabilityFilter};

use crate::support::*;

scenarios!(
    keyset_pages_visit_every_row_once,
    filters_select_exactly,
    vulnerability_pages_and_streams,
    abandoned_reads_leave_every_connection_usable,
);

/// Two integrations; in `a`, asset 11 went missing and finding 0 of every asset was fixed.
async fn estate(store: &Arc<dyn Store>) -> (IntegrationId, IntegrationId) {
    let a = integration(store, "a").await;
    let b = integration(store, "b").await;
    let run = full_run_seeing(store, a.id, t(0), 12, 25).await;
    store.finish_run(run, &succeeded(t(1))).await.unwrap();
    let run2 = store.start_run(a.id, "full", t(10)).await.unwrap();
    store
        .upsert_assets(a.id, run2, &(0..11).map(asset).collect::<Vec<_>>())
        .await
        .unwrap();
    let seen: Vec<_> = findings(11, 25)
        .into_iter()
        .filter(|f| f.key.cve_id.as_str() != cve(0))
        .collect();
    store.upsert_findings(a.id, run2, &seen).await.unwrap();
    store
        .reconcile(a.id, run2, ReconcilePolicy::new(t(11)))
        .await
        .unwrap();

    let rb = store.start_run(b.id, "full", t(0)).await.unwrap();
    store
        .upsert_findings(b.id, rb, &findings(4, 10))
        .await
        .unwrap();
    (a.id, b.id)
}

async fn keyset_pages_visit_every_row_once(store: Arc<dyn Store>) {
    let (a, _b) = estate(&store).await;
    let total = 12 * 25 + 4 * 10;
    for limit in [1, 7, 100, 1000] {
        let mut seen = HashSet::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let page = store
                .findings_page(
                    &rampart_store::Visibility::All,
                    &FindingFilter::default(),
                    after,
                    limit,
                )
                .await
                .unwrap();
            assert!(page.items.len() <= limit as usize);
            for f in &page.items {
                assert!(seen.insert(f.id), "row {} came twice", f.id);
                if let Some(prev) = after {
                    assert!(f.id > prev);
                }
            }
            pages += 1;
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(seen.len(), total, "limit {limit}");
        assert_eq!(
            pages,
            total.div_ceil(limit as usize),
            "no empty trailing page"
        );
    }
    // The stream walks the same rows in the same order.
    let streamed = all_findings(&store, FindingFilter::default()).await;
    assert_eq!(streamed.len(), total);
    assert!(streamed.windows(2).all(|w| w[0].id < w[1].id));

    let assets: Vec<_> = store
        .stream_assets(
            rampart_store::Visibility::All,
            AssetFilter {
                integration: Some(a),
                ..Default::default()
            },
        )
        .try_collect()
        .await
        .unwrap();
    assert_eq!(assets.len(), 12);
    let mut after = None;
    let mut n = 0;
    loop {
        let page = store
            .assets_page(
                &rampart_store::Visibility::All,
                &AssetFilter::default(),
                after,
                5,
            )
            .await
            .unwrap();
        n += page.items.len();
        match page.next {
            Some(x) => after = Some(x),
            None => break,
        }
    }
    assert_eq!(n, 16);
}

async fn filters_select_exactly(store: Arc<dyn Store>) {
    let (a, b) = estate(&store).await;
    let count = |filter: FindingFilter| {
        let store = store.clone();
        async move { all_findings(&store, filter).await.len() }
    };
    assert_eq!(
        count(FindingFilter {
            integration: Some(a),
            ..Default::default()
        })
        .await,
        300
    );
    assert_eq!(
        count(FindingFilter {
            integration: Some(b),
            ..Default::default()
        })
        .await,
        40
    );
    // Fixed in a: finding 0 of the 11 seen assets, plus all 25 of missing asset 11.
    let fixed = findings_with_status(&store, Some(a), FindingStatus::Fixed).await;
    assert_eq!(fixed.len(), 11 + 25);
    assert!(fixed.iter().all(|f| f.status == FindingStatus::Fixed));
    assert_eq!(
        count(FindingFilter {
            status: Some(FindingStatus::Open),
            ..Default::default()
        })
        .await,
        300 - 36 + 40
    );
    // Severity: j % 4 == 0 is Critical.
    let critical_open_a = all_findings(
        &store,
        FindingFilter {
            integration: Some(a),
            status: Some(FindingStatus::Open),
            severity: Some(Severity::Critical),
            ..Default::default()
        },
    )
    .await;
    // Of j in 1..25, j % 4 == 0 for 4, 8, ..., 24: six per seen asset.
    assert_eq!(critical_open_a.len(), 6 * 11);
    assert!(
        critical_open_a
            .iter()
            .all(|f| f.finding.severity == Some(Severity::Critical))
    );
    assert_eq!(
        count(FindingFilter {
            integration: Some(b),
            min_severity: Some(Severity::High),
            ..Default::default()
        })
        .await,
        // j in 0..10: Critical 0,4,8; High 1,5,9 → 6 per asset.
        24
    );
    assert_eq!(
        count(FindingFilter {
            cve_id: Some(cve(3).parse().unwrap()),
            ..Default::default()
        })
        .await,
        16
    );
    // One CVE of any status, or only its fixed findings, by its id or by a search for part of
    // it: read through the open and the fixed findings' CVE indexes (migration 0019), in id and
    // in priority order. CVE 0 was fixed on the 12 assets of `a` and is open on the 4 of `b`.
    let by_id = |status| FindingFilter {
        cve_id: Some(cve(0).parse().unwrap()),
        status,
        ..Default::default()
    };
    let by_search = |status| FindingFilter {
        search: Some(cve(0)[4..].to_owned()),
        status,
        ..Default::default()
    };
    let of_cve_0: [&dyn Fn(Option<FindingStatus>) -> FindingFilter; 2] = [&by_id, &by_search];
    for of_cve_0 in of_cve_0 {
        for (status, want) in [
            (None, 16),
            (Some(FindingStatus::Fixed), 12),
            (Some(FindingStatus::Open), 4),
        ] {
            let filter = of_cve_0(status);
            assert_eq!(count(filter.clone()).await, want, "{filter:?}");
            let sorted = store
                .findings_sorted(
                    &rampart_store::Visibility::All,
                    &filter,
                    rampart_store::FindingOrder::PriorityDesc,
                    None,
                    1000,
                )
                .await
                .unwrap();
            assert_eq!(sorted.items.len(), want, "{filter:?}");
            assert!(
                sorted
                    .items
                    .iter()
                    .all(|f| f.finding.key.cve_id.as_str() == cve(0)
                        && status.is_none_or(|s| f.status == s))
            );
        }
    }
    assert_eq!(
        count(FindingFilter {
            asset_source_id: Some(device_id(2)),
            integration: Some(a),
            ..Default::default()
        })
        .await,
        25
    );
    // Text search is case-insensitive and matches CVE, software and asset names.
    assert_eq!(
        count(FindingFilter {
            search: Some("cve-2024-100003".into()),
            ..Default::default()
        })
        .await,
        16
    );
    assert_eq!(
        count(FindingFilter {
            integration: Some(b),
            search: Some("APP_6".into()),
            ..Default::default()
        })
        .await,
        4
    );
    assert_eq!(
        count(FindingFilter {
            integration: Some(a),
            search: Some("HOST-3.contoso".into()),
            ..Default::default()
        })
        .await,
        25
    );
    // Every CVE id of the estate contains "2024-1000": a search that matches many CVEs.
    assert_eq!(
        count(FindingFilter {
            search: Some("2024-1000".into()),
            integration: Some(b),
            ..Default::default()
        })
        .await,
        40
    );
    // Text that could be part of a CVE id, and is part of none.
    assert_eq!(
        count(FindingFilter {
            search: Some("CVE-1999-".into()),
            ..Default::default()
        })
        .await,
        0
    );
    // LIKE wildcards are literal.
    assert_eq!(
        count(FindingFilter {
            search: Some("app%".into()),
            ..Default::default()
        })
        .await,
        0
    );

    let missing = all_assets(
        &store,
        AssetFilter {
            status: Some(AssetStatus::Missing),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].asset.source_id, device_id(11));
    assert_eq!(
        all_assets(
            &store,
            AssetFilter {
                search: Some("HOST-1".into()),
                integration: Some(a),
                ..Default::default()
            }
        )
        .await
        .len(),
        3,
        "host-1, host-10, host-11"
    );

    let all = store
        .counts(&rampart_store::Visibility::All, None)
        .await
        .unwrap();
    assert_eq!(all.assets_active, 11 + 4);
    assert_eq!(all.assets_missing, 1);
    assert_eq!(all.findings_fixed, 36);
    assert_eq!(all.findings_open.total(), 264 + 40);
    let only_b = store
        .counts(&rampart_store::Visibility::All, Some(b))
        .await
        .unwrap();
    assert_eq!(only_b.findings_open.critical, 12);
    assert_eq!(only_b.findings_open.high, 12);
    assert_eq!(only_b.findings_open.medium, 8);
    assert_eq!(only_b.findings_open.low, 8);
}

async fn vulnerability_pages_and_streams(store: Arc<dyn Store>) {
    let (a, _b) = estate(&store).await;
    let catalogue: Vec<_> = (0..40).map(vulnerability).collect();
    store.upsert_vulnerabilities(&catalogue).await.unwrap();

    let mut after = None;
    let mut ids = Vec::new();
    loop {
        let page = store
            .vulnerabilities_page(
                &rampart_store::Visibility::All,
                &VulnerabilityFilter::default(),
                after,
                9,
            )
            .await
            .unwrap();
        ids.extend(
            page.items
                .iter()
                .map(|v| v.vulnerability.cve_id.to_string()),
        );
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    assert_eq!(ids.len(), 40);

    let exposed: Vec<_> = store
        .stream_vulnerabilities(
            rampart_store::Visibility::All,
            VulnerabilityFilter {
                integration: Some(a),
                exposed_only: true,
                ..Default::default()
            },
        )
        .try_collect()
        .await
        .unwrap();
    // CVE 0 is fixed everywhere in a; CVEs 1..24 are open on the 11 active assets.
    assert_eq!(exposed.len(), 24);
    assert!(exposed.iter().all(|v| v.exposed_assets == 11));
    let searched: Vec<_> = store
        .stream_vulnerabilities(
            rampart_store::Visibility::All,
            VulnerabilityFilter {
                search: Some("APP 3".into()),
                ..Default::default()
            },
        )
        .try_collect()
        .await
        .unwrap();
    assert_eq!(searched.len(), 11, "app 3, app 30..39");
}

/// Polls `read` until it is ready or `after` has passed, yielding to the runtime in between,
/// and then drops it: a reader that gives up somewhere along the way. (Timers are too coarse:
/// a read takes about a millisecond.)
async fn give_up_after<F: std::future::Future>(read: F, after: std::time::Duration) {
    let started = std::time::Instant::now();
    let mut read = std::pin::pin!(read);
    while started.elapsed() < after {
        if futures::poll!(read.as_mut()).is_ready() {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// Reads given up halfway (a client that closes a download after its first bytes, a timeout)
/// leave every pooled connection fit for the next read. On PostgreSQL a read dropped while its
/// transaction's `BEGIN` was on the wire once left its connection inside that transaction, and
/// the next read on it failed: "SET TRANSACTION ISOLATION LEVEL must be called before any
/// query" (sqlx 0.9.0; fixed in 0.9.1, https://github.com/transact-rs/sqlx/issues/4393).
/// `scripts/bench-portal` on PostgreSQL met it within a second.
async fn abandoned_reads_leave_every_connection_usable(store: Arc<dyn Store>) {
    estate(&store).await;
    let vis = rampart_store::Visibility::All;
    let filter = FindingFilter::default();
    // Dropped after 0, 5, 10, … µs: somewhere in each step of a read, its start included.
    for micros in (0..1500).step_by(5) {
        let after = std::time::Duration::from_micros(micros);
        give_up_after(store.findings_page(&vis, &filter, None, 50), after).await;
        // Then each connection of the pool serves a read outside a transaction, and then one
        // in a transaction (the pool hands its idle connections out in turn): a connection
        // left inside a transaction ran the first in it, and failed at the second's start.
        for i in 0..20 {
            if i < 10 {
                let page = store
                    .vulnerabilities_page(&vis, &VulnerabilityFilter::default(), None, 5)
                    .await;
                page.unwrap_or_else(|e| panic!("after {micros} µs, read {i}: {e}"));
            } else {
                let page = store.findings_page(&vis, &filter, None, 50).await;
                let page = page.unwrap_or_else(|e| panic!("after {micros} µs, read {i}: {e}"));
                assert_eq!(page.items.len(), 50);
            }
        }
    }
}
