//! One worker per SQLite database. SQLite has one writer, and the job table's guarantees across
//! processes (one claim at a time, leases) are built for PostgreSQL: a second process running
//! sync jobs on the same SQLite file would only queue behind the first one's write lock, and on a
//! network file system the file locks SQLite relies on may not hold at all. So a process that runs
//! jobs on SQLite holds an exclusive lock on a file beside the database (released by the kernel
//! when the process ends, however it ends), and a second one is refused with what to do instead.
//! On PostgreSQL any number of workers may run; the slot holds nothing.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};

/// Held by a process that runs sync jobs; dropping it lets another process take over.
#[derive(Debug)]
pub struct WorkerSlot {
    _lock: Option<File>,
}

impl WorkerSlot {
    /// A slot on a database where workers share (PostgreSQL).
    pub(crate) fn shared() -> WorkerSlot {
        WorkerSlot { _lock: None }
    }

    /// The only worker slot of the SQLite database at `database`, or `Conflict` saying who holds it.
    pub(crate) fn exclusive(database: &Path) -> Result<WorkerSlot> {
        let path = lock_path(database);
        let open_err = |e: std::io::Error| StoreError::Open {
            path: path.display().to_string(),
            reason: format!("cannot open the worker lock file: {e}"),
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(open_err)?;
        match file.try_lock() {
            Ok(()) => {
                // Say who holds it, for the message a second process shows. Best effort: the
                // lock, not this text, is what keeps the second one out.
                let _ = file.set_len(0).and_then(|()| {
                    file.seek(SeekFrom::Start(0))?;
                    write!(file, "{}", crate::RunOwner::current())
                });
                Ok(WorkerSlot { _lock: Some(file) })
            }
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                Err(StoreError::Conflict(second_worker_message(
                    database,
                    holder.trim(),
                )))
            }
            Err(TryLockError::Error(e)) => Err(open_err(e)),
        }
    }
}

/// `rampart.db` → `rampart.db.worker-lock`, beside it.
fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.file_name().unwrap_or_default().to_owned();
    name.push(".worker-lock");
    database.with_file_name(name)
}

fn second_worker_message(database: &Path, holder: &str) -> String {
    let who = crate::RunOwner::parse(holder)
        .map(|o| format!(" ({})", o.describe()))
        .unwrap_or_default();
    format!(
        "another Rampart process{who} already runs sync jobs on the SQLite database {}: SQLite takes \
         one worker process. Stop that process, or start this one with --role web (portal and API \
         only; the running worker syncs), or use PostgreSQL (--database postgres://USER@HOST/DB) to \
         run several workers",
        database.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_slot_on_one_sqlite_file_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("rampart.db");
        let first = WorkerSlot::exclusive(&db).expect("first slot");
        let refused = WorkerSlot::exclusive(&db).expect_err("second slot");
        let message = refused.to_string();
        assert!(message.contains("SQLite takes one worker"), "{message}");
        assert!(message.contains("PostgreSQL"), "{message}");
        assert!(
            message.contains(&format!("(PID {} on ", std::process::id())),
            "the message names the holder: {message}"
        );
        drop(first);
        WorkerSlot::exclusive(&db).expect("free again once the first is dropped");
        // Another database has a slot of its own.
        WorkerSlot::exclusive(&dir.path().join("other.db")).expect("other database");
    }
}
