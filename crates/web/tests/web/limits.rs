//! Issue 12, item 5: slow clients cannot exhaust the server. Real sockets against a real server
//! whose limits are shortened for the test.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{ADMIN, spawn_app_configured};

/// Generous: the shortened timeouts are one second; without them, nothing would ever close.
const OVERALL: Duration = Duration::from_secs(20);

fn address(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection; what it sent before does not matter.
async fn closed_by_server(socket: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let read_to_end = async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(OVERALL, read_to_end).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_request_head_is_closed_after_the_header_timeout() {
    let app = spawn_app_configured(40, |c| {
        c.limits.header_read_timeout = Duration::from_secs(1);
        c.limits.idle_timeout = Duration::from_secs(3600);
    })
    .await;
    let mut socket = TcpStream::connect(address(&app.url)).await.unwrap();
    socket
        .write_all(b"GET /login HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    assert!(
        closed_by_server(&mut socket).await,
        "a client sending half a request head kept its connection"
    );
    // The server itself is fine.
    let page = app.client().get("/login").await;
    assert_eq!(page.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_stops_arriving_is_closed_after_the_idle_timeout() {
    let app = spawn_app_configured(40, |c| {
        c.limits.header_read_timeout = Duration::from_secs(3600);
        c.limits.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let token = app.api_token("admin").await;
    let mut socket = TcpStream::connect(address(&app.url)).await.unwrap();
    let head = format!(
        "POST /api/v1/integrations HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{{\"name\": "
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    assert!(
        closed_by_server(&mut socket).await,
        "a client that stopped sending its request body kept its connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_connection_cap_a_new_connection_waits_until_a_slot_frees() {
    let app = spawn_app_configured(40, |c| {
        c.limits.max_connections = 2;
        c.limits.header_read_timeout = Duration::from_secs(3600);
        c.limits.idle_timeout = Duration::from_secs(3600);
    })
    .await;
    // Signed in before the cap is filled (the login needs connections of its own).
    let admin = app.signed_in(ADMIN).await;
    let cookie = admin.cookie_header().unwrap();
    drop(admin);
    // Let the server notice the client's pooled connections closing.
    let probe = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut socket = TcpStream::connect(address(&app.url)).await.unwrap();
        socket
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .unwrap();
        slow.push(socket);
    }
    let url = format!("{}/", app.url);
    let waiting = tokio::spawn(async move { probe.get(url).header("cookie", cookie).send().await });
    // Not an upper bound on anything: the request may only be answered once a slot frees, so
    // however slow the machine, it must still be waiting now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection was served while the cap of 2 was reached"
    );
    drop(slow.pop());
    let answer = tokio::time::timeout(OVERALL, waiting)
        .await
        .expect("the waiting request was not served after a slot freed")
        .unwrap()
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
}
