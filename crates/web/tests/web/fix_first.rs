//! Issue 14, the remediation plan and exceptions over HTTP: `/api/v1/remediations` ranks fixes
//! and pages through them; `/api/v1/exceptions` grants (admins only, checked and audited),
//! lists and revokes; accepted findings leave the overdue count and the plan but stay listed and
//! exported as `accepted`; the portal's Fix first, exception form and list do the same.

use chrono::{TimeDelta, Utc};
use futures::TryStreamExt;
use rampart_model::IntegrationId;
use reqwest::StatusCode;
use serde_json::{Value, json};

use rampart_store::{
    AssessmentWrite, Explanation, FindingFilter, StoredAssessment, Visibility, fix_key,
};

use crate::helpers::*;

/// An app with one integration synced from the emulator; returns it and the integration's id.
pub async fn synced(name: &str) -> (TestApp, i64) {
    let app = spawn_app().await;
    let mut admin = app.signed_in(ADMIN).await;
    let id = app
        .add_integration(&mut admin, name, &app.sim_config.client_secret)
        .await;
    admin
        .post(&format!("/integrations/{id}/sync"), &[] as &[(&str, &str)])
        .await;
    assert_eq!(app.wait_for_run(id).await, "succeeded");
    (app, id)
}

/// Makes every open finding of `fix` overdue (due an hour ago, clock started 10 days ago),
/// through the store as a sync's assessment would write it; returns how many.
pub async fn seed_overdue(app: &TestApp, fix: &str) -> u64 {
    let now = Utc::now();
    let open: Vec<_> = app
        .store
        .stream_findings(
            Visibility::All,
            FindingFilter {
                status: Some(rampart_model::FindingStatus::Open),
                ..Default::default()
            },
        )
        .try_collect()
        .await
        .unwrap();
    let writes: Vec<AssessmentWrite> = open
        .iter()
        .filter(|f| {
            fix_key(
                f.product,
                &f.finding.key.software_vendor,
                &f.finding.key.software_name,
                f.finding.recommended_update.as_deref(),
            ) == fix
        })
        .map(|f| AssessmentWrite {
            finding_id: f.id,
            assessment: StoredAssessment {
                decision: f.decision.unwrap(),
                priority: f.priority.unwrap() as u8,
                due_at: now - TimeDelta::hours(1),
                clock_start: now - TimeDelta::days(10),
                explanation_id: 7,
            },
        })
        .collect();
    let explanation = Explanation {
        id: 7,
        contributions: "[]".into(),
    };
    app.store
        .write_assessments(&[explanation], &writes, now)
        .await
        .unwrap()
}

async fn api(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    app.api_json(token, method, path, body).await
}

async fn get(app: &TestApp, token: &str, path: &str) -> (StatusCode, Value) {
    api(app, token, reqwest::Method::GET, path, None).await
}

fn in_days(days: i64) -> String {
    (Utc::now() + TimeDelta::days(days)).to_rfc3339()
}

