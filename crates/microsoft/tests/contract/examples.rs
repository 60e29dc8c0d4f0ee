//! Every `mde-*` example payload of the reference is read with the wire types the client uses, the
//! way the client reads it (collections through the streaming decoder too), and converted to model
//! types. A payload our types cannot read is a bug in the types.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;

use rampart_microsoft::ChangeStatus;
use rampart_microsoft::EnvelopeDecoder;
use rampart_microsoft::decode_record;
use rampart_microsoft::read_export_lines;
use rampart_microsoft::{
    AssetVulnerability, Collection, DeltaAssetVulnerability, ErrorEnvelope, ExportFilesResponse,
    FindingRow, Machine, MachineVulnerability, Recommendation, Software, Vulnerability,
};
use rampart_microsoft::{Claims, TokenErrorBody, TokenResponse};
use rampart_microsoft::{ENDPOINT_ROLES, TokenError, TokenRejection, explain_aadsts};
use rampart_model::{AssetKind, Severity};
use serde::de::DeserializeOwned;

fn examples_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/examples");
    assert!(
        dir.is_dir(),
        "the reference examples are missing: expected {} (CI lays shared/ beside the clone; \
         a developer checkout needs /work/shared or a copy of it at that path)",
        dir.display()
    );
    dir
}

fn read(name: &str) -> Vec<u8> {
    let path = examples_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn parse<T: DeserializeOwned>(name: &str) -> T {
    serde_json::from_slice(&read(name))
        .unwrap_or_else(|e| panic!("{name} does not fit its wire type: {e}"))
}

/// Reads a collection page as the client does: chunk by chunk through the streaming decoder, each
/// item with `T` through the client's record reader. Also checks it agrees with reading the page
/// whole with `serde_json::from_slice`.
fn stream<T: DeserializeOwned + PartialEq + std::fmt::Debug>(
    name: &str,
) -> (Vec<T>, Option<String>) {
    let body = read(name);
    let whole: Collection<T> = parse(name);
    for chunk in [1, 7, 64, body.len()] {
        let mut decoder = EnvelopeDecoder::new(1 << 20);
        let mut items: Vec<T> = Vec::new();
        for part in body.chunks(chunk) {
            decoder
                .feed(part, &mut |item: &[u8]| {
                    items.push(
                        decode_record(item)
                            .unwrap_or_else(|e| panic!("{name}: item unreadable: {e}")),
                    );
                    Ok(())
                })
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let tail = decoder.finish().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            items, whole.value,
            "{name}: streaming (chunks of {chunk}) and whole reads differ"
        );
        assert_eq!(tail.next_link, whole.next_link, "{name}");
        assert_eq!(tail.context, whole.context, "{name}");
    }
    (whole.value, whole.next_link)
}

/// An example file and the check it must pass.
type Contract = (&'static str, fn(&str));

/// The contract for each example file. A new example without a contract fails the test below.
const CONTRACTS: &[Contract] = &[
    ("mde-01-1-3-v2-token-endpoint-use-this.json", token_response),
    (
        "mde-02-1-5-access-token-jwt-claims-obs-two-independent-.json",
        jwt_claims,
    ),
    (
        "mde-03-1-6-windowsdefenderatp-application-roles-value-s.json",
        forbidden_envelope,
    ),
    ("mde-04-1-7-token-endpoint-errors.json", token_error),
    ("mde-05-3-2-machine-entity.json", machines),
    ("mde-06-4-2-vulnerability-entity.json", vulnerabilities),
    (
        "mde-07-4-3-get-api-vulnerabilities-machinesvulnerabilit.json",
        machine_vulnerability,
    ),
    (
        "mde-08-5-software-and-recommendation-entities-context.json",
        software,
    ),
    (
        "mde-09-5-software-and-recommendation-entities-context.json",
        recommendation,
    ),
    (
        "mde-10-6-3-record-json-response-camelcase.json",
        export_page,
    ),
    ("mde-11-7-2-response.json", export_files),
    ("mde-12-7-3-file-format.json", export_file_line),
    (
        "mde-13-8-delta-export-softwarevulnerabilitychangesbymac.json",
        delta_record,
    ),
    (
        "mde-14-9-3-error-envelope-all-mde-api-errors-doc-common.json",
        not_found_envelope,
    ),
];

#[test]
fn every_mde_example_has_a_contract_and_passes_it() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(examples_dir())
        .expect("examples dir readable")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("mde-") && n.ends_with(".json"))
        .collect();
    let covered: BTreeSet<String> = CONTRACTS.iter().map(|(n, _)| (*n).to_owned()).collect();
    let missing: Vec<_> = on_disk.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "examples without a contract test (add one): {missing:?}"
    );
    let gone: Vec<_> = covered.difference(&on_disk).collect();
    assert!(
        gone.is_empty(),
        "contracts for examples that no longer exist: {gone:?}"
    );
    for (name, check) in CONTRACTS {
        check(name);
    }
}

