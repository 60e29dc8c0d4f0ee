//! Export APIs (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-assessment-software-vulnerabilities>): JSON pages, skiptokens pinned to a snapshot, gzip files behind SAS.

use std::collections::BTreeSet;

use base64::Engine;
use rampart_sim::SimConfig;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    App, error_code, example, file_row_as_json, gunzip, keys, small_config, sorted_by_id, values,
};

const PATH: &str = "/api/machines/SoftwareVulnerabilitiesByMachine";

fn skiptoken(link: &str) -> Value {
    let raw = link.split("$skiptoken=").nth(1).expect("skiptoken");
    let raw = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw.as_bytes())
        .expect("standard base64");
    serde_json::from_slice(&bytes).expect("JSON skiptoken")
}

/// Rows with a CVE, comparable with `Truth::findings`.
fn findings_only(rows: &[Value]) -> Vec<Value> {
    sorted_by_id(
        rows.iter()
            .filter(|r| !r["cveId"].is_null())
            .cloned()
            .collect(),
        "id",
    )
}

#[tokio::test]
async fn pages_hold_exactly_the_truth_and_link_with_a_pinned_skiptoken() {
    let app = App::small().await;
    let token = app.token().await;
    let (rows, links) = app.walk(&format!("{PATH}?pageSize=1000"), &token).await;
    assert!(links.len() >= 3, "several pages");
    let truth = sorted_by_id(values(app.running.sim.truth().findings()), "id");
    assert_eq!(findings_only(&rows), truth);
    let ids: BTreeSet<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), rows.len(), "no row twice");
    for link in &links {
        assert!(
            link.starts_with(&format!("{}{PATH}?pagesize=1000&$skiptoken=", app.url())),
            "{link}"
        );
        let t = skiptoken(link);
        assert_eq!(t["ExportDefinition"]["TimePath"], "2026-11-01/0000/");
        assert!(
            t["ExportFileIndex"].is_u64() && t["LineStoppedAt"].is_u64(),
            "{t}"
        );
    }
    let first = app.get(&format!("{PATH}?pageSize=1000"), &token).await;
    assert_eq!(
        first.json()["@odata.context"],
        format!(
            "{}/api/$metadata#Collection(microsoft.windowsDefenderATP.api.AssetVulnerability)",
            app.url()
        )
    );
    assert_eq!(first.json()["value"].as_array().unwrap().len(), 1000);
}

#[tokio::test]
async fn rows_have_the_documented_shape_and_quirks() {
    let app = App::small().await;
    let token = app.token().await;
    let (rows, _) = app.walk(&format!("{PATH}?pageSize=200000"), &token).await;
    let documented = keys(&example("mde-10-6-3-record-json-response-camelcase.json")["value"][0]);
    for r in &rows {
        assert_eq!(keys(r), documented, "{r}");
        assert!(r["rbacGroupId"].is_u64());
        if r["rbacGroupId"] == 0 {
            assert_eq!(r["rbacGroupName"], "Unassigned");
        }
        let ts = r["firstSeenTimestamp"].as_str().unwrap();
        assert!(
            ts.as_bytes()[10] == b' ' && !ts.ends_with('Z'),
            "not ISO: {ts}"
        );
        assert_ne!(r["osArchitecture"], "64-bit");
    }
    let nulls = rows.iter().filter(|r| r["cveId"].is_null()).count();
    // A few % at the default density (see the unit test); more at this small density.
    assert!(
        nulls > 0 && nulls * 100 < rows.len() * 15,
        "software rows without CVE: {nulls}/{}",
        rows.len()
    );
    let raw = String::from_utf8(
        app.get(&format!("{PATH}?pageSize=200000"), &token)
            .await
            .body,
    )
    .unwrap();
    assert!(
        raw.contains("\"cvssScore\":7,") || raw.contains("\"cvssScore\":8,"),
        "some whole scores are integer literals"
    );
    let fractions: BTreeSet<usize> = rows
        .iter()
        .map(|r| {
            r["firstSeenTimestamp"]
                .as_str()
                .unwrap()
                .split('.')
                .nth(1)
                .map_or(0, str::len)
        })
        .collect();
    assert!(
        fractions.len() >= 3,
        "variable fractional digits: {fractions:?}"
    );
    assert!(rows.iter().any(|r| r["osPlatform"] == "Linux"));
    assert!(
        rows.iter().any(|r| r["diskPaths"].is_null())
            && rows.iter().any(|r| r["diskPaths"].is_array())
    );
}

