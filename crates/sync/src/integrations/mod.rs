//! The use cases of an integration — add, change, test, sync now, remove — written once for the
//! command line, the portal and the API: the same checks of what a person typed, the same sealing
//! of the client secret, the same audit entries. The callers only read their input (a form, a
//! JSON body, options and standard input) and show the outcome in their own medium.
//!
//! ```no_run
//! # async fn demo(engine: &rampart_sync::Engine) -> Result<(), rampart_sync::integrations::IntegrationError> {
//! use rampart_sync::integrations::{IntegrationInput, Integrations};
//! let input = IntegrationInput {
//!     name: "contoso".into(),
//!     product: "endpoint".into(),
//!     tenant_id: "contoso.onmicrosoft.com".into(),
//!     client_id: "00000000-0000-0000-0000-000000000001".into(),
//!     client_secret: Some("the secret's Value".to_owned().into()),
//!     enabled: true,
//!     ..IntegrationInput::default()
//! };
//! let added = Integrations::new(engine).add(&input, "alice").await?;
//! # Ok(()) }
//! ```

mod input;

use chrono::{NaiveDate, Utc};
use rampart_model::{Integration, SecretHint, WorkspaceId};
use rampart_store::{
    Enqueued, IntegrationUpdate, JobKind, NewAuditEntry, NewIntegration, SecretCiphertext, Store,
    StoreError,
};
use secrecy::ExposeSecret;

pub use input::{InputError, InputProblem, IntegrationInput, SecretProblem, check_secret};

use crate::ConnectionReport;
use crate::engine::Engine;
use crate::vault::{Sealed, VaultError};
use input::Checked;

/// Warn this many days before a client secret expires.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Why a change to an integration was not made. Nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum IntegrationError {
    /// What the person gave is wrong; they can correct it and try again.
    #[error(transparent)]
    Invalid(#[from] InputError),
    #[error(transparent)]
    Store(StoreError),
    /// The client secret could not be sealed or opened with the master key.
    #[error(transparent)]
    Vault(#[from] VaultError),
}

/// A name already taken or a value the database refuses is the person's to correct.
impl From<StoreError> for IntegrationError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) | StoreError::InvalidInput(m) => {
                IntegrationError::Invalid(InputError::one(InputProblem::Refused(m)))
            }
            other => IntegrationError::Store(other),
        }
    }
}

/// What "sync now" did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncNow {
    /// A sync is queued, due now: the first worker to claim it runs it.
    Queued,
    /// A sync of the integration is running; nothing was queued.
    AlreadyRunning,
}

/// The client secret's expiry, when it is near or past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretExpiry {
    Expired {
        days_ago: i64,
    },
    /// Within [`EXPIRY_WARNING_DAYS`].
    Soon {
        days: i64,
    },
}

/// Whether the client secret of `integration` has expired or expires within
/// [`EXPIRY_WARNING_DAYS`] of `today`; `None` when it is far off or not known.
pub fn secret_expiry(integration: &Integration, today: NaiveDate) -> Option<SecretExpiry> {
    let days = integration.secret_hint.days_left(today)?;
    if days < 0 {
        Some(SecretExpiry::Expired { days_ago: -days })
    } else if days <= EXPIRY_WARNING_DAYS {
        Some(SecretExpiry::Soon { days })
    } else {
        None
    }
}

/// The use cases of integrations, over the engine's store and vault. `actor` is who asks, as the
/// audit log names them (a user's name, `api:TOKEN`, `cli`).
pub struct Integrations<'a> {
    engine: &'a Engine,
}

impl<'a> Integrations<'a> {
    pub fn new(engine: &'a Engine) -> Self {
        Self { engine }
    }

    /// Checks `input`, seals its client secret and stores a new integration in the default
    /// workspace.
    pub async fn add(
        &self,
        input: &IntegrationInput,
        actor: &str,
    ) -> Result<Integration, IntegrationError> {
        self.add_in(input, WorkspaceId::DEFAULT, actor).await
    }

