//! Building and running the server (zero2prod's shape: `Application::build` binds the listener,
//! so tests ask for port 0 and learn the real one).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::middleware;
use rampart_sync::Engine;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

use crate::auth::session_store::StoreSessions;
pub use crate::connections::ConnectionLimits;
use crate::state::AppState;
use crate::tls::{self, Tls};
use crate::{api, auth, connections, headers, ops, portal, scheduler, static_files};

/// How `rampart serve` runs.
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub listen: SocketAddr,
    /// Browsers always reach Rampart over HTTPS (a TLS terminator in front, or `tls`): mark
    /// every cookie `Secure`. Behind a trusted proxy that sends `X-Forwarded-Proto: https`, cookies are
    /// `Secure` on such requests anyway.
    pub secure_cookies: bool,
    /// Reverse proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed
    /// (`serve --trusted-proxy CIDR`). Nobody else's are.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// What this process does: the portal and API, sync jobs, or both (`serve --role`).
    pub role: ServerRole,
    /// Run scheduled syncs in this process (when its role runs jobs).
    pub scheduler: bool,
    /// How long a claimed job may go without a heartbeat before another worker takes it over
    /// (`serve --job-lease`); heartbeats go every quarter of it.
    pub job_lease: Duration,
    /// On stop (SIGTERM, Ctrl-C), how long running syncs may take to finish before they are
    /// stopped and their jobs handed back to the queue (`serve --stop-grace`).
    pub stop_grace: Duration,
    /// How often the scheduler looks for due integrations.
    pub scheduler_tick: Duration,
    /// Sessions end after this long without a request.
    pub session_idle: Duration,
    /// How many connections are served at once and how long slow clients are waited for.
    pub limits: ConnectionLimits,
    /// Sessions end this long after sign-in, however busy.
    pub session_lifetime: Duration,
    /// When set, `/metrics` answers only requests bearing this token.
    pub metrics_token: Option<secrecy::SecretString>,
    /// The scheduler refreshes CISA's KEV catalogue from this URL once a day (`serve --kev-url`).
    /// `None` (the default here; `serve` sets CISA's feed): no refresh in this process.
    pub kev_url: Option<String>,
    /// Serve HTTPS with this certificate and key (`serve --tls-cert --tls-key`): cookies are then
    /// always `Secure`, every answer carries `Strict-Transport-Security`, and SIGHUP re-reads
    /// the files.
    pub tls: Option<Tls>,
}

impl WebConfig {
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            secure_cookies: false,
            trusted_proxies: Vec::new(),
            role: ServerRole::All,
            scheduler: true,
            job_lease: rampart_store::JOB_LEASE,
            stop_grace: Duration::from_secs(60),
            scheduler_tick: Duration::from_secs(30),
            session_idle: Duration::from_secs(8 * 3600),
            limits: ConnectionLimits::default(),
            session_lifetime: Duration::from_secs(7 * 24 * 3600),
            metrics_token: None,
            kev_url: None,
            tls: None,
        }
    }
}

/// What one `rampart serve` process does. Any number of `web` and `worker` processes may share
/// one PostgreSQL database; on SQLite one process runs jobs (see `rampart_store::WorkerSlot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerRole {
    /// The portal, the API and the sync jobs (the default).
    #[default]
    All,
    /// The portal and the API; "Sync now" queues a job that a worker runs.
    Web,
    /// Sync jobs (scheduled and requested) and the KEV refresh; it serves only `/healthz`,
    /// `/readyz` and `/metrics`.
    Worker,
}

impl ServerRole {
    pub fn runs_jobs(self) -> bool {
        matches!(self, ServerRole::All | ServerRole::Worker)
    }

    pub fn serves_pages(self) -> bool {
        matches!(self, ServerRole::All | ServerRole::Web)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServerRole::All => "all",
            ServerRole::Web => "web",
            ServerRole::Worker => "worker",
        }
    }
}

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    router: Router,
    port: u16,
    host: std::net::IpAddr,
    scheduler: Option<scheduler::Scheduler>,
    limits: ConnectionLimits,
    setup_token: Option<SecretString>,
    tls: Option<Tls>,
    stop_grace: Duration,
    /// Kept while the process runs jobs: on SQLite, the only worker's right to.
    _worker_slot: Option<rampart_store::WorkerSlot>,
}

