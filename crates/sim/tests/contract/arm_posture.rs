//! What real tenants answer and the emulator reproduces (issue 11): subscriptions of different
//! maximum scores, a control with `"score": null`, `properties.risk` in assessments 2025-05-04 only,
//! a cloud without 2025-05-04, Defender CSPM's extensions in pricings, and Resource Graph's quota
//! headers with a configurable quota.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{App, read_body, small_config};

async fn token(app: &App) -> String {
    app.token_for("https://management.azure.com/.default").await
}

async fn all(app: &App, path: &str, token: &str) -> Vec<Value> {
    let mut url = format!("{}{path}", app.url());
    let mut items = Vec::new();
    loop {
        let reply = app.get_url(&url, token).await;
        assert_eq!(reply.status, StatusCode::OK, "{url}");
        let page = reply.json();
        items.extend(page["value"].as_array().expect("value").iter().cloned());
        match page.get("nextLink").and_then(Value::as_str) {
            Some(next) => url = next.to_owned(),
            None => return items,
        }
    }
}

#[tokio::test]
async fn subscriptions_have_different_maximum_scores() {
    let app = App::small().await;
    let scores = app.running.sim.truth().secure_scores();
    let mut maxima: Vec<u32> = scores.iter().map(|s| s.max).collect();
    maxima.sort_unstable();
    maxima.dedup();
    assert!(maxima.len() >= 2, "{scores:?}");
    // Each max is the sum of its listed controls' maxima.
    let controls = app.running.sim.truth().score_controls();
    for s in &scores {
        let sum: u32 = controls
            .iter()
            .filter(|c| c.subscription_id == s.subscription_id)
            .map(|c| c.max)
            .sum();
        assert_eq!(sum, s.max);
    }
}

#[tokio::test]
async fn risk_comes_with_2025_05_04_only() {
    let app = App::small().await;
    let t = token(&app).await;
    let sub = app.running.sim.truth().cloud_subscriptions()[0]
        .subscription_id
        .clone();
    let path = |v: &str| {
        format!("/subscriptions/{sub}/providers/Microsoft.Security/assessments?api-version={v}")
    };
    let new = all(&app, &path("2025-05-04"), &t).await;
    let risky: Vec<&Value> = new
        .iter()
        .filter(|a| a["properties"].get("risk").is_some())
        .collect();
    assert!(!risky.is_empty());
    for a in &risky {
        assert_eq!(a["properties"]["status"]["code"], "Unhealthy");
        let level = a["properties"]["risk"]["level"].as_str().unwrap();
        assert!(["Low", "Medium", "High", "Critical"].contains(&level));
        assert!(a["properties"]["risk"]["riskFactors"].is_array());
        assert!(a["properties"]["risk"]["attackPathsReferences"].is_array());
    }
    let old = all(&app, &path("2021-06-01"), &t).await;
    assert_eq!(old.len(), new.len());
    assert!(old.iter().all(|a| a["properties"].get("risk").is_none()));

    let without = App::start(rampart_sim::SimConfig {
        assessments_without_2025_05_04: true,
        ..small_config()
    })
    .await;
    let t = token(&without).await;
    let r = without.get(&path("2025-05-04"), &t).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["code"], "NoRegisteredProviderFound");
    assert_eq!(
        without.get(&path("2021-06-01"), &t).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_control_can_come_without_a_score() {
    let app = App::start(rampart_sim::SimConfig {
        null_control_score: true,
        ..small_config()
    })
    .await;
    let t = token(&app).await;
    let subs = app.running.sim.truth().cloud_subscriptions();
    let path = |sub: &str| {
        format!(
            "/subscriptions/{sub}/providers/Microsoft.Security/secureScores/ascScore/secureScoreControls?api-version=2020-01-01&$expand=definition"
        )
    };
    let first = all(&app, &path(&subs[0].subscription_id), &t).await;
    let nulls: Vec<&Value> = first
        .iter()
        .filter(|c| c["properties"]["score"].is_null())
        .collect();
    assert_eq!(nulls.len(), 1, "one odd record");
    assert_eq!(
        nulls[0]["properties"]["displayName"],
        "Apply system updates"
    );
    assert_eq!(
        nulls[0]["properties"]["definition"]["properties"]["maxScore"],
        6
    );
    let second = all(&app, &path(&subs[1].subscription_id), &t).await;
    assert!(second.iter().all(|c| c["properties"]["score"].is_object()));
}

#[tokio::test]
async fn defender_cspm_lists_its_agentless_scanning_extension() {
    let app = App::small().await;
    let t = token(&app).await;
    let subs = app.running.sim.truth().cloud_subscriptions();
    let plans = |v: &Value, name: &str| {
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap()
    };
    let agentless = |p: &Value| {
        p["properties"]["extensions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "AgentlessVmScanning")
            .map(|e| e["isEnabled"].clone())
    };
    let mut seen = Vec::new();
    for s in &subs[..3] {
        let r = app
            .get(
                &format!("/subscriptions/{}/providers/Microsoft.Security/pricings?api-version=2024-01-01", s.subscription_id),
                &t,
            )
            .await
            .json();
        let vm = plans(&r, "VirtualMachines")["properties"]["pricingTier"].clone();
        let cspm = plans(&r, "CloudPosture");
        seen.push((vm, agentless(&cspm)));
    }
    assert_eq!(
        seen,
        [
            (json!("Standard"), Some(json!("True"))),
            (json!("Free"), Some(json!("True"))),
            (json!("Free"), Some(json!("False"))),
        ],
        "Servers on; CSPM with agentless scanning only; neither"
    );
}

#[tokio::test]
async fn resource_graph_reports_its_quota_and_refuses_beyond_it() {
    let app = App::start(rampart_sim::SimConfig {
        rate_limits: true,
        graph_quota: 2,
        graph_quota_window_secs: 3,
        ..small_config()
    })
    .await;
    let t = token(&app).await;
    let body = json!({"query": "securityresources | where type == 'microsoft.security/securescores' | project id, subscriptionId, properties", "options": {"resultFormat": "objectArray"}});
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let resp = app
            .client
            .post(format!(
                "{}/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01",
                app.url()
            ))
            .bearer_auth(&t)
            .json(&body)
            .send()
            .await
            .expect("POST");
        let r = read_body(resp).await.expect("body");
        remaining.push((
            r.status,
            r.headers["x-ms-user-quota-remaining"]
                .to_str()
                .unwrap_or_default()
                .to_owned(),
            r.headers.contains_key("x-ms-user-quota-resets-after"),
        ));
    }
    assert_eq!(
        remaining,
        [
            (StatusCode::OK, "1".to_owned(), true),
            (StatusCode::OK, "0".to_owned(), true),
            (StatusCode::TOO_MANY_REQUESTS, "0".to_owned(), true),
        ]
    );
}
