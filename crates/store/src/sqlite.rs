//! The SQLite backend: one file in WAL mode, a single writer connection beside a small pool of
//! read-only connections (SQLite has one writer; readers never wait for it in WAL mode), and a
//! connection that checkpoints the WAL in the background (`checkpointer`). Its bulk writes are in
//! `bulk`; everything else is the store written once (`crate::sql_store`).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

use crate::db::Pool;
use crate::error::{Result, StoreError};
use crate::sql_store::{Engine, SqlStore, deferrable_indexes};
use crate::types::Backend;

pub(crate) mod bulk;
mod checkpointer;
pub(crate) mod first_load_writer;
pub(crate) mod reserve;

pub use bulk::SQLITE_MAX_PARAMS;
use bulk::WRITER_CACHE_KIB;
use checkpointer::Checkpointer;
use first_load_writer::FirstLoadWriter;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// This build's SQLite migrations (a backup's schema is checked against them).
pub(crate) fn migrator() -> &'static sqlx::migrate::Migrator {
    &MIGRATOR
}

/// A writer's own checkpoint threshold, in pages (4 KiB: ~64 MB of WAL). The background
/// checkpointer normally keeps the WAL short; this is the backstop when it falls behind. A
/// checkpoint in the writer (WAL copied into the database file, with fsyncs) after every ~4 MB
/// written cost a third of bulk-load time; every ~64 MB costs little, and the WAL file is
/// truncated back afterwards (`JOURNAL_SIZE_LIMIT`).
pub(crate) const WAL_AUTOCHECKPOINT_PAGES: i64 = 16_384;

/// What the WAL file is truncated back to after a checkpoint, in bytes.
pub(crate) const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Connections readers may use at once.
const READ_CONNECTIONS: u32 = 4;

/// What a SQLite store has beside its pools: the file and the background checkpointer.
#[derive(Debug)]
pub(crate) struct SqliteFile {
    pub path: PathBuf,
    /// The connection of the background checkpointer (closed with the store).
    pub checkpoints: SqlitePool,
    _checkpointer: Checkpointer,
    /// The first-load writer, while a first load is being written (`first_load_writer`).
    first_load_writer: std::sync::Mutex<Option<Arc<FirstLoadWriter>>>,
    /// Batches the first-load writers of this store wrote.
    pub(crate) first_load_batches: Arc<std::sync::atomic::AtomicU64>,
}

impl SqliteFile {
    /// Opens the first-load writer, unless it is open.
    pub(crate) async fn open_first_load_writer(&self) -> Result<()> {
        if self.first_load_writer().is_some() {
            return Ok(());
        }
        let writer = Arc::new(
            FirstLoadWriter::open(&self.path, Arc::clone(&self.first_load_batches)).await?,
        );
        lock_writer(&self.first_load_writer).get_or_insert(writer);
        Ok(())
    }

    /// The first-load writer, if one is open.
    pub(crate) fn first_load_writer(&self) -> Option<Arc<FirstLoadWriter>> {
        lock_writer(&self.first_load_writer).clone()
    }

    /// Closes the first-load writer (its connection closes once a batch still being written is
    /// done).
    pub(crate) fn close_first_load_writer(&self) {
        lock_writer(&self.first_load_writer).take();
    }
}

