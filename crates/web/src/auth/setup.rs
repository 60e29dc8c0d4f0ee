//! The first-run setup token. Being on the same machine proves nothing behind a reverse proxy
//! (every visitor then comes from 127.0.0.1), so the page that creates the first admin asks for a
//! one-time token that `rampart serve` prints when it starts while no admin exists (as Jenkins
//! and Grafana do). Only the token's SHA-256 is stored; it works once and expires.

use chrono::Utc;
use rampart_store::{Role, Store, StoreError};
use secrecy::SecretString;

use crate::auth::tokens::{random_token, token_hash};

/// How long a setup token works, in hours.
pub const LIFETIME_HOURS: i64 = 1;

pub async fn admin_exists(store: &dyn Store) -> Result<bool, StoreError> {
    Ok(store
        .list_users()
        .await?
        .iter()
        .any(|u| u.role == Role::Admin))
}

/// A new setup token when no admin exists (each start prints a new one), else `None`.
pub async fn issue_if_needed(store: &dyn Store) -> Result<Option<SecretString>, StoreError> {
    if admin_exists(store).await? {
        return Ok(None);
    }
    let token = random_token("setup");
    let now = Utc::now();
    store
        .issue_setup_token(
            &token_hash(&token),
            now,
            now + chrono::Duration::hours(LIFETIME_HOURS),
        )
        .await?;
    Ok(Some(SecretString::from(token)))
}

/// Uses `token`: `true` once for a token issued and not expired.
pub async fn consume(store: &dyn Store, token: &str) -> Result<bool, StoreError> {
    let token = token.trim();
    if token.is_empty() || token.len() > 200 {
        return Ok(false);
    }
    store
        .consume_setup_token(&token_hash(token), Utc::now())
        .await
}
