//! Export records: the shape of `rampart export` and the API's CSV downloads, a stable
//! interface that scripts read. JSON lines use these field names; CSV has the same columns in the same
//! order. Timestamps are RFC 3339 UTC whatever format Microsoft used.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::Serialize;

/// One row of `export assets`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct AssetRecord {
    pub integration: String,
    pub source: String,
    pub source_id: String,
    pub kind: String,
    pub name: Option<String>,
    pub os_platform: Option<String>,
    pub os_version: Option<String>,
    pub health_status: Option<String>,
    pub onboarding_status: Option<String>,
    pub exposure_level: Option<String>,
    pub risk_score: Option<String>,
    pub device_value: Option<String>,
    pub ip_addresses: Vec<String>,
    pub tags: Vec<String>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub first_seen: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub last_seen: Option<DateTime<Utc>>,
    /// `active` or `missing`.
    pub status: String,
    /// The public address the device was last seen from, apart from its own `ip_addresses`.
    pub external_ip_address: Option<String>,
    /// `inventory` (the source lists the asset) or `vulnerability_data` (known only from
    /// vulnerability rows: the source's device list did not return it).
    pub known_from: String,
}

/// One row of `export findings`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingRecord {
    pub integration: String,
    pub source: String,
    pub asset_source_id: String,
    pub asset_name: Option<String>,
    pub cve_id: String,
    pub software_vendor: String,
    pub software_name: String,
    pub software_version: String,
    pub severity: Option<String>,
    pub cvss: Option<f64>,
    pub exploitability: Option<String>,
    pub recommended_update: Option<String>,
    /// `open` or `fixed`.
    pub status: String,
    #[serde(serialize_with = "rfc3339_opt")]
    pub first_seen: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub last_seen: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub fixed_at: Option<DateTime<Utc>>,
    /// 0–100, higher is more urgent (docs/prioritisation.md); empty until first assessed.
    pub priority: Option<f64>,
    /// The SSVC decision of an open finding (`immediate`, `out-of-cycle`, `scheduled`, `defer`).
    pub decision: Option<String>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub due_at: Option<DateTime<Utc>>,
    /// `on_track`, `due_soon`, `overdue`, `accepted` or `closed`, at the time of the export.
    pub sla_status: Option<String>,
    /// Why this priority: each factor's value and points (a JSON object keyed by factor; in CSV
    /// `factor=value (+points); …`).
    pub priority_factors: PriorityFactors,
}

/// The contributions of a priority, in their order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriorityFactors(pub Vec<crate::priority::FactorContribution>);

impl PriorityFactors {
    /// `decision=immediate (+75); exploitation=active (kev) (+5); …`: empty when there are none.
    pub fn line(&self) -> String {
        self.0
            .iter()
            .map(|c| format!("{}={} (+{})", c.factor.as_str(), c.value, c.points))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl Serialize for PriorityFactors {
    /// `{"decision": {"value": "immediate", "weight": 0, "points": 75}, …}`, in order.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        #[derive(Serialize)]
        struct Part<'a> {
            value: &'a str,
            weight: u32,
            points: u8,
        }
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for c in &self.0 {
            map.serialize_entry(
                c.factor.as_str(),
                &Part {
                    value: &c.value,
                    weight: c.weight,
                    points: c.points,
                },
            )?;
        }
        map.end()
    }
}

/// One row of `export remediations`: a fix of the remediation plan, in its rank
/// (docs/prioritisation.md, "The remediation plan").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemediationRecord {
    pub rank: u64,
    pub fix: String,
    /// The sum of the priorities of the open findings it closes that no exception covers.
    pub priority_removed: f64,
    pub max_priority: Option<f64>,
    pub findings: u64,
    pub assets: u64,
    pub overdue: u64,
    pub immediate: u64,
    /// CVE ids; `;`-separated in CSV.
    pub cves: Vec<String>,
    pub reference: Option<String>,
    pub link: Option<String>,
}

impl CsvRecord for RemediationRecord {
    const HEADER: &'static [&'static str] = &[
        "rank",
        "fix",
        "priority_removed",
        "max_priority",
        "findings",
        "assets",
        "overdue",
        "immediate",
        "cves",
        "reference",
        "link",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.rank.to_string(),
            self.fix.clone(),
            num(Some(self.priority_removed)),
            num(self.max_priority),
            self.findings.to_string(),
            self.assets.to_string(),
            self.overdue.to_string(),
            self.immediate.to_string(),
            self.cves.join(";"),
            opt(&self.reference),
            opt(&self.link),
        ]
    }
}

