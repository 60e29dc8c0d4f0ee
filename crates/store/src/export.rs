//! The stored rows as export records (`rampart_model::export`): the one mapping shared by
//! `rampart export`, the portal's CSV downloads and the REST API.

use std::collections::HashMap;

use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};

use rampart_model::export::{
    AssetRecord, FindingRecord, PostureRecord, PriorityFactors, RemediationRecord,
    VulnerabilityRecord, posture_record_type,
};
use rampart_model::priority::KevEntry;
use rampart_model::{IntegrationId, TenantScoreParts, weighted_percent};

use crate::error::Result;
use crate::intel::{kev_index, ransomware_text};
use crate::remediation::Remediation;
use crate::store::{STREAM_PAGE_SIZE, Store};
use crate::types::{StoredAsset, StoredFinding, StoredVulnerability, VulnerabilityFilter};
use crate::types_cloud::{
    RECOMMENDATION_REMOVED, RecommendationFilter, StoredControlScore, StoredPostureScore,
    StoredRecommendation,
};
use crate::workspace::Visibility;

pub fn asset_record(s: &StoredAsset) -> AssetRecord {
    let a = &s.asset;
    AssetRecord {
        integration: s.integration.clone(),
        source: s.product.source().to_owned(),
        source_id: a.source_id.clone(),
        kind: a.kind.as_str().to_owned(),
        name: a.name.clone(),
        os_platform: a.os_platform.clone(),
        os_version: a.os_version.clone(),
        health_status: a.health_status.clone(),
        onboarding_status: a.onboarding_status.clone(),
        exposure_level: a.exposure_level.clone(),
        risk_score: a.risk_score.clone(),
        device_value: a.device_value.clone(),
        ip_addresses: a.ip_addresses.clone(),
        tags: a.tags.clone(),
        first_seen: a.first_seen.or(Some(s.first_observed)),
        last_seen: a.last_seen.or(Some(s.last_observed)),
        status: s.status.as_str().to_owned(),
        external_ip_address: a.external_ip_address.clone(),
        known_from: if s.known_only_from_vulnerability_data {
            "vulnerability_data"
        } else {
            "inventory"
        }
        .to_owned(),
    }
}

/// The export row of a finding, its SLA status as of now.
pub fn finding_record(s: &StoredFinding) -> FindingRecord {
    finding_record_at(s, chrono::Utc::now())
}

/// The export row of a finding, its SLA status as of `now`.
pub fn finding_record_at(s: &StoredFinding, now: chrono::DateTime<chrono::Utc>) -> FindingRecord {
    let f = &s.finding;
    FindingRecord {
        integration: s.integration.clone(),
        source: s.product.source().to_owned(),
        asset_source_id: f.key.asset_source_id.clone(),
        asset_name: f.asset_name.clone(),
        cve_id: f.key.cve_id.to_string(),
        software_vendor: f.key.software_vendor.clone(),
        software_name: f.key.software_name.clone(),
        software_version: f.key.software_version.clone(),
        severity: f.severity.map(|s| s.as_str().to_owned()),
        cvss: f.cvss,
        exploitability: f.exploitability.clone(),
        recommended_update: f.recommended_update.clone(),
        status: s.status.as_str().to_owned(),
        first_seen: f.first_seen.or(Some(s.first_observed)),
        last_seen: f.last_seen.or(Some(s.last_observed)),
        fixed_at: s.fixed_at,
        priority: s.priority,
        decision: s.decision.map(|d| d.as_str().to_owned()),
        // As the API shows it: moved by the pause of an exception that has ended.
        due_at: s.due_at_now(now),
        sla_status: s.sla_status(now).map(|v| v.as_str().to_owned()),
        priority_factors: PriorityFactors(s.priority_factors.clone().unwrap_or_default()),
    }
}

/// The export row of a fix of the remediation plan, `rank` counted from 1 in the plan's order.
pub fn remediation_record(rank: u64, r: &Remediation) -> RemediationRecord {
    RemediationRecord {
        rank,
        fix: r.fix.clone(),
        priority_removed: r.priority_removed,
        max_priority: r.max_priority,
        findings: r.findings,
        assets: r.assets,
        overdue: r.overdue,
        immediate: r.immediate,
        cves: r.cves.iter().map(ToString::to_string).collect(),
        reference: r.reference.clone(),
        link: r.link.clone(),
    }
}

