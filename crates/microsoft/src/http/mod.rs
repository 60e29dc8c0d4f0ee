//! The one HTTP path every Defender for Endpoint request takes: rate limit, bearer token, send,
//! classify the answer, retry or fail with a typed error. Paging and the small
//! reads build on [`Core::send`]; no endpoint has its own loop.
//!
//! | answer | what happens |
//! |---|---|
//! | 2xx | returned to the caller (bodies are streamed by the caller) |
//! | 429 | wait `Retry-After` (else exponential from 5 s, jittered), bounded; counted in `throttled` |
//! | 5xx, 408, timeout, reset, cut body | bounded retries with jittered exponential backoff |
//! | 2xx whose body is whole but not JSON | [`ApiError::MalformedBody`] at once, with the byte offset |
//! | 401 | invalidate the token, retry once |
//! | 404 | retried once (Microsoft has sent intermittent 404s), then [`ApiError::Refused`] |
//! | 403 `Forbidden` | what the caller's [`OnForbidden`] makes of it (Defender for Endpoint: the application role to grant) |
//! | other 4xx | [`ApiError::Refused`] |
//!
//! This module sits below the token client and the products: it gets its bearer tokens through
//! [`TokenSource`] and the meaning of a 403 through [`OnForbidden`], both given by its caller.

pub(crate) mod body;
mod limits;
mod metrics;
mod retry;
mod token;

use std::sync::Arc;
use std::time::Duration;

use reqwest::Response;
use reqwest::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde_json::error::Category;
use url::Url;

pub use limits::{FamilyLimit, RateLimits};
pub(crate) use limits::{Limiters, Pauses};
pub use metrics::{Metrics, MetricsSnapshot};
pub(crate) use retry::{Budget, ThrottleVerdict};
pub use retry::{RetryPolicy, parse_retry_after};
pub(crate) use token::{Bearer, OnForbidden, TokenSource};

use crate::cloud::AllowedHosts;
use crate::error::{ApiError, Refusal, RefusalDetail};
use crate::family::ApiFamily;
use crate::text::bounded;
use crate::wire::mde::ErrorEnvelope;
use body::{describe, read_bounded, snippet};

