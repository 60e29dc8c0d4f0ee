//! Roles, CSRF, headers, secrets and hostile data.

use rampart_model::IntegrationId;
use reqwest::StatusCode;

use crate::helpers::*;

const READ_PAGES: &[&str] = &[
    "/",
    "/assets",
    "/assets.csv",
    "/vulnerabilities",
    "/vulnerabilities.csv",
    "/findings",
    "/findings.csv",
    "/posture",
    "/posture?status=any&severity=high",
    "/assets?sort=-open_findings",
    "/assets?sort=name&platform=Windows11",
    "/integrations",
];
/// Viewers get 403: the audit log names accounts and addresses (issue 12, 7).
const ADMIN_PAGES: &[&str] = &["/integrations/new", "/tokens", "/accounts", "/audit"];

#[tokio::test]
async fn route_role_matrix() {
    let app = spawn_app().await;
    let mut admin = app.signed_in(ADMIN).await;
    let id = app
        .add_integration(&mut admin, "matrix", "wrong-secret-value-1234")
        .await;
    let detail = format!("/integrations/{id}");

    let mut anonymous = app.client();
    let mut viewer = app.signed_in(VIEWER).await;
    for path in READ_PAGES
        .iter()
        .chain(ADMIN_PAGES)
        .copied()
        .chain([detail.as_str()])
    {
        let a = anonymous.get(path).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "anonymous GET {path}");
        assert_eq!(a.location(), Some("/login"), "anonymous GET {path}");
        assert_eq!(
            admin.get(path).await.status,
            StatusCode::OK,
            "admin GET {path}"
        );
        let expected = if ADMIN_PAGES.contains(&path) {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::OK
        };
        assert_eq!(viewer.get(path).await.status, expected, "viewer GET {path}");
    }
    // The viewer sees the integration but no button that changes it.
    let page = viewer.get(&detail).await;
    assert!(!page.body.contains("id=\"sync-now\""));
    assert!(!page.body.contains("id=\"integration-form\""));

    let form = app.integration_form("renamed", "");
    let changes: Vec<(String, Vec<(&str, String)>)> = vec![
        (
            "/integrations".into(),
            app.integration_form("other", "secret-value-abcdef"),
        ),
        (detail.clone(), form),
        (format!("{detail}/test"), vec![]),
        (format!("{detail}/sync"), vec![]),
        (format!("{detail}/delete"), vec![]),
        (
            "/tokens".into(),
            vec![("name", "x".into()), ("scope", "admin".into())],
        ),
    ];
    // An anonymous visitor with a session (it opened the login page) is sent to sign in.
    anonymous.get("/login").await;
    for (path, fields) in &changes {
        let v = viewer.post(path, fields).await;
        assert_eq!(v.status, StatusCode::FORBIDDEN, "viewer POST {path}");
        let a = anonymous.post(path, fields).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "anonymous POST {path}");
        assert_eq!(a.location(), Some("/login"));
    }
    // Nothing changed.
    let all = app
        .store
        .list_integrations(&rampart_store::Visibility::All)
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].name.as_str(), "matrix");
    assert!(app.store.list_api_tokens().await.unwrap().is_empty());
}

#[tokio::test]
async fn posts_without_token_or_from_another_site_are_refused() {
    let app = spawn_app().await;
    let mut admin = app.signed_in(ADMIN).await;
    let fields: Vec<(String, String)> = app
        .integration_form("csrf", "secret-value-abcdef")
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let own = app.url.clone();
    // No token.
    let p = admin.post_raw("/integrations", &fields, Some(&own)).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.body.contains("cross-site request forgery"));
    // A wrong token.
    let mut wrong = fields.clone();
    wrong.push(("csrf_token".into(), "forged".into()));
    let p = admin.post_raw("/integrations", &wrong, Some(&own)).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    // The right token from a foreign origin.
    let mut right = fields.clone();
    right.push(("csrf_token".into(), admin.csrf.clone().unwrap()));
    let p = admin
        .post_raw("/integrations", &right, Some("https://evil.example"))
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    // Logout is a state change too.
    let p = admin
        .post_raw(
            "/logout",
            &right[right.len() - 1..],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(
        app.store
            .list_integrations(&rampart_store::Visibility::All)
            .await
            .unwrap()
            .is_empty()
    );
    // And the right token from here works.
    let p = admin.post_raw("/integrations", &right, Some(&own)).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
}

#[tokio::test]
async fn security_headers_everywhere() {
    let app = spawn_app().await;
    let mut admin = app.signed_in(ADMIN).await;
    for path in [
        "/",
        "/login",
        "/static/htmx.min.js",
        "/api/v1/assets",
        "/nope",
    ] {
        let p = admin.get(path).await;
        let csp = p.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(p.headers["x-content-type-options"], "nosniff", "{path}");
    }
    // No page carries an inline script.
    for path in READ_PAGES
        .iter()
        .chain(ADMIN_PAGES)
        .filter(|p| !p.ends_with(".csv"))
    {
        let body = admin.get(path).await.body;
        assert!(!body.contains("<script>"), "{path}");
        for (i, _) in body.match_indices("<script") {
            assert!(body[i..].starts_with("<script src=\"/static/"), "{path}");
        }
    }
}

