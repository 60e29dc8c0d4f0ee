//! Sign in, sign out, sessions, first-run setup, rate limiting, passwords and accounts.

use std::sync::Arc;

use reqwest::StatusCode;
use sha2::Digest;

use crate::helpers::*;

/// What the store keeps of a session id.
fn sha256_hex(s: &str) -> String {
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every session row, counted by deleting them all (the test is over when this is called).
async fn session_rows(app: &TestApp) -> u64 {
    let far = chrono::Utc::now() + chrono::Duration::days(3650);
    app.store.delete_expired_sessions(far).await.unwrap()
}

#[tokio::test]
async fn login_rotates_the_session_and_logout_ends_it() {
    let app = spawn_app().await;
    let mut c = app.client();
    let anon = c.get("/").await;
    assert_eq!(anon.status, StatusCode::SEE_OTHER);
    assert_eq!(anon.location(), Some("/login"));

    // The sign-in page's form token comes with a signed cookie, not a session.
    let form = c.get("/login").await;
    let cookie = form.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("rampart_form="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    assert_eq!(c.cookie("rampart_session"), None);

    let ok = c
        .post("/login", &[("name", ADMIN), ("password", PASSWORD)])
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let session = ok.headers["set-cookie"].to_str().unwrap();
    assert!(session.starts_with("rampart_session="), "{session}");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict"));
    let dash = c.get("/").await;
    assert_eq!(dash.status, StatusCode::OK);
    assert!(dash.body.contains("Dashboard"));
    assert!(dash.body.contains(ADMIN));
    // Signing in again (another login in the same browser) gives another session id.
    let first = c.cookie("rampart_session").unwrap().to_owned();
    c.post("/login", &[("name", ADMIN), ("password", PASSWORD)])
        .await;
    assert_ne!(c.cookie("rampart_session").unwrap(), first);
    // The form token changed with it.
    c.get("/").await;

    let out = c.post("/logout", &[] as &[(&str, &str)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(c.get("/").await.status, StatusCode::SEE_OTHER);
}

/// Issue 12, 6b: 20,000 anonymous requests to /login wrote 20,000 session rows, and the rows
/// held the very ids the browsers sent.
#[tokio::test]
async fn anonymous_visits_store_nothing_and_sessions_are_stored_hashed() {
    let app = spawn_app().await;
    for _ in 0..30 {
        let mut c = app.client();
        assert_eq!(c.get("/login").await.status, StatusCode::OK);
        assert_eq!(c.get("/").await.status, StatusCode::SEE_OTHER);
    }
    let mut wrong = app.client();
    assert_eq!(
        wrong.login(ADMIN, "not the password").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        session_rows(&app).await,
        0,
        "anonymous visits wrote sessions"
    );

    let c = app.signed_in(ADMIN).await;
    let id = c.cookie("rampart_session").unwrap();
    let now = chrono::Utc::now();
    assert_eq!(app.store.load_session(id, now).await.unwrap(), None);
    assert!(
        app.store
            .load_session(&sha256_hex(id), now)
            .await
            .unwrap()
            .is_some(),
        "the session is stored under the SHA-256 of its id"
    );
}

#[tokio::test]
async fn sessions_end_at_their_absolute_lifetime_however_busy() {
    // A lifetime of zero: the session is over as soon as it began, while its idle expiry (8 h)
    // is far away.
    let app = spawn_app_configured(40, |c| c.session_lifetime = std::time::Duration::ZERO).await;
    let mut c = app.client();
    assert_eq!(c.login(ADMIN, PASSWORD).await.status, StatusCode::SEE_OTHER);
    let page = c.get("/").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), Some("/login"));

    // With the default lifetime, the same sign-in lasts.
    let app = spawn_app().await;
    let mut c = app.signed_in(ADMIN).await;
    assert_eq!(c.get("/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn cookies_are_secure_behind_a_trusted_https_proxy_only() {
    let https = |c: &mut Client| c.with_header("x-forwarded-proto", "https");
    // The proxy on this machine is trusted.
    let app = spawn_app_configured(40, |c| {
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let mut c = app.client();
    https(&mut c);
    let form = c.get("/login").await;
    assert!(
        form.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
    let ok = c
        .post("/login", &[("name", ADMIN), ("password", PASSWORD)])
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert!(
        ok.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
    // The same proxy forwarding plain http: no Secure (the browser would not send it back).
    let plain = app.client().get("/login").await;
    assert!(
        !plain.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Secure")
    );

    // Nobody is trusted: a client claiming https is not believed.
    let app = spawn_app().await;
    let mut c = app.client();
    https(&mut c);
    let form = c.get("/login").await;
    assert!(
        !form.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Secure")
    );
    // Configured as always reached over TLS: Secure without any header.
    let app = spawn_app_configured(40, |c| c.secure_cookies = true).await;
    let form = app.client().get("/login").await;
    assert!(
        form.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
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
    // Failed logins are audited; the name of an account that does not exist is not recorded
    // (people type passwords into the name field).
    let failed: Vec<_> = app
        .store
        .list_audit(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "user.login_failed")
        .collect();
    assert_eq!(failed.len(), 6, "{failed:?}");
    assert_eq!(
        failed
            .iter()
            .filter(|e| e.target.as_deref() == Some(ADMIN))
            .count(),
        5
    );
    let unknown = failed.iter().find(|e| e.target.is_none()).unwrap();
    assert_eq!(unknown.actor, "anonymous");
    assert!(!format!("{unknown:?}").contains("nobody"));
    assert!(
        unknown
            .details
            .as_deref()
            .unwrap()
            .contains("from 127.0.0.1")
    );
}

/// Issue 12, 4: 200 parallel wrong logins tried 56 passwords where the limit is 5.
#[tokio::test]
async fn parallel_wrong_logins_never_try_more_than_the_limit() {
    let app = spawn_app().await;
    let mut c = app.client();
    c.get("/login").await;
    let cookie = c.cookie_header().unwrap();
    let token = c.csrf.clone().unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let attempts = (0..200).map(|_| {
        let request = http
            .post(format!("{}/login", app.url))
            .header("cookie", &cookie)
            .header("origin", &app.url)
            .form(&[
                ("csrf_token", token.as_str()),
                ("name", ADMIN),
                ("password", "not the password"),
            ]);
        async move { request.send().await.unwrap().status() }
    });
    let statuses = futures::future::join_all(attempts).await;
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(checked + refused, 200, "{statuses:?}");
    assert!(
        checked <= 5,
        "{checked} passwords were checked; the limit is 5"
    );
    let audited = app
        .store
        .list_audit(500)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "user.login_failed")
        .count();
    assert_eq!(audited, checked);
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = spawn_app().await;
    // An attacker rotating X-Forwarded-For is still one address.
    for i in 0..5 {
        let mut c = app.client();
        c.with_header("x-forwarded-for", &format!("198.51.100.{i}"));
        let p = c.login(ADMIN, "not the password").await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    }
    let mut c = app.client();
    c.with_header("x-forwarded-for", "198.51.100.99");
    assert_eq!(
        c.login(ADMIN, "not the password").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let audit = app.store.list_audit(100).await.unwrap();
    assert!(
        audit
            .iter()
            .filter(|e| e.action == "user.login_failed")
            .all(|e| e.details.as_deref().unwrap().contains("from 127.0.0.1")),
        "{audit:?}"
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_is_limited_on_its_own() {
    let app = spawn_app_configured(40, |c| {
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let client = |addr: &str| {
        let mut c = app.client();
        c.with_header("x-forwarded-for", addr);
        c
    };
    let mut attacker = client("203.0.113.1");
    for _ in 0..5 {
        let p = attacker.login(ADMIN, "not the password").await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        attacker.login(ADMIN, PASSWORD).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The account's owner, another client behind the same proxy, is not locked out.
    let mut owner = client("203.0.113.2");
    assert_eq!(
        owner.login(ADMIN, PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    let audit = app.store.list_audit(100).await.unwrap();
    let failed: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "user.login_failed")
        .collect();
    assert_eq!(failed.len(), 5);
    assert!(
        failed
            .iter()
            .all(|e| e.details.as_deref().unwrap().contains("from 203.0.113.1"))
    );
    assert!(
        audit
            .iter()
            .any(|e| e.action == "user.login" && e.details.as_deref() == Some("from 203.0.113.2"))
    );
}

#[tokio::test]
async fn setup_page_only_while_no_admin_exists() {
    let app = spawn_app().await;
    // An admin exists: there is nothing to set up.
    let p = app.client().get("/setup").await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
}

/// A server on an empty database, as `rampart serve` starts it; returns its URL, store and the
/// setup token it printed.
async fn fresh_server() -> (
    tempfile::TempDir,
    Arc<dyn rampart_store::Store>,
    String,
    String,
) {
    let (dir, store) = rampart_store::testing::sqlite_store().await;
    let engine = Arc::new(rampart_sync::Engine::new(
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
    let token = {
        use secrecy::ExposeSecret;
        app.setup_token().unwrap().expose_secret().to_owned()
    };
    tokio::spawn(app.run_until(std::future::pending()));
    (dir, store, url, token)
}

fn setup_form<'a>(token: &'a str, name: &'a str, password: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("token", token),
        ("name", name),
        ("password", password),
        ("password_again", password),
    ]
}

/// Issue 12, 2: behind a reverse proxy on the same host every visitor is local, and anyone could
/// create the first admin.
#[tokio::test]
async fn first_run_setup_needs_the_one_time_token() {
    let (_dir, store, url, token) = fresh_server().await;
    let mut c = Client::of(&url);
    let login = c.get("/login").await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    assert_eq!(login.location(), Some("/setup"));
    assert_eq!(c.get("/setup").await.status, StatusCode::OK);

    // No token, a wrong one: refused, nothing created.
    for given in ["", "setup_not-the-token", &token[..token.len() - 1]] {
        let p = c
            .post("/setup", &setup_form(given, "mallory", PASSWORD))
            .await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{given}: {}", p.body);
        assert!(p.body.contains("setup token is wrong"), "{}", p.body);
    }
    assert!(store.list_users().await.unwrap().is_empty());
    // A weak password is refused before the token is used up.
    let p = c
        .post("/setup", &setup_form(&token, "root", "password1234"))
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("most common"), "{}", p.body);
    // The right token: an admin, signed in.
    let done = c
        .post("/setup", &setup_form(&token, "root", PASSWORD))
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(c.get("/integrations").await.status, StatusCode::OK);
    let users = store.list_users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].role, rampart_store::Role::Admin);
    // Used: refused again, from anyone.
    let mut other = Client::of(&url);
    other.get("/login").await;
    let again = other
        .post("/setup", &setup_form(&token, "mallory", PASSWORD))
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(store.list_users().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_setup_token_works_once_even_in_parallel() {
    let (_dir, store, url, token) = fresh_server().await;
    let mut c = Client::of(&url);
    c.get("/setup").await;
    let cookie = c.cookie_header().unwrap();
    let csrf = c.csrf.clone().unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let names: Vec<String> = (0..6).map(|i| format!("admin{i}")).collect();
    let posts = names.iter().map(|name| {
        let mut form = setup_form(&token, name, PASSWORD);
        form.push(("csrf_token", csrf.as_str()));
        let request = http
            .post(format!("{url}/setup"))
            .header("cookie", &cookie)
            .header("origin", &url)
            .form(&form);
        async move { request.send().await.unwrap().status() }
    });
    let statuses = futures::future::join_all(posts).await;
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::SEE_OTHER)
        .count();
    assert_eq!(created, 1, "{statuses:?}");
    assert_eq!(store.list_users().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_one_time_password_must_be_changed_before_anything_else() {
    let app = spawn_app().await;
    let one_time = "kQ7vN2pLx9wR4tZm";
    rampart_web::create_user(
        app.store.as_ref(),
        "demo",
        rampart_store::Role::Admin,
        &secrecy::SecretString::from(one_time.to_owned()),
        rampart_web::PasswordChosenBy::Others,
        "test",
    )
    .await
    .unwrap();
    let mut c = app.client();
    let p = c.login("demo", one_time).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location(), Some("/account/password"));
    // Every page, and every change, leads to the change-password page until then.
    for path in ["/", "/assets", "/integrations", "/tokens", "/audit"] {
        let p = c.get(path).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(p.location(), Some("/account/password"), "{path}");
    }
    let form = c.get("/account/password").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("id=\"must-change\""));
    let p = c
        .post("/tokens", &[("name", "sneaky"), ("scope", "admin")])
        .await;
    assert_eq!(p.location(), Some("/account/password"));
    assert!(app.store.list_api_tokens().await.unwrap().is_empty());

    let change = |current: &'static str, new: &'static str| {
        vec![
            ("current", current),
            ("password", new),
            ("password_again", new),
        ]
    };
    let p = c
        .post(
            "/account/password",
            &change("wrong one", "a brand new passphrase"),
        )
        .await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    let p = c
        .post("/account/password", &change(one_time, "iloveyou2024"))
        .await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("most common"), "{}", p.body);
    let p = c
        .post(
            "/account/password",
            &change(one_time, "a brand new passphrase"),
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(c.get("/").await.status, StatusCode::OK);
    let user = app
        .store
        .user_credentials("demo")
        .await
        .unwrap()
        .unwrap()
        .user;
    assert!(!user.must_change_password);
    // The one-time password is gone.
    assert_eq!(
        app.client().login("demo", one_time).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn changing_a_password_ends_the_other_sessions() {
    let app = spawn_app().await;
    let mut here = app.signed_in(VIEWER).await;
    let mut elsewhere = app.signed_in(VIEWER).await;
    let new = "another long passphrase here";
    let p = here
        .post(
            "/account/password",
            &[
                ("current", PASSWORD),
                ("password", new),
                ("password_again", new),
            ],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(here.get("/").await.status, StatusCode::OK);
    let p = elsewhere.get("/").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location(), Some("/login"));
    // The same from the CLI's path (an operator resetting it).
    rampart_web::set_user_password(
        app.store.as_ref(),
        VIEWER,
        &secrecy::SecretString::from("an operator chose this one".to_owned()),
        "cli",
    )
    .await
    .unwrap();
    assert_eq!(here.get("/").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn admins_remove_accounts_but_never_the_last_admin() {
    let app = spawn_app().await;
    let mut admin = app.signed_in(ADMIN).await;
    let mut viewer = app.signed_in(VIEWER).await;
    assert_eq!(viewer.get("/accounts").await.status, StatusCode::FORBIDDEN);
    let page = admin.get("/accounts").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(VIEWER));
    let id = |name: &str| {
        let store = app.store.clone();
        let name = name.to_owned();
        async move {
            store
                .user_credentials(&name)
                .await
                .unwrap()
                .unwrap()
                .user
                .id
        }
    };
    let victor = id(VIEWER).await;
    let alice = id(ADMIN).await;
    // A viewer cannot remove anyone.
    let p = viewer
        .post(&format!("/accounts/{alice}/delete"), &[] as &[(&str, &str)])
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    let p = admin
        .post(
            &format!("/accounts/{victor}/delete"),
            &[] as &[(&str, &str)],
        )
        .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    // The removed account's session is over.
    assert_eq!(viewer.get("/").await.status, StatusCode::SEE_OTHER);
    let p = admin
        .post(&format!("/accounts/{alice}/delete"), &[] as &[(&str, &str)])
        .await;
    assert_eq!(p.status, StatusCode::CONFLICT);
    assert!(p.body.contains("last admin"), "{}", p.body);
    let names = rampart_store::testing::user_names(app.store.as_ref()).await;
    assert_eq!(names, [ADMIN]);
    assert!(
        app.store
            .list_audit(50)
            .await
            .unwrap()
            .iter()
            .any(|e| e.action == "user.remove" && e.target.as_deref() == Some(VIEWER))
    );
}

#[tokio::test]
async fn the_api_lists_and_removes_accounts_but_never_the_last_admin() {
    let app = spawn_app().await;
    let admin_token = app.api_token("admin").await;
    let read_token = app.api_token("read").await;
    let http = reqwest::Client::new();
    let list = http
        .get(format!("{}/api/v1/users", app.url))
        .bearer_auth(&admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), StatusCode::OK);
    let users: serde_json::Value = serde_json::from_str(&body(list).await).unwrap();
    let id_of = |name: &str| {
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    let (alice, victor) = (id_of(ADMIN), id_of(VIEWER));
    assert!(!users.to_string().contains("argon2"));
    let delete = |token: &str, id: i64| {
        http.delete(format!("{}/api/v1/users/{id}", app.url))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(
        delete(&read_token, victor).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        delete(&admin_token, victor).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let last = delete(&admin_token, alice).await.unwrap();
    assert_eq!(last.status(), StatusCode::CONFLICT);
    assert_eq!(last.headers()["content-type"], "application/problem+json");
    assert!(body(last).await.contains("last admin"));
    assert_eq!(
        delete(&admin_token, victor).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}
