//! Accounts, sessions, CSRF protection, roles, API tokens and login rate limiting.

pub mod client;
pub mod csrf;
pub mod extract;
pub mod login_csrf;
pub mod password;
pub mod policy;
pub mod ratelimit;
pub mod session_store;
pub mod setup;
pub mod tokens;
pub mod users;

use std::time::Duration;

use zeroize::Zeroizing;

/// Session key of the signed-in account's id.
pub const USER_KEY: &str = "user_id";
/// Session key of when the account signed in (microseconds since the Unix epoch): the session
/// ends [`AuthSettings::session_lifetime`] later however busy it is, and when the password
/// changes after it.
pub const SIGNED_IN_AT_KEY: &str = "signed_in_at";
/// Session key of the workspace the header's switcher chose (absent: all the account may see).
pub const WORKSPACE_KEY: &str = "workspace_id";

/// How the portal authenticates, from [`crate::WebConfig`].
pub struct AuthSettings {
    pub client: client::ClientAddressing,
    /// Sessions end this long after sign-in, however busy.
    pub session_lifetime: Duration,
    /// Signs the sign-in form's token (derived from the master key, the same in every process).
    pub form_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("client", &self.client)
            .field("session_lifetime", &self.session_lifetime)
            .finish_non_exhaustive()
    }
}