/// One row of `export vulnerabilities`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VulnerabilityRecord {
    pub cve_id: String,
    pub severity: Option<String>,
    pub cvss: Option<f64>,
    pub epss: Option<f64>,
    pub public_exploit: bool,
    pub exploit_verified: bool,
    pub exploit_in_kit: bool,
    #[serde(serialize_with = "rfc3339_opt")]
    pub published_on: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub updated_on: Option<DateTime<Utc>>,
    pub exposed_assets: u64,
    pub description: Option<String>,
    /// The source's own count of exposed devices (MDE `exposedMachines`), beside Rampart's
    /// `exposed_assets`.
    pub source_exposed_machines: Option<u64>,
    /// Listed in CISA's Known Exploited Vulnerabilities catalogue (as last refreshed).
    pub kev: bool,
    /// When CISA added it (`dateAdded`); empty when not listed.
    pub kev_date_added: Option<NaiveDate>,
    /// CISA's `dueDate` for US federal agencies (not Rampart's SLA); empty when not listed.
    pub kev_due_date: Option<NaiveDate>,
    /// CISA's `knownRansomwareCampaignUse`: `Known` or `Unknown`; empty when not listed.
    pub kev_known_ransomware_campaign_use: Option<String>,
}

/// One row of `export posture` (Defender for Cloud). `record_type` says which columns apply:
///
/// - `tenant`: one per integration, over the latest score of each of its subscriptions, computed
///   as Microsoft does ([`crate::weighted_percent`]): `subscription_id` is empty;
///   `score_current` = Σ round(weight·current/max, 2), `score_max` = Σ weight (a weight of 0
///   counting as 1), `score_percent` = their ratio × 100 (never an average of percentages, and not
///   Σ weight·current / Σ weight·max), `weight` = Σ weight, `captured_at` = the newest capture.
/// - `score`: the latest secure score of one subscription; `score_percent` is 0–100.
/// - `control`: one security control of one subscription (latest capture): the score columns are
///   the control's, plus `control_id`, `name`, `healthy`, `unhealthy`, `not_applicable`.
/// - `recommendation`: one assessment of one resource (not `Removed`): `assessment_id`,
///   `assessment_key`, `resource_id`, `name`, `status`, `severity`, `category`, and Rampart's
///   `first_seen`, `last_seen`, `resolved_at`; and Microsoft's risk of it on that resource
///   (`risk_level`, `risk_factors`, `attack_paths`; assessments api-version 2025-05-04).
///
/// Columns that do not apply to a row type are empty (null in JSON). New columns are only ever
/// added at the end.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct PostureRecord {
    pub record_type: String,
    pub integration: String,
    pub subscription_id: String,
    pub subscription_name: Option<String>,
    pub score_current: Option<f64>,
    pub score_max: Option<f64>,
    pub score_percent: Option<f64>,
    pub weight: Option<i64>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub captured_at: Option<DateTime<Utc>>,
    pub control_id: Option<String>,
    /// The control's or the recommendation's display name.
    pub name: Option<String>,
    pub healthy: Option<i64>,
    pub unhealthy: Option<i64>,
    pub not_applicable: Option<i64>,
    pub assessment_id: Option<String>,
    pub assessment_key: Option<String>,
    pub resource_id: Option<String>,
    /// `Healthy`, `Unhealthy`, `NotApplicable`.
    pub status: Option<String>,
    pub severity: Option<String>,
    pub category: Option<String>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub first_seen: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub last_seen: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub resolved_at: Option<DateTime<Utc>>,
    /// `Low`, `Medium`, `High`, `Critical`.
    pub risk_level: Option<String>,
    /// Risk factors (`;`-separated in CSV).
    pub risk_factors: Vec<String>,
    /// Attack path references (`;`-separated in CSV).
    pub attack_paths: Vec<String>,
}

/// The `record_type` words of [`PostureRecord`].
pub mod posture_record_type {
    pub const TENANT: &str = "tenant";
    pub const SCORE: &str = "score";
    pub const CONTROL: &str = "control";
    pub const RECOMMENDATION: &str = "recommendation";
}

/// A record that can be written as a CSV row.
pub trait CsvRecord {
    /// The header, in the order of `cells`.
    const HEADER: &'static [&'static str];
    /// The cells of this row, unescaped.
    fn cells(&self) -> Vec<String>;
}

/// RFC 3339 in UTC with `Z`, fractional seconds only when there are any.
pub fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn rfc3339_opt<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(t)),
        None => s.serialize_none(),
    }
}