fn lock_writer(
    m: &std::sync::Mutex<Option<Arc<FirstLoadWriter>>>,
) -> std::sync::MutexGuard<'_, Option<Arc<FirstLoadWriter>>> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SqlStore {
    /// Opens (creating if needed) the database file at `path`, its directory included, and brings
    /// the schema up to date.
    pub async fn open(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let open_err = |reason: String| StoreError::Open {
            path: shown.clone(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                open_err(format!(
                    "cannot create the directory {}: {}",
                    dir.display(),
                    io_reason(&e)
                ))
            })?;
        }
        create_private(path).map_err(|e| open_err(io_reason(&e)))?;
        match Self::connect_file(path).await {
            Ok(store) => Ok(store),
            // Whatever step failed (connecting, migrating), a damaged file is the cause to name:
            // its symptoms ("malformed schema", an unreadable migration record) would otherwise
            // read like a newer version's database.
            Err(e) => Err(match damage_of(path).await {
                Some(damage) => StoreError::Damaged(damage),
                None => e,
            }),
        }
    }

    async fn connect_file(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let open_err = |reason: String| StoreError::Open {
            path: shown.clone(),
            reason,
        };
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);

        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .after_release(|conn, _| Box::pin(async move { healthy_after_release(conn).await }))
            .connect_with(
                options
                    .clone()
                    .pragma("cache_size", (-WRITER_CACHE_KIB).to_string())
                    .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
                    .pragma("journal_size_limit", JOURNAL_SIZE_LIMIT.to_string())
                    .pragma("threads", sort_threads().to_string()),
            )
            .await
            .map_err(|e| open_err(e.to_string()))?;
        MIGRATOR.run(&write).await.map_err(|e| {
            StoreError::Migration(format!("{e} (database file {})", path.display()))
        })?;
        // A bulk load that died before rebuilding the indexes it put off left them missing.
        for index in deferrable_indexes(Backend::Sqlite) {
            sqlx::query(index)
                .execute(&write)
                .await
                .map_err(|e| open_err(e.to_string()))?;
        }
        let checkpoints = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                options
                    .clone()
                    .pragma("journal_size_limit", JOURNAL_SIZE_LIMIT.to_string()),
            )
            .await
            .map_err(|e| open_err(e.to_string()))?;
        let read = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            // Not opened read-only: a read-only connection cannot recreate the WAL index files
            // when it is the first to open the database after every connection was closed.
            // query_only refuses writes all the same.
            .connect_with(options.pragma("query_only", "ON"))
            .await
            .map_err(|e| open_err(e.to_string()))?;
        reserve::keep(path);
        let file = SqliteFile {
            path: path.to_owned(),
            _checkpointer: Checkpointer::start(checkpoints.clone()),
            checkpoints,
            first_load_writer: std::sync::Mutex::new(None),
            first_load_batches: Arc::default(),
        };
        Ok(Self::new(
            Pool::Sqlite { read, write },
            Engine::Sqlite(file),
        ))
    }

    /// The database file (`None` on PostgreSQL).
    pub fn path(&self) -> Option<&Path> {
        match &self.engine {
            Engine::Sqlite(file) => Some(&file.path),
            Engine::Postgres { .. } => None,
        }
    }

    /// Tests only: the database file may not grow any more (SQLite's `max_page_count` on the
    /// writer), so the next write that needs a new page fails with SQLite's real SQLITE_FULL, as
    /// on a full disk. Holds until the writer connection is replaced.
    #[cfg(feature = "testing")]
    pub async fn stop_growth_for_tests(&self) -> Result<()> {
        let Pool::Sqlite { write, .. } = &self.db else {
            return Ok(());
        };
        sqlx::query("PRAGMA max_page_count = 1")
            .execute(write)
            .await
            .map_err(crate::db::db("limiting the database size"))?;
        Ok(())
    }
}

/// Creates the database file if missing, readable and writable by its owner only: it holds live
/// session ids and token hashes. SQLite gives the WAL and shared-memory files it creates beside it
/// the database file's permissions, so they are private too. Opening the file ourselves also turns
/// SQLite's "unable to open database file" into the operating system's reason.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?;
    #[cfg(unix)]
    warn_if_shared(path);
    Ok(())
}

/// A database file others can read (created by an older Rampart, or copied) is left as it is,
/// the operator may have reasons, but said.
#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            message = "The database file can be read by other users of this machine; it holds session ids. Run: chmod 600 on it (and its -wal and -shm files).",
            path = %path.display(),
            mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
        );
    }
}

/// What SQLite's quick check finds wrong with the file, if anything (`None` also when the check
/// cannot run because the file is fine but something else failed). Run only after opening failed.
async fn damage_of(path: &Path) -> Option<String> {
    use sqlx::ConnectOptions;
    let shown = path.display();
    let mut conn = match SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
    {
        Ok(conn) => conn,
        Err(e) if crate::error::cause_of(&e) == crate::error::Cause::Damaged => {
            return Some(format!("{shown}: {e}"));
        }
        Err(_) => return None,
    };
    let found = match sqlx::query_scalar::<_, String>("PRAGMA quick_check(5)")
        .fetch_all(&mut conn)
        .await
    {
        Ok(lines) if lines.iter().all(|l| l == "ok") => None,
        Ok(lines) => Some(format!(
            "{shown}: SQLite's integrity check found: {}",
            lines.join("; ")
        )),
        Err(e) if crate::error::cause_of(&e) == crate::error::Cause::Damaged => {
            Some(format!("{shown}: {e}"))
        }
        Err(_) => None,
    };
    let _ = sqlx::Connection::close(conn).await;
    found
}