    /// [`Integrations::add`] into `workspace`. Whether the actor may add there is the caller's
    /// check (an admin of the workspace, or a global admin).
    pub async fn add_in(
        &self,
        input: &IntegrationInput,
        workspace: WorkspaceId,
        actor: &str,
    ) -> Result<Integration, IntegrationError> {
        let c = input.check(true)?;
        let secret = c.secret.ok_or(InputError::one(InputProblem::Secret(
            SecretProblem::Missing,
        )))?;
        let sealed = self.engine.vault().seal(c.name.as_str(), &secret)?;
        let new = NewIntegration {
            name: c.name,
            product: c.product,
            cloud: c.cloud,
            tenant_id: c.tenant_id,
            client_id: c.client_id,
            secret: ciphertext(sealed),
            hint: SecretHint::of(secret.expose_secret(), c.expires),
            login_url: c.login_url,
            api_url: c.api_url,
            schedule_minutes: c.schedule_minutes,
            enabled: c.enabled,
        };
        let integration = self
            .engine
            .store()
            .create_integration_in(&new, workspace)
            .await?;
        self.audit(
            actor,
            "integration.create",
            &integration,
            describe(&integration),
        )
        .await?;
        Ok(integration)
    }

    /// Checks `input` and changes `existing` to it. A secret left out is kept, but only for the
    /// servers it was entered for.
    pub async fn update(
        &self,
        existing: &Integration,
        input: &IntegrationInput,
        actor: &str,
    ) -> Result<Integration, IntegrationError> {
        let c = input.check(false)?;
        if c.product != existing.product {
            return Err(InputError::field(
                "Product",
                "an integration's product cannot change; add a new integration instead",
            )
            .into());
        }
        // The stored secret goes only where it was entered for: whoever moves it to another server
        // must know it (otherwise an admin session or token would be enough to send it anywhere).
        let moves = moved(existing, &c);
        if !moves.is_empty() && c.secret.is_none() {
            let what: Vec<&str> = moves.iter().map(|(what, _)| *what).collect();
            return Err(InputError::field(
                "Client secret",
                format!(
                    "changing the {} sends the client secret to another server; enter the client secret again to confirm it may go there",
                    what.join(" and ")
                ),
            )
            .into());
        }
        let secret = self.secret_update(existing, &c).await?;
        let update = IntegrationUpdate {
            name: Some(c.name),
            cloud: Some(c.cloud),
            tenant_id: Some(c.tenant_id),
            client_id: Some(c.client_id),
            secret,
            login_url: Some(c.login_url),
            api_url: Some(c.api_url),
            schedule_minutes: Some(c.schedule_minutes),
            enabled: Some(c.enabled),
        };
        let integration = self
            .engine
            .store()
            .update_integration(existing.id, &update)
            .await?;
        let mut details = describe(&integration);
        if c.secret.is_some() {
            details.push_str(", new client secret");
        }
        for (what, change) in &moves {
            details.push_str(&format!(", {what} {change}"));
        }
        self.audit(actor, "integration.update", &integration, details)
            .await?;
        Ok(integration)
    }

    /// The secret and hint to store on update; `None` keeps both as they are.
    async fn secret_update(
        &self,
        existing: &Integration,
        c: &Checked,
    ) -> Result<Option<(SecretCiphertext, SecretHint)>, IntegrationError> {
        let vault = self.engine.vault();
        if let Some(s) = &c.secret {
            let sealed = vault.seal(c.name.as_str(), s)?;
            return Ok(Some((
                ciphertext(sealed),
                SecretHint::of(s.expose_secret(), c.expires),
            )));
        }
        let stored = self.engine.store().integration_secret(existing.id).await?;
        let hint = SecretHint {
            last4: existing.secret_hint.last4.clone(),
            expires_on: c.expires,
        };
        // The secret is sealed to the integration's name: a rename seals it again.
        if c.name.as_str() != existing.name.as_str() {
            let plain = vault.open_secret(
                existing.name.as_str(),
                &Sealed {
                    ciphertext: stored.ciphertext,
                    nonce: stored.nonce,
                },
            )?;
            let sealed = vault.seal(c.name.as_str(), &plain)?;
            Ok(Some((ciphertext(sealed), hint)))
        } else if hint != existing.secret_hint {
            Ok(Some((stored, hint)))
        } else {
            Ok(None)
        }
    }

