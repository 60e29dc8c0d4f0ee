//! Microsoft Entra ID client-credentials tokens, hand-written: `azure_identity`
//! refuses a plain-http authority, so it cannot talk to the emulator).
//!
//! One [`TokenClient`] per (tenant, app, scope). It caches the token until about five minutes before
//! it expires (trusting `expires_in`), lets concurrent callers share one in-flight request, and after a
//! 401 from the API [`TokenClient::invalidate`] forces exactly one refresh however many requests saw
//! the 401.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rampart_model::{ClientId, TenantId};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use futures::future::BoxFuture;

use crate::cloud::CloudError;
use crate::http::body::{describe, read_bounded, snippet};
use crate::http::{Bearer, Metrics, RetryPolicy, TokenSource, parse_retry_after};
use crate::roles::{MissingRoles, RequiredRole, decode_claims};
use crate::token_error::{TokenError, TokenRejection};
use crate::wire::entra::{Claims, TokenErrorBody, TokenResponse};

/// The three things a person enters for an integration. `Debug` shows the secret as `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub tenant_id: TenantId,
    pub client_id: ClientId,
    pub client_secret: SecretString,
}

/// An access token and what Rampart knows about it. `Debug` never shows the token itself.
pub struct AccessToken {
    secret: SecretString,
    expires_at: Instant,
    refresh_at: Instant,
    claims: Option<Claims>,
    generation: u64,
}

impl AccessToken {
    /// The decoded payload, when the token is a JWT.
    pub fn claims(&self) -> Option<&Claims> {
        self.claims.as_ref()
    }

    /// The `roles` claim: `None` when the token has none (admin consent not granted) or is not a JWT.
    pub fn roles(&self) -> Option<&[String]> {
        self.claims.as_ref().and_then(Claims::roles)
    }

    /// The required roles this token lacks; `None` when the token is not a JWT and cannot tell.
    pub fn missing_roles(&self, required: &[RequiredRole]) -> Option<MissingRoles> {
        self.claims.as_ref().map(|c| c.missing_roles(required))
    }

    /// Time left before the token expires.
    pub fn expires_in(&self) -> Duration {
        self.expires_at.saturating_duration_since(Instant::now())
    }
}

impl Bearer for AccessToken {
    fn secret(&self) -> &str {
        self.secret.expose_secret()
    }

    fn generation(&self) -> u64 {
        self.generation
    }

    fn claims(&self) -> Option<&Claims> {
        self.claims.as_ref()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"[REDACTED]")
            .field("expires_in", &self.expires_in())
            .field("roles", &self.roles())
            .field("generation", &self.generation)
            .finish()
    }
}

#[derive(Default)]
struct Cache {
    token: Option<Arc<AccessToken>>,
    /// The last failure and when it happened: callers that queued behind a failing request get its
    /// error instead of each sending another doomed request.
    failure: Option<(Instant, TokenError)>,
}

/// Fetches and caches client-credentials tokens for one scope.
pub struct TokenClient {
    http: reqwest::Client,
    token_url: Url,
    login_host: String,
    client_id: ClientId,
    secret: SecretString,
    scope: String,
    retry: RetryPolicy,
    timeout: Duration,
    metrics: Arc<Metrics>,
    cache: tokio::sync::Mutex<Cache>,
    /// Tokens of a generation below this are not used again (set by `invalidate`).
    valid_from: AtomicU64,
    next_generation: AtomicU64,
}

impl fmt::Debug for TokenClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenClient")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Longest an error body from the token endpoint is read.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// Refresh this long before expiry (or at half the lifetime for short-lived tokens).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

