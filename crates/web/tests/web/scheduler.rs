//! The scheduler and the job table: due integrations sync once, and not again until their
//! schedule says so; "Sync now" makes one job; jobs survive a restart; a dead worker's job is
//! taken over; the Integrations page shows the jobs.

use rampart_model::IntegrationId;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rampart_store::{JOB_LEASE, JobKind, JobState};
use reqwest::StatusCode;

use crate::helpers::*;

/// The integration's newest jobs (ten at most; only those queued or running when `active_only`),
/// as a global account sees them.
async fn jobs_of(
    store: &Arc<dyn rampart_store::Store>,
    id: i64,
    active_only: bool,
) -> Vec<rampart_store::Job> {
    store
        .list_jobs(
            &rampart_store::Visibility::All,
            Some(IntegrationId(id)),
            active_only,
            10,
        )
        .await
        .unwrap()
}

/// Waits until the integration's newest job is finished; returns it.
async fn wait_for_job(store: &Arc<dyn rampart_store::Store>, id: i64) -> rampart_store::Job {
    for _ in 0..600 {
        let jobs = jobs_of(store, id, false).await;
        if let Some(j) = jobs.iter().find(|j| !j.is_active()) {
            return j.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the job did not finish within a minute");
}

/// A scheduler of another process over the test app's database (the app's own runs none).
fn worker_over(store: &Arc<dyn rampart_store::Store>) -> rampart_web::Scheduler {
    rampart_web::Scheduler::new(
        rampart_web::AppState::new(engine(store)),
        Duration::from_secs(60),
    )
}

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

    let scheduler = worker_over(&app.store);
    // Never synced: due now.
    assert_eq!(scheduler.once().await.unwrap(), 1);
    assert_eq!(app.wait_for_run(due).await, "succeeded");
    let done = wait_for_job(&app.store, due).await;
    assert_eq!(done.state, JobState::Done);
    // Synced a moment ago, every 360 minutes: not due; the next job waits in the table.
    assert_eq!(scheduler.once().await.unwrap(), 0);
    let runs = app
        .store
        .list_runs(&rampart_store::Visibility::All, IntegrationId(due), 10)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    let next = jobs_of(&app.store, due, true).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].kind, JobKind::Scheduled);
    // Due 360 minutes after the sync started (the run starts just after its job is claimed).
    assert!(runs[0].started_at >= done.claimed_at.unwrap());
    assert_eq!(
        next[0].run_at,
        runs[0].started_at + chrono::Duration::minutes(360)
    );
    for i in app
        .store
        .list_integrations(&rampart_store::Visibility::All)
        .await
        .unwrap()
    {
        if i.name.as_str() == "off" {
            assert!(
                app.store
                    .list_runs(&rampart_store::Visibility::All, i.id, 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
    }
}

#[test]
fn next_run_follows_the_last_start() {
    use chrono::{Duration, TimeZone, Utc};
    let created = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let integration = rampart_model::Integration {
        workspace_id: rampart_model::WorkspaceId::DEFAULT,
        id: IntegrationId(1),
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

#[tokio::test]
async fn sync_now_twice_makes_one_job_and_one_run() {
    let app = spawn_app().await;
    let mut admin = app.signed_in(ADMIN).await;
    let id = app
        .add_integration(&mut admin, "twice", &app.sim_config.client_secret)
        .await;
    let first = admin
        .post(&format!("/integrations/{id}/sync"), &[] as &[(&str, &str)])
        .await;
    assert_eq!(
        first.location(),
        Some(&*format!("/integrations/{id}?notice=sync-started"))
    );
    let second = admin
        .post(&format!("/integrations/{id}/sync"), &[] as &[(&str, &str)])
        .await;
    assert_eq!(second.status, StatusCode::SEE_OTHER);
    assert_eq!(app.wait_for_run(id).await, "succeeded");
    let job = wait_for_job(&app.store, id).await;
    assert_eq!((job.state, job.kind), (JobState::Done, JobKind::Requested));
    // The second click found the job running (or, had the first already ended, made a second
    // job): never two runs at once, and never more runs than jobs.
    let runs = app
        .store
        .list_runs(&rampart_store::Visibility::All, IntegrationId(id), 10)
        .await
        .unwrap();
    let jobs = jobs_of(&app.store, id, false).await;
    assert!(
        runs.len() <= jobs.len() && !runs.is_empty(),
        "{runs:?} {jobs:?}"
    );
    if second.location() == Some(&*format!("/integrations/{id}?notice=sync-running")) {
        assert_eq!(runs.len(), 1);
    }
    // The integration's page and the list show the jobs.
    let page = admin.get(&format!("/integrations/{id}")).await;
    assert!(page.body.contains("id=\"jobs\""), "{}", page.body);
    assert!(page.body.contains("class=\"job-done\""), "{}", page.body);
    assert!(page.body.contains("requested"));
}

#[tokio::test]
async fn a_queued_job_survives_a_restart() {
    let mut app = spawn_app().await;
    let mut admin = app.signed_in(ADMIN).await;
    let id = app
        .add_integration(&mut admin, "restart", &app.sim_config.client_secret)
        .await;
    // "Sync now" on a server that stopped before running it: the job is only a row.
    let now = Utc::now();
    app.store
        .enqueue_job(IntegrationId(id), JobKind::Requested, now, now)
        .await
        .unwrap();
    app.stop_first_server();
    let server = app.another_server(Duration::from_millis(100)).await;
    let job = wait_for_job(&server.store, id).await;
    assert_eq!(job.state, JobState::Done, "{job:?}");
    assert_eq!(job.attempts, 1);
    assert_eq!(app.wait_for_run(id).await, "succeeded");
    // The new server's scheduler queues the next one, and its Integrations page says when.
    let mut next = Vec::new();
    for _ in 0..100 {
        next = jobs_of(&server.store, id, true).await;
        if !next.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(next.len(), 1, "the schedule's next job is queued");
    assert_eq!(next[0].kind, JobKind::Scheduled);
    let mut c = Client::of(&server.url);
    c.login(ADMIN, PASSWORD).await;
    let list = c.get("/integrations").await;
    assert_eq!(list.status, StatusCode::OK);
    let due = next[0].run_at.format("%Y-%m-%d %H:%M UTC").to_string();
    assert!(list.body.contains(&due), "{due} not in {}", list.body);
}

#[tokio::test]
async fn a_dead_workers_job_is_taken_over() {
    let app = spawn_app().await;
    let mut admin = app.signed_in(ADMIN).await;
    let id = app
        .add_integration(&mut admin, "orphan", &app.sim_config.client_secret)
        .await;
    // A worker claimed the job ten minutes ago and has not been heard of since.
    let then = Utc::now() - chrono::Duration::minutes(10);
    app.store
        .enqueue_job(IntegrationId(id), JobKind::Requested, then, then)
        .await
        .unwrap();
    let orphan = app
        .store
        .claim_job("gone-host:0:1:0", then, JOB_LEASE, None)
        .await
        .unwrap()
        .unwrap();
    let server = app.another_server(Duration::from_millis(100)).await;
    let job = wait_for_job(&server.store, id).await;
    assert_eq!(job.id, orphan.id);
    assert_eq!(job.state, JobState::Done, "{job:?}");
    assert_eq!(job.attempts, 2);
    assert_ne!(job.claimed_by.as_deref(), Some("gone-host:0:1:0"));
    assert_eq!(app.wait_for_run(id).await, "succeeded");
}

#[tokio::test]
async fn a_web_only_server_queues_sync_now_for_a_worker_to_run() {
    let app = spawn_app_configured(20, |c| c.role = rampart_web::ServerRole::Web).await;
    let mut admin = app.signed_in(ADMIN).await;
    let id = app
        .add_integration(&mut admin, "queued", &app.sim_config.client_secret)
        .await;
    let token = app.api_token("admin").await;
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/integrations/{id}/sync", app.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let said: serde_json::Value = res.json().await.unwrap();
    assert!(
        said["message"]
            .as_str()
            .unwrap_or_default()
            .contains("queued"),
        "{said}"
    );
    // The web process ran nothing: the job waits, due now, and no run exists.
    let jobs = jobs_of(&app.store, id, true).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].state, JobState::Queued);
    assert_eq!(jobs[0].kind, JobKind::Requested);
    assert!(
        app.store
            .list_runs(&rampart_store::Visibility::All, IntegrationId(id), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The portal says so too.
    let page = admin
        .post(&format!("/integrations/{id}/sync"), &[("", "")])
        .await;
    assert_eq!(
        page.location(),
        Some(&*format!("/integrations/{id}?notice=sync-queued"))
    );

    // A worker over the same database runs it.
    let worker = worker_over(&app.store);
    assert_eq!(worker.once().await.unwrap(), 1);
    assert_eq!(app.wait_for_run(id).await, "succeeded");
}

#[tokio::test]
async fn a_job_whose_integration_has_a_run_open_elsewhere_is_put_off_not_failed() {
    let app = spawn_app().await;
    let mut admin = app.signed_in(ADMIN).await;
    let id = app
        .add_integration(&mut admin, "busy", &app.sim_config.client_secret)
        .await;
    // A run opened elsewhere (a `rampart sync` in a terminal) and still alive.
    app.store
        .start_run(IntegrationId(id), "full", Utc::now())
        .await
        .unwrap();
    let scheduler = worker_over(&app.store);
    // "Sync now" meanwhile.
    let claimed_at = Utc::now();
    app.store
        .enqueue_job(
            IntegrationId(id),
            JobKind::Requested,
            claimed_at,
            claimed_at,
        )
        .await
        .unwrap();
    assert_eq!(scheduler.once().await.unwrap(), 1);
    let mut put_off = None;
    for _ in 0..100 {
        let jobs = jobs_of(&app.store, id, false).await;
        assert!(
            jobs.iter().all(|j| j.state != JobState::Failed),
            "the job failed instead of waiting: {jobs:?}"
        );
        if let Some(j) = jobs
            .iter()
            .find(|j| j.state == JobState::Queued && j.attempts == 1)
        {
            put_off = Some(j.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let job = put_off.expect("the job went back to the queue");
    assert!(
        job.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("already running"),
        "{job:?}"
    );
    assert!(
        job.run_at >= claimed_at + chrono::Duration::seconds(25),
        "{job:?}"
    );
    // Not due yet: the next pass leaves it.
    assert_eq!(scheduler.once().await.unwrap(), 0);
}
