//! Counters of one client, shared by every request it makes (`Arc` of atomics, no locks on the hot
//! path). The sync engine records a snapshot with each run: API calls, 429s, retries, bytes.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters. Cheap to update from any task.
#[derive(Debug, Default)]
pub struct Metrics {
    api_calls: AtomicU64,
    token_requests: AtomicU64,
    throttled: AtomicU64,
    retries: AtomicU64,
    restarts: AtomicU64,
    bytes_received: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// HTTP requests sent to the API (retries included; token requests not).
    pub api_calls: u64,
    /// Requests to the token endpoint.
    pub token_requests: u64,
    /// 429 answers seen.
    pub throttled: u64,
    /// Attempts repeated after a transient failure, a 401 or a 404 (429 waits are counted in
    /// `throttled`).
    pub retries: u64,
    /// Pages read again from their start after records of them had been delivered.
    pub restarts: u64,
    /// Body bytes received from the API (after decompression).
    pub bytes_received: u64,
}

impl MetricsSnapshot {
    /// What happened between `earlier` and this snapshot: a client lives across runs, a run record
    /// wants its own counts.
    pub fn since(&self, earlier: &MetricsSnapshot) -> MetricsSnapshot {
        MetricsSnapshot {
            api_calls: self.api_calls.saturating_sub(earlier.api_calls),
            token_requests: self.token_requests.saturating_sub(earlier.token_requests),
            throttled: self.throttled.saturating_sub(earlier.throttled),
            retries: self.retries.saturating_sub(earlier.retries),
            restarts: self.restarts.saturating_sub(earlier.restarts),
            bytes_received: self.bytes_received.saturating_sub(earlier.bytes_received),
        }
    }
}

impl Metrics {
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            api_calls: self.api_calls.load(Ordering::Relaxed),
            token_requests: self.token_requests.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn api_call(&self) {
        self.api_calls.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn token_request(&self) {
        self.token_requests.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn throttle(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn bytes(&self, n: usize) {
        self.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
    }
}
