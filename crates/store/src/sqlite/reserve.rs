//! Room kept in reserve beside the database file, so that a run that failed because the disk is
//! full can still be closed: without it the run stays "running" and blocks its integration until
//! it is taken for abandoned. The reserve is a file of zeros (written, not sparse, so the file
//! system really holds the space) named after the database with `.reserve`; it is given up when a
//! write finds the disk full and made again once a run closes with room to spare.

use std::path::{Path, PathBuf};

/// Enough for closing a run (a few pages and their write-ahead log frames) many times over.
pub(crate) const RESERVE_BYTES: usize = 256 * 1024;

fn reserve_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".reserve");
    PathBuf::from(name)
}

/// Makes the reserve if it is missing. Best effort: a disk without the room keeps running
/// without a reserve, and the next try makes it.
pub(crate) fn keep(database: &Path) {
    let path = reserve_path(database);
    if path
        .metadata()
        .is_ok_and(|m| m.len() >= RESERVE_BYTES as u64)
    {
        return;
    }
    if let Err(error) = std::fs::write(&path, vec![0u8; RESERVE_BYTES]) {
        // A partial file would hold space while pretending to be a reserve.
        let _ = std::fs::remove_file(&path);
        tracing::debug!(message = "No room for the database's reserve yet.", %error);
    }
}

/// Gives the reserve up; true if there was one.
pub(crate) fn release(database: &Path) -> bool {
    let released = std::fs::remove_file(reserve_path(database)).is_ok();
    if released {
        tracing::warn!(
            message = "The disk holding the database is full: the space kept in reserve was given up to close a sync run. Free space on that disk.",
            database = %database.display()
        );
    }
    released
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_made_once_and_given_up() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("rampart.db");
        keep(&db);
        let reserve = dir.path().join("rampart.db.reserve");
        assert_eq!(reserve.metadata().unwrap().len(), RESERVE_BYTES as u64);
        keep(&db);
        assert!(release(&db));
        assert!(!reserve.exists());
        assert!(!release(&db));
    }
}
