//! The KEV catalogue over real HTTP from the emulator's CISA feed, into both backends: fetched,
//! checked with a conditional GET, refreshed as the feed grows, imported from a file; a bad
//! download or file is refused in words and the stored catalogue kept.

use std::sync::Arc;

use chrono::Utc;
use rampart_microsoft::KevClient;
use rampart_model::CveId;
use rampart_model::priority::RansomwareUse;
use rampart_sim::{KEV_PATH, RunningSim, SimConfig};
use rampart_store::{KEV_SOURCE, Store};
use rampart_sync::intel::{import_kev_file, kev_refresh_due, refresh_kev};

fn cves(ids: &[String]) -> Vec<CveId> {
    ids.iter().map(|c| c.parse().expect("a CVE id")).collect()
}

/// An emulator serving the CISA feed, and a client of it.
async fn kev_feed() -> (RunningSim, KevClient) {
    let running = rampart_sim::spawn(SimConfig {
        devices: 10,
        ..SimConfig::default()
    })
    .await
    .expect("test step");
    let client = KevClient::new(&format!("{}{KEV_PATH}", running.url)).expect("test step");
    (running, client)
}

async fn stored_ids(store: &dyn Store, candidates: &[String]) -> Vec<String> {
    store
        .kev_entries_for(&cves(candidates))
        .await
        .expect("test step")
        .into_iter()
        .map(|e| e.cve_id.as_str().to_owned())
        .collect()
}

pub async fn kev_is_fetched_then_not_modified_then_grows_with_the_feed(store: Arc<dyn Store>) {
    let (running, client) = kev_feed().await;
    let now = Utc::now();
    assert!(kev_refresh_due(None, now));

    let listed = running.sim.kev_listed();
    assert!(listed.len() > 5, "{}", listed.len());
    let first = refresh_kev(&*store, &client, now).await.expect("test step");
    assert!(first.replaced);
    assert_eq!(first.source.count, listed.len() as u64);
    assert!(first.source.etag.is_some() && first.source.last_modified.is_some());
    assert!(first.source.catalog_version.is_some() && first.source.last_error.is_none());
    assert!(!kev_refresh_due(Some(&first.source), now));

    // Every CVE of the sim's catalogue: the store lists exactly those on the feed.
    let all: Vec<String> = running
        .sim
        .truth_at(400)
        .vulnerabilities()
        .map(|v| v.id.to_string())
        .collect();
    let mut expected = listed.clone();
    expected.sort();
    assert_eq!(stored_ids(&*store, &all).await, expected);
    let entries = store
        .kev_entries_for(&cves(&listed))
        .await
        .expect("test step");
    assert!(
        entries
            .iter()
            .all(|e| e.due_date > e.date_added && e.date_added.is_some())
    );
    assert!(
        entries
            .iter()
            .any(|e| e.known_ransomware_campaign_use == RansomwareUse::Known)
    );

    // Unchanged: a conditional GET, 304, and the catalogue kept.
    let later = now + chrono::Duration::hours(25);
    assert!(kev_refresh_due(Some(&first.source), later));
    let second = refresh_kev(&*store, &client, later)
        .await
        .expect("test step");
    assert!(!second.replaced);
    assert_eq!(second.source.count, listed.len() as u64);
    assert_eq!(
        second.source.fetched_at.map(|t| t.timestamp()),
        Some(later.timestamp())
    );

    // Days later CISA has listed more: the next refresh stores them.
    running.sim.tick(16);
    let grown = running.sim.kev_listed();
    assert!(grown.len() > listed.len());
    let third = refresh_kev(&*store, &client, later)
        .await
        .expect("test step");
    assert!(third.replaced);
    assert_eq!(third.source.count, grown.len() as u64);
    let mut expected = grown.clone();
    expected.sort();
    assert_eq!(stored_ids(&*store, &all).await, expected);
}

pub async fn a_bad_download_or_file_is_refused_and_the_catalogue_kept(store: Arc<dyn Store>) {
    let (running, client) = kev_feed().await;
    let now = Utc::now();
    let good = refresh_kev(&*store, &client, now).await.expect("test step");
    let listed = running.sim.kev_listed();

    // A download cut short.
    running.sim.tick(16);
    running.sim.faults().truncate_next("known_exploited", 1);
    let e = refresh_kev(&*store, &client, now)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("not read whole") && e.contains("download it again"),
        "{e}"
    );
    let source = store
        .intel_source(KEV_SOURCE)
        .await
        .expect("test step")
        .expect("test step");
    assert_eq!(source.count, good.source.count);
    assert_eq!(source.last_error.as_deref(), Some(e.as_str()));
    assert_eq!(stored_ids(&*store, &listed).await.len(), listed.len());

    // The feed down.
    running.sim.faults().fail_next("known_exploited", 503, 1);
    let e = refresh_kev(&*store, &client, now)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("HTTP 503") && e.contains("rampart intel import kev"),
        "{e}"
    );
    assert!(!kev_refresh_due(
        store
            .intel_source(KEV_SOURCE)
            .await
            .expect("test step")
            .as_ref(),
        now + chrono::Duration::minutes(10)
    ));

    // Files: one that is not the feed, one truncated, then a good one.
    let dir = tempfile::tempdir().expect("test step");
    let other = dir.path().join("machines.json");
    std::fs::write(&other, r#"{"value":[{"id":"x"}]}"#).expect("test step");
    let e = import_kev_file(&*store, &other, now)
        .await
        .expect_err("refused")
        .to_string();
    assert!(e.contains("is not CISA's KEV catalogue"), "{e}");
    let body = reqwest_get(&format!("{}{KEV_PATH}", running.url)).await;
    let cut = dir.path().join("cut.json");
    std::fs::write(&cut, &body[..body.len() - 300]).expect("test step");
    let e = import_kev_file(&*store, &cut, now)
        .await
        .expect_err("refused")
        .to_string();
    assert!(e.contains("ends early"), "{e}");
    let missing = import_kev_file(&*store, &dir.path().join("nope.json"), now)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        missing.contains("cannot read") && missing.contains("nope.json"),
        "{missing}"
    );
    assert_eq!(stored_ids(&*store, &listed).await.len(), listed.len());

    let file = dir.path().join("known_exploited_vulnerabilities.json");
    std::fs::write(&file, &body).expect("test step");
    let imported = import_kev_file(&*store, &file, now)
        .await
        .expect("test step");
    let grown = running.sim.kev_listed();
    assert_eq!(imported.source.count, grown.len() as u64);
    assert!(imported.source.url.expect("test step").starts_with("file:"));
    assert_eq!(stored_ids(&*store, &grown).await.len(), grown.len());
}

/// The feed's bytes, as a browser would save them.
// The emulator's feed of a 10-device tenant is a few kilobytes.
#[allow(clippy::disallowed_methods)]
async fn reqwest_get(url: &str) -> Vec<u8> {
    reqwest::get(url)
        .await
        .expect("test step")
        .error_for_status()
        .expect("test step")
        .bytes()
        .await
        .expect("test step")
        .to_vec()
}
