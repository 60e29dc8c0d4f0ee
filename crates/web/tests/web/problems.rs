//! Issue 12, item 8 (the API's part): every API error is problem+json, whatever refused the
//! request; the bearer scheme is case-insensitive; a cursor the API never handed out is refused,
//! not read as "from the start".

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::spawn_app;

/// Sends and checks that the answer is problem details with `status`; returns the detail.
async fn problem(request: reqwest::RequestBuilder, status: StatusCode, what: &str) -> String {
    let answer = request.send().await.unwrap();
    assert_eq!(answer.status(), status, "{what}");
    let kind = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = crate::helpers::body(answer).await;
    assert_eq!(kind, "application/problem+json", "{what}: {body}");
    let json: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
    assert_eq!(json["status"], status.as_u16(), "{what}: {body}");
    assert_eq!(json["type"], "about:blank", "{what}: {body}");
    let detail = json["detail"].as_str().unwrap_or_default().to_owned();
    assert!(!detail.is_empty(), "{what}: {body}");
    detail
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_before_any_handler_are_problem_json_too() {
    let app = spawn_app().await;
    let admin = app.api_token("admin").await;
    let http = reqwest::Client::new();
    let api = |method: Method, path: &str| {
        http.request(method, format!("{}/api/v1{path}", app.url))
            .bearer_auth(&admin)
    };

    // A query string serde cannot read.
    problem(
        api(Method::GET, "/assets?q=a&q=b"),
        StatusCode::BAD_REQUEST,
        "duplicate query parameter",
    )
    .await;
    // Broken JSON, JSON of the wrong shape, and no JSON content type.
    problem(
        api(Method::POST, "/integrations")
            .header("content-type", "application/json")
            .body("{"),
        StatusCode::BAD_REQUEST,
        "broken JSON",
    )
    .await;
    problem(
        api(Method::POST, "/integrations")
            .header("content-type", "application/json")
            .body(r#"{"name": 5}"#),
        StatusCode::UNPROCESSABLE_ENTITY,
        "JSON of the wrong shape",
    )
    .await;
    let detail = problem(
        api(Method::POST, "/integrations").body(r#"{"name": "x"}"#),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "no content type",
    )
    .await;
    assert!(
        detail.contains("Content-Type: application/json"),
        "{detail}"
    );
    // A path id that is no number.
    problem(
        api(Method::GET, "/integrations/abc/runs"),
        StatusCode::BAD_REQUEST,
        "a path id that is no number",
    )
    .await;
    // A method the path does not take, and a path that does not exist.
    let detail = problem(
        api(Method::DELETE, "/assets"),
        StatusCode::METHOD_NOT_ALLOWED,
        "an unknown method",
    )
    .await;
    assert!(detail.contains("DELETE"), "{detail}");
    problem(
        api(Method::GET, "/no-such-listing"),
        StatusCode::NOT_FOUND,
        "an unknown path",
    )
    .await;
    // A body over the limit. Announced by its Content-Length and not sent: the server refuses it from
    // the head alone, and a client still writing 2 MiB would race the server closing the connection
    // (a broken pipe instead of an answer).
    let head = over_limit_answer(&app.url, &admin).await;
    assert!(
        head.starts_with("HTTP/1.1 413"),
        "a body over the limit: {head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "a body over the limit: {head}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    let token = app.api_token("read").await;
    let http = reqwest::Client::new();
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let answer = http
            .get(format!("{}/api/v1/assets", app.url))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{scheme}");
    }
    // Another scheme is still no token.
    problem(
        http.get(format!("{}/api/v1/assets", app.url))
            .header("authorization", format!("Basic {token}")),
        StatusCode::UNAUTHORIZED,
        "another scheme",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_garbled_cursors_are_refused_not_read_as_the_first_page() {
    let app = spawn_app().await;
    app.seed_asset("only-host").await;
    let token = app.api_token("read").await;
    let http = reqwest::Client::new();
    for query in [
        "/assets?after=-5",
        "/assets?after=0",
        "/assets?after=abc",
        "/assets?sort=-id&after=-id.-3.",
        "/assets?sort=-id&after=-id.3.x",
        "/assets?sort=last_seen&after=last_seen.1.9223372036854775807",
        "/assets?sort=open_findings&after=open_findings.1.-99",
        "/assets?sort=name&after=name.1.zz",
        "/findings?after=-1",
        "/findings?after=1.5",
        "/vulnerabilities?after=not-a-cve",
        "/posture/recommendations?after=-7",
    ] {
        let detail = problem(
            http.get(format!("{}/api/v1{query}", app.url))
                .bearer_auth(&token),
            StatusCode::BAD_REQUEST,
            query,
        )
        .await;
        assert!(detail.contains("after"), "{query}: {detail}");
    }
    let long = format!("/assets?after={}", "1".repeat(5000));
    problem(
        http.get(format!("{}/api/v1{long}", app.url))
            .bearer_auth(&token),
        StatusCode::BAD_REQUEST,
        "a cursor too long to be one",
    )
    .await;
}

/// Cursors are never cut short like other parameters: a name-sorted cursor carries the name, and
/// a long name once made the next page's cursor invalid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_carrying_a_long_name_still_pages() {
    let app = spawn_app().await;
    let long = format!("a{}", "x".repeat(180));
    app.seed_asset(&long).await;
    // A second asset after it in name order, under another integration.
    let second = app.seed_asset_named("zz-host", "seeded-2").await;
    let token = app.api_token("read").await;
    let http = reqwest::Client::new();
    let first: Value = http
        .get(format!("{}/api/v1/assets?sort=name&limit=1", app.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    assert!(cursor.len() > 200, "{cursor}");
    let answer = http
        .get(format!("{}/api/v1/assets", app.url))
        .query(&[("sort", "name"), ("limit", "1"), ("after", cursor.as_str())])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let page: Value = answer.json().await.unwrap();
    assert_eq!(page["items"][0]["id"], second, "{page}");
}

/// The answer (status line, headers and body as text) to a POST that announces a 2 MiB body.
async fn over_limit_answer(base: &str, token: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /api/v1/integrations HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{{",
        2 * 1024 * 1024
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        socket.read_to_end(&mut answer),
    )
    .await;
    assert!(
        read.is_ok(),
        "no answer to an announced body over the limit"
    );
    String::from_utf8_lossy(&answer).into_owned()
}
