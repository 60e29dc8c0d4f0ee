//! Issue 12, items 6a and 8: the SQLite files at rest, a full disk and a damaged file. SQLite
//! only: these are about its files.

use std::sync::Arc;

use rampart_model::RunStatus;
use rampart_store::{AssetFilter, RunOutcome, SqliteStore, Store, StoreError};

use crate::support::{all_assets, asset, integration, t};

/// The database, its WAL and its shared-memory file are the owner's alone: they hold live
/// session ids and API token hashes.
#[cfg(unix)]
#[tokio::test]
async fn the_database_and_its_wal_and_shm_files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    // A write, so that the WAL holds something while the store is open.
    integration(&store, "private").await;
    for suffix in ["", "-wal", "-shm"] {
        let file = dir.path().join(format!("rampart.db{suffix}"));
        let mode = std::fs::metadata(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:o}", file.display());
    }
}

/// A write that finds the disk full says so (it once said "begin_with at non-zero transaction
/// depth", and every later write of the process failed the same way, so the run was left to be
/// closed as abandoned). The run can still be closed with that error, and nothing stored before
/// is lost.
#[tokio::test]
async fn a_full_disk_is_reported_as_such_and_the_store_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(
        SqliteStore::open(&dir.path().join("rampart.db"))
            .await
            .unwrap(),
    );
    let store: Arc<dyn Store> = sqlite.clone();
    let i = integration(&store, "full-disk").await;
    let run = store.start_run(i.id, "full", t(0)).await.unwrap();
    store.upsert_assets(i.id, run, &[asset(0)]).await.unwrap();

    sqlite.stop_growth_for_tests().await.unwrap();
    let many: Vec<_> = (1..3000).map(asset).collect();
    let err = store.upsert_assets(i.id, run, &many).await.unwrap_err();
    assert!(matches!(err, StoreError::DiskFull { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("disk holding the database is full"), "{text}");
    assert!(text.contains("free space"), "{text}");

    let mut outcome = RunOutcome::new(RunStatus::Failed, t(1));
    outcome.error = Some(text.clone());
    let finished = store.finish_run(run, &outcome).await.unwrap();
    assert_eq!(finished.status, RunStatus::Failed);
    assert_eq!(finished.error.as_deref(), Some(text.as_str()));
    let kept = all_assets(&store, AssetFilter::default()).await;
    assert_eq!(kept.len(), 1);
    // And the next run starts as usual.
    store.start_run(i.id, "full", t(2)).await.unwrap();
}

/// Damage inside the file is reported as damage, with what SQLite's check found, not as a
/// database "written by a newer version or edited by hand".
#[tokio::test]
async fn a_damaged_file_is_reported_as_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.db");
    {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
        integration(&store, "before-damage").await;
        store.close().await;
    }
    // Overwrite the schema's page (page 1 after the 100-byte file header) with garbage: the
    // file still starts like a database, its contents are broken.
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 4096, "{}", bytes.len());
    for b in &mut bytes[100..4000] {
        *b = 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();

    let err = SqliteStore::open(&path).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Damaged(_)), "{err:?}");
    assert!(text.contains("damaged"), "{text}");
    assert!(text.contains("backup"), "{text}");
    assert!(!text.contains("newer"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
}

/// A small tmpfs mounted for one test and unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` (with a loud message) when this process may not mount (not root, no tmpfs).
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(SmallDisk { dir }),
            Ok(out) => {
                eprintln!(
                    "SKIPPED: cannot mount a small tmpfs to fill ({}); run the tests as root to check a really full disk",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!(
                    "SKIPPED: cannot run mount ({e}); run the tests as root to check a really full disk"
                );
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A really full file system: SQLite fails while writing the WAL and rolls the transaction back
/// itself. The store then once believed a transaction was still open, and every later write of
/// the process failed with "begin_with at non-zero transaction depth": the run could not even
/// be closed and was later recorded as abandoned.
#[tokio::test]
async fn a_really_full_file_system_is_reported_and_the_run_still_closes() {
    let Some(disk) = SmallDisk::mount("3m") else {
        return;
    };
    let path = disk.dir.path().join("rampart.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let i = integration(&store, "tiny-disk").await;
    let run = store.start_run(i.id, "full", t(0)).await.unwrap();
    store.upsert_assets(i.id, run, &[asset(0)]).await.unwrap();
    let mut full = None;
    for batch in 0..200 {
        let many: Vec<_> = (batch * 500 + 1..(batch + 1) * 500 + 1)
            .map(asset)
            .collect();
        if let Err(e) = store.upsert_assets(i.id, run, &many).await {
            full = Some(e);
            break;
        }
    }
    let err = full.expect("3 MB never filled up");
    assert!(matches!(err, StoreError::DiskFull { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("disk holding the database is full"), "{text}");

    let mut outcome = RunOutcome::new(RunStatus::Failed, t(1));
    outcome.error = Some(text.clone());
    let finished = store.finish_run(run, &outcome).await.unwrap();
    assert_eq!(finished.status, RunStatus::Failed);
    assert_eq!(finished.error.as_deref(), Some(text.as_str()));
    store.close().await;
}