impl Application {
    pub async fn build(mut config: WebConfig, engine: Arc<Engine>) -> std::io::Result<Self> {
        // Over HTTPS, a cookie without `Secure` would be sent back over plain http too.
        config.secure_cookies |= config.tls.is_some();
        let listener = TcpListener::bind(config.listen).await?;
        let local = listener.local_addr()?;
        // While no admin exists, the first-run setup page needs this start's one-time token.
        // A worker serves no setup page: issuing one would void the web process's token.
        let setup_token = if config.role.serves_pages() {
            auth::setup::issue_if_needed(engine.store().as_ref())
                .await
                .map_err(std::io::Error::other)?
        } else {
            None
        };
        let runs_scheduler = config.scheduler && config.role.runs_jobs();
        // Before the port is served: a second worker on SQLite stops here, saying what to do.
        let worker_slot = if runs_scheduler {
            Some(
                engine
                    .store()
                    .hold_worker_slot()
                    .map_err(std::io::Error::other)?,
            )
        } else {
            None
        };
        let state = AppState::with_config(engine, &config);
        let kev = match config.kev_url.as_deref().filter(|_| runs_scheduler) {
            None => None,
            Some(url) => Some(
                rampart_sync::intel::KevClient::new(url)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
            ),
        };
        let scheduler = runs_scheduler.then(|| {
            let scheduler = scheduler::Scheduler::new(state.clone(), config.scheduler_tick);
            match kev {
                Some(client) => scheduler.with_kev(client),
                None => scheduler,
            }
        });
        Ok(Self {
            listener,
            router: router(state, &config),
            port: local.port(),
            host: local.ip(),
            scheduler,
            limits: config.limits,
            setup_token,
            tls: config.tls,
            stop_grace: config.stop_grace,
            _worker_slot: worker_slot,
        })
    }

    /// The one-time token of the first-run setup page (`/setup`), issued at build while no admin
    /// exists: print it where the operator reads the server's log.
    pub fn setup_token(&self) -> Option<&SecretString> {
        self.setup_token.as_ref()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://HOST:PORT`, or `https://HOST:PORT` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        match self.host {
            std::net::IpAddr::V6(ip) => format!("{scheme}://[{ip}]:{}", self.port),
            std::net::IpAddr::V4(ip) => format!("{scheme}://{ip}:{}", self.port),
        }
    }

    /// Serves until the process is told to stop (Ctrl-C or SIGTERM), finishing requests in
    /// flight, then the syncs it runs (see [`WebConfig::stop_grace`]).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(stop_signal()).await
    }

    /// Serves until `shutdown` completes.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let scheduler = self.scheduler.map(|s| s.spawn());
        let reloader = self.tls.clone().and_then(tls::reload_on_hangup);
        let acceptor = self.tls.as_ref().map(Tls::acceptor);
        let result =
            connections::serve(self.listener, self.router, self.limits, acceptor, shutdown).await;
        if let Some(reloader) = reloader {
            reloader.abort();
        }
        if let Some(scheduler) = scheduler {
            scheduler.stop(self.stop_grace).await;
        }
        result
    }
}

/// Ctrl-C (SIGINT) or, on Unix, SIGTERM (what systemd and container runtimes send).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn router(state: AppState, config: &WebConfig) -> Router {
    // A worker answers its operator's tooling only.
    let routes = if config.role.serves_pages() {
        pages(&state, config)
    } else {
        Router::new()
    };
    let app = ops::wrap(routes, config.metrics_token.clone())
        .layer(middleware::from_fn(headers::security_headers))
        .layer(RequestBodyLimitLayer::new(1024 * 1024))
        .layer(middleware::from_fn(crate::error::problem_json_errors))
        .with_state(state);
    // Outermost, so that answers made by the layers above (413, problem+json) carry it too.
    match config.tls {
        None => app,
        Some(_) => app.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(tls::HSTS),
        )),
    }
}

/// The portal, the API and their static files.
fn pages(state: &AppState, config: &WebConfig) -> Router<AppState> {
    let sessions = SessionManagerLayer::new(StoreSessions::new(
        state.store().clone(),
        config.session_lifetime,
    ))
    .with_name("rampart_session")
    .with_http_only(true)
    .with_same_site(SameSite::Strict)
    .with_secure(config.secure_cookies)
    .with_path("/")
    .with_expiry(Expiry::OnInactivity(
        tower_sessions::cookie::time::Duration::seconds(
            i64::try_from(config.session_idle.as_secs()).unwrap_or(8 * 3600),
        ),
    ));
    let portal = portal::router()
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::csrf::guard,
        ))
        .layer(sessions)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::client::secure_cookies,
        ));
    Router::new()
        .merge(portal)
        .merge(api::router())
        .merge(static_files::router())
}
