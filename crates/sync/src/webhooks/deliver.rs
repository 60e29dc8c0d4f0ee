//! Sending deliveries: claim the due ones, write each body for its webhook's format, POST it,
//! and record the attempt; a failure is tried again after a growing delay (or the receiver's
//! `Retry-After` on 429 and 503), and the delivery fails after the last one.
//!
//! Neither the URL (a credential for Teams and Slack) nor the signing secret is ever logged or
//! written into an error: reqwest's errors are stripped of their URL before they are kept.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rampart_store::{
    AttemptNext, AttemptOutcome, ClaimedDelivery, Store, StoreError, Visibility, WebhookFormat,
};
use secrecy::ExposeSecret;

use crate::vault::{Sealed, Vault};
use crate::webhooks::aad;
use crate::webhooks::format::{SIGNATURE_HEADER, body_for, sign};

/// Deliveries one pass sends at once.
const SENDING_AT_ONCE: usize = 8;

/// How deliveries are sent and retried.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// The wait before each retry, in order; after the last, the delivery fails. The first
    /// attempt is one more than these.
    pub backoff: Vec<Duration>,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// The longest `Retry-After` honoured (a receiver asking for a day is tried at the cap).
    pub max_retry_after: Duration,
    /// How long a claimed delivery is held by its worker before another may try it.
    pub lease: Duration,
    /// Deliveries one pass sends at most.
    pub batch: u32,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        Self {
            backoff: [30, 120, 600, 3600, 6 * 3600]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            timeout: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(6 * 3600),
            lease: Duration::from_secs(5 * 60),
            batch: 50,
        }
    }
}

/// Sends webhook deliveries. One per process (it keeps the HTTP client's connections).
#[derive(Debug, Clone)]
pub struct Sender {
    http: reqwest::Client,
    options: DeliveryOptions,
}

/// What one attempt came to, before it is recorded.
struct Answer {
    status: Option<u16>,
    error: Option<String>,
    retry_after: Option<Duration>,
}

impl Sender {
    pub fn new(options: DeliveryOptions) -> Self {
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            // A redirect could carry the signed body somewhere else: the receiver's URL is used
            // as configured.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Rampart-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            // Only a TLS backend that cannot start fails here, and then the default client is
            // the best there is (it fails the same way on its first request, in words).
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { http, options }
    }

    pub fn options(&self) -> &DeliveryOptions {
        &self.options
    }

    /// Sends every delivery due at `now` (at most one batch); returns how many were attempted.
    pub async fn deliver_due(
        &self,
        store: &dyn Store,
        vault: &Vault,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let claimed = store
            .claim_webhook_deliveries(now, self.lease(), self.options.batch, None)
            .await?;
        // A few at once: one slow receiver (up to the timeout each) must not hold the batch past
        // its lease, when another worker could claim it again.
        for chunk in claimed.chunks(SENDING_AT_ONCE) {
            let sending: Vec<_> = chunk
                .iter()
                .map(|delivery| self.attempt(store, vault, delivery))
                .collect();
            for result in futures::future::join_all(sending).await {
                result?;
            }
        }
        Ok(claimed.len())
    }

    /// Sends one delivery now, whatever its webhook's state ("Send test").
    pub async fn deliver_now(
        &self,
        store: &dyn Store,
        vault: &Vault,
        delivery: i64,
    ) -> Result<(), StoreError> {
        let claimed = store
            .claim_webhook_deliveries(Utc::now(), self.lease(), 1, Some(delivery))
            .await?;
        for delivery in &claimed {
            self.attempt(store, vault, delivery).await?;
        }
        Ok(())
    }

