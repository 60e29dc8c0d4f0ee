//! What an operator needs from the store: readiness (is the database there, is its schema the one
//! this build expects), an online backup of a SQLite database and its restore.
//!
//! A backup is SQLite's `VACUUM INTO` (<https://www.sqlite.org/lang_vacuum.html#vacuuminto>): it
//! reads the whole database inside one read transaction, so the copy is the database as of one
//! committed moment even while a sync writes (WAL mode: the writer never waits for it). PostgreSQL
//! has `pg_dump` for the same purpose; see [`pg_dump_command`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Row};

use crate::error::{Result, StoreError};

/// The state of the schema, as `/readyz` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaState {
    /// The newest migration applied to the database (`None`: none at all).
    pub applied: Option<i64>,
    /// The newest migration this build carries.
    pub expected: i64,
    /// A migration started and did not finish.
    pub dirty: bool,
}

impl SchemaState {
    /// Current: every migration of this build applied, none newer, none half-done.
    pub fn is_current(&self) -> bool {
        !self.dirty && self.applied == Some(self.expected)
    }

    /// What is wrong, in words, or `None` when the schema is current.
    pub fn problem(&self) -> Option<String> {
        if self.dirty {
            return Some(
                "a schema migration started and did not finish; restart Rampart to finish it"
                    .to_owned(),
            );
        }
        match self.applied {
            None => Some(
                "the database has no Rampart schema; start `rampart serve` once to create it"
                    .to_owned(),
            ),
            Some(v) if v < self.expected => Some(format!(
                "the database schema is at migration {v}, this Rampart needs {}; restart it to apply the missing migrations",
                self.expected
            )),
            Some(v) if v > self.expected => Some(format!(
                "the database schema is at migration {v}, newer than this Rampart knows ({}); run the newer Rampart",
                self.expected
            )),
            Some(_) => None,
        }
    }
}

/// Reads `_sqlx_migrations` rows (version, success) into a [`SchemaState`].
pub(crate) fn schema_state(migrator: &Migrator, rows: &[(i64, bool)]) -> SchemaState {
    let expected = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    SchemaState {
        applied: rows.iter().map(|(v, _)| *v).max(),
        expected,
        dirty: rows.iter().any(|(_, ok)| !ok),
    }
}

/// Options for a short-lived connection to the SQLite file at `path` that never creates it (a
/// missing file is a missing database, not a new empty one).
fn existing_file(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(5))
}

/// The schema state of the SQLite file at `path`, on a connection of its own: the store's pooled
/// connections keep a deleted or unmounted file open and would still answer.
pub(crate) async fn sqlite_schema_state(path: &Path, migrator: &Migrator) -> Result<SchemaState> {
    let unreachable = |e: sqlx::Error| StoreError::Open {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut conn = SqliteConnection::connect_with(&existing_file(path).read_only(true))
        .await
        .map_err(unreachable)?;
    let rows = sqlx::query("SELECT version, success FROM _sqlx_migrations")
        .fetch_all(&mut conn)
        .await
        .map_err(unreachable)?;
    let _ = conn.close().await;
    let rows: Vec<(i64, bool)> = rows
        .iter()
        .map(|r| (r.get::<i64, _>(0), r.get::<bool, _>(1)))
        .collect();
    Ok(schema_state(migrator, &rows))
}

/// Writes a consistent copy of the SQLite database at `source` to `dest` (which must not exist).
/// Only reads the source, on a connection of its own: opening the store would run migrations and
/// so wait for the write lock that a sync may hold for a long bulk transaction.
pub async fn sqlite_backup(source: &Path, dest: &Path) -> Result<()> {
    if dest.exists() {
        return Err(StoreError::InvalidInput(format!(
            "{} already exists; choose a new file name for the backup, or remove the old one first",
            dest.display()
        )));
    }
    let dest_text = dest.to_str().ok_or_else(|| {
        StoreError::InvalidInput(format!(
            "{} is not a UTF-8 path; choose another backup file name",
            dest.display()
        ))
    })?;
    let mut conn = SqliteConnection::connect_with(&existing_file(source))
        .await
        .map_err(|e| StoreError::Open {
            path: source.display().to_string(),
            reason: e.to_string(),
        })?;
    let result = sqlx::query("VACUUM INTO ?")
        .bind(dest_text)
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    result.map_err(|e| StoreError::Open {
        path: dest.display().to_string(),
        reason: format!("the backup could not be written: {e}"),
    })?;
    Ok(())
}

/// What [`restore_sqlite`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub target: PathBuf,
    /// Integrations in the restored database.
    pub integrations: u64,
}

