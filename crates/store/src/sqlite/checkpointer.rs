//! Copies the write-ahead log into the database file on a connection of its own, so that the
//! writer does not stop to do it.
//!
//! With SQLite's automatic checkpoint the connection that commits past the threshold copies the
//! WAL into the database file and fsyncs both before its commit returns. During a first load of
//! 2 M findings that was about 1 s of the single writer's time, on the sync's critical path (the
//! findings pipe waits for the writer). A passive checkpoint on another connection runs on
//! another thread beside the writer and never blocks it; the writer keeps its automatic
//! checkpoint as a backstop for when this one falls behind (or another process writes).

use std::time::Duration;

use sqlx::SqlitePool;
use tokio::task::JoinHandle;

/// How often the checkpointer looks at the WAL. With nothing new in it, a passive checkpoint
/// returns at once.
const INTERVAL: Duration = Duration::from_millis(100);

/// Runs passive checkpoints until dropped.
#[derive(Debug)]
pub(super) struct Checkpointer {
    task: JoinHandle<()>,
}

impl Checkpointer {
    /// Starts checkpointing through `pool` (one connection that may write).
    pub(super) fn start(pool: SqlitePool) -> Self {
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // A failure here costs nothing but speed: the writer's automatic checkpoint
                // remains. (The pool is closed when the store is.)
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&pool)
                    .await
                {
                    if pool.is_closed() {
                        return;
                    }
                    tracing::debug!(message = "Background checkpoint failed.", error = %e);
                }
            }
        });
        Self { task }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::SqlStore;
    use crate::db::{Sql, q};

    /// Data committed by the writer reaches the database file while the store stays open,
    /// although it is far below the writer's own automatic checkpoint (64 MB).
    #[tokio::test]
    async fn the_wal_reaches_the_database_file_without_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.db");
        let store = SqlStore::open(&path).await.unwrap();
        let store = &store;
        let write = |sql: Sql| async move { store.db.write().execute(&sql, "test").await.unwrap() };
        let before = std::fs::metadata(&path).unwrap().len();
        write(q("CREATE TABLE scratch (v BLOB)")).await;
        write(q(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
             INSERT INTO scratch SELECT randomblob(1000) FROM n",
        ))
        .await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = std::fs::metadata(&path).unwrap().len();
            if now >= before + 1_500_000 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the database file stayed at {now} bytes (was {before}): nothing was checkpointed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
