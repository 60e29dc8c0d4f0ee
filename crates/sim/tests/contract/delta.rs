//! The delta API (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-assessment-software-vulnerabilities>): 6-hour buckets, 14-day limit, New/Fixed/Updated, consistency with
//! the snapshots.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{App, error_code, example, keys, values};

const PATH: &str = "/api/machines/SoftwareVulnerabilityChangesByMachine";

/// The fields the delta API reports changes of (lastSeenTimestamp and osVersion move silently).
fn tracked(v: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for k in [
        "id",
        "deviceId",
        "deviceName",
        "rbacGroupId",
        "rbacGroupName",
        "osPlatform",
        "softwareVendor",
        "softwareName",
        "softwareVersion",
        "cveId",
        "cvssScore",
        "vulnerabilitySeverityLevel",
        "exploitabilityLevel",
        "recommendedSecurityUpdate",
        "recommendedSecurityUpdateId",
        "firstSeenTimestamp",
        "recommendationReference",
    ] {
        out.insert(k.to_owned(), v[k].clone());
    }
    Value::Object(out)
}

async fn pull(app: &App, token: &str, since: &str, page: u32) -> Vec<Value> {
    let (items, _) = app
        .walk(&format!("{PATH}?sinceTime={since}&pageSize={page}"), token)
        .await;
    items
}

