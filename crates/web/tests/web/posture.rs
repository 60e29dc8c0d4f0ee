//! Defender for Cloud in the portal and the API: the Posture page, the dashboard's secure score,
//! an asset's other identity, and `/api/v1/posture`.

use chrono::{Duration, SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::Value;

use crate::fixtures::*;
use crate::helpers::*;

fn rows(body: &str, table: &str) -> usize {
    let Some(start) = body.find(&format!("<table id=\"{table}\"")) else {
        return 0;
    };
    let end = start + body[start..].find("</table>").unwrap();
    body[start..end].matches("<tr").count() - 1
}

#[tokio::test]
async fn posture_page_shows_scores_reads_controls_and_failing_recommendations() {
    let app = spawn_app().await;
    seed_cloud(&app).await;
    let mut viewer = app.signed_in(VIEWER).await;
    let page = viewer.get("/posture").await;
    assert_eq!(page.status, StatusCode::OK);
    let body = &page.body;
    // The tenant: the last sync read only Production (35 of 50, weight 10): 70 %. Its trend has
    // the first sync's 50 % ((20 + 30) / (50 + 50), weighted alike) and this one.
    assert!(body.contains("contoso-cloud"));
    assert!(
        body.contains("<span class=\"num tenant-score\">70.0 %</span>"),
        "{body}"
    );
    assert_eq!(body.matches("class=\"chart score-trend\"").count(), 1);
    // Subscriptions, lowest score first; Sandbox keeps its older score and says why.
    assert_eq!(rows(body, "subscriptions"), 2);
    let sandbox = body.find("Sandbox").unwrap();
    assert!(
        sandbox < body.find("Production").unwrap(),
        "60 % before 70 %"
    );
    assert!(body.contains("60.0 %"));
    assert!(body.contains("class=\"read-failed\""));
    assert!(body.contains("AuthorizationFailed: the app has no Reader role on this subscription"));
    // Controls: Production's from the last sync (2), Sandbox's from the first (1).
    assert_eq!(rows(body, "controls"), 3);
    assert!(body.contains("Apply system updates"));
    // Failing recommendations by default: 8 of 12 are unhealthy.
    assert_eq!(rows(body, "recommendations"), 8);
    assert!(body.contains("<option value=\"Unhealthy\" selected>"));

    let p = viewer.get("/posture?severity=critical").await;
    assert_eq!(
        rows(&p.body, "recommendations"),
        2,
        "unhealthy and critical"
    );
    let p = viewer.get("/posture?status=any").await;
    assert_eq!(rows(&p.body, "recommendations"), 12);
    let p = viewer
        .get(&format!("/posture?status=any&subscription={SUB_B}"))
        .await;
    assert_eq!(rows(&p.body, "recommendations"), 4);
    assert_eq!(rows(&p.body, "controls"), 1);
    let p = viewer.get("/posture?q=assessment-1&status=any").await;
    assert_eq!(rows(&p.body, "recommendations"), 2, "assessment-10 and -11");

    // Pages of 5: 8 unhealthy make two pages, and the next page keeps the filter.
    let p = viewer.get("/posture?limit=5").await;
    assert_eq!(rows(&p.body, "recommendations"), 5);
    let key = "id=\"next-page\"";
    assert!(p.body.contains(key));
    let href_start = p.body.find("href=\"?").unwrap() + 7;
    let href: String = p.body[href_start..]
        .chars()
        .take_while(|c| *c != '"')
        .collect();
    let next = viewer
        .get(&format!(
            "/posture?{}",
            href.replace("&#38;", "&").replace("&amp;", "&")
        ))
        .await;
    assert_eq!(rows(&next.body, "recommendations"), 3);
    assert!(next.body.contains("id=\"first-page\""));

    let bad = viewer.get("/posture?severity=urgent").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("one of Low, Medium, High, Critical"));
}

