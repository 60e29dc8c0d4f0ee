//! The portal in real headless Chromium (Debian's `chromium` and `chromium-driver`; install them
//! with `scripts/install-browser`): sign in, add an integration with a wrong secret, test, fix,
//! test, sync, browse, filter, paginate, sign out. Assertions are on what the page shows.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::*;

/// A chromedriver process on a free port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn find(bin: &[&str]) -> Option<String> {
    bin.iter()
        .flat_map(|b| {
            ["/usr/bin/", "/usr/lib/chromium/", "/usr/local/bin/"]
                .iter()
                .map(move |d| format!("{d}{b}"))
        })
        .find(|p| std::path::Path::new(p).exists())
}

async fn browser() -> (Driver, Client) {
    let driver_bin = find(&["chromedriver"]).expect(
        "chromedriver is not installed: run scripts/install-browser (apt-get install chromium chromium-driver)",
    );
    let chromium =
        find(&["chromium"]).expect("chromium is not installed: run scripts/install-browser");
    let port = free_port();
    let child = Command::new(driver_bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver {
        child,
        port,
        _profile: profile,
    };
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ],
        }),
    );
    let url = format!("http://127.0.0.1:{}", driver.port);
    let mut last = None;
    for _ in 0..50 {
        match ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => return (driver, c),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("cannot start a browser session: {last:?}");
}

