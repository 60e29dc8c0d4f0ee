//! How a run tells a person what it is doing. The CLI draws progress bars on a terminal; the
//! scheduler logs; tests stay silent.

/// Receives progress of one run. Called from the run's task; keep implementations cheap.
pub trait Progress: Send + Sync {
    /// A new phase starts (`reading devices`, `reading findings`, `reconciling`, ...).
    fn phase(&self, name: &str);
    /// `n` more records of the current phase were read.
    fn advance(&self, n: u64);
    /// The current phase ended with `total` records read (or changes made, when reconciling).
    fn phase_done(&self, total: u64);
    /// A remark worth showing (a wait on a rate limit, a page read again).
    fn note(&self, message: &str);
}

/// Progress that goes nowhere.
pub struct Silent;

impl Progress for Silent {
    fn phase(&self, _: &str) {}
    fn advance(&self, _: u64) {}
    fn phase_done(&self, _: u64) {}
    fn note(&self, _: &str) {}
}

/// Progress as structured log events (the scheduler's).
pub struct Logged;

impl Progress for Logged {
    fn phase(&self, name: &str) {
        tracing::info!(message = "Sync phase started.", phase = name);
    }
    fn advance(&self, _: u64) {}
    fn phase_done(&self, total: u64) {
        tracing::info!(message = "Sync phase done.", records = total);
    }
    fn note(&self, message: &str) {
        tracing::info!(message);
    }
}
