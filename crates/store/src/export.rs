//! The stored rows as export records (`rampart_model::export`): the one mapping shared by
//! `rampart export`, the portal's CSV downloads and the REST API.

use rampart_model::export::{AssetRecord, FindingRecord, VulnerabilityRecord};

use crate::types::{StoredAsset, StoredFinding, StoredVulnerability};

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
    }
}

pub fn finding_record(s: &StoredFinding) -> FindingRecord {
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
    }
}

pub fn vulnerability_record(s: &StoredVulnerability) -> VulnerabilityRecord {
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
    }
}
