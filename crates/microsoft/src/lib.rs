//! Clients for Microsoft Entra ID and Microsoft Defender for Endpoint: tokens, cloud presets, paging,
//! rate limits, retries, streaming decode, and the wire types with their conversions into
//! [`rampart_model`].
//!
//! Microsoft's contracts are its Learn pages, cited in the module docs (for example
//! <https://learn.microsoft.com/en-us/defender-endpoint/api/exposed-apis-list>). In short:
//!
//! - `entra`: client-credentials tokens ([`ClientCredentials`]), cached until ~5 minutes before
//!   expiry, one request for many concurrent callers, every AADSTS error explained with its fix
//!   ([`TokenError`]), roles read from the token.
//! - `cloud`: login/API hosts and scopes per cloud (GCC signs in commercially but calls `.us`);
//!   the bearer token goes only to the configured API host(s) ([`Endpoints`]).
//! - [`MdeClient`] and [`ArmClient`]: the reads a sync needs. Each returns a [`RecordStream`] of
//!   [`ReadEvent`]s: records in bounded batches (back-pressure: a slow consumer slows the download,
//!   memory stays flat), [`ReadEvent::Restart`] when a page is read again after a failure
//!   part-way, and a final [`ReadReport`] that says whether the read was provably complete. Both
//!   fail with [`ApiError`].
//! - The wire types ([`Machine`], [`AssetVulnerability`], [`Assessment`], ...) mirror Microsoft's
//!   JSON; their `into_*` methods turn them into model types.
//!
//! Every request passes the same path (`http`): per-family rate limits (two buckets each), `429` →
//! `Retry-After`, `5xx`/timeouts/resets/cut bodies → bounded jittered retries, `401` → one token
//! refresh, `403` → the missing application role named (Defender for Endpoint). [`MdeClient::metrics`] counts calls, 429s,
//! retries and bytes for the run record.
//!
//! ```no_run
//! use futures::StreamExt as _;
//! use rampart_microsoft::ClientCredentials;
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

// Layers (each module imports only from the ones above it in this list):
// 1. `wire`, `text`, `family`, `cloud`, `token_error`, `roles`: data, no I/O;
// 2. `error`: the shared error;
// 3. `http`: the request path (tokens and the meaning of a 403 come from its caller);
// 4. `entra`: the token client; `decode`, `paging`, `graph`, `export_file`: reads;
// 5. `client`, `export_set`: what both clients are built from;
// 6. `mde`, `arm`: the Defender for Endpoint and Defender for Cloud clients;
// `convert`, `convert_arm`, `cloud_findings` (wire → model) and `intel` (KEV) stand apart.
mod arm;
mod client;
mod cloud;
mod cloud_findings;
mod convert;
mod convert_arm;
mod decode;
mod entra;
mod error;
mod export_file;
mod export_set;
mod family;
mod graph;
mod http;
mod intel;
mod mde;
mod paging;
mod record;
mod roles;
mod text;
mod token_error;
mod wire;

// The clients and their settings.
pub use arm::ArmClient;
pub use client::{ArmConfig, ClientConfig, MdeConfig};
pub use cloud::{Endpoints, Overrides, check_override_url, supports};
pub use entra::ClientCredentials;
pub use export_set::FileReadOptions;
pub use family::ApiFamily;
pub use http::{FamilyLimit, HttpOptions, MetricsSnapshot, RateLimits, RetryPolicy};
pub use mde::{MdeClient, TokenCheck};
pub use paging::{PagingOptions, ReadEnd, ReadEvent, ReadReport, RecordStream};

// What goes wrong, explained.
pub use cloud::CloudError;
pub use error::{ApiError, EndpointError, Forbidden, Refusal, RefusalDetail};
pub use roles::{ENDPOINT_ROLES, MissingRoles, RequiredRole};
pub use token_error::{Explanation, TokenError, TokenRejection, explain_aadsts};

// Defender for Cloud: api-versions the sync reports, and how to read ARM's refusals.
pub use arm::{
    ASSESSMENTS_API, ASSESSMENTS_FALLBACK_API, CVE_DETAILS_PER_QUERY, NO_ROLE_EXPLANATION,
    authorization_failed_fix, is_authorization_failed,
};

// Microsoft's JSON as read, and what it becomes in the model.
pub use cloud_findings::CloudFinding;
pub use convert::{ChangeStatus, FindingChange, NotAFinding};
pub use convert_arm::VulnerabilityCoverage;
pub use wire::arm::{
    ArmSubscription, Assessment, AssessmentMetadata, AssessmentMetadataProperties,
    ControlDefinition, GraphPage, ScoreControlItem, SecureScoreItem, SubAssessment,
    VulnerabilityRow,
};
pub use wire::entra::{Claims, TokenErrorBody, TokenResponse};
pub use wire::mde::{
    AssetVulnerability, Collection, DeltaAssetVulnerability, ErrorEnvelope, ExportFilesResponse,
    FindingRow, Machine, MachineVulnerability, Recommendation, Software, Vulnerability,
};

// Readers the contract tests drive on Microsoft's examples.
pub use decode::{EnvelopeDecoder, Items};
pub use export_file::read_export_lines;
pub use record::decode_record;

// The CISA KEV catalogue.
pub use intel::{
    DEFAULT_KEV_URL, IntelError, KevClient, KevFetch, MAX_KEV_BYTES, check_feed_url, read_kev,
};
