//! Sync runs: claim, read from Microsoft, normalise, store, judge completeness, reconcile, record.

pub mod vault;
