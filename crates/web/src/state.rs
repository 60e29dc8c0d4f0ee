//! What every handler shares.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use rampart_model::IntegrationId;
use rampart_store::Store;
use rampart_sync::Engine;

use crate::auth::ratelimit::LoginLimiter;

/// The state of the web application.
#[derive(Clone)]
pub struct AppState {
    pub(crate) engine: Arc<Engine>,
    pub(crate) limiter: Arc<LoginLimiter>,
    /// Integrations with a sync started from this process and not finished yet.
    pub(crate) syncing: Arc<Mutex<HashSet<IntegrationId>>>,
    /// This process's name in the job table: host, boot, pid and start, plus a random part (two
    /// servers in one process, as in tests, are two workers).
    pub(crate) worker: Arc<str>,
}

impl AppState {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            limiter: Arc::new(LoginLimiter::default()),
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
