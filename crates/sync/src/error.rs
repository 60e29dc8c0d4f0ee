//! What can stop a sync before or outside a run record.

use rampart_microsoft::ApiError;
use rampart_store::StoreError;

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
