//! HTTPS served by Rampart itself (`WebConfig::tls`): a throwaway self-signed certificate made
//! at test time, the real server on port 0, reqwest trusting only that certificate.

use std::path::Path;

use rampart_web::{Tls, TlsError};
use reqwest::StatusCode;

use crate::helpers::*;
use crate::test_cert::TestCert;

impl TestCert {
    fn load(&self) -> Tls {
        Tls::load(&self.cert, &self.key).unwrap()
    }
}

#[tokio::test]
async fn the_portal_over_https_sets_secure_cookies_and_hsts() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::new(dir.path(), "server");
    let tls = cert.load();
    let app = spawn_app_configured(40, |c| c.tls = Some(tls)).await;
    assert!(app.url.starts_with("https://127.0.0.1:"), "{}", app.url);

    // Sign in over HTTPS as a browser would (HTTP/2 through ALPN, as browsers negotiate it).
    let mut browser = Client::over(&app.url, cert.client());
    let form = browser.get("/login").await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    let form_cookie = form.headers["set-cookie"].to_str().unwrap();
    assert!(form_cookie.starts_with("rampart_form="), "{form_cookie}");
    assert!(form_cookie.contains("; Secure"), "{form_cookie}");
    assert_eq!(
        form.headers["strict-transport-security"].to_str().unwrap(),
        "max-age=31536000"
    );
    let signed_in = browser
        .post("/login", &[("name", ADMIN), ("password", PASSWORD)])
        .await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.body
    );
    let session = signed_in.headers["set-cookie"].to_str().unwrap();
    assert!(session.starts_with("rampart_session="), "{session}");
    assert!(session.contains("; Secure"), "{session}");
    let dashboard = browser.get("/").await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(dashboard.body.contains("Dashboard"));

    // ALPN: h2 for clients that offer it, HTTP/1.1 for those that do not.
    let h2 = cert
        .client()
        .get(format!("{}/login", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
    let h1 = cert
        .client_with(|b| b.http1_only())
        .get(format!("{}/login", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(h1.version(), reqwest::Version::HTTP_11);
    assert_eq!(h1.status(), StatusCode::OK);

    // TLS 1.2 clients are served too (rustls' defaults: 1.2 and 1.3, nothing older).
    let tls12 = cert
        .client_with(|b| b.tls_version_max(reqwest::tls::Version::TLS_1_2))
        .get(format!("{}/login", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(tls12.status(), StatusCode::OK);

    // The operator routes, and answers made outside the handlers, carry HSTS as well.
    let client = cert.client();
    for (path, status) in [
        ("/healthz", StatusCode::OK),
        ("/readyz", StatusCode::OK),
        ("/metrics", StatusCode::OK),
        ("/api/v1/nothing-here", StatusCode::NOT_FOUND),
    ] {
        let res = client
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{path}");
        assert!(
            res.headers().contains_key("strict-transport-security"),
            "{path}: {:?}",
            res.headers()
        );
    }
    let metrics = body(
        client
            .get(format!("{}/metrics", app.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(metrics.contains("# TYPE"), "{metrics}");

    let logs = captured_logs();
    for line in cert.key_lines() {
        assert!(!logs.contains(line), "a line of the key is in the logs");
    }
}

#[tokio::test]
async fn plain_http_is_served_without_hsts_or_secure_cookies() {
    let app = spawn_app().await;
    let res = reqwest::get(format!("{}/login", app.url)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!res.headers().contains_key("strict-transport-security"));
}

#[tokio::test]
async fn plain_http_to_the_https_port_is_told_to_use_https() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::new(dir.path(), "server");
    let tls = cert.load();
    let app = spawn_app_configured(40, |c| c.tls = Some(tls)).await;
    let plain = app.url.replacen("https://", "http://", 1);

    let res = reqwest::Client::new()
        .get(format!("{plain}/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(!res.headers().contains_key("set-cookie"));
    let text = body(res).await;
    assert!(
        text.contains("HTTPS only") && text.contains("https://"),
        "{text}"
    );

    // A client that trusts another certificate gets no connection at all.
    let stranger = TestCert::new(dir.path(), "stranger");
    let refused = stranger
        .client()
        .get(format!("{}/login", app.url))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");

    // The server is still serving after both.
    let ok = cert
        .client()
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_reload_serves_the_renewed_certificate_and_keeps_the_old_one_when_it_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestCert::new(dir.path(), "server");
    let tls = first.load();
    let served = tls.clone();
    let app = spawn_app_configured(40, move |c| c.tls = Some(served)).await;
    let healthz = format!("{}/healthz", app.url);
    assert!(first.client().get(&healthz).send().await.is_ok());

    // The renewal writes a new pair over the same files; the reload (SIGHUP in `serve`) reads it.
    let renewed = TestCert::new(dir.path(), "renewed");
    std::fs::write(&first.cert, &renewed.cert_pem).unwrap();
    std::fs::write(&first.key, &renewed.key_pem).unwrap();
    tls.reload().unwrap();
    let res = renewed.client().get(&healthz).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(first.client().get(&healthz).send().await.is_err());

    // A renewal gone wrong (the key of another certificate): refused, the renewed pair stays.
    std::fs::write(&first.key, &first.key_pem).unwrap();
    let error = tls.reload().unwrap_err();
    assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error}");
    let res = renewed.client().get(&healthz).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[test]
fn wrong_files_are_refused_in_words_that_never_quote_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = TestCert::new(dir.path(), "good");
    let other = TestCert::new(dir.path(), "other");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let garbage = write("garbage.pem", "this is not a certificate\n");
    let damaged = write(
        "damaged.pem",
        "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
    );
    let not_x509 = write(
        "not-x509.pem",
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
    );
    let encrypted = write(
        "encrypted.key",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let missing = dir.path().join("missing.pem");
    let damaged_key_text = good.key_pem.replacen("\n", "\n!!", 2);
    let damaged_key = write("damaged.key", &damaged_key_text);

    let cases: Vec<(&Path, &Path, &str)> = vec![
        (&missing, &good.key, "cannot read the TLS certificate file"),
        (&good.cert, &missing, "cannot read the TLS key file"),
        (&garbage, &good.key, "holds no certificate in PEM format"),
        (&damaged, &good.key, "is damaged"),
        (&not_x509, &good.key, "not valid X.509"),
        // A certificate file given as the key: no key in it.
        (&good.cert, &good.cert, "holds no private key in PEM format"),
        (&good.cert, &garbage, "holds no private key in PEM format"),
        (&good.cert, &encrypted, "encrypted private key"),
        (&good.cert, &damaged_key, "is damaged"),
        (&good.cert, &other.key, "does not belong to the certificate"),
    ];
    for (cert, key, expected) in cases {
        let error = Tls::load(cert, key).unwrap_err().to_string();
        assert!(error.contains(expected), "{cert:?} {key:?}: {error}");
        let named = if error.contains("key file") {
            key
        } else {
            cert
        };
        assert!(
            error.contains(&named.display().to_string()),
            "the file is not named: {error}"
        );
        for line in good.key_lines().into_iter().chain(other.key_lines()) {
            assert!(!error.contains(line), "the key is quoted: {error}");
        }
    }
    // The certificate and its key in one file, as some tools write them: accepted.
    let both = write("both.pem", &format!("{}{}", good.cert_pem, good.key_pem));
    assert!(Tls::load(&both, &both).is_ok());
    // Debug output names the files only.
    let debug = format!("{:?}", good.load());
    assert!(debug.contains("good.crt"), "{debug}");
    assert!(good.key_lines().iter().all(|l| !debug.contains(l)));
}