/// Checks that `path` is an intact Rampart SQLite database: `PRAGMA integrity_check` passes and
/// its schema is not newer than this build. Returns its integration count.
pub async fn verify_sqlite_backup(path: &Path) -> Result<u64> {
    let bad = |reason: String| StoreError::InvalidInput(format!("{}: {reason}", path.display()));
    if !path.is_file() {
        return Err(bad("no such file".to_owned()));
    }
    let mut conn = SqliteConnection::connect_with(&existing_file(path).read_only(true))
        .await
        .map_err(|e| bad(format!("not a SQLite database ({e})")))?;
    let check: Result<u64> = async {
        let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| bad(format!("not a SQLite database ({e})")))?;
        if verdict != "ok" {
            return Err(bad(format!(
                "the file is damaged (integrity check: {verdict}); take another backup"
            )));
        }
        let rows = sqlx::query("SELECT version, success FROM _sqlx_migrations")
            .fetch_all(&mut conn)
            .await
            .map_err(|_| bad("not a Rampart database (it has no migration table)".to_owned()))?;
        let rows: Vec<(i64, bool)> = rows
            .iter()
            .map(|r| (r.get::<i64, _>(0), r.get::<bool, _>(1)))
            .collect();
        let state = schema_state(crate::sqlite::migrator(), &rows);
        if state.dirty || state.applied.is_some_and(|v| v > state.expected) {
            return Err(bad(state.problem().unwrap_or_default()));
        }
        let integrations: i64 = sqlx::query_scalar("SELECT count(*) FROM integrations")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| bad(format!("not a Rampart database ({e})")))?;
        Ok(u64::try_from(integrations).unwrap_or(0))
    }
    .await;
    let _ = conn.close().await;
    check
}

/// Whether another connection has the SQLite database at `path` open: it is then in use (a
/// `serve` or `sync` running) and must not be replaced under it. An exclusive lock cannot be had
/// while another connection holds the WAL index's shared lock.
async fn sqlite_in_use(path: &Path) -> Result<bool> {
    let options = existing_file(path)
        .busy_timeout(Duration::ZERO)
        .pragma("locking_mode", "EXCLUSIVE");
    let mut conn = match SqliteConnection::connect_with(&options).await {
        Ok(c) => c,
        Err(_) => return Ok(true),
    };
    let taken = sqlx::query("BEGIN EXCLUSIVE").execute(&mut conn).await;
    let in_use = taken.is_err();
    if !in_use {
        let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
    }
    let _ = conn.close().await;
    Ok(in_use)
}

/// Whether the SQLite database at `path` holds anything: an integration or an account.
async fn sqlite_has_data(path: &Path) -> bool {
    let Ok(mut conn) = SqliteConnection::connect_with(&existing_file(path).read_only(true)).await
    else {
        // Unreadable is not "empty": only --force may replace it.
        return true;
    };
    let count: std::result::Result<i64, _> = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM integrations) + (SELECT count(*) FROM users)",
    )
    .fetch_one(&mut conn)
    .await;
    let _ = conn.close().await;
    match count {
        Ok(n) => n > 0,
        // No Rampart tables: an empty file SQLite just created, or something else entirely.
        Err(_) => std::fs::metadata(path).map(|m| m.len() > 0).unwrap_or(true),
    }
}

