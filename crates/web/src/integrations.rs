//! Integration changes shared by the portal and the API: checking input, sealing the secret,
//! recording the audit log, asking the engine to test or sync.

use chrono::{NaiveDate, Utc};
use rampart_model::{ClientId, Cloud, Integration, IntegrationName, Product, SecretHint, TenantId};
use rampart_store::{
    IntegrationUpdate, NewAuditEntry, NewIntegration, SecretCiphertext, StoreError,
};
use rampart_sync::ConnectionReport;
use rampart_sync::vault::Sealed;
use secrecy::{ExposeSecret, SecretString};

use crate::error::AppError;
use crate::state::AppState;

/// The longest client secret accepted (Entra's are 40 characters; this only bounds hostile input).
const MAX_SECRET_LEN: usize = 1024;
/// Warn this many days before a secret expires.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// An integration as a person typed it: all text, checked by [`IntegrationInput::check`].
#[derive(Debug, Default)]
pub struct IntegrationInput {
    pub name: String,
    pub product: String,
    pub cloud: String,
    pub tenant_id: String,
    pub client_id: String,
    /// `None` keeps the stored secret (on update).
    pub client_secret: Option<SecretString>,
    /// `YYYY-MM-DD` or empty.
    pub secret_expires: String,
    pub login_url: String,
    pub api_url: String,
    pub schedule_minutes: String,
    pub enabled: bool,
}

/// What is wrong with the input, one sentence per field. Never contains the secret.
#[derive(Debug)]
pub struct InputError(pub Vec<String>);

struct Checked {
    name: IntegrationName,
    product: Product,
    cloud: Cloud,
    tenant_id: TenantId,
    client_id: ClientId,
    secret: Option<SecretString>,
    expires: Option<NaiveDate>,
    login_url: Option<String>,
    api_url: Option<String>,
    schedule_minutes: i64,
    enabled: bool,
}

fn check_url(label: &'static str, raw: &str, errors: &mut Vec<String>) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let well_formed = url::Url::parse(raw)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if !well_formed {
        errors.push(format!(
            "{label} must be an http(s) URL such as https://login.example.com, or empty"
        ));
        return None;
    }
    // The clients' own rules (plain http only to this machine, no credentials in the URL), so
    // that a URL they would refuse is refused here, not at the first sync.
    match rampart_sync::check_override_url(label, raw) {
        Ok(()) => Some(raw.trim_end_matches('/').to_owned()),
        Err(e) => {
            errors.push(format!("{label}: {e}"));
            None
        }
    }
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

