//! Issue 11 ("real tenants"): what a real Defender for Endpoint tenant sends, as the portal, the
//! API and the exports show it after a sync against the emulator.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

async fn api_get(app: &TestApp, token: &str, path: &str) -> Value {
    let r = app.api_get_with(token, path).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json().await.unwrap()
}

/// Devices known only from vulnerability rows are labelled so on their page, in the API and in
/// the export; an odd record skipped by the run is named in the run view and the API's run; the
/// external address and Microsoft's own exposure count are kept apart from Rampart's.
#[tokio::test]
async fn issue11_vulnerability_only_devices_odd_records_and_source_counts_are_shown() {
    let app = spawn_app_with_sim(rampart_sim::SimConfig {
        devices: 30,
        findings_per_device: 6,
        rate_limits: false,
        unlisted_device_share: 0.4,
        machines_without_ip_addresses: true,
        ..rampart_sim::SimConfig::default()
    })
    .await;
    app.sim.sim.faults().odd_record_next("/api/machines", 1);
    let mut admin = app.signed_in(ADMIN).await;
    let id = app
        .add_integration(&mut admin, "tenant", &app.sim_config.client_secret.clone())
        .await;
    let token = app.api_token("admin").await;
    let started = reqwest::Client::new()
        .post(format!("{}/api/v1/integrations/{id}/sync", app.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    assert_eq!(app.wait_for_run(id).await, "succeeded");

    // The run: API and portal name the skipped record.
    let runs = api_get(&app, &token, &format!("/integrations/{id}/runs")).await;
    let odd = &runs[0]["odd_records"];
    assert_eq!(odd["count"], 1, "{runs}");
    let odd_id = odd["ids"][0].as_str().unwrap().to_owned();
    assert!(odd_id.starts_with("odd-record-"), "{odd}");
    let page = admin.get(&format!("/integrations/{id}")).await;
    assert!(
        page.body.contains("1 record skipped as unreadable") && page.body.contains(&odd_id),
        "{}",
        page.body
    );

    // Assets: the API says where each is known from; the external address is its own field.
    let assets = api_get(&app, &token, "/assets?limit=1000").await;
    let items = assets["items"].as_array().unwrap();
    let unlisted: Vec<String> = app
        .sim
        .sim
        .truth()
        .unlisted_machines()
        .map(|m| m.id.to_ascii_lowercase())
        .collect();
    let only: Vec<&Value> = items
        .iter()
        .filter(|a| a["known_from"] == "vulnerability_data")
        .collect();
    assert!(!only.is_empty());
    for a in &only {
        assert!(unlisted.contains(&a["source_id"].as_str().unwrap().to_owned()));
        assert!(a["os_platform"].is_string(), "{a}");
    }
    let listed = items
        .iter()
        .find(|a| a["known_from"] == "inventory" && a["external_ip_address"].is_string())
        .expect("a listed device with an external address");
    let external = listed["external_ip_address"].as_str().unwrap();
    assert!(
        !listed["ip_addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|ip| ip == external)
    );
    assert!(
        !listed["ip_addresses"].as_array().unwrap().is_empty(),
        "lastIpAddress stands in for the missing ipAddresses: {listed}"
    );

    // The asset page says it.
    let only_id = only[0]["id"].as_i64().unwrap();
    let page = admin.get(&format!("/assets/{only_id}")).await;
    assert!(
        page.body.contains("Known only from vulnerability data"),
        "{}",
        page.body
    );
    let listed_id = listed["id"].as_i64().unwrap();
    let page = admin.get(&format!("/assets/{listed_id}")).await;
    assert!(page.body.contains("External IP address") && page.body.contains(external));
    assert!(!page.body.contains("Known only from vulnerability data"));

    // The export keeps both.
    let csv = admin.get("/assets.csv").await.body;
    let header = csv.lines().next().unwrap();
    assert!(
        header.ends_with(",external_ip_address,known_from"),
        "{header}"
    );
    assert!(csv.contains(",vulnerability_data"));

    // Microsoft's exposure count beside Rampart's.
    let vulns = api_get(&app, &token, "/vulnerabilities?exposed=true&limit=5").await;
    let v = &vulns["items"][0];
    assert!(v["source_exposed_machines"].is_u64(), "{v}");
    let csv = admin.get("/vulnerabilities.csv").await.body;
    assert!(csv.lines().next().unwrap().ends_with(
        ",source_exposed_machines,kev,kev_date_added,kev_due_date,kev_known_ransomware_campaign_use"
    ));
}
