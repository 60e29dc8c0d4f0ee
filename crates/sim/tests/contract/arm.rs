//! Azure Resource Manager and Resource Graph over real HTTP (<https://learn.microsoft.com/en-us/azure/role-based-access-control/role-assignments-portal>).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{App, read_body, small_config};

const ARM_SCOPE: &str = "https://management.azure.com/.default";

async fn arm_token(app: &App) -> String {
    app.token_for(ARM_SCOPE).await
}

/// Follows ARM `nextLink`s; returns items and the number of pages.
async fn walk_arm(app: &App, path: &str, token: &str) -> (Vec<Value>, usize) {
    let mut url = format!("{}{path}", app.url());
    let mut items = Vec::new();
    for pages in 1..1000 {
        let reply = app.get_url(&url, token).await;
        reply.assert_ok(&url);
        let page = reply.json();
        items.extend(page["value"].as_array().expect("value").iter().cloned());
        match page.get("nextLink").and_then(Value::as_str) {
            Some(next) => url = next.to_owned(),
            None => return (items, pages),
        }
    }
    panic!("paging did not end");
}

#[tokio::test]
async fn subscriptions_page_and_include_a_disabled_one() {
    let app = App::small().await;
    let token = arm_token(&app).await;
    let (subs, pages) = walk_arm(&app, "/subscriptions?api-version=2022-12-01", &token).await;
    assert_eq!(subs.len(), 4);
    assert!(pages >= 2, "small pages exercise nextLink");
    assert!(subs.iter().any(|s| s["state"] == "Disabled"));
    let truth = app.running.sim.truth().cloud_subscriptions();
    assert_eq!(truth.len(), 4);
}

#[tokio::test]
async fn api_version_is_required_and_checked() {
    let app = App::small().await;
    let token = arm_token(&app).await;
    let r = app.get("/subscriptions", &token).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["code"], "MissingApiVersionParameter");
    let sub = &app.running.sim.truth().cloud_subscriptions()[0].subscription_id;
    let r = app
        .get(&format!("/subscriptions/{sub}/providers/Microsoft.Security/secureScores?api-version=2099-01-01"), &token)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["code"], "NoRegisteredProviderFound");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2020-01-01")
    );
}

#[tokio::test]
async fn an_mde_token_is_refused_by_arm() {
    let app = App::small().await;
    let token = app.token().await;
    let r = app
        .get("/subscriptions?api-version=2022-12-01", &token)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"]["code"], "InvalidAuthenticationToken");
}

#[tokio::test]
async fn no_role_means_an_empty_list_and_403_on_direct_calls() {
    let app = App::start(rampart_sim::SimConfig {
        arm_role: None,
        ..small_config()
    })
    .await;
    let token = arm_token(&app).await;
    let r = app
        .get("/subscriptions?api-version=2022-12-01", &token)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["value"], json!([]));
    let sub = &app.running.sim.truth().cloud_subscriptions()[0].subscription_id;
    let r = app
        .get(&format!("/subscriptions/{sub}/providers/Microsoft.Security/assessments?api-version=2021-06-01"), &token)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let e = r.json();
    assert_eq!(e["error"]["code"], "AuthorizationFailed");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("does not have authorization to perform action 'Microsoft.Security/assessments/read' over scope"), "{msg}");
    assert!(msg.contains(&format!("/subscriptions/{sub}")));
}