impl IntegrationInput {
    fn check(&self, secret_required: bool) -> Result<Checked, InputError> {
        let mut errors = Vec::new();
        let name = self
            .name
            .trim()
            .parse::<IntegrationName>()
            .map_err(|e| errors.push(format!("Name: {e}")))
            .ok();
        let product = self
            .product
            .parse::<Product>()
            .map_err(|e| errors.push(format!("Product: {e}")))
            .ok();
        let cloud = if self.cloud.trim().is_empty() {
            Some(Cloud::Commercial)
        } else {
            self.cloud
                .parse::<Cloud>()
                .map_err(|e| errors.push(format!("Cloud: {e}")))
                .ok()
        };
        let tenant_id = self
            .tenant_id
            .trim()
            .parse::<TenantId>()
            .map_err(|e| errors.push(format!("Tenant ID: {e}")))
            .ok();
        let client_id = self
            .client_id
            .trim()
            .parse::<ClientId>()
            .map_err(|e| errors.push(format!("Client ID: {e}")))
            .ok();
        let secret = match &self.client_secret {
            Some(s) => {
                let v = s.expose_secret().trim_end_matches(['\n', '\r']);
                if v.trim().is_empty() {
                    errors.push("Client secret: it is empty; paste the secret's Value from Microsoft Entra (App registrations > your app > Certificates & secrets)".into());
                    None
                } else if v.len() > MAX_SECRET_LEN {
                    errors.push("Client secret: it is longer than any Entra secret".into());
                    None
                } else if v.chars().any(char::is_control) {
                    errors.push("Client secret: it contains control characters; paste only the secret's Value".into());
                    None
                } else {
                    Some(SecretString::from(v.to_owned()))
                }
            }
            None if secret_required => {
                errors.push("Client secret: required; paste the secret's Value from Microsoft Entra (not its Secret ID)".into());
                None
            }
            None => None,
        };
        let expires = match self.secret_expires.trim() {
            "" => None,
            d => NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| errors.push("Secret expires: use a date like 2027-06-30".into()))
                .ok(),
        };
        let login_url = check_url("Login URL", &self.login_url, &mut errors);
        let api_url = check_url("API URL", &self.api_url, &mut errors);
        let schedule_minutes = match self.schedule_minutes.trim() {
            "" => product.map_or(360, Integration::default_schedule_minutes),
            s => match s.parse::<i64>() {
                Ok(m) if (5..=10_080).contains(&m) => m,
                _ => {
                    errors
                        .push("Schedule: minutes between syncs, from 5 to 10080 (one week)".into());
                    360
                }
            },
        };
        match (name, product, cloud, tenant_id, client_id) {
            (Some(name), Some(product), Some(cloud), Some(tenant_id), Some(client_id))
                if errors.is_empty() =>
            {
                Ok(Checked {
                    name,
                    product,
                    cloud,
                    tenant_id,
                    client_id,
                    secret,
                    expires,
                    login_url,
                    api_url,
                    schedule_minutes,
                    enabled: self.enabled,
                })
            }
            _ => Err(InputError(errors)),
        }
    }
}

fn ciphertext(s: Sealed) -> SecretCiphertext {
    SecretCiphertext {
        ciphertext: s.ciphertext,
        nonce: s.nonce,
    }
}

fn store_error(e: StoreError) -> Result<InputError, AppError> {
    match e {
        StoreError::Conflict(m) | StoreError::InvalidInput(m) => Ok(InputError(vec![m])),
        other => Err(other.into()),
    }
}

pub async fn create(
    state: &AppState,
    input: &IntegrationInput,
    actor: &str,
) -> Result<Integration, InputErrorOr> {
    let c = input.check(true).map_err(InputErrorOr::Input)?;
    let secret = c
        .secret
        .ok_or_else(|| InputErrorOr::Input(InputError(vec!["Client secret: required".into()])))?;
    let sealed = state
        .engine
        .vault()
        .seal(c.name.as_str(), &secret)
        .map_err(|e| InputErrorOr::App(AppError::internal(e)))?;
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
    let integration = match state.store().create_integration(&new).await {
        Ok(i) => i,
        Err(e) => return Err(store_error(e).map_or_else(InputErrorOr::App, InputErrorOr::Input)),
    };
    audit(
        state,
        actor,
        "integration.create",
        &integration,
        describe(&integration),
    )
    .await?;
    Ok(integration)
}

