//! Exceptions (accepted risk, issue 14): what an administrator accepts, and how a finding read
//! learns whether it is accepted. How they act on the SLA clock is
//! `rampart_model::priority::sla_status`; the rules for users are in docs/prioritisation.md
//! ("Exceptions").
//!
//! Nothing is written to the findings an exception covers: the store works it out when it reads
//! them, in SQL for filters and counts ([`in_force_sql`], [`effective_due_sql`]) and in Rust for
//! a page of findings ([`covers`]). Both spell the same rule, and the scenario tests check that
//! they agree.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use rampart_model::priority::Exception;
use rampart_model::{CveId, IntegrationId, Product};

use crate::common::{RowExt, corrupt};
use crate::db::Dialect;
use crate::error::Result;
use crate::types::Backend;
use crate::types::NewAuditEntry;

/// What an exception accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scope", content = "target", rename_all = "snake_case")]
pub enum ExceptionScope {
    /// One finding (by its id).
    Finding(i64),
    /// Every finding the fix closes ([`fix_key`]).
    Fix(String),
    /// Every finding of the CVE.
    Cve(CveId),
}

impl ExceptionScope {
    pub fn kind(&self) -> &'static str {
        match self {
            ExceptionScope::Finding(_) => "finding",
            ExceptionScope::Fix(_) => "fix",
            ExceptionScope::Cve(_) => "cve",
        }
    }

    /// What it names, for lists and the audit log.
    pub fn target(&self) -> String {
        match self {
            ExceptionScope::Finding(id) => format!("finding {id}"),
            ExceptionScope::Fix(fix) => fix.clone(),
            ExceptionScope::Cve(cve) => cve.as_str().to_owned(),
        }
    }
}

/// What `create_exception` needs. The use case (`rampart_sync::exceptions`) checks the reason,
/// the owner and the expiry before it gets here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewException {
    pub scope: ExceptionScope,
    /// `None`: every integration (not for a finding, which belongs to one).
    pub integration: Option<IntegrationId>,
    pub reason: String,
    pub owner: String,
    /// Who granted it (a user name).
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A stored exception.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredException {
    pub id: i64,
    #[serde(flatten)]
    pub scope: ExceptionScope,
    pub integration_id: Option<IntegrationId>,
    pub reason: String,
    pub owner: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// When it stops being in force: its expiry, or when it was revoked if that was earlier.
    pub ends_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
}

/// Where an exception stands at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExceptionState {
    InForce,
    Expired,
    Revoked,
}

impl ExceptionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ExceptionState::InForce => "in_force",
            ExceptionState::Expired => "expired",
            ExceptionState::Revoked => "revoked",
        }
    }
}

impl StoredException {
    pub fn state(&self, now: DateTime<Utc>) -> ExceptionState {
        if self.revoked_at.is_some_and(|r| r <= now) {
            ExceptionState::Revoked
        } else if now >= self.ends_at {
            ExceptionState::Expired
        } else {
            ExceptionState::InForce
        }
    }

    /// The pause of the SLA clock it stands for (from its grant to its end).
    pub fn pause(&self) -> Exception {
        Exception {
            accepted_at: self.created_at,
            expires_at: self.ends_at,
        }
    }

    /// Whether it covers a finding of `integration_id` with this id, CVE and fix.
    pub fn covers(
        &self,
        integration_id: IntegrationId,
        finding_id: i64,
        cve: &CveId,
        fix: &str,
    ) -> bool {
        covers(
            &self.scope,
            self.integration_id,
            integration_id,
            finding_id,
            cve,
            fix,
        )
    }
}

/// Which exceptions a listing returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExceptionFilter {
    /// Those that can cover this integration's findings (its own and those of all
    /// integrations).
    pub integration: Option<IntegrationId>,
    /// Only those in force at this time.
    pub in_force_at: Option<DateTime<Utc>>,
}

/// The rule of [`StoredException::covers`], for the store's own reads.
pub(crate) fn covers(
    scope: &ExceptionScope,
    exception_integration: Option<IntegrationId>,
    integration_id: IntegrationId,
    finding_id: i64,
    cve: &CveId,
    fix: &str,
) -> bool {
    if exception_integration.is_some_and(|i| i != integration_id) {
        return false;
    }
    match scope {
        ExceptionScope::Finding(id) => *id == finding_id,
        ExceptionScope::Fix(key) => key == fix,
        ExceptionScope::Cve(c) => c == cve,
    }
}

