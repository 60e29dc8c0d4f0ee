//! The web layer's one integration-test binary: a real server on port 0 (`spawn_app`), the
//! emulator as Microsoft, a fresh SQLite database per test.

// Test helpers unwrap: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod fixtures;
mod helpers;

mod api;
mod auth;
mod browser;
mod concurrency;
mod fix_first;
mod flow;
mod intel;
mod isolation;
mod limits;
mod ops;
mod posture;
mod problems;
mod real_tenants;
mod scheduler;
mod security;
mod sla;
mod snapshots;
mod test_cert;
mod tls;
mod webhooks;
