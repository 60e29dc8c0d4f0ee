//! An emulator of Microsoft Entra ID and Microsoft Defender for Endpoint (MDE), for tests, demos and
//! benchmarks.
//!
//! It is a contract double of *Microsoft*, built from Microsoft's documentation
//! (<https://learn.microsoft.com/en-us/defender-endpoint/api/exposed-apis-list>) and answers observed from real tenants: the v1 and v2
//! client-credentials token endpoints with AADSTS errors and `roles` claims; `/api/machines` with OData
//! `$filter`/`$top`/`$skip` and the "`$top` kills `@odata.nextLink`" quirk; the vulnerability
//! entity sets; `SoftwareVulnerabilitiesByMachine` pages with `pageSize` and a `$skiptoken` pinned to a
//! snapshot; `SoftwareVulnerabilitiesExport` with gzip JSON-lines files behind expiring SAS URLs;
//! `SoftwareVulnerabilityChangesByMachine` with 6-hour buckets; Microsoft's documented rate limits;
//! and fault injection.
//!
//! The tenant is generated, deterministically for a seed, on the fly: nothing per device or per finding
//! is stored, so 100,000 devices start instantly and stream at flat memory. Time moves in 6-hour
//! snapshots ([`Sim::tick`]); [`Sim::truth`] says what the tenant holds now, record by record.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use rampart_sim::{SimConfig, spawn};
//!
//! let running = spawn(SimConfig { devices: 300, ..SimConfig::default() }).await?;
//! // Point a client at running.url: tokens at {url}/{tenant}/oauth2/v2.0/token, API at {url}/api/...
//! let token_url = format!("{}/{}/oauth2/v2.0/token", running.url, running.sim.config().tenant_id);
//! # let _ = token_url;
//! let truth = running.sim.truth();
//! assert_eq!(truth.machines().count(), 300);
//! running.sim.tick(1); // six hours later: some findings fixed, some new, devices joined or left
//! running.sim.faults().fail_next("SoftwareVulnerabilitiesByMachine", 503, 1);
//! # Ok(()) }
//! ```
//!
//! Routes, demo credentials and fault controls are listed in the crate's `README.md`.

mod cloud_records;
mod config;
mod faults;
mod hash;
mod http;
mod limits;
mod records;
mod state;
mod stats;
mod time;
mod token;
mod truth;
mod world;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use cloud_records::{
    CloudAssessment, CloudFinding, CloudResource, CloudResourceKind, CloudRisk, CloudSubscription,
    ScoreControl, SecureScore,
};
pub use config::{DEFAULT_ROLES, SimConfig, SimError};
pub use faults::Faults;
pub use records::{Finding, IpAddress, Machine, VmMetadata, Vulnerability};
pub use stats::{Family, Stats};
pub use truth::Truth;

/// Where the emulator serves CISA's Known Exploited Vulnerabilities feed.
pub const KEV_PATH: &str = "/kev/known_exploited_vulnerabilities.json";

/// The emulator: cheap to clone (an `Arc`), shared by its router and the test that drives it.
#[derive(Clone)]
pub struct Sim {
    pub(crate) inner: Arc<state::Inner>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("tenant_id", &self.inner.config.tenant_id)
            .field("devices", &self.inner.config.devices)
            .field("tick", &self.inner.tick())
            .finish()
    }
}

impl Sim {
    /// Validates the configuration (GUIDs, ranges) and builds the tenant (only its CVE catalogue is
    /// materialised).
    pub fn new(config: SimConfig) -> Result<Sim, SimError> {
        let config = config.validated()?;
        Ok(Sim {
            inner: Arc::new(state::Inner::new(config)),
        })
    }

    /// Every route: Entra token endpoints, the MDE API, export blobs and `/_sim` control endpoints.
    /// Paths under `/subscriptions` and `/providers` are left free for Azure Resource Manager routes.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// Advances simulated time by `n` snapshots of six hours.
    pub fn tick(&self, n: u32) {
        self.inner.advance(n);
    }

    /// The current snapshot number (0 at start).
    pub fn current_tick(&self) -> i64 {
        self.inner.tick()
    }

    /// Simulated "now": `start_time` + 6 h × tick.
    pub fn now(&self) -> DateTime<Utc> {
        time::Ts::at(self.inner.world.clock.at(self.inner.tick())).to_chrono()
    }

    /// The validated configuration (GUIDs lower-cased, start time truncated to the minute).
    pub fn config(&self) -> &SimConfig {
        &self.inner.config
    }

    /// What the tenant holds at the current tick.
    pub fn truth(&self) -> Truth {
        self.truth_at(self.inner.tick())
    }

    /// What the tenant held (or will hold) at another tick; the generator is a function of time.
    pub fn truth_at(&self, tick: i64) -> Truth {
        Truth {
            sim: self.inner.clone(),
            tick,
        }
    }

    /// The CVE ids on the emulated CISA KEV feed ([`KEV_PATH`]) now, in catalogue order; more are
    /// listed as the clock moves.
    pub fn kev_listed(&self) -> Vec<String> {
        http::kev_listed(&self.inner, self.inner.tick())
    }

    /// Counters: calls per endpoint family, 429s, faults, rows served.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot(self.inner.tick())
    }

    /// Targeted fault injection.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// Whether API responses are compressed when the client offers `deflate`/`gzip` (default on,
    /// like MDE). Benchmarks that want to spare the CPU can turn it off.
    pub fn set_compression(&self, enabled: bool) {
        self.inner
            .compression
            .store(enabled, std::sync::atomic::Ordering::Relaxed);
    }
}

/// An emulator serving on `127.0.0.1` on a free port; it shuts down when dropped.
#[derive(Debug)]
pub struct RunningSim {
    /// `http://127.0.0.1:PORT`: both the login URL and the API URL.
    pub url: String,
    /// The emulator, to tick, inspect and inject faults.
    pub sim: Sim,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Builds an emulator and serves it on `127.0.0.1:0` in the background.
pub async fn spawn(config: SimConfig) -> Result<RunningSim, SimError> {
    let sim = Sim::new(config)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let router = sim.router();
    tokio::spawn(async move {
        let shutdown = async {
            let _ = rx.await;
        };
        if let Err(error) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(message = "Emulator stopped serving.", %error);
        }
    });
    Ok(RunningSim {
        url,
        sim,
        shutdown: Some(tx),
    })
}

/// Serves an emulator on a listener until the future is dropped (for `rampart sim`).
pub async fn serve(sim: Sim, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, sim.router()).await
}