/// The dashboard's "Fix first" table, as HTML.
async fn dashboard_top_list(portal: &mut Client) -> String {
    let dashboard = portal.get("/").await;
    dashboard
        .body
        .split("<table id=\"top-fixes\">")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_plan_ranks_fixes_and_an_accepted_fix_leaves_it_and_the_overdue_count() {
    let (app, id) = synced("plan").await;
    let read = app.api_token("read").await;
    let admin = app.api_token("admin").await;

    // The plan, page by page: every fix once, the priority each removes never increasing.
    let mut plan: Vec<Value> = Vec::new();
    let mut after = String::new();
    loop {
        let (s, page) = get(&app, &read, &format!("/remediations?limit=7{after}")).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        plan.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => after = format!("&after={c}"),
            None => break,
        }
    }
    assert!(plan.len() > 7, "several pages: {}", plan.len());
    for pair in plan.windows(2) {
        assert!(pair[0]["priority_removed"].as_f64() >= pair[1]["priority_removed"].as_f64());
    }
    let fixes: std::collections::HashSet<&str> =
        plan.iter().map(|r| r["fix"].as_str().unwrap()).collect();
    assert_eq!(fixes.len(), plan.len());
    let (_, open) = get(&app, &read, "/findings?status=open&limit=1000").await;
    let open = open["items"].as_array().unwrap().clone();
    let total: u64 = plan.iter().map(|r| r["findings"].as_u64().unwrap()).sum();
    assert_eq!(
        total as usize,
        open.len(),
        "each open finding under one fix"
    );
    let top = plan[0].clone();
    let fix = top["fix"].as_str().unwrap().to_owned();
    let of_fix = open.iter().filter(|f| f["fix"] == fix.as_str()).count() as u64;
    assert_eq!(top["findings"].as_u64(), Some(of_fix));
    assert!(!top["cves"].as_array().unwrap().is_empty());

    // Make the top fix's findings overdue; the plan sorted by overdue findings starts with it.
    let seeded = seed_overdue(&app, &fix).await;
    assert_eq!(seeded, of_fix);
    // From here the plan is read from its roll-up, counted as a run's end counts it.
    app.store
        .refresh_fix_plan(IntegrationId(id), Utc::now())
        .await
        .unwrap();
    let (_, by_overdue) = get(&app, &read, "/remediations?sort=-overdue&limit=1").await;
    assert_eq!(by_overdue["items"][0]["fix"], fix.as_str());
    assert_eq!(by_overdue["items"][0]["overdue"].as_u64(), Some(seeded));
    let overdue_before = app
        .store
        .urgent_counts(&Visibility::All, Utc::now())
        .await
        .unwrap()
        .overdue;
    assert!(overdue_before >= seeded);

    let mut portal = app.signed_in(ADMIN).await;
    let top_list = dashboard_top_list(&mut portal).await;
    assert!(top_list.contains(&format!("<td>{fix}</td>")), "{top_list}");

    // Granting takes an admin token, and a reason, an owner and an expiry within a year.
    let body = json!({
        "scope": "fix", "target": fix, "integration_id": id,
        "reason": "patched by the vendor's hotfix", "owner": "windows-team",
        "expires_at": in_days(30),
    });
    let (s, _) = api(
        &app,
        &read,
        reqwest::Method::POST,
        "/exceptions",
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    for (field, value) in [
        ("reason", json!(" ")),
        ("owner", json!("")),
        ("expires_at", json!(in_days(-1))),
        ("expires_at", json!(in_days(400))),
        ("expires_at", json!("soon")),
        ("scope", json!("asset")),
    ] {
        let mut bad = body.clone();
        bad[field] = value;
        let (s, p) = api(
            &app,
            &admin,
            reqwest::Method::POST,
            "/exceptions",
            Some(bad),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{field}: {p}");
    }
    let (s, granted) = api(
        &app,
        &admin,
        reqwest::Method::POST,
        "/exceptions",
        Some(body),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{granted}");
    assert_eq!(granted["state"], "in_force");
    assert_eq!(granted["created_by"], "api:tests");

    // The fix leaves the plan, the dashboard's head of it and the overdue count; its findings
    // stay listed, accepted.
    let top_list = dashboard_top_list(&mut portal).await;
    assert!(!top_list.is_empty());
    assert!(!top_list.contains(&format!("<td>{fix}</td>")), "{top_list}");
    let (_, plan_after) = get(&app, &read, "/remediations?limit=1000").await;
    assert!(
        plan_after["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["fix"] != fix.as_str())
    );
    let overdue_after = app
        .store
        .urgent_counts(&Visibility::All, Utc::now())
        .await
        .unwrap()
        .overdue;
    assert_eq!(overdue_after, overdue_before - seeded);
    let (_, accepted) = get(&app, &read, "/findings?sla_status=accepted&limit=1000").await;
    let accepted = accepted["items"].as_array().unwrap();
    assert_eq!(accepted.len() as u64, of_fix);
    assert!(
        accepted
            .iter()
            .all(|f| f["fix"] == fix.as_str() && f["status"] == "open")
    );
    let (_, still) = get(&app, &read, "/findings?status=open&limit=1000").await;
    assert_eq!(still["items"].as_array().unwrap().len(), open.len());

    // Listed, then revoked once; the fix is back in the plan.
    let (s, listed) = get(
        &app,
        &read,
        &format!("/exceptions?integration={id}&in_force=true"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["reason"], "patched by the vendor's hotfix");
    let eid = granted["id"].as_i64().unwrap();
    let path = format!("/exceptions/{eid}");
    let (s, _) = api(&app, &read, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, revoked) = api(&app, &admin, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(s, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["state"], "revoked");
    let (s, _) = api(&app, &admin, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = api(
        &app,
        &admin,
        reqwest::Method::DELETE,
        "/exceptions/9999",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, plan_back) = get(&app, &read, "/remediations?limit=1").await;
    assert_eq!(plan_back["items"][0]["fix"], fix.as_str());
    assert_eq!(
        app.store
            .urgent_counts(&Visibility::All, Utc::now())
            .await
            .unwrap()
            .overdue,
        overdue_before
    );

    // Audited: who, what, why, until when.
    let audit = app.store.list_audit(20).await.unwrap();
    let create = audit
        .iter()
        .find(|e| e.action == "exception.create")
        .unwrap();
    assert_eq!(create.actor, "api:tests");
    let details = create.details.as_deref().unwrap();
    assert!(details.contains("patched by the vendor's hotfix") && details.contains("windows-team"));
    assert!(create.target.as_deref().unwrap().contains(&fix));
    assert!(audit.iter().any(|e| e.action == "exception.revoke"));

    for bad in [
        "/remediations?sort=name",
        "/remediations?after=x",
        "/exceptions?in_force=maybe",
    ] {
        let (s, p) = get(&app, &read, bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {p}");
    }
}

#[tokio::test]
async fn the_portal_accepts_a_cve_and_exports_its_findings_as_accepted() {
    let (app, id) = synced("portal-exceptions").await;
    let mut admin = app.signed_in(ADMIN).await;
    let mut viewer = app.signed_in(VIEWER).await;
    let page = admin.get("/fix-first").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"fixes\"") && page.body.contains("Accept risk"));
    let page = viewer.get("/fix-first").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        !page.body.contains("Accept risk"),
        "viewers do not accept risk"
    );

    // A CVE with open findings, from the plan's top fix.
    let (_, top) = get(&app, &app.api_token("read").await, "/remediations?limit=1").await;
    let cve = top["items"][0]["cves"][0].as_str().unwrap().to_owned();
    let page = admin.get(&format!("/vulnerabilities/{cve}")).await;
    assert!(page.body.contains("id=\"accept-cve\""));
    let form = admin
        .get(&format!("/exceptions/new?scope=cve&target={cve}"))
        .await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains(&cve));
    assert_eq!(
        viewer.get("/exceptions/new").await.status,
        StatusCode::FORBIDDEN
    );

    let expires = (Utc::now() + TimeDelta::days(14))
        .format("%Y-%m-%d")
        .to_string();
    let fields = [
        ("scope", "cve"),
        ("target", cve.as_str()),
        ("integration", "all"),
        ("reason", "isolated lab network"),
        ("owner", "lab-admins"),
        ("expires", expires.as_str()),
    ];
    let refused = viewer.post("/exceptions", &fields).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let mut no_reason = fields;
    no_reason[3] = ("reason", "");
    let again = admin.post("/exceptions", &no_reason).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(again.body.contains("give a reason"), "{}", again.body);
    let done = admin.post("/exceptions", &fields).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let list = viewer.get("/exceptions").await;
    assert!(list.body.contains(&cve) && list.body.contains("isolated lab network"));
    assert!(list.body.contains("in_force") && !list.body.contains("Revoke"));

    // Exported with their status; still in the findings list.
    let csv = admin
        .get(&format!("/findings.csv?integration={id}&cve={cve}"))
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    let rows: Vec<&str> = csv.body.lines().skip(1).filter(|l| !l.is_empty()).collect();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|l| l.contains("accepted")), "{}", csv.body);

    // Revoked from the list.
    let admin_list = admin.get("/exceptions").await;
    assert!(admin_list.body.contains("Revoke"));
    let eid = app
        .store
        .list_exceptions(&Visibility::All, &Default::default(), 10)
        .await
        .unwrap()[0]
        .id;
    let revoked = admin
        .post(&format!("/exceptions/{eid}/revoke"), &[] as &[(&str, &str)])
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    let list = admin.get("/exceptions").await;
    assert!(list.body.contains("revoked"), "{}", list.body);
}