/// Whether the writer connection may go back into the pool. When a statement fails with
/// SQLITE_FULL (or SQLITE_IOERR, SQLITE_NOMEM), SQLite may already have rolled the transaction
/// back itself; the driver's ROLLBACK then fails and it goes on believing a transaction is open,
/// so that every later `BEGIN` failed with "begin_with at non-zero transaction depth" and a full
/// disk ended every write until a restart. Such a connection is closed; the pool opens a fresh one.
async fn healthy_after_release(
    conn: &mut SqliteConnection,
) -> std::result::Result<bool, sqlx::Error> {
    use sqlx::Connection;
    // The ping runs after the rollback the dropped transaction queued.
    conn.ping().await?;
    Ok(!conn.is_in_transaction())
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        std::io::ErrorKind::IsADirectory => "it is a directory".to_owned(),
        std::io::ErrorKind::ReadOnlyFilesystem => "the file system is read-only".to_owned(),
        std::io::ErrorKind::StorageFull => "the disk is full".to_owned(),
        _ => e.to_string(),
    }
}

/// Parses `sqlite://PATH`, `sqlite:PATH` or a plain path into a file path.
pub(crate) fn path_from_url(url: &str) -> Result<PathBuf> {
    let invalid = |reason: &str| StoreError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if rest.is_empty() {
        return Err(invalid("it names no file"));
    }
    if rest == ":memory:" || rest.starts_with(":memory:") {
        return Err(invalid(
            "an in-memory database would lose everything when Rampart exits; give a file path (tests use rampart_store::testing::sqlite_store)",
        ));
    }
    if rest.contains('?') {
        return Err(invalid(
            "options in a SQLite URL are not supported; Rampart sets WAL, synchronous=NORMAL, foreign keys and a busy timeout itself",
        ));
    }
    PathBuf::from_str(rest).map_err(|_| invalid("it is not a file path"))
}

