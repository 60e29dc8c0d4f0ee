//! What a sync is asked to do and how the engine is tuned: the words the CLI, the scheduler and
//! the product modules share (kept apart from the engine, so that the product modules need not
//! import the engine that calls them).

use rampart_microsoft::{FileReadOptions, PagingOptions, RateLimits, RetryPolicy};

/// Tuning of the engine. The defaults are what production wants; tests and benchmarks change some.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// `pageSize` of `SoftwareVulnerabilitiesByMachine` (Microsoft: default 50,000, at most
    /// 200,000). Larger pages mean fewer calls against the 30/min budget; memory does not grow with
    /// it because pages are decoded as a stream.
    pub export_page_size: u32,
    /// Rows per database write.
    pub write_batch: usize,
    /// The circuit breaker: a run that would mark more than this share of active assets missing
    /// concludes nothing and asks for a person.
    pub max_missing_share: f64,
    /// After a complete full read, later runs read only Microsoft's changes (the delta API) until
    /// this much time has passed; then a full read re-baselines. Microsoft keeps changes for 14
    /// days and advises a weekly baseline.
    pub rebaseline_after: chrono::Duration,
    /// Use the delta API between baselines.
    pub incremental: bool,
    pub rate_limits: RateLimits,
    pub retry: RetryPolicy,
    pub paging: PagingOptions,
    /// Full reads of tenants with at least this many devices take findings from the file export
    /// instead of the JSON pages (Microsoft advises files above 100,000 devices).
    pub file_export_threshold: u64,
    /// How export files are downloaded: concurrency, SAS lifetime, link refreshes.
    pub file_reads: FileReadOptions,
    /// Where people reach the portal (`https://rampart.example.com`): webhook alerts link to it.
    /// `None`: alerts carry no links.
    pub public_url: Option<String>,
    /// How webhook deliveries are sent and retried.
    pub webhooks: crate::webhooks::DeliveryOptions,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            export_page_size: 100_000,
            write_batch: 5_000,
            max_missing_share: 0.30,
            rebaseline_after: chrono::Duration::days(7),
            incremental: true,
            rate_limits: RateLimits::default(),
            retry: RetryPolicy::default(),
            paging: PagingOptions::default(),
            file_export_threshold: 100_000,
            file_reads: FileReadOptions::default(),
            public_url: None,
            webhooks: crate::webhooks::DeliveryOptions::default(),
        }
    }
}

/// Full read, or whatever is cheapest and still exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// A delta when a recent complete baseline allows it, else a full read.
    #[default]
    Auto,
    /// Always a full read (a new baseline).
    Full,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SyncRequest {
    pub mode: SyncMode,
    /// Conclude even when the circuit breaker or the plausibility check would hold the run: for a
    /// person who has checked that the mass change is real.
    pub accept_mass_changes: bool,
    /// Where a full read takes the findings from (JSON pages or export files).
    pub source: FindingsSource,
}

/// Where a full read takes the vulnerability findings from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FindingsSource {
    /// Export files from [`EngineOptions::file_export_threshold`] devices
    /// up (Microsoft's advice: 100,000), JSON pages below.
    #[default]
    Auto,
    /// `SoftwareVulnerabilitiesByMachine`: JSON pages.
    Pages,
    /// `SoftwareVulnerabilitiesExport`: gzip JSON-lines files.
    Files,
}

impl FindingsSource {
    /// `auto`, `pages` or `files`; the word the run record keeps.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingsSource::Auto => "auto",
            FindingsSource::Pages => "pages",
            FindingsSource::Files => "files",
        }
    }
}
