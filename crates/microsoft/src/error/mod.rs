//! Errors of the Microsoft clients, written for the person who has to act on them.
//!
//! Defender for Endpoint and Defender for Cloud share one request path and one paging engine, so
//! they share one error, [`ApiError`]: configuration, token, Microsoft's refusal ([`Refusal`]),
//! exhausted retries, unreadable answers. What only Defender for Endpoint can fail with (missing
//! application roles, export files) sits apart in [`EndpointError`]; Defender for Cloud's own
//! readings of a refusal (`AuthorizationFailed`, unsupported api-versions) are functions of the
//! ARM client.

mod endpoint;
mod refusal;

pub use endpoint::{EndpointError, Forbidden};
pub use refusal::{Refusal, RefusalDetail};

use crate::cloud::CloudError;
use crate::family::ApiFamily;
use crate::token_error::TokenError;

/// Everything that can go wrong talking to Defender for Endpoint or Defender for Cloud.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The integration's cloud or URL overrides do not work.
    #[error(transparent)]
    Config(#[from] CloudError),
    /// No access token (wrong secret, tenant, ...): see [`TokenError::explanation`].
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Microsoft answered with an error status that retrying does not fix.
    #[error(transparent)]
    Refused(Refusal),
    /// A failure only Defender for Endpoint has (application roles, export files).
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
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
    /// The HTTP client could not be built (TLS backend); not a user error.
    #[error("the HTTP client could not be set up: {0}")]
    Client(String),
    /// The consumer dropped the stream, or the reader task ended without a result.
    #[error("the read was interrupted: {0}")]
    Interrupted(String),
}

impl ApiError {
    /// Whether a later attempt could succeed without anyone changing the configuration.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Token(t) => t.is_transient(),
            ApiError::Refused(a) => a.status == 429 || a.status >= 500,
            ApiError::RetriesExhausted { .. } | ApiError::Interrupted(_) => true,
            _ => false,
        }
    }

    /// Microsoft's refusal, when that is what this is (also inside a missing-role error).
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            ApiError::Refused(r) => Some(r),
            ApiError::Endpoint(EndpointError::Forbidden(f)) => Some(&f.api),
            _ => None,
        }
    }
}
