//! What most commands need: the store, the vault and the engine, opened from the global options.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use rampart_store::Store;
use rampart_sync::vault::{MissingKey, Vault};
use rampart_sync::{Engine, EngineOptions};

use crate::cli::{EngineArgs, Global};

/// Where the master key file lives when `RAMPART_MASTER_KEY` is not set: `RAMPART_KEY_FILE`, else
/// next to a SQLite database, else `./rampart-data/master.key`.
pub fn key_file(database_url: &str) -> PathBuf {
    if let Ok(path) = std::env::var("RAMPART_KEY_FILE") {
        return PathBuf::from(path);
    }
    let sqlite_path = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .or_else(|| (!database_url.contains("://")).then_some(database_url));
    match sqlite_path
        .map(PathBuf::from)
        .and_then(|p| p.parent().map(PathBuf::from))
    {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("master.key"),
        _ => PathBuf::from("rampart-data").join("master.key"),
    }
}

pub fn database_url(global: &Global) -> String {
    global
        .database
        .clone()
        .unwrap_or_else(|| rampart_store::DEFAULT_DATABASE_URL.to_owned())
}

pub async fn open_store(global: &Global) -> anyhow::Result<Arc<dyn Store>> {
    let url = database_url(global);
    rampart_store::connect(&url)
        .await
        .context("cannot open Rampart's database")
}

/// The vault over the master key. A missing key file is created only while no integration (and so
/// no sealed client secret) is stored: a new key could never open the old secrets.
pub async fn open_vault(global: &Global, store: &dyn Store) -> anyhow::Result<Vault> {
    let path = key_file(&database_url(global));
    // Webhook URLs and signing secrets are sealed with the same key.
    let missing = if store
        .list_integrations(&rampart_store::Visibility::All)
        .await?
        .is_empty()
        && store
            .list_webhooks(&rampart_store::Visibility::All)
            .await?
            .is_empty()
    {
        MissingKey::Create
    } else {
        MissingKey::Refuse
    };
    Vault::open(&path, missing)
        .context("cannot open the master key that protects stored client secrets")
}

pub async fn open_engine(global: &Global, options: EngineOptions) -> anyhow::Result<Engine> {
    let store = open_store(global).await?;
    let vault = open_vault(global, store.as_ref()).await?;
    Ok(Engine::new(store, vault, options))
}

/// The engine's options, with what the syncing commands' options set.
pub fn engine_options(args: &EngineArgs) -> EngineOptions {
    EngineOptions {
        file_export_threshold: args.files_from_devices,
        public_url: args.public_url.clone(),
        ..EngineOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_sits_next_to_a_sqlite_database() {
        assert_eq!(
            key_file("sqlite://./rampart-data/rampart.db"),
            PathBuf::from("./rampart-data/master.key")
        );
        assert_eq!(
            key_file("/var/lib/rampart/db.sqlite"),
            PathBuf::from("/var/lib/rampart/master.key")
        );
        assert_eq!(
            key_file("postgres://u@h/db"),
            PathBuf::from("rampart-data/master.key")
        );
    }
}
