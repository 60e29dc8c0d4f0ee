//! `/api/machines` (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-machines>): paging quirks, `$filter`, entity shape, lookups.

use std::collections::HashSet;

use rampart_sim::SimConfig;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{App, error_code, example, keys, values};

#[tokio::test]
async fn paging_with_top_and_skip_returns_every_device_once_and_never_a_next_link() {
    let app = App::small().await;
    let token = app.token().await;
    let truth = values(app.running.sim.truth().machines());
    let mut got = Vec::new();
    let mut skip = 0;
    loop {
        let reply = app
            .get(&format!("/api/machines?$top=70&$skip={skip}"), &token)
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        let page = reply.json();
        assert!(
            page.get("@odata.nextLink").is_none(),
            "$top must suppress nextLink"
        );
        assert_eq!(
            page["@odata.context"],
            format!("{}/api/$metadata#Machines", app.url())
        );
        let items = page["value"].as_array().unwrap().clone();
        let n = items.len();
        got.extend(items);
        if n < 70 {
            break;
        }
        skip += 70;
    }
    assert_eq!(got, truth, "pages in order are exactly the truth");
    let ids: HashSet<&str> = got.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), got.len());
    // Past the end: an empty page, not an error.
    let reply = app.get("/api/machines?$top=10&$skip=100000", &token).await;
    assert_eq!(reply.json()["value"], serde_json::json!([]));
}

#[tokio::test]
async fn server_paging_is_10000_with_a_skip_next_link() {
    let app = App::start(SimConfig {
        devices: 10_050,
        findings_per_device: 1,
        rate_limits: false,
        ..SimConfig::default()
    })
    .await;
    let token = app.token().await;
    let first = app.get("/api/machines", &token).await.json();
    assert_eq!(first["value"].as_array().unwrap().len(), 10_000);
    assert_eq!(
        first["@odata.nextLink"],
        format!("{}/api/machines?$skip=10000", app.url())
    );
    let second = app
        .get_url(first["@odata.nextLink"].as_str().unwrap(), &token)
        .await
        .json();
    assert_eq!(second["value"].as_array().unwrap().len(), 50);
    assert!(second.get("@odata.nextLink").is_none());
}

#[tokio::test]
async fn top_out_of_range_is_400() {
    let app = App::small().await;
    let token = app.token().await;
    for q in [
        "$top=10001",
        "$top=0",
        "$top=-1",
        "$top=abc",
        "$top=1.5",
        "$top=99999999999999999999999",
        "$skip=-3",
        "$skip=x",
    ] {
        let reply = app.get(&format!("/api/machines?{q}"), &token).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(error_code(&reply), "ODataError", "{q}");
    }
    let reply = app.get("/api/machines?$top=10001", &token).await;
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("10000")
    );
    assert_eq!(
        app.get("/api/machines?$top=10000", &token).await.status,
        StatusCode::OK
    );
}

async fn filtered(app: &App, token: &str, filter: &str) -> Vec<Value> {
    let reply = app
        .client
        .get(format!("{}/api/machines", app.url()))
        .query(&[("$filter", filter)])
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let reply = crate::helpers::read_body(reply).await.unwrap();
    reply.assert_ok(filter);
    reply.json()["value"].as_array().unwrap().clone()
}

