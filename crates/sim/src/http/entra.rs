//! Entra ID client-credentials token endpoints, v2 (`/oauth2/v2.0/token`, `scope`) and v1
//! (`/oauth2/token`, `resource`), with the AADSTS errors of <https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes>.

use std::sync::atomic::Ordering;

use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine;

use crate::config::is_guid;
use crate::state::Inner;
use crate::time::wall_secs;
use crate::token::{Claims, EXPIRES_IN, is_mde_audience, known_resource};

use super::errors::aad;

/// Verified domains of the simulated tenant, usable instead of its GUID.
pub(crate) const DOMAINS: [&str; 2] = ["contoso.onmicrosoft.com", "corp.contoso.com"];
const MAX_BODY: usize = 64 * 1024;

fn is_dns_name(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `Authorization: Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

pub(crate) async fn token(
    inner: &Inner,
    tenant: &str,
    v2: bool,
    method: &Method,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let correlation = headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_guid(v))
        .map(str::to_owned);
    let corr = correlation.as_deref();
    let bad =
        |error: &str, code: u32, text: &str| aad(StatusCode::BAD_REQUEST, error, code, text, corr);
    let unauthorized =
        |code: u32, text: &str| aad(StatusCode::UNAUTHORIZED, "invalid_client", code, text, corr);
    let config = &inner.config;

    if method != Method::POST {
        return bad(
            "invalid_request",
            900561,
            &format!(
                "The endpoint only accepts POST, OPTIONS requests. Received a {method} request."
            ),
        );
    }
    let t = tenant.to_ascii_lowercase();
    if matches!(t.as_str(), "common" | "organizations" | "consumers") {
        return bad(
            "invalid_request",
            50059,
            "No tenant-identifying information found in either the request or implied by any provided credentials.",
        );
    }
    if is_guid(&t) {
        if t != config.tenant_id {
            return bad(
                "invalid_tenant",
                90002,
                &format!(
                    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
                ),
            );
        }
    } else if is_dns_name(&t) {
        if !DOMAINS.contains(&t.as_str()) {
            return bad(
                "invalid_tenant",
                90002,
                &format!(
                    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
                ),
            );
        }
    } else {
        let shown: String = tenant.chars().take(100).collect();
        return bad(
            "invalid_request",
            900023,
            &format!(
                "Specified tenant identifier '{shown}' is neither a valid DNS name, nor a valid external domain."
            ),
        );
    }

    let form_content = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return bad(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    };
    let form = Form {
        pairs: if form_content {
            url::form_urlencoded::parse(&bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        } else {
            Vec::new()
        },
    };
    let missing = |name: &str| {
        bad(
            "invalid_request",
            900144,
            &format!("The request body must contain the following parameter: '{name}'."),
        )
    };

    let Some(grant) = form.get("grant_type").filter(|g| !g.is_empty()) else {
        return missing("grant_type");
    };
    if grant != "client_credentials" {
        let shown: String = grant.chars().take(100).collect();
        return bad(
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{shown}'."),
        );
    }
    let basic = basic_credentials(headers);
    let client_id = form
        .get("client_id")
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .or_else(|| basic.as_ref().map(|(id, _)| id.clone()));
    let Some(client_id) = client_id else {
        return missing("client_id");
    };
    if !client_id.eq_ignore_ascii_case(&config.client_id) {
        let shown: String = client_id.chars().take(100).collect();
        return bad(
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{shown}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        );
    }

    // The resource: v2 takes `scope` = `<resource>/.default`, v1 takes `resource`.
    let (audience, resource_echo) = if v2 {
        if form.get("resource").is_some() {
            return bad(
                "invalid_request",
                901002,
                "The 'resource' request parameter is not supported.",
            );
        }
        let Some(scope) = form.get("scope").filter(|s| !s.trim().is_empty()) else {
            return missing("scope");
        };
        let scopes: Vec<&str> = scope.split_whitespace().collect();
        let resources: Vec<&str> = scopes
            .iter()
            .map(|s| s.strip_suffix("/.default").unwrap_or(s))
            .collect();
        let first = resources[0].to_ascii_lowercase();
        if resources.iter().any(|r| r.to_ascii_lowercase() != first)
            && resources.iter().all(|r| r.contains("://"))
        {
            return bad(
                "invalid_scope",
                700022,
                &format!(
                    "The provided value for the input parameter scope is not valid because it contains more than one resource. Scope {scope} is not valid."
                ),
            );
        }
        if scopes.iter().any(|s| !s.ends_with("/.default")) {
            return bad(
                "invalid_scope",
                70011,
                &format!(
                    "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
                ),
            );
        }
        let requested = resources[0];
        match known_resource(requested) {
            Some(r) => (r, None),
            None if requested.starts_with("https://")
                || requested.starts_with("http://")
                || is_guid(requested) =>
            {
                return bad(
                    "invalid_resource",
                    500011,
                    &format!(
                        "The resource principal named {requested} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
                    ),
                );
            }
            None => {
                return bad(
                    "invalid_scope",
                    70011,
                    &format!(
                        "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
                    ),
                );
            }
        }
    } else {
        let Some(resource) = form.get("resource").filter(|s| !s.trim().is_empty()) else {
            return missing("resource");
        };
        match known_resource(resource.trim()) {
            Some(r) => (r, Some(resource.to_owned())),
            None => {
                let shown: String = resource.chars().take(200).collect();
                return bad(
                    "invalid_resource",
                    500011,
                    &format!(
                        "The resource principal named {shown} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
                    ),
                );
            }
        }
    };

    if form.get("client_assertion").is_some() {
        return unauthorized(700027, "Client assertion failed signature validation.");
    }
    let secret = form
        .get("client_secret")
        .map(str::to_owned)
        .or_else(|| basic.map(|(_, s)| s));
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return bad(
            "invalid_request",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    };
    if secret != config.client_secret {
        return unauthorized(
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                config.client_id
            ),
        );
    }
    if config.secret_expired {
        return unauthorized(
            7000222,
            &format!(
                "The provided client secret keys for app '{}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds",
                config.client_id
            ),
        );
    }

    let now = wall_secs();
    let iss = format!("https://sts.windows.net/{}/", config.tenant_id);
    let claims = Claims {
        aud: audience.to_owned(),
        iss: iss.clone(),
        iat: now - 300,
        nbf: now - 300,
        exp: now + EXPIRES_IN,
        aio: "E2NgYFedKTVnUe8ySqY60cef9BQA=".to_owned(),
        app_displayname: "rampart-sim-app".to_owned(),
        appid: config.client_id.clone(),
        appidacr: "1".to_owned(),
        idp: iss,
        oid: inner.principal.clone(),
        rh: "0.AQcA".to_owned(),
        roles: if is_mde_audience(audience) {
            config.token_roles()
        } else {
            None
        },
        sub: inner.principal.clone(),
        tenant_region_scope: "NA".to_owned(),
        tid: config.tenant_id.clone(),
        uti: inner.issuer.uti(inner.faults.token_epoch()),
        ver: "1.0".to_owned(),
    };
    let access_token = inner.issuer.mint(&claims);
    inner.counters.tokens.fetch_add(1, Ordering::Relaxed);
    let body = if v2 {
        serde_json::json!({
            "token_type": "Bearer",
            "expires_in": EXPIRES_IN,
            "ext_expires_in": EXPIRES_IN,
            "access_token": access_token,
        })
    } else {
        serde_json::json!({
            "token_type": "Bearer",
            "expires_in": EXPIRES_IN.to_string(),
            "ext_expires_in": EXPIRES_IN.to_string(),
            "expires_on": (now + EXPIRES_IN).to_string(),
            "not_before": (now - 300).to_string(),
            "resource": resource_echo.unwrap_or_default(),
            "access_token": access_token,
        })
    };
    let mut resp = super::json_value(StatusCode::OK, &body);
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store, no-cache"),
    );
    h.insert(header::PRAGMA, header::HeaderValue::from_static("no-cache"));
    resp
}
