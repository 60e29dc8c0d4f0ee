//! `rampart backup` and `rampart restore`.
//!
//! SQLite: an online backup (`VACUUM INTO`: one read transaction, so the copy is the database as
//! of one committed moment while `serve` and syncs go on), checked with `PRAGMA integrity_check`.
//! PostgreSQL: `pg_dump` and `pg_restore` do this better than Rampart could; the command says how.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::{BackupArgs, Global, RestoreArgs};
use crate::context;
use crate::output::usage;

pub async fn backup(global: &Global, args: BackupArgs) -> anyhow::Result<ExitCode> {
    let url = context::database_url(global);
    let Some(path) = rampart_store::sqlite_path(&url)? else {
        let command = rampart_store::pg_dump_command(url.trim(), &args.output)?;
        eprintln!(
            "rampart backup copies SQLite databases; this one is PostgreSQL. Back it up with pg_dump (it reads the password from PGPASSWORD or ~/.pgpass):"
        );
        println!("{command}");
        return Ok(ExitCode::from(1));
    };
    if !path.is_file() {
        return Err(usage(format!(
            "there is no database at {}; give --database (or DATABASE_URL) the one to back up",
            path.display()
        )));
    }
    // Not through the store: opening it may write (migrations) and so wait for a running sync.
    rampart_store::sqlite_backup(&path, &args.output)
        .await
        .map_err(|e| match e {
            rampart_store::StoreError::InvalidInput(m) => usage(m),
            other => anyhow::Error::new(other)
                .context("the backup failed; the database itself is unchanged"),
        })?;
    let integrations = rampart_store::verify_sqlite_backup(&args.output)
        .await
        .context("the backup was written but does not check out; take another one")?;
    println!(
        "Backed up {} to {} ({}, {integrations} integration(s)); integrity check passed.",
        path.display(),
        args.output.display(),
        size(&args.output)
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn restore(global: &Global, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let url = context::database_url(global);
    let Some(path) = rampart_store::sqlite_path(&url)? else {
        return Err(usage(
            "rampart restore restores SQLite backups; this database is PostgreSQL: restore a pg_dump file with pg_restore --clean --dbname=URL FILE",
        ));
    };
    let restored = rampart_store::restore_sqlite(&args.input, &path, args.force)
        .await
        .map_err(|e| match e {
            rampart_store::StoreError::InvalidInput(m) | rampart_store::StoreError::Conflict(m) => {
                usage(m)
            }
            other => anyhow::Error::new(other).context("the restore failed"),
        })?;
    // Opening brings a backup of an older Rampart up to this version's schema.
    let store = context::open_store(global).await?;
    store.close().await;
    println!(
        "Restored {} into {} ({} integration(s)). The master key is not in the backup: keep {} (or RAMPART_MASTER_KEY) from the same installation.",
        args.input.display(),
        restored.target.display(),
        restored.integrations,
        context::key_file(&url).display()
    );
    Ok(ExitCode::SUCCESS)
}

fn size(path: &Path) -> String {
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    format!("{:.1} MB", bytes as f64 / 1e6)
}