#[tokio::test]
async fn dashboard_shows_the_secure_score_and_its_trend() {
    let app = spawn_app().await;
    seed_cloud(&app).await;
    let mut viewer = app.signed_in(VIEWER).await;
    let body = viewer.get("/").await.body;
    assert!(body.contains("Secure score of contoso-cloud"), "{body}");
    assert!(body.contains("<strong class=\"tenant-score\">70.0 %</strong>"));
    assert!(body.contains("class=\"chart score-trend\""));
    assert!(body.contains("id=\"subscriptions\">2<"));
    assert!(body.contains("id=\"recommendations-unhealthy\">8<"));
}

#[tokio::test]
async fn an_asset_page_links_its_other_identity() {
    let app = spawn_app().await;
    let estate = seed_cloud(&app).await;
    let mut viewer = app.signed_in(VIEWER).await;
    let vm = viewer.get(&format!("/assets/{}", estate.vm_asset)).await;
    assert_eq!(vm.status, StatusCode::OK);
    assert!(vm.body.contains("id=\"linked-assets\""), "{}", vm.body);
    assert!(
        vm.body
            .contains(&format!("<a href=\"/assets/{}\">web-01.contoso.local</a> in contoso-endpoint (Defender for Endpoint", estate.device_asset)),
        "{}",
        vm.body
    );
    // Its recommendations (those on the VM: assessments 00 and 06).
    assert_eq!(rows(&vm.body, "asset-recommendations"), 2);
    let device = viewer
        .get(&format!("/assets/{}", estate.device_asset))
        .await;
    assert!(device.body.contains(&format!(
        "<a href=\"/assets/{}\">web-01</a> in contoso-cloud (Defender for Cloud",
        estate.vm_asset
    )));
    assert_eq!(rows(&device.body, "asset-recommendations"), 0);
}

async fn get(app: &TestApp, token: &str, path: &str) -> (StatusCode, Value) {
    let r = app.api_get_with(token, path).await;
    let status = r.status();
    (
        status,
        serde_json::from_str(&body(r).await).unwrap_or(Value::Null),
    )
}

