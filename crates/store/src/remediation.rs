//! The remediation plan ("Fix first", issue 14): open findings grouped by the fix that closes
//! them ([`crate::exceptions::fix_key`]), ranked by the priority that applying the fix removes.
//! The ranking is documented in docs/prioritisation.md ("The remediation plan").

use serde::{Deserialize, Serialize};

use rampart_model::{CveId, IntegrationId};

/// Which findings the plan is made of. Empty = every integration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemediationFilter {
    pub integration: Option<IntegrationId>,
}

/// The order of the plan; every order is largest first, ties by the fix's text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RemediationSort {
    /// The sum of the priorities the fix removes (the plan's ranking).
    #[default]
    Priority,
    /// Overdue findings it closes, then the priority.
    Overdue,
    /// Assets it touches, then the priority.
    Assets,
    /// Findings it closes, then the priority.
    Findings,
}

/// One fix and what applying it closes: open findings that no exception covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Remediation {
    /// The update or upgrade, as Microsoft names it (see [`crate::exceptions::fix_key`]).
    pub fix: String,
    /// The sum of the stored priorities of the findings it closes (findings not assessed yet
    /// count 0).
    pub priority_removed: f64,
    /// The highest of those priorities.
    pub max_priority: Option<f64>,
    pub findings: u64,
    pub assets: u64,
    /// Findings past their due date.
    pub overdue: u64,
    /// Findings whose decision is `immediate`.
    pub immediate: u64,
    /// The CVEs it closes, in id order.
    pub cves: Vec<CveId>,
    /// Microsoft's reference of the recommendation (Defender for Endpoint's recommendation id,
    /// Defender for Cloud's assessment id), one of them when the findings differ.
    pub reference: Option<String>,
    /// Where Microsoft describes it, where Rampart knows: see [`microsoft_link`].
    pub link: Option<String>,
}

/// Microsoft's page for a fix, where Rampart can tell it: a security update named by its KB
/// number (Microsoft Support's article, <https://support.microsoft.com/help/5034441> for
/// KB5034441), or a Defender for Cloud assessment (its resource in the Azure portal).
pub fn microsoft_link(fix: &str, reference: Option<&str>) -> Option<String> {
    let kb = fix.trim().strip_prefix("KB").unwrap_or(fix.trim());
    if kb.len() >= 6 && kb.chars().all(|c| c.is_ascii_digit()) {
        return Some(format!("https://support.microsoft.com/help/{kb}"));
    }
    match reference {
        Some(r) if r.starts_with("/subscriptions/") => {
            Some(format!("https://portal.azure.com/#@/resource{r}"))
        }
        Some(r) if r.starts_with("https://") => Some(r.to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_to_microsoft_where_known() {
        assert_eq!(
            microsoft_link("KB5034441", None).as_deref(),
            Some("https://support.microsoft.com/help/5034441")
        );
        assert_eq!(
            microsoft_link("5034441", Some("va-_-microsoft-_-windows_11")).as_deref(),
            Some("https://support.microsoft.com/help/5034441")
        );
        assert_eq!(
            microsoft_link("February 2025 Security Updates", Some("va-_-x-_-y")),
            None
        );
        assert!(
            microsoft_link("Upgrade openssl to 3.0.15", Some("/subscriptions/s/x"))
                .is_some_and(|l| l.starts_with("https://portal.azure.com/"))
        );
    }
}
