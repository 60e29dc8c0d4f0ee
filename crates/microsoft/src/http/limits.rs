//! Client-side rate limits per API family (`mde-api.md` §9.1).
//!
//! Microsoft applies its limits per application + tenant, so one client (one integration) keeps
//! one pair of buckets (per minute and per hour) per endpoint family and waits on both before each
//! request. Staying under the limits costs nothing; a 429 costs a `Retry-After` wait. The 429 handling
//! stays as the backstop: Microsoft also throttles "by CPU" before the count is reached.

use std::fmt;
use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// The endpoint families Microsoft limits separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiFamily {
    /// `GET /api/machines`: 100/min, 1,500/h.
    Machines,
    /// `GET /api/vulnerabilities` and other endpoints with unstated limits: 100/min (API terms).
    Vulnerabilities,
    /// `*ByMachine` JSON exports, delta included: 30/min, 1,000/h.
    JsonExport,
    /// `*Export` file exports: 5/min, 20/h.
    FileExport,
    /// Azure Resource Manager reads (subscriptions, `Microsoft.Security`): a token bucket of 250
    /// reads refilled at 25/s per subscription and principal (reference §4.1).
    Arm,
    /// Azure Resource Graph queries: about 15 per 5 s per principal (reference §4.2).
    ResourceGraph,
}

impl ApiFamily {
    pub const ALL: [ApiFamily; 6] = [
        ApiFamily::Machines,
        ApiFamily::Vulnerabilities,
        ApiFamily::JsonExport,
        ApiFamily::FileExport,
        ApiFamily::Arm,
        ApiFamily::ResourceGraph,
    ];

    /// The Microsoft service behind the family, for messages.
    pub fn service(self) -> &'static str {
        match self {
            ApiFamily::Arm => "Azure Resource Manager",
            ApiFamily::ResourceGraph => "Azure Resource Graph",
            _ => "Defender for Endpoint",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApiFamily::Machines => "machines",
            ApiFamily::Vulnerabilities => "vulnerabilities",
            ApiFamily::JsonExport => "json-export",
            ApiFamily::FileExport => "file-export",
            ApiFamily::Arm => "arm",
            ApiFamily::ResourceGraph => "resource-graph",
        }
    }

    fn index(self) -> usize {
        match self {
            ApiFamily::Machines => 0,
            ApiFamily::Vulnerabilities => 1,
            ApiFamily::JsonExport => 2,
            ApiFamily::FileExport => 3,
            ApiFamily::Arm => 4,
            ApiFamily::ResourceGraph => 5,
        }
    }
}

impl fmt::Display for ApiFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Calls allowed per minute and per hour; `None` (or 0) = no bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyLimit {
    pub per_minute: Option<u32>,
    pub per_hour: Option<u32>,
    /// Calls the per-minute bucket lets through at once; `None` = `per_minute` (the whole
    /// minute's budget). Azure's buckets are smaller than a minute's refill (ARM: 250 reads
    /// refilled at 25/s; Resource Graph: 15 per 5 s), so a burst of a minute's budget would meet
    /// 429s.
    pub burst: Option<u32>,
}

/// Rate limits of one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Off for benchmarks against an unthrottled emulator.
    pub enabled: bool,
    pub machines: FamilyLimit,
    pub vulnerabilities: FamilyLimit,
    pub json_exports: FamilyLimit,
    pub file_exports: FamilyLimit,
    pub arm: FamilyLimit,
    pub resource_graph: FamilyLimit,
}

impl Default for RateLimits {
    /// Microsoft's documented limits.
    fn default() -> Self {
        RateLimits {
            enabled: true,
            machines: FamilyLimit {
                per_minute: Some(100),
                per_hour: Some(1_500),
                burst: None,
            },
            vulnerabilities: FamilyLimit {
                per_minute: Some(100),
                per_hour: None,
                burst: None,
            },
            json_exports: FamilyLimit {
                per_minute: Some(30),
                per_hour: Some(1_000),
                burst: None,
            },
            file_exports: FamilyLimit {
                per_minute: Some(5),
                per_hour: Some(20),
                burst: None,
            },
            // 25 reads/s refill and a bucket of 250: staying inside both never drains Microsoft's
            // bucket (which is per subscription; ours is per integration, so stricter).
            arm: FamilyLimit {
                per_minute: Some(1_500),
                per_hour: None,
                burst: Some(250),
            },
            // 15 queries per 5 s.
            resource_graph: FamilyLimit {
                per_minute: Some(180),
                per_hour: None,
                burst: Some(15),
            },
        }
    }
}

