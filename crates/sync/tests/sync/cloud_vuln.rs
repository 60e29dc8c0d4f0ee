//! Defender for Cloud vulnerability findings as Microsoft really serves them (issue 11): CVE
//! entries with only their id, fixed packages turning `Healthy`, AKS node findings under
//! `ServiceUpgrade`, Microsoft's evaluation dates, and legacy grouped sub-assessments.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use rampart_model::FindingStatus;
use rampart_sim::SimConfig;
use rampart_store::{Store, StoredFinding, VulnerabilityFilter};
use rampart_sync::SyncRequest;

use crate::cloud::*;
use crate::cloud_store_checks::*;
use crate::harness::*;

async fn findings(h: &Harness, status: FindingStatus) -> Vec<StoredFinding> {
    finding_rows(&h.store, Some(h.integration.id), Some(status)).await
}

/// CVE id → when Rampart's catalogue says it was published.
async fn published(store: &Arc<dyn Store>) -> BTreeMap<String, Option<DateTime<Utc>>> {
    store
        .stream_vulnerabilities(
            rampart_store::Visibility::All,
            VulnerabilityFilter::default(),
        )
        .map_ok(|v| {
            (
                v.vulnerability.cve_id.to_string(),
                v.vulnerability.published_on,
            )
        })
        .try_collect()
        .await
        .expect("catalogue")
}

/// Item 4: `CvesDetails` entries that hold only `CveId` get their severity and CVSS from the
/// tenant-scope `microsoft.security/cvedetails` rows, and the catalogue their dates.
pub async fn cve_entries_with_only_their_id_are_completed_from_cvedetails(store: Arc<dyn Store>) {
    let h = synced_cloud(
        store,
        SimConfig {
            cloud_cve_ids_only: true,
            ..cloud_tenant()
        },
    )
    .await;

    assert_holds_the_cloud_truth(&h, None).await;
    let catalogue = published(&h.store).await;
    for f in h.cloud_truth() {
        assert_eq!(
            catalogue.get(&f.cve_id).copied().flatten(),
            Some(f.published),
            "{} has no published date",
            f.cve_id
        );
    }
}

/// Item 4, without `cvedetails` (Microsoft serves it at tenant scope only): every finding keeps
/// the recommendation's `metadata.severity`; none goes without a severity Microsoft gave.
pub async fn without_cvedetails_findings_keep_their_recommendations_severity(
    store: Arc<dyn Store>,
) {
    let h = synced_cloud(
        store,
        SimConfig {
            cloud_cve_ids_only: true,
            cloud_cvedetails: false,
            ..cloud_tenant()
        },
    )
    .await;

    let want: CloudFindings = h
        .cloud_truth()
        .into_iter()
        .map(|f| {
            (
                truth_key(&f),
                (
                    Some(f.recommendation_severity).filter(|s| s != "Unknown"),
                    None,
                    Some(f.fixed_version).filter(|v| !v.is_empty()),
                ),
            )
        })
        .collect();
    assert!(want.values().any(|v| v.0.is_some()));
    let got = stored_cloud_findings(&h.store, h.integration.id, FindingStatus::Open).await;
    assert_eq!(want, got);
}

/// Item 7: a fixed package turns its recommendation `Healthy` (without `CvesDetails`); its
/// findings are fixed, and it never shows up as a recommendation without severity or category.
pub async fn fixed_packages_close_their_findings_and_are_no_recommendations(store: Arc<dyn Store>) {
    let h = synced_cloud(store, cloud_tenant()).await;

    let before = h.cloud_truth();
    h.sim.sim.tick(6);
    let healthy: BTreeSet<String> = h
        .sim
        .sim
        .truth()
        .fixed_package_recommendations()
        .into_iter()
        .map(|id| id.to_ascii_lowercase())
        .collect();
    let closed: BTreeSet<_> = before
        .iter()
        .filter(|f| healthy.contains(&f.assessment_id.to_ascii_lowercase()))
        .map(|f| {
            (
                f.resource_id.to_ascii_lowercase(),
                f.software_name.clone(),
                f.cve_id.to_ascii_uppercase(),
            )
        })
        .collect();
    assert!(
        !closed.is_empty(),
        "the emulator turned no recommendation with findings Healthy"
    );

    h.sync_ok(SyncRequest::default()).await;

    assert_holds_the_cloud_truth(&h, None).await;
    for (id, r) in stored_recommendations(&h.store, h.integration.id, false).await {
        assert!(!healthy.contains(&id), "{id} became a recommendation");
        assert!(
            r.6.is_some() && r.7.is_some(),
            "{id} has no severity or category"
        );
    }
    let fixed: BTreeSet<_> = findings(&h, FindingStatus::Fixed)
        .await
        .into_iter()
        .map(|s| {
            let k = s.finding.key;
            (k.asset_source_id, k.software_name, k.cve_id.to_string())
        })
        .collect();
    for k in &closed {
        assert!(fixed.contains(k), "{k:?} was not fixed");
    }
}

