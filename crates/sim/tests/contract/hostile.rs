//! Hostile input: every request is answered quickly with a 4xx and Microsoft's error shape.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use reqwest::StatusCode;

use crate::helpers::{App, read_body, small_config};

async fn status_of(app: &App, url: &str, token: &str) -> StatusCode {
    let started = Instant::now();
    let resp = app
        .client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("an answer");
    let status = resp.status();
    let _ = read_body(resp).await;
    assert!(started.elapsed() < Duration::from_secs(5), "{url} was slow");
    status
}

#[tokio::test]
async fn hostile_query_strings_are_4xx_quickly() {
    let app = App::small().await;
    let token = app.token().await;
    let base = format!("{}/api/machines", app.url());
    let long_filter = format!(
        "$filter={}",
        "computerDnsName%20eq%20'x'%20or%20".repeat(400)
    );
    let urls = vec![
        format!("{base}?{long_filter}"),
        format!("{base}?$filter={}", "(".repeat(10_000)),
        format!("{base}?$filter=computerDnsName%20eq%20'%00'%00"),
        format!("{base}?$filter=%E2%98%83%20eq%201"),
        format!("{base}?$filter=%FF%FE"),
        format!("{base}?$filter=%ZZ"),
        format!("{base}?$top=1&$top=2"),
        format!("{base}?$top={}", "9".repeat(400)),
        format!("{base}?{}", "a=b&".repeat(10_000)),
        format!("{base}?x={}", "y".repeat(40_000)),
        format!(
            "{}/api/machines/SoftwareVulnerabilitiesByMachine?pageSize=-1",
            app.url()
        ),
        format!(
            "{}/api/machines/SoftwareVulnerabilitiesByMachine?$skiptoken={}",
            app.url(),
            "%2F".repeat(2000)
        ),
        format!(
            "{}/api/machines/SoftwareVulnerabilityChangesByMachine?sinceTime={}",
            app.url(),
            "9".repeat(1000)
        ),
        format!("{}/api/../../etc/passwd", app.url()),
        format!("{}/api/machines/%2e%2e%2f%2e%2e", app.url()),
        format!("{}/api/nothing-here", app.url()),
    ];
    for url in urls {
        let status = status_of(&app, &url, &token).await;
        assert!(
            status.is_client_error(),
            "{status} for {}",
            &url[..url.len().min(120)]
        );
    }
    // Unicode that parses is fine.
    let ok = status_of(
        &app,
        &format!("{base}?$filter=computerDnsName%20eq%20'%C3%BC%E2%98%83'"),
        &token,
    )
    .await;
    assert_eq!(ok, StatusCode::OK);
}

#[tokio::test]
async fn hostile_token_requests_are_4xx() {
    let app = App::small().await;
    let tenant = app.tenant();
    let post = |path: String, body: Vec<u8>, ctype: &'static str| {
        let client = app.client.clone();
        async move {
            let resp = client
                .post(path)
                .header("content-type", ctype)
                .body(body)
                .send()
                .await
                .unwrap();
            resp.status()
        }
    };
    let url = format!("{}/{tenant}/oauth2/v2.0/token", app.url());
    assert_eq!(
        post(
            url.clone(),
            vec![0xFF, 0x00, 0xFE],
            "application/x-www-form-urlencoded"
        )
        .await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(
            url.clone(),
            b"{\"grant_type\":\"client_credentials\"}".to_vec(),
            "application/json"
        )
        .await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post(
            url.clone(),
            vec![b'a'; 200_000],
            "application/x-www-form-urlencoded"
        )
        .await,
        StatusCode::BAD_REQUEST
    );
    for tenant in [
        "%00",
        "%E2%98%83",
        "..",
        &"a".repeat(3000),
        "00000000-0000-0000-0000-00000000000g",
    ] {
        let status = post(
            format!("{}/{tenant}/oauth2/v2.0/token", app.url()),
            b"grant_type=client_credentials".to_vec(),
            "application/x-www-form-urlencoded",
        )
        .await;
        assert!(status.is_client_error(), "{tenant}: {status}");
    }
    // A huge bearer token is refused, not parsed.
    let huge = "a".repeat(60_000);
    let resp = app
        .client
        .get(format!("{}/api/machines", app.url()))
        .bearer_auth(huge)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error());
}

struct Shared {
    rt: tokio::runtime::Runtime,
    app: App,
    token: String,
    ids: Vec<String>,
}

fn shared() -> &'static Shared {
    static SHARED: std::sync::OnceLock<Shared> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (app, token) = rt.block_on(async {
            let app = App::start(small_config()).await;
            let token = app.token().await;
            (app, token)
        });
        let ids = app.running.sim.truth().machines().map(|m| m.id).collect();
        Shared {
            rt,
            app,
            token,
            ids,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Paging with any `$top` visits every device exactly once (the way robust clients page).
    #[test]
    fn paging_with_any_top_visits_every_device_once(top in 1u64..=300) {
        let s = shared();
        let ids = s.rt.block_on(async {
            let mut ids = Vec::new();
            let mut skip = 0u64;
            loop {
                let page = s.app.get(&format!("/api/machines?$top={top}&$skip={skip}"), &s.token).await.json();
                prop_assert!(page.get("@odata.nextLink").is_none());
                let items = page["value"].as_array().unwrap();
                ids.extend(items.iter().map(|m| m["id"].as_str().unwrap().to_owned()));
                if (items.len() as u64) < top {
                    break;
                }
                skip += top;
            }
            Ok(ids)
        })?;
        prop_assert_eq!(&ids, &s.ids);
    }
}