#[tokio::test]
async fn scores_controls_and_assessments_match_the_truth() {
    let app = App::small().await;
    let token = arm_token(&app).await;
    let truth = app.running.sim.truth();
    let scores = truth.secure_scores();
    assert_eq!(scores.len(), 3);
    for s in &scores {
        let sub = &s.subscription_id;
        let (items, _) = walk_arm(&app, &format!("/subscriptions/{sub}/providers/Microsoft.Security/secureScores?api-version=2020-01-01"), &token).await;
        let p = &items[0]["properties"]["score"];
        assert_eq!(p["current"].as_f64(), Some(s.current));
        assert_eq!(p["max"].as_u64(), Some(u64::from(s.max)));
        let pct = p["percentage"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&pct));
        assert_eq!((pct * 10_000.0).round() / 10_000.0, pct, "4 decimals");
        let (controls, _) = walk_arm(&app, &format!("/subscriptions/{sub}/providers/Microsoft.Security/secureScores/ascScore/secureScoreControls?api-version=2020-01-01&$expand=definition"), &token).await;
        // Controls without resources are left out (the subscription without a SQL server has 4).
        let want = truth
            .score_controls()
            .iter()
            .filter(|c| &c.subscription_id == sub)
            .count();
        assert_eq!(controls.len(), want);
        assert!((4..=5).contains(&controls.len()));
        assert!(controls[0]["properties"]["definition"]["properties"]["maxScore"].is_number());
        let (assessments, pages) = walk_arm(&app, &format!("/subscriptions/{sub}/providers/Microsoft.Security/assessments?api-version=2021-06-01"), &token).await;
        assert!(pages >= 2, "the first page is empty but links on");
        let builtin = truth
            .cloud_assessments()
            .into_iter()
            .filter(|a| &a.subscription_id == sub)
            .count();
        // Individual recommendations keep their package fields; a Healthy one (a fixed
        // package) has lost its `CvesDetails`.
        let individual: Vec<&Value> = assessments
            .iter()
            .filter(|a| {
                a["properties"]["additionalData"]
                    .get("SoftwareName")
                    .is_some()
            })
            .collect();
        assert!(
            individual
                .iter()
                .all(|a| (a["properties"]["status"]["code"] == "Unhealthy")
                    == a["properties"]["additionalData"]
                        .get("CvesDetails")
                        .is_some()),
            "CvesDetails on exactly the unhealthy ones"
        );
        assert_eq!(assessments.len() - individual.len(), builtin);
        assert!(
            assessments[0]["properties"]["resourceDetails"]
                .get("Source")
                .is_some(),
            "PascalCase"
        );
        let cves: usize = individual
            .iter()
            .filter(|a| a["properties"]["status"]["code"] == "Unhealthy")
            .map(|a| {
                let s = a["properties"]["additionalData"]["CvesDetails"]
                    .as_str()
                    .expect("a JSON string");
                serde_json::from_str::<Vec<Value>>(s).unwrap().len()
            })
            .sum();
        assert_eq!(
            cves,
            truth
                .cloud_findings()
                .iter()
                .filter(|f| &f.subscription_id == sub)
                .count()
        );
    }
    let tenant = truth.tenant_score_percent().unwrap();
    assert!((0.0..=100.0).contains(&tenant));
}

