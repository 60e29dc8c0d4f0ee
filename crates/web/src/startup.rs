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
    /// Run scheduled syncs in this process.
    pub scheduler: bool,
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
            scheduler: true,
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
}

impl Application {
    pub async fn build(mut config: WebConfig, engine: Arc<Engine>) -> std::io::Result<Self> {
        // Over HTTPS, a cookie without `Secure` would be sent back over plain http too.
        config.secure_cookies |= config.tls.is_some();
        let listener = TcpListener::bind(config.listen).await?;
        let local = listener.local_addr()?;
        // While no admin exists, the first-run setup page needs this start's one-time token.
        let setup_token = auth::setup::issue_if_needed(engine.store().as_ref())
            .await
            .map_err(std::io::Error::other)?;
        let state = AppState::with_config(engine, &config);
        let kev = match config.kev_url.as_deref().filter(|_| config.scheduler) {
            None => None,
            Some(url) => Some(
                rampart_sync::intel::KevClient::new(url)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
            ),
        };
        let scheduler = config.scheduler.then(|| {
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

    /// Serves until the process is told to stop (Ctrl-C), finishing requests in flight.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
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
        for handle in [scheduler, reloader].into_iter().flatten() {
            handle.abort();
        }
        result
    }
}

fn router(state: AppState, config: &WebConfig) -> Router {
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
    let routes = Router::new()
        .merge(portal)
        .merge(api::router())
        .merge(static_files::router());
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
