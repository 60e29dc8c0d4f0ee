//! CISA's KEV catalogue in the server: the scheduler refreshes it once a day from the emulator's
//! copy of the feed (and `serve` does so on its own), and the vulnerabilities API, the CSV
//! download and the portal's CVE pages say whether a CVE is listed, with CISA's due date and
//! ransomware use, on both backends.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rampart_model::CveId;
use rampart_sim::KEV_PATH;
use rampart_store::KEV_SOURCE;
use rampart_sync::intel::{KevClient, refresh_kev};
use rampart_sync::vault::Vault;
use rampart_sync::{Engine, EngineOptions};
use rampart_web::{AppState, Application, Scheduler, WebConfig};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

fn kev_url(app: &TestApp) -> String {
    format!("{}{KEV_PATH}", app.sim.url)
}

fn engine(app: &TestApp) -> Arc<Engine> {
    Arc::new(Engine::new(
        app.store.clone(),
        Vault::from_key(&[7u8; 32]),
        EngineOptions::default(),
    ))
}

#[tokio::test]
async fn the_scheduler_refreshes_the_kev_catalogue_once_a_day() {
    let app = spawn_app().await;
    let scheduler = Scheduler::new(AppState::new(engine(&app)), Duration::from_secs(60))
        .with_kev(KevClient::new(&kev_url(&app)).unwrap());
    let listed = app.sim.sim.kev_listed();
    let hours = chrono::Duration::hours;
    let now = Utc::now();

    // Never read: due at once.
    let first = scheduler.refresh_kev(now).await.unwrap().expect("due");
    assert!(first.replaced);
    assert_eq!(first.source.count, listed.len() as u64);
    // Read today: not again until it is a day old.
    assert!(
        scheduler
            .refresh_kev(now + hours(23))
            .await
            .unwrap()
            .is_none()
    );
    let unchanged = scheduler
        .refresh_kev(now + hours(25))
        .await
        .unwrap()
        .expect("a day old");
    assert!(!unchanged.replaced, "the feed answered 304");
    assert_eq!(
        unchanged.source.fetched_at.map(|t| t.timestamp()),
        Some((now + hours(25)).timestamp())
    );

    // Days later CISA lists more: the next daily refresh stores them.
    app.sim.sim.tick(16);
    let grown = app.sim.sim.kev_listed();
    assert!(grown.len() > listed.len());
    assert!(
        scheduler
            .refresh_kev(now + hours(48))
            .await
            .unwrap()
            .is_none()
    );
    let more = scheduler
        .refresh_kev(now + hours(50))
        .await
        .unwrap()
        .expect("a day old");
    assert!(more.replaced);
    assert_eq!(more.source.count, grown.len() as u64);

    // The feed down: the error is kept, the catalogue too, and the next try waits an hour.
    let failed_at = now + hours(75);
    app.sim.sim.faults().fail_next("known_exploited", 503, 1);
    let e = scheduler.refresh_kev(failed_at).await.unwrap_err();
    assert!(e.to_string().contains("HTTP 503"), "{e}");
    let source = app.store.intel_source(KEV_SOURCE).await.unwrap().unwrap();
    assert_eq!(source.count, grown.len() as u64);
    assert!(source.last_error.unwrap().contains("HTTP 503"));
    let resting = failed_at + chrono::Duration::minutes(30);
    assert!(scheduler.refresh_kev(resting).await.unwrap().is_none());
    let retried = scheduler
        .refresh_kev(failed_at + chrono::Duration::minutes(61))
        .await
        .unwrap()
        .expect("retried after an hour");
    assert!(!retried.replaced);
    assert_eq!(retried.source.last_error, None);

    // No feed configured: never fetched.
    let off = Scheduler::new(AppState::new(engine(&app)), Duration::from_secs(60));
    assert!(off.refresh_kev(now + hours(999)).await.unwrap().is_none());
}

/// A running server with its scheduler on reads the catalogue without being asked.
#[tokio::test]
async fn a_serving_process_loads_the_kev_catalogue_on_its_own() {
    let app = spawn_app().await;
    let mut config = WebConfig::new("127.0.0.1:0".parse().unwrap());
    config.scheduler_tick = Duration::from_millis(50);
    config.kev_url = Some(kev_url(&app));
    let server = Application::build(config, engine(&app)).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    let mut loaded = None;
    for _ in 0..600 {
        if let Some(s) = app.store.intel_source(KEV_SOURCE).await.unwrap() {
            loaded = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    let source = loaded.expect("the server did not load the KEV catalogue within a minute");
    assert_eq!(source.count, app.sim.sim.kev_listed().len() as u64);
    assert_eq!(source.url.as_deref(), Some(kev_url(&app).as_str()));

    // A feed URL that is not https is refused when the server is built, in words.
    let mut config = WebConfig::new("127.0.0.1:0".parse().unwrap());
    config.kev_url = Some("http://www.cisa.gov/kev.json".into());
    let e = Application::build(config, engine(&app))
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("only to a loopback address"), "{e}");
}

/// Every vulnerability through the API, page by page.
async fn all_vulnerabilities(app: &TestApp, token: &str) -> Vec<Value> {
    let http = reqwest::Client::new();
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{}/api/v1/vulnerabilities?limit=500", app.url);
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let res = http.get(url).bearer_auth(token).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let page: Value = serde_json::from_str(&body(res).await).unwrap();
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return items,
        }
    }
}

