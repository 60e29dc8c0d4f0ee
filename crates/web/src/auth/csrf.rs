//! CSRF protection for the portal, on every state-changing request:
//!
//! 1. the browser must say the request comes from this site: `Sec-Fetch-Site` is `same-origin` or
//!    `none`, or, when a browser sends no `Sec-Fetch-Site`, `Origin` names this host;
//! 2. the request carries the session's synchronizer token, in the `csrf_token` form field or the
//!    `X-CSRF-Token` header (htmx sends it from `hx-headers`); before sign-in, when there is no
//!    session, the token of the signed double-submit cookie instead ([`super::login_csrf`]).
//!
//! The session cookie is also `SameSite=Strict`. The REST API uses bearer tokens, not cookies, and
//! is not behind this check.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use tower_sessions::Session;

use crate::auth::login_csrf;
use crate::error::AppError;
use crate::state::AppState;

const SESSION_KEY: &str = "csrf_token";
pub const FORM_FIELD: &str = "csrf_token";
pub const HEADER: &str = "x-csrf-token";
/// Forms are small; a bigger body is refused before it is read.
const MAX_FORM_BYTES: usize = 256 * 1024;

/// The session's token, created on first use.
pub async fn token(session: &Session) -> Result<String, AppError> {
    if let Some(t) = session
        .get::<String>(SESSION_KEY)
        .await
        .map_err(AppError::internal)?
    {
        return Ok(t);
    }
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    session
        .insert(SESSION_KEY, &t)
        .await
        .map_err(AppError::internal)?;
    Ok(t)
}

fn forbidden(why: &str) -> Response {
    tracing::warn!(message = "Request refused by the CSRF check.", reason = why);
    AppError::Forbidden(format!(
        "this request was refused to protect you from cross-site request forgery ({why}); reload the page and try again"
    ))
    .into_response()
}

/// Whether the request's `Sec-Fetch-Site` / `Origin` say it comes from this site. The site is
/// the `Host` header, or over HTTP/2 (which has none) the request's `:authority`, which hyper
/// puts in the URI.
pub fn same_site(headers: &HeaderMap, uri: &Uri) -> Result<(), &'static str> {
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.to_str() {
            Ok("same-origin" | "none") => Ok(()),
            _ => Err("the request came from another site"),
        };
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()));
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, rest)| rest.trim_end_matches('/'));
        return match (origin_host, host) {
            (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => Ok(()),
            _ => Err("the request came from another origin"),
        };
    }
    // Neither header: not a browser request made on a page of another site (browsers send
    // Origin on cross-site POSTs). The token below still has to match.
    Ok(())
}

fn form_token(body: &[u8]) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == FORM_FIELD)
        .map(|(_, v)| v.into_owned())
}

/// Compares in constant time.
pub(crate) fn tokens_match(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    if let Err(why) = same_site(request.headers(), request.uri()) {
        return forbidden(why);
    }
    // A signed-in session has its own token; before sign-in there is no session, and the signed
    // cookie stands in for it.
    let session_token = match request.extensions().get::<Session>() {
        Some(session) => session.get::<String>(SESSION_KEY).await.ok().flatten(),
        None => None,
    };
    let from_header = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (parts, body) = request.into_parts();
    let bytes = match to_bytes(body, MAX_FORM_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return AppError::BadRequest("the form is too large".into()).into_response();
        }
    };
    let given = from_header.or_else(|| form_token(&bytes));
    let valid = match (given, session_token) {
        (Some(t), Some(expected)) => tokens_match(&t, &expected),
        (Some(t), None) => login_csrf::verify(&state, &parts.headers, &t),
        (None, _) => false,
    };
    if !valid {
        return forbidden("the form token is missing or stale");
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn same_site_rules() {
        let path = Uri::from_static("/login");
        assert!(same_site(&headers(&[("sec-fetch-site", "same-origin")]), &path).is_ok());
        assert!(same_site(&headers(&[("sec-fetch-site", "cross-site")]), &path).is_err());
        assert!(same_site(&headers(&[("sec-fetch-site", "same-site")]), &path).is_err());
        assert!(
            same_site(
                &headers(&[
                    ("origin", "http://127.0.0.1:8080"),
                    ("host", "127.0.0.1:8080")
                ]),
                &path
            )
            .is_ok()
        );
        assert!(
            same_site(
                &headers(&[
                    ("origin", "https://evil.example"),
                    ("host", "127.0.0.1:8080")
                ]),
                &path
            )
            .is_err()
        );
        assert!(same_site(&headers(&[("origin", "null"), ("host", "a")]), &path).is_err());
        // HTTP/2 has no Host header: the site is the request's :authority.
        let h2 = Uri::from_static("https://127.0.0.1:8443/login");
        assert!(same_site(&headers(&[("origin", "https://127.0.0.1:8443")]), &h2).is_ok());
        assert!(same_site(&headers(&[("origin", "https://evil.example")]), &h2).is_err());
        assert!(same_site(&headers(&[("origin", "https://127.0.0.1:8443")]), &path).is_err());
    }

    #[test]
    fn form_token_is_found_and_compared_exactly() {
        assert_eq!(form_token(b"a=1&csrf_token=xyz").as_deref(), Some("xyz"));
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("abc", "abcd"));
    }
}