#[tokio::test]
async fn a_denied_subscription_is_listed_but_refused() {
    let probe = App::small().await;
    let denied = probe.running.sim.truth().cloud_subscriptions()[1]
        .subscription_id
        .clone();
    drop(probe);
    let app = App::start(rampart_sim::SimConfig {
        arm_denied_subscriptions: vec![denied.clone()],
        ..small_config()
    })
    .await;
    let token = arm_token(&app).await;
    let (subs, _) = walk_arm(&app, "/subscriptions?api-version=2022-12-01", &token).await;
    assert!(subs.iter().any(|s| s["subscriptionId"] == denied.as_str()));
    let r = app.get(&format!("/subscriptions/{denied}/providers/Microsoft.Security/secureScores?api-version=2020-01-01"), &token).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

async fn graph(app: &App, token: &str, body: &Value) -> crate::helpers::Reply {
    let resp = app
        .client
        .post(format!(
            "{}/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01",
            app.url()
        ))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("POST");
    read_body(resp).await.expect("body")
}

const VULN_QUERY: &str = "securityresources | where type == \"microsoft.security/assessments\" | where properties.metadata.recommendationCategory in (\"SoftwareUpdate\", \"ServiceUpgrade\") | mv-expand CveDetail = parse_json(tostring(properties.additionalData.CvesDetails)) | project id, subscriptionId, resourceId, CveDetail";

/// Microsoft's own sample (Learn, transition-grouped-individual-recommendations): `mv-expand`.
const SAMPLE_QUERY: &str = r#"securityresources
| where type == "microsoft.security/assessments"
| where properties.metadata.recommendationCategory == "SoftwareUpdate"
| extend CvesDetails = parse_json(tostring(properties.additionalData.CvesDetails))
| mv-expand CveDetail = CvesDetails
| project id, CveId = tostring(CveDetail.CveId)"#;

/// The shape of Rampart's own query (crates/microsoft `VULNERABILITY_QUERY`): no `mv-expand`.
const PROJECTED_QUERY: &str = r#"securityresources
| where type == "microsoft.security/assessments"
| where properties.metadata.recommendationCategory in ("SoftwareUpdate", "ServiceUpgrade")
| where tostring(properties.status.code) == "Unhealthy"
| project id, subscriptionId, softwareName = tostring(properties.additionalData.SoftwareName), cvesDetails = tostring(properties.additionalData.CvesDetails)"#;

fn cve_details_query(ids: &[String]) -> String {
    let list: Vec<String> = ids.iter().map(|i| format!("\"{i}\"")).collect();
    format!(
        "securityresources | where type =~ \"microsoft.security/cvedetails\" | extend cveId = tostring(coalesce(properties.cveId, name)) | where cveId in~ ({}) | project id, name, cveId, properties",
        list.join(", ")
    )
}

/// Every row of `query` (pages of 1,000), as the emulator answers it.
async fn all_rows(app: &App, token: &str, query: &str, scoped: bool) -> Vec<Value> {
    let subs: Vec<String> = app
        .running
        .sim
        .truth()
        .cloud_subscriptions()
        .into_iter()
        .map(|s| s.subscription_id)
        .collect();
    let mut rows = Vec::new();
    let mut skip: Option<String> = None;
    loop {
        let mut body =
            json!({"query": query, "options": {"$top": 1000, "resultFormat": "objectArray"}});
        if scoped {
            body["subscriptions"] = json!(subs);
        }
        if let Some(s) = &skip {
            body["options"]["$skipToken"] = s.clone().into();
        }
        let r = graph(app, token, &body).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        let page = r.json();
        rows.extend(page["data"].as_array().expect("data").iter().cloned());
        match page.get("$skipToken").and_then(Value::as_str) {
            Some(s) => skip = Some(s.to_owned()),
            None => return rows,
        }
    }
}

#[tokio::test]
async fn mv_expand_keeps_at_most_128_elements_per_row_unless_a_limit_is_given() {
    let app = App::start(rampart_sim::SimConfig {
        cloud_cves_in_one_package: 300,
        ..small_config()
    })
    .await;
    let token = arm_token(&app).await;
    let big = |rows: &[Value]| {
        rows.iter()
            .filter(|r| r["softwareName"] == "linux-image-generic" && r["CveId"].is_string())
            .count()
    };
    let rows = all_rows(&app, &token, SAMPLE_QUERY, false).await;
    assert_eq!(big(&rows), 128, "Resource Graph's default RowLimit");
    let limited = SAMPLE_QUERY.replace("mv-expand CveDetail", "mv-expand limit 400 CveDetail");
    assert_eq!(big(&all_rows(&app, &token, &limited, false).await), 300);
    // Unexpanded: one row per recommendation, every CVE in its `cvesDetails` string.
    let rows = all_rows(&app, &token, PROJECTED_QUERY, true).await;
    let kernel = rows
        .iter()
        .find(|r| r["softwareName"] == "linux-image-generic")
        .expect("the big package");
    let cves: Vec<Value> =
        serde_json::from_str(kernel["cvesDetails"].as_str().expect("a string")).expect("JSON");
    assert_eq!(cves.len(), 300);
}

#[tokio::test]
async fn an_answer_over_the_size_limit_is_refused_with_response_payload_too_large() {
    let app = App::start(rampart_sim::SimConfig {
        graph_max_response_bytes: 20_000,
        ..small_config()
    })
    .await;
    let token = arm_token(&app).await;
    let q = PROJECTED_QUERY;
    let r = graph(
        &app,
        &token,
        &json!({"query": q, "options": {"$top": 1000}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let e = r.json();
    assert_eq!(e["error"]["code"], "BadRequest");
    assert_eq!(e["error"]["details"][0]["code"], "ResponsePayloadTooLarge");
    assert!(
        e["error"]["details"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("20000")),
        "{e}"
    );
    // Fewer rows fit.
    let r = graph(&app, &token, &json!({"query": q, "options": {"$top": 1}})).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

#[tokio::test]
async fn cvedetails_answer_at_tenant_scope_only() {
    let app = App::start(rampart_sim::SimConfig {
        cloud_cve_ids_only: true,
        ..small_config()
    })
    .await;
    let token = arm_token(&app).await;
    let truth = app.running.sim.truth().cloud_findings();
    let ids: Vec<String> = truth.iter().take(3).map(|f| f.cve_id.clone()).collect();
    let q = cve_details_query(&ids);
    let tenant = all_rows(&app, &token, &q, false).await;
    assert!(!tenant.is_empty() && tenant.len() <= 3, "{}", tenant.len());
    assert!(
        tenant
            .iter()
            .all(|r| r["properties"]["publishedDate"].is_string())
    );
    assert!(
        all_rows(&app, &token, &q, true).await.is_empty(),
        "a subscription-scoped query returns no cvedetails"
    );
    // The recommendations carry only the CVE ids.
    let rows = all_rows(&app, &token, PROJECTED_QUERY, true).await;
    let cves: Vec<Value> =
        serde_json::from_str(rows[0]["cvesDetails"].as_str().expect("a string")).expect("JSON");
    assert_eq!(cves[0].as_object().map(|o| o.len()), Some(1), "{}", cves[0]);
}

#[tokio::test]
async fn a_tenant_from_before_the_deprecation_serves_sub_assessments() {
    let app = App::start(rampart_sim::SimConfig {
        cloud_legacy_sub_assessments: true,
        ..small_config()
    })
    .await;
    let token = arm_token(&app).await;
    let mut all = Vec::new();
    for s in app.running.sim.truth().cloud_subscriptions().iter().take(3) {
        let (items, _) = walk_arm(
            &app,
            &format!(
                "/subscriptions/{}/providers/Microsoft.Security/subAssessments?api-version=2019-01-01-preview",
                s.subscription_id
            ),
            &token,
        )
        .await;
        all.extend(items);
    }
    let kind = |k: &str| {
        all.iter()
            .filter(|a| a["properties"]["additionalData"]["assessedResourceType"] == k)
            .count()
    };
    assert!(kind("ServerVulnerabilityTvm") > 0);
    assert!(kind("ServerVulnerability") > 0, "Qualys rows");
    assert!(kind("AzureContainerRegistryVulnerability") > 0);
    let qualys = all
        .iter()
        .find(|a| a["properties"]["additionalData"]["cvss"]["3.0"]["base"].is_number())
        .expect("a CVSS object keyed by version");
    assert!(qualys["properties"]["additionalData"]["publishedTime"].is_string());
    let image = all
        .iter()
        .find(|a| a["properties"]["additionalData"]["artifactDetails"].is_object())
        .expect("an image");
    assert!(
        image["properties"]["resourceDetails"]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("/repositories/")),
        "an image path, not an ARM id"
    );
    // Without the data mode the list is empty (after 2026-07-31).
    let app = App::small().await;
    let token = arm_token(&app).await;
    let sub = &app.running.sim.truth().cloud_subscriptions()[0].subscription_id;
    let (items, _) = walk_arm(
        &app,
        &format!("/subscriptions/{sub}/providers/Microsoft.Security/subAssessments?api-version=2019-01-01-preview"),
        &token,
    )
    .await;
    assert!(items.is_empty());
}

#[tokio::test]
async fn resource_graph_pages_with_skip_token_only_when_id_is_projected() {
    let app = App::small().await;
    let token = arm_token(&app).await;
    let total = app.running.sim.truth().cloud_findings().len();
    assert!(total > 10, "{total}");
    let mut rows = 0;
    let mut skip: Option<String> = None;
    for _ in 0..100 {
        let mut options = json!({"$top": 7, "resultFormat": "objectArray"});
        if let Some(s) = &skip {
            options["$skipToken"] = s.clone().into();
        }
        let r = graph(
            &app,
            &token,
            &json!({"query": VULN_QUERY, "options": options}),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(r.headers.contains_key("x-ms-user-quota-remaining"));
        let page = r.json();
        assert_eq!(page["resultTruncated"], "false");
        rows += page["data"].as_array().unwrap().len();
        match page.get("$skipToken").and_then(Value::as_str) {
            Some(s) => skip = Some(s.to_owned()),
            None => break,
        }
    }
    assert_eq!(rows, total);
    // Without `id` projected: no skip token, truncated.
    let q = VULN_QUERY.replace("project id, ", "project ");
    let r = graph(&app, &token, &json!({"query": q, "options": {"$top": 5}})).await;
    let page = r.json();
    assert!(page.get("$skipToken").is_none());
    assert_eq!(page["resultTruncated"], "true");
    // Unknown queries and bad $top are refused with ARG's envelope.
    let r = graph(&app, &token, &json!({"query": "resources | take 1"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["details"][0]["code"], "InvalidQuery");
    let r = graph(
        &app,
        &token,
        &json!({"query": VULN_QUERY, "options": {"$top": 1001}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn resource_graph_quota_answers_429_rate_limiting() {
    let app = App::start(rampart_sim::SimConfig {
        rate_limits: true,
        ..small_config()
    })
    .await;
    let token = arm_token(&app).await;
    let mut throttled = None;
    for _ in 0..20 {
        let r = graph(&app, &token, &json!({"query": VULN_QUERY})).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            throttled = Some(r);
            break;
        }
    }
    let r = throttled.expect("the 16th query in 5 s is throttled");
    assert_eq!(r.json()["error"]["code"], "RateLimiting");
    assert!(r.headers.contains_key("x-ms-user-quota-resets-after"));
}

#[tokio::test]
async fn arm_reads_are_throttled_with_retry_after() {
    let app = App::start(rampart_sim::SimConfig {
        rate_limits: true,
        arm_read_burst: 3,
        arm_read_refill: 1,
        ..small_config()
    })
    .await;
    let token = arm_token(&app).await;
    let sub = app.running.sim.truth().cloud_subscriptions()[0]
        .subscription_id
        .clone();
    let path = format!(
        "/subscriptions/{sub}/providers/Microsoft.Security/pricings?api-version=2024-01-01"
    );
    let first = app.get(&path, &token).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        first.headers["x-ms-ratelimit-remaining-subscription-reads"],
        "2"
    );
    let mut last = first;
    for _ in 0..5 {
        last = app.get(&path, &token).await;
    }
    assert_eq!(last.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(last.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn the_clock_changes_cloud_findings() {
    let app = App::small().await;
    let before = app.running.sim.truth().cloud_findings();
    app.running.sim.tick(12);
    let after = app.running.sim.truth().cloud_findings();
    assert_ne!(before, after);
}