/// Replaces the SQLite database at `target` with the backup at `input`, after checking the backup
/// ([`verify_sqlite_backup`]). Refuses while the target is open elsewhere, and refuses to replace
/// a target holding data unless `force`. The backup is copied next to the target first and renamed
/// over it, so a failure midway leaves the old database as it was.
pub async fn restore_sqlite(input: &Path, target: &Path, force: bool) -> Result<Restored> {
    let integrations = verify_sqlite_backup(input).await?;
    if target.exists() {
        if sqlite_in_use(target).await? {
            return Err(StoreError::Conflict(format!(
                "{} is in use by another Rampart process (serve, sync); stop it before restoring",
                target.display()
            )));
        }
        if !force && sqlite_has_data(target).await {
            return Err(StoreError::Conflict(format!(
                "{} already holds data; restoring would replace it. Take a backup of it first, then run restore again with --force",
                target.display()
            )));
        }
    }
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    let staging = sibling(target, "restoring");
    let io = |e: std::io::Error| StoreError::Open {
        path: target.display().to_string(),
        reason: e.to_string(),
    };
    std::fs::copy(input, &staging).map_err(io)?;
    // The old database's WAL belongs to the old file: left beside the restored one, SQLite would
    // replay it into the restored database.
    for suffix in ["wal", "shm"] {
        match std::fs::remove_file(sibling_ext(target, suffix)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
    std::fs::rename(&staging, target).map_err(io)?;
    Ok(Restored {
        target: target.to_owned(),
        integrations,
    })
}

/// `target` with `.suffix` appended to its file name (`rampart.db` → `rampart.db-wal`).
fn sibling_ext(target: &Path, suffix: &str) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(format!("-{suffix}"));
    PathBuf::from(name)
}

fn sibling(target: &Path, what: &str) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(format!(".{what}"));
    PathBuf::from(name)
}

/// The `pg_dump` command that backs up the PostgreSQL database of `url`, with the password left
/// out (pg_dump reads it from `PGPASSWORD` or `~/.pgpass`). Custom format: `pg_restore` restores
/// it, in parallel if asked.
pub fn pg_dump_command(url: &str, output: &Path) -> Result<String> {
    let parsed = url::Url::parse(url).map_err(|e| StoreError::InvalidUrl {
        url: crate::postgres::redact(url),
        reason: e.to_string(),
    })?;
    let mut shown = parsed.clone();
    // set_password only fails for URLs that cannot have one; then there is none to hide.
    let _ = shown.set_password(None);
    let quoted = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    Ok(format!(
        "pg_dump --format=custom --file={} {}",
        quoted(&output.display().to_string()),
        quoted(shown.as_str())
    ))
}

/// The path of a SQLite database URL (`sqlite://PATH`, `sqlite:PATH` or a plain path); `None` for
/// PostgreSQL URLs.
pub fn sqlite_path(url: &str) -> Result<Option<PathBuf>> {
    let url = url.trim();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(None);
    }
    crate::sqlite::path_from_url(url).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pg_dump_command_never_shows_the_password() {
        let cmd = pg_dump_command(
            "postgres://rampart:s3cret@db.example:5432/rampart",
            Path::new("/var/backups/rampart.dump"),
        )
        .unwrap();
        assert!(!cmd.contains("s3cret"), "{cmd}");
        assert_eq!(
            cmd,
            "pg_dump --format=custom --file='/var/backups/rampart.dump' 'postgres://rampart@db.example:5432/rampart'"
        );
    }

    #[test]
    fn a_schema_state_says_what_is_wrong() {
        let state = |applied, dirty| SchemaState {
            applied,
            expected: 4,
            dirty,
        };
        assert!(state(Some(4), false).is_current());
        assert!(
            state(Some(3), false)
                .problem()
                .unwrap()
                .contains("at migration 3")
        );
        assert!(state(Some(5), false).problem().unwrap().contains("newer"));
        assert!(
            state(None, false)
                .problem()
                .unwrap()
                .contains("no Rampart schema")
        );
        assert!(
            state(Some(4), true)
                .problem()
                .unwrap()
                .contains("did not finish")
        );
    }
}
