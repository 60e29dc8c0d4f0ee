//! The store's scenario suite: every scenario runs on SQLite and on PostgreSQL, each on a fresh
//! database. Test names are `<module>::<backend>::<scenario>`, so `cargo test -p rampart-store
//! postgres` runs the PostgreSQL half.
//!
//! PostgreSQL is never skipped: without `TEST_DATABASE_URL` the harness starts its own server, and
//! fails loudly when it cannot.

// The scenarios are async helpers that clippy's allow-unwrap-in-tests does not recognise as tests:
// a failed unwrap here is a failed test, which is what it should be.
#![allow(clippy::unwrap_used)]

/// Instantiates each scenario `async fn name(store: Arc<dyn Store>)` of the enclosing module once
/// per backend.
macro_rules! scenarios {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                $(#[$attr])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_dir, store) = rampart_store::testing::sqlite_store().await;
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                $(#[$attr])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let store = rampart_store::testing::postgres_store().await;
                    super::$name(store).await;
                }
            )*
        }
    };
}

mod support;

mod accounts;
mod bulk;
mod cloud;
mod connect;
mod delta;
mod exceptions;
mod files;
mod hostile;
mod integrations;
mod portal;
mod reads;
mod reconcile;
mod runs;
mod sla;
mod upserts;
mod webhooks;
mod workspaces;
