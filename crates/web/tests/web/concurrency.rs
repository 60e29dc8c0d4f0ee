//! Issue 12, item 1: many dashboards and API listings at once. Each dashboard once held one of
//! the store's pooled read connections and asked for a second; with as many dashboards as
//! connections, every one waited for another until the pool gave up after 30 s (500s, and the
//! API stalled with them).

use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;

use crate::helpers::{ADMIN, TestApp, spawn_app, spawn_app_on_postgres};

/// Far below the pool's 30 s wait that the deadlock ended in, far above what 64 small requests
/// take on a busy machine.
const OVERALL: Duration = Duration::from_secs(25);

async fn dashboards_and_api_lists_at_once(app: TestApp) {
    app.seed_asset("busy-host").await;
    let admin = app.signed_in(ADMIN).await;
    let cookie = admin.cookie_header().unwrap();
    let token = app.api_token("read").await;
    let http = reqwest::Client::new();
    let mut requests = Vec::new();
    for i in 0..32 {
        requests.push(
            http.get(format!("{}/", app.url))
                .header("cookie", &cookie)
                .send(),
        );
        let list = ["assets", "findings", "vulnerabilities", "recommendations"][i % 4];
        let path = if list == "recommendations" {
            "/api/v1/posture/recommendations".to_owned()
        } else {
            format!("/api/v1/{list}")
        };
        requests.push(
            http.get(format!("{}{path}", app.url))
                .bearer_auth(&token)
                .send(),
        );
    }
    let answers = tokio::time::timeout(OVERALL, join_all(requests))
        .await
        .expect("64 concurrent requests did not finish in 25 s: are requests waiting for each other's database connections?");
    for answer in answers {
        let answer = answer.unwrap();
        let url = answer.url().to_string();
        assert_eq!(answer.status(), StatusCode::OK, "{url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_dashboards_and_api_lists_at_once_all_answer_sqlite() {
    dashboards_and_api_lists_at_once(spawn_app().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_dashboards_and_api_lists_at_once_all_answer_postgres() {
    dashboards_and_api_lists_at_once(spawn_app_on_postgres().await).await;
}
