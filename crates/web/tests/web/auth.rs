//! Sign in, sign out, sessions, first-run setup, rate limiting.

use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn login_rotates_the_session_and_logout_ends_it() {
    let app = spawn_app().await;
    let mut c = app.client();
    let anon = c.get("/").await;
    assert_eq!(anon.status, StatusCode::SEE_OTHER);
    assert_eq!(anon.location(), Some("/login"));

    let form = c.get("/login").await;
    let cookie = form.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    let before = cookie.split(';').next().unwrap().to_owned();

    let ok = c
        .post("/login", &[("name", ADMIN), ("password", PASSWORD)])
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let after = ok.headers["set-cookie"].to_str().unwrap();
    assert_ne!(
        after.split(';').next().unwrap(),
        before,
        "the session id must change at login"
    );
    let dash = c.get("/").await;
    assert_eq!(dash.status, StatusCode::OK);
    assert!(dash.body.contains("Dashboard"));
    assert!(dash.body.contains(ADMIN));

    let out = c.post("/logout", &[] as &[(&str, &str)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(c.get("/").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn wrong_password_is_refused_and_then_rate_limited() {
    let app = spawn_app().await;
    let mut c = app.client();
    for _ in 0..5 {
        let p = c.login(ADMIN, "not the password").await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED);
        assert!(p.body.contains("wrong account name or password"));
    }
    // Even the right password waits now.
    let p = c.login(ADMIN, PASSWORD).await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS);
    // Another account from the same address is not locked by these.
    let p = c.login(VIEWER, PASSWORD).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    // Unknown accounts get the same answer as wrong passwords.
    let p = app.client().login("nobody", PASSWORD).await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn setup_page_only_while_no_account_exists() {
    let app = spawn_app().await;
    // Accounts exist: there is nothing to set up.
    let p = app.client().get("/setup").await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn first_run_setup_from_localhost_creates_an_admin() {
    let (_dir, store) = rampart_store::testing::sqlite_store().await;
    let engine = std::sync::Arc::new(rampart_sync::Engine::new(
        store.clone(),
        rampart_sync::vault::Vault::from_key(&[1u8; 32]),
        rampart_sync::EngineOptions::default(),
    ));
    let mut config = rampart_web::WebConfig::new("127.0.0.1:0".parse().unwrap());
    config.scheduler = false;
    let app = rampart_web::Application::build(config, engine)
        .await
        .unwrap();
    let url = app.url();
    tokio::spawn(app.run_until(std::future::pending()));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = http.get(format!("{url}/login")).send().await.unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    assert_eq!(login.headers()["location"], "/setup");
    let setup = http.get(format!("{url}/setup")).send().await.unwrap();
    let cookie = setup.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let body = crate::helpers::body(setup).await;
    let token = crate::helpers::Page {
        status: StatusCode::OK,
        headers: Default::default(),
        body,
    }
    .csrf()
    .unwrap();
    let short = http
        .post(format!("{url}/setup"))
        .header("cookie", &cookie)
        .form(&[
            ("csrf_token", token.as_str()),
            ("name", "root"),
            ("password", "short"),
            ("password_again", "short"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(short.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(crate::helpers::body(short).await.contains("too short"));
    let done = http
        .post(format!("{url}/setup"))
        .header("cookie", &cookie)
        .form(&[
            ("csrf_token", token.as_str()),
            ("name", "root"),
            ("password", PASSWORD),
            ("password_again", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let users = store.list_users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].role, rampart_store::Role::Admin);
    // Now that an account exists, setup is gone.
    let again = http.get(format!("{url}/setup")).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
}
