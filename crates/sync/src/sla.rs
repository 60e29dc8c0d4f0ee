//! Prioritisation settings and SLA reporting, as the portal and the API use them
//! (docs/prioritisation.md, "SLA settings", "Criticality rules", "SLA reports"): who may change
//! what, the re-assessment a change queues, and the report and burn-down of what a caller sees.
//!
//! The installation's SLA and the criticality rules apply to every workspace, so only a global
//! admin (visibility `All`) changes them; an integration's own SLA is changed by an admin of its
//! workspace. Every change is audited by the store in the same transaction.

use chrono::{DateTime, TimeDelta, Utc};

use rampart_model::priority::{CriticalityRule, SlaDays};
use rampart_model::{Integration, IntegrationId};
use rampart_store::{
    BurndownPoint, IntegrationSla, SlaReport, SlaSettings, Store, StoreError, StoredRule,
    Visibility,
};

use crate::priority::queue_reassessment;

/// What went wrong with a settings change, for the caller to answer in words.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The caller may not change this.
    #[error("{0}")]
    Forbidden(String),
    /// What the person gave is wrong; they can correct it and try again.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for SettingsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => SettingsError::NotFound(m),
            StoreError::InvalidInput(m) => SettingsError::Invalid(m),
            other => SettingsError::Store(other),
        }
    }
}

fn global_only(vis: &Visibility, what: &str) -> Result<(), SettingsError> {
    if *vis == Visibility::All {
        Ok(())
    } else {
        Err(SettingsError::Forbidden(format!(
            "{what} apply to every workspace, so only a global admin can change them; ask one, or set this integration's own SLA on its page"
        )))
    }
}

/// Saves the installation's SLA days and queues a re-assessment of the integrations that use
/// them (those without their own SLA).
pub async fn set_installation_sla(
    store: &dyn Store,
    vis: &Visibility,
    days: SlaDays,
    by: &str,
    now: DateTime<Utc>,
) -> Result<SlaSettings, SettingsError> {
    global_only(vis, "the installation's SLA days")?;
    let saved = store.set_sla_settings(days, by, now).await?;
    let affected: Vec<IntegrationId> = on_installation_sla(store)
        .await?
        .into_iter()
        .map(|i| i.id)
        .collect();
    queue_reassessment(store, &affected, now).await?;
    Ok(saved)
}

/// The integrations without SLA days of their own: those the installation's days apply to.
pub async fn on_installation_sla(store: &dyn Store) -> Result<Vec<Integration>, StoreError> {
    let mut using = Vec::new();
    for i in store.list_integrations(&Visibility::All).await? {
        if store
            .integration_sla(&Visibility::All, i.id)
            .await?
            .is_none()
        {
            using.push(i);
        }
    }
    Ok(using)
}

/// Replaces the criticality rules and queues a re-assessment of every integration.
pub async fn set_rules(
    store: &dyn Store,
    vis: &Visibility,
    rules: &[CriticalityRule],
    by: &str,
    now: DateTime<Utc>,
) -> Result<Vec<StoredRule>, SettingsError> {
    global_only(vis, "criticality rules")?;
    let saved = store.set_criticality_rules(rules, by, now).await?;
    let all: Vec<IntegrationId> = store
        .list_integrations(&Visibility::All)
        .await?
        .into_iter()
        .map(|i| i.id)
        .collect();
    queue_reassessment(store, &all, now).await?;
    Ok(saved)
}

/// Sets or removes an integration's own SLA (`admin_vis`: where the caller is an admin) and
/// queues its re-assessment.
pub async fn set_integration_sla(
    store: &dyn Store,
    admin_vis: &Visibility,
    integration: IntegrationId,
    days: Option<SlaDays>,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Option<IntegrationSla>, SettingsError> {
    let saved = store
        .set_integration_sla(admin_vis, integration, days, by, now)
        .await?;
    queue_reassessment(store, &[integration], now).await?;
    Ok(saved)
}

/// The report periods offered, in days.
pub const PERIODS: [u32; 3] = [30, 90, 365];

/// The period asked for, in days: one of [`PERIODS`] (30 when not given).
pub fn period(days: Option<u32>) -> Result<u32, SettingsError> {
    match days {
        None => Ok(PERIODS[0]),
        Some(d) if PERIODS.contains(&d) => Ok(d),
        Some(d) => Err(SettingsError::Invalid(format!(
            "a period of {d} days is not offered: use 30, 90 or 365"
        ))),
    }
}

/// The SLA report of what `vis` sees (one integration, if given): open findings as of each
/// integration's last run, findings fixed in the last `days` days.
pub async fn report(
    store: &dyn Store,
    vis: &Visibility,
    integration: Option<IntegrationId>,
    days: u32,
    now: DateTime<Utc>,
) -> Result<SlaReport, SettingsError> {
    if let Some(id) = integration {
        // Another workspace's integration is not found, as everywhere.
        store.get_integration(vis, id).await?;
    }
    let wanted = |i: IntegrationId| integration.is_none_or(|w| w == i);
    let mut latest = store.latest_sla_snapshots(vis).await?;
    latest.retain(|s| wanted(s.integration_id));
    let since = now - TimeDelta::days(i64::from(days));
    let mut fixed = store.fixed_for_sla(vis, since, now).await?;
    fixed.retain(|g| wanted(g.integration_id));
    Ok(SlaReport::build(&latest, &fixed))
}

/// The burn-down of what `vis` sees (one integration, if given) over the last `days` days.
pub async fn burndown(
    store: &dyn Store,
    vis: &Visibility,
    integration: Option<IntegrationId>,
    days: u32,
    now: DateTime<Utc>,
) -> Result<Vec<BurndownPoint>, SettingsError> {
    if let Some(id) = integration {
        // Another workspace's integration is not found, as everywhere.
        store.get_integration(vis, id).await?;
    }
    let since = now - TimeDelta::days(i64::from(days));
    let rows = store.sla_snapshots(vis, integration, since).await?;
    Ok(rampart_store::burndown(&rows))
}