fn rfc(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[tokio::test]
async fn posture_api_scores_history_controls_and_recommendations() {
    let app = spawn_app().await;
    let estate = seed_cloud(&app).await;
    let token = app.api_token("read").await;

    let (s, p) = get(&app, &token, "/posture").await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["tenants"].as_array().unwrap().len(), 1);
    assert_eq!(p["tenants"][0]["integration"], "contoso-cloud");
    assert_eq!(p["tenants"][0]["percent"], 70.0);
    assert_eq!(p["tenants"][0]["subscriptions"], 1);
    let subs = p["subscriptions"].as_array().unwrap();
    assert_eq!(subs.len(), 2);
    let sandbox = subs.iter().find(|s| s["subscription_id"] == SUB_B).unwrap();
    assert_eq!(sandbox["percent"], 60.0);
    assert_eq!(sandbox["last_read"]["outcome"], "failed");
    assert!(
        sandbox["last_read"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("AuthorizationFailed")
    );
    let (_, one) = get(&app, &token, &format!("/posture?subscription={SUB_A}")).await;
    assert_eq!(one["subscriptions"].as_array().unwrap().len(), 1);
    let (_, none) = get(
        &app,
        &token,
        &format!("/posture?changed_since={}", rfc(Utc::now())),
    )
    .await;
    assert!(none["tenants"].as_array().unwrap().is_empty());
    assert!(none["subscriptions"].as_array().unwrap().is_empty());

    let (s, history) = get(&app, &token, "/posture/history").await;
    assert_eq!(s, StatusCode::OK);
    let points: Vec<f64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["percent"].as_f64().unwrap())
        .collect();
    assert_eq!(points, [50.0, 70.0]);
    let since = rfc(estate.first + Duration::hours(1));
    let (_, later) = get(
        &app,
        &token,
        &format!("/posture/history?changed_since={since}"),
    )
    .await;
    assert_eq!(later.as_array().unwrap().len(), 1);

    let (s, controls) = get(
        &app,
        &token,
        &format!("/posture/controls?subscription={SUB_A}"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(controls.as_array().unwrap().len(), 2);
    assert_eq!(controls[0]["percent"], 70.0);
    let (_, all) = get(&app, &token, "/posture/controls").await;
    assert_eq!(all.as_array().unwrap().len(), 3);
    let (_, recent) = get(
        &app,
        &token,
        &format!("/posture/controls?changed_since={since}"),
    )
    .await;
    assert_eq!(recent.as_array().unwrap().len(), 2, "Sandbox's are older");

    // Recommendations: pages of 3 visit the 8 unhealthy ones once.
    let mut seen = std::collections::HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/posture/recommendations?status=unhealthy&limit=3&after={a}"),
            None => "/posture/recommendations?status=unhealthy&limit=3".into(),
        };
        let (s, page) = get(&app, &token, &path).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        for r in page["items"].as_array().unwrap() {
            assert_eq!(r["status"], "Unhealthy");
            assert!(seen.insert(r["id"].as_i64().unwrap()));
        }
        match page["next_cursor"].as_str() {
            Some(c) => after = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8);
    let (_, vm) = get(&app, &token, "/posture/recommendations?q=web-01").await;
    for r in vm["items"].as_array().unwrap() {
        assert_eq!(r["asset_id"], estate.vm_asset);
    }
    let (_, critical) = get(
        &app,
        &token,
        "/posture/recommendations?severity=CRITICAL&status=any",
    )
    .await;
    assert_eq!(critical["items"].as_array().unwrap().len(), 3);
    let (_, fresh) = get(
        &app,
        &token,
        &format!(
            "/posture/recommendations?changed_since={}",
            rfc(estate.first)
        ),
    )
    .await;
    assert_eq!(
        fresh["items"].as_array().unwrap().len(),
        12,
        "seen by the second sync"
    );
    let (_, stale) = get(
        &app,
        &token,
        &format!(
            "/posture/recommendations?changed_since={}",
            rfc(estate.second)
        ),
    )
    .await;
    assert!(stale["items"].as_array().unwrap().is_empty());
    for bad in [
        "/posture/recommendations?severity=urgent",
        "/posture/recommendations?status=broken",
        "/posture/recommendations?changed_since=yesterday",
        "/posture/recommendations?after=x",
        "/posture?changed_since=2026-13-01T00:00:00Z",
        "/posture/history?integration=abc",
    ] {
        let (s, p) = get(&app, &token, bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {p}");
        assert_eq!(p["status"], 400);
    }
}

/// Issue 11 items 6 and 12a: the tenant score says how Microsoft's weighting made it (portal and
/// API), and Microsoft's risk of a recommendation is shown in the list and returned by the API.
#[tokio::test]
async fn posture_shows_microsofts_risk_and_how_the_tenant_score_is_made() {
    let app = spawn_app().await;
    seed_cloud(&app).await;
    let mut viewer = app.signed_in(VIEWER).await;
    let page = viewer.get("/posture").await;
    let body = &page.body;
    // The last sync: Production 35 of 50, weight 10: 10 × 35 / 50 = 7 over Σ weight 10.
    assert!(
        body.contains("Σ weight × current ÷ max = 7.00 over Σ weight = 10"),
        "{body}"
    );
    assert!(body.contains("<th>Risk</th>"), "{body}");
    assert!(
        body.contains("Internet exposure, Sensitive data; on 1 attack path"),
        "{body}"
    );
    assert!(body.contains("class=\"risk sev-high\">High"), "{body}");

    let token = app.api_token("read").await;
    let (_, p) = get(&app, &token, "/posture").await;
    assert_eq!(p["tenants"][0]["score_sum"], 7.0);
    assert_eq!(p["tenants"][0]["weight_sum"], 10.0);
    let (s, page) = get(&app, &token, "/posture/recommendations?q=assessment-01").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let item = &page["items"][0];
    assert_eq!(item["assessment_key"], "assessment-01");
    assert_eq!(item["risk"]["level"], "High");
    assert_eq!(item["risk"]["factors"][0], "Internet exposure");
    assert_eq!(item["risk"]["attack_paths"][0], "attack-path-1");
    assert_eq!(item["risk"]["contextual"], true);
    let (_, other) = get(&app, &token, "/posture/recommendations?q=assessment-00").await;
    assert!(other["items"][0]["risk"].is_null());
}
