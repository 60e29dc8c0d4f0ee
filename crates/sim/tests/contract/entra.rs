//! Entra token endpoints (<https://learn.microsoft.com/en-us/defender-endpoint/api/exposed-apis-create-app-webapp>) and bearer validation on the API (<https://learn.microsoft.com/en-us/defender-endpoint/api/common-errors>).

use rampart_sim::SimConfig;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{App, MDE_SCOPE, error_code, jwt_claims, small_config};

#[tokio::test]
async fn v2_token_has_numeric_lifetimes_and_the_documented_claims() {
    let app = App::small().await;
    let (id, tenant) = (app.client_id(), app.tenant());
    let reply = app.demo_token_request(MDE_SCOPE).await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        body["expires_in"].is_u64() && body["ext_expires_in"].is_u64(),
        "{body}"
    );
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(
        crate::helpers::keys(&body),
        crate::helpers::keys(&crate::helpers::example(
            "mde-01-1-3-v2-token-endpoint-use-this.json"
        ))
    );
    assert!(body.get("refresh_token").is_none() && body.get("scope").is_none());
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3);
    let claims = jwt_claims(token);
    assert_eq!(claims["aud"], "https://api.securitycenter.microsoft.com");
    assert_eq!(claims["iss"], format!("https://sts.windows.net/{tenant}/"));
    assert_eq!(claims["ver"], "1.0");
    assert_eq!(claims["appid"], id.as_str());
    assert_eq!(claims["appidacr"], "1");
    assert_eq!(claims["tid"], tenant.as_str());
    assert_eq!(claims["oid"], claims["sub"]);
    let (iat, nbf, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["nbf"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!(nbf <= iat && exp - iat >= 3599, "{claims}");
    let roles: Vec<&str> = claims["roles"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        roles.contains(&"Machine.Read.All") && roles.contains(&"Vulnerability.Read.All"),
        "{roles:?}"
    );
    // The documented claim set (example mde-02) is all there.
    let example =
        crate::helpers::example("mde-02-1-5-access-token-jwt-claims-obs-two-independent-.json");
    assert_eq!(
        crate::helpers::keys(&claims),
        crate::helpers::keys(&example)
    );
}

#[tokio::test]
async fn v1_token_has_string_lifetimes_and_echoes_the_resource() {
    let app = App::small().await;
    let (id, secret, tenant) = (app.client_id(), app.secret(), app.tenant());
    let resource = "https://api.securitycenter.microsoft.com";
    let reply = app
        .token_request(
            &tenant,
            false,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
                ("resource", resource),
            ],
        )
        .await;
    reply.assert_ok("");
    let body = reply.json();
    for key in ["expires_in", "ext_expires_in", "expires_on", "not_before"] {
        let s = body[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} is a string: {body}"));
        assert!(s.bytes().all(|b| b.is_ascii_digit()), "{key}={s}");
    }
    assert_eq!(body["resource"], resource);
    let claims = jwt_claims(body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], resource);
    assert_eq!(claims["ver"], "1.0");
    // A v1 token works on the API like a v2 one.
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(
        app.get("/api/machines?$top=1", token).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_secret_may_come_as_http_basic() {
    let app = App::small().await;
    let resp = app
        .client
        .post(format!("{}/{}/oauth2/v2.0/token", app.url(), app.tenant()))
        .basic_auth(app.client_id(), Some(app.secret()))
        .form(&[("grant_type", "client_credentials"), ("scope", MDE_SCOPE)])
        .send()
        .await
        .unwrap();
    let reply = crate::helpers::read_body(resp).await.unwrap();
    reply.assert_ok("");
}

#[tokio::test]
async fn tenants_can_be_named_by_verified_domain() {
    let app = App::small().await;
    let (id, secret) = (app.client_id(), app.secret());
    let reply = app
        .token_request(
            "contoso.onmicrosoft.com",
            true,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
                ("scope", MDE_SCOPE),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

fn assert_aad_error(body: &Value, error: &str, code: u64) {
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], serde_json::json!([code]), "{body}");
    let desc = body["error_description"].as_str().unwrap();
    assert!(desc.starts_with(&format!("AADSTS{code}: ")), "{desc}");
    assert!(
        desc.contains("\r\nTrace ID: ")
            && desc.contains("\r\nCorrelation ID: ")
            && desc.contains("\r\nTimestamp: "),
        "{desc}"
    );
    let ts = body["timestamp"].as_str().unwrap();
    assert!(
        ts.len() == 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b' ',
        "{ts}"
    );
    for key in ["trace_id", "correlation_id"] {
        assert_eq!(body[key].as_str().unwrap().len(), 36, "{key}");
    }
}

#[tokio::test]
async fn each_aadsts_case_has_its_code_and_status() {
    let app = App::small().await;
    let (id, secret, tenant) = (app.client_id(), app.secret(), app.tenant());
    let good = |over: &[(&'static str, &'static str)]| -> Vec<(String, String)> {
        let mut f: Vec<(String, String)> = vec![
            ("grant_type".into(), "client_credentials".into()),
            ("client_id".into(), id.clone()),
            ("client_secret".into(), secret.clone()),
            ("scope".into(), MDE_SCOPE.into()),
        ];
        for (k, v) in over {
            f.retain(|(key, _)| key != k);
            if !v.is_empty() {
                f.push(((*k).into(), (*v).into()));
            }
        }
        f
    };
    let unknown_tenant = "11111111-1111-4111-8111-111111111111";
    type Case<'a> = (
        &'a str,
        bool,
        Vec<(String, String)>,
        StatusCode,
        &'a str,
        u64,
    );
    let cases: Vec<Case> = vec![
        (
            unknown_tenant,
            true,
            good(&[]),
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            90002,
        ),
        (
            "fabrikam.onmicrosoft.com",
            true,
            good(&[]),
            StatusCode::BAD_REQUEST,
            "invalid_tenant",
            90002,
        ),
        (
            "not_a_tenant!",
            true,
            good(&[]),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900023,
        ),
        (
            "common",
            true,
            good(&[]),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50059,
        ),
        (
            "organizations",
            true,
            good(&[]),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50059,
        ),
        (
            &tenant,
            true,
            good(&[("client_id", "22222222-2222-4222-8222-222222222222")]),
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
        ),
        (
            &tenant,
            true,
            good(&[("client_secret", "a-secret-id-not-the-value")]),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
        ),
        (
            &tenant,
            true,
            good(&[("client_secret", "")]),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            7000218,
        ),
        (
            &tenant,
            true,
            good(&[("grant_type", "")]),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
        ),
        (
            &tenant,
            true,
            good(&[("scope", "")]),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
        ),
        (
            &tenant,
            true,
            good(&[(
                "scope",
                "https://api.securitycenter.microsoft.com/Machine.Read.All",
            )]),
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
        ),
        (
            &tenant,
            true,
            good(&[(
                "scope",
                "https://api.securitycenter.microsoft.com/.default https://graph.microsoft.com/.default",
            )]),
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            700022,
        ),
        (
            &tenant,
            true,
            good(&[("scope", "https://api.securitycenter.contoso.com/.default")]),
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
        ),
        (
            &tenant,
            true,
            good(&[("resource", "https://api.securitycenter.microsoft.com")]),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            901002,
        ),
        (
            &tenant,
            true,
            good(&[("grant_type", "password")]),
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
        ),
        (
            &tenant,
            false,
            good(&[
                ("scope", ""),
                ("resource", "https://typo.securitycenter.microsoft.com"),
            ]),
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
        ),
    ];
    for (tenant, v2, form, status, error, code) in cases {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let reply = app.token_request(tenant, v2, &pairs).await;
        assert_eq!(
            reply.status,
            status,
            "{error} {code}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(
            reply.headers["content-type"],
            "application/json; charset=utf-8"
        );
        assert_aad_error(&reply.json(), error, code);
    }
    // error_uri appears for some codes (7000215 is one).
    let pairs = good(&[("client_secret", "wrong")]);
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = app.token_request(&tenant, true, &pairs).await.json();
    assert_eq!(
        body["error_uri"],
        "https://login.microsoftonline.com/error?code=7000215"
    );
}

