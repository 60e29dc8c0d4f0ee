//! Clients for Microsoft Entra ID and Microsoft Defender for Endpoint: tokens, cloud presets, paging,
//! rate limits, retries, streaming decode, and the wire types with their conversions into
//! [`rampart_model`].
//!
//! The contract is `shared/reference/mde-api.md`; the module docs cite its sections. In short:
//!
//! - [`entra`]: client-credentials tokens, cached until ~5 minutes before expiry, one request for
//!   many concurrent callers, every AADSTS error explained with its fix, roles read from the token.
//! - [`cloud`]: login/API hosts and scopes per cloud (GCC signs in commercially but calls `.us`);
//!   the bearer token goes only to the configured API host(s).
//! - [`MdeClient`]: the reads a sync needs. Each returns a [`RecordStream`] of [`ReadEvent`]s:
//!   records in bounded batches (back-pressure: a slow consumer slows the download, memory stays
//!   flat), [`ReadEvent::Restart`] when a page is read again after a failure part-way, and a final
//!   [`ReadReport`] that says whether the read was provably complete.
//! - [`wire`] mirrors Microsoft's JSON; [`convert`] turns it into model types.
//!
//! Every request passes the same path (`http`): per-family rate limits (two buckets each), `429` →
//! `Retry-After`, `5xx`/timeouts/resets/cut bodies → bounded jittered retries, `401` → one token
//! refresh, `403` → the missing application role named. [`MdeClient::metrics`] counts calls, 429s,
//! retries and bytes for the run record.
//!
//! ```no_run
//! use futures::StreamExt as _;
//! use rampart_microsoft::entra::ClientCredentials;
//! use rampart_microsoft::{MdeClient, MdeConfig, ReadEvent};
//! use rampart_model::Cloud;
//!
//! # async fn sync() -> Result<(), Box<dyn std::error::Error>> {
//! let credentials = ClientCredentials {
//!     tenant_id: "contoso.onmicrosoft.com".parse()?,
//!     client_id: "00000000-0000-4000-8000-000000000002".parse()?,
//!     client_secret: std::env::var("RAMPART_SECRET")?.into(),
//! };
//! let client = MdeClient::new(MdeConfig::new(Cloud::Commercial, credentials))?;
//!
//! // `integration test`: AADSTS errors come back explained; missing roles are named.
//! let check = client.check_token().await?;
//! if let Some(missing) = check.missing_roles.filter(|m| !m.is_empty()) {
//!     eprintln!("{missing}");
//! }
//!
//! let mut findings = client.software_vulnerabilities_by_machine(50_000);
//! while let Some(event) = findings.next().await {
//!     match event? {
//!         ReadEvent::Records { page, records } => {
//!             for row in records {
//!                 match row.into_finding() {
//!                     Ok(finding) => { /* upsert (idempotent) */ }
//!                     Err(not_a_finding) => { /* a software row without CVE, ... */ }
//!                 }
//!             }
//!         }
//!         ReadEvent::Restart { page, reason } => { /* page `page` comes again from its start */ }
//!         ReadEvent::PageDone { .. } => {}
//!         ReadEvent::Finished(report) => {
//!             // Mark findings fixed only after a complete read.
//!             println!("{} records, complete: {} ({})", report.records, report.complete, report.reason);
//!         }
//!     }
//! }
//! println!("{:?}", client.metrics());
//! # Ok(())
//! # }
//! ```

mod arm;
pub mod cloud;
pub mod cloud_findings;
pub mod convert;
pub mod convert_arm;
pub mod decode;
pub mod entra;
mod error;
pub mod export_file;
pub mod export_set;
mod graph;
mod http;
pub mod intel;
mod mde;
mod paging;
pub mod wire;

pub use arm::{
    ASSESSMENTS_API, ASSESSMENTS_FALLBACK_API, ArmClient, ArmConfig, CVE_DETAILS_PER_QUERY,
    NO_ROLE_EXPLANATION, VULNERABILITY_QUERY, authorization_failed_fix, cve_details_query,
    is_authorization_failed, is_unsupported_api_version,
};
pub use error::{ApiError, ApiErrorDetail, Forbidden, MdeError};
pub use export_set::FileReadOptions;
pub use http::{
    ApiFamily, FamilyLimit, HttpOptions, Metrics, MetricsSnapshot, RateLimits, RetryPolicy,
    parse_retry_after,
};
pub use mde::{MdeClient, MdeConfig, TokenCheck};
pub use paging::{
    EXPORT_MAX_PAGE_SIZE, GRAPH_MAX_TOP, MACHINES_MAX_TOP, PagingOptions, ReadEnd, ReadEvent,
    ReadReport, RecordStream, VULNERABILITIES_MAX_TOP,
};