impl RateLimits {
    /// No client-side limits (429s are still honoured).
    pub fn disabled() -> RateLimits {
        RateLimits {
            enabled: false,
            ..RateLimits::default()
        }
    }

    pub fn limit(&self, family: ApiFamily) -> FamilyLimit {
        match family {
            ApiFamily::Machines => self.machines,
            ApiFamily::Vulnerabilities => self.vulnerabilities,
            ApiFamily::JsonExport => self.json_exports,
            ApiFamily::FileExport => self.file_exports,
            ApiFamily::Arm => self.arm,
            ApiFamily::ResourceGraph => self.resource_graph,
        }
    }
}

struct Buckets {
    minute: Option<DefaultDirectRateLimiter>,
    hour: Option<DefaultDirectRateLimiter>,
}

/// The buckets of every family.
pub(crate) struct Limiters {
    families: Vec<Buckets>,
}

impl Limiters {
    pub fn new(limits: &RateLimits) -> Limiters {
        let bucket = |n: Option<u32>, burst: Option<u32>, quota: fn(NonZeroU32) -> Quota| {
            let n = NonZeroU32::new(n?)?;
            let quota = match burst.and_then(NonZeroU32::new) {
                Some(b) => quota(n).allow_burst(b),
                None => quota(n),
            };
            limits.enabled.then(|| RateLimiter::direct(quota))
        };
        let families = ApiFamily::ALL
            .iter()
            .map(|f| {
                let l = limits.limit(*f);
                Buckets {
                    minute: bucket(l.per_minute, l.burst, Quota::per_minute),
                    hour: bucket(l.per_hour, None, Quota::per_hour),
                }
            })
            .collect();
        Limiters { families }
    }

    /// Waits until one more call of `family` is allowed by both buckets.
    pub async fn acquire(&self, family: ApiFamily) {
        let Some(b) = self.families.get(family.index()) else {
            return;
        };
        if let Some(m) = &b.minute {
            m.until_ready().await;
        }
        if let Some(h) = &b.hour {
            h.until_ready().await;
        }
    }
}

impl fmt::Debug for Limiters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiters").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn a_bucket_lets_its_burst_through_then_waits() {
        let limits = RateLimits {
            file_exports: FamilyLimit {
                per_minute: Some(600), // one every 100 ms after a burst of 600
                per_hour: Some(3),
                burst: None,
            },
            ..RateLimits::default()
        };
        let l = Limiters::new(&limits);
        let start = Instant::now();
        for _ in 0..3 {
            l.acquire(ApiFamily::FileExport).await;
        }
        assert!(start.elapsed() < Duration::from_millis(100));
        // The hourly bucket is spent: the fourth call would wait ~20 minutes.
        let fourth =
            tokio::time::timeout(Duration::from_millis(200), l.acquire(ApiFamily::FileExport))
                .await;
        assert!(fourth.is_err(), "hourly budget not enforced");
        // Other families have their own buckets.
        let other =
            tokio::time::timeout(Duration::from_millis(200), l.acquire(ApiFamily::Machines)).await;
        assert!(other.is_ok());
    }

    #[tokio::test]
    async fn a_burst_smaller_than_the_minute_is_kept() {
        let limits = RateLimits {
            arm: FamilyLimit {
                per_minute: Some(60), // one per second after the burst
                per_hour: None,
                burst: Some(2),
            },
            ..RateLimits::default()
        };
        let l = Limiters::new(&limits);
        let start = Instant::now();
        l.acquire(ApiFamily::Arm).await;
        l.acquire(ApiFamily::Arm).await;
        assert!(start.elapsed() < Duration::from_millis(100));
        let third =
            tokio::time::timeout(Duration::from_millis(300), l.acquire(ApiFamily::Arm)).await;
        assert!(third.is_err(), "the burst of 2 was not enforced");
    }

    #[tokio::test]
    async fn disabled_limits_never_wait() {
        let l = Limiters::new(&RateLimits::disabled());
        let start = Instant::now();
        for _ in 0..100 {
            l.acquire(ApiFamily::FileExport).await;
        }
        assert!(start.elapsed() < Duration::from_millis(100));
    }
}