fn token_response(name: &str) {
    let t: TokenResponse = parse(name);
    assert_eq!(t.expires_in, 3599);
    assert_eq!(t.token_type.as_deref(), Some("Bearer"));
    assert!(
        !format!("{t:?}").contains("eyJ0eXAi"),
        "the token must not show in Debug"
    );
}

fn jwt_claims(name: &str) {
    let c: Claims = parse(name);
    assert_eq!(
        c.aud.as_deref(),
        Some("https://api.securitycenter.microsoft.com")
    );
    assert_eq!(c.exp, Some(1_714_514_576));
    let missing = c.missing_roles(ENDPOINT_ROLES);
    assert_eq!(missing.names(), vec!["Vulnerability.Read.All"]);
    assert!(missing.roles_claim_present);
}

fn forbidden_envelope(name: &str) {
    let e: ErrorEnvelope = parse(name);
    let body = e.error.expect("error body");
    assert_eq!(body.code.as_deref(), Some("Forbidden"));
    assert_eq!(body.target.as_deref(), Some("<id>"));
}

fn token_error(name: &str) {
    let body: TokenErrorBody = parse(name);
    assert_eq!(body.aadsts(), Some(7_000_215));
    assert_eq!(body.error.as_deref(), Some("invalid_client"));
    let err = TokenError::Rejected(Box::new(TokenRejection {
        status: 401,
        error: body.error.clone(),
        aadsts: body.aadsts(),
        description: body.first_line().map(str::to_owned),
        trace_id: body.trace_id.clone(),
        correlation_id: body.correlation_id.clone(),
        timestamp: body.timestamp.clone(),
    }));
    assert_eq!(
        err.explanation(),
        explain_aadsts(7_000_215).expect("explained")
    );
    assert!(
        err.to_string()
            .contains("18ca6aad-314e-4069-9bb3-ddf8cd312100"),
        "trace id kept"
    );
}

fn machines(name: &str) {
    let (value, _) = stream::<Machine>(name);
    assert_eq!(value.len(), 1);
    let asset = value.into_iter().next().expect("one machine").into_asset();
    assert_eq!(asset.source_id, "4f1d0e8a7c3b2a19e6d5c4b3a29180f7e6d5c4b3");
    assert_eq!(asset.kind, AssetKind::Device);
    assert_eq!(asset.name.as_deref(), Some("ws-fin-0142.corp.contoso.com"));
    assert_eq!(
        asset.ip_addresses,
        vec!["10.20.30.41", "fe80::359c:fd3a:8880:ddb6", "127.0.0.1"]
    );
    assert_eq!(asset.tags, vec!["finance", "tier2"]);
    assert_eq!(asset.rbac_group_id, Some(140));
    assert!(!asset.is_duplicate);
    assert_eq!(asset.azure_resource_id, None);
    assert_eq!(
        asset.first_seen.expect("firstSeen").to_rfc3339(),
        "2024-03-11T08:21:44.123456700+00:00"
    );
    assert_eq!(
        asset.last_seen.expect("lastSeen").to_rfc3339(),
        "2025-06-02T06:58:10.447812+00:00"
    );
}

fn vulnerabilities(name: &str) {
    let (value, _) = stream::<Vulnerability>(name);
    let v = value
        .into_iter()
        .next()
        .expect("one CVE")
        .into_model()
        .expect("a CVE id");
    assert_eq!(v.cve_id.as_str(), "CVE-2024-43097");
    assert_eq!(v.severity, Some(Severity::High));
    assert_eq!(v.cvss, Some(7.8));
    assert_eq!(v.epss, Some(0.00412));
    assert_eq!(
        v.updated_on.expect("updatedOn").to_rfc3339(),
        "2025-02-03T17:12:09.500+00:00"
    );
}

fn machine_vulnerability(name: &str) {
    let r: MachineVulnerability = parse(name);
    assert_eq!(r.cve_id.as_deref(), Some("CVE-2016-3348"));
    assert_eq!(r.fixing_kb_id.as_deref(), Some("3185911"));
}

