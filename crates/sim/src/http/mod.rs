//! HTTP: one fallback handler that routes by hand, because MDE paths are case-insensitive and take an
//! optional `/v1.0` segment. Explicit axum routes added later (ARM's `/subscriptions/…`,
//! `/providers/…`) take precedence over the fallback.

mod api;
mod arm;
mod arm_json;
mod blob;
mod cloud_vuln_json;
mod control;
mod ctx;
mod entra;
mod errors;
mod exports;
pub(crate) mod filter;
mod kev;
mod machines;
mod query;
mod resource_graph;
mod stream;
mod vulns;
mod window;

use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use percent_encoding::percent_decode_str;

use crate::Sim;
use crate::faults::{Injected, random_fault};
use crate::state::Inner;
use crate::stats::Family;

pub(crate) use arm::ArmBuckets;
pub(crate) use ctx::{ApiError, Ctx};
use errors::mde;
pub(crate) use kev::ids as kev_listed;
pub(crate) use machines::{listed, listed_devices};

pub(crate) fn router(sim: Sim) -> Router {
    Router::new().fallback(dispatch).with_state(sim)
}

/// `http://{Host}`; a Host header with unexpected characters is not echoed into links.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                })
        })
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// The token of a bearer `Authorization` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The path's segments as routes are matched: Microsoft's paths are case-insensitive (the
/// original segments keep ids as they were sent).
fn lowercased(segs: &[String]) -> Vec<String> {
    segs.iter().map(|s| s.to_ascii_lowercase()).collect()
}

fn decode_path(path: &str) -> Option<Vec<String>> {
    if path.len() > 4096 {
        return None;
    }
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|c| c.into_owned())
        })
        .collect()
}

async fn dispatch(State(sim): State<Sim>, req: Request) -> Response {
    let inner = sim.inner;
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let raw_query = parts.uri.query().unwrap_or("").to_owned();
    let target = uuid::Uuid::new_v4().to_string();
    let Some(segs) = decode_path(&path) else {
        inner.counters.call(Family::Other);
        return mde(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "The request path is not valid.",
            &target,
        );
    };
    let base = base_url(&parts.headers);
    let first = segs.first().map(|s| s.to_ascii_lowercase());
    let second = segs.get(1).map(|s| s.to_ascii_lowercase());
    match (first.as_deref(), second.as_deref()) {
        (Some("_sim"), _) => {
            inner.counters.call(Family::Control);
            control::handle(&inner, &parts.method, &segs[1..], &raw_query, &base)
        }
        (Some(_), Some("oauth2")) => {
            inner.counters.call(Family::Token);
            let v2 = match segs.get(2).map(|s| s.to_ascii_lowercase()).as_deref() {
                Some("v2.0") if segs.len() == 4 && segs[3].eq_ignore_ascii_case("token") => true,
                Some("token") if segs.len() == 3 => false,
                _ => {
                    return mde(
                        StatusCode::NOT_FOUND,
                        "ResourceNotFound",
                        "Unknown endpoint.",
                        &target,
                    );
                }
            };
            if let Some((retry_after, json)) = inner.faults.take_token_throttle() {
                inner.counters.throttled.fetch_add(1, Ordering::Relaxed);
                return errors::token_throttled(retry_after, json);
            }
            if let Some(resp) = injected(&inner, Family::Token, &path, &raw_query, false, &target) {
                return resp;
            }
            entra::token(&inner, &segs[0], v2, &parts.method, &parts.headers, body).await
        }
        (Some("blob"), _) => {
            inner.counters.call(Family::Blob);
            inner.faults.download_requested();
            let fault = choose_fault(&inner, Family::Blob, &path, &raw_query, false);
            if let Some(Injected::Status(status)) = fault {
                inner.counters.faults.fetch_add(1, Ordering::Relaxed);
                let code =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let name = if status == 503 {
                    "ServerBusy"
                } else {
                    "InternalError"
                };
                return errors::storage(
                    code,
                    name,
                    "The server encountered an internal error. Please retry the request.",
                    None,
                );
            }
            let resp =
                blob::download(&inner, &segs, &raw_query, fault == Some(Injected::Truncate)).await;
            after_fault(&inner, fault, resp)
        }
        (Some("subscriptions" | "providers"), _) => {
            arm::handle(inner, &parts, &segs, base, body).await
        }
        (Some("kev"), Some(file)) if segs.len() == 2 && file == kev::FILE => {
            inner.counters.call(Family::Other);
            kev::handle(&inner, &parts.method, &parts.headers, &path)
        }
        (Some("api"), _) => api::handle(inner, &parts, &segs[1..], base, target),
        _ => {
            inner.counters.call(Family::Other);
            mde(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                "The requested resource does not exist.",
                &target,
            )
        }
    }
}

fn choose_fault(
    inner: &Inner,
    family: Family,
    path: &str,
    query: &str,
    export_page: bool,
) -> Option<Injected> {
    let target = format!("{path}?{query}");
    if let Some(f) = inner.faults.targeted(&target, export_page) {
        return Some(f);
    }
    let n = inner.requests.fetch_add(1, Ordering::Relaxed);
    random_fault(inner.config.seed, n, inner.config.fault_rate, family)
}

/// An injected error response for token requests (body faults do not apply to them).
fn injected(
    inner: &Inner,
    family: Family,
    path: &str,
    query: &str,
    export_page: bool,
    target: &str,
) -> Option<Response> {
    match choose_fault(inner, family, path, query, export_page)? {
        Injected::Status(status) => {
            inner.counters.faults.fetch_add(1, Ordering::Relaxed);
            if status == 429 {
                inner.counters.throttled.fetch_add(1, Ordering::Relaxed);
            }
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            if family == Family::Token {
                return Some(errors::aad(
                    code,
                    "temporarily_unavailable",
                    90033,
                    "A transient error has occurred. Please try again.",
                    None,
                ));
            }
            Some(errors::injected(status, target))
        }
        _ => None,
    }
}

/// Applies a body fault to a successful response.
fn after_fault(inner: &Inner, fault: Option<Injected>, resp: Response) -> Response {
    if !resp.status().is_success() {
        return resp;
    }
    match fault {
        Some(Injected::Truncate) => {
            inner.counters.faults.fetch_add(1, Ordering::Relaxed);
            resp
        }
        Some(Injected::Reset) => {
            inner.counters.faults.fetch_add(1, Ordering::Relaxed);
            stream::reset_body(resp)
        }
        Some(Injected::Slow) => {
            inner.counters.faults.fetch_add(1, Ordering::Relaxed);
            stream::slow_body(resp)
        }
        _ => resp,
    }
}

/// A small JSON response built in memory (control endpoints, token responses).
pub(crate) fn json_value(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut resp = Response::new(Body::from(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(errors::JSON));
    resp
}
