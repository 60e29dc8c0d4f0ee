use std::sync::Arc;

use rampart_model::{AssetKind, AssetStatus, CveId, FindingStatus, Severity, Vulnerability};
use rampart_store::{
    AssetFilter, FindingFilter, Page, Store, StoredVulnerability, UpsertCounts, VulnerabilityFilter,
};

use crate::support::*;

scenarios!(
    assets_are_idempotent_and_changes_detected,
    findings_are_idempotent_and_changes_detected,
    duplicates_inside_a_batch_count_once,
    findings_create_unknown_assets_and_mark_assets_seen,
    vulnerabilities_upsert_and_exposure,
    filling_the_catalogue_never_overwrites,
    empty_batches_are_fine,
);

/// The catalogue's first `limit` entries in `filter`, seen by a global account.
async fn catalogue_page(
    store: &Arc<dyn Store>,
    filter: VulnerabilityFilter,
    limit: u32,
) -> Page<StoredVulnerability, CveId> {
    store
        .vulnerabilities_page(&rampart_store::Visibility::All, &filter, None, limit)
        .await
        .unwrap()
}

async fn assets_are_idempotent_and_changes_detected(store: Arc<dyn Store>) {
    let i = integration(&store, "i").await;
    let run = store.start_run(i.id, "full", t(0)).await.unwrap();
    let batch: Vec<_> = (0..50).map(asset).collect();

    assert_eq!(
        store.upsert_assets(i.id, run, &batch).await.unwrap(),
        counts(50, 0, 0, 0)
    );
    // The same batch again: nothing new, nothing duplicated.
    assert_eq!(
        store.upsert_assets(i.id, run, &batch).await.unwrap(),
        counts(0, 0, 50, 0)
    );
    let stored = all_assets(&store, AssetFilter::default()).await;
    assert_eq!(stored.len(), 50);
    assert_eq!(stored[3].asset, batch[3]);
    assert_eq!(stored[3].status, AssetStatus::Active);
    assert_eq!(stored[3].first_observed, t(0));
    assert_eq!(stored[3].integration, "i");

    // Content changes count as updated; the source's own last_seen moving does not.
    let mut next = batch.clone();
    next[0].name = Some("renamed".into());
    next[1].tags.push("pci".into());
    next[2].rbac_group_id = None;
    next[3].kind = AssetKind::VirtualMachine;
    next[4].last_seen = Some(t(100));
    let run2 = {
        store.finish_run(run, &succeeded(t(1))).await.unwrap();
        store.start_run(i.id, "full", t(60)).await.unwrap()
    };
    assert_eq!(
        store.upsert_assets(i.id, run2, &next).await.unwrap(),
        counts(0, 4, 46, 0)
    );
    let stored = all_assets(&store, AssetFilter::default()).await;
    assert_eq!(stored[0].asset.name.as_deref(), Some("renamed"));
    assert_eq!(stored[1].asset.tags, vec!["prod", "pci"]);
    assert_eq!(stored[2].asset.rbac_group_id, None);
    assert_eq!(stored[3].asset.kind, AssetKind::VirtualMachine);
    assert_eq!(stored[4].asset.last_seen, Some(t(100)));
    assert_eq!(stored[4].first_observed, t(0), "first observation kept");
    assert_eq!(stored[4].last_observed, t(60), "observed by the second run");
}