fn software(name: &str) {
    let s: Software = parse(name);
    assert_eq!(s.id.as_deref(), Some("microsoft-_-edge"));
    assert_eq!(s.weaknesses, Some(467));
    assert_eq!(s.impact_score, Some(2.39947438));
}

fn recommendation(name: &str) {
    let r: Recommendation = parse(name);
    assert_eq!(r.id.as_deref(), Some("va-_-microsoft-_-windows_11"));
    assert_eq!(r.associated_threats.len(), 1);
    assert_eq!(r.exposure_impact, Some(7.674418604651163));
}

/// The lean row the sync decodes gives the same finding as the whole record.
fn assert_lean_row_agrees(name: &str, whole: &AssetVulnerability, lean: FindingRow) {
    assert_eq!(
        lean.into_finding(),
        whole.clone().into_finding(),
        "{name}: FindingRow and AssetVulnerability disagree"
    );
}

fn export_page(name: &str) {
    let (value, next) = stream::<AssetVulnerability>(name);
    assert!(next.expect("nextLink").contains("$skiptoken="));
    let (lean, _) = stream::<FindingRow>(name);
    assert_eq!(lean.len(), value.len());
    for (whole, lean) in value.iter().zip(lean) {
        assert_lean_row_agrees(name, whole, lean);
    }
    let f = value
        .into_iter()
        .next()
        .expect("one row")
        .into_finding()
        .expect("a finding");
    assert_eq!(
        f.key.asset_source_id,
        "dddddddddddddddddddddddddddddddddddddddd"
    );
    assert_eq!(f.key.cve_id.as_str(), "CVE-2025-21418");
    assert_eq!(f.key.software_name, "windows_11");
    assert_eq!(f.cvss, Some(7.8));
    assert_eq!(
        f.recommended_update.as_deref(),
        Some("February 2025 Security Updates")
    );
    assert_eq!(
        f.first_seen.expect("first seen").to_rfc3339(),
        "2025-02-11T18:00:00+00:00"
    );
}

fn export_files(name: &str) {
    let r: ExportFilesResponse = parse(name);
    assert_eq!(r.export_files.len(), 2);
    assert_eq!(r.generated_time.as_deref(), Some("2025-11-02T11:01:00Z"));
}

fn export_file_line(name: &str) {
    let row: AssetVulnerability = parse(name);
    assert_eq!(
        row.os_platform.as_deref(),
        Some("Windows10"),
        "PascalCase OSPlatform"
    );
    assert_eq!(row.cvss_score, Some(7.0), "integer CvssScore");
    assert_eq!(row.rbac_group_id, Some(0));
    // As it comes in a file: one line of gzip JSON lines.
    let line = serde_json::to_string(
        &serde_json::from_slice::<serde_json::Value>(&read(name)).expect("json"),
    )
    .expect("one line");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(format!("{line}\n{line}\n").as_bytes())
        .expect("gzip");
    let bytes = gz.finish().expect("gzip");
    let rows: Vec<AssetVulnerability> = read_export_lines(&bytes[..], 1 << 20)
        .collect::<Result<_, _>>()
        .expect("lines");
    assert_eq!(rows, vec![row.clone(), row.clone()]);
    assert_lean_row_agrees(name, &row, parse(name));
    let f = row.into_finding().expect("a finding");
    assert_eq!(f.key.cve_id.as_str(), "CVE-2025-49734");
    assert_eq!(f.severity, Some(Severity::High));
    assert_eq!(
        f.last_seen.expect("last seen").to_rfc3339(),
        "2025-10-07T00:08:23+00:00"
    );
}

fn delta_record(name: &str) {
    let d: DeltaAssetVulnerability = parse(name);
    assert_eq!(d.status(), Some("Fixed"));
    let change = d.into_change().expect("a finding change");
    assert_eq!(change.status, ChangeStatus::Fixed);
    assert_eq!(
        change.event_time.expect("event time").to_rfc3339(),
        "2021-01-05T18:00:00+00:00"
    );
    assert_eq!(change.finding.key.software_vendor, "mozilla");
}

fn not_found_envelope(name: &str) {
    let e: ErrorEnvelope = parse(name);
    let body = e.error.expect("error body");
    assert_eq!(body.code.as_deref(), Some("ResourceNotFound"));
    assert!(body.message.is_some());
}
