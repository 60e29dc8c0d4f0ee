//! `/metrics` in the Prometheus text format (OpenMetrics flavour), written by the Prometheus
//! project's `prometheus-client` crate.
//!
//! Sync and job numbers are read from the store at scrape time (a handful of small queries per
//! integration): every process sharing the database reports the same truth, and nothing is lost
//! when the server restarts. Request latency is the one thing only this process knows; it is kept
//! in memory from the start of the process.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use axum::Extension;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rampart_model::{EntityCounts, RunStatus, SyncRun, Verdict};
use rampart_store::{JobState, Store};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::state::AppState;

// Units are spelled in the names (`_seconds`), not declared with `# UNIT`: some parsers refuse
// a unit on a histogram.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Runs looked at per integration to find its newest finished one (a running run may be first).
const RUNS_LOOKED_AT: u32 = 3;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    /// The matched route pattern (`/api/v1/integrations/{id}`), never the raw URL: one series per
    /// route, not per asset id.
    route: String,
    status: u16,
}

type LatencyFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// The request latency histogram of this process.
#[derive(Clone)]
pub(crate) struct HttpMetrics {
    latency: LatencyFamily,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        fn histogram() -> Histogram {
            // 5 ms … ~10 s: portal pages, API pages and the odd large CSV download.
            Histogram::new(exponential_buckets(0.005, 2.0, 12))
        }
        Self {
            latency: Family::new_with_constructor(histogram as fn() -> Histogram),
        }
    }
}

/// Times one request by method, matched route and status.
pub(crate) async fn track(State(http): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // Methods outside the standard set are one series, not one per made-up verb.
    let method = match req.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m.to_owned(),
        _ => "other".to_owned(),
    };
    let started = Instant::now();
    let response = next.run(req).await;
    http.latency
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// What the `/metrics` handler needs besides the application state.
#[derive(Clone)]
pub(super) struct Scrape {
    http: HttpMetrics,
    /// SHA-256 of the bearer token `/metrics` asks for, if any: compared as digests, so the time a
    /// comparison takes says nothing about the token.
    token_digest: Option<Arc<[u8; 32]>>,
}

impl Scrape {
    pub(super) fn new(http: HttpMetrics, token: Option<SecretString>) -> Self {
        Self {
            http,
            token_digest: token.map(|t| Arc::new(digest(t.expose_secret()))),
        }
    }

    fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.token_digest else {
            return true;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| digest(given.trim()) == **expected)
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

pub(super) async fn scrape(
    State(state): State<AppState>,
    Extension(scrape): Extension<Scrape>,
    headers: HeaderMap,
) -> Response {
    if !scrape.allows(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "/metrics needs the metrics bearer token (Authorization: Bearer TOKEN)",
        )
            .into_response();
    }
    let mut registry = Registry::with_prefix("rampart");
    if let Err(e) = register_store_metrics(&mut registry, state.store().as_ref()).await {
        tracing::error!(message = "Metrics: reading the store failed.", error = %e);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the database cannot be read; see /readyz",
        )
            .into_response();
    }
    registry.register(
        "http_request_duration_seconds",
        "Time to answer an HTTP request, by method, route pattern and status",
        scrape.http.latency.clone(),
    );
    let mut body = String::new();
    if let Err(e) = encode(&mut body, &registry) {
        tracing::error!(message = "Metrics: encoding failed.", error = %e);
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Integration {
    integration: String,
    product: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rows {
    integration: String,
    product: String,
    /// assets, findings, vulnerabilities, recommendations
    entity: String,
    /// read, new, updated, resolved, reopened, skipped
    change: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    integration: String,
    product: String,
    /// status: succeeded, partial, failed; verdict: complete, incomplete, held, none
    value: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    state: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The sync and job numbers, as the store has them now.
async fn register_store_metrics(
    registry: &mut Registry,
    store: &dyn Store,
) -> Result<(), rampart_store::StoreError> {
    let last_success = Family::<Integration, FloatGauge>::default();
    let duration = Family::<Integration, FloatGauge>::default();
    let api_calls = Family::<Integration, Gauge>::default();
    let throttled = Family::<Integration, Gauge>::default();
    let retries = Family::<Integration, Gauge>::default();
    let rows = Family::<Rows, Gauge>::default();
    let status = Family::<Outcome, Gauge>::default();
    let verdict = Family::<Outcome, Gauge>::default();

    for integration in store
        .list_integrations(&rampart_store::Visibility::All)
        .await?
    {
        let labels = Integration {
            integration: integration.name.to_string(),
            product: integration.product.to_string(),
        };
        if let Some(run) = store
            .last_successful_run(&rampart_store::Visibility::All, integration.id)
            .await?
            && let Some(finished) = run.finished_at
        {
            last_success
                .get_or_create(&labels)
                .set(finished.timestamp_millis() as f64 / 1000.0);
        }
        let runs = store
            .list_runs(
                &rampart_store::Visibility::All,
                integration.id,
                RUNS_LOOKED_AT,
            )
            .await?;
        let Some(run) = runs.iter().find(|r| r.finished_at.is_some()) else {
            continue;
        };
        if let Some(finished) = run.finished_at {
            let seconds = (finished - run.started_at).num_milliseconds().max(0) as f64 / 1000.0;
            duration.get_or_create(&labels).set(seconds);
        }
        api_calls
            .get_or_create(&labels)
            .set(gauge_value(run.api_calls));
        throttled
            .get_or_create(&labels)
            .set(gauge_value(run.throttled));
        retries.get_or_create(&labels).set(gauge_value(run.retries));
        record_rows(&rows, &labels, run);
        let outcome = |value: &str| Outcome {
            integration: labels.integration.clone(),
            product: labels.product.clone(),
            value: value.to_owned(),
        };
        // One series per possible value, 1 for the current one (the Prometheus "enum" idiom):
        // alerts can say `== 0` without knowing which other value it took.
        for value in ["succeeded", "partial", "failed"] {
            let current = status_word(run.status) == value;
            status
                .get_or_create(&outcome(value))
                .set(i64::from(current));
        }
        let run_verdict = verdict_word(run.verdict.as_ref());
        for value in ["complete", "incomplete", "held", "none"] {
            verdict
                .get_or_create(&outcome(value))
                .set(i64::from(run_verdict == value));
        }
    }

    registry.register(
        "sync_last_success_timestamp_seconds",
        "When the newest successful sync of the integration finished (Unix time)",
        last_success,
    );
    registry.register(
        "sync_last_run_duration_seconds",
        "How long the newest finished sync of the integration took",
        duration,
    );
    registry.register(
        "sync_last_run_api_calls",
        "Microsoft API calls of the newest finished sync",
        api_calls,
    );
    registry.register(
        "sync_last_run_throttled",
        "Answers 429 (throttled) in the newest finished sync",
        throttled,
    );
    registry.register(
        "sync_last_run_retries",
        "Retried requests in the newest finished sync",
        retries,
    );
    registry.register(
        "sync_last_run_rows",
        "Rows of the newest finished sync, by entity and what happened to them (read, new, updated, resolved, reopened, skipped)",
        rows,
    );
    registry.register(
        "sync_last_run_status",
        "Status of the newest finished sync: 1 for the status it has, 0 for the others",
        status,
    );
    registry.register(
        "sync_last_run_verdict",
        "Verdict of the newest finished sync (complete, incomplete, held, none): 1 for its verdict, 0 for the others",
        verdict,
    );
    register_job_metrics(registry, store).await
}

/// Most active jobs looked at; one per integration at most, so this bounds nothing real.
const JOBS_LOOKED_AT: u32 = 10_000;

async fn register_job_metrics(
    registry: &mut Registry,
    store: &dyn Store,
) -> Result<(), rampart_store::StoreError> {
    let now = Utc::now();
    let jobs = store
        .list_jobs(&rampart_store::Visibility::All, None, true, JOBS_LOOKED_AT)
        .await?;
    let by_state = Family::<JobLabels, Gauge>::default();
    let mut due = 0_i64;
    let mut oldest_due = None;
    for state in ["queued", "running"] {
        // Both series exist even at zero: a missing series is not a zero to alert rules.
        by_state
            .get_or_create(&JobLabels {
                state: state.to_owned(),
            })
            .set(0);
    }
    for job in &jobs {
        let state = match job.state {
            JobState::Queued => "queued",
            JobState::Running => "running",
            _ => continue,
        };
        by_state
            .get_or_create(&JobLabels {
                state: state.to_owned(),
            })
            .inc();
        if job.state == JobState::Queued && job.run_at <= now {
            due += 1;
            oldest_due =
                Some(oldest_due.map_or(job.run_at, |o: chrono::DateTime<Utc>| o.min(job.run_at)));
        }
    }
    let due_gauge = Gauge::<i64>::default();
    due_gauge.set(due);
    let oldest = FloatGauge::default();
    oldest.set(oldest_due.map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0));
    registry.register(
        "jobs",
        "Sync jobs queued (scheduled or requested, due or not) and running",
        by_state,
    );
    registry.register(
        "jobs_due",
        "Queued sync jobs whose time has come and that no worker has taken yet (the queue depth)",
        due_gauge,
    );
    registry.register(
        "jobs_oldest_due_age_seconds",
        "How long the oldest due job has waited for a worker (0 when none waits)",
        oldest,
    );
    Ok(())
}

fn record_rows(rows: &Family<Rows, Gauge>, labels: &Integration, run: &SyncRun) {
    let entities: [(&str, &EntityCounts); 4] = [
        ("assets", &run.assets),
        ("findings", &run.findings),
        ("vulnerabilities", &run.vulnerabilities),
        ("recommendations", &run.recommendations),
    ];
    for (entity, counts) in entities {
        let changes = [
            ("read", counts.read),
            ("new", counts.new),
            ("updated", counts.updated),
            ("resolved", counts.resolved),
            ("reopened", counts.reopened),
            ("skipped", counts.skipped),
        ];
        for (change, n) in changes {
            rows.get_or_create(&Rows {
                integration: labels.integration.clone(),
                product: labels.product.clone(),
                entity: entity.to_owned(),
                change: change.to_owned(),
            })
            .set(gauge_value(n));
        }
    }
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn status_word(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "running",
        RunStatus::Succeeded => "succeeded",
        RunStatus::Partial => "partial",
        RunStatus::Failed => "failed",
    }
}

fn verdict_word(verdict: Option<&Verdict>) -> &'static str {
    match verdict {
        None => "none",
        Some(Verdict::Complete) => "complete",
        Some(Verdict::Incomplete(_)) => "incomplete",
        Some(Verdict::Held(_)) => "held",
    }
}
