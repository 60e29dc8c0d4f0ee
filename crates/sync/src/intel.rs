//! Keeping threat intelligence current: CISA's KEV catalogue downloaded (conditional GET) or
//! imported from a file, and stored whole (see `rampart_store::intel`). The web layer and the CLI
//! call these; neither fetches anything itself.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};

/// The feed client and its errors, for callers (web, CLI) that depend on this crate only.
pub use rampart_microsoft::{DEFAULT_KEV_URL, IntelError, KevClient, check_feed_url};
use rampart_microsoft::{KevFetch, MAX_KEV_BYTES, read_kev};
use std::collections::HashMap;

use rampart_model::CveId;
use rampart_model::priority::{KevCatalog, RansomwareUse};

use crate::priority::assess_outside_run;
use rampart_store::{
    AssessScope, IntelCheck, IntelSource, KEV_SOURCE, KevSnapshot, Store, StoreError,
};

/// CISA updates the catalogue a few times a week; a daily check is enough.
pub const KEV_REFRESH_AFTER: Duration = Duration::hours(24);
/// After a failed attempt, the next is not tried sooner than this.
pub const KEV_RETRY_AFTER: Duration = Duration::hours(1);

#[derive(Debug, thiserror::Error)]
pub enum IntelRefreshError {
    #[error(transparent)]
    Feed(#[from] IntelError),
    #[error("the KEV catalogue could not be stored: {0}")]
    Store(#[from] StoreError),
    #[error("cannot read {path}: {detail}. Check the path and that the file is readable")]
    File { path: String, detail: String },
}

/// What a refresh or an import did.
#[derive(Debug, Clone)]
pub struct KevUpdate {
    /// `false` when the feed answered 304 and the stored catalogue was kept.
    pub replaced: bool,
    pub source: IntelSource,
    /// Entries that were skipped from an otherwise good file.
    pub warning: Option<String>,
}

/// Whether the daily refresh is due: never fetched, fetched more than a day ago, and not
/// attempted within the last hour (a failing feed is not hammered every scheduler tick).
pub fn kev_refresh_due(source: Option<&IntelSource>, now: DateTime<Utc>) -> bool {
    let Some(s) = source else { return true };
    let stale = s.fetched_at.is_none_or(|t| now - t >= KEV_REFRESH_AFTER);
    let resting =
        s.attempted_at.is_some_and(|t| now - t < KEV_RETRY_AFTER) && s.last_error.is_some();
    stale && !resting
}

/// The daily refresh: [`refresh_kev`] when [`kev_refresh_due`] says so, else `None`.
pub async fn refresh_kev_if_due(
    store: &dyn Store,
    client: &KevClient,
    now: DateTime<Utc>,
) -> Result<Option<KevUpdate>, IntelRefreshError> {
    let stored = store.intel_source(KEV_SOURCE).await?;
    if !kev_refresh_due(stored.as_ref(), now) {
        return Ok(None);
    }
    refresh_kev(store, client, now).await.map(Some)
}

/// Downloads the catalogue (sending the stored validators when they belong to this URL) and
/// replaces the stored one. A failure is recorded on the source and the stored catalogue kept.
pub async fn refresh_kev(
    store: &dyn Store,
    client: &KevClient,
    now: DateTime<Utc>,
) -> Result<KevUpdate, IntelRefreshError> {
    let stored = store.intel_source(KEV_SOURCE).await?;
    let validators = stored
        .as_ref()
        .filter(|s| s.url.as_deref() == Some(client.url()) && s.count > 0);
    let fetched = client
        .fetch(
            validators.and_then(|s| s.etag.as_deref()),
            validators.and_then(|s| s.last_modified.as_deref()),
        )
        .await;
    match fetched {
        Err(e) => {
            let said = e.to_string();
            store
                .record_intel_check(&IntelCheck {
                    source: KEV_SOURCE,
                    url: client.url(),
                    at: now,
                    error: Some(&said),
                })
                .await?;
            Err(e.into())
        }
        Ok(KevFetch::NotModified) => {
            store
                .record_intel_check(&IntelCheck {
                    source: KEV_SOURCE,
                    url: client.url(),
                    at: now,
                    error: None,
                })
                .await?;
            let source = store.intel_source(KEV_SOURCE).await?.unwrap_or_default();
            Ok(KevUpdate {
                replaced: false,
                source,
                warning: None,
            })
        }
        Ok(KevFetch::Fetched(download)) => {
            let snapshot = KevSnapshot {
                url: client.url().to_owned(),
                etag: download.etag.clone(),
                last_modified: download.last_modified.clone(),
                fetched_at: now,
                catalog_version: download.catalog.catalog_version.clone(),
                date_released: download.catalog.date_released,
            };
            let source = store_catalog(store, &snapshot, &download.catalog, now).await?;
            Ok(KevUpdate {
                replaced: true,
                source,
                warning: download.warning.clone(),
            })
        }
    }
}

/// Imports a downloaded KEV file (for sites without internet access). A file that is not the
/// feed, or not whole, is refused and the stored catalogue kept.
pub async fn import_kev_file(
    store: &dyn Store,
    path: &Path,
    now: DateTime<Utc>,
) -> Result<KevUpdate, IntelRefreshError> {
    let shown = path.display().to_string();
    let file_error = |detail: String| IntelRefreshError::File {
        path: shown.clone(),
        detail,
    };
    let size = tokio::fs::metadata(path)
        .await
        .map_err(|e| file_error(e.to_string()))?
        .len();
    if size > MAX_KEV_BYTES {
        return Err(IntelError::TooLarge { source_name: shown }.into());
    }
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| file_error(e.to_string()))?;
    let (catalog, warning) = read_kev(&bytes, &shown)?;
    let snapshot = KevSnapshot {
        url: format!("file:{shown}"),
        etag: None,
        last_modified: None,
        fetched_at: now,
        catalog_version: catalog.catalog_version.clone(),
        date_released: catalog.date_released,
    };
    let source = store_catalog(store, &snapshot, &catalog, now).await?;
    Ok(KevUpdate {
        replaced: true,
        source,
        warning,
    })
}

/// Replaces the stored catalogue, then re-assesses the open findings of the CVEs whose listing
/// changed (added, or their ransomware use changed), in every integration: a CVE entering KEV
/// becomes actively exploited (docs/prioritisation.md). When the new catalogue dropped a CVE the
/// old one had, which CVEs is not known without the old list, so every open finding is
/// re-assessed (only changed ones are written). A failed re-assessment is an error here, and the
/// next sync of each integration re-assesses its findings anyway.
async fn store_catalog(
    store: &dyn Store,
    snapshot: &KevSnapshot,
    catalog: &KevCatalog,
    now: DateTime<Utc>,
) -> Result<IntelSource, IntelRefreshError> {
    let entries: Vec<_> = catalog.entries.by_cve.values().cloned().collect();
    let listed: Vec<CveId> = catalog.entries.by_cve.keys().cloned().collect();
    let before: HashMap<CveId, RansomwareUse> = store
        .kev_entries_for(&listed)
        .await?
        .into_iter()
        .map(|e| (e.cve_id, e.known_ransomware_campaign_use))
        .collect();
    let stored_before = store.intel_source(KEV_SOURCE).await?.map_or(0, |s| s.count);
    let source = store.replace_kev_catalog(snapshot, &entries).await?;

    let changed: Vec<CveId> = entries
        .iter()
        .filter(|e| before.get(&e.cve_id) != Some(&e.known_ransomware_campaign_use))
        .map(|e| e.cve_id.clone())
        .collect();
    let dropped_some = stored_before > before.len() as u64;
    let scope = if dropped_some {
        AssessScope::All
    } else if changed.is_empty() {
        return Ok(source);
    } else {
        AssessScope::Cves(&changed)
    };
    for integration in store
        .list_integrations(&rampart_store::Visibility::All)
        .await?
    {
        assess_outside_run(store, &integration, Some(scope), now).await?;
    }
    Ok(source)
}
