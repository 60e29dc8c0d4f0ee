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

/// How often the checkpointer looks at the WAL. A look at a WAL with nothing new costs a few
/// microseconds.
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
