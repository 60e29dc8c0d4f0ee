//! Azure Resource Manager: `/subscriptions…` and `/providers/…` beside the MDE routes. The pipeline is
//! ARM's, not MDE's: authenticate (401 `InvalidAuthenticationToken`…), require a known `api-version`
//! (400), authorise by Azure RBAC (no role: the subscription list is silently empty and direct calls
//! are 403 `AuthorizationFailed`), throttle with a per-principal token bucket per subscription
//! (`x-ms-ratelimit-remaining-subscription-reads`, 429 + `Retry-After`), inject faults, then page
//! with absolute `nextLink`s carrying `$skipToken`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::faults::Injected;
use crate::state::Inner;
use crate::stats::Family;
use crate::token::{Claims, TokenError, is_arm_audience};

use super::query::Query;
use super::{after_fault, arm_json, choose_fault, cloud_vuln_json, resource_graph};

pub(crate) const JSON: &str = "application/json; charset=utf-8";

/// ARM's `CloudError` envelope with its correlation headers.
pub(crate) fn arm_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message}});
    let mut resp = respond(status, body.to_string().into_bytes());
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Bearer authorization_uri=\"https://login.windows.net/\", error=\"invalid_token\"",
            ),
        );
    }
    resp
}

pub(crate) fn respond(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    let id = uuid::Uuid::new_v4().to_string();
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert("x-ms-request-id", v.clone());
        h.insert("x-ms-correlation-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!(
        "WESTEUROPE:{}:{id}",
        crate::time::entra_ts(crate::time::wall_secs()).replace(['-', ':', ' '], "")
    )) {
        h.insert("x-ms-routing-request-id", v);
    }
    resp
}

/// The ARM routes the emulator serves.
enum Route {
    Subscriptions,
    SecureScores(String),
    SecureScore(String, String),
    Controls(String),
    ControlDefinitions,
    Assessments(String),
    Metadata,
    SubAssessments(String),
    Pricings(String),
    ResourceGraph,
    Unknown,
}

impl Route {
    fn parse(segs: &[String]) -> Route {
        let lower = super::lowercased(segs);
        let l: Vec<&str> = lower.iter().map(String::as_str).collect();
        let sub = || lower.get(1).cloned().unwrap_or_default();
        match l.as_slice() {
            ["subscriptions"] => Route::Subscriptions,
            [
                "subscriptions",
                _,
                "providers",
                "microsoft.security",
                rest @ ..,
            ] => match rest {
                ["securescores"] => Route::SecureScores(sub()),
                ["securescores", name] => Route::SecureScore(sub(), (*name).to_owned()),
                ["securescores", "ascscore", "securescorecontrols"] | ["securescorecontrols"] => {
                    Route::Controls(sub())
                }
                ["securescorecontroldefinitions"] => Route::ControlDefinitions,
                ["assessments"] => Route::Assessments(sub()),
                ["assessmentmetadata"] => Route::Metadata,
                ["subassessments"] => Route::SubAssessments(sub()),
                ["pricings"] => Route::Pricings(sub()),
                _ => Route::Unknown,
            },
            [
                "providers",
                "microsoft.security",
                "securescorecontroldefinitions",
            ] => Route::ControlDefinitions,
            ["providers", "microsoft.security", "assessmentmetadata"] => Route::Metadata,
            ["providers", "microsoft.resourcegraph", "resources"] => Route::ResourceGraph,
            _ => Route::Unknown,
        }
    }

