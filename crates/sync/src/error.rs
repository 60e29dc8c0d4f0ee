//! What can stop a sync: before a run exists ([`SyncError`]), or during one ([`RunError`], which
//! becomes the run record's error).

use rampart_microsoft::{ApiError, NO_ROLE_EXPLANATION};
use rampart_microsoft::{MissingRoles, TokenError};
use rampart_store::StoreError;

use crate::pipeline::PipeError;
use crate::vault::VaultError;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The Microsoft client could not be set up (cloud not supported, bad URL override).
    #[error(transparent)]
    Source(#[from] ApiError),
    /// The product is not available for this integration yet.
    #[error("{0}")]
    Unsupported(String),
}

/// Why a run stopped. The run is recorded as failed with this error in words; nothing is
/// concluded from it, and what it wrote before stays (writes are idempotent upserts).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    /// No token: Entra refused the app or could not be reached (AADSTS code and fix included).
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The token lacks application roles; the message names them and the consent step.
    #[error("{0}")]
    MissingRoles(MissingRoles),
    /// Microsoft's API failed or refused, after the client's retries.
    #[error(transparent)]
    Microsoft(#[from] ApiError),
    /// The database refused what was read.
    #[error("could not store what was read: {0}")]
    Store(#[from] StoreError),
    /// Defender for Cloud: the app sees no subscription at all (it holds no Azure role).
    #[error("{}", NO_ROLE_EXPLANATION)]
    NoSubscription,
    /// Defender for Cloud: every subscription the app sees is disabled or deleted.
    #[error(
        "every subscription the app sees is disabled or deleted, and Microsoft serves no Defender data for those: give the app a role on an active subscription"
    )]
    NoActiveSubscription,
    /// Defender for Cloud: no subscription was read completely; one problem per subscription.
    #[error("no subscription could be read completely, so nothing was concluded. {}", .0.join(". "))]
    NoSubscriptionReadCompletely(Vec<String>),
}

impl From<PipeError> for RunError {
    fn from(e: PipeError) -> Self {
        match e {
            PipeError::Read(e) => RunError::Microsoft(e),
            PipeError::Write(e) => RunError::Store(e),
        }
    }
}
