//! Vendor-neutral types of Rampart.
//!
//! Everything Rampart stores, shows and exports is expressed in these types, whatever Microsoft API it
//! came from. The crate does no I/O: parsing user input into checked newtypes ("parse, don't
//! validate"), the record types, Microsoft's timestamp formats, and the export record mappings live
//! here so that every layer above agrees on them.
//!
//! ```
//! use rampart_model::{ClientId, TenantId};
//! let tenant: TenantId = "contoso.onmicrosoft.com".parse().unwrap();
//! let client: ClientId = "00000000-0000-0000-0000-000000000001".parse().unwrap();
//! assert_eq!(client.to_string(), "00000000-0000-0000-0000-000000000001");
//! assert_eq!(tenant.as_str(), "contoso.onmicrosoft.com");
//! assert!("not a guid".parse::<ClientId>().is_err());
//! ```

mod asset;
pub mod export;
mod finding;
mod ids;
mod integration;
pub mod posture;
pub mod priority;
mod run;
mod timestamp;
mod vulnerability;

pub use asset::{Asset, AssetKind, AssetStatus};
pub use finding::{Finding, FindingKey, FindingStatus};
pub use ids::{ClientId, CveId, DeviceId, IdError, IntegrationName, TenantId};
pub use integration::{Cloud, Integration, IntegrationId, Product, SecretHint, WorkspaceId};
pub use posture::{
    ControlScore, PostureScore, Recommendation, RecommendationRisk, Subscription, TenantScoreParts,
    weighted_percent,
};
pub use run::{EntityCounts, OddRecords, RunId, RunStatus, SyncRun, Verdict};
pub use timestamp::{TimestampError, parse_microsoft_timestamp};
pub use vulnerability::{Severity, Vulnerability};