    /// `(resource type for messages, supported api-versions)`. `risk_version`: whether this cloud
    /// serves assessments 2025-05-04 (off in the `assessments_without_2025_05_04` data mode).
    fn versions(&self, risk_version: bool) -> (&'static str, &'static [&'static str]) {
        match self {
            Route::Assessments(_) if !risk_version => {
                ("assessments", &["2021-06-01", "2020-01-01"])
            }
            Route::Subscriptions => ("subscriptions", &["2022-12-01", "2021-01-01", "2020-01-01"]),
            Route::SecureScores(_) | Route::SecureScore(..) => ("secureScores", &["2020-01-01"]),
            Route::Controls(_) => ("secureScoreControls", &["2020-01-01"]),
            Route::ControlDefinitions => ("secureScoreControlDefinitions", &["2020-01-01"]),
            Route::Assessments(_) => ("assessments", &["2021-06-01", "2020-01-01", "2025-05-04"]),
            Route::Metadata => (
                "assessmentMetadata",
                &["2021-06-01", "2020-01-01", "2025-05-04"],
            ),
            Route::SubAssessments(_) => ("subAssessments", &["2019-01-01-preview"]),
            Route::Pricings(_) => ("pricings", &["2024-01-01", "2023-01-01"]),
            Route::ResourceGraph => ("resources", &["2024-04-01", "2022-10-01", "2021-03-01"]),
            Route::Unknown => ("unknown", &[]),
        }
    }

    fn subscription(&self) -> Option<&str> {
        match self {
            Route::SecureScores(s)
            | Route::SecureScore(s, _)
            | Route::Controls(s)
            | Route::Assessments(s)
            | Route::SubAssessments(s)
            | Route::Pricings(s) => Some(s),
            _ => None,
        }
    }

    fn action(&self) -> &'static str {
        match self {
            Route::SecureScores(_) | Route::SecureScore(..) => {
                "Microsoft.Security/secureScores/read"
            }
            Route::Controls(_) => "Microsoft.Security/secureScores/secureScoreControls/read",
            Route::Assessments(_) => "Microsoft.Security/assessments/read",
            Route::SubAssessments(_) => "Microsoft.Security/assessments/subAssessments/read",
            Route::Pricings(_) => "Microsoft.Security/pricings/read",
            _ => "Microsoft.Resources/subscriptions/read",
        }
    }
}

/// ARM's read token buckets, per (principal, subscription or tenant): <https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/request-limits-and-throttling> (250 reads,
/// refilled at 25 per second), with the size and rate configurable for tests.
#[derive(Default)]
pub(crate) struct ArmBuckets {
    buckets: HashMap<String, (f64, Instant)>,
}

impl ArmBuckets {
    /// Takes one read; `Ok(remaining)` or `Err(seconds to wait)`.
    fn take(&mut self, key: &str, burst: u32, refill: u32, now: Instant) -> Result<u64, u64> {
        let burst = f64::from(burst.max(1));
        let refill = f64::from(refill.max(1));
        let (tokens, last) = self.buckets.entry(key.to_owned()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * refill).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(tokens.floor() as u64)
        } else {
            Err(((1.0 - *tokens) / refill).ceil().max(1.0) as u64)
        }
    }
}

fn authenticate(inner: &Inner, headers: &HeaderMap) -> Result<Claims, Box<Response>> {
    let Some(token) = super::bearer(headers) else {
        return Err(Box::new(arm_error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        )));
    };
    let claims = inner
        .issuer
        .verify(
            token,
            crate::time::wall_secs(),
            inner.faults.token_epoch(),
            &inner.config.tenant_id,
        )
        .map_err(|e| {
            let (code, message) = match e {
                TokenError::Expired | TokenError::Revoked => (
                    "ExpiredAuthenticationToken",
                    "The access token expiry UTC time is earlier than current UTC time.".to_owned(),
                ),
                TokenError::WrongTenant => (
                    "InvalidAuthenticationTokenTenant",
                    format!(
                        "The access token is from the wrong issuer. It must match the tenant 'https://sts.windows.net/{}/' associated with this subscription. Please use the authority (URL) 'https://login.windows.net/{}' to get the token.",
                        inner.config.tenant_id, inner.config.tenant_id
                    ),
                ),
                other => ("InvalidAuthenticationToken", other.message().to_owned()),
            };
            Box::new(arm_error(StatusCode::UNAUTHORIZED, code, &message))
        })?;
    if !is_arm_audience(&claims.aud) {
        return Err(Box::new(arm_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            &format!(
                "The access token has been obtained for wrong audience or resource '{}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'.",
                claims.aud
            ),
        )));
    }
    Ok(claims)
}

