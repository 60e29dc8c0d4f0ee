//! What an operator's tooling asks the server: is the process up (`/healthz`), can it serve
//! (`/readyz`: database reachable, schema current) and how is it doing (`/metrics`, Prometheus).
//! None of these routes needs a session; `/metrics` may ask for a bearer token of its own.

mod health;
mod metrics;

use axum::Router;
use axum::middleware;
use axum::routing::get;
use secrecy::SecretString;

use crate::state::AppState;

pub(crate) use metrics::HttpMetrics;

/// Adds the operator routes to `routes` and times every request of the result by route.
/// `metrics_token`: when set, `/metrics` answers only requests bearing it.
pub(crate) fn wrap(
    routes: Router<AppState>,
    metrics_token: Option<SecretString>,
) -> Router<AppState> {
    let http = HttpMetrics::default();
    let scrape = metrics::Scrape::new(http.clone(), metrics_token);
    let ops = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::scrape))
        .layer(axum::Extension(scrape));
    routes
        .merge(ops)
        // Router::layer wraps each route, so the middleware sees the matched route pattern.
        .layer(middleware::from_fn_with_state(http, metrics::track))
}