#[tokio::test]
async fn hostile_asset_names_render_inert() {
    let app = spawn_app().await;
    let evil = "<script>alert(1)</script>";
    let id = app.seed_asset(evil).await;
    let mut viewer = app.signed_in(VIEWER).await;
    for path in [
        "/assets".to_owned(),
        format!("/assets/{id}"),
        format!("/assets?q={}", "%3Cscript%3E"),
        format!("/assets?tag={}", "%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
    ] {
        let p = viewer.get(&path).await;
        assert_eq!(p.status, StatusCode::OK, "{path}");
        assert!(!p.body.contains(evil), "{path} renders the name as markup");
        assert!(
            p.body.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
                || p.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}: {}",
            p.body
        );
    }
    // The search box reflects what was typed, escaped.
    let p = viewer.get("/assets?q=%22%3E%3Cimg%20src%3Dx%3E").await;
    assert!(!p.body.contains("\"><img src=x>"));
}

#[tokio::test]
async fn the_client_secret_never_leaves_the_server() {
    let app = spawn_app().await;
    let secret = app.sim_config.client_secret.clone();
    let mut admin = app.signed_in(ADMIN).await;
    let id = app.add_integration(&mut admin, "secretive", &secret).await;
    // A wrong one too, to see the failure paths.
    let wrong = "Wr0ng~secret~value~that~is~long~enough";
    let bad = app.add_integration(&mut admin, "wrong", wrong).await;
    admin
        .post(&format!("/integrations/{bad}/test"), &[] as &[(&str, &str)])
        .await;
    admin
        .post(&format!("/integrations/{id}/test"), &[] as &[(&str, &str)])
        .await;
    admin
        .post(&format!("/integrations/{id}/sync"), &[] as &[(&str, &str)])
        .await;
    app.wait_for_run(id).await;
    let token = app.api_token("admin").await;
    let http = reqwest::Client::new();
    let mut seen = Vec::new();
    for path in [
        "/".to_owned(),
        "/integrations".into(),
        format!("/integrations/{id}"),
        format!("/integrations/{bad}"),
        "/audit".into(),
        "/assets".into(),
        "/assets.csv".into(),
    ] {
        seen.push(admin.get(&path).await.body);
    }
    for path in [
        "/api/v1/integrations".to_owned(),
        format!("/api/v1/integrations/{id}"),
        format!("/api/v1/integrations/{id}/runs"),
    ] {
        let res = http
            .get(format!("{}{path}", app.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        seen.push(body(res).await);
    }
    let test = http
        .post(format!("{}/api/v1/integrations/{bad}/test", app.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    seen.push(body(test).await);
    seen.push(captured_logs());
    for text in &seen {
        assert!(!text.contains(&secret), "the secret leaked: {text}");
        assert!(!text.contains(wrong), "the wrong secret leaked: {text}");
    }
    // Only the hint shows.
    let hint = format!("••••{}", &secret[secret.len() - 4..]);
    assert!(seen[2].contains(&hint));
    // The stored audit log has no secret either.
    for e in app.store.list_audit(100).await.unwrap() {
        assert!(!format!("{e:?}").contains(&secret));
    }
}

/// Issue 12, 3: an admin session could point an integration at any server, which then received
/// the stored client secret at the next sync.
#[tokio::test]
async fn moving_an_integration_in_the_portal_needs_its_secret_again() {
    let app = spawn_app().await;
    let secret = app.sim_config.client_secret.clone();
    let mut admin = app.signed_in(ADMIN).await;
    let id = app.add_integration(&mut admin, "pinned", &secret).await;
    let path = format!("/integrations/{id}");
    let with = |field: &'static str, value: &str, secret: &str| {
        let mut form = app.integration_form("pinned", secret);
        for f in form.iter_mut().filter(|(k, _)| *k == field) {
            f.1 = value.to_owned();
        }
        form
    };
    for (field, value) in [
        ("api_url", "https://collector.example.net"),
        ("login_url", "https://login.example.net"),
        ("login_url", ""),
        ("cloud", "gcc-high"),
    ] {
        let p = admin.post(&path, &with(field, value, "")).await;
        assert_eq!(
            p.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}={value}"
        );
        assert!(
            p.body.contains("enter the client secret again"),
            "{}",
            p.body
        );
    }
    let stored = app
        .store
        .get_integration(&rampart_store::Visibility::All, IntegrationId(id))
        .await
        .unwrap();
    assert_eq!(stored.api_url.as_deref(), Some(app.sim.url.as_str()));
    assert_eq!(stored.login_url.as_deref(), Some(app.sim.url.as_str()));
    // Other changes need no secret.
    let p = admin.post(&path, &with("schedule_minutes", "90", "")).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    // Plain http to another machine is refused even with the secret.
    let p = admin
        .post(
            &path,
            &with("api_url", "http://collector.example.net", &secret),
        )
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("plain http"), "{}", p.body);
    // With the secret entered again the move is made, and the audit log shows both hosts.
    let p = admin
        .post(
            &path,
            &with("api_url", "https://collector.example.net", &secret),
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let audit = admin.get("/audit").await.body;
    assert!(
        audit.contains(&format!(
            "API URL {} → https://collector.example.net",
            app.sim.url
        )),
        "{audit}"
    );
    assert!(!audit.contains(&secret));
}
