//! Errors of the Defender for Endpoint client, written for the person who has to act on them.

use std::fmt;
use std::time::Duration;

use crate::cloud::CloudError;
use crate::entra::{MissingRoles, RequiredRole, TokenError};
use crate::http::ApiFamily;

/// Defender for Endpoint answered with an error status that retrying does not fix (or retries ran
/// out on a 429). `message` is Microsoft's free text, bounded; branch on `code`, never on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ApiError {
    pub family: ApiFamily,
    pub status: u16,
    /// `error.code`: `BadRequest`, `ResourceNotFound`, `Forbidden`, `TooManyRequests`, ...
    pub code: Option<String>,
    pub message: Option<String>,
    /// `error.target`: Microsoft's per-request correlation id.
    pub target: Option<String>,
    /// For 429: how long Microsoft asked to wait.
    pub retry_after: Option<Duration>,
    /// `error.details[]`: ARM and Resource Graph give the real reason here (`ResponsePayloadTooLarge`)
    /// under a generic `BadRequest` and an opaque "Please provide below info…" message.
    pub details: Vec<ApiErrorDetail>,
}

/// One entry of an error's `details[]`, bounded like the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiErrorDetail {
    pub code: Option<String>,
    pub message: Option<String>,
}

impl ApiError {
    /// Whether one of `details[]` carries `code` (case-insensitive).
    pub fn has_detail(&self, code: &str) -> bool {
        self.details.iter().any(|d| {
            d.code
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case(code))
        })
    }

    fn render(&self) -> String {
        let mut s = format!(
            "{} refused the {} request with HTTP {}",
            self.family.service(),
            self.family,
            self.status
        );
        if let Some(code) = &self.code {
            s.push_str(&format!(" {code}"));
        }
        if let Some(m) = &self.message {
            s.push_str(&format!(": {m}"));
        }
        if !s.ends_with('.') {
            s.push('.');
        }
        for d in &self.details {
            let text = match (&d.code, &d.message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.clone(),
                (None, Some(m)) => m.clone(),
                (None, None) => continue,
            };
            s.push_str(&format!(" Details: {text}"));
            if !s.ends_with('.') {
                s.push('.');
            }
        }
        let graph = self.family == ApiFamily::ResourceGraph;
        let hint = match (self.status, self.code.as_deref()) {
            (400, _) if graph && self.has_detail("ResponsePayloadTooLarge") => Some(
                "Resource Graph answers at most 16 MiB at a time; Rampart asked for fewer rows per page down to one and the answer was still too large.".to_owned(),
            ),
            (400, _) if graph => Some(
                "Resource Graph refused the query; the details above say why.".to_owned(),
            ),
            (401, _) => Some(
                "The API refused the token even after a fresh one was fetched: check the integration's cloud (the token must be for the same cloud as the API host) and any scope or API URL override.".to_owned(),
            ),
            (403, Some(c)) if c.eq_ignore_ascii_case("DisabledFeature") => Some(
                "The feature is not enabled for this tenant (for example Defender Vulnerability Management is not licensed).".to_owned(),
            ),
            (404, _) => Some(
                "Microsoft says there is nothing at this address; for the device list this can mean the tenant has no recently seen devices.".to_owned(),
            ),
            (429, _) => Some(match self.retry_after {
                Some(d) => format!(
                    "Microsoft's rate limit for this app and tenant is spent; it asked to wait {} s. The next sync will continue.",
                    d.as_secs()
                ),
                None => "Microsoft's rate limit for this app and tenant is spent; the next sync will continue.".to_owned(),
            }),
            (400, _) => Some(
                "Microsoft refused a parameter of the request (for example a delta start time older than 14 days).".to_owned(),
            ),
            _ => None,
        };
        if let Some(h) = hint {
            s.push(' ');
            s.push_str(&h);
        }
        if let Some(t) = &self.target {
            s.push_str(&format!(" (request id {t})"));
        }
        s
    }
}

/// A 403 `Forbidden`: the app lacks the application role this API needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    pub api: ApiError,
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

/// Everything that can go wrong talking to Defender for Endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MdeError {
    /// The integration's cloud or URL overrides do not work.
    #[error(transparent)]
    Config(#[from] CloudError),
    /// No access token (wrong secret, tenant, ...): see [`TokenError::explanation`].
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Api(ApiError),
    /// 403 `Forbidden`, explained as the application role to grant.
    #[error("{0}")]
    Forbidden(Box<Forbidden>),
    /// Transient failures did not stop within the retry budget.
    #[error(
        "{}'s {family} API kept failing ({attempts} attempts; last: {last}). Microsoft may be having trouble: the next sync will try again", family.service()
    )]
    RetriesExhausted {
        family: ApiFamily,
        attempts: u32,
        last: String,
    },
    /// A `@odata.nextLink` pointed at a host the token must not go to. Nothing was sent there.
    #[error(
        "{}'s {family} API sent a next-page link to {host}, which is not the configured API host; Rampart did not follow it, so the bearer token was not sent there", family.service()
    )]
    UntrustedNextLink { family: ApiFamily, host: String },
    /// A small answer (export file list, single record) was not the expected JSON.
    #[error(
        "{}'s {family} API answered with something Rampart cannot read: {detail}", family.service()
    )]
    UnexpectedBody { family: ApiFamily, detail: String },
    /// An answer arrived whole but is not valid JSON. Not retried: the same request gets the same
    /// bytes, and a network fault looks different (a cut or stalled body, which is retried).
    #[error(
        "{}'s {family} API sent an answer that is not valid JSON, at byte {offset} ({detail}); the text there reads: \"{sample}\". \
         Reading it again would give the same answer, so Rampart stopped without retrying; nothing already stored was changed. \
         If the next sync meets it again, report it to Microsoft support with the time of the sync", family.service()
    )]
    MalformedBody {
        family: ApiFamily,
        /// Byte offset in the (decompressed) body.
        offset: u64,
        detail: String,
        /// Up to 80 printable characters around the offset.
        sample: String,
    },
    /// An export file download failed (blob error, bad gzip, unusable link).
    #[error("{0}")]
    ExportFile(String),
    /// An export file's download link stopped working: Azure Storage answered 403 (the SAS
    /// signature expired, `AuthenticationFailed`) or 404 (Microsoft replaced the snapshot). A new
    /// `SoftwareVulnerabilitiesExport` call gives fresh links.
    #[error("{}", stale_link_message(*status, code.as_deref()))]
    ExportLinkStale { status: u16, code: Option<String> },
    /// The HTTP client could not be built (TLS backend); not a user error.
    #[error("the HTTP client could not be set up: {0}")]
    Client(String),
    /// The consumer dropped the stream, or the reader task ended without a result.
    #[error("the read was interrupted: {0}")]
    Interrupted(String),
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

impl MdeError {
    /// Whether a later attempt could succeed without anyone changing the configuration.
    pub fn is_transient(&self) -> bool {
        match self {
            MdeError::Token(t) => t.is_transient(),
            MdeError::Api(a) => a.status == 429 || a.status >= 500,
            MdeError::RetriesExhausted { .. } | MdeError::Interrupted(_) => true,
            _ => false,
        }
    }
}
