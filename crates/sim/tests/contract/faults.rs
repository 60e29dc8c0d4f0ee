//! Fault injection: targeted faults, the random schedule, and the HTTP control endpoints.

use rampart_sim::{Family, SimConfig};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{App, error_code, small_config, values};

const PATH: &str = "/api/machines/SoftwareVulnerabilitiesByMachine";

#[tokio::test]
async fn fail_next_answers_the_status_then_recovers() {
    let app = App::small().await;
    let token = app.token().await;
    app.running.sim.faults().fail_next("/api/machines", 503, 2);
    for _ in 0..2 {
        let reply = app.get("/api/machines?$top=1", &token).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(reply.json()["error"]["code"].is_string());
    }
    assert_eq!(
        app.get("/api/machines?$top=1", &token).await.status,
        StatusCode::OK
    );
    app.running
        .sim
        .faults()
        .fail_next("SoftwareVulnerabilitiesByMachine", 429, 1);
    let reply = app.get(&format!("{PATH}?$top=1"), &token).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.headers["retry-after"], "1");
    assert_eq!(error_code(&reply), "TooManyRequests");
    app.running
        .sim
        .faults()
        .fail_next("/api/vulnerabilities", 500, 1);
    let reply = app.get("/api/vulnerabilities?$top=1", &token).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(error_code(&reply), "InternalServerError");
    assert_eq!(app.running.sim.stats().faults_injected, 4);
}

#[tokio::test]
async fn truncated_bodies_have_status_200_and_broken_json() {
    let app = App::small().await;
    let token = app.token().await;
    app.running.sim.faults().truncate_next(PATH, 1);
    let reply = app.get(&format!("{PATH}?pageSize=300"), &token).await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&reply.body);
    assert!(
        text.starts_with("{\"@odata.context\"") && text.contains("\"value\":[{"),
        "cut mid-array"
    );
    assert!(serde_json::from_slice::<Value>(&reply.body).is_err());
    let reply = app.get(&format!("{PATH}?pageSize=300"), &token).await;
    assert!(serde_json::from_slice::<Value>(&reply.body).is_ok());
}

#[tokio::test]
async fn resets_drop_the_connection_mid_body() {
    let app = App::small().await;
    let token = app.token().await;
    app.running.sim.faults().reset_next("/api/machines", 1);
    let result = app
        .get_with(&format!("{}/api/machines", app.url()), Some(&token))
        .await;
    assert!(result.is_err(), "the body must fail to arrive");
    assert_eq!(
        app.get("/api/machines?$top=2", &token).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn fail_export_page_breaks_the_nth_page_once() {
    let app = App::small().await;
    let token = app.token().await;
    app.running.sim.faults().fail_export_page(2);
    let first = app.get(&format!("{PATH}?pageSize=500"), &token).await;
    assert_eq!(first.status, StatusCode::OK);
    let next = first.json()["@odata.nextLink"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get_url(&next, &token).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        app.get_url(&next, &token).await.status,
        StatusCode::OK,
        "a retry of the same page works"
    );
}

#[tokio::test]
async fn foreign_next_links_point_elsewhere() {
    let app = App::small().await;
    let token = app.token().await;
    app.running.sim.faults().foreign_next_link(1);
    let page = app.get(&format!("{PATH}?pageSize=50"), &token).await.json();
    let link = page["@odata.nextLink"].as_str().unwrap();
    assert!(
        link.starts_with("https://evil.example.net/api/machines/SoftwareVulnerabilitiesByMachine?"),
        "{link}"
    );
    let page = app.get(&format!("{PATH}?pageSize=50"), &token).await.json();
    assert!(
        page["@odata.nextLink"]
            .as_str()
            .unwrap()
            .starts_with(app.url())
    );
}

#[tokio::test]
async fn random_faults_never_corrupt_the_data() {
    let app = App::start(SimConfig {
        fault_rate: 0.4,
        seed: 9,
        ..small_config()
    })
    .await;
    // Token requests fail only occasionally: retry a few times.
    let mut token = None;
    for _ in 0..10 {
        let reply = app.demo_token_request(crate::helpers::MDE_SCOPE).await;
        if reply.status == StatusCode::OK {
            token = Some(reply.json()["access_token"].as_str().unwrap().to_owned());
            break;
        }
    }
    let token = token.expect("a token within 10 tries");
    let truth = values(app.running.sim.truth().machines());
    let (mut ok, mut failed) = (0, 0);
    for i in 0..40 {
        let skip = (i * 7) % 200;
        match app
            .get_with(
                &format!("{}/api/machines?$top=20&$skip={skip}", app.url()),
                Some(&token),
            )
            .await
        {
            Ok(reply) if reply.status == StatusCode::OK => {
                match serde_json::from_slice::<Value>(&reply.body) {
                    Ok(page) => {
                        assert_eq!(
                            page["value"].as_array().unwrap().as_slice(),
                            &truth[skip..skip + 20]
                        );
                        ok += 1;
                    }
                    Err(_) => failed += 1,
                }
            }
            Ok(reply) => {
                assert!(
                    [429u16, 500, 503].contains(&reply.status.as_u16()),
                    "{}",
                    reply.status
                );
                if reply.status == StatusCode::TOO_MANY_REQUESTS {
                    assert_eq!(reply.headers["retry-after"], "1");
                }
                failed += 1;
            }
            Err(_) => failed += 1,
        }
    }
    assert!(ok > 5 && failed > 5, "ok {ok}, failed {failed}");
    assert!(app.running.sim.stats().faults_injected >= failed);
}

#[tokio::test]
async fn the_emulator_can_be_driven_over_http() {
    let app = App::small().await;
    let token = app.token().await;
    let info = app
        .get_with(&format!("{}/_sim", app.url()), None)
        .await
        .unwrap()
        .json();
    assert_eq!(info["tenantId"], app.tenant());
    let reply = app.control("tick?n=2").await;
    assert_eq!(reply.json()["tick"], 2);
    assert_eq!(app.running.sim.current_tick(), 2);
    let lines = app
        .get_with(&format!("{}/_sim/truth/findings", app.url()), None)
        .await
        .unwrap();
    let n = String::from_utf8(lines.body).unwrap().lines().count();
    assert_eq!(n, app.running.sim.truth().findings().count());
    let machines = app
        .get_with(&format!("{}/_sim/truth/machines?tick=0", app.url()), None)
        .await
        .unwrap();
    let first: Value = serde_json::from_str(
        String::from_utf8(machines.body)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        first,
        serde_json::to_value(app.running.sim.truth_at(0).machines().next().unwrap()).unwrap()
    );
    assert_eq!(
        app.control("faults/fail_next?path=/api/machines&status=502&times=1")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/machines?$top=1", &token).await.status,
        StatusCode::BAD_GATEWAY
    );
    app.control("faults/expire_tokens_now").await;
    assert_eq!(
        app.get("/api/machines?$top=1", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    let stats = app
        .get_with(&format!("{}/_sim/stats", app.url()), None)
        .await
        .unwrap()
        .json();
    assert_eq!(stats["calls"]["machines"], 2);
    assert!(stats["rows_served"].as_u64().unwrap() > 0);
    assert_eq!(app.running.sim.stats().calls(Family::Token), 1);
    assert_eq!(
        app.control("faults/bogus").await.status,
        StatusCode::NOT_FOUND
    );
}