#[tokio::test]
async fn filter_matches_the_truth_case_insensitively() {
    let app = App::small().await;
    let token = app.token().await;
    let truth: Vec<Value> = values(app.running.sim.truth().machines());
    let pick = |f: &dyn Fn(&Value) -> bool| -> Vec<Value> {
        truth.iter().filter(|m| f(m)).cloned().collect()
    };

    let onboarded = pick(&|m| m["onboardingStatus"] == "Onboarded");
    assert!(!onboarded.is_empty() && onboarded.len() < truth.len());
    assert_eq!(
        filtered(&app, &token, "onboardingStatus eq 'Onboarded'").await,
        onboarded
    );
    assert_eq!(
        filtered(&app, &token, "onboardingstatus eq 'onboarded'").await,
        onboarded
    );
    assert_eq!(
        filtered(&app, &token, "OnboardingStatus EQ 'ONBOARDED'").await,
        onboarded
    );

    let group = truth
        .iter()
        .find_map(|m| m["rbacGroupId"].as_u64().filter(|g| *g != 0))
        .unwrap();
    assert_eq!(
        filtered(&app, &token, &format!("rbacGroupId eq {group}")).await,
        pick(&|m| m["rbacGroupId"] == group)
    );
    let name = truth
        .iter()
        .find_map(|m| m["computerDnsName"].as_str())
        .unwrap()
        .to_owned();
    assert_eq!(
        filtered(
            &app,
            &token,
            &format!("computerDnsName eq '{}'", name.to_uppercase())
        )
        .await,
        pick(&|m| m["computerDnsName"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(&name)))
    );
    assert_eq!(
        filtered(&app, &token, "startswith(computerDnsName,'srv-')").await,
        pick(&|m| m["computerDnsName"]
            .as_str()
            .is_some_and(|n| n.starts_with("srv-")))
    );
    assert_eq!(
        filtered(&app, &token, "machineTags/any(tag: tag eq 'vip')").await,
        pick(&|m| m["machineTags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t.as_str().unwrap().eq_ignore_ascii_case("VIP")))
    );
    let by_health = filtered(
        &app,
        &token,
        "healthStatus eq 'Active' and (osPlatform eq 'Windows11' or osPlatform eq 'ubuntu')",
    )
    .await;
    assert_eq!(
        by_health,
        pick(&|m| m["healthStatus"] == "Active"
            && (m["osPlatform"] == "Windows11" || m["osPlatform"] == "Ubuntu"))
    );
    let now = app.running.sim.now();
    let day_ago = (now - chrono::Duration::days(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let recent = filtered(&app, &token, &format!("lastSeen gt {day_ago}")).await;
    assert!(!recent.is_empty());
    assert!(
        recent
            .iter()
            .all(|m| m["lastSeen"].as_str().unwrap() > day_ago.as_str())
    );
    assert_eq!(
        filtered(&app, &token, "aadDeviceId eq null").await,
        pick(&|m| m["aadDeviceId"].is_null())
    );
    assert_eq!(
        filtered(
            &app,
            &token,
            "riskScore eq 'High' or exposureLevel eq 'high'"
        )
        .await
        .len(),
        pick(&|m| m["riskScore"] == "High" || m["exposureLevel"] == "High").len()
    );
    // $filter with $top/$skip pages the filtered set.
    let page = app
        .get(
            "/api/machines?$filter=onboardingStatus%20eq%20'Onboarded'&$top=5&$skip=5",
            &token,
        )
        .await
        .json();
    assert_eq!(
        page["value"].as_array().unwrap().as_slice(),
        &onboarded[5..10]
    );
}

#[tokio::test]
async fn bad_filters_are_400_odata_errors() {
    let app = App::small().await;
    let token = app.token().await;
    for f in [
        "agentVersion eq '1'",
        "onboardingStatus eq 'Sleeping'",
        "rbacGroupId eq 'x'",
        "computerDnsName eq",
        "computerDnsName eq 'unterminated",
        "lastSeen gt 'yesterday'",
        "contains(computerDnsName,'x')",
        "machineTags eq 'x'",
        "((((computerDnsName eq 'x')",
        "computerDnsName eq 'x' xor id eq 'y'",
        "",
    ] {
        let resp = app
            .client
            .get(format!("{}/api/machines", app.url()))
            .query(&[("$filter", f)])
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let reply = crate::helpers::read_body(resp).await.unwrap();
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{f:?}");
        assert_eq!(error_code(&reply), "ODataError", "{f:?}");
    }
}

#[tokio::test]
async fn machine_records_have_the_documented_shape_and_realistic_variety() {
    let app = App::start(SimConfig {
        devices: 600,
        findings_per_device: 5,
        rate_limits: false,
        ..SimConfig::default()
    })
    .await;
    let token = app.token().await;
    let machines = app.get("/api/machines", &token).await.json()["value"]
        .as_array()
        .unwrap()
        .clone();
    let sample = &example("mde-05-3-2-machine-entity.json")["value"][0];
    let documented = keys(sample);
    let mut with_av = 0;
    for m in &machines {
        let mut k = keys(m);
        if m.get("defenderAvStatus").is_some() {
            with_av += 1;
        } else {
            k.push("defenderAvStatus".into());
            k.sort();
        }
        assert_eq!(k, documented, "{m}");
        let id = m["id"].as_str().unwrap();
        assert!(
            id.len() == 40
                && id
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{id}"
        );
        assert!(m["rbacGroupId"].is_u64());
        assert_eq!(m["rbacGroupName"].is_null(), m["rbacGroupId"] == 0, "{m}");
        assert!(m["firstSeen"].as_str().unwrap().ends_with('Z'));
        // Same types as the example for every key both have.
        for (key, value) in sample.as_object().unwrap() {
            let ours = &m[key];
            if !ours.is_null() && !value.is_null() {
                assert_eq!(
                    std::mem::discriminant(ours),
                    std::mem::discriminant(value),
                    "{key}"
                );
            }
        }
    }
    assert!(
        with_av > 0 && with_av < machines.len(),
        "defenderAvStatus present on some, absent on others"
    );
    let count = |f: &dyn Fn(&Value) -> bool| machines.iter().filter(|m| f(m)).count();
    let discovered = count(&|m| m["onboardingStatus"] != "Onboarded");
    assert!(
        discovered > 20 && discovered < 90,
        "~8% discovered: {discovered}"
    );
    assert!(
        count(&|m| m["onboardingStatus"] != "Onboarded" && m["osPlatform"] == "Other")
            == discovered
    );
    assert!(count(&|m| m["computerDnsName"].is_null()) > 0);
    assert!(count(&|m| m["isAadJoined"] == true && m["aadDeviceId"].is_null()) > 0);
    assert!(
        count(&|m| m["vmMetadata"]["resourceId"]
            .as_str()
            .is_some_and(|r| r.starts_with("/subscriptions/")))
            > 0
    );
    for platform in [
        "Windows10",
        "Windows11",
        "WindowsServer2019",
        "WindowsServer2022",
        "Ubuntu",
        "RedHatEnterpriseLinux",
        "macOS",
    ] {
        assert!(count(&|m| m["osPlatform"] == platform) > 0, "{platform}");
    }
    // Duplicates: same name, different ids, the old one Inactive and flagged.
    let dups: Vec<&Value> = machines
        .iter()
        .filter(|m| m["isPotentialDuplication"] == true)
        .collect();
    assert!(!dups.is_empty());
    for d in dups {
        assert_eq!(d["healthStatus"], "Inactive");
        let twin = machines
            .iter()
            .find(|m| m["computerDnsName"] == d["computerDnsName"] && m["id"] != d["id"]);
        assert!(twin.is_some(), "a duplicate has a live twin: {d}");
    }
}

#[tokio::test]
async fn machine_by_id_by_name_and_not_found() {
    let app = App::small().await;
    let token = app.token().await;
    let truth: Vec<Value> = values(app.running.sim.truth().machines());
    let m = &truth[7];
    let id = m["id"].as_str().unwrap();
    let reply = app.get(&format!("/api/machines/{id}"), &token).await;
    assert_eq!(reply.status, StatusCode::OK);
    let mut body = reply.json();
    assert_eq!(
        body["@odata.context"],
        format!("{}/api/$metadata#Machines/$entity", app.url())
    );
    body.as_object_mut().unwrap().remove("@odata.context");
    assert_eq!(&body, m);
    // Upper-case id, computer name, and the versioned, differently-cased path.
    assert_eq!(
        app.get(&format!("/api/machines/{}", id.to_uppercase()), &token)
            .await
            .status,
        StatusCode::OK
    );
    let name = truth
        .iter()
        .find_map(|m| {
            m["computerDnsName"]
                .as_str()
                .filter(|n| !n.contains("printer"))
        })
        .unwrap();
    let named = app.get(&format!("/api/machines/{name}"), &token).await;
    assert_eq!(named.status, StatusCode::OK);
    assert_eq!(
        app.get(&format!("/API/V1.0/Machines/{id}"), &token)
            .await
            .status,
        StatusCode::OK
    );
    for bad in [
        "0000000000000000000000000000000000000000",
        "123123123",
        "zz",
        "%00",
        "%E2%98%83",
        &"a".repeat(300),
    ] {
        let reply = app.get(&format!("/api/machines/{bad}"), &token).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{bad}");
        assert_eq!(error_code(&reply), "ResourceNotFound");
    }
}

#[tokio::test]
async fn find_by_tag_and_per_device_vulnerabilities() {
    let app = App::small().await;
    let token = app.token().await;
    let truth: Vec<Value> = values(app.running.sim.truth().machines());
    let tagged = truth
        .iter()
        .filter(|m| {
            m["machineTags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == "VIP")
        })
        .count();
    let reply = app
        .get(
            "/api/machines/findbytag?tag=vip&useStartsWithFilter=false",
            &token,
        )
        .await
        .json();
    assert_eq!(reply["value"].as_array().unwrap().len(), tagged);

    let findings: Vec<Value> = values(app.running.sim.truth().findings());
    let device = findings[0]["deviceId"].as_str().unwrap().to_owned();
    let mut want: Vec<&str> = findings
        .iter()
        .filter(|f| f["deviceId"] == device.as_str())
        .map(|f| f["cveId"].as_str().unwrap())
        .collect();
    want.sort_unstable();
    want.dedup();
    let reply = app
        .get(&format!("/api/machines/{device}/vulnerabilities"), &token)
        .await
        .json();
    assert!(
        reply["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("#Collection(Analytics.Contracts.PublicAPI.PublicVulnerabilityDto)")
    );
    let mut got: Vec<&str> = reply["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, want);
    let none = app
        .get(
            "/api/machines/ffffffffffffffffffffffffffffffffffffffff/vulnerabilities",
            &token,
        )
        .await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
}

/// Serving 100,000 devices' machine list (10 pages of 10,000). Slow in debug builds: run with
/// `cargo test -p rampart-sim --release -- --ignored`.
#[tokio::test]
#[ignore]
async fn serves_100000_devices() {
    let app = App::start(SimConfig {
        devices: 100_000,
        rate_limits: false,
        ..SimConfig::default()
    })
    .await;
    let token = app.token().await;
    let started = std::time::Instant::now();
    let (items, links) = app.walk("/api/machines", &token).await;
    assert_eq!(items.len(), 100_000);
    assert_eq!(links.len(), 9);
    let ids: HashSet<&str> = items.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 100_000);
    eprintln!("100,000 machines in {:?}", started.elapsed());
}