#[tokio::test]
async fn an_expired_secret_is_aadsts7000222() {
    let app = App::start(SimConfig {
        secret_expired: true,
        ..small_config()
    })
    .await;
    let reply = app.demo_token_request(MDE_SCOPE).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_aad_error(&reply.json(), "invalid_client", 7000222);
}

#[tokio::test]
async fn every_windowsdefenderatp_identifier_is_an_accepted_audience() {
    let app = App::small().await;
    for resource in [
        "https://api.securitycenter.microsoft.com",
        "https://securitycenter.onmicrosoft.com/windowsatpservice",
        "https://api.securitycenter.windows.com",
        "https://api-gcc.securitycenter.microsoft.us",
        "https://api-gov.securitycenter.microsoft.us",
    ] {
        let token = app.token_for(&format!("{resource}/.default")).await;
        assert_eq!(jwt_claims(&token)["aud"], resource);
        let reply = app.get("/api/machines?$top=1", &token).await;
        assert_eq!(reply.status, StatusCode::OK, "{resource}");
    }
    // Microsoft 365 Defender (MTP) is another app: token issued, without WDATP roles, refused by MDE.
    let token = app
        .token_for("https://api.security.microsoft.com/.default")
        .await;
    assert!(jwt_claims(&token).get("roles").is_none());
    let reply = app.get("/api/machines?$top=1", &token).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn missing_forged_foreign_and_expired_tokens_get_401() {
    let app = App::small().await;
    let other = App::small().await;
    let token = app.token().await;
    let foreign = other.token().await;
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims = jwt_claims(&token);
    claims["roles"] = serde_json::json!(["Machine.ReadWrite.All"]);
    use base64::Engine;
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    let forged = parts.join(".");
    let url = format!("{}/api/machines?$top=1", app.url());
    for (what, t) in [
        ("missing", None),
        ("garbage", Some("not-a-jwt")),
        ("empty", Some("")),
        ("forged", Some(forged.as_str())),
        ("foreign", Some(foreign.as_str())),
    ] {
        let reply = app.get_with(&url, t).await.unwrap();
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(error_code(&reply), "Unauthorized", "{what}");
        let envelope =
            crate::helpers::example("mde-14-9-3-error-envelope-all-mde-api-errors-doc-common.json");
        assert_eq!(
            crate::helpers::keys(&reply.json()["error"]),
            crate::helpers::keys(&envelope["error"])
        );
        assert!(reply.json()["error"]["target"].is_string());
    }
    // A basic-auth header is no bearer token either.
    let resp = app
        .client
        .get(&url)
        .basic_auth("a", Some("b"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Expiry: the token worked, then every token issued so far stops working.
    assert_eq!(
        app.get("/api/machines?$top=1", &token).await.status,
        StatusCode::OK
    );
    app.running.sim.faults().expire_tokens_now();
    let reply = app.get("/api/machines?$top=1", &token).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    let fresh = app.token().await;
    assert_eq!(
        app.get("/api/machines?$top=1", &fresh).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_missing_role_is_403_naming_the_required_roles() {
    let app = App::start(SimConfig {
        roles: Some(vec!["Machine.Read.All".into()]),
        ..small_config()
    })
    .await;
    let token = app.token().await;
    assert_eq!(
        app.get("/api/machines?$top=1", &token).await.status,
        StatusCode::OK
    );
    for path in [
        "/api/vulnerabilities?$top=1",
        "/api/machines/SoftwareVulnerabilitiesByMachine?$top=1",
        "/api/machines/SoftwareVulnerabilitiesExport",
        "/api/machines/SoftwareVulnerabilityChangesByMachine?sinceTime=2026-11-01T00:00:00Z",
    ] {
        let reply = app.get(path, &token).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
        let body = reply.json();
        assert_eq!(body["error"]["code"], "Forbidden");
        let sample =
            crate::helpers::example("mde-03-1-6-windowsdefenderatp-application-roles-value-s.json");
        assert_eq!(
            crate::helpers::keys(&body["error"]),
            crate::helpers::keys(&sample["error"])
        );
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(
            msg.starts_with(
                "Missing application roles. API required roles: Vulnerability.Read.All"
            ),
            "{msg}"
        );
        assert!(msg.contains("application roles: Machine.Read.All"), "{msg}");
    }
}

#[tokio::test]
async fn without_consent_the_token_has_no_roles_claim_and_the_api_says_403() {
    let app = App::start(SimConfig {
        roles: Some(vec![]),
        ..small_config()
    })
    .await;
    let token = app.token().await;
    let claims = jwt_claims(&token);
    assert!(claims.get("roles").is_none(), "{claims}");
    let reply = app.get("/api/machines", &token).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let msg = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        msg.contains("API required roles: Machine.Read.All,Machine.ReadWrite.All"),
        "{msg}"
    );
}

#[tokio::test]
async fn token_endpoints_refuse_get() {
    let app = App::small().await;
    let resp = app
        .client
        .get(format!("{}/{}/oauth2/v2.0/token", app.url(), app.tenant()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}