fn date(d: &Option<NaiveDate>) -> String {
    d.map(|d| d.to_string()).unwrap_or_default()
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

fn num(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn time(t: &Option<DateTime<Utc>>) -> String {
    t.as_ref().map(rfc3339).unwrap_or_default()
}

impl CsvRecord for AssetRecord {
    const HEADER: &'static [&'static str] = &[
        "integration",
        "source",
        "source_id",
        "kind",
        "name",
        "os_platform",
        "os_version",
        "health_status",
        "onboarding_status",
        "exposure_level",
        "risk_score",
        "device_value",
        "ip_addresses",
        "tags",
        "first_seen",
        "last_seen",
        "status",
        "external_ip_address",
        "known_from",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.integration.clone(),
            self.source.clone(),
            self.source_id.clone(),
            self.kind.clone(),
            opt(&self.name),
            opt(&self.os_platform),
            opt(&self.os_version),
            opt(&self.health_status),
            opt(&self.onboarding_status),
            opt(&self.exposure_level),
            opt(&self.risk_score),
            opt(&self.device_value),
            self.ip_addresses.join(";"),
            self.tags.join(";"),
            time(&self.first_seen),
            time(&self.last_seen),
            self.status.clone(),
            opt(&self.external_ip_address),
            self.known_from.clone(),
        ]
    }
}

impl CsvRecord for FindingRecord {
    const HEADER: &'static [&'static str] = &[
        "integration",
        "source",
        "asset_source_id",
        "asset_name",
        "cve_id",
        "software_vendor",
        "software_name",
        "software_version",
        "severity",
        "cvss",
        "exploitability",
        "recommended_update",
        "status",
        "first_seen",
        "last_seen",
        "fixed_at",
        "priority",
        "decision",
        "due_at",
        "sla_status",
        "priority_factors",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.integration.clone(),
            self.source.clone(),
            self.asset_source_id.clone(),
            opt(&self.asset_name),
            self.cve_id.clone(),
            self.software_vendor.clone(),
            self.software_name.clone(),
            self.software_version.clone(),
            opt(&self.severity),
            num(self.cvss),
            opt(&self.exploitability),
            opt(&self.recommended_update),
            self.status.clone(),
            time(&self.first_seen),
            time(&self.last_seen),
            time(&self.fixed_at),
            num(self.priority),
            opt(&self.decision),
            time(&self.due_at),
            opt(&self.sla_status),
            self.priority_factors.line(),
        ]
    }
}

impl CsvRecord for VulnerabilityRecord {
    const HEADER: &'static [&'static str] = &[
        "cve_id",
        "severity",
        "cvss",
        "epss",
        "public_exploit",
        "exploit_verified",
        "exploit_in_kit",
        "published_on",
        "updated_on",
        "exposed_assets",
        "description",
        "source_exposed_machines",
        "kev",
        "kev_date_added",
        "kev_due_date",
        "kev_known_ransomware_campaign_use",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.cve_id.clone(),
            opt(&self.severity),
            num(self.cvss),
            num(self.epss),
            self.public_exploit.to_string(),
            self.exploit_verified.to_string(),
            self.exploit_in_kit.to_string(),
            time(&self.published_on),
            time(&self.updated_on),
            self.exposed_assets.to_string(),
            opt(&self.description),
            self.source_exposed_machines
                .map(|n| n.to_string())
                .unwrap_or_default(),
            self.kev.to_string(),
            date(&self.kev_date_added),
            date(&self.kev_due_date),
            opt(&self.kev_known_ransomware_campaign_use),
        ]
    }
}

impl CsvRecord for PostureRecord {
    const HEADER: &'static [&'static str] = &[
        "record_type",
        "integration",
        "subscription_id",
        "subscription_name",
        "score_current",
        "score_max",
        "score_percent",
        "weight",
        "captured_at",
        "control_id",
        "name",
        "healthy",
        "unhealthy",
        "not_applicable",
        "assessment_id",
        "assessment_key",
        "resource_id",
        "status",
        "severity",
        "category",
        "first_seen",
        "last_seen",
        "resolved_at",
        "risk_level",
        "risk_factors",
        "attack_paths",
    ];
    fn cells(&self) -> Vec<String> {
        let int = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        vec![
            self.record_type.clone(),
            self.integration.clone(),
            self.subscription_id.clone(),
            opt(&self.subscription_name),
            num(self.score_current),
            num(self.score_max),
            num(self.score_percent),
            int(self.weight),
            time(&self.captured_at),
            opt(&self.control_id),
            opt(&self.name),
            int(self.healthy),
            int(self.unhealthy),
            int(self.not_applicable),
            opt(&self.assessment_id),
            opt(&self.assessment_key),
            opt(&self.resource_id),
            opt(&self.status),
            opt(&self.severity),
            opt(&self.category),
            time(&self.first_seen),
            time(&self.last_seen),
            time(&self.resolved_at),
            opt(&self.risk_level),
            self.risk_factors.join(";"),
            self.attack_paths.join(";"),
        ]
    }
}

