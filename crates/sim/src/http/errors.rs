//! Error bodies in each service's own shape: MDE's JSON envelope, Entra's AADSTS body, Azure Storage XML.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::time::{Ts, entra_ts, iso_ts, wall_secs};

pub(crate) const JSON: &str = "application/json; charset=utf-8";

/// `{"error":{"code","message","target"}}`, the envelope of every MDE API error (<https://learn.microsoft.com/en-us/defender-endpoint/api/common-errors>).
pub(crate) fn mde(status: StatusCode, code: &str, message: &str, target: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message, "target": target}});
    let mut resp = (status, [(header::CONTENT_TYPE, JSON)], body.to_string()).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

/// 429 with `Retry-After` in whole seconds.
pub(crate) fn too_many(retry_after: u64, target: &str) -> Response {
    let mut resp = mde(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        &format!("Rate limit is exceeded. Try again in {retry_after} seconds."),
        target,
    );
    if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// The MDE error for an injected status.
pub(crate) fn injected(status: u16, target: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match status {
        429 => too_many(1, target),
        400 => mde(code, "BadRequest", "Bad request.", target),
        401 => mde(
            code,
            "Unauthorized",
            "Authorization token validation failed.",
            target,
        ),
        403 => mde(code, "Forbidden", "Access is forbidden.", target),
        404 => mde(
            code,
            "ResourceNotFound",
            "The resource was not found.",
            target,
        ),
        503 => mde(
            code,
            "ServiceUnavailable",
            "The service is temporarily unavailable.",
            target,
        ),
        _ if status < 500 => mde(code, "BadRequest", "Bad request.", target),
        _ => mde(code, "InternalServerError", "", target),
    }
}

/// An Entra token-endpoint error (<https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes>): `error`, `error_description` with `\r\n`-separated trailer,
/// `error_codes`, `timestamp`, `trace_id`, `correlation_id`, and `error_uri` for some codes.
/// Microsoft Entra throttling a client-credentials token request: 429 with `Retry-After` (60 s in
/// practice), per https://learn.microsoft.com/en-us/entra/msal/dotnet/advanced/client-and-server-throttling.
pub(crate) fn token_throttled(retry_after: u32, json: bool) -> Response {
    let mut resp = if json {
        aad(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            50196,
            "The server terminated an operation because it encountered a client request loop. Please try again.",
            None,
        )
    } else {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::CONTENT_TYPE, "text/plain")],
            "Too Many Requests",
        )
            .into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

pub(crate) fn aad(
    status: StatusCode,
    error: &str,
    code: u32,
    text: &str,
    correlation: Option<&str>,
) -> Response {
    let trace = uuid::Uuid::new_v4().to_string();
    let correlation = correlation.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let ts = entra_ts(wall_secs());
    let mut body = serde_json::json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {ts}"
        ),
        "error_codes": [code],
        "timestamp": ts,
        "trace_id": trace,
        "correlation_id": correlation,
    });
    if matches!(
        code,
        90002 | 50059 | 700016 | 7000215 | 7000222 | 500011 | 70011 | 700022
    ) && let Some(map) = body.as_object_mut()
    {
        map.insert(
            "error_uri".into(),
            format!("https://login.microsoftonline.com/error?code={code}").into(),
        );
    }
    (
        status,
        [
            (header::CONTENT_TYPE, JSON),
            (header::CACHE_CONTROL, "no-store, no-cache"),
            (header::PRAGMA, "no-cache"),
        ],
        body.to_string(),
    )
        .into_response()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Azure Storage's XML error (blob downloads).
pub(crate) fn storage(
    status: StatusCode,
    code: &str,
    message: &str,
    detail: Option<&str>,
) -> Response {
    let request_id = uuid::Uuid::new_v4();
    let time = iso_ts(Ts::at(wall_secs()));
    let detail = detail
        .map(|d| {
            format!(
                "<AuthenticationErrorDetail>{}</AuthenticationErrorDetail>",
                xml_escape(d)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>{}\nRequestId:{request_id}\nTime:{time}</Message>{detail}</Error>",
        xml_escape(message)
    );
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    h.insert(
        "x-ms-error-code",
        HeaderValue::from_str(code).unwrap_or(HeaderValue::from_static("Error")),
    );
    if let Ok(v) = HeaderValue::from_str(&request_id.to_string()) {
        h.insert("x-ms-request-id", v);
    }
    resp
}
