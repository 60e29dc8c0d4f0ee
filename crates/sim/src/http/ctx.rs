//! The request context of MDE API handlers, and the OData query options they share.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use crate::state::Inner;

use super::errors::mde;
use super::filter::{Expr, Schema};
use super::query::{Query, whole_number};
use super::stream::{self, Closed, Encoding, ODATA_JSON, Sink, Splice, StreamSpec};

/// The paging and filter options of a list request.
pub(crate) struct ListOptions {
    pub(crate) top: Option<u64>,
    pub(crate) skip: u64,
    pub(crate) filter: Option<Expr>,
    /// `$filter` as sent, for the nextLink.
    pub(crate) raw_filter: Option<String>,
}

/// Everything a handler needs about an authorised request.
pub(crate) struct Ctx {
    pub(crate) sim: Arc<Inner>,
    pub(crate) query: Query,
    /// `http://host:port` of this request, for `@odata.context`, nextLinks and export URLs.
    pub(crate) base: String,
    /// The error `target`: a per-request correlation id.
    pub(crate) target: String,
    pub(crate) encoding: Encoding,
    pub(crate) truncate: bool,
    pub(crate) splice: Splice,
}

/// A request the API refuses, before any response body exists.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }
}

impl Ctx {
    /// Microsoft's error envelope for a refused request.
    pub(crate) fn reject(&self, e: ApiError) -> Response {
        self.error(e.status, e.code, &e.message)
    }

    pub(crate) fn error(&self, status: StatusCode, code: &str, message: &str) -> Response {
        mde(status, code, message, &self.target)
    }

    pub(crate) fn bad(&self, code: &str, message: &str) -> Response {
        self.error(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn not_found(&self, message: &str) -> Response {
        self.error(StatusCode::NOT_FOUND, "ResourceNotFound", message)
    }

    /// Streams an OData JSON response written by `produce`.
    pub(crate) fn json(
        &self,
        produce: impl FnOnce(&mut Sink) -> Result<(), Closed> + Send + 'static,
    ) -> Response {
        let mut resp = stream::respond(
            &self.sim,
            StreamSpec {
                content_type: ODATA_JSON,
                compress: self.encoding,
                content_encoding: true,
                truncate: self.truncate,
                splice: self.splice,
            },
            produce,
        );
        let h = resp.headers_mut();
        h.insert("OData-Version", HeaderValue::from_static("4.0"));
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        resp
    }

    /// `$top`: absent, or an integer in `1..=max`.
    pub(crate) fn top(&self, max: u64) -> Result<Option<u64>, ApiError> {
        let Some(raw) = self.query.get("$top") else {
            return Ok(None);
        };
        let Some(n) = whole_number(raw) else {
            return Err(ApiError::bad(
                "ODataError",
                format!(
                    "Invalid value '{raw}' for $top query option found. The $top query option requires a positive integer value."
                ),
            ));
        };
        if n == 0 || n > max {
            return Err(ApiError::bad(
                "ODataError",
                format!(
                    "The limit of '{max}' for Top query has been exceeded, or the value is below 1. The value from the incoming request is '{raw}'."
                ),
            ));
        }
        Ok(Some(n))
    }

    /// A list's `$top` (at most `max`), `$skip` and `$filter` (over `schema`), checked in that
    /// order: the first that is wrong is the answer.
    pub(crate) fn list_options(&self, max: u64, schema: &Schema) -> Result<ListOptions, ApiError> {
        Ok(ListOptions {
            top: self.top(max)?,
            skip: self.skip()?,
            filter: self.filter(schema)?,
            raw_filter: self.query.get("$filter").map(str::to_owned),
        })
    }

    pub(crate) fn skip(&self) -> Result<u64, ApiError> {
        let Some(raw) = self.query.get("$skip") else {
            return Ok(0);
        };
        match whole_number(raw) {
            Some(n) => Ok(n),
            None => Err(ApiError::bad(
                "ODataError",
                format!(
                    "Invalid value '{raw}' for $skip query option found. The $skip query option requires a non-negative integer value."
                ),
            )),
        }
    }

    pub(crate) fn filter(&self, schema: &Schema) -> Result<Option<Expr>, ApiError> {
        match self.query.get("$filter") {
            None => Ok(None),
            Some(f) => Expr::parse(f, schema).map(Some).map_err(|e| {
                ApiError::bad("ODataError", format!("Invalid filter clause: {}", e.0))
            }),
        }
    }
}
