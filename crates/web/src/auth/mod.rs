//! Accounts, sessions, CSRF protection, roles, API tokens and login rate limiting.

pub mod csrf;
pub mod extract;
pub mod password;
pub mod ratelimit;
pub mod session_store;
pub mod tokens;
pub mod users;

/// Session key of the signed-in account's id.
pub const USER_KEY: &str = "user_id";