/// The text of the first element matching `css`, retried while the page is changing (a
/// navigation or an htmx swap can replace the element between finding and reading it).
async fn text_of(c: &Client, css: &str) -> String {
    let mut last = None;
    for _ in 0..80 {
        match c.find(Locator::Css(css)).await {
            Ok(e) => match e.text().await {
                Ok(t) => return t,
                Err(err) => last = Some(err.to_string()),
            },
            Err(err) => last = Some(err.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{css} did not appear: {last:?}");
}

async fn type_into(c: &Client, css: &str, text: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Waits until the page's heading is `expected` (after a click, the old page may still show).
async fn wait_h1(c: &Client, expected: &str) {
    let mut seen = String::new();
    for _ in 0..80 {
        seen = text_of(c, "h1").await;
        if seen == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the page heading stayed {seen:?}, expected {expected:?}");
}

/// Waits until the page's text contains `needle`.
async fn wait_text(c: &Client, needle: &str, seconds: u64) {
    for _ in 0..seconds * 4 {
        if let Ok(body) = c.find(Locator::Css("body")).await
            && body.text().await.unwrap_or_default().contains(needle)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let body = c.source().await.unwrap_or_default();
    panic!("the page never showed {needle:?}: {body}");
}

/// The texts of column `n` of the asset table.
async fn column(c: &Client, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for r in c.find_all(Locator::Css("#assets tbody tr")).await.unwrap() {
        let cells = r.find_all(Locator::Css("td")).await.unwrap();
        out.push(cells[n].text().await.unwrap());
    }
    out
}

#[tokio::test]
async fn portal_in_a_real_browser() {
    let app = spawn_app_with(60).await;
    let (_driver, c) = browser().await;
    let base = &app.url;

    // Anonymous visitors land on the sign-in page.
    c.goto(&format!("{base}/")).await.unwrap();
    wait_h1(&c, "Sign in").await;
    type_into(&c, "#name", ADMIN).await;
    type_into(&c, "#password", PASSWORD).await;
    click(&c, "#sign-in").await;
    wait_h1(&c, "Dashboard").await;

    // Add an integration with a wrong secret.
    c.goto(&format!("{base}/integrations/new")).await.unwrap();
    type_into(&c, "#f-name", "contoso").await;
    type_into(&c, "#f-tenant", &app.sim_config.tenant_id).await;
    type_into(&c, "#f-client", &app.sim_config.client_id).await;
    type_into(&c, "#f-secret", "Wr0ng~secret~value~that~is~long~enough").await;
    click(&c, "details summary").await;
    type_into(&c, "#f-login-url", &app.sim.url).await;
    type_into(&c, "#f-api-url", &app.sim.url).await;
    click(&c, "#save").await;
    assert_eq!(text_of(&c, "#notice").await, "Saved.");
    assert!(text_of(&c, "#secret-hint").await.ends_with("ough"));

    click(&c, "#test-connection").await;
    let report = text_of(&c, "#test-report").await;
    assert!(report.contains("failed"), "{report}");
    assert!(report.contains("✗ get a token"), "{report}");
    assert!(report.contains("The client secret is wrong."), "{report}");
    assert!(report.contains("Fix: In Microsoft Entra"), "{report}");

    // Correct the secret and test again.
    type_into(&c, "#f-secret", &app.sim_config.client_secret).await;
    click(&c, "#save").await;
    assert_eq!(text_of(&c, "#notice").await, "Saved.");
    click(&c, "#test-connection").await;
    let report = text_of(&c, "#test-report").await;
    assert!(report.contains("all steps passed"), "{report}");
    assert_eq!(report.matches('✓').count(), 5, "{report}");
    assert!(!report.contains('✗'));

    // Sync now: the run table refreshes itself (htmx) until the run is done.
    click(&c, "#sync-now").await;
    assert!(text_of(&c, "#notice").await.starts_with("Sync started"));
    wait_text(&c, "succeeded", 90).await;

    // Assets: rows, filter, paginate.
    c.goto(&format!("{base}/assets?limit=20")).await.unwrap();
    let rows = c.find_all(Locator::Css("#assets tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 20);
    let first_page = text_of(&c, "#assets tbody").await;
    click(&c, "#next-page").await;
    wait_text(&c, "First page", 10).await;
    assert!(c.current_url().await.unwrap().as_str().contains("after="));
    let second_page = text_of(&c, "#assets tbody").await;
    assert_ne!(first_page, second_page);
    c.goto(&format!("{base}/assets")).await.unwrap();
    type_into(&c, "#platform", "Windows11").await;
    click(&c, "#apply").await;
    for _ in 0..40 {
        if c.current_url()
            .await
            .unwrap()
            .as_str()
            .contains("platform=Windows11")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait_text(&c, "Download CSV", 10).await;
    let rows = c.find_all(Locator::Css("#assets tbody tr")).await.unwrap();
    assert!(!rows.is_empty());
    for r in rows {
        let cells = r.find_all(Locator::Css("td")).await.unwrap();
        assert_eq!(cells[1].text().await.unwrap(), "Windows11");
    }
    // Sort by a column heading, then reverse it; the order holds across pages.
    c.goto(&format!("{base}/assets?limit=20")).await.unwrap();
    click(&c, "#sort-name").await;
    for _ in 0..40 {
        if c.current_url()
            .await
            .unwrap()
            .as_str()
            .contains("sort=name")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait_text(&c, "Name ▲", 10).await;
    let names = column(&c, 0).await;
    assert_eq!(names.len(), 20);
    let mut sorted = names.clone();
    sorted.sort_by_key(|n| n.to_lowercase());
    assert_eq!(names, sorted);
    click(&c, "#next-page").await;
    wait_text(&c, "First page", 10).await;
    let next = column(&c, 0).await;
    assert!(
        next[0].to_lowercase() >= names[19].to_lowercase(),
        "{next:?} after {names:?}"
    );
    click(&c, "#sort-name").await;
    wait_text(&c, "Name ▼", 10).await;
    let reversed = column(&c, 0).await;
    assert!(reversed[0].to_lowercase() >= reversed[19].to_lowercase());
    click(&c, "#sort-open_findings").await;
    wait_text(&c, "Open findings ▼", 10).await;
    let open = column(&c, 6).await;
    assert!(open[0].contains("open"), "{open:?}");

    // Vulnerabilities appear, and a CVE page lists affected assets.
    c.goto(&format!("{base}/vulnerabilities?exposed=true"))
        .await
        .unwrap();
    click(&c, "#vulnerabilities tbody tr td a").await;
    wait_text(&c, "Affected assets", 10).await;
    assert!(text_of(&c, "#cve").await.starts_with("CVE-"));
    assert!(text_of(&c, "#exposed-count").await.parse::<u64>().unwrap() > 0);

    // The dashboard counts what was synced.
    c.goto(&format!("{base}/")).await.unwrap();
    let active: u64 = text_of(&c, "#assets-active").await.parse().unwrap();
    assert!(active >= 60);

    // Sign out.
    click(&c, "#logout").await;
    wait_h1(&c, "Sign in").await;
    c.goto(&format!("{base}/assets")).await.unwrap();
    wait_h1(&c, "Sign in").await;
    c.close().await.unwrap();
}

/// Issue 14's Must-hold: sign in, open "Fix first", accept the top fix with a reason and an
/// expiry, see its findings leave the overdue count, and see the grant in the audit log.
#[tokio::test]
async fn accepting_a_fix_in_a_real_browser() {
    let (app, _) = crate::fix_first::synced("fix-first-browser").await;
    let read = app.api_token("read").await;
    let top: serde_json::Value = app
        .api_get_with(&read, "/remediations?limit=1")
        .await
        .json()
        .await
        .unwrap();
    let fix = top["items"][0]["fix"].as_str().unwrap().to_owned();
    let seeded = crate::fix_first::seed_overdue(&app, &fix).await;
    assert!(seeded > 0);
    let (_driver, c) = browser().await;
    let base = &app.url;

    c.goto(&format!("{base}/login")).await.unwrap();
    wait_h1(&c, "Sign in").await;
    type_into(&c, "#name", ADMIN).await;
    type_into(&c, "#password", PASSWORD).await;
    click(&c, "#sign-in").await;
    wait_h1(&c, "Dashboard").await;

    // "Fix first" is in the navigation; the top fix is the one made overdue.
    c.find(Locator::LinkText("Fix first"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_h1(&c, "Fix first").await;
    let before: u64 = text_of(&c, "#fix-first-overdue").await.parse().unwrap();
    assert!(before >= seeded);
    let first = text_of(&c, "#fixes tbody tr .fix-name").await;
    assert!(first.starts_with(&fix), "{first}");

    // Accept it with a reason and an expiry.
    click(&c, "#fixes tbody tr a.accept").await;
    wait_h1(&c, "Accept risk").await;
    assert_eq!(
        c.find(Locator::Css("#exception-target"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some(fix.as_str())
    );
    type_into(
        &c,
        "#exception-reason",
        "mitigated by the perimeter IPS until the March window",
    )
    .await;
    type_into(&c, "#exception-owner", "infra-oncall").await;
    let expires = (chrono::Utc::now() + chrono::TimeDelta::days(21))
        .format("%Y-%m-%d")
        .to_string();
    c.execute(
        "document.getElementById('exception-expires').value = arguments[0];",
        vec![json!(expires)],
    )
    .await
    .unwrap();
    click(&c, "#exception-submit").await;
    wait_h1(&c, "Exceptions").await;
    let listed = text_of(&c, "#exceptions tbody").await;
    assert!(
        listed.contains(&fix) && listed.contains("in_force"),
        "{listed}"
    );

    // Its findings leave the overdue count and the plan.
    click(&c, "nav a[href='/fix-first']").await;
    wait_h1(&c, "Fix first").await;
    let after: u64 = text_of(&c, "#fix-first-overdue").await.parse().unwrap();
    assert_eq!(after, before - seeded);
    let top_now = text_of(&c, "#fixes tbody tr .fix-name").await;
    assert!(!top_now.starts_with(&fix), "{top_now}");

    // And the grant is in the audit log, with its reason.
    c.goto(&format!("{base}/audit")).await.unwrap();
    wait_h1(&c, "Audit log").await;
    let audit = text_of(&c, "#audit tbody").await;
    assert!(audit.contains("exception.create"), "{audit}");
    assert!(audit.contains("mitigated by the perimeter IPS"), "{audit}");
    c.close().await.unwrap();
}