    /// Tests the connection step by step, and records that it was tested and how it went.
    pub async fn test(
        &self,
        integration: &Integration,
        actor: &str,
    ) -> Result<ConnectionReport, StoreError> {
        let report = self.engine.test_connection(integration).await;
        let verdict = if report.passed() { "passed" } else { "failed" };
        self.audit(actor, "integration.test", integration, verdict.to_owned())
            .await?;
        Ok(report)
    }

    /// Queues a sync due now (or brings the queued one forward) and records who asked.
    pub async fn sync_now(
        &self,
        integration: &Integration,
        actor: &str,
    ) -> Result<SyncNow, StoreError> {
        let now = Utc::now();
        let queued = self
            .engine
            .store()
            .enqueue_job(integration.id, JobKind::Requested, now, now)
            .await?;
        if let Enqueued::Running(_) = queued {
            return Ok(SyncNow::AlreadyRunning);
        }
        self.audit(actor, "integration.sync", integration, String::new())
            .await?;
        Ok(SyncNow::Queued)
    }

    /// Removes the integration and everything synced from it.
    pub async fn remove(&self, integration: &Integration, actor: &str) -> Result<(), StoreError> {
        remove_integration(self.engine.store().as_ref(), integration, actor).await
    }

    async fn audit(
        &self,
        actor: &str,
        action: &str,
        integration: &Integration,
        details: String,
    ) -> Result<(), StoreError> {
        audit(
            self.engine.store().as_ref(),
            actor,
            action,
            integration,
            details,
        )
        .await
    }
}

/// Removes the integration and everything synced from it, as [`Integrations::remove`] does, with
/// the store alone: an integration whose secret the master key no longer opens (a lost key file)
/// can still be removed.
pub async fn remove_integration(
    store: &dyn Store,
    integration: &Integration,
    actor: &str,
) -> Result<(), StoreError> {
    store.delete_integration(integration.id).await?;
    audit(
        store,
        actor,
        "integration.delete",
        integration,
        String::new(),
    )
    .await
}

async fn audit(
    store: &dyn Store,
    actor: &str,
    action: &str,
    integration: &Integration,
    details: String,
) -> Result<(), StoreError> {
    store
        .record_audit(&NewAuditEntry {
            at: Utc::now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: Some(integration.name.to_string()),
            details: (!details.is_empty()).then_some(details),
        })
        .await?;
    Ok(())
}

fn ciphertext(s: Sealed) -> SecretCiphertext {
    SecretCiphertext {
        ciphertext: s.ciphertext,
        nonce: s.nonce,
    }
}

/// The integration in the audit log's words (never the secret).
fn describe(i: &Integration) -> String {
    format!(
        "product {}, cloud {}, tenant {}, client {}, every {} min, {}",
        i.product,
        i.cloud,
        i.tenant_id,
        i.client_id,
        i.schedule_minutes,
        if i.enabled { "enabled" } else { "disabled" }
    )
}

/// A URL override as a comparable destination (`None`: Microsoft's host for the cloud).
fn destination(url: Option<&str>) -> Option<String> {
    url.map(|u| {
        url::Url::parse(u)
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|_| u.to_owned())
            .trim_end_matches('/')
            .to_owned()
    })
}

/// Where the client secret (and the tokens got with it) would go that differs from where it goes
/// now: what changed, and the change in words for the audit log ("https://a → https://b").
fn moved(existing: &Integration, c: &Checked) -> Vec<(&'static str, String)> {
    let shown = |u: &Option<String>| u.clone().unwrap_or_else(|| "(Microsoft's)".into());
    let mut changes = Vec::new();
    if c.cloud != existing.cloud {
        changes.push(("cloud", format!("{} → {}", existing.cloud, c.cloud)));
    }
    for (label, old, new) in [
        ("login URL", &existing.login_url, &c.login_url),
        ("API URL", &existing.api_url, &c.api_url),
    ] {
        if destination(old.as_deref()) != destination(new.as_deref()) {
            changes.push((label, format!("{} → {}", shown(old), shown(new))));
        }
    }
    changes
}