async fn findings_are_idempotent_and_changes_detected(store: Arc<dyn Store>) {
    let i = integration(&store, "i").await;
    let run = store.start_run(i.id, "full", t(0)).await.unwrap();
    store
        .upsert_assets(i.id, run, &(0..10).map(asset).collect::<Vec<_>>())
        .await
        .unwrap();
    let batch = findings(10, 20);
    assert_eq!(
        store.upsert_findings(i.id, run, &batch).await.unwrap(),
        counts(200, 0, 0, 0)
    );
    assert_eq!(
        store.upsert_findings(i.id, run, &batch).await.unwrap(),
        counts(0, 0, 200, 0)
    );
    let stored = all_findings(&store, FindingFilter::default()).await;
    assert_eq!(stored.len(), 200);
    assert_eq!(stored[17].finding, batch[17]);
    assert_eq!(stored[17].status, FindingStatus::Open);
    assert_eq!(stored[17].reopened_count, 0);
    assert_eq!(stored[17].fixed_at, None);
    assert_eq!(stored[17].priority, None);
    assert!(stored[17].cve.is_none(), "no catalogue entry yet");

    let mut next = batch.clone();
    next[0].severity = Some(Severity::Low);
    next[1].cvss = None;
    next[2].recommended_update = Some("KB1".into());
    next[3].recommendation_reference = Some("va-123".into());
    next[4].exploitability = Some("ExploitIsPublic".into());
    next[5].last_seen = Some(t(500));
    next[6].first_seen = None;
    next[7].asset_name = Some("a different name in the finding feed".into());
    next[8].recommended_update = None;
    assert_eq!(
        store.upsert_findings(i.id, run, &next).await.unwrap(),
        counts(0, 6, 194, 0)
    );
    let stored = all_findings(&store, FindingFilter::default()).await;
    assert_eq!(stored[0].finding.severity, Some(Severity::Low));
    assert_eq!(stored[1].finding.cvss, None);
    // SQLite sets the recommended update outside the upsert's SET list: both ways stored.
    assert_eq!(stored[2].finding.recommended_update.as_deref(), Some("KB1"));
    assert_eq!(stored[8].finding.recommended_update, None);
    assert_eq!(
        stored[3].finding.recommendation_reference.as_deref(),
        Some("va-123")
    );
    assert_eq!(
        stored[4].finding.exploitability.as_deref(),
        Some("ExploitIsPublic")
    );
    assert_eq!(
        stored[9].finding, batch[9],
        "unchanged rows stay as they were"
    );
    assert_eq!(stored[5].finding.last_seen, Some(t(500)));
    assert_eq!(stored[6].finding.first_seen, None);
    assert_eq!(
        stored[7].finding.asset_name.as_deref(),
        Some("host-0.contoso.local"),
        "asset names come from the asset record"
    );
}

async fn duplicates_inside_a_batch_count_once(store: Arc<dyn Store>) {
    let i = integration(&store, "i").await;
    let run = store.start_run(i.id, "full", t(0)).await.unwrap();
    let mut a = vec![asset(1), asset(2), asset(1)];
    a[2].name = Some("last wins".into());
    assert_eq!(
        store.upsert_assets(i.id, run, &a).await.unwrap(),
        counts(2, 0, 0, 0)
    );
    let mut f = vec![finding(1, 1), finding(1, 2), finding(1, 1)];
    f[2].cvss = Some(9.9);
    assert_eq!(
        store.upsert_findings(i.id, run, &f).await.unwrap(),
        counts(2, 0, 0, 0)
    );
    let assets = all_assets(&store, AssetFilter::default()).await;
    assert_eq!(assets.len(), 2);
    assert!(
        assets
            .iter()
            .any(|a| a.asset.name.as_deref() == Some("last wins"))
    );
    let stored = all_findings(&store, FindingFilter::default()).await;
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().any(|s| s.finding.cvss == Some(9.9)));
}