#[tokio::test]
async fn top_gives_n_rows_and_no_next_link_and_page_size_is_bounded() {
    let app = App::small().await;
    let token = app.token().await;
    let page = app.get(&format!("{PATH}?$top=7"), &token).await.json();
    assert_eq!(page["value"].as_array().unwrap().len(), 7);
    assert!(page.get("@odata.nextLink").is_none());
    for q in [
        "pageSize=200001",
        "pageSize=0",
        "pageSize=abc",
        "$top=200001",
    ] {
        let reply = app.get(&format!("{PATH}?{q}"), &token).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{q}");
    }
    let page = app.get(&format!("{PATH}?PAGESIZE=5"), &token).await.json();
    assert_eq!(page["value"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn a_walk_stays_on_its_snapshot_when_time_moves() {
    let app = App::small().await;
    let token = app.token().await;
    let before = sorted_by_id(values(app.running.sim.truth().findings()), "id");
    let first = app
        .get(&format!("{PATH}?pageSize=1500"), &token)
        .await
        .json();
    let mut rows: Vec<Value> = first["value"].as_array().unwrap().clone();
    app.running.sim.tick(1);
    let after = sorted_by_id(values(app.running.sim.truth().findings()), "id");
    assert_ne!(before, after, "the tick changed the tenant");
    let mut next = first["@odata.nextLink"].as_str().map(str::to_owned);
    while let Some(url) = next {
        let page = app.get_url(&url, &token).await.json();
        rows.extend(page["value"].as_array().unwrap().iter().cloned());
        next = page["@odata.nextLink"].as_str().map(str::to_owned);
    }
    assert_eq!(findings_only(&rows), before);
    // A new walk sees the new snapshot.
    let (fresh, links) = app.walk(&format!("{PATH}?pageSize=200000"), &token).await;
    assert!(links.is_empty());
    assert_eq!(findings_only(&fresh), after);
}

#[tokio::test]
async fn garbled_forged_and_stale_skiptokens_are_400() {
    let app = App::small().await;
    let token = app.token().await;
    let good = app
        .get(&format!("{PATH}?pageSize=100"), &token)
        .await
        .json()["@odata.nextLink"]
        .as_str()
        .unwrap()
        .to_owned();
    let raw = good.split("$skiptoken=").nth(1).unwrap().to_owned();
    let b64 = |s: &str| {
        percent_encoding::utf8_percent_encode(
            &base64::engine::general_purpose::STANDARD.encode(s),
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string()
    };
    let bad = vec![
        "abc".to_owned(),
        raw[..raw.len() / 2].to_owned(),
        "%00%01".to_owned(),
        "A".repeat(5000),
        b64("{}"),
        b64("[1,2,3]"),
        b64(
            r#"{"ExportDefinition":{"TimePath":"2026-11-01/0000/"},"ExportFileIndex":-1,"LineStoppedAt":5}"#,
        ),
        b64(
            r#"{"ExportDefinition":{"TimePath":"2031-01-01/0000/"},"ExportFileIndex":0,"LineStoppedAt":5}"#,
        ),
        b64(
            r#"{"ExportDefinition":{"TimePath":"2026-11-01/0001/"},"ExportFileIndex":0,"LineStoppedAt":5}"#,
        ),
        b64(
            r#"{"ExportDefinition":{"TimePath":"2025-01-01/0000/"},"ExportFileIndex":0,"LineStoppedAt":5}"#,
        ),
        b64(
            r#"{"ExportDefinition":{"TimePath":"2026-11-01/0000/"},"ExportFileIndex":999999,"LineStoppedAt":5}"#,
        ),
        b64(
            r#"{"ExportDefinition":{"TimePath":"2026-11-01/0000/"},"ExportFileIndex":0,"LineStoppedAt":1e99}"#,
        ),
        b64(
            r#"{"ExportDefinition":{"TimePath":"2026-11-01/0000/"},"ExportFileIndex":0,"LineStoppedAt":5,"Extra":1}"#,
        ),
    ];
    for t in bad {
        let reply = app
            .get(&format!("{PATH}?pagesize=100&$skiptoken={t}"), &token)
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{t}");
        assert_eq!(error_code(&reply), "InvalidInput");
    }
    // A token past the last line of the last file is simply the end.
    let end = b64(
        r#"{"ExportDefinition":{"TimePath":"2026-11-01/0000/"},"ExportFileIndex":0,"LineStoppedAt":99999999}"#,
    );
    assert_eq!(
        app.get(&format!("{PATH}?pagesize=100&$skiptoken={end}"), &token)
            .await
            .status,
        StatusCode::OK
    );
}

async fn export_files(app: &App, token: &str, query: &str) -> Value {
    let reply = app
        .get(
            &format!("/api/machines/SoftwareVulnerabilitiesExport{query}"),
            token,
        )
        .await;
    reply.assert_ok("");
    reply.json()
}

#[tokio::test]
async fn export_files_hold_the_same_rows_as_the_json_pages() {
    let app = App::small().await;
    let token = app.token().await;
    let listing = export_files(&app, &token, "").await;
    assert_eq!(keys(&listing), keys(&example("mde-11-7-2-response.json")));
    assert_eq!(listing["generatedTime"], "2026-11-01T00:00:00Z");
    let urls: Vec<String> = listing["exportFiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_owned())
        .collect();
    assert!(urls.len() >= 3, "several files: {}", urls.len());
    let tenant = app.tenant();
    let (json_rows, _) = app.walk(&format!("{PATH}?pageSize=200000"), &token).await;
    let json_keys: Vec<String> = keys(&json_rows[0]);
    let mut file_rows = Vec::new();
    for url in &urls {
        let path = url.split('?').next().unwrap();
        assert!(path.starts_with(&format!("{}/blob/", app.url())), "{url}");
        assert!(
            path.contains(&format!(
                "/2026-11-01/0000/VaExport/json/OrgId={tenant}/_RbacGroupId="
            )),
            "{url}"
        );
        let file = path.rsplit('/').next().unwrap();
        assert!(
            file.starts_with("part-") && file.ends_with(".c000.json.gz"),
            "{file}"
        );
        let query = url.split('?').nth(1).unwrap();
        for p in ["sv=", "st=", "se=", "sr=b", "sp=r", "sig="] {
            assert!(query.contains(p), "{p} in {query}");
        }
        // Blob downloads need no bearer token.
        let reply = app.get_with(url, None).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.headers.get("content-encoding").is_none());
        for line in gunzip(&reply.body).lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert!(
                v.as_object().unwrap().values().all(|x| !x.is_null()),
                "null keys are omitted"
            );
            assert!(
                v.get("OSPlatform").is_some() && v.get("osPlatform").is_none(),
                "PascalCase with OS: {line}"
            );
            file_rows.push(file_row_as_json(&v, &json_keys));
        }
    }
    assert_eq!(sorted_by_id(file_rows, "id"), sorted_by_id(json_rows, "id"));
}

#[tokio::test]
async fn file_lines_look_like_the_documented_example() {
    let app = App::small().await;
    let token = app.token().await;
    let listing = export_files(&app, &token, "?sasValidHours=2").await;
    let url = listing["exportFiles"][0].as_str().unwrap();
    let body = app.get_with(url, None).await.unwrap().body;
    let line: Value = serde_json::from_str(
        gunzip(&body)
            .lines()
            .find(|l| l.contains("\"CveId\""))
            .unwrap(),
    )
    .unwrap();
    let sample = example("mde-12-7-3-file-format.json");
    for key in keys(&line) {
        assert!(
            sample.get(&key).is_some()
                || ["DiskPaths", "SecurityUpdateAvailable"].contains(&key.as_str()),
            "{key}"
        );
    }
}

#[tokio::test]
async fn sas_urls_expire_and_refuse_tampering() {
    let app = App::small().await;
    let token = app.token().await;
    for q in ["?sasValidHours=7", "?sasValidHours=0", "?sasValidHours=x"] {
        let reply = app
            .get(
                &format!("/api/machines/SoftwareVulnerabilitiesExport{q}"),
                &token,
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{q}");
    }
    let listing = export_files(&app, &token, "").await;
    let url = listing["exportFiles"][0].as_str().unwrap().to_owned();
    let st = chrono::DateTime::parse_from_rfc3339(&percent(&url, "st")).unwrap();
    let se = chrono::DateTime::parse_from_rfc3339(&percent(&url, "se")).unwrap();
    assert_eq!((se - st).num_hours(), 1, "default 1 hour");
    assert_eq!(
        app.get_with(&url, None).await.unwrap().status,
        StatusCode::OK
    );

    let tampered = url.replace("sp=r", "sp=rw");
    let reply = app.get_with(&tampered, None).await.unwrap();
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&reply.body).contains("<Code>AuthenticationFailed</Code>"));
    let (head, _) = url.split_once("&sig=").unwrap();
    let reply = app
        .get_with(&format!("{head}&sig=AAAA"), None)
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let later = url.replace(
        &format!("se={}", raw_param(&url, "se")),
        "se=2099-01-01T00%3A00%3A00Z",
    );
    assert_eq!(
        app.get_with(&later, None).await.unwrap().status,
        StatusCode::FORBIDDEN,
        "se is signed"
    );
    let unsigned = url.split('?').next().unwrap();
    assert_eq!(
        app.get_with(unsigned, None).await.unwrap().status,
        StatusCode::NOT_FOUND
    );

    app.running.sim.faults().expire_sas_now();
    let reply = app.get_with(&url, None).await.unwrap();
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let xml = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(
        xml.contains("<Code>AuthenticationFailed</Code>") && xml.contains("Signed expiry time"),
        "{xml}"
    );
    assert_eq!(reply.headers["content-type"], "application/xml");
    // New URLs work again.
    let fresh = export_files(&app, &token, "").await;
    let fresh_url = fresh["exportFiles"][0].as_str().unwrap();
    assert_eq!(
        app.get_with(fresh_url, None).await.unwrap().status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn sas_urls_can_expire_after_some_downloads() {
    let app = App::small().await;
    let token = app.token().await;
    let listing = export_files(&app, &token, "").await;
    let url = listing["exportFiles"][0].as_str().unwrap().to_owned();
    app.running.sim.faults().expire_sas_after(2);
    for download in 1..=2 {
        assert_eq!(
            app.get_with(&url, None).await.unwrap().status,
            StatusCode::OK,
            "download {download} is still within the link's life"
        );
    }
    let reply = app.get_with(&url, None).await.unwrap();
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&reply.body).contains("<Code>AuthenticationFailed</Code>"));
    let fresh = export_files(&app, &token, "").await;
    let fresh_url = fresh["exportFiles"][0].as_str().unwrap();
    assert_eq!(
        app.get_with(fresh_url, None).await.unwrap().status,
        StatusCode::OK,
        "links issued later work"
    );
}

fn raw_param(url: &str, name: &str) -> String {
    url.split(['?', '&'])
        .find_map(|p| p.strip_prefix(&format!("{name}=")))
        .unwrap()
        .to_owned()
}

fn percent(url: &str, name: &str) -> String {
    percent_encoding::percent_decode_str(&raw_param(url, name))
        .decode_utf8()
        .unwrap()
        .into_owned()
}

#[tokio::test]
async fn an_empty_tenant_exports_nothing() {
    let app = App::start(SimConfig {
        devices: 0,
        ..small_config()
    })
    .await;
    let token = app.token().await;
    let listing = export_files(&app, &token, "").await;
    assert_eq!(listing["exportFiles"], serde_json::json!([]));
    let page = app.get(PATH, &token).await.json();
    assert_eq!(page["value"], serde_json::json!([]));
    assert!(page.get("@odata.nextLink").is_none());
    // get-machines, "Response": "If no recent machines found - 404 Not Found." (issue 11)
    let machines = app.get("/api/machines", &token).await;
    assert_eq!(machines.status, StatusCode::NOT_FOUND);
    assert_eq!(machines.json()["error"]["code"], "ResourceNotFound");
}

#[tokio::test]
async fn the_listing_ends_with_an_empty_part_file_of_zero_bytes() {
    let app = App::small().await;
    let token = app.token().await;
    let listing = export_files(&app, &token, "").await;
    let mut empty = 0;
    for url in listing["exportFiles"].as_array().unwrap() {
        let reply = app.get_with(url.as_str().unwrap(), None).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        if reply.body.is_empty() {
            empty += 1;
        }
    }
    assert_eq!(
        empty, 1,
        "Spark leaves an empty part file; clients must cope with 0-byte blobs"
    );
}