#[tokio::test]
async fn applying_the_delta_to_a_snapshot_gives_the_later_snapshot() {
    let app = App::small().await;
    let token = app.token().await;
    let mut state: BTreeMap<String, Value> = values(app.running.sim.truth().findings())
        .iter()
        .map(|f| (f["id"].as_str().unwrap().to_owned(), tracked(f)))
        .collect();
    app.running.sim.tick(6);
    let mut events = pull(&app, &token, "2026-11-01T00:00:00Z", 700).await;
    assert!(!events.is_empty());
    // Apply in event order (a stable sort keeps an RBAC move's Fixed before its New).
    events.sort_by(|a, b| {
        a["eventTimestamp"]
            .as_str()
            .cmp(&b["eventTimestamp"].as_str())
    });
    let mut seen = BTreeMap::new();
    for e in &events {
        *seen
            .entry(e["status"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
        let id = e["id"].as_str().unwrap().to_owned();
        match e["status"].as_str().unwrap() {
            "Fixed" => {
                state.remove(&id);
            }
            "New" | "Updated" => {
                state.insert(id, tracked(e));
            }
            other => panic!("status {other}"),
        }
    }
    assert!(
        seen.contains_key("New") && seen.contains_key("Fixed"),
        "{seen:?}"
    );
    let truth: BTreeMap<String, Value> = values(app.running.sim.truth().findings())
        .iter()
        .map(|f| (f["id"].as_str().unwrap().to_owned(), tracked(f)))
        .collect();
    assert_eq!(state.len(), truth.len());
    assert!(
        state == truth,
        "delta applied to snapshot 0 must give snapshot 6"
    );
}

#[tokio::test]
async fn records_have_the_export_fields_minus_update_available_plus_status() {
    let app = App::small().await;
    let token = app.token().await;
    app.running.sim.tick(2);
    let events = pull(&app, &token, "2026-11-01T00:00:00Z", 100_000).await;
    let sample = example("mde-13-8-delta-export-softwarevulnerabilitychangesbymac.json");
    let mut want = keys(&sample);
    want.extend(["rbacGroupId".to_owned(), "cvssScore".to_owned()]);
    want.sort();
    for e in &events {
        assert_eq!(keys(e), want);
        assert!(["New", "Fixed", "Updated"].contains(&e["status"].as_str().unwrap()));
        let ts = e["eventTimestamp"].as_str().unwrap();
        assert!(ts.ends_with(":00:00") && ts.as_bytes()[10] == b' ', "{ts}");
        assert!(!e["cveId"].is_null());
    }
    let page = app
        .get(
            &format!("{PATH}?sinceTime=2026-11-01T00:00:00Z&pageSize=3"),
            &token,
        )
        .await
        .json();
    assert!(
        page["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("#Collection(microsoft.windowsDefenderATP.api.DeltaAssetVulnerability)")
    );
    let link = page["@odata.nextLink"].as_str().unwrap();
    assert!(
        link.contains("sincetime=") && link.contains("pagesize=3") && link.contains("$skiptoken="),
        "{link}"
    );
}

#[tokio::test]
async fn consecutive_pulls_overlap_by_the_bucket_of_since_time() {
    let app = App::small().await;
    let token = app.token().await;
    app.running.sim.tick(3);
    // 07:00 is inside the 06:00–12:00 bucket: its changes (stamped 06:00) come back too.
    let events = pull(&app, &token, "2026-11-01T07:00:00Z", 100_000).await;
    let stamps: std::collections::BTreeSet<&str> = events
        .iter()
        .map(|e| e["eventTimestamp"].as_str().unwrap())
        .collect();
    assert_eq!(
        stamps.iter().next().copied(),
        Some("2026-11-01 06:00:00"),
        "{stamps:?}"
    );
    assert!(stamps.contains("2026-11-01 18:00:00"));
    let later = pull(&app, &token, "2026-11-01T12:00:00.000Z", 100_000).await;
    assert!(later.len() < events.len());
    assert!(
        later
            .iter()
            .all(|e| e["eventTimestamp"].as_str().unwrap() >= "2026-11-01 12:00:00")
    );
    // sinceTime in the future: nothing (yet).
    assert!(
        pull(&app, &token, "2026-11-05T00:00:00Z", 100)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn upgrades_and_group_moves_produce_fixed_and_new_pairs() {
    let app = App::small().await;
    let token = app.token().await;
    app.running.sim.tick(48);
    let events = pull(&app, &token, "2026-11-02T00:00:00Z", 100_000).await;
    let by_stamp_device = |e: &Value| {
        (
            e["eventTimestamp"].as_str().unwrap().to_owned(),
            e["deviceId"].as_str().unwrap().to_owned(),
        )
    };
    let fixed: Vec<&Value> = events.iter().filter(|e| e["status"] == "Fixed").collect();
    let new: Vec<&Value> = events.iter().filter(|e| e["status"] == "New").collect();
    let upgrade = fixed.iter().any(|f| {
        new.iter().any(|n| {
            by_stamp_device(f) == by_stamp_device(n)
                && f["cveId"] == n["cveId"]
                && f["softwareName"] == n["softwareName"]
                && f["softwareVersion"] != n["softwareVersion"]
                && f["firstSeenTimestamp"] == n["firstSeenTimestamp"]
        })
    });
    assert!(
        upgrade,
        "a version upgrade is Fixed(old) + New(new) keeping firstSeen"
    );
    let moved = fixed.iter().any(|f| {
        new.iter().any(|n| {
            f["id"] == n["id"]
                && f["eventTimestamp"] == n["eventTimestamp"]
                && f["rbacGroupId"] != n["rbacGroupId"]
        })
    });
    assert!(
        moved,
        "an RBAC move is the same id twice: old group Fixed, new group New"
    );
    assert!(
        events.iter().any(|e| e["status"] == "Updated"),
        "CVE revisions show up as Updated"
    );
}

#[tokio::test]
async fn since_time_is_required_parsed_and_at_most_14_days_old() {
    let app = App::small().await;
    let token = app.token().await;
    let reply = app.get(PATH, &token).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&reply), "MissingRequiredParameter");
    for since in [
        "yesterday",
        "2026-13-01T00:00:00Z",
        "%00",
        "2026-10-17T23:59:59Z",
    ] {
        let reply = app.get(&format!("{PATH}?sinceTime={since}"), &token).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{since}");
        assert_eq!(error_code(&reply), "InvalidInput", "{since}");
    }
    // Exactly 14 days back is allowed, as are other ISO spellings.
    for since in [
        "2026-10-18T00:00:00Z",
        "2026-10-20",
        "2026-10-30T10:00:00.1234567Z",
        "2026-10-30T10:00:00%2B02:00",
    ] {
        assert_eq!(
            app.get(&format!("{PATH}?sinceTime={since}"), &token)
                .await
                .status,
            StatusCode::OK,
            "{since}"
        );
    }
}