/// The fix that closes a finding, as Rampart groups findings in the remediation plan: Defender
/// for Endpoint's recommended security update where it names one (e.g. "February 2025 Security
/// Updates"), otherwise an upgrade of the software, to the fixed version where the source gives
/// one (Defender for Cloud's `fixedVersion`). [`FIX_KEY_SQL`] is the same rule in SQL.
pub fn fix_key(
    product: Product,
    vendor: &str,
    name: &str,
    recommended_update: Option<&str>,
) -> String {
    let update = recommended_update.unwrap_or("");
    if product == Product::Endpoint && !update.is_empty() {
        return update.to_owned();
    }
    let mut key = String::from("Upgrade ");
    if !vendor.is_empty() {
        key.push_str(vendor);
        key.push(' ');
    }
    key.push_str(name);
    if !update.is_empty() {
        key.push_str(" to ");
        key.push_str(update);
    }
    key
}

/// [`fix_key`] in SQL, over finding `f`, its software `s` and its integration `i`.
pub(crate) const FIX_KEY_SQL: &str = "(CASE WHEN i.product = 'endpoint' AND COALESCE(f.recommended_update, '') <> '' \
     THEN f.recommended_update ELSE 'Upgrade ' || (CASE WHEN s.vendor = '' THEN '' ELSE s.vendor || ' ' END) || s.name \
     || (CASE WHEN COALESCE(f.recommended_update, '') = '' THEN '' ELSE ' to ' || f.recommended_update END) END)";

/// SQL: exception `e` covers finding `f` (the fix key read by a subquery, only for fix scopes).
fn covers_sql() -> String {
    format!(
        "(e.integration_id IS NULL OR e.integration_id = f.integration_id) AND (e.finding_id = f.id \
         OR e.cve_id = f.cve_id OR (e.fix_key IS NOT NULL AND e.fix_key = (SELECT {FIX_KEY_SQL} FROM software s \
         JOIN integrations i ON i.id = f.integration_id WHERE s.id = f.software_id)))"
    )
}

/// SQL: the ids of the open findings an exception granted by `now` (a placeholder) may cover,
/// found from the exceptions' side through indexes: a finding by its id, a CVE through
/// findings_open_by_cve, a fix through findings_open_by_software (migration 0014; a security
/// update is looked for under each software, an upgrade under the software it names). A
/// superset: counts check [`in_force_sql`] and [`effective_due_sql`] on these rows only, instead
/// of on every finding.
///
/// SQLite's planner, given the join from exceptions through software to findings, builds a
/// Bloom filter over the findings for it (a scan: 0.5–6 s at 2,000,000 findings, measured);
/// given the same conditions as `IN` lists on the indexed columns it probes
/// `findings_open_by_cve` and `findings_open_by_software` directly (30 ms). PostgreSQL keeps the
/// join, which it runs as nested index look-ups.
pub(crate) fn covered_sql(d: Dialect, now: &str) -> String {
    let upgrade =
        "'Upgrade ' || (CASE WHEN s.vendor = '' THEN '' ELSE s.vendor || ' ' END) || s.name";
    let by_finding = format!(
        "SELECT e.finding_id FROM exceptions e WHERE e.finding_id IS NOT NULL AND e.created_at <= {now}"
    );
    match d.backend {
        Backend::Sqlite => format!(
            "{by_finding} \
             UNION SELECT c.id FROM findings c WHERE c.status = 'open' AND c.cve_id IN \
             (SELECT e.cve_id FROM exceptions e WHERE e.scope = 'cve' AND e.created_at <= {now}) \
             UNION SELECT c.id FROM findings c WHERE c.status = 'open' AND c.software_id IN (SELECT s.id FROM software s) \
             AND c.recommended_update IN (SELECT e.fix_key FROM exceptions e WHERE e.scope = 'fix' AND e.created_at <= {now}) \
             UNION SELECT c.id FROM findings c WHERE c.status = 'open' AND c.software_id IN \
             (SELECT s.id FROM exceptions e CROSS JOIN software s WHERE e.scope = 'fix' AND e.created_at <= {now} \
             AND substr(e.fix_key, 1, length({upgrade})) = {upgrade})"
        ),
        Backend::Postgres => format!(
            "{by_finding} \
             UNION SELECT c.id FROM exceptions e JOIN findings c ON c.cve_id = e.cve_id AND c.status = 'open' \
             WHERE e.cve_id IS NOT NULL AND e.created_at <= {now} \
             UNION SELECT c.id FROM exceptions e JOIN software s ON e.fix_key IS NOT NULL \
             JOIN findings c ON c.software_id = s.id AND c.recommended_update = e.fix_key AND c.status = 'open' \
             WHERE e.created_at <= {now} \
             UNION SELECT c.id FROM exceptions e JOIN software s ON substr(e.fix_key, 1, length({upgrade})) = {upgrade} \
             JOIN findings c ON c.software_id = s.id AND c.status = 'open' \
             WHERE e.fix_key IS NOT NULL AND e.created_at <= {now}"
        ),
    }
}

