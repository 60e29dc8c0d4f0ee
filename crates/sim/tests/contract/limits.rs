//! Documented rate limits (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-machines>).

use rampart_sim::{Family, SimConfig};
use reqwest::StatusCode;

use crate::helpers::{App, error_code, small_config};

#[tokio::test]
async fn machines_allow_100_calls_a_minute_then_429_with_retry_after() {
    let app = App::start(SimConfig {
        rate_limits: true,
        ..small_config()
    })
    .await;
    let token = app.token().await;
    for i in 0..100 {
        let reply = app.get("/api/machines?$top=1", &token).await;
        assert_eq!(reply.status, StatusCode::OK, "call {i}");
    }
    let reply = app.get("/api/machines?$top=1", &token).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_code(&reply), "TooManyRequests");
    let wait: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("integer seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    // Other families have their own buckets.
    assert_eq!(
        app.get(
            "/api/machines/SoftwareVulnerabilitiesByMachine?$top=1",
            &token
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(app.running.sim.stats().throttled, 1);
}

#[tokio::test]
async fn file_exports_allow_5_calls_a_minute() {
    let app = App::start(SimConfig {
        rate_limits: true,
        ..small_config()
    })
    .await;
    let token = app.token().await;
    for _ in 0..5 {
        assert_eq!(
            app.get("/api/machines/SoftwareVulnerabilitiesExport", &token)
                .await
                .status,
            StatusCode::OK
        );
    }
    let reply = app
        .get("/api/machines/SoftwareVulnerabilitiesExport", &token)
        .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(reply.headers.contains_key("retry-after"));
    // Blob downloads are not limited.
    let stats = app.running.sim.stats();
    assert_eq!(stats.calls(Family::FileExport), 6);
}

#[tokio::test]
async fn no_429_when_rate_limits_are_off() {
    let app = App::small().await;
    let token = app.token().await;
    for _ in 0..130 {
        assert_eq!(
            app.get("/api/machines?$top=1", &token).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(app.running.sim.stats().throttled, 0);
}
