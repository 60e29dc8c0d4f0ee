//! The scheduler syncs due integrations once, and not again until their schedule says so.

use std::sync::Arc;
use std::time::Duration;

use crate::helpers::*;

#[tokio::test]
async fn due_integrations_sync_once_per_schedule() {
    let app = spawn_app().await;
    let mut admin = app.signed_in(ADMIN).await;
    let due = app
        .add_integration(&mut admin, "due", &app.sim_config.client_secret)
        .await;
    // A disabled integration is never scheduled.
    let mut form = app.integration_form("off", &app.sim_config.client_secret);
    form.retain(|(k, _)| *k != "enabled");
    let page = admin.post("/integrations", &form).await;
    assert_eq!(page.status, reqwest::StatusCode::SEE_OTHER);

    let engine = Arc::new(rampart_sync::Engine::new(
        app.store.clone(),
        rampart_sync::vault::Vault::from_key(&[7u8; 32]),
        rampart_sync::EngineOptions::default(),
    ));
    let scheduler =
        rampart_web::Scheduler::new(rampart_web::AppState::new(engine), Duration::from_secs(60));
    // Never synced: due now.
    assert_eq!(scheduler.once().await.unwrap(), 1);
    assert_eq!(app.wait_for_run(due).await, "succeeded");
    // Synced a moment ago, every 360 minutes: not due.
    assert_eq!(scheduler.once().await.unwrap(), 0);
    let runs = app.store.list_runs(due, 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    for i in app.store.list_integrations().await.unwrap() {
        if i.name.as_str() == "off" {
            assert!(app.store.list_runs(i.id, 10).await.unwrap().is_empty());
        }
    }
}

#[test]
fn next_run_follows_the_last_start() {
    use chrono::{Duration, TimeZone, Utc};
    let created = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let integration = rampart_model::Integration {
        id: 1,
        name: "x".parse().unwrap(),
        product: rampart_model::Product::Endpoint,
        cloud: rampart_model::Cloud::Commercial,
        tenant_id: "00000000-0000-0000-0000-000000000001".parse().unwrap(),
        client_id: "00000000-0000-0000-0000-000000000002".parse().unwrap(),
        secret_hint: rampart_model::SecretHint::of("abcdefghijklmnop", None),
        login_url: None,
        api_url: None,
        schedule_minutes: 90,
        enabled: true,
        created_at: created,
        updated_at: created,
    };
    assert_eq!(rampart_web::next_run(&integration, None), created);
    let last = created + Duration::hours(5);
    assert_eq!(
        rampart_web::next_run(&integration, Some(last)),
        last + Duration::minutes(90)
    );
}