/// Items 5 and 12b: AKS node findings (`ServiceUpgrade`) are read, and every cloud finding's
/// first and last seen are Microsoft's `firstEvaluationDate` and `statusChangeDate`.
pub async fn aks_node_findings_arrive_with_microsofts_dates(store: Arc<dyn Store>) {
    let h = synced_cloud(store, cloud_tenant()).await;

    let truth: BTreeMap<_, _> = h
        .cloud_truth()
        .into_iter()
        .map(|f| {
            (
                (
                    f.resource_id.to_ascii_lowercase(),
                    f.software_name.clone(),
                    f.cve_id.to_ascii_uppercase(),
                ),
                f,
            )
        })
        .collect();
    let stored = findings(&h, FindingStatus::Open).await;
    assert_eq!(stored.len(), truth.len());
    let mut aks = 0;
    for s in &stored {
        let k = &s.finding.key;
        let t = &truth[&(
            k.asset_source_id.clone(),
            k.software_name.clone(),
            k.cve_id.to_string(),
        )];
        aks += usize::from(t.category == "ServiceUpgrade");
        // Seconds: PostgreSQL keeps microseconds, Microsoft sends 100 ns.
        let secs = |d: Option<DateTime<Utc>>| d.map(|d| d.timestamp());
        assert_eq!(
            secs(s.finding.first_seen),
            Some(t.first_evaluated.timestamp())
        );
        assert_eq!(
            secs(s.finding.last_seen),
            Some(t.status_changed.timestamp())
        );
        assert!(s.finding.first_seen <= s.finding.last_seen);
    }
    assert!(aks > 0, "no AKS node finding");
}

/// Item 17: legacy grouped sub-assessments (a tenant from before 2026-07-31). CVSS objects keyed
/// by version give their v3 base score; published dates are kept; first seen (the parent
/// assessment's `firstEvaluationDate`) is never later than last seen (`timeGenerated`); registry
/// image findings name the repository and the digest.
pub async fn legacy_sub_assessments_keep_v3_scores_dates_and_image_names(store: Arc<dyn Store>) {
    let h = synced_cloud(
        store,
        SimConfig {
            cloud_legacy_sub_assessments: true,
            ..cloud_tenant()
        },
    )
    .await;

    let truth = h.cloud_truth();
    // (resource or image path, CVE) → CVSS (v3).
    let cvss: BTreeMap<(String, String), Option<f64>> = truth
        .iter()
        .map(|f| {
            let id = f.resource_id.to_ascii_lowercase();
            let key = match id.split_once("/repositories/") {
                Some((_, rest)) => format!("/repositories/{rest}"),
                None => id,
            };
            ((key, f.cve_id.to_ascii_uppercase()), f.cvss)
        })
        .collect();
    let parent = rampart_model::parse_microsoft_timestamp("2026-06-02T10:11:12.1234567Z")
        .expect("date")
        .timestamp();
    let catalogue = published(&h.store).await;
    let (mut qualys, mut images) = (0, 0);
    for s in findings(&h, FindingStatus::Open).await {
        let f = &s.finding;
        if !f
            .recommendation_reference
            .as_deref()
            .is_some_and(|r| r.contains("/subassessments/"))
        {
            continue;
        }
        let k = &f.key;
        let want = cvss
            .get(&(k.asset_source_id.clone(), k.cve_id.to_string()))
            .unwrap_or_else(|| panic!("{k:?} is not in the truth"));
        assert_eq!(f.cvss, *want, "{k:?}: the v3 score");
        assert!(
            f.first_seen.is_some() && f.first_seen <= f.last_seen,
            "{k:?}: {:?} > {:?}",
            f.first_seen,
            f.last_seen
        );
        assert_eq!(f.first_seen.map(|d| d.timestamp()), Some(parent));
        assert!(
            catalogue
                .get(k.cve_id.as_str())
                .copied()
                .flatten()
                .is_some(),
            "{}: no published date",
            k.cve_id
        );
        if k.asset_source_id.starts_with("/repositories/") {
            images += 1;
            let (repo, digest) = k
                .asset_source_id
                .trim_start_matches("/repositories/")
                .split_once("/images/")
                .expect("an image path");
            assert_eq!(
                f.asset_name.as_deref(),
                Some(format!("{repo}@{digest}").as_str())
            );
        } else {
            qualys += 1;
        }
    }
    assert!(
        qualys > 0 && images > 0,
        "{qualys} Qualys, {images} image findings"
    );
}
