//! The one error type of the web layer. The portal shows it as an HTML page (or sends an
//! anonymous visitor to the login page); the API wraps it in [`ApiError`] and answers
//! `application/problem+json`. Neither ever shows a Rust debug dump or a secret: internal errors
//! are logged and answered with a generic message.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use rampart_store::StoreError;
use rampart_sync::exceptions::ExceptionError;
use rampart_sync::integrations::IntegrationError;
use rampart_sync::sla::SettingsError;
use rampart_sync::webhooks::WebhookError;
use serde::Serialize;

use crate::layout::Layout;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    NotFound(String),
    /// No valid session (portal) or bearer token (API).
    #[error("sign in first")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("too many attempts: wait a minute and try again")]
    TooManyRequests,
    /// The database cannot serve (a full disk, a damaged file): the store's message says what
    /// to do and holds no secret, so it is shown.
    #[error("{0}")]
    Unavailable(String),
    /// Something broke inside; the message is logged, never shown.
    #[error("an internal error occurred; the server log has the details")]
    Internal(String),
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Unauthenticated => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        AppError::Internal(e.to_string())
    }

    fn title(&self) -> &'static str {
        match self {
            AppError::NotFound(_) => "Not found",
            AppError::Unauthenticated => "Sign in required",
            AppError::Forbidden(_) => "Forbidden",
            AppError::BadRequest(_) => "Bad request",
            AppError::Conflict(_) => "Conflict",
            AppError::TooManyRequests => "Too many requests",
            AppError::Unavailable(_) => "Database unavailable",
            AppError::Internal(_) => "Internal error",
        }
    }

    fn log(&self) {
        if let AppError::Internal(detail) | AppError::Unavailable(detail) = self {
            tracing::error!(message = "Request failed.", error = %detail);
        }
    }
}

/// What a person gave wrong is a bad request; a secret the vault cannot seal or open is internal.
impl From<IntegrationError> for AppError {
    fn from(e: IntegrationError) -> Self {
        match e {
            IntegrationError::Invalid(problems) => {
                AppError::BadRequest(problems.on_form().join("; "))
            }
            IntegrationError::Store(e) => e.into(),
            IntegrationError::Vault(e) => AppError::internal(e),
        }
    }
}

/// What a person gave wrong is a bad request; an exception already ended is a conflict.
impl From<ExceptionError> for AppError {
    fn from(e: ExceptionError) -> Self {
        match e {
            ExceptionError::Invalid(m) => AppError::BadRequest(m),
            ExceptionError::NotFound(m) => AppError::NotFound(m),
            ExceptionError::Conflict(m) => AppError::Conflict(m),
            ExceptionError::Store(e) => e.into(),
        }
    }
}

/// Settings a caller may not change are forbidden (the caller can see them); what a person gave
/// wrong is a bad request.
impl From<SettingsError> for AppError {
    fn from(e: SettingsError) -> Self {
        match e {
            SettingsError::Forbidden(m) => AppError::Forbidden(m),
            SettingsError::Invalid(m) => AppError::BadRequest(m),
            SettingsError::NotFound(m) => AppError::NotFound(m),
            SettingsError::Store(e) => e.into(),
        }
    }
}

/// What a person gave wrong is a bad request; a name taken is a conflict.
impl From<WebhookError> for AppError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Invalid(m) => AppError::BadRequest(m),
            WebhookError::NotFound(m) => AppError::NotFound(m),
            WebhookError::Conflict(m) => AppError::Conflict(m),
            WebhookError::Vault(e) => AppError::Internal(e.to_string()),
            WebhookError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => AppError::NotFound(m),
            StoreError::Conflict(m) => AppError::Conflict(m),
            StoreError::InvalidInput(m) => AppError::BadRequest(m),
            e @ (StoreError::DiskFull { .. } | StoreError::Damaged(_)) => {
                AppError::Unavailable(e.to_string())
            }
            other => AppError::Internal(other.to_string()),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    title: &'a str,
    message: String,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        self.log();
        if matches!(self, AppError::Unauthenticated) {
            return Redirect::to("/login").into_response();
        }
        let page = ErrorPage {
            layout: Layout::bare(self.title()),
            title: self.title(),
            message: self.to_string(),
        };
        match page.render() {
            Ok(html) => (self.status(), Html(html)).into_response(),
            Err(_) => (self.status(), self.title()).into_response(),
        }
    }
}

/// An [`AppError`] answered as RFC 9457 problem details.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl<E: Into<AppError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

/// RFC 9457 problem details.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong and what to do, in words.
    pub detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        e.log();
        let detail = match &e {
            AppError::Unauthenticated => {
                "send an API token: Authorization: Bearer <token> (an admin creates tokens under Management > API tokens)".into()
            }
            other => other.to_string(),
        };
        problem(e.status(), e.title(), detail)
    }
}

/// An RFC 9457 problem details response.
fn problem(status: StatusCode, title: &str, detail: String) -> Response {
    let body = Problem {
        kind: "about:blank".into(),
        title: title.into(),
        status: status.as_u16(),
        detail,
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let mut response = (status, json).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

const PROBLEM_JSON: &str = "application/problem+json";

/// Longest error text of a framework rejection kept as a problem's detail.
const MAX_REJECTION_TEXT: usize = 16 * 1024;

/// Middleware around the whole router (so that it also sees the body-size limit's answers),
/// acting on the API's paths only: every error answer is problem+json. Handlers answer their errors so
/// already; this turns what never reaches a handler (axum's extractor rejections: a malformed
/// query string or JSON body, a wrong content type, a path id that is no number; an unknown
/// method; a body over the size limit) from plain text into problem details with the same status
/// and the rejection's words.
pub(crate) async fn problem_json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !request.uri().path().starts_with("/api/v1/") {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_REJECTION_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let detail = match status {
        StatusCode::METHOD_NOT_ALLOWED => format!(
            "this path does not accept {method}; the API's paths and methods are listed at /api/docs"
        ),
        StatusCode::NOT_FOUND if text.is_empty() => {
            "there is no such API path; the API's paths are listed at /api/docs".to_owned()
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => format!(
            "{}: send the body as JSON with the header Content-Type: application/json",
            if text.is_empty() {
                "unsupported media type"
            } else {
                text.as_str()
            }
        ),
        StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than the 1 MiB the API accepts".to_owned()
        }
        _ if text.is_empty() => status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_owned(),
        _ => text,
    };
    let title = status.canonical_reason().unwrap_or("Error");
    let mut answer = problem(status, title, detail);
    // Keep what the status needs (Allow on 405, Retry-After), not the old body's type or length.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().entry(name).or_insert(value.clone());
        }
    }
    answer
}