fn authorization_failed(inner: &Inner, claims: &Claims, action: &str, sub: &str) -> Response {
    arm_error(
        StatusCode::FORBIDDEN,
        "AuthorizationFailed",
        &format!(
            "The client '{}' with object id '{}' does not have authorization to perform action '{action}' over scope '/subscriptions/{sub}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
            claims.appid, inner.principal
        ),
    )
}

/// Whether the principal may read Defender data of `sub` (listed and not denied).
pub(crate) fn can_read(inner: &Inner, sub: &str) -> bool {
    inner.config.arm_role.is_some()
        && !inner
            .config
            .arm_denied_subscriptions
            .iter()
            .any(|d| d == sub)
}

/// Subscriptions `GET /subscriptions` shows the principal: all of them with a role, none without.
pub(crate) fn visible_subscriptions(inner: &Inner) -> Vec<crate::CloudSubscription> {
    if inner.config.arm_role.is_none() {
        return Vec::new();
    }
    inner.world.cloud_subscriptions()
}

pub(super) async fn handle(
    inner: Arc<Inner>,
    parts: &Parts,
    segs: &[String],
    base: String,
    body: Body,
) -> Response {
    let (method, headers) = (&parts.method, &parts.headers);
    let path = parts.uri.path();
    let raw_query = parts.uri.query().unwrap_or("");
    let route = Route::parse(segs);
    let family = if matches!(route, Route::ResourceGraph) {
        Family::ResourceGraph
    } else {
        Family::Arm
    };
    inner.counters.call(family);
    let claims = match authenticate(&inner, headers) {
        Ok(c) => c,
        Err(resp) => return *resp,
    };
    let query = match Query::parse(raw_query) {
        Ok(q) => q,
        Err(e) => return arm_error(StatusCode::BAD_REQUEST, "InvalidQueryParameter", &e.0),
    };
    if matches!(route, Route::Unknown) {
        return arm_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!("The resource '{path}' was not found."),
        );
    }
    let (kind, supported) = route.versions(!inner.config.assessments_without_2025_05_04);
    let Some(version) = query.get("api-version") else {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    };
    if !supported.contains(&version) {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "NoRegisteredProviderFound",
            &format!(
                "No registered resource provider found for location 'global' and API version '{version}' for type '{kind}'. The supported api-versions are '{}'. The supported locations are ', global'.",
                supported.join(", ")
            ),
        );
    }
    let is_rg = matches!(route, Route::ResourceGraph);
    if is_rg != (*method == Method::POST) {
        return arm_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("The method {method} is not allowed on this resource."),
        );
    }
    if let Some(sub) = route.subscription() {
        let known = inner
            .world
            .cloud_subscriptions()
            .into_iter()
            .find(|s| s.subscription_id == sub);
        if !can_read(&inner, sub) {
            return authorization_failed(&inner, &claims, route.action(), sub);
        }
        match known {
            None => {
                return arm_error(
                    StatusCode::NOT_FOUND,
                    "SubscriptionNotFound",
                    &format!("The subscription '{sub}' could not be found."),
                );
            }
            Some(s) if s.state != "Enabled" => {
                return arm_error(
                    StatusCode::CONFLICT,
                    "ReadOnlyDisabledSubscription",
                    &format!(
                        "The subscription '{sub}' is disabled and therefore marked as read only. You cannot perform any write actions on this subscription until it is re-enabled."
                    ),
                );
            }
            Some(_) => {}
        }
    }
    if is_rg {
        return resource_graph::handle(&inner, &claims, body).await;
    }
    // ARM's read bucket for this principal and scope.
    let scope = route.subscription().unwrap_or("tenant").to_owned();
    let verdict = inner
        .arm_buckets
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take(
            &format!("{}/{scope}", claims.oid),
            inner.config.arm_read_burst,
            inner.config.arm_read_refill,
            Instant::now(),
        );
    let header_name = if route.subscription().is_some() {
        "x-ms-ratelimit-remaining-subscription-reads"
    } else {
        "x-ms-ratelimit-remaining-tenant-reads"
    };
    let remaining = match verdict {
        // Unthrottled, the bucket never runs dry: say so, or a client pacing on the header
        // would wait for nothing.
        _ if !inner.config.rate_limits => u64::from(inner.config.arm_read_burst),
        Ok(n) => n,
        Err(wait) => {
            inner.counters.throttled.fetch_add(1, Ordering::Relaxed);
            let mut resp = arm_error(
                StatusCode::TOO_MANY_REQUESTS,
                "SubscriptionRequestsThrottled",
                &format!(
                    "Number of 'read' requests for subscription '{scope}' actor '{}' exceeded. Please try again after '{wait}' seconds after the first request.",
                    claims.oid
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            if let Ok(v) = HeaderValue::from_str("0") {
                resp.headers_mut().insert(header_name, v);
            }
            return resp;
        }
    };
    let fault = choose_fault(&inner, Family::Arm, path, raw_query, false);
    if let Some(Injected::Status(status)) = fault {
        inner.counters.faults.fetch_add(1, Ordering::Relaxed);
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status == 429 {
            inner.counters.throttled.fetch_add(1, Ordering::Relaxed);
            let mut resp = arm_error(
                code,
                "TooManyRequests",
                "The request could not be processed due to an excessive volume of traffic. Please try again later.",
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return resp;
        }
        return arm_error(
            code,
            if status >= 500 {
                "InternalServerError"
            } else {
                "BadRequest"
            },
            "Encountered internal server error. Diagnostic information: timestamp, correlation id.",
        );
    }
    let mut resp = serve(&inner, &route, &query, path, &base, version);
    if let Ok(v) = HeaderValue::from_str(&remaining.to_string()) {
        resp.headers_mut().insert(header_name, v);
    }
    if fault == Some(Injected::Truncate) && resp.status().is_success() {
        inner.counters.faults.fetch_add(1, Ordering::Relaxed);
        return truncate(resp);
    }
    after_fault(&inner, fault, resp)
}

/// A 200 whose JSON stops half-way.
fn truncate(resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let stream = futures::StreamExt::map(body.into_data_stream(), |chunk| {
        chunk.map(|c| c.slice(..c.len() / 2))
    });
    let mut out = Response::from_parts(parts, Body::from_stream(stream));
    out.headers_mut().remove(header::CONTENT_LENGTH);
    out
}

/// `{tick}:{offset}`, base64url: pins later pages to the snapshot of the first.
fn skip_token(tick: i64, offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("{tick}:{offset}"))
}

fn parse_skip_token(s: &str) -> Option<(i64, usize)> {
    let raw = URL_SAFE_NO_PAD.decode(s.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (t, o) = text.split_once(':')?;
    Some((t.parse().ok()?, o.parse().ok()?))
}

fn serve(
    inner: &Inner,
    route: &Route,
    query: &Query,
    path: &str,
    base: &str,
    version: &str,
) -> Response {
    let (tick, offset) = match query.get("$skipToken") {
        None => (inner.tick(), None),
        Some(t) => match parse_skip_token(t) {
            Some((tick, offset)) => (tick, Some(offset)),
            None => {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidSkipToken",
                    "The provided skip token is not valid.",
                );
            }
        },
    };
    let w = &inner.world;
    let view = |sub: &str| w.subscription_view(sub, tick);
    let items: Vec<Value> = match route {
        Route::Subscriptions => visible_subscriptions(inner)
            .iter()
            .map(|s| arm_json::subscription(s, &inner.config.tenant_id))
            .collect(),
        Route::SecureScores(sub) => view(sub).iter().map(arm_json::secure_score).collect(),
        Route::SecureScore(sub, name) => {
            return match view(sub) {
                Some(v) if name.eq_ignore_ascii_case("ascScore") => respond(
                    StatusCode::OK,
                    arm_json::secure_score(&v).to_string().into_bytes(),
                ),
                _ => arm_error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFound",
                    &format!("The secure score '{name}' was not found."),
                ),
            };
        }
        Route::Controls(sub) => {
            let expand = query
                .get("$expand")
                .is_some_and(|e| e.eq_ignore_ascii_case("definition"));
            // The data mode's null score is on the first subscription only: one odd record.
            let null_score = inner.config.null_control_score
                && w.subscriptions.first().is_some_and(|s| s == sub);
            view(sub)
                .map(|v| arm_json::controls(&v, expand, null_score))
                .unwrap_or_default()
        }
        Route::ControlDefinitions => arm_json::control_definitions(),
        Route::Assessments(sub) => view(sub)
            .map(|v| {
                arm_json::assessments(
                    w,
                    &v,
                    version == "2025-05-04",
                    inner.config.cloud_cve_ids_only,
                )
            })
            .unwrap_or_default(),
        Route::Metadata => arm_json::metadata(),
        // After 2026-07-31 the grouped model is gone: an empty list (reference headline), unless
        // the tenant is one from before (a data mode).
        Route::SubAssessments(sub) if inner.config.cloud_legacy_sub_assessments => view(sub)
            .map(|v| cloud_vuln_json::sub_assessments(w, &v))
            .unwrap_or_default(),
        Route::SubAssessments(_) => Vec::new(),
        Route::Pricings(sub) => {
            let index = w.subscriptions.iter().position(|s| s == sub).unwrap_or(0);
            let body = json!({ "value": arm_json::pricings(index, sub) });
            return respond(StatusCode::OK, body.to_string().into_bytes());
        }
        Route::ResourceGraph | Route::Unknown => Vec::new(),
    };
    let page_size = match route {
        // Small pages for the subscription list, so that paging is exercised on every tenant.
        Route::Subscriptions => 2,
        _ => inner.config.arm_page_size as usize,
    };
    inner
        .counters
        .rows
        .fetch_add(items.len() as u64, Ordering::Relaxed);
    let empty_first = matches!(route, Route::Assessments(_))
        && inner.config.arm_empty_first_page
        && offset.is_none();
    let start = offset.unwrap_or(0).min(items.len());
    let (page, next): (Vec<Value>, Option<usize>) = if empty_first {
        (Vec::new(), Some(0))
    } else {
        let end = (start + page_size).min(items.len());
        (
            items[start..end].to_vec(),
            (end < items.len()).then_some(end),
        )
    };
    let mut body = json!({ "value": page });
    if let (Some(next), Some(map)) = (next, body.as_object_mut()) {
        let mut link = format!("{base}{path}?");
        for (k, v) in query.pairs() {
            if k.eq_ignore_ascii_case("$skipToken") {
                continue;
            }
            link.push_str(&format!("{}={}&", encode(k), encode(v)));
        }
        link.push_str(&format!("$skipToken={}", skip_token(tick, next)));
        map.insert("nextLink".into(), link.into());
    }
    if matches!(route, Route::Subscriptions)
        && let Some(map) = body.as_object_mut()
    {
        let total = visible_subscriptions(inner).len();
        map.insert("count".into(), json!({"type": "Total", "value": total}));
    }
    respond(StatusCode::OK, body.to_string().into_bytes())
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%24", "$")
        .replace("%2D", "-")
        .replace("%2E", ".")
}
