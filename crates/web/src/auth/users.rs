//! Creating accounts and checking logins.

use chrono::Utc;
use rampart_store::{NewAuditEntry, NewUser, Role, Store, User};
use secrecy::{ExposeSecret, SecretString};

use crate::auth::password::{decoy_hash, hash_password, verify_password};
use crate::error::AppError;

pub const MIN_PASSWORD_LEN: usize = 12;
const MAX_PASSWORD_LEN: usize = 1024;

/// Checks an account name: 1 to 64 letters, digits, `.`, `_`, `-` or `@`.
pub fn check_name(name: &str) -> Result<(), AppError> {
    let ok = !name.is_empty()
        && name.chars().count() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(AppError::BadRequest(
            "an account name is 1 to 64 letters, digits, '.', '_', '-' or '@'".into(),
        ))
    }
}

pub fn check_password(password: &SecretString) -> Result<(), AppError> {
    let n = password.expose_secret().chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(AppError::BadRequest(format!(
            "the password is too short: use at least {MIN_PASSWORD_LEN} characters (a passphrase is fine)"
        )));
    }
    if n > MAX_PASSWORD_LEN {
        return Err(AppError::BadRequest("the password is too long".into()));
    }
    Ok(())
}

pub async fn create(
    store: &dyn Store,
    name: &str,
    role: Role,
    password: &SecretString,
    actor: &str,
) -> Result<User, AppError> {
    check_name(name)?;
    check_password(password)?;
    let hash = hash_password(password.clone())
        .await
        .map_err(AppError::internal)?;
    let user = store
        .create_user(&NewUser {
            name: name.to_owned(),
            role,
            password_hash: hash,
            created_at: Utc::now(),
        })
        .await?;
    store
        .record_audit(&NewAuditEntry {
            at: Utc::now(),
            actor: actor.to_owned(),
            action: "user.create".into(),
            target: Some(user.name.clone()),
            details: Some(format!("role {}", role.as_str())),
        })
        .await?;
    Ok(user)
}

/// The account when the name and password match; `None` otherwise (and as slowly).
pub async fn authenticate(
    store: &dyn Store,
    name: &str,
    password: SecretString,
) -> Result<Option<User>, AppError> {
    if name.is_empty() || name.len() > 256 || password.expose_secret().len() > MAX_PASSWORD_LEN {
        return Ok(None);
    }
    match store.user_credentials(name).await? {
        Some(c) => Ok(verify_password(password, c.password_hash)
            .await
            .then_some(c.user)),
        None => {
            verify_password(password, decoy_hash().await).await;
            Ok(None)
        }
    }
}
