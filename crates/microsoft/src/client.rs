//! What both Microsoft clients are built from: one settings struct ([`ClientConfig`]) and one
//! [`Connection`], the request core with its token client, endpoints and paging settings.

use std::sync::Arc;

use rampart_model::Cloud;
use serde::de::DeserializeOwned;
use url::Url;

use crate::cloud::{CloudError, Endpoints, Overrides};
use crate::entra::{ClientCredentials, TokenClient};
use crate::error::ApiError;
use crate::family::ApiFamily;
use crate::http::{Core, CoreSetup, HttpOptions, OnForbidden, RateLimits, RetryPolicy};
use crate::paging::{PagingOptions, ReadPlan, RecordStream, read_linked_pages};

/// Everything needed to build an [`MdeClient`](crate::MdeClient) or an
/// [`ArmClient`](crate::ArmClient). Start from [`ClientConfig::new`] and change what you need;
/// `Debug` shows the secret as `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub cloud: Cloud,
    pub credentials: ClientCredentials,
    pub overrides: Overrides,
    pub http: HttpOptions,
    pub retry: RetryPolicy,
    pub rate_limits: RateLimits,
    pub paging: PagingOptions,
}

/// The settings of a Defender for Endpoint client.
pub type MdeConfig = ClientConfig;
/// The settings of a Defender for Cloud client.
pub type ArmConfig = ClientConfig;

impl ClientConfig {
    /// Microsoft's documented limits and hosts for `cloud`, production retry policy.
    pub fn new(cloud: Cloud, credentials: ClientCredentials) -> ClientConfig {
        ClientConfig {
            cloud,
            credentials,
            overrides: Overrides::default(),
            http: HttpOptions::default(),
            retry: RetryPolicy::default(),
            rate_limits: RateLimits::default(),
            paging: PagingOptions::default(),
        }
    }

    /// Sends both the token request and the API calls to `url` (the emulator, which serves both).
    pub fn with_base_url(mut self, url: &str) -> ClientConfig {
        self.overrides.login_url = Some(url.to_owned());
        self.overrides.api_url = Some(url.to_owned());
        self
    }
}

/// One integration's connection to one Microsoft API. Cheap to clone; clones share the token cache,
/// the rate-limit buckets and the metrics.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    pub core: Arc<Core>,
    /// The same token client as `core`'s, with its full interface (`integration test` reads it).
    pub tokens: Arc<TokenClient>,
    pub endpoints: Arc<Endpoints>,
    pub paging: PagingOptions,
}

/// The accessors a client of one API (a struct with a `conn: Connection` field) offers over its
/// connection: defined once so that the clients cannot drift apart.
macro_rules! connection_accessors {
    () => {
        /// The API's endpoints for the integration's cloud.
        pub fn endpoints(&self) -> &crate::cloud::Endpoints {
            &self.conn.endpoints
        }

        /// The token client (shared by every clone of this client).
        pub fn tokens(&self) -> &crate::entra::TokenClient {
            &self.conn.tokens
        }

        /// Counters since the client was built: API calls, token requests, 429s, retries, bytes.
        pub fn metrics(&self) -> crate::http::MetricsSnapshot {
            self.conn.core.metrics.snapshot()
        }
    };
}
pub(crate) use connection_accessors;

impl Connection {
    /// Builds the HTTP client, the token client for `endpoints`' scope and the request core.
    pub fn open(
        config: ClientConfig,
        endpoints: Endpoints,
        rate_limits: &RateLimits,
        on_forbidden: OnForbidden,
    ) -> Result<Connection, ApiError> {
        let http = crate::http::build_client(&config.http)?;
        let metrics = Arc::default();
        let tokens = Arc::new(TokenClient::new(
            http.clone(),
            &endpoints.login,
            config.credentials,
            endpoints.scope.clone(),
            config.retry.clone(),
            config.http.token_timeout,
            Arc::clone(&metrics),
        )?);
        let core = Core::new(CoreSetup {
            http,
            metrics,
            tokens: Arc::clone(&tokens) as _,
            on_forbidden,
            allowed: endpoints.allowed.clone(),
            retry: config.retry,
            rate_limits,
            read_timeout: config.http.read_timeout,
        });
        Ok(Connection {
            core: Arc::new(core),
            tokens,
            endpoints: Arc::new(endpoints),
            paging: config.paging,
        })
    }

    /// `path` joined to the API base.
    pub fn url(&self, path: &str) -> Result<Url, ApiError> {
        let api = &self.endpoints.api;
        api.join(path).map_err(|e| {
            ApiError::Config(CloudError::InvalidUrl {
                which: "API URL",
                shown: api.as_str().chars().take(120).collect(),
                reason: e.to_string(),
            })
        })
    }

    /// How a read of `family` is paged and batched.
    pub fn plan(&self, family: ApiFamily) -> ReadPlan {
        ReadPlan {
            family,
            max_pages: self.paging.max_pages,
            batch_size: self.paging.batch_size,
            max_record_bytes: self.paging.max_record_bytes,
        }
    }

    /// Every page from `first` on, following `@odata.nextLink` (or `nextLink`).
    pub fn linked_read<T>(&self, family: ApiFamily, first: Result<Url, ApiError>) -> RecordStream<T>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let first = match first {
            Ok(u) => u,
            Err(e) => return RecordStream::failed(e),
        };
        let core = Arc::clone(&self.core);
        let plan = self.plan(family);
        RecordStream::spawn(self.paging.channel_capacity, move |tx| {
            read_linked_pages(core, plan, first, tx)
        })
    }
}
