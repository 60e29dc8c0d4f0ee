//! Creating, changing and removing accounts, and checking logins. The portal, the API and the CLI
//! all come through here, so the password policy and the audit log hold on every path.

use chrono::Utc;
use rampart_store::{NewAuditEntry, NewUser, Role, Store, StoreError, User};
use secrecy::{ExposeSecret, SecretString};

use crate::auth::password::{decoy_hash, hash_password, verify_password};
use crate::auth::policy::{self, MAX_PASSWORD_LEN};
use crate::error::AppError;

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

/// Checks a new password for the account `name` against the policy ([`policy::problem`]).
pub fn check_password(password: &SecretString, name: &str) -> Result<(), AppError> {
    match policy::problem(password.expose_secret(), name) {
        Some(why) => Err(AppError::BadRequest(why)),
        None => Ok(()),
    }
}

/// Records an entry of the audit log, now.
pub(crate) async fn audit(
    store: &dyn Store,
    actor: &str,
    action: &str,
    target: Option<&str>,
    details: Option<String>,
) -> Result<(), AppError> {
    store
        .record_audit(&NewAuditEntry {
            at: Utc::now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.map(str::to_owned),
            details,
        })
        .await?;
    Ok(())
}

/// Creates an account. `must_change_password`: the password was chosen for the person (the
/// demo's one-time password), who must replace it at the first sign-in.
pub async fn create(
    store: &dyn Store,
    name: &str,
    role: Role,
    password: &SecretString,
    must_change_password: bool,
    actor: &str,
) -> Result<User, AppError> {
    check_name(name)?;
    check_password(password, name)?;
    let hash = hash_password(password.clone())
        .await
        .map_err(AppError::internal)?;
    let user = store
        .create_user(&NewUser {
            name: name.to_owned(),
            role,
            password_hash: hash,
            created_at: Utc::now(),
            must_change_password,
        })
        .await?;
    audit(
        store,
        actor,
        "user.create",
        Some(&user.name),
        Some(format!("role {}", role.as_str())),
    )
    .await?;
    Ok(user)
}

/// Sets the password of `user` (checked against the policy first).
pub async fn set_password(
    store: &dyn Store,
    user: &User,
    password: &SecretString,
    actor: &str,
) -> Result<User, AppError> {
    check_password(password, &user.name)?;
    let hash = hash_password(password.clone())
        .await
        .map_err(AppError::internal)?;
    let changed = store
        .set_password(user.id, &hash, false, Utc::now())
        .await?;
    audit(store, actor, "user.password", Some(&user.name), None).await?;
    Ok(changed)
}

/// Removes the account `name`; never the last admin.
pub async fn remove(store: &dyn Store, name: &str, actor: &str) -> Result<User, AppError> {
    let user = match store.user_credentials(name).await? {
        Some(c) => c.user,
        None => {
            return Err(AppError::NotFound(format!(
                "there is no account named '{}'",
                name.chars().take(64).collect::<String>()
            )));
        }
    };
    remove_user(store, &user, actor).await?;
    Ok(user)
}

/// Removes `user`; never the last admin.
pub async fn remove_user(store: &dyn Store, user: &User, actor: &str) -> Result<(), AppError> {
    match store.delete_user(user.id).await {
        Ok(()) => {}
        Err(StoreError::Conflict(m)) => return Err(AppError::Conflict(m)),
        Err(e) => return Err(e.into()),
    }
    audit(
        store,
        actor,
        "user.remove",
        Some(&user.name),
        Some(format!("role {}", user.role.as_str())),
    )
    .await
}

/// What a login attempt found.
pub enum Login {
    Ok(User),
    /// The account exists; the password is wrong.
    WrongPassword(User),
    /// No such account (checked as slowly as a wrong password).
    UnknownAccount,
}

/// Checks a name and password.
pub async fn authenticate(
    store: &dyn Store,
    name: &str,
    password: SecretString,
) -> Result<Login, AppError> {
    if name.is_empty() || name.len() > 256 || password.expose_secret().len() > MAX_PASSWORD_LEN {
        return Ok(Login::UnknownAccount);
    }
    match store.user_credentials(name).await? {
        Some(c) => Ok(if verify_password(password, c.password_hash).await {
            Login::Ok(c.user)
        } else {
            Login::WrongPassword(c.user)
        }),
        None => {
            verify_password(password, decoy_hash().await).await;
            Ok(Login::UnknownAccount)
        }
    }
}

/// Records a failed sign-in in the audit log. The name typed is recorded only when such an
/// account exists: people type their password into the name field, too.
pub async fn audit_failed_login(
    store: &dyn Store,
    account: Option<&User>,
    client: std::net::IpAddr,
    why: &str,
) -> Result<(), AppError> {
    audit(
        store,
        account.map_or("anonymous", |u| u.name.as_str()),
        "user.login_failed",
        account.map(|u| u.name.as_str()),
        Some(format!("{why}, from {client}")),
    )
    .await
}
