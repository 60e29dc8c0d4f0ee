//! `rampart export assets|findings|vulnerabilities|posture|remediations --format csv|jsonl|ocsf`.
//!
//! Rows stream from the store to the output page by page: an export of millions of findings never
//! holds more than one page in memory.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use futures::StreamExt;
use rampart_model::export::{
    AssetRecord, CsvRecord, FindingRecord, PostureRecord, RemediationRecord, VulnerabilityRecord,
    csv_line, posture_record_type, rfc3339,
};
use rampart_store::export::{
    asset_record, finding_record, posture_records, remediation_record, vulnerability_records,
};
use rampart_store::{
    AssetFilter, FindingFilter, RemediationFilter, RemediationSort, StoredAsset, StoredFinding,
    VulnerabilityFilter,
};
use serde::Serialize;

use crate::cli::{ExportArgs, ExportFormat, ExportKind, Global};
use crate::context;
use crate::output::usage;

pub async fn run(global: &Global, args: ExportArgs) -> anyhow::Result<ExitCode> {
    if args.format == ExportFormat::Ocsf && args.kind == ExportKind::Vulnerabilities {
        return Err(usage(
            "OCSF has no class for a CVE catalogue: export vulnerabilities as csv or jsonl, or export findings as ocsf",
        ));
    }
    if args.format == ExportFormat::Ocsf && args.kind == ExportKind::Remediations {
        return Err(usage(
            "OCSF has no class for a remediation plan: export remediations as csv or jsonl, or export findings as ocsf",
        ));
    }
    let store = context::open_store(global).await?;
    // `--workspace W`: only what that workspace's integrations synced, enforced by the store.
    let vis = super::workspace::visibility(store.as_ref(), args.workspace.as_deref()).await?;
    let integration = match &args.integration {
        Some(name) => Some(store.get_integration_by_name(&vis, name).await?.id),
        None => None,
    };
    let out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            File::create(path)
                .with_context(|| format!("cannot create the export file {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let rows = match args.kind {
        ExportKind::Assets => {
            let mut stream = store.stream_assets(
                vis,
                AssetFilter {
                    integration,
                    ..AssetFilter::default()
                },
            );
            let mut writer = RecordWriter::<AssetRecord>::new(args.format, &mut out)?;
            while let Some(item) = stream.next().await {
                let stored = item?;
                match args.format {
                    ExportFormat::Ocsf => writer.json(&ocsf::device_inventory(&stored))?,
                    _ => writer.write(&asset_record(&stored))?,
                }
            }
            writer.rows
        }
        ExportKind::Findings => {
            let mut stream = store.stream_findings(
                vis,
                FindingFilter {
                    integration,
                    ..FindingFilter::default()
                },
            );
            let mut writer = RecordWriter::<FindingRecord>::new(args.format, &mut out)?;
            while let Some(item) = stream.next().await {
                let stored = item?;
                match args.format {
                    ExportFormat::Ocsf => writer.json(&ocsf::vulnerability_finding(&stored))?,
                    _ => writer.write(&finding_record(&stored))?,
                }
            }
            writer.rows
        }
        ExportKind::Vulnerabilities => {
            let mut stream = vulnerability_records(
                store.as_ref(),
                vis,
                VulnerabilityFilter {
                    integration,
                    ..VulnerabilityFilter::default()
                },
            );
            let mut writer = RecordWriter::<VulnerabilityRecord>::new(args.format, &mut out)?;
            while let Some(item) = stream.next().await {
                writer.write(&item?)?;
            }
            writer.rows
        }
        ExportKind::Posture => {
            // Defender for Cloud posture: tenant, score, control and recommendation rows (an
            // Endpoint-only store gives just the CSV header). In OCSF, recommendations are
            // Compliance Findings; scores have no OCSF class and are left out, with a note.
            let mut stream = posture_records(store.as_ref(), vis, integration);
            let mut writer = RecordWriter::<PostureRecord>::new(args.format, &mut out)?;
            let mut scores_left_out = 0u64;
            while let Some(item) = stream.next().await {
                let record = item?;
                match args.format {
                    ExportFormat::Ocsf
                        if record.record_type == posture_record_type::RECOMMENDATION =>
                    {
                        writer.json(&ocsf::compliance_finding(&record))?
                    }
                    ExportFormat::Ocsf => scores_left_out += 1,
                    _ => writer.write(&record)?,
                }
            }
            if scores_left_out > 0 {
                eprintln!(
                    "note: {scores_left_out} tenant, subscription and control score rows were left out: OCSF has no class for scores; export posture as csv or jsonl to get them"
                );
            }
            writer.rows
        }
        ExportKind::Remediations => {
            // The whole plan at one moment, page by page, in its rank.
            let now = chrono::Utc::now();
            let filter = RemediationFilter { integration };
            let mut writer = RecordWriter::<RemediationRecord>::new(args.format, &mut out)?;
            let mut offset = Some(0u32);
            while let Some(from) = offset {
                let page = store
                    .remediations(&vis, &filter, RemediationSort::Priority, now, from, 1000)
                    .await?;
                for (n, r) in page.items.iter().enumerate() {
                    let rank = u64::from(from) + n as u64 + 1;
                    writer.write(&remediation_record(rank, r))?;
                }
                offset = page.next;
            }
            writer.rows
        }
    };
    out.flush().context("cannot write the export")?;
    if let Some(path) = &args.output {
        eprintln!("Wrote {rows} records to {}.", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

struct RecordWriter<'a, R> {
    format: ExportFormat,
    out: &'a mut dyn Write,
    rows: u64,
    _record: std::marker::PhantomData<R>,
}

impl<'a, R: CsvRecord + Serialize> RecordWriter<'a, R> {
    fn new(format: ExportFormat, out: &'a mut dyn Write) -> anyhow::Result<Self> {
        if format == ExportFormat::Csv {
            let header: Vec<String> = R::HEADER.iter().map(|h| h.to_string()).collect();
            out.write_all(csv_line(&header).as_bytes())
                .context("cannot write the export")?;
        }
        Ok(Self {
            format,
            out,
            rows: 0,
            _record: std::marker::PhantomData,
        })
    }

    fn write(&mut self, record: &R) -> anyhow::Result<()> {
        match self.format {
            ExportFormat::Csv => self
                .out
                .write_all(csv_line(&record.cells()).as_bytes())
                .context("cannot write the export")?,
            ExportFormat::Jsonl | ExportFormat::Ocsf => return self.json(record),
        }
        self.rows += 1;
        Ok(())
    }

    fn json<T: Serialize>(&mut self, value: &T) -> anyhow::Result<()> {
        serde_json::to_writer(&mut *self.out, value).context("cannot write the export")?;
        self.out
            .write_all(b"\n")
            .context("cannot write the export")?;
        self.rows += 1;
        Ok(())
    }
}

/// OCSF 1.3 mappings: Vulnerability Finding (class 2002) and Device Inventory Info (class 5001).
mod ocsf {
    use rampart_model::FindingStatus;
    use serde_json::{Value, json};

    use super::*;

    const VERSION: &str = "1.3.0";

    fn product(integration: &str, source: &str) -> Value {
        json!({
            "version": VERSION,
            "product": {"name": "Rampart", "vendor_name": "Rampart"},
            "labels": [source],
            "tenant_uid": integration,
        })
    }

    fn severity_id(severity: Option<&str>) -> u8 {
        match severity {
            Some("Low") => 2,
            Some("Medium") => 3,
            Some("High") => 4,
            Some("Critical") => 5,
            _ => 0,
        }
    }

    pub fn vulnerability_finding(s: &StoredFinding) -> Value {
        let r = finding_record(s);
        let open = s.status == FindingStatus::Open;
        let time = r.last_seen.as_ref().map(|t| t.timestamp_millis());
        json!({
            "class_uid": 2002,
            "class_name": "Vulnerability Finding",
            "category_uid": 2,
            "category_name": "Findings",
            "activity_id": if open { 2 } else { 3 },
            "activity_name": if open { "Update" } else { "Close" },
            "type_uid": 200200 + if open { 2 } else { 3 },
            "severity_id": severity_id(r.severity.as_deref()),
            "severity": r.severity,
            "status_id": if open { 1 } else { 4 },
            "status": if open { "New" } else { "Resolved" },
            "time": time,
            "metadata": product(&r.integration, &r.source),
            "finding_info": {
                "uid": format!("{}:{}:{}:{}:{}:{}", r.integration, r.asset_source_id, r.software_vendor, r.software_name, r.software_version, r.cve_id),
                "title": format!("{} in {} {}", r.cve_id, r.software_name, r.software_version),
                "first_seen_time_dt": r.first_seen.as_ref().map(rfc3339),
                "last_seen_time_dt": r.last_seen.as_ref().map(rfc3339),
            },
            "vulnerabilities": [{
                "cve": {"uid": r.cve_id, "cvss": r.cvss.map(|score| vec![json!({"base_score": score, "version": "3.1"})])},
                "severity": r.severity,
                "affected_packages": [{"name": r.software_name, "vendor_name": r.software_vendor, "version": r.software_version}],
                "remediation": r.recommended_update.as_ref().map(|u| json!({"desc": u})),
                "fix_available": r.recommended_update.is_some(),
            }],
            "resources": [{"uid": r.asset_source_id, "name": r.asset_name, "type": "device"}],
            "device": {"uid": r.asset_source_id, "hostname": r.asset_name, "type_id": 0},
            "unmapped": {
                "exploitability": r.exploitability,
                "fixed_at": r.fixed_at.as_ref().map(rfc3339),
                "priority": r.priority,
                "decision": r.decision,
                "due_at": r.due_at.as_ref().map(rfc3339),
                "sla_status": r.sla_status,
                "priority_factors": r.priority_factors,
            },
        })
    }

    /// A Defender for Cloud recommendation on one resource as an OCSF Compliance Finding (class
    /// 2003): Healthy passes, Unhealthy fails, NotApplicable is neither.
    pub fn compliance_finding(r: &PostureRecord) -> Value {
        let status = r.status.as_deref().unwrap_or("");
        let (compliance_id, compliance) = match status {
            "Healthy" => (1, "Pass"),
            "Unhealthy" => (3, "Fail"),
            _ => (99, "Other"),
        };
        let resolved = status != "Unhealthy";
        let time = r.last_seen.as_ref().map(|t| t.timestamp_millis());
        json!({
            "class_uid": 2003,
            "class_name": "Compliance Finding",
            "category_uid": 2,
            "category_name": "Findings",
            "activity_id": if resolved { 3 } else { 2 },
            "activity_name": if resolved { "Close" } else { "Update" },
            "type_uid": 200300 + if resolved { 3 } else { 2 },
            "severity_id": severity_id(r.severity.as_deref()),
            "severity": r.severity,
            "status_id": if resolved { 4 } else { 1 },
            "status": if resolved { "Resolved" } else { "New" },
            "time": time,
            "metadata": product(&r.integration, "defender-cloud"),
            "cloud": {"provider": "Azure", "account": {"uid": r.subscription_id, "name": r.subscription_name, "type": "Azure Subscription"}},
            "finding_info": {
                "uid": r.assessment_id,
                "title": r.name,
                "types": r.category.as_ref().map(|c| vec![c]),
                "first_seen_time_dt": r.first_seen.as_ref().map(rfc3339),
                "last_seen_time_dt": r.last_seen.as_ref().map(rfc3339),
            },
            "compliance": {
                "control": r.assessment_key,
                "status_id": compliance_id,
                "status": compliance,
                "status_detail": r.status,
            },
            "resources": [{"uid": r.resource_id, "cloud_partition": "Azure"}],
            "unmapped": {"resolved_at": r.resolved_at.as_ref().map(rfc3339)},
        })
    }

    pub fn device_inventory(s: &StoredAsset) -> Value {
        let r = asset_record(s);
        json!({
            "class_uid": 5001,
            "class_name": "Device Inventory Info",
            "category_uid": 5,
            "category_name": "Discovery",
            "activity_id": 2,
            "activity_name": "Collect",
            "type_uid": 500102,
            "severity_id": 1,
            "time": r.last_seen.as_ref().map(|t| t.timestamp_millis()),
            "metadata": product(&r.integration, &r.source),
            "device": {
                "uid": r.source_id,
                "hostname": r.name,
                "type_id": 0,
                "os": {"name": r.os_platform, "version": r.os_version},
                "ip": r.ip_addresses.first(),
                "first_seen_time_dt": r.first_seen.as_ref().map(rfc3339),
                "last_seen_time_dt": r.last_seen.as_ref().map(rfc3339),
                "risk_level": r.risk_score,
                "labels": r.tags,
            },
            "unmapped": {
                "health_status": r.health_status,
                "onboarding_status": r.onboarding_status,
                "exposure_level": r.exposure_level,
                "device_value": r.device_value,
                "ip_addresses": r.ip_addresses,
                "status": r.status,
            },
        })
    }
}