/// One CSV line (RFC 4180, CRLF-free: `\n` ends lines), with spreadsheet-formula injection
/// defused: a text cell that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR at
/// its start, and not a plain number) gets a leading `'`. Asset names come from the outside.
pub fn csv_line(cells: &[String]) -> String {
    let mut line = String::with_capacity(cells.iter().map(|c| c.len() + 3).sum());
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        let defused;
        let mut cell = cell.as_str();
        if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) && cell.parse::<f64>().is_err() {
            defused = format!("'{cell}");
            cell = &defused;
        }
        if cell.contains([',', '"', '\n', '\r']) {
            line.push('"');
            line.push_str(&cell.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(cell);
        }
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses() {
        let line = csv_line(&[
            "plain".into(),
            "a,b".into(),
            "say \"hi\"".into(),
            "=HYPERLINK(\"x\")".into(),
            "-1.5".into(),
            "line\nbreak".into(),
        ]);
        assert_eq!(
            line,
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"'=HYPERLINK(\"\"x\"\")\",-1.5,\"line\nbreak\"\n"
        );
    }

    #[test]
    fn finding_rows_carry_the_priority_at_the_end() {
        use crate::priority::{FactorContribution, FactorName};
        let factors = PriorityFactors(vec![
            FactorContribution {
                factor: FactorName::Decision,
                value: "immediate".into(),
                weight: 0,
                points: 75,
            },
            FactorContribution {
                factor: FactorName::HumanImpact,
                value: "high (device-value)".into(),
                weight: 2,
                points: 3,
            },
        ]);
        let r = FindingRecord {
            integration: "i".into(),
            source: "defender-endpoint".into(),
            asset_source_id: "a".into(),
            asset_name: None,
            cve_id: "CVE-2024-1".into(),
            software_vendor: "v".into(),
            software_name: "n".into(),
            software_version: "1".into(),
            severity: None,
            cvss: None,
            exploitability: None,
            recommended_update: None,
            status: "open".into(),
            first_seen: None,
            last_seen: None,
            fixed_at: None,
            priority: Some(78.0),
            decision: Some("immediate".into()),
            due_at: None,
            sla_status: Some("overdue".into()),
            priority_factors: factors,
        };
        let cells = r.cells();
        assert_eq!(cells.len(), FindingRecord::HEADER.len());
        // Existing columns keep their places; the new ones follow `priority`.
        assert_eq!(FindingRecord::HEADER[16], "priority");
        assert_eq!(
            &FindingRecord::HEADER[17..],
            ["decision", "due_at", "sla_status", "priority_factors"]
        );
        assert_eq!(cells[16], "78");
        assert_eq!(
            cells[20],
            "decision=immediate (+75); human_impact=high (device-value) (+3)"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["priority_factors"]["human_impact"]["points"], 3);
        assert_eq!(json["priority_factors"]["decision"]["value"], "immediate");
        for name in [
            FactorName::Decision,
            FactorName::HumanImpact,
            FactorName::KevRansomware,
            FactorName::CloudRisk,
            FactorName::DeviceExposure,
        ] {
            assert_eq!(serde_json::to_value(name).unwrap(), name.as_str());
        }
    }

    #[test]
    fn headers_match_cells() {
        let a = AssetRecord {
            integration: "i".into(),
            source: "s".into(),
            source_id: "x".into(),
            kind: "device".into(),
            ip_addresses: vec!["10.0.0.1".into(), "fe80::1".into()],
            status: "active".into(),
            external_ip_address: Some("203.0.113.17".into()),
            known_from: "inventory".into(),
            ..Default::default()
        };
        assert_eq!(a.cells().len(), AssetRecord::HEADER.len());
        let p = PostureRecord {
            record_type: posture_record_type::SCORE.into(),
            weight: Some(67),
            ..Default::default()
        };
        assert_eq!(p.cells().len(), PostureRecord::HEADER.len());
        assert_eq!(p.cells()[7], "67");
        let keys = json_keys(&p);
        assert_eq!(keys.len(), PostureRecord::HEADER.len());
        for h in PostureRecord::HEADER {
            assert!(keys.iter().any(|k| k == h), "{h}");
        }
        let keys = json_keys(&a);
        for h in AssetRecord::HEADER {
            assert!(keys.iter().any(|k| k == h), "{h}");
        }
    }

    /// The keys of a record's JSON line.
    fn json_keys<T: Serialize>(record: &T) -> Vec<String> {
        let json = serde_json::to_value(record).unwrap();
        json.as_object().unwrap().keys().cloned().collect()
    }
}