/// SQL: finding `f` is accepted at `now` (a placeholder): an exception covering it is in force.
pub(crate) fn in_force_sql(now: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM exceptions e WHERE e.created_at <= {now} AND e.ends_at > {now} AND {})",
        covers_sql()
    )
}

/// SQL: finding `f`'s due date at `now` once paused time is added: the latest exception that
/// ended before `now` (and after the clock started) moved it by the time it was in force while the
/// clock ran, as `rampart_model::priority::sla_status` does with [`StoredException::pause`].
pub(crate) fn effective_due_sql(d: Dialect, now: &str) -> String {
    format!(
        "(f.due_at + COALESCE((SELECT e.ends_at - (CASE WHEN e.created_at > f.clock_start THEN e.created_at ELSE f.clock_start END) \
         FROM exceptions e WHERE e.ends_at <= {now} AND e.ends_at > f.clock_start AND {} \
         ORDER BY e.ends_at DESC, e.id DESC LIMIT 1), {}))",
        covers_sql(),
        d.zero_duration
    )
}

/// Of the exceptions covering one finding, the one `rampart_model::priority::sla_status` takes:
/// the one in force at `now` if any, else the latest that ended after the finding's clock started
/// (its start moved to the clock's start if it was granted before), as [`effective_due_sql`]
/// picks it. `covering` is sorted by (end, id).
pub(crate) fn relevant_pause(
    covering: &[Exception],
    clock_start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<Exception> {
    if let Some(e) = covering.iter().rev().find(|e| e.in_force(now)) {
        return Some(*e);
    }
    covering
        .iter()
        .rev()
        .find(|e| e.expires_at <= now && e.expires_at > clock_start)
        .map(|e| Exception {
            accepted_at: e.accepted_at.max(clock_start),
            expires_at: e.expires_at,
        })
}

/// The audit log's entry for `action` (`exception.create`, `exception.revoke`,
/// `exception.expire`) on an exception: who, what it accepts, why, whose it is and until when.
pub fn audit_entry(
    action: &str,
    actor: &str,
    at: DateTime<Utc>,
    e: &StoredException,
) -> NewAuditEntry {
    let within = match e.integration_id {
        Some(i) => format!("integration {i}"),
        None => "all integrations".to_owned(),
    };
    NewAuditEntry {
        at,
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: Some(format!(
            "exception {}: {} {}",
            e.id,
            e.scope.kind(),
            e.scope.target()
        )),
        details: Some(
            serde_json::json!({
                "scope": e.scope.kind(),
                "target": e.scope.target(),
                "within": within,
                "reason": e.reason,
                "owner": e.owner,
                "expires_at": e.expires_at.to_rfc3339(),
            })
            .to_string(),
        ),
    }
}

/// The columns [`decode_exception`] reads.
pub(crate) const EXCEPTION_COLUMNS: &str = "id, scope, integration_id, finding_id, cve_id, fix_key, reason, owner, \
     created_by, created_at, expires_at, ends_at, revoked_at, revoked_by";

pub(crate) fn decode_exception(r: &impl RowExt) -> Result<StoredException> {
    let kind = r.text("scope")?;
    let scope = match kind.as_str() {
        "finding" => ExceptionScope::Finding(
            r.opt_int("finding_id")?
                .ok_or_else(|| corrupt("exception finding", "NULL"))?,
        ),
        "fix" => ExceptionScope::Fix(
            r.opt_text("fix_key")?
                .ok_or_else(|| corrupt("exception fix", "NULL"))?,
        ),
        "cve" => {
            let cve = r
                .opt_text("cve_id")?
                .ok_or_else(|| corrupt("exception CVE", "NULL"))?;
            ExceptionScope::Cve(cve.parse().map_err(|_| corrupt("CVE id", &cve))?)
        }
        other => return Err(corrupt("exception scope", other)),
    };
    Ok(StoredException {
        id: r.int("id")?,
        scope,
        integration_id: r.opt_int("integration_id")?.map(IntegrationId),
        reason: r.text("reason")?,
        owner: r.text("owner")?,
        created_by: r.text("created_by")?,
        created_at: r.ts("created_at")?,
        expires_at: r.ts("expires_at")?,
        ends_at: r.ts("ends_at")?,
        revoked_at: r.opt_ts("revoked_at")?,
        revoked_by: r.opt_text("revoked_by")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fix_of_a_finding() {
        let kb = fix_key(
            Product::Endpoint,
            "microsoft",
            "windows_11",
            Some("February 2025 Security Updates"),
        );
        assert_eq!(kb, "February 2025 Security Updates");
        assert_eq!(
            fix_key(Product::Endpoint, "google", "chrome", None),
            "Upgrade google chrome"
        );
        assert_eq!(
            fix_key(Product::Cloud, "", "openssl", Some("3.0.15")),
            "Upgrade openssl to 3.0.15"
        );
    }
}
