//! What only Defender for Endpoint fails with: a missing application role (its API is guarded by
//! app roles; Azure's by RBAC, which answers `AuthorizationFailed` instead) and the export files
//! downloaded from Azure Storage.

use std::fmt;

use super::Refusal;
use crate::roles::{MissingRoles, RequiredRole};

/// The Defender for Endpoint parts of [`ApiError`](super::ApiError).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// 403 `Forbidden`, explained as the application role to grant.
    #[error("{0}")]
    Forbidden(Box<Forbidden>),
    /// An export file download failed (blob error, bad gzip, unusable link).
    #[error("{0}")]
    ExportFile(String),
    /// An export file's download link stopped working: Azure Storage answered 403 (the SAS
    /// signature expired, `AuthenticationFailed`) or 404 (Microsoft replaced the snapshot). A new
    /// `SoftwareVulnerabilitiesExport` call gives fresh links.
    #[error("{}", stale_link_message(*status, code.as_deref()))]
    ExportLinkStale { status: u16, code: Option<String> },
}

/// A 403 `Forbidden`: the app lacks the application role this API needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    pub api: Refusal,
    /// The role this API needs.
    pub required: RequiredRole,
    /// What the current token lacks, from its `roles` claim (`None` when the token is not a JWT).
    pub missing: Option<MissingRoles>,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Defender for Endpoint refused the {} request (HTTP 403: missing application role). ",
            self.api.family
        )?;
        match &self.missing {
            Some(m) if !m.is_empty() => write!(f, "{m}")?,
            Some(_) => write!(
                f,
                "The token does carry {}, so the permission is probably very new (it can take a while to apply) or the token is for a different API: check the integration's cloud and any scope override.",
                self.required.name
            )?,
            None => write!(
                f,
                "{}",
                MissingRoles {
                    missing: vec![self.required],
                    roles_claim_present: true,
                }
            )?,
        }
        if let Some(t) = &self.api.target {
            write!(f, " (request id {t})")?;
        }
        Ok(())
    }
}

fn stale_link_message(status: u16, code: Option<&str>) -> String {
    let code = code.map(|c| format!(" {c}")).unwrap_or_default();
    if status == 404 {
        format!(
            "an export file is no longer there (HTTP 404{code}): Microsoft has replaced the export snapshot. The next sync reads the new one"
        )
    } else {
        format!(
            "an export file's download link was refused (HTTP {status}{code}): SAS links expire after the hours asked for (sasValidHours, at most 6). Fetch new links (a new export call) and download again"
        )
    }
}
