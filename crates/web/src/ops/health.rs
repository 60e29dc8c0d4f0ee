//! `/healthz` and `/readyz`, in the sense of Kubernetes' probes
//! (<https://kubernetes.io/docs/reference/using-api/health-checks/>): liveness says only that the
//! process answers; readiness says that it can do its work.

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// How long `/readyz` waits for the database: a probe must answer even when the database hangs.
const DATABASE_WAIT: Duration = Duration::from_secs(5);

/// The process is up. Touches nothing else, so a slow database never gets a healthy process
/// restarted.
pub(super) async fn healthz() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok").into_response()
}

/// The database answers and its schema is this build's: 200 "ready", else 503 with a
/// problem+json (RFC 9457) saying which.
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let problem = match tokio::time::timeout(DATABASE_WAIT, state.store().schema_state()).await {
        Err(_) => Some((
            "database-unreachable",
            format!(
                "the database did not answer within {} seconds",
                DATABASE_WAIT.as_secs()
            ),
        )),
        Ok(Err(e)) => Some((
            "database-unreachable",
            format!("the database cannot be reached: {e}"),
        )),
        Ok(Ok(schema)) => schema.problem().map(|p| ("schema-not-current", p)),
    };
    match problem {
        None => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "ready",
        )
            .into_response(),
        Some((check, detail)) => {
            tracing::warn!(message = "Not ready.", check, detail = %detail);
            let body = serde_json::json!({
                "type": "about:blank",
                "title": "Not ready",
                "status": 503,
                "check": check,
                "detail": detail,
            });
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "application/problem+json")],
                body.to_string(),
            )
                .into_response()
        }
    }
}