/// The export row of a catalogue entry, with its KEV entry when CISA lists the CVE (look it up
/// with [`crate::kev_index`], or stream with [`vulnerability_records`]).
pub fn vulnerability_record(
    s: &StoredVulnerability,
    kev: Option<&KevEntry>,
) -> VulnerabilityRecord {
    let v = &s.vulnerability;
    VulnerabilityRecord {
        cve_id: v.cve_id.to_string(),
        severity: v.severity.map(|s| s.as_str().to_owned()),
        cvss: v.cvss,
        epss: v.epss,
        public_exploit: v.public_exploit,
        exploit_verified: v.exploit_verified,
        exploit_in_kit: v.exploit_in_kit,
        published_on: v.published_on,
        updated_on: v.updated_on,
        exposed_assets: s.exposed_assets,
        description: v.description.clone(),
        source_exposed_machines: v.source_exposed_machines,
        kev: kev.is_some(),
        kev_date_added: kev.and_then(|k| k.date_added),
        kev_due_date: kev.and_then(|k| k.due_date),
        kev_known_ransomware_campaign_use: kev
            .map(|k| ransomware_text(k.known_ransomware_campaign_use).to_owned()),
    }
}

/// `export vulnerabilities`: every catalogue entry matching the filter, with its KEV columns,
/// looked up one page of entries at a time.
pub fn vulnerability_records<S: Store + ?Sized>(
    store: &S,
    vis: Visibility,
    filter: VulnerabilityFilter,
) -> BoxStream<'_, Result<VulnerabilityRecord>> {
    store
        .stream_vulnerabilities(vis, filter)
        .try_chunks(STREAM_PAGE_SIZE as usize)
        .map_err(|e| e.1)
        .and_then(move |page| async move {
            let kev = kev_index(store, page.iter().map(|v| &v.vulnerability.cve_id)).await?;
            let records: Vec<Result<VulnerabilityRecord>> = page
                .iter()
                .map(|v| Ok(vulnerability_record(v, kev.get(&v.vulnerability.cve_id))))
                .collect();
            Ok(stream::iter(records))
        })
        .try_flatten()
        .boxed()
}

/// The `tenant` row of one integration over the latest score of each of its subscriptions
/// (`None` when there are none).
pub fn tenant_record(scores: &[&StoredPostureScore]) -> Option<PostureRecord> {
    let first = scores.first()?;
    let plain: Vec<_> = scores.iter().map(|s| s.score.clone()).collect();
    let parts = TenantScoreParts::of(&plain)?;
    Some(PostureRecord {
        record_type: posture_record_type::TENANT.to_owned(),
        integration: first.integration.clone(),
        // Microsoft's two sums: score_percent = score_current / score_max × 100.
        score_current: Some(parts.score_sum),
        score_max: Some(parts.weight_sum),
        score_percent: weighted_percent(&plain),
        weight: Some(plain.iter().map(|s| s.weight).sum()),
        captured_at: scores.iter().map(|s| s.captured_at).max(),
        ..Default::default()
    })
}

pub fn posture_score_record(s: &StoredPostureScore) -> PostureRecord {
    PostureRecord {
        record_type: posture_record_type::SCORE.to_owned(),
        integration: s.integration.clone(),
        subscription_id: s.score.subscription_id.clone(),
        subscription_name: s.score.subscription_name.clone(),
        score_current: Some(s.score.current),
        score_max: Some(s.score.max),
        score_percent: Some(s.percent),
        weight: Some(s.score.weight),
        captured_at: Some(s.captured_at),
        ..Default::default()
    }
}

pub fn control_record(c: &StoredControlScore, subscription_name: Option<String>) -> PostureRecord {
    let k = &c.control;
    PostureRecord {
        record_type: posture_record_type::CONTROL.to_owned(),
        integration: c.integration.clone(),
        subscription_id: k.subscription_id.clone(),
        subscription_name,
        score_current: k.current,
        score_max: Some(k.max),
        score_percent: k.fraction.map(|f| f * 100.0),
        weight: Some(k.weight),
        captured_at: Some(c.captured_at),
        control_id: Some(k.control_id.clone()),
        name: k.display_name.clone(),
        healthy: Some(k.healthy),
        unhealthy: Some(k.unhealthy),
        not_applicable: Some(k.not_applicable),
        ..Default::default()
    }
}