async fn kev_is_shown_with_each_vulnerability(app: TestApp) {
    let mut admin = app.signed_in(ADMIN).await;
    let id = app
        .add_integration(&mut admin, "kev", &app.sim_config.client_secret)
        .await;
    admin
        .post(&format!("/integrations/{id}/sync"), &[] as &[(&str, &str)])
        .await;
    assert_eq!(app.wait_for_run(id).await, "succeeded");
    let token = app.api_token("read").await;
    let listed = app.sim.sim.kev_listed();
    let is_listed = |v: &Value| listed.iter().any(|c| v["cve_id"] == c.as_str());

    // Before the catalogue is loaded: nothing is listed, and the CVE page says why.
    let before = all_vulnerabilities(&app, &token).await;
    assert!(before.iter().all(|v| v["kev"].is_null()));
    let on_feed = before
        .iter()
        .find(|v| is_listed(v))
        .expect("a synced CVE on the emulator's feed");
    let cve = on_feed["cve_id"].as_str().unwrap().to_owned();
    let page = admin.get(&format!("/vulnerabilities/{cve}")).await;
    assert!(
        page.body.contains("the KEV catalogue has not been loaded"),
        "{}",
        page.body
    );

    let client = KevClient::new(&kev_url(&app)).unwrap();
    refresh_kev(app.store.as_ref(), &client, Utc::now())
        .await
        .unwrap();

    // The API: `kev` on every listed CVE, as stored, and null on the others.
    let after = all_vulnerabilities(&app, &token).await;
    assert_eq!(after.len(), before.len());
    let listed_ids: Vec<CveId> = after
        .iter()
        .filter(|v| is_listed(v))
        .map(|v| v["cve_id"].as_str().unwrap().parse().unwrap())
        .collect();
    let stored = app.store.kev_entries_for(&listed_ids).await.unwrap();
    assert_eq!(stored.len(), listed_ids.len());
    for v in &after {
        if !is_listed(v) {
            assert!(v["kev"].is_null(), "{v}");
            continue;
        }
        let entry = stored
            .iter()
            .find(|e| v["cve_id"] == e.cve_id.as_str())
            .unwrap();
        let kev = &v["kev"];
        assert_eq!(kev["due_date"], entry.due_date.unwrap().to_string(), "{v}");
        assert_eq!(kev["date_added"], entry.date_added.unwrap().to_string());
        assert_eq!(
            kev["known_ransomware_campaign_use"],
            format!("{:?}", entry.known_ransomware_campaign_use)
        );
        assert_eq!(
            kev["required_action"],
            entry.required_action.as_deref().unwrap()
        );
    }
    let entry = stored.iter().find(|e| e.cve_id.as_str() == cve).unwrap();

    // The CSV download: the KEV columns at the end.
    let csv = admin.get(&format!("/vulnerabilities.csv?q={cve}")).await;
    assert_eq!(csv.status, StatusCode::OK);
    let mut lines = csv.body.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .ends_with(",kev,kev_date_added,kev_due_date,kev_known_ransomware_campaign_use")
    );
    let row = lines.find(|l| l.starts_with(&cve)).unwrap();
    assert!(
        row.ends_with(&format!(
            ",true,{},{},{:?}",
            entry.date_added.unwrap(),
            entry.due_date.unwrap(),
            entry.known_ransomware_campaign_use
        )),
        "{row}"
    );

    // The portal: the CVE page and the list.
    let page = admin.get(&format!("/vulnerabilities/{cve}")).await;
    assert!(
        page.body.contains(&format!(
            "id=\"kev\">listed since {}; ransomware campaign use: ",
            entry.date_added.unwrap()
        )) && page.body.contains(&format!(
            "federal due date {}</dd>",
            entry.due_date.unwrap()
        )),
        "{}",
        page.body
    );
    assert!(page.body.contains("id=\"kev-action\""), "{}", page.body);
    let list = admin.get(&format!("/vulnerabilities?q={cve}")).await;
    assert!(list.body.contains("<td>KEV"), "{}", list.body);
    let other = after.iter().find(|v| !is_listed(v)).unwrap();
    let page = admin
        .get(&format!(
            "/vulnerabilities/{}",
            other["cve_id"].as_str().unwrap()
        ))
        .await;
    assert!(
        page.body.contains("id=\"kev\">not listed</dd>"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn kev_is_shown_with_each_vulnerability_on_sqlite() {
    kev_is_shown_with_each_vulnerability(spawn_app().await).await;
}

#[tokio::test]
async fn kev_is_shown_with_each_vulnerability_on_postgres() {
    kev_is_shown_with_each_vulnerability(spawn_app_on_postgres().await).await;
}