/// Transport settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// TCP + TLS connection setup.
    pub connect_timeout: Duration,
    /// Longest wait for the response headers, and for each next chunk of a body (an idle timeout,
    /// not a total: a 200 MB page may take minutes, but never stalls that long).
    pub read_timeout: Duration,
    /// Total time of one token request.
    pub token_timeout: Duration,
    /// Microsoft asks partners for `MdatpPartner-{Company}-{Product}/{Version}`.
    pub user_agent: String,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(120),
            token_timeout: Duration::from_secs(30),
            user_agent: format!("MdatpPartner-Rampart-Rampart/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Builds the shared client: rustls, gzip and deflate (Microsoft may answer `Content-Encoding:
/// deflate`), no redirects (a redirect must never carry the token elsewhere).
pub(crate) fn build_client(opts: &HttpOptions) -> Result<reqwest::Client, ApiError> {
    reqwest::Client::builder()
        .user_agent(opts.user_agent.clone())
        .connect_timeout(opts.connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .gzip(true)
        .deflate(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| ApiError::Client(describe(&e)))
}

/// `hh:mm:ss` (Resource Graph's `x-ms-user-quota-resets-after`), at least one second.
fn parse_hms(s: &str) -> Option<Duration> {
    let mut parts = s.trim().split(':');
    let (h, m, sec) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let secs = h.parse::<u64>().ok()? * 3600
        + m.parse::<u64>().ok()? * 60
        + sec.parse::<f64>().ok()?.ceil() as u64;
    Some(Duration::from_secs(secs.max(1)))
}

/// Whether a body begins like a JSON object or array (after whitespace and a byte order mark).
fn starts_as_json(bytes: &[u8]) -> bool {
    let rest = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF][..]).unwrap_or(bytes);
    matches!(
        rest.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

/// A small answer that is not JSON, as [`ApiError::MalformedBody`] with the byte offset of
/// `serde_json`'s line and column, and the text there.
fn malformed_answer(family: ApiFamily, bytes: &[u8], e: &serde_json::Error) -> ApiError {
    let mut offset = 0usize;
    for _ in 1..e.line() {
        match bytes[offset..].iter().position(|b| *b == b'\n') {
            Some(p) => offset += p + 1,
            None => break,
        }
    }
    offset = offset
        .saturating_add(e.column().saturating_sub(1))
        .min(bytes.len());
    let from = offset.saturating_sub(40);
    let to = offset.saturating_add(40).min(bytes.len());
    ApiError::MalformedBody {
        family,
        offset: offset as u64,
        detail: e.to_string().chars().take(200).collect(),
        sample: snippet(&bytes[from..to], 80),
    }
}

/// Longest error body read (the rest is dropped).
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Shared state of one client: everything a request needs.
#[derive(Debug)]
pub(crate) struct Core {
    pub http: reqwest::Client,
    pub tokens: Arc<dyn TokenSource>,
    /// What a 403 `Forbidden` means for this client's API.
    pub on_forbidden: OnForbidden,
    pub limiters: Limiters,
    /// Waits Azure's answers ask for (remaining-budget headers).
    pub pauses: Pauses,
    pub retry: RetryPolicy,
    pub metrics: Arc<Metrics>,
    pub allowed: AllowedHosts,
    pub read_timeout: Duration,
}

/// What a client (Defender for Endpoint or for Cloud) builds its [`Core`] from. The HTTP client and
/// the metrics are shared with its token source, which is built first.
pub(crate) struct CoreSetup<'a> {
    pub http: reqwest::Client,
    pub metrics: Arc<Metrics>,
    pub tokens: Arc<dyn TokenSource>,
    pub on_forbidden: OnForbidden,
    pub allowed: AllowedHosts,
    pub retry: RetryPolicy,
    pub rate_limits: &'a RateLimits,
    pub read_timeout: Duration,
}

impl Core {
    pub fn new(setup: CoreSetup<'_>) -> Core {
        Core {
            http: setup.http,
            tokens: setup.tokens,
            on_forbidden: setup.on_forbidden,
            limiters: Limiters::new(setup.rate_limits),
            pauses: Pauses::new(setup.rate_limits),
            retry: setup.retry,
            metrics: setup.metrics,
            allowed: setup.allowed,
            read_timeout: setup.read_timeout,
        }
    }

    /// Sends a GET with the bearer token and returns a 2xx response, retrying what the table in the
    /// module docs says to retry. `budget` is shared with the caller, who may spend more of it on
    /// body failures.
    pub async fn send(
        &self,
        family: ApiFamily,
        url: &Url,
        budget: &mut Budget<'_>,
    ) -> Result<Response, ApiError> {
        self.send_with(family, url, None, budget).await
    }

    /// [`Core::send`] with an optional JSON body, which makes it a POST (Resource Graph queries).
    pub async fn send_with(
        &self,
        family: ApiFamily,
        url: &Url,
        json_body: Option<&[u8]>,
        budget: &mut Budget<'_>,
    ) -> Result<Response, ApiError> {
        // Checked here as well as where links are followed: the token goes nowhere else.
        if !self.allowed.allows(url) {
            return Err(ApiError::UntrustedNextLink {
                family,
                host: url.origin().ascii_serialization(),
            });
        }
        loop {
            let queued = std::time::Instant::now();
            self.pauses.wait(family).await;
            self.limiters.acquire(family).await;
            let waited = queued.elapsed();
            if waited >= Duration::from_secs(1) {
                // Staying under Microsoft's documented limits; worth seeing when it slows a sync.
                tracing::info!(family = %family, waited_ms = waited.as_millis() as u64, "rate limit wait");
            }
            let token = self.tokens.bearer().await?;
            budget.attempts += 1;
            self.metrics.api_call();
            let builder = match json_body {
                Some(body) => self
                    .http
                    .post(url.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.to_vec()),
                None => self.http.get(url.clone()),
            };
            let request = builder
                .bearer_auth(token.secret())
                .header(ACCEPT, "application/json")
                .send();
            let resp = match tokio::time::timeout(self.read_timeout, request).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    self.backoff_or_fail(family, budget, None, describe(&e))
                        .await?;
                    continue;
                }
                Err(_) => {
                    let reason = format!("no answer within {} s", self.read_timeout.as_secs());
                    self.backoff_or_fail(family, budget, None, reason).await?;
                    continue;
                }
            };
            let status = resp.status().as_u16();
            if let Some(pause) = self.pauses.observe(family, resp.headers()) {
                tracing::info!(family = %family, pause_ms = pause.as_millis() as u64, "Azure reports the budget spent, pausing");
            }
            match status {
                200..=299 => return Ok(resp),
                401 if !budget.reauthenticated => {
                    // The token expired early or was revoked: one fresh token, one more try.
                    budget.reauthenticated = true;
                    self.tokens.invalidate(token.as_ref());
                    self.metrics.retry();
                    tracing::info!(family = %family, status, attempt = budget.attempts, "token refused, fetching a new one");
                }
                429 => {
                    self.metrics.throttle();
                    let retry_after = resp
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, chrono::Utc::now()))
                        // Resource Graph says when its quota window resets instead (`hh:mm:ss`).
                        .or_else(|| {
                            resp.headers()
                                .get("x-ms-user-quota-resets-after")
                                .and_then(|v| v.to_str().ok())
                                .and_then(parse_hms)
                        });
                    let mut api = self.api_error(family, resp).await;
                    api.retry_after = retry_after;
                    match budget.throttled(retry_after) {
                        ThrottleVerdict::Wait(wait) => {
                            tracing::warn!(
                                family = %family,
                                status,
                                attempt = budget.attempts,
                                wait_ms = wait.as_millis() as u64,
                                retry_after_s = retry_after.map(|d| d.as_secs()),
                                "throttled"
                            );
                            tokio::time::sleep(wait).await;
                        }
                        ThrottleVerdict::GiveUp => return Err(ApiError::Refused(api)),
                    }
                }
                408 | 500..=599 => {
                    let api = self.api_error(family, resp).await;
                    let reason = match &api.code {
                        Some(code) => format!("HTTP {status} {code}"),
                        None => format!("HTTP {status}"),
                    };
                    self.backoff_or_fail(family, budget, Some(status), reason)
                        .await?;
                }
                404 if !budget.retried_not_found => {
                    budget.retried_not_found = true;
                    let _ = self.api_error(family, resp).await;
                    let delay = self.retry.backoff(1);
                    self.metrics.retry();
                    tracing::warn!(family = %family, status, attempt = budget.attempts, delay_ms = delay.as_millis() as u64, "retrying");
                    tokio::time::sleep(delay).await;
                }
                403 => {
                    let api = self.api_error(family, resp).await;
                    let forbidden = api
                        .code
                        .as_deref()
                        .is_some_and(|c| c.eq_ignore_ascii_case("Forbidden"));
                    if forbidden {
                        return Err((self.on_forbidden)(api, token.as_ref()));
                    }
                    return Err(ApiError::Refused(api));
                }
                _ => return Err(ApiError::Refused(self.api_error(family, resp).await)),
            }
        }
    }

    /// Sends a GET and parses a small JSON answer (at most `limit` bytes).
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        family: ApiFamily,
        url: &Url,
        limit: usize,
    ) -> Result<T, ApiError> {
        self.call_json(family, url, None, limit).await
    }

    /// [`Core::get_json`], or a POST when `json_body` is given.
    pub async fn call_json<T: DeserializeOwned>(
        &self,
        family: ApiFamily,
        url: &Url,
        json_body: Option<&[u8]>,
        limit: usize,
    ) -> Result<T, ApiError> {
        let mut budget = Budget::new(&self.retry);
        loop {
            let resp = self.send_with(family, url, json_body, &mut budget).await?;
            let reason =
                match tokio::time::timeout(self.read_timeout, read_bounded(resp, limit)).await {
                    Ok(Ok(b)) if b.cut => {
                        return Err(ApiError::UnexpectedBody {
                            family,
                            detail: format!("the answer is larger than {limit} bytes"),
                        });
                    }
                    Ok(Ok(b)) => {
                        self.metrics.bytes(b.bytes.len());
                        match serde_json::from_slice::<T>(&b.bytes) {
                            Ok(v) => return Ok(v),
                            // Valid JSON of the wrong shape will not change on retry.
                            Err(e) if e.classify() == Category::Data => {
                                return Err(ApiError::UnexpectedBody {
                                    family,
                                    detail: e.to_string().chars().take(300).collect(),
                                });
                            }
                            // Cut short: a network fault, worth another try.
                            Err(e) if e.classify() == Category::Eof => {
                                format!("the answer is not complete JSON: {e}")
                            }
                            // JSON that breaks inside: the same request gets the same bytes.
                            Err(e) if starts_as_json(&b.bytes) => {
                                return Err(malformed_answer(family, &b.bytes, &e));
                            }
                            // Not JSON at all: a proxy's or gateway's page, worth another try.
                            Err(e) => format!("the answer is not JSON: {e}"),
                        }
                    }
                    Ok(Err(e)) => describe(&e),
                    Err(_) => format!("the answer stalled for {} s", self.read_timeout.as_secs()),
                };
            self.backoff_or_fail(family, &mut budget, None, reason)
                .await?;
        }
    }

    /// Spends one transient retry (sleeping its backoff) or fails with `RetriesExhausted`.
    pub async fn backoff_or_fail(
        &self,
        family: ApiFamily,
        budget: &mut Budget<'_>,
        status: Option<u16>,
        reason: String,
    ) -> Result<(), ApiError> {
        match budget.transient() {
            Some(delay) => {
                self.metrics.retry();
                tracing::warn!(
                    family = %family,
                    status,
                    attempt = budget.attempts,
                    delay_ms = delay.as_millis() as u64,
                    reason = %reason,
                    "retrying"
                );
                tokio::time::sleep(delay).await;
                Ok(())
            }
            None => Err(ApiError::RetriesExhausted {
                family,
                attempts: budget.attempts,
                last: reason,
            }),
        }
    }

    /// Reads an error answer (bounded) into a [`Refusal`].
    async fn api_error(&self, family: ApiFamily, resp: Response) -> Refusal {
        let status = resp.status().as_u16();
        let body =
            match tokio::time::timeout(self.read_timeout, read_bounded(resp, ERROR_BODY_LIMIT))
                .await
            {
                Ok(Ok(b)) => b.bytes,
                _ => Vec::new(),
            };
        self.metrics.bytes(body.len());
        let envelope = serde_json::from_slice::<ErrorEnvelope>(&body)
            .ok()
            .and_then(|e| e.error);
        let bounded_message = |s: String| bounded(&s, 300);
        match envelope {
            Some(e) => Refusal {
                family,
                status,
                code: e.code.map(|c| bounded(&c, 60)),
                message: e.message.map(bounded_message),
                target: e.target.map(|t| bounded(&t, 80)),
                retry_after: None,
                details: e
                    .details
                    .into_iter()
                    .take(5)
                    .map(|d| RefusalDetail {
                        code: d.code.map(|c| bounded(&c, 60)),
                        message: d.message.map(bounded_message),
                    })
                    .collect(),
            },
            None => Refusal {
                family,
                status,
                code: None,
                // A gateway's HTML page or nothing: a short, printable excerpt at most.
                message: Some(snippet(&body, 160)).filter(|s| !s.is_empty()),
                target: None,
                retry_after: None,
                details: Vec::new(),
            },
        }
    }
}
