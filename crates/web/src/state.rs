//! What every handler shares.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use rampart_model::IntegrationId;
use rampart_store::Store;
use rampart_sync::Engine;

use crate::auth::AuthSettings;
use crate::auth::client::ClientAddressing;
use crate::auth::ratelimit::LoginLimiter;

/// The state of the web application.
#[derive(Clone)]
pub struct AppState {
    pub(crate) engine: Arc<Engine>,
    pub(crate) limiter: Arc<LoginLimiter>,
    pub(crate) auth: Arc<AuthSettings>,
    /// Integrations with a sync started from this process and not finished yet.
    pub(crate) syncing: Arc<Mutex<HashSet<IntegrationId>>>,
    /// This process's name in the job table: host, boot, pid and start, plus a random part (two
    /// servers in one process, as in tests, are two workers).
    pub(crate) worker: Arc<str>,
}

impl AppState {
    /// The state with the default authentication settings ([`crate::WebConfig::new`]'s).
    pub fn new(engine: Arc<Engine>) -> Self {
        let defaults = crate::WebConfig::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        Self::with_config(engine, &defaults)
    }

    pub(crate) fn with_config(engine: Arc<Engine>, config: &crate::WebConfig) -> Self {
        let auth = AuthSettings {
            client: ClientAddressing::new(config.trusted_proxies.clone(), config.secure_cookies),
            session_lifetime: config.session_lifetime,
            form_key: engine.vault().derive_key("rampart-web sign-in form token"),
        };
        Self {
            engine,
            limiter: Arc::new(LoginLimiter::default()),
            auth: Arc::new(auth),
            syncing: Arc::new(Mutex::new(HashSet::new())),
            worker: format!(
                "{}:{:08x}",
                rampart_store::RunOwner::current(),
                rand::random::<u32>()
            )
            .into(),
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        self.engine.store()
    }
}