/// Helper threads SQLite's sorter may use in the writer (`PRAGMA threads`): the statements that
/// sort all of an integration's findings (the index builds after a first load, the remediation
/// plan's and the SLA snapshot's counts) sort in parallel instead of on the writer's thread
/// alone. Measured on 1.84 M findings (2 cores): the priority index built in 2.0 s instead of
/// 3.0 s, the due-date index in 1.7 s instead of 2.3 s. Small sorts stay in memory and use none.
fn sort_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use rampart_model::IntegrationId;
    use rampart_model::{FindingStatus, Severity};

    use crate::Store;
    use crate::Visibility;
    use crate::common::*;
    use crate::db::{Dialect, Sql};
    use crate::sort::{AssetSort, AssetSortKey};
    use crate::types::{AssetFilter, FindingFilter, FindingOrder};

    /// Keyset pages must come straight out of an index in id order: a plan that sorts would
    /// sort every matching row of the table for each page of 1,000.
    #[tokio::test]
    async fn listing_pages_never_sort_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open(&dir.path().join("plan.db")).await.unwrap();
        let filters = [
            FindingFilter::default(),
            FindingFilter {
                integration: Some(IntegrationId(1)),
                ..Default::default()
            },
            FindingFilter {
                status: Some(FindingStatus::Open),
                ..Default::default()
            },
            FindingFilter {
                integration: Some(IntegrationId(1)),
                status: Some(FindingStatus::Fixed),
                severity: Some(Severity::High),
                search: Some("openssl".into()),
                changed_since: Some(Utc::now()),
                ..Default::default()
            },
        ];
        for f in &filters {
            let sql = findings_query(Dialect::SQLITE, f, Some(10), 1000);
            let (page, rest) = explain_listing(&store, &sql).await;
            assert!(!page.contains("TEMP B-TREE"), "{f:?}: {page}");
            // The page's look-ups (explanation, observation time) run over the chosen rows
            // only, not over every row the page is chosen from.
            assert!(
                rest.contains("SCAN f") && rest.contains("CORRELATED SCALAR SUBQUERY"),
                "{f:?}: {rest}"
            );
            assert!(
                !page.contains("CORRELATED SCALAR SUBQUERY"),
                "{f:?}: {page}"
            );
        }
        // Narrow filters read their own index and sort their few rows (one asset's findings,
        // one CVE's open findings) instead of walking the table.
        for (f, index) in [
            (
                FindingFilter {
                    integration: Some(IntegrationId(1)),
                    status: Some(FindingStatus::Fixed),
                    asset_source_id: Some("abc".into()),
                    ..Default::default()
                },
                "findings_natural_key",
            ),
            (
                FindingFilter {
                    asset_source_id: Some("abc".into()),
                    ..Default::default()
                },
                "findings_natural_key",
            ),
            (
                FindingFilter {
                    integration: Some(IntegrationId(1)),
                    status: Some(FindingStatus::Open),
                    cve_id: Some("CVE-2024-1234".parse().unwrap()),
                    ..Default::default()
                },
                "findings_open_by_cve",
            ),
            (
                FindingFilter {
                    cve_id: Some("CVE-2024-1234".parse().unwrap()),
                    ..Default::default()
                },
                "findings_fixed_by_cve",
            ),
            (
                FindingFilter {
                    status: Some(FindingStatus::Fixed),
                    cve_id: Some("CVE-2024-1234".parse().unwrap()),
                    ..Default::default()
                },
                "findings_fixed_by_cve",
            ),
        ] {
            let sql = findings_query(Dialect::SQLITE, &f, Some(10), 1000);
            let (page, _) = explain_listing(&store, &sql).await;
            assert!(page.contains(index), "{f:?}: {page}");
        }
        // A search that only a few asset names match reads those assets' findings.
        let host = FindingFilter {
            search: Some("host-7.contoso".into()),
            status: Some(FindingStatus::Open),
            ..Default::default()
        };
        let host_query = |software: bool| {
            let plan = SearchPlan {
                software,
                assets: 3,
                cve_findings: 0,
                cve_ids: Vec::new(),
            };
            findings_query_planned(
                Dialect::SQLITE,
                &Visibility::All,
                &host,
                Keyset::Id(None),
                50,
                Some(&plan),
            )
        };
        let (found, _) = explain_listing(&store, &host_query(false)).await;
        assert!(found.contains("findings_natural_key"), "{found}");
        let (found, _) = explain_listing(&store, &host_query(true)).await;
        assert!(!found.contains("TEMP B-TREE"), "{found}");
        // Fixed findings in priority order come from the top of their own index
        // (migration 0025), whatever else filters them.
        for f in [
            FindingFilter {
                status: Some(FindingStatus::Fixed),
                ..Default::default()
            },
            FindingFilter {
                integration: Some(IntegrationId(1)),
                status: Some(FindingStatus::Fixed),
                severity: Some(Severity::Critical),
                ..Default::default()
            },
            FindingFilter {
                status: Some(FindingStatus::Fixed),
                severity: Some(Severity::Critical),
                search: Some("openssl".into()),
                ..Default::default()
            },
        ] {
            for order in [FindingOrder::PriorityDesc, FindingOrder::PriorityAsc] {
                let sql = findings_query_planned(
                    Dialect::SQLITE,
                    &Visibility::All,
                    &f,
                    Keyset::Priority(order, None),
                    50,
                    None,
                );
                let (page, _) = explain_listing(&store, &sql).await;
                assert!(page.contains("findings_fixed_by_priority"), "{f:?}: {page}");
                assert!(!page.contains("TEMP B-TREE"), "{f:?}: {page}");
            }
        }
        // A search that only CVE ids match, in few findings, reads them through the two CVE
        // indexes; in many, it walks the table in the listing's order.
        let cve_text = FindingFilter {
            search: Some("2024-3094".into()),
            ..Default::default()
        };
        let cve_query = |cve_findings: i64, cves: usize| {
            let plan = SearchPlan {
                software: false,
                assets: 0,
                cve_findings,
                cve_ids: (0..cves).map(|n| format!("CVE-2024-3094{n}")).collect(),
            };
            findings_query_planned(
                Dialect::SQLITE,
                &Visibility::All,
                &cve_text,
                Keyset::Id(None),
                50,
                Some(&plan),
            )
        };
        let (found, _) = explain_listing(&store, &cve_query(12, 2)).await;
        for index in ["findings_open_by_cve", "findings_fixed_by_cve"] {
            assert!(found.contains(index), "{found}");
        }
        assert!(!found.contains("SCAN f"), "{found}");
        for (cve_findings, cves) in [
            (NARROW_SEARCH_FINDINGS + 1, 2),
            (12, NARROW_SEARCH_CVES + 1),
        ] {
            let (found, _) = explain_listing(&store, &cve_query(cve_findings, cves)).await;
            assert!(!found.contains("findings_fixed_by_cve"), "{found}");
            assert!(!found.contains("TEMP B-TREE"), "{found}");
        }
        // Every sort order of the asset listing reads its (key, id) index in order.
        for key in AssetSortKey::ALL {
            for sort in [AssetSort::asc(key), AssetSort::desc(key)] {
                for f in [
                    AssetFilter::default(),
                    AssetFilter {
                        integration: Some(IntegrationId(1)),
                        status: Some(rampart_model::AssetStatus::Active),
                        ..Default::default()
                    },
                ] {
                    let page =
                        assets_sorted_query(Dialect::SQLITE, &Visibility::All, &f, sort, None, 50);
                    let plan = explain(&store, &page).await;
                    assert!(!plan.contains("TEMP B-TREE"), "{sort} {f:?}: {plan}");
                    let first = store
                        .assets_sorted(&Visibility::All, &f, sort, None, 1)
                        .await
                        .unwrap();
                    assert!(first.items.is_empty());
                }
            }
        }
        for f in [
            AssetFilter::default(),
            AssetFilter {
                integration: Some(IntegrationId(1)),
                ..Default::default()
            },
            AssetFilter {
                integration: Some(IntegrationId(1)),
                status: Some(rampart_model::AssetStatus::Missing),
                search: Some("host".into()),
                ..Default::default()
            },
        ] {
            let sql = assets_query(Dialect::SQLITE, &Visibility::All, &f, None, 1000);
            let plan = explain(&store, &sql).await;
            assert!(!plan.contains("TEMP B-TREE"), "{f:?}: {plan}");
        }
    }

    /// The plan of a finding listing in two parts: how its page of rows is chosen (the inner
    /// query `f`, run as a co-routine or materialised), and the rest (the look-ups over the
    /// page and its final order).
    async fn explain_listing(store: &SqlStore, sql: &Sql) -> (String, String) {
        let nodes = plan_nodes(store, sql).await;
        let page_node = nodes
            .iter()
            .find(|(_, parent, detail)| {
                *parent == 0 && (detail == "CO-ROUTINE f" || detail == "MATERIALIZE f")
            })
            .map(|(id, _, _)| *id)
            .unwrap_or_else(|| panic!("no inner query in the plan: {nodes:?}"));
        let in_page = |mut id: i64| {
            while id != 0 {
                if id == page_node {
                    return true;
                }
                id = nodes
                    .iter()
                    .find(|(node, _, _)| *node == id)
                    .map_or(0, |(_, parent, _)| *parent);
            }
            false
        };
        let (page, rest): (Vec<_>, Vec<_>) = nodes
            .iter()
            .filter(|(id, _, _)| *id != page_node)
            .partition(|(_, parent, _)| in_page(*parent));
        let join = |part: Vec<&(i64, i64, String)>| {
            part.iter()
                .map(|(_, _, d)| d.as_str())
                .collect::<Vec<_>>()
                .join(" | ")
        };
        (join(page), join(rest))
    }

    async fn explain(store: &SqlStore, sql: &Sql) -> String {
        plan_nodes(store, sql)
            .await
            .into_iter()
            .map(|(_, _, detail)| detail)
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// `EXPLAIN QUERY PLAN` of `sql`: each node's id, its parent's and what it does.
    async fn plan_nodes(store: &SqlStore, sql: &Sql) -> Vec<(i64, i64, String)> {
        let mut plan = Sql::new(&format!("EXPLAIN QUERY PLAN {}", sql.text));
        plan.args = sql.args.clone();
        let rows = store
            .db
            .read()
            .fetch_all(&plan, "explaining")
            .await
            .unwrap();
        rows.iter()
            .map(|r| {
                (
                    r.int("id").unwrap(),
                    r.int("parent").unwrap(),
                    r.text("detail").unwrap(),
                )
            })
            .collect()
    }
}
