//! Rendering a template into a response.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::error::AppError;

pub fn page(t: &impl Template) -> Result<Response, AppError> {
    with_status(StatusCode::OK, t)
}

pub fn with_status(status: StatusCode, t: &impl Template) -> Result<Response, AppError> {
    let html = t.render().map_err(AppError::internal)?;
    Ok((status, Html(html)).into_response())
}

/// Short, human dates for tables.
pub fn when(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub fn when_opt(t: &Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.as_ref().map(when).unwrap_or_else(|| "—".into())
}