pub async fn update(
    state: &AppState,
    existing: &Integration,
    input: &IntegrationInput,
    actor: &str,
) -> Result<Integration, InputErrorOr> {
    let c = input.check(false).map_err(InputErrorOr::Input)?;
    if c.product != existing.product {
        return Err(InputErrorOr::Input(InputError(vec![
            "Product: an integration's product cannot change; add a new integration instead".into(),
        ])));
    }
    // The stored secret goes only where it was entered for: whoever moves it to another server
    // must know it (otherwise an admin session or token would be enough to send it anywhere).
    let moves = moved(existing, &c);
    if !moves.is_empty() && c.secret.is_none() {
        return Err(InputErrorOr::Input(InputError(vec![format!(
            "Client secret: changing the {} sends the client secret to another server; enter the client secret again to confirm it may go there",
            moves
                .iter()
                .map(|(what, _)| *what)
                .collect::<Vec<_>>()
                .join(" and ")
        )])));
    }
    let vault = state.engine.vault();
    let app = |e: &dyn std::fmt::Display| InputErrorOr::App(AppError::internal(e));
    // The secret is sealed to the integration's name: a rename seals it again.
    let secret = match (&c.secret, c.name.as_str() != existing.name.as_str()) {
        (Some(s), _) => Some((
            ciphertext(vault.seal(c.name.as_str(), s).map_err(|e| app(&e))?),
            SecretHint::of(s.expose_secret(), c.expires),
        )),
        (None, renamed) => {
            let stored = state
                .store()
                .integration_secret(existing.id)
                .await
                .map_err(|e| InputErrorOr::App(e.into()))?;
            let hint = SecretHint {
                last4: existing.secret_hint.last4.clone(),
                expires_on: c.expires,
            };
            if renamed {
                let plain = vault
                    .open_secret(
                        existing.name.as_str(),
                        &Sealed {
                            ciphertext: stored.ciphertext,
                            nonce: stored.nonce,
                        },
                    )
                    .map_err(|e| app(&e))?;
                Some((
                    ciphertext(vault.seal(c.name.as_str(), &plain).map_err(|e| app(&e))?),
                    hint,
                ))
            } else if hint != existing.secret_hint {
                Some((stored, hint))
            } else {
                None
            }
        }
    };
    let new_secret = c.secret.is_some();
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
    let integration = match state.store().update_integration(existing.id, &update).await {
        Ok(i) => i,
        Err(e) => return Err(store_error(e).map_or_else(InputErrorOr::App, InputErrorOr::Input)),
    };
    let mut details = describe(&integration);
    if new_secret {
        details.push_str(", new client secret");
    }
    for (what, change) in &moves {
        details.push_str(&format!(", {what} {change}"));
    }
    audit(state, actor, "integration.update", &integration, details).await?;
    Ok(integration)
}

pub async fn test(
    state: &AppState,
    integration: &Integration,
    actor: &str,
) -> Result<ConnectionReport, AppError> {
    let report = state.engine.test_connection(integration).await;
    let verdict = if report.passed() { "passed" } else { "failed" };
    audit(
        state,
        actor,
        "integration.test",
        integration,
        verdict.to_owned(),
    )
    .await?;
    Ok(report)
}

/// Queues a sync now and starts it; `false` when one is already running.
pub async fn sync_now(
    state: &AppState,
    integration: Integration,
    actor: &str,
) -> Result<bool, AppError> {
    let started = crate::scheduler::sync_now(state, &integration).await?;
    if started {
        audit(
            state,
            actor,
            "integration.sync",
            &integration,
            String::new(),
        )
        .await?;
    }
    Ok(started)
}

/// The input was wrong, or something else failed.
#[derive(Debug)]
pub enum InputErrorOr {
    Input(InputError),
    App(AppError),
}

impl From<AppError> for InputErrorOr {
    fn from(e: AppError) -> Self {
        InputErrorOr::App(e)
    }
}

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

async fn audit(
    state: &AppState,
    actor: &str,
    action: &str,
    integration: &Integration,
    details: String,
) -> Result<(), AppError> {
    state
        .store()
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

pub fn product_label(p: Product) -> &'static str {
    match p {
        Product::Endpoint => "Defender for Endpoint",
        Product::Cloud => "Defender for Cloud",
    }
}

/// A warning when the secret expires within [`EXPIRY_WARNING_DAYS`] (or has expired).
pub fn expiry_warning(i: &Integration, today: NaiveDate) -> Option<String> {
    let days = i.secret_hint.days_left(today)?;
    if days < 0 {
        Some(format!(
            "The client secret expired {} days ago: create a new one in Entra and save it here.",
            -days
        ))
    } else if days <= EXPIRY_WARNING_DAYS {
        Some(format!(
            "The client secret expires in {days} days: create a new one in Entra and save it here before then."
        ))
    } else {
        None
    }
}