pub fn recommendation_record(
    r: &StoredRecommendation,
    subscription_name: Option<String>,
) -> PostureRecord {
    let m = &r.recommendation;
    PostureRecord {
        record_type: posture_record_type::RECOMMENDATION.to_owned(),
        integration: r.integration.clone(),
        subscription_id: m.subscription_id.clone(),
        subscription_name,
        name: m.display_name.clone(),
        assessment_id: Some(m.assessment_id.clone()),
        assessment_key: Some(m.key.clone()),
        resource_id: Some(m.resource_id.clone()),
        status: Some(m.status.clone()),
        severity: m.severity.clone(),
        category: m.category.clone(),
        first_seen: Some(r.first_observed),
        last_seen: Some(r.last_observed),
        resolved_at: r.resolved_at,
        risk_level: m.risk.as_ref().and_then(|k| k.level.clone()),
        risk_factors: m
            .risk
            .as_ref()
            .map(|k| k.factors.clone())
            .unwrap_or_default(),
        attack_paths: m
            .risk
            .as_ref()
            .map(|k| k.attack_paths.clone())
            .unwrap_or_default(),
        ..Default::default()
    }
}

/// Subscription display names by (integration, subscription id).
type SubscriptionNames = HashMap<(IntegrationId, String), String>;

/// The `tenant`, `score` and `control` rows, and the names the recommendation rows need.
async fn posture_head<S: Store + ?Sized>(
    store: &S,
    vis: &Visibility,
    integration: Option<IntegrationId>,
) -> Result<(Vec<PostureRecord>, SubscriptionNames)> {
    let mut names = SubscriptionNames::new();
    for s in store.list_subscriptions(vis, integration).await? {
        if let Some(n) = s.subscription.display_name {
            names.insert((s.integration_id, s.subscription.subscription_id), n);
        }
    }
    let scores = store.latest_posture(vis, integration).await?;
    for s in &scores {
        if let Some(n) = &s.score.subscription_name {
            names
                .entry((s.integration_id, s.score.subscription_id.clone()))
                .or_insert_with(|| n.clone());
        }
    }
    let mut records = Vec::new();
    // latest_posture is ordered by integration: each run of equal ids is one integration.
    for group in scores.chunk_by(|a, b| a.integration_id == b.integration_id) {
        let refs: Vec<&StoredPostureScore> = group.iter().collect();
        records.extend(tenant_record(&refs));
    }
    records.extend(scores.iter().map(posture_score_record));
    for c in store.latest_controls(vis, integration, None).await? {
        let name = names
            .get(&(c.integration_id, c.control.subscription_id.clone()))
            .cloned();
        records.push(control_record(&c, name));
    }
    Ok((records, names))
}

/// `export posture`: per integration a `tenant` row, then `score` rows (latest per subscription),
/// `control` rows (latest controls), then every recommendation not `Removed`,
/// streamed page by page.
pub fn posture_records<S: Store + ?Sized>(
    store: &S,
    vis: Visibility,
    integration: Option<IntegrationId>,
) -> BoxStream<'_, Result<PostureRecord>> {
    stream::once(async move {
        let head = posture_head(store, &vis, integration).await;
        head.map(|h| (h, vis))
    })
    .map_ok(move |((head, names), vis)| {
        let tail = store
            .stream_recommendations(
                vis,
                RecommendationFilter {
                    integration,
                    ..Default::default()
                },
            )
            .try_filter(|r| std::future::ready(r.recommendation.status != RECOMMENDATION_REMOVED))
            .map_ok(move |r| {
                let name = names
                    .get(&(r.integration_id, r.recommendation.subscription_id.clone()))
                    .cloned();
                recommendation_record(&r, name)
            });
        stream::iter(head.into_iter().map(Ok)).chain(tail)
    })
    .try_flatten()
    .boxed()
}
