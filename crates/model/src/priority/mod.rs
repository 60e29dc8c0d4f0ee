//! Deciding what to fix first: a finding's SSVC decision, its priority 0–100 with the part each
//! factor contributed, and its SLA clock. Pure code, documented for users in
//! `docs/prioritisation.md`.
//!
//! 1. [`Factors::for_finding`] turns what Rampart knows about a finding (the finding, its CVE, its
//!    asset, CISA KEV, Defender for Cloud risk, the organisation's [`CriticalityRule`]s) into the
//!    four SSVC decision points, each with the reason for its value, plus EPSS, CVSS and the other
//!    scored factors.
//! 2. [`Factors::decision`] applies CERT/CC's deployer tree ([`Decision::decide`]).
//! 3. [`Factors::priority`] places the finding inside its decision's band of 0–100 and explains
//!    the number.
//! 4. [`Assessment`] adds the due date from an [`SlaPolicy`]; [`sla_status`] says where the
//!    finding stands.
//!
//! ```
//! use rampart_model::priority::{
//!     Automatable, AutomatableWhy, Decision, ExploitationWhy, ExposureWhy, Factor, Factors,
//!     HumanImpact, HumanImpactWhy, Exploitation, SystemExposure,
//! };
//! let factors = Factors {
//!     exploitation: Factor { value: Exploitation::Active, why: ExploitationWhy::Kev },
//!     exposure: Factor { value: SystemExposure::Open, why: ExposureWhy::InternetFacing },
//!     automatable: Factor { value: Automatable::Yes, why: AutomatableWhy::CvssVector },
//!     human_impact: Factor { value: HumanImpact::High, why: HumanImpactWhy::DeviceValue },
//!     epss: Some(0.94),
//!     cvss: Some(9.8),
//!     kev_ransomware: true,
//!     cloud_risk: None,
//!     device_exposure: None,
//! };
//! let priority = factors.priority();
//! assert_eq!(priority.decision, Decision::Immediate);
//! assert!(priority.score >= 75);
//! let sum: u32 = priority.contributions.iter().map(|c| u32::from(c.points)).sum();
//! assert_eq!(sum, u32::from(priority.score));
//! ```

mod cvss;
mod decision;
mod factors;
mod kev;
mod mapping;
mod rules;
mod score;
mod sla;

pub use cvss::{AutomatableRule, CvssVector};
pub use decision::{Automatable, Decision, Exploitation, HumanImpact, SystemExposure};
pub use factors::{
    AutomatableWhy, CloudRiskLevel, DeviceExposureLevel, ExploitationWhy, ExposureSignals,
    ExposureWhy, Factor, FactorPolicy, Factors, FindingContext, HumanImpactWhy,
};
pub use kev::{KevCatalog, KevEntries, KevEntry, RansomwareUse};
pub use mapping::{automatable, exploitation, exposure, human_impact};
pub use rules::{AssetMatcher, CriticalityMatch, CriticalityRule, criticality_for};
pub use score::{CVSS_WHEN_UNKNOWN, EPSS_WHEN_UNKNOWN, FactorContribution, FactorName, Priority};
pub use sla::{
    Assessment, Exception, SlaDays, SlaPolicy, SlaPolicyError, SlaStatus, clock_start, sla_status,
};

#[cfg(test)]
mod tests;