impl TokenClient {
    /// `login` is the authority (`https://login.microsoftonline.com/`); the token endpoint is
    /// `{login}/{tenant}/oauth2/v2.0/token`, with the tenant percent-encoded as a path segment.
    pub fn new(
        http: reqwest::Client,
        login: &Url,
        credentials: ClientCredentials,
        scope: String,
        retry: RetryPolicy,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<TokenClient, CloudError> {
        let mut token_url = login.clone();
        token_url
            .path_segments_mut()
            .map_err(|()| CloudError::InvalidUrl {
                which: "login URL",
                shown: login.as_str().chars().take(120).collect(),
                reason: "it cannot have a path".to_owned(),
            })?
            .pop_if_empty()
            .extend([credentials.tenant_id.as_str(), "oauth2", "v2.0", "token"]);
        let login_host = match login.port() {
            Some(p) => format!("{}:{p}", login.host_str().unwrap_or_default()),
            None => login.host_str().unwrap_or_default().to_owned(),
        };
        Ok(TokenClient {
            http,
            token_url,
            login_host,
            client_id: credentials.client_id,
            secret: credentials.client_secret,
            scope,
            retry,
            timeout,
            metrics,
            cache: tokio::sync::Mutex::new(Cache::default()),
            valid_from: AtomicU64::new(0),
            next_generation: AtomicU64::new(0),
        })
    }

    /// The token endpoint (no secret in it).
    pub fn token_url(&self) -> &Url {
        &self.token_url
    }

    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// A valid token: the cached one, or a new one. Concurrent callers wait for one request.
    pub async fn token(&self) -> Result<Arc<AccessToken>, TokenError> {
        let arrived = Instant::now();
        let mut cache = self.cache.lock().await;
        if let Some(t) = &cache.token
            && t.generation >= self.valid_from.load(Ordering::Acquire)
            && Instant::now() < t.refresh_at
        {
            return Ok(Arc::clone(t));
        }
        if let Some((at, err)) = &cache.failure
            && *at >= arrived
        {
            return Err(err.clone());
        }
        match self.fetch().await {
            Ok(t) => {
                let t = Arc::new(t);
                cache.token = Some(Arc::clone(&t));
                cache.failure = None;
                Ok(t)
            }
            Err(e) => {
                cache.token = None;
                cache.failure = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// The API refused `stale` (401): the next [`token`](Self::token) call fetches a new one. Tokens
    /// fetched after `stale` stay valid, so many requests failing with the same token cause one
    /// refresh.
    pub fn invalidate(&self, stale: &AccessToken) {
        self.retire(stale.generation);
    }

    fn retire(&self, generation: u64) {
        self.valid_from.fetch_max(generation + 1, Ordering::AcqRel);
    }

    /// Requests with retries for transient failures (network, 5xx) and throttling (429, after the
    /// `Retry-After` Entra sends: 60 s for client credentials, per
    /// https://learn.microsoft.com/en-us/entra/msal/dotnet/advanced/client-and-server-throttling);
    /// configuration errors return at once.
    async fn fetch(&self) -> Result<AccessToken, TokenError> {
        // Fewer retries than for API pages: a person may be waiting on `integration test`.
        let max = self.retry.max_retries.min(3);
        let mut retry = 0;
        let mut throttled = 0;
        loop {
            match self.request_once().await {
                Ok(t) => return Ok(t),
                Err(Failed {
                    error,
                    retry_after: Some(wait),
                }) if error.status() == Some(429) => {
                    throttled += 1;
                    if throttled > MAX_TOKEN_THROTTLES || wait > self.retry.max_retry_after {
                        return Err(error);
                    }
                    // Capped like API 429s, plus a little so the retry lands after the window.
                    let wait = wait.min(MAX_TOKEN_RETRY_AFTER) + Duration::from_millis(100);
                    self.metrics.throttle();
                    tracing::warn!(
                        login_host = %self.login_host,
                        attempt = throttled,
                        wait_s = wait.as_secs_f64(),
                        "token request throttled by Microsoft Entra (HTTP 429); waiting as its Retry-After asks"
                    );
                    tokio::time::sleep(wait).await;
                }
                Err(Failed { error, .. }) if error.is_transient() && retry < max => {
                    retry += 1;
                    let delay = if error.status() == Some(429) {
                        // Throttled without saying for how long.
                        self.retry.throttle_backoff(retry)
                    } else {
                        self.retry.backoff(retry)
                    };
                    tracing::warn!(
                        login_host = %self.login_host,
                        attempt = retry,
                        delay_ms = delay.as_millis() as u64,
                        error = %error,
                        "retrying token request"
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(Failed { error, .. }) => return Err(error),
            }
        }
    }

    async fn request_once(&self) -> Result<AccessToken, Failed> {
        self.metrics.token_request();
        let client_id = self.client_id.to_string();
        // The form encoder percent-encodes every value, the secret included.
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", self.secret.expose_secret()),
            ("scope", self.scope.as_str()),
        ];
        let sent_at = Instant::now();
        let unreachable = |e: reqwest::Error| TokenError::Unreachable {
            login_host: self.login_host.clone(),
            detail: describe(&e),
        };
        let resp = self
            .http
            .post(self.token_url.clone())
            .form(&form)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(unreachable)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        let body = read_bounded(resp, ERROR_BODY_LIMIT)
            .await
            .map_err(unreachable)?;
        let unexpected = |detail: String| TokenError::UnexpectedResponse {
            login_host: self.login_host.clone(),
            status,
            detail,
        };
        if (200..300).contains(&status) {
            // The serde error's position only: its text could quote the body, which holds the token.
            let parsed: TokenResponse = serde_json::from_slice(&body.bytes).map_err(|e| {
                Failed::from(unexpected(format!(
                    "the answer is not a token response (line {}, column {})",
                    e.line(),
                    e.column()
                )))
            })?;
            let lifetime = Duration::from_secs(parsed.expires_in);
            let margin = REFRESH_MARGIN.min(lifetime / 2);
            let claims = decode_claims(parsed.access_token.expose_secret());
            let token = AccessToken {
                secret: parsed.access_token,
                expires_at: sent_at + lifetime,
                refresh_at: sent_at + (lifetime - margin),
                claims,
                generation: self.next_generation.fetch_add(1, Ordering::AcqRel),
            };
            tracing::debug!(
                login_host = %self.login_host,
                expires_in_s = lifetime.as_secs(),
                roles = ?token.roles(),
                "token acquired"
            );
            return Ok(token);
        }
        match serde_json::from_slice::<TokenErrorBody>(&body.bytes) {
            Ok(b) if b.error.is_some() || !b.error_codes.is_empty() => {
                let rejection = TokenRejection::from_body(status, b);
                tracing::warn!(
                    login_host = %self.login_host,
                    status,
                    aadsts = ?rejection.aadsts,
                    error = ?rejection.error,
                    trace_id = ?rejection.trace_id,
                    "token request refused"
                );
                Err(Failed {
                    error: TokenError::Rejected(Box::new(rejection)),
                    retry_after,
                })
            }
            _ => Err(Failed {
                error: unexpected(snippet(&body.bytes, 160)),
                retry_after,
            }),
        }
    }
}

impl TokenSource for TokenClient {
    fn bearer(&self) -> BoxFuture<'_, Result<Arc<dyn Bearer>, TokenError>> {
        Box::pin(async move { self.token().await.map(|t| t as Arc<dyn Bearer>) })
    }

    fn invalidate(&self, stale: &dyn Bearer) {
        self.retire(stale.generation());
    }
}

/// A failed token request and, for a 429, how long Entra asked to wait.
struct Failed {
    error: TokenError,
    retry_after: Option<Duration>,
}

impl From<TokenError> for Failed {
    fn from(error: TokenError) -> Self {
        Failed {
            error,
            retry_after: None,
        }
    }
}

/// 429s one token request may wait out before it fails.
const MAX_TOKEN_THROTTLES: u32 = 3;
/// The longest single wait after a token 429 (Entra asks for 60 s).
const MAX_TOKEN_RETRY_AFTER: Duration = Duration::from_secs(120);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_tokens_and_credentials_never_show_their_secrets() {
        let token = AccessToken {
            secret: SecretString::from("eyJhbGciOi.payload-secret.sig".to_owned()),
            expires_at: Instant::now() + Duration::from_secs(60),
            refresh_at: Instant::now(),
            claims: None,
            generation: 0,
        };
        let shown = format!("{token:?}");
        assert!(
            !shown.contains("payload-secret") && shown.contains("REDACTED"),
            "{shown}"
        );
        let creds = ClientCredentials {
            tenant_id: "contoso.onmicrosoft.com".parse().unwrap(),
            client_id: "00000000-0000-4000-8000-000000000002".parse().unwrap(),
            client_secret: SecretString::from("my-client-secret-value".to_owned()),
        };
        let shown = format!("{creds:?}");
        assert!(!shown.contains("my-client-secret-value"), "{shown}");
        let client = TokenClient::new(
            reqwest::Client::new(),
            &Url::parse("https://login.microsoftonline.com/").unwrap(),
            creds,
            "https://api.securitycenter.microsoft.com/.default".into(),
            RetryPolicy::default(),
            Duration::from_secs(5),
            Arc::new(Metrics::default()),
        )
        .unwrap();
        let shown = format!("{client:?}");
        assert!(
            !shown.contains("my-client-secret-value") && shown.contains("REDACTED"),
            "{shown}"
        );
        assert_eq!(
            client.token_url().as_str(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
    }

    #[test]
    fn invalidation_only_retires_the_stale_generation() {
        let client = TokenClient::new(
            reqwest::Client::new(),
            &Url::parse("http://127.0.0.1:1/").unwrap(),
            ClientCredentials {
                tenant_id: "contoso.onmicrosoft.com".parse().unwrap(),
                client_id: "00000000-0000-4000-8000-000000000002".parse().unwrap(),
                client_secret: SecretString::from("x".to_owned()),
            },
            "s/.default".into(),
            RetryPolicy::default(),
            Duration::from_secs(5),
            Arc::new(Metrics::default()),
        )
        .unwrap();
        let token = |generation| AccessToken {
            secret: SecretString::from("t".to_owned()),
            expires_at: Instant::now(),
            refresh_at: Instant::now(),
            claims: None,
            generation,
        };
        client.invalidate(&token(3));
        // A late 401 for an older token must not retire the newer one.
        client.invalidate(&token(1));
        assert_eq!(client.valid_from.load(Ordering::Acquire), 4);
    }
}
