//! Issue 14, SLA settings, criticality rules and SLA reports over HTTP: the settings API and
//! pages are for admins (global ones for what applies to every workspace), refuse bad values in
//! words, are audited and queue a re-assessment that a worker runs; the report and the burn-down
//! render for anyone signed in.

use rampart_model::IntegrationId;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use rampart_store::{JobKind, JobState, Visibility};

use crate::fix_first::synced;
use crate::helpers::*;

/// PUTs `body` to the API's `path` with `token`.
async fn put(app: &TestApp, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    app.api_json(token, Method::PUT, path, Some(body)).await
}

/// The API refused the request as invalid (400), the problem's detail saying `why`.
fn assert_invalid(s: StatusCode, got: &Value, why: &str) {
    assert_eq!(s, StatusCode::BAD_REQUEST, "{got}");
    assert!(got["detail"].as_str().unwrap().contains(why), "{got}");
}

/// The portal refused the form (400), the page saying `why`.
fn assert_form_refused(page: &Page, why: &str) {
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains(why), "{}", page.body);
}

/// The SLA form's fields: the days of `immediate`, `out_of_cycle`, `scheduled` and `defer`.
fn sla_form(days: [&str; 4]) -> [(&'static str, &str); 4] {
    let [immediate, out_of_cycle, scheduled, defer] = days;
    [
        ("immediate", immediate),
        ("out_of_cycle", out_of_cycle),
        ("scheduled", scheduled),
        ("defer", defer),
    ]
}

/// Waits until the integration's findings are assessed with the settings that apply now and no
/// job of it is queued or running. A worker of the app does it: in a `reassess` job, or in a
/// sync that was running or asked for when the settings changed (the two merge: one active job
/// per integration).
async fn reassessed(app: &TestApp, id: i64) {
    for _ in 0..600 {
        let jobs = app
            .store
            .list_jobs(&Visibility::All, Some(IntegrationId(id)), false, 20)
            .await
            .unwrap();
        if let Some(failed) = jobs
            .iter()
            .find(|j| j.kind == JobKind::Reassess && j.state == JobState::Failed)
        {
            panic!("re-assessment failed: {failed:?}");
        }
        let current = rampart_sync::priority::assessed_with_current_policy(
            app.store.as_ref(),
            IntegrationId(id),
        )
        .await
        .unwrap();
        if current && !jobs.iter().any(|j| j.is_active()) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the findings were not re-assessed with the new settings within a minute");
}

#[tokio::test]
async fn the_settings_api_is_for_admins_validates_in_words_and_reassesses() {
    let (app, id) = synced("sla-api").await;
    let read = app.api_token("read").await;
    let admin = app.api_token("admin").await;

    let (s, got) = app
        .api_json(&read, Method::GET, "/settings/sla", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(
        got["days"],
        json!({"immediate": 2, "out_of_cycle": 7, "scheduled": 30, "defer": 90})
    );
    let good = json!({"immediate": 1, "out_of_cycle": 5, "scheduled": 20, "defer": 60});
    let (s, _) = put(&app, &read, "/settings/sla", good.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, got) = put(
        &app,
        &admin,
        "/settings/sla",
        json!({"immediate": 10, "out_of_cycle": 7, "scheduled": 30, "defer": 90}),
    )
    .await;
    assert_invalid(s, &got, "must not get more time");
    let (s, got) = put(&app, &admin, "/settings/sla", good.clone()).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got["days"], good);
    assert_eq!(got["updated_by"], "api:tests");
    reassessed(&app, id).await;
    let audit = app.store.list_audit(20).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "sla.update"), "{audit:?}");

    // The integration's own SLA.
    let path = format!("/integrations/{id}/sla");
    let (s, got) = app.api_json(&read, Method::GET, &path, None).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(
        (got["own"].clone(), got["effective"].clone()),
        (Value::Null, good)
    );
    let own = json!({"immediate": 1, "out_of_cycle": 2, "scheduled": 3, "defer": 4});
    let (s, got) = put(&app, &admin, &path, json!({"days": own})).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(
        (got["own"].clone(), got["effective"].clone()),
        (own.clone(), own)
    );
    let (s, got) = put(
        &app,
        &admin,
        &path,
        json!({"days": {"immediate": 0, "out_of_cycle": 2, "scheduled": 3, "defer": 4}}),
    )
    .await;
    assert_invalid(s, &got, "from 1 to 3650");
    let (s, got) = put(&app, &admin, &path, json!({"days": null})).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got["own"], Value::Null);
    let (s, _) = app
        .api_json(&admin, Method::GET, "/integrations/999999/sla", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Criticality rules.
    let rules =
        json!([{"name": "vip", "match": "tag", "value": "VIP", "criticality": "very-high"}]);
    let (s, _) = put(&app, &read, "/settings/criticality-rules", rules.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, got) = put(
        &app,
        &admin,
        "/settings/criticality-rules",
        json!([{"name": "x", "match": "colour", "value": "red", "criticality": "high"}]),
    )
    .await;
    assert_invalid(s, &got, "tag, device-group");
    let (s, got) = put(&app, &admin, "/settings/criticality-rules", rules).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    let (s, got) = app
        .api_json(&read, Method::GET, "/settings/criticality-rules", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got[0]["name"], "vip");
    assert_eq!(got[0]["match"], "tag");
    assert_eq!(got[0]["criticality"], "very-high");

    // The report and the burn-down of the sync.
    let (s, report) = app.api_json(&read, Method::GET, "/sla/report", None).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    let (_, open) = app
        .api_json(&read, Method::GET, "/findings?status=open&limit=1000", None)
        .await;
    assert_eq!(
        report["total"]["open"].as_u64(),
        Some(open["items"].as_array().unwrap().len() as u64)
    );
    assert_eq!(report["period_days"], 30);
    assert_eq!(report["by_integration"][0]["name"], "sla-api");
    let (s, got) = app
        .api_json(&read, Method::GET, "/sla/report?days=7", None)
        .await;
    assert_invalid(s, &got, "30, 90 or 365");
    let (s, points) = app
        .api_json(
            &read,
            Method::GET,
            &format!("/sla/burndown?integration={id}&days=90"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{points}");
    assert_eq!(points.as_array().unwrap().len(), 1, "{points}");
}

#[tokio::test]
async fn the_settings_pages_are_for_admins_and_the_report_renders() {
    let (app, id) = synced("sla-portal").await;
    let mut viewer = app.signed_in(VIEWER).await;
    let mut admin = app.signed_in(ADMIN).await;

    assert_eq!(
        viewer.get("/settings/prioritisation").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        viewer
            .post(
                "/settings/prioritisation/sla",
                &sla_form(["1", "2", "3", "4"])
            )
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        viewer.get(&format!("/integrations/{id}/sla")).await.status,
        StatusCode::FORBIDDEN
    );

    let page = admin.get("/settings/prioritisation").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("SLA days") && page.body.contains("No rule yet"));
    let page = admin
        .post(
            "/settings/prioritisation/sla",
            &sla_form(["two", "7", "30", "90"]),
        )
        .await;
    assert_form_refused(&page, "whole number of days");
    let page = admin
        .post(
            "/settings/prioritisation/sla",
            &sla_form(["9", "7", "30", "90"]),
        )
        .await;
    assert_form_refused(&page, "must not get more time");
    let page = admin
        .post(
            "/settings/prioritisation/sla",
            &sla_form(["1", "7", "30", "90"]),
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(app.store.sla_settings().await.unwrap().days.immediate, 1);

    // Rules: add two, move the second up, remove the first.
    for (name, value) in [("pci", "pci"), ("vip", "VIP")] {
        let page = admin
            .post(
                "/settings/prioritisation/rules",
                &[
                    ("action", "add"),
                    ("name", name),
                    ("matcher", "tag"),
                    ("value", value),
                    ("criticality", "high"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    }
    let page = admin
        .post(
            "/settings/prioritisation/rules",
            &[
                ("action", "add"),
                ("name", "pci"),
                ("matcher", "tag"),
                ("value", "x"),
                ("criticality", "high"),
            ],
        )
        .await;
    assert_form_refused(&page, "two criticality rules are named");
    admin
        .post(
            "/settings/prioritisation/rules",
            &[("action", "up"), ("index", "1")],
        )
        .await;
    let names = |rules: Vec<rampart_store::StoredRule>| -> Vec<String> {
        rules.into_iter().map(|r| r.rule.name).collect()
    };
    assert_eq!(
        names(app.store.criticality_rules().await.unwrap()),
        ["vip", "pci"]
    );
    admin
        .post(
            "/settings/prioritisation/rules",
            &[("action", "remove"), ("index", "0")],
        )
        .await;
    assert_eq!(names(app.store.criticality_rules().await.unwrap()), ["pci"]);
    let page = admin.get("/settings/prioritisation").await;
    assert!(page.body.contains("tag:pci"), "{}", page.body);

    // The integration's own SLA.
    let page = admin.get(&format!("/integrations/{id}/sla")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("uses the installation's SLA"),
        "{}",
        page.body
    );
    let page = admin
        .post(
            &format!("/integrations/{id}/sla"),
            &sla_form(["5", "3", "30", "90"]),
        )
        .await;
    assert_form_refused(&page, "must not get more time");
    let page = admin
        .post(
            &format!("/integrations/{id}/sla"),
            &sla_form(["1", "3", "30", "90"]),
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert!(
        app.store
            .integration_sla(&Visibility::All, IntegrationId(id))
            .await
            .unwrap()
            .is_some()
    );

    // The report, for anyone signed in.
    let page = viewer.get("/sla").await;
    assert_eq!(page.status, StatusCode::OK);
    for id in [
        "sla-total",
        "sla-by-integration",
        "sla-by-severity",
        "sla-by-decision",
    ] {
        assert!(page.body.contains(&format!("id=\"{id}\"")), "{id}");
    }
    assert!(page.body.contains("Two syncs in the period are needed"));
    assert_eq!(
        viewer.get("/sla?days=12").await.status,
        StatusCode::BAD_REQUEST
    );
    // A second sync that changes findings draws the burn-down (once the re-assessments are done:
    // the integration's one active job). A sync that changes nothing within the hour adds no
    // point (crates/sync/src/priority.rs, assess_after_run).
    reassessed(&app, id).await;
    app.sim.sim.tick(3);
    admin
        .post(&format!("/integrations/{id}/sync"), &[] as &[(&str, &str)])
        .await;
    let mut runs = 0;
    for _ in 0..600 {
        let rows = app
            .store
            .sla_snapshots(
                &Visibility::All,
                Some(IntegrationId(id)),
                chrono::DateTime::UNIX_EPOCH,
            )
            .await
            .unwrap();
        runs = rows
            .iter()
            .map(|r| r.run_id)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        if runs >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(runs, 2);
    let page = viewer.get(&format!("/sla?integration={id}&days=90")).await;
    assert!(page.body.contains("id=\"burndown\""), "{}", page.body);
    assert!(viewer.get("/").await.body.contains("href=\"/sla\""));
}
