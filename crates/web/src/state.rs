//! What every handler shares.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// Jobs this process claimed and runs, by job id: the integration and the task running it
    /// (aborted when a stopping worker's grace runs out).
    pub(crate) syncing: Arc<Mutex<HashMap<i64, (IntegrationId, tokio::task::AbortHandle)>>>,
    /// Whether this process runs sync jobs (`serve --role all|worker`); a web-only process
    /// queues "Sync now" for the workers.
    pub(crate) runs_jobs: bool,
    /// Set when the process is stopping: no new job is claimed.
    pub(crate) stopping: Arc<AtomicBool>,
    /// How long a job may go without a heartbeat before another worker takes it over.
    pub(crate) job_lease: Duration,
    /// Woken when a job of this process ends: the scheduler looks for the next one at once.
    pub(crate) job_finished: Arc<tokio::sync::Notify>,
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
            syncing: Arc::new(Mutex::new(HashMap::new())),
            runs_jobs: config.role.runs_jobs(),
            stopping: Arc::new(AtomicBool::new(false)),
            job_lease: config.job_lease,
            job_finished: Arc::new(tokio::sync::Notify::new()),
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

    /// The names of the integrations `vis` may see, by id (for pages and reports that name
    /// integrations by id).
    pub(crate) async fn integration_names(
        &self,
        vis: &rampart_store::Visibility,
    ) -> Result<HashMap<IntegrationId, String>, rampart_store::StoreError> {
        Ok(self
            .store()
            .list_integrations(vis)
            .await?
            .into_iter()
            .map(|i| (i.id, i.name.to_string()))
            .collect())
    }

    /// Whether this process is running a sync of `integration` right now.
    pub(crate) fn is_syncing(&self, integration: IntegrationId) -> bool {
        self.syncing
            .lock()
            .is_ok_and(|s| s.values().any(|(i, _)| *i == integration))
    }
}
