//! Sync runs: claim, read from Microsoft, normalise, store, judge completeness, reconcile, record.
//!
//! The [`Engine`] owns one Microsoft client per integration for the life of the process (Microsoft's
//! rate limits are per app and tenant, and hourly, so the client-side buckets must outlive a run).
//! A run follows these rules:
//!
//! - **Idempotent**: every write is an upsert keyed by (integration, natural key); a run can die
//!   anywhere and a re-run converges, with no duplicates.
//! - **Complete before conclusive**: findings become `fixed` and assets `missing` only after a read
//!   that is provably complete and plausible; a failed or partial run concludes nothing. A run that
//!   would mark more than 30 % of assets missing is held for a person (circuit breaker).
//! - **Every run is visible**: the run record carries counts, API calls, 429s, retries, bytes, the
//!   verdict and an error in words.
//!
//! Inside the crate, arrows point one way: `engine` (clients, dispatch) → `endpoint` / `cloud`
//! (what each product reads) → `run` (the one run skeleton: open, reconcile, settle, close) →
//! `pipeline`, `verdict`, `options`, `error`. A product module never imports the engine.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn rampart_store::Store>, vault: rampart_sync::vault::Vault)
//! # -> Result<(), rampart_sync::SyncError> {
//! use rampart_sync::{Engine, EngineOptions, SyncRequest, progress::Silent};
//! let engine = Engine::new(store.clone(), vault, EngineOptions::default());
//! let integration = store.get_integration_by_name(&rampart_store::Visibility::All, &"contoso".parse().unwrap()).await?;
//! let run = engine.sync(&integration, SyncRequest::default(), &Silent).await?;
//! println!("{:?}: {} findings read", run.status, run.findings.read);
//! # Ok(()) }
//! ```

mod cloud;
mod cloud_connection;
mod connection;
mod delta;
mod endpoint;
mod engine;
mod error;
pub mod exceptions;
pub mod integrations;
pub mod intel;
mod options;
mod pipeline;
pub mod priority;
pub mod progress;
mod run;
pub mod sla;
pub mod vault;
mod verdict;
pub mod webhooks;

pub use cloud_connection::CLOUD_STEPS;
pub use connection::{ConnectionReport, ENDPOINT_STEPS, Step, StepOutcome};
pub use engine::Engine;
pub use error::SyncError;
pub use options::{EngineOptions, FindingsSource, SyncMode, SyncRequest};
/// Checking a login or API URL override when it is entered (the web layer does not call
/// Microsoft's clients itself).
pub use rampart_microsoft::{CloudError, check_override_url};
