//! Exceptions (accepted risk): granting, revoking and listing them, written once for the portal,
//! the API and the command line, with the same checks and the same audit entries. Only
//! administrators may call these; the callers check the role. The rules are in
//! docs/prioritisation.md ("Exceptions").

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use rampart_model::IntegrationId;
use rampart_store::{
    ExceptionFilter, ExceptionScope, NewException, Store, StoreError, StoredException, Visibility,
};

/// The longest an exception may last: accepted risk is looked at again at least once a year.
pub const MAX_EXCEPTION_DAYS: i64 = 365;
/// The longest reason and owner kept.
pub const MAX_TEXT: usize = 1000;
/// Who the audit log names for ends at expiry (no person did it).
pub const EXPIRY_ACTOR: &str = "rampart";

/// What an administrator asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionRequest {
    pub scope: ExceptionScope,
    /// `None`: every integration (a fix or a CVE only).
    pub integration: Option<IntegrationId>,
    pub reason: String,
    pub owner: String,
    pub expires_at: DateTime<Utc>,
}

/// Why an exception was not granted or revoked. Nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum ExceptionError {
    /// What the person gave is wrong; they can correct it and try again.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// It has already ended.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ExceptionError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ExceptionError::NotFound(m),
            StoreError::Conflict(m) => ExceptionError::Conflict(m),
            StoreError::InvalidInput(m) => ExceptionError::Invalid(m),
            other => ExceptionError::Store(other),
        }
    }
}

/// Reads an expiry as typed: a date (`2026-03-31`: the exception lasts through that day, UTC)
/// or an RFC 3339 time.
pub fn parse_expiry(text: &str) -> Result<DateTime<Utc>, ExceptionError> {
    let text = text.trim();
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let next = date
            .succ_opt()
            .ok_or_else(|| ExceptionError::Invalid(format!("'{text}' is too far away")))?;
        return Ok(next.and_time(NaiveTime::MIN).and_utc());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ExceptionError::Invalid(format!(
                "'{}' is not an expiry: give a date as YYYY-MM-DD (the exception lasts through that day, UTC) or an RFC 3339 time",
                text.chars().take(40).collect::<String>()
            ))
        })
}

/// Reads a scope as typed: `finding` with a finding id, `fix` with the fix's text as the
/// remediation plan shows it, `cve` with a CVE id.
pub fn parse_scope(kind: &str, target: &str) -> Result<ExceptionScope, ExceptionError> {
    let target = target.trim();
    match kind.trim() {
        "finding" => target
            .parse::<i64>()
            .map(ExceptionScope::Finding)
            .map_err(|_| ExceptionError::Invalid(format!("'{target}' is not a finding id"))),
        "fix" if !target.is_empty() && target.len() <= MAX_TEXT => {
            Ok(ExceptionScope::Fix(target.to_owned()))
        }
        "fix" => Err(ExceptionError::Invalid(
            "name the fix as the remediation plan shows it".into(),
        )),
        "cve" => target.parse().map(ExceptionScope::Cve).map_err(|_| {
            ExceptionError::Invalid(format!("'{target}' is not a CVE id (CVE-YYYY-NNNN)"))
        }),
        other => Err(ExceptionError::Invalid(format!(
            "'{other}' is not a scope: use finding, fix or cve"
        ))),
    }
}

/// Grants an exception at `now`; `actor` is the administrator, `vis` the workspaces it
/// administers (an integration outside them is not found).
pub async fn grant(
    store: &dyn Store,
    vis: &Visibility,
    request: &ExceptionRequest,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<StoredException, ExceptionError> {
    let reason = required(&request.reason, "a reason (why the risk is accepted)")?;
    let owner = required(&request.owner, "an owner (who answers for the risk)")?;
    if request.expires_at <= now {
        return Err(ExceptionError::Invalid(
            "the expiry must be in the future".into(),
        ));
    }
    if request.expires_at > now + TimeDelta::days(MAX_EXCEPTION_DAYS) {
        return Err(ExceptionError::Invalid(format!(
            "an exception lasts at most {MAX_EXCEPTION_DAYS} days: choose an earlier expiry and grant it again then if the risk is still accepted"
        )));
    }
    if matches!(request.scope, ExceptionScope::Finding(_)) && request.integration.is_none() {
        return Err(ExceptionError::Invalid(
            "a finding belongs to one integration: name it".into(),
        ));
    }
    let new = NewException {
        scope: request.scope.clone(),
        integration: request.integration,
        reason,
        owner,
        created_by: actor.to_owned(),
        created_at: now,
        expires_at: request.expires_at,
    };
    Ok(store.create_exception(vis, &new).await?)
}

/// Revokes an exception at `now`; `actor` is the administrator, `vis` the workspaces it
/// administers.
pub async fn revoke(
    store: &dyn Store,
    vis: &Visibility,
    id: i64,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<StoredException, ExceptionError> {
    Ok(store.revoke_exception(vis, id, now, actor).await?)
}

/// The exceptions in `filter`, newest first, after writing the ends at expiry that are not in
/// the audit log yet (so no job is needed for them: whoever looks first records them).
pub async fn list(
    store: &dyn Store,
    vis: &Visibility,
    filter: &ExceptionFilter,
    limit: u32,
    now: DateTime<Utc>,
) -> Result<Vec<StoredException>, ExceptionError> {
    record_expiries(store, now).await?;
    Ok(store.list_exceptions(vis, filter, limit).await?)
}

/// Writes the ends at expiry not yet in the audit log; returns how many.
pub async fn record_expiries(store: &dyn Store, now: DateTime<Utc>) -> Result<usize, StoreError> {
    Ok(store
        .record_expired_exceptions(now, EXPIRY_ACTOR)
        .await?
        .len())
}

fn required(text: &str, what: &str) -> Result<String, ExceptionError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ExceptionError::Invalid(format!("give {what}")));
    }
    if text.chars().count() > MAX_TEXT {
        return Err(ExceptionError::Invalid(format!(
            "keep it under {MAX_TEXT} characters"
        )));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_as_typed() {
        let t = parse_expiry("2026-03-31").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-04-01T00:00:00+00:00");
        let t = parse_expiry("2026-03-31T12:00:00+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-03-31T10:00:00+00:00");
        assert!(parse_expiry("next week").is_err());
    }

    #[test]
    fn scope_as_typed() {
        assert_eq!(
            parse_scope("finding", " 12 ").unwrap(),
            ExceptionScope::Finding(12)
        );
        assert!(matches!(
            parse_scope("cve", "CVE-2024-1234").unwrap(),
            ExceptionScope::Cve(_)
        ));
        assert!(parse_scope("fix", "").is_err());
        assert!(parse_scope("asset", "x").is_err());
    }
}