async fn findings_create_unknown_assets_and_mark_assets_seen(store: Arc<dyn Store>) {
    let i = integration(&store, "i").await;
    let run = store.start_run(i.id, "full", t(0)).await.unwrap();
    store
        .upsert_findings(i.id, run, &findings(3, 2))
        .await
        .unwrap();
    let assets = all_assets(&store, AssetFilter::default()).await;
    assert_eq!(assets.len(), 3);
    assert_eq!(assets[0].asset.kind, AssetKind::Device);
    assert_eq!(
        assets[0].asset.name.as_deref(),
        Some("host-0.contoso.local")
    );
    assert_eq!(assets[0].status, AssetStatus::Active);

    // The full asset record arriving later fills the stub in (an update, not a new asset).
    let c = store
        .upsert_assets(i.id, run, &(0..3).map(asset).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(c.new, 0);
    assert_eq!(c.updated, 3);
    let assets = all_assets(&store, AssetFilter::default()).await;
    assert_eq!(assets[1].asset, asset(1));
}

async fn vulnerabilities_upsert_and_exposure(store: Arc<dyn Store>) {
    let catalogue: Vec<_> = (0..30).map(vulnerability).collect();
    assert_eq!(
        store.upsert_vulnerabilities(&catalogue).await.unwrap(),
        counts(30, 0, 0, 0)
    );
    assert_eq!(
        store.upsert_vulnerabilities(&catalogue).await.unwrap(),
        counts(0, 0, 30, 0)
    );
    let mut changed = catalogue.clone();
    changed[0].epss = Some(0.9);
    changed[1].exploit_types.clear();
    changed[2].description = None;
    assert_eq!(
        store.upsert_vulnerabilities(&changed).await.unwrap(),
        counts(0, 3, 27, 0)
    );

    let a = integration(&store, "a").await;
    let b = integration(&store, "b").await;
    let run_a = store.start_run(a.id, "full", t(0)).await.unwrap();
    let run_b = store.start_run(b.id, "full", t(0)).await.unwrap();
    // CVE 0 on assets 0..4 of a (twice on asset 0: two software) and asset 0 of b.
    let mut fa: Vec<_> = (0..4).map(|i| finding(i, 0)).collect();
    let mut twice = finding(0, 0);
    twice.key.software_name = "other".into();
    fa.push(twice);
    store.upsert_findings(a.id, run_a, &fa).await.unwrap();
    store
        .upsert_findings(b.id, run_b, &[finding(0, 0), finding(0, 1)])
        .await
        .unwrap();

    let page = catalogue_page(&store, VulnerabilityFilter::default(), 100).await;
    assert_eq!(page.items.len(), 30);
    assert_eq!(page.next, None);
    let v0 = &page.items[0];
    assert_eq!(v0.vulnerability, changed[0]);
    assert_eq!(v0.exposed_assets, 5, "4 assets of a + 1 of b");
    assert_eq!(page.items[1].exposed_assets, 1);
    assert_eq!(page.items[2].exposed_assets, 0);

    let only_a = catalogue_page(
        &store,
        VulnerabilityFilter {
            integration: Some(a.id),
            exposed_only: true,
            ..Default::default()
        },
        100,
    )
    .await;
    assert_eq!(only_a.items.len(), 1);
    assert_eq!(only_a.items[0].exposed_assets, 4);

    // Findings carry the catalogue's facts.
    let f = all_findings(&store, Default::default()).await;
    let facts = f[0].cve.as_ref().unwrap();
    assert_eq!(facts.epss, Some(0.9));
    assert!(facts.public_exploit);
}

async fn empty_batches_are_fine(store: Arc<dyn Store>) {
    let i = integration(&store, "i").await;
    let run = store.start_run(i.id, "full", t(0)).await.unwrap();
    assert_eq!(
        store.upsert_assets(i.id, run, &[]).await.unwrap(),
        UpsertCounts::default()
    );
    assert_eq!(
        store.upsert_findings(i.id, run, &[]).await.unwrap(),
        UpsertCounts::default()
    );
    assert_eq!(
        store.upsert_vulnerabilities(&[]).await.unwrap(),
        UpsertCounts::default()
    );
}

/// A secondary source (Defender for Cloud) adds unknown CVEs and fills gaps, but never replaces
/// what the catalogue already says.
async fn filling_the_catalogue_never_overwrites(store: Arc<dyn Store>) {
    let known = vulnerability(0);
    let mut sparse = vulnerability(1);
    sparse.severity = None;
    sparse.cvss = None;
    sparse.description = None;
    store
        .upsert_vulnerabilities(&[known.clone(), sparse.clone()])
        .await
        .unwrap();

    // Only what a finding carries: every other catalogue fact empty.
    let from_cloud = |j: usize, cvss: f64| Vulnerability {
        cvss: Some(cvss),
        severity: Some(Severity::Critical),
        ..Vulnerability::new(vulnerability(j).cve_id)
    };
    let c = store
        .fill_vulnerabilities(&[from_cloud(0, 9.9), from_cloud(1, 9.1), from_cloud(2, 5.0)])
        .await
        .unwrap();
    assert_eq!(
        c,
        counts(1, 1, 1, 0),
        "CVE 2 new, CVE 1 completed, CVE 0 kept"
    );

    let page = catalogue_page(&store, VulnerabilityFilter::default(), 10).await;
    let by_id = |j: usize| {
        page.items
            .iter()
            .find(|v| v.vulnerability.cve_id.as_str() == cve(j))
            .map(|v| v.vulnerability.clone())
            .unwrap()
    };
    assert_eq!(by_id(0), known, "Endpoint's entry is not overwritten");
    let completed = by_id(1);
    assert_eq!(completed.cvss, Some(9.1));
    assert_eq!(completed.severity, Some(Severity::Critical));
    assert_eq!(completed.epss, sparse.epss, "what was known stays");
    assert_eq!(completed.published_on, sparse.published_on);
    assert_eq!(by_id(2), from_cloud(2, 5.0));

    // Filling again changes nothing; Endpoint's later upsert still wins.
    assert_eq!(
        store
            .fill_vulnerabilities(&[from_cloud(0, 9.9), from_cloud(1, 9.1), from_cloud(2, 5.0)])
            .await
            .unwrap(),
        counts(0, 0, 3, 0)
    );
    store
        .upsert_vulnerabilities(&[vulnerability(2)])
        .await
        .unwrap();
    let page = catalogue_page(&store, VulnerabilityFilter::default(), 10).await;
    assert!(
        page.items
            .iter()
            .any(|v| v.vulnerability == vulnerability(2))
    );
}
