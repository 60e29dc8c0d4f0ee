//! Misbehaving servers the emulator does not play: a server that ignores `$skip`, next-page links
//! that loop or point at another host, never-ending paging, a record our types refuse, HTML error
//! pages, 429 without `Retry-After`. A few lines of HTTP/1.1 over a loopback socket, answering from a
//! closure, each request on its own connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rampart_microsoft::ClientCredentials;
use rampart_microsoft::{
    ApiError, ArmClient, AssetVulnerability, ClientConfig, MdeClient, MdeConfig, ReadEnd,
    ReadReport, RetryPolicy,
};
use rampart_model::Cloud;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// One canned answer.
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn json(status: u16, body: impl Into<String>) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body: body.into(),
    }
}

type Handler = dyn Fn(&str, &str) -> Answer + Send + Sync;

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    authorized: bool,
    user_agent: String,
}

struct Canned {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Canned {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
    fn api_hits(&self) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.target.starts_with("/api/"))
            .count()
    }
}

/// A token whose payload carries both roles Rampart needs.
fn token_answer() -> Answer {
    let payload = URL_SAFE_NO_PAD
        .encode(r#"{"aud":"https://api.securitycenter.microsoft.com","roles":["Machine.Read.All","Vulnerability.Read.All"]}"#);
    // The v1 shape: numbers as strings.
    json(
        200,
        format!(
            r#"{{"token_type":"Bearer","expires_in":"3599","ext_expires_in":"3599","access_token":"eyJhbGciOiJub25lIn0.{payload}.c2ln"}}"#
        ),
    )
}

async fn serve(handler: impl Fn(&str, &str) -> Answer + Send + Sync + 'static) -> Canned {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler: Arc<Handler> = Arc::new(handler);
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let handler = Arc::clone(&handler);
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
                    match socket.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let mut lines = head.lines();
                let mut request = lines.next().unwrap_or_default().split(' ');
                let method = request.next().unwrap_or_default().to_owned();
                let target = request.next().unwrap_or_default().to_owned();
                let mut length = 0usize;
                let mut authorized = false;
                let mut user_agent = String::new();
                for line in lines {
                    if let Some(v) = line
                        .strip_prefix("user-agent:")
                        .or_else(|| line.strip_prefix("User-Agent:"))
                    {
                        user_agent = v.trim().to_owned();
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    authorized |= lower.starts_with("authorization: bearer ");
                }
                let mut body = vec![0u8; length];
                if socket.read_exact(&mut body).await.is_err() {
                    return;
                }
                log.lock().expect("lock").push(Seen {
                    target: target.clone(),
                    authorized,
                    user_agent,
                });
                let answer = if target.contains("/oauth2/") {
                    token_answer()
                } else {
                    handler(&method, &target)
                };
                let mut out = format!(
                    "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                    answer.status,
                    answer.body.len()
                );
                for (k, v) in &answer.headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&answer.body);
                let _ = socket.write_all(out.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Canned { url, seen }
}

fn client(canned: &Canned, tweak: impl FnOnce(&mut MdeConfig)) -> MdeClient {
    let mut cfg = settings(canned);
    tweak(&mut cfg);
    MdeClient::new(cfg).expect("client")
}

/// Software vulnerabilities by machine from `canned`, `page_size` a page, read to the end by a
/// client with the default settings.
async fn read_by_machine(
    canned: &Canned,
    page_size: u32,
) -> Result<(Vec<AssetVulnerability>, ReadReport), ApiError> {
    client(canned, |_| {})
        .software_vulnerabilities_by_machine(page_size)
        .collect_all()
        .await
}

/// Either client's settings for `canned`, with test-speed retries.
fn settings(canned: &Canned) -> ClientConfig {
    let mut cfg = ClientConfig::new(
        Cloud::Commercial,
        ClientCredentials {
            tenant_id: "00000000-0000-4000-8000-000000000001"
                .parse()
                .expect("tenant"),
            client_id: "00000000-0000-4000-8000-000000000002"
                .parse()
                .expect("client"),
            client_secret: SecretString::from("s3cret".to_owned()),
        },
    )
    .with_base_url(&canned.url);
    cfg.retry = RetryPolicy::with_base_delay(Duration::from_millis(2));
    cfg
}

fn machines_page(ids: &[String]) -> String {
    let items: Vec<String> = ids
        .iter()
        .map(|id| format!(r#"{{"id":"{id}","computerDnsName":"h-{id}"}}"#))
        .collect();
    format!(r#"{{"@odata.context":"x","value":[{}]}}"#, items.join(","))
}

fn query_value(target: &str, key: &str) -> Option<u64> {
    target
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

#[tokio::test]
async fn a_server_that_ignores_skip_ends_the_read_as_incomplete() {
    let canned = serve(|_, _| json(200, machines_page(&["a".into(), "b".into()]))).await;
    let c = client(&canned, |cfg| cfg.paging.machines_page_size = 2);
    let (machines, report) = c.machines().collect_all().await.expect("read");
    assert_eq!(machines.len(), 2, "the repeated page delivers nothing new");
    assert!(!report.complete);
    assert_eq!(report.reason, ReadEnd::RepeatedPage { page: 1 });
    assert_eq!(report.duplicates_dropped, 2);
    assert_eq!(canned.api_hits(), 2);
}

#[tokio::test]
async fn shifting_pages_are_deduplicated_and_the_short_page_ends_the_read() {
    // A live set that shifts by one under $skip: each page repeats the previous page's last id.
    let canned = serve(|_, target| {
        let skip = query_value(target, "$skip").unwrap_or(0);
        let ids: Vec<String> = match skip {
            0 => vec!["a".into(), "b".into(), "c".into()],
            3 => vec!["c".into(), "d".into(), "e".into()],
            _ => vec!["e".into()],
        };
        json(200, machines_page(&ids))
    })
    .await;
    let c = client(&canned, |cfg| cfg.paging.machines_page_size = 3);
    let (machines, report) = c.machines().collect_all().await.expect("read");
    let ids: Vec<&str> = machines.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d", "e"]);
    assert!(report.complete, "{report:?}");
    assert_eq!(report.duplicates_dropped, 2);
    assert_eq!(report.reason, ReadEnd::ShortPage { page: 2, items: 1 });
    // `$skip` went out as plain digits.
    assert!(
        canned
            .seen()
            .iter()
            .any(|s| s.target.ends_with("$top=3&$skip=6")),
        "{:?}",
        canned.seen()
    );
}

#[tokio::test]
async fn paging_stops_at_max_pages() {
    let canned = serve(|_, target| {
        let skip = query_value(target, "$skip").unwrap_or(0);
        json(200, machines_page(&[format!("m{skip}")]))
    })
    .await;
    let c = client(&canned, |cfg| {
        cfg.paging.machines_page_size = 1;
        cfg.paging.max_pages = 3;
    });
    let (machines, report) = c.machines().collect_all().await.expect("read");
    assert_eq!(machines.len(), 3);
    assert!(!report.complete);
    assert_eq!(report.reason, ReadEnd::MaxPages { pages: 3 });
}

const EXPORT: &str = "/api/machines/SoftwareVulnerabilitiesByMachine";

fn export_page(rows: &[&str], next: Option<&str>) -> String {
    let items: Vec<String> = rows
        .iter()
        .map(|d| format!(r#"{{"deviceId":"{d}","softwareVendor":"v","softwareName":"n","softwareVersion":"1","cveId":"CVE-2024-0001"}}"#))
        .collect();
    match next {
        Some(link) => format!(
            r#"{{"value":[{}],"@odata.nextLink":"{link}"}}"#,
            items.join(",")
        ),
        None => format!(r#"{{"value":[{}]}}"#, items.join(",")),
    }
}

#[tokio::test]
async fn a_next_link_loop_ends_the_read_as_incomplete() {
    let base = Arc::new(Mutex::new(String::new()));
    let b = Arc::clone(&base);
    let canned = serve(move |_, target| {
        let base = b.lock().expect("lock").clone();
        if target.contains("skiptoken=2") {
            // Back to page 2 again: a loop.
            json(
                200,
                export_page(
                    &["c"],
                    Some(&format!("{base}{EXPORT}?pagesize=2&$skiptoken=2")),
                ),
            )
        } else {
            json(
                200,
                export_page(
                    &["a", "b"],
                    Some(&format!("{base}{EXPORT}?pagesize=2&$skiptoken=2")),
                ),
            )
        }
    })
    .await;
    *base.lock().expect("lock") = canned.url.clone();
    let (rows, report) = read_by_machine(&canned, 2).await.expect("read");
    assert_eq!(rows.len(), 3);
    assert!(!report.complete);
    assert_eq!(report.reason, ReadEnd::RepeatedNextLink { page: 1 });
}

#[tokio::test]
async fn a_next_link_to_another_port_gets_no_request_and_no_token() {
    let other = serve(|_, _| json(200, export_page(&["stolen"], None))).await;
    let foreign = format!("{}{EXPORT}?$skiptoken=x", other.url);
    let canned = serve(move |_, _| json(200, export_page(&["a"], Some(&foreign)))).await;
    let err = read_by_machine(&canned, 1).await.expect_err("refused");
    assert!(matches!(err, ApiError::UntrustedNextLink { .. }), "{err:?}");
    assert!(err.to_string().contains(&other.url), "{err}");
    assert!(
        other.seen().is_empty(),
        "the foreign host was contacted: {:?}",
        other.seen()
    );
    assert!(
        canned
            .seen()
            .iter()
            .filter(|s| s.target.starts_with("/api/"))
            .all(|s| s.authorized)
    );
    let ua = &canned.seen()[0].user_agent;
    assert!(ua.starts_with("MdatpPartner-Rampart-Rampart/"), "{ua}");
}

#[tokio::test]
async fn an_unreadable_record_is_skipped_counted_and_named_and_the_read_concludes() {
    let canned = serve(|_, _| {
        json(
            200,
            r#"{"value":[{"deviceId":"a","cveId":"CVE-2024-0001"},{"id":"row-42","deviceId":42},{"deviceId":"c","cveId":"CVE-2024-0002"}]}"#,
        )
    })
    .await;
    let (rows, report) = read_by_machine(&canned, 10).await.expect("read");
    assert_eq!(rows.len(), 2);
    assert_eq!(report.unreadable, 1);
    assert_eq!(report.unreadable_ids, vec!["row-42".to_owned()]);
    assert!(
        report
            .first_unreadable
            .as_deref()
            .is_some_and(|e| e.contains("invalid type")),
        "{report:?}"
    );
    // One odd record does not sink the read (issue 11).
    assert!(report.complete, "{report:?}");
    assert_eq!(
        canned.api_hits(),
        1,
        "a record our types refuse is not retried"
    );
}

#[tokio::test]
async fn more_unreadable_records_than_tolerated_make_the_read_incomplete() {
    let canned = serve(|_, _| {
        json(
            200,
            r#"{"value":[{"deviceId":"a","cveId":"CVE-2024-0001"},{"deviceId":42},{"deviceId":43}]}"#,
        )
    })
    .await;
    let (rows, report) = read_by_machine(&canned, 10).await.expect("read");
    assert_eq!(rows.len(), 1);
    assert_eq!(report.unreadable, 2);
    assert!(!report.complete);
    assert!(
        matches!(&report.reason, ReadEnd::UnreadableRecords { count: 2, first_error } if first_error.contains("invalid type")),
        "{report:?}"
    );
    assert_eq!(
        canned.api_hits(),
        1,
        "a record our types refuse is not retried"
    );
}

#[tokio::test]
async fn json_broken_inside_a_page_fails_at_once_with_offset_and_sample() {
    let canned = serve(|_, _| {
        json(
            200,
            r#"{"value":[{"deviceId":"a","cveId":"CVE-2024-0001","cvssScore":NaN}]}"#,
        )
    })
    .await;
    let err = read_by_machine(&canned, 10).await.expect_err("not JSON");
    match &err {
        ApiError::MalformedBody { offset, sample, .. } => {
            assert_eq!(*offset, 62, "{err}");
            assert!(sample.contains(r#""cvssScore":NaN"#), "{err}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("at byte 62"), "{err}");
    assert_eq!(canned.api_hits(), 1, "not retried");
}

#[tokio::test]
async fn gateway_html_429_without_retry_after_and_404_are_handled() {
    let calls = Arc::new(AtomicUsize::new(0));
    let n = Arc::clone(&calls);
    let canned = serve(move |_, target| {
        if target.contains("missing") {
            return json(404, r#"{"error":{"code":"ResourceNotFound","message":"Machine x was not found","target":"t-1"}}"#);
        }
        match n.fetch_add(1, Ordering::SeqCst) {
            0 => json(502, "<html><body>502 Bad Gateway</body></html>"),
            1 => json(429, r#"{"error":{"code":"TooManyRequests","message":"Rate limit is exceeded."}}"#),
            2 => json(200, "<html>not json</html>"),
            _ => json(200, machines_page(&["a".into()])),
        }
    })
    .await;
    let c = client(&canned, |_| {});
    assert_eq!(
        c.read_one_machine()
            .await
            .expect("in the end")
            .map(|m| m.id)
            .as_deref(),
        Some("a")
    );
    let m = c.metrics();
    assert_eq!((m.throttled, m.retries, m.api_calls), (1, 2, 4), "{m:?}");

    // 404: retried once (Microsoft has sent intermittent 404s), then a typed error.
    let missing = client(&canned, |cfg| {
        cfg.overrides.api_url = Some(format!("{}/missing", canned.url))
    });
    let err = missing.read_one_machine().await.expect_err("404");
    assert_eq!(
        canned
            .seen()
            .iter()
            .filter(|s| s.target.starts_with("/missing/api/machines"))
            .count(),
        2
    );
    match err {
        ApiError::Refused(api) => {
            assert_eq!(api.status, 404);
            assert_eq!(api.code.as_deref(), Some("ResourceNotFound"));
            assert_eq!(api.target.as_deref(), Some("t-1"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_fails_at_once_with_the_wait() {
    let canned = serve(|_, _| Answer {
        status: 429,
        headers: vec![("Retry-After", "3600".to_owned())],
        body: r#"{"error":{"code":"TooManyRequests","message":"Rate limit is exceeded. Try again in 3600 seconds."}}"#.to_owned(),
    })
    .await;
    let c = client(&canned, |_| {});
    let err = c
        .read_one_machine()
        .await
        .expect_err("throttled for an hour");
    match &err {
        ApiError::Refused(api) => {
            assert_eq!(api.status, 429);
            assert_eq!(api.retry_after, Some(Duration::from_secs(3600)));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("3600 s"), "{err}");
    assert!(err.is_transient());
    assert_eq!(canned.api_hits(), 1);
}

/// Azure guards its APIs by RBAC, not by Defender for Endpoint's application roles: a 403
/// `Forbidden` from Resource Manager stays Microsoft's refusal, never advice to grant a
/// WindowsDefenderATP permission (which the shared request path once gave every product).
#[tokio::test]
async fn an_arm_403_forbidden_is_not_explained_as_a_defender_for_endpoint_role() {
    let canned = serve(|_, _| {
        json(
            403,
            r#"{"error":{"code":"Forbidden","message":"The client has no access to this scope.","target":"t-9"}}"#,
        )
    })
    .await;
    let arm = ArmClient::new(settings(&canned)).expect("client");
    let err = arm
        .subscriptions()
        .collect_all()
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, ApiError::Refused(api) if api.status == 403 && api.code.as_deref() == Some("Forbidden")),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("The client has no access to this scope.")
            && !text.contains("WindowsDefenderATP")
            && !text.contains("Vulnerability.Read.All"),
        "{text}"
    );
}