    fn lease(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.options.lease).unwrap_or(chrono::Duration::minutes(5))
    }

    /// One attempt of a claimed delivery, recorded.
    async fn attempt(
        &self,
        store: &dyn Store,
        vault: &Vault,
        d: &ClaimedDelivery,
    ) -> Result<(), StoreError> {
        let answer = match self.send(store, vault, d).await {
            Ok(answer) => answer,
            // A webhook removed meanwhile takes its deliveries with it.
            Err(StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let at = Utc::now();
        let delivered = answer.status.is_some_and(|s| (200..300).contains(&s));
        let next = if delivered {
            AttemptNext::Delivered
        } else {
            match self
                .options
                .backoff
                .get(d.attempt.saturating_sub(1) as usize)
            {
                None => AttemptNext::Failed,
                Some(wait) => {
                    let wait = answer
                        .retry_after
                        .map_or(*wait, |r| r.min(self.options.max_retry_after).max(*wait));
                    AttemptNext::RetryAt(
                        at + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(6)),
                    )
                }
            }
        };
        if !delivered {
            tracing::warn!(
                message = "Webhook delivery failed.",
                delivery = d.id,
                webhook = d.webhook_id,
                attempt = d.attempt,
                status = answer.status.unwrap_or(0),
                error = answer.error.as_deref().unwrap_or(""),
                gave_up = matches!(next, AttemptNext::Failed)
            );
        }
        store
            .record_webhook_attempt(
                d.id,
                &AttemptOutcome {
                    attempt: d.attempt,
                    at,
                    http_status: answer.status,
                    error: answer.error,
                    next,
                },
            )
            .await
    }

    /// Opens the webhook's URL and secret, writes the body and POSTs it.
    async fn send(
        &self,
        store: &dyn Store,
        vault: &Vault,
        d: &ClaimedDelivery,
    ) -> Result<Answer, StoreError> {
        let webhook = store.get_webhook(&Visibility::All, d.webhook_id).await?;
        let secrets = store.webhook_secrets(d.webhook_id).await?;
        let open = |what: &str, c: rampart_store::SecretCiphertext| {
            vault.open_secret(
                &aad(&webhook.name, what),
                &Sealed {
                    ciphertext: c.ciphertext,
                    nonce: c.nonce,
                },
            )
        };
        let failed = |error: String| Answer {
            status: None,
            error: Some(error),
            retry_after: None,
        };
        let url = match open("url", secrets.url) {
            Ok(url) => url,
            Err(_) => {
                return Ok(failed(
                    "the stored URL cannot be decrypted with this master key: restore the original key, or remove the webhook and add it again".into(),
                ));
            }
        };
        let body = body_for(webhook.format, &d.payload);
        let timestamp = Utc::now().timestamp();
        let mut request = self
            .http
            .post(url.expose_secret())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Rampart-Event", d.kind.as_str())
            .header("X-Rampart-Delivery", d.id.to_string())
            .header("X-Rampart-Timestamp", timestamp.to_string());
        if webhook.format == WebhookFormat::Generic {
            let Some(sealed) = secrets.secret else {
                return Ok(failed(
                    "the webhook has no signing secret: remove it and add it again".into(),
                ));
            };
            let secret = match open("secret", sealed) {
                Ok(s) => s,
                Err(_) => {
                    return Ok(failed(
                        "the signing secret cannot be decrypted with this master key: restore the original key, or remove the webhook and add it again".into(),
                    ));
                }
            };
            request = request.header(
                SIGNATURE_HEADER,
                sign(secret.expose_secret().as_bytes(), timestamp, &body),
            );
        }
        Ok(match request.body(body).send().await {
            Ok(response) => {
                let status = response.status();
                let retry_after = (status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || status == reqwest::StatusCode::SERVICE_UNAVAILABLE)
                    .then(|| response.headers().get(reqwest::header::RETRY_AFTER))
                    .flatten()
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, Utc::now()));
                Answer {
                    status: Some(status.as_u16()),
                    error: (!status.is_success()).then(|| explain_status(status)),
                    retry_after,
                }
            }
            Err(e) => failed(explain_error(&e.without_url(), self.options.timeout)),
        })
    }
}

fn explain_status(status: reqwest::StatusCode) -> String {
    let code = status.as_u16();
    let what = match code {
        300..=399 => "redirected elsewhere; Rampart does not follow redirects: use the final URL",
        401 | 403 => "refused: the URL's token may have been revoked; create a new webhook URL",
        404 | 410 => "no such webhook at the receiver: it may have been removed",
        429 => "too many requests: retried after the time the receiver asked for",
        400..=499 => "the receiver refused the message",
        _ => "the receiver failed",
    };
    format!("HTTP {code}: {what}")
}

/// An error in words, never with the URL (the caller strips it).
fn explain_error(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("no answer within {} s", timeout.as_secs())
    } else if e.is_connect() {
        "could not connect to the receiver (DNS, firewall or the service is down)".to_owned()
    } else {
        format!("the request failed: {e}")
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let now = DateTime::parse_from_rfc3339("2026-12-06T07:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Dec 2026 07:01:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
