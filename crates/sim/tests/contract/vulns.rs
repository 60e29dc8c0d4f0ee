//! Vulnerability entity sets (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-all-vulnerabilities>).

use rampart_sim::SimConfig;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{App, error_code, example, keys, small_config, values};

#[tokio::test]
async fn the_catalogue_pages_and_matches_the_truth() {
    // A denser tenant has a bigger catalogue (more than one server page of 8,000).
    let app = App::start(SimConfig {
        devices: 40,
        findings_per_device: 150,
        rate_limits: false,
        ..SimConfig::default()
    })
    .await;
    let token = app.token().await;
    let truth: Vec<Value> = values(app.running.sim.truth().vulnerabilities());
    assert!(
        truth.len() > 8_000,
        "the catalogue spans several server pages"
    );
    let (items, links) = app.walk("/api/vulnerabilities", &token).await;
    assert_eq!(items, truth);
    assert_eq!(
        links[0],
        format!("{}/api/vulnerabilities?$skip=8000", app.url())
    );
    let documented = keys(&example("mde-06-4-2-vulnerability-entity.json")["value"][0]);
    assert_eq!(keys(&items[0]), documented);
    assert!(
        items
            .iter()
            .any(|v| v["exposedMachines"].as_u64().unwrap() > 0)
    );
    assert!(items.iter().any(|v| v["publicExploit"] == true));
    for q in ["$top=8001", "$top=0"] {
        let reply = app.get(&format!("/api/vulnerabilities?{q}"), &token).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{q}");
    }
    let page = app
        .get("/api/vulnerabilities?$top=3&$skip=2", &token)
        .await
        .json();
    assert_eq!(page["value"].as_array().unwrap().as_slice(), &truth[2..5]);
    assert!(page.get("@odata.nextLink").is_none());
    let critical = app
        .get(
            "/api/vulnerabilities?$filter=severity%20eq%20'critical'%20and%20cvssV3%20ge%209",
            &token,
        )
        .await
        .json();
    let want = truth
        .iter()
        .filter(|v| v["severity"] == "Critical")
        .count()
        .min(8000);
    assert_eq!(critical["value"].as_array().unwrap().len(), want);
}

#[tokio::test]
async fn single_vulnerability_and_machine_references() {
    let app = App::small().await;
    let token = app.token().await;
    let findings: Vec<Value> = values(app.running.sim.truth().findings());
    let cve = findings[0]["cveId"].as_str().unwrap();
    let reply = app
        .get(&format!("/api/vulnerabilities/{cve}"), &token)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(
        body["@odata.context"],
        format!("{}/api/$metadata#Vulnerabilities/$entity", app.url())
    );
    assert_eq!(body["id"], cve);
    let devices: std::collections::BTreeSet<&str> = findings
        .iter()
        .filter(|f| f["cveId"] == cve)
        .map(|f| f["deviceId"].as_str().unwrap())
        .collect();
    assert_eq!(body["exposedMachines"], devices.len());
    let refs = app
        .get(
            &format!("/api/vulnerabilities/{cve}/machineReferences"),
            &token,
        )
        .await
        .json();
    let got: std::collections::BTreeSet<&str> = refs["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, devices);
    for bad in ["CVE-1999-0001", "CVE-2025-99999999", "nope", "%00"] {
        let reply = app
            .get(&format!("/api/vulnerabilities/{bad}"), &token)
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{bad}");
        assert_eq!(error_code(&reply), "ResourceNotFound");
    }
}

#[tokio::test]
async fn machines_vulnerabilities_rows_are_the_findings() {
    let app = App::start(SimConfig {
        findings_per_device: 55,
        ..small_config()
    })
    .await;
    let token = app.token().await;
    let findings: Vec<Value> = values(app.running.sim.truth().findings());
    assert!(
        findings.len() > 10_000,
        "more than one server page: {}",
        findings.len()
    );
    let (items, links) = app
        .walk("/api/vulnerabilities/machinesVulnerabilities", &token)
        .await;
    assert_eq!(items.len(), findings.len());
    assert!(
        links[0].ends_with("/api/vulnerabilities/machinesVulnerabilities?$skip=10000"),
        "{}",
        links[0]
    );
    let sample = example("mde-07-4-3-get-api-vulnerabilities-machinesvulnerabilit.json");
    assert_eq!(keys(&items[0]), keys(&sample));
    for row in &items {
        let id = row["id"].as_str().unwrap();
        let want = format!(
            "{}-_-{}-_-{}-_-{}-_-{}-_-{}",
            row["machineId"].as_str().unwrap(),
            row["cveId"].as_str().unwrap(),
            row["productVendor"].as_str().unwrap(),
            row["productName"].as_str().unwrap(),
            row["productVersion"].as_str().unwrap(),
            row["fixingKbId"].as_str().unwrap_or("")
        );
        assert_eq!(id, want);
    }
    let mut got: Vec<(String, String)> = items
        .iter()
        .map(|r| {
            (
                r["machineId"].as_str().unwrap().into(),
                r["cveId"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut want: Vec<(String, String)> = findings
        .iter()
        .map(|f| {
            (
                f["deviceId"].as_str().unwrap().into(),
                f["cveId"].as_str().unwrap().into(),
            )
        })
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let reply = app
        .get(
            "/api/vulnerabilities/machinesVulnerabilities?$top=10001",
            &token,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let one = &items[3];
    let filtered = app
        .get(
            &format!(
                "/api/vulnerabilities/machinesVulnerabilities?$filter=machineId%20eq%20'{}'",
                one["machineId"].as_str().unwrap()
            ),
            &token,
        )
        .await
        .json();
    let want = items
        .iter()
        .filter(|r| r["machineId"] == one["machineId"])
        .count();
    assert_eq!(filtered["value"].as_array().unwrap().len(), want);
}
