//! Client-side rate limits per API family (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-machines>), and pacing on the budget Azure
//! reports in its answers.
//!
//! Microsoft applies its limits per application + tenant, so one client (one integration) keeps
//! one pair of buckets (per minute and per hour) per endpoint family and waits on both before each
//! request. Staying under the limits costs nothing; a 429 costs a `Retry-After` wait. The 429 handling
//! stays as the backstop: Microsoft also throttles "by CPU" before the count is reached.
//!
//! Azure's budgets are shared by everything that signs in as the same app (another Rampart
//! process, a script, the portal's own calls) and Microsoft changes them ("subject to change"), so
//! the buckets alone cannot know what is left. Azure says it in every answer, and [`Pauses`] acts
//! on it before the next request:
//!
//! - Resource Graph: `x-ms-user-quota-remaining` and `x-ms-user-quota-resets-after` (`hh:mm:ss`).
//!   At 0 remaining, no query is sent until the window resets
//!   (<https://learn.microsoft.com/en-us/azure/governance/resource-graph/concepts/guidance-for-throttled-requests>).
//! - Resource Manager: `x-ms-ratelimit-remaining-subscription-reads`, `…-tenant-reads` (and the
//!   provider-specific `…-resource-requests` / `…-resource-entities-read`). At 0 remaining, the
//!   next read waits for one read's refill at the cloud's documented rate
//!   (<https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/request-limits-and-throttling>).

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rampart_model::Cloud;
use reqwest::header::HeaderMap;

use crate::family::ApiFamily;

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
    /// Reads Azure Resource Manager gives back per hour, to pace on its remaining-reads headers:
    /// 90,000 (25 per second) in the commercial cloud, 12,000 in the sovereign clouds.
    pub arm_refill_per_hour: u32,
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
            arm_refill_per_hour: COMMERCIAL_ARM_REFILL_PER_HOUR,
        }
    }
}

/// 25 reads per second.
const COMMERCIAL_ARM_REFILL_PER_HOUR: u32 = 90_000;

/// The sovereign clouds keep ARM's older limits until the end of 2026: 12,000 reads per hour per
/// subscription (and per tenant), counted per ARM instance.
const SOVEREIGN_ARM_READS_PER_HOUR: u32 = 12_000;

impl RateLimits {
    /// No client-side limits (429s are still honoured).
    pub fn disabled() -> RateLimits {
        RateLimits {
            enabled: false,
            ..RateLimits::default()
        }
    }

    /// Microsoft's ARM limits of `cloud`: the commercial cloud (and GCC, whose subscriptions live
    /// in it) has the token bucket; GCC High, DoD and China keep the hourly limit. Limits that are
    /// not the commercial defaults were set on purpose and are kept.
    pub fn for_cloud(&self, cloud: Cloud) -> RateLimits {
        let defaults = RateLimits::default();
        let sovereign = matches!(cloud, Cloud::GccHigh | Cloud::Dod | Cloud::China);
        if !sovereign {
            return self.clone();
        }
        let mut out = self.clone();
        if self.arm == defaults.arm {
            out.arm = FamilyLimit {
                per_minute: None,
                per_hour: Some(SOVEREIGN_ARM_READS_PER_HOUR),
                // A minute's share at once, not the whole hour's.
                burst: None,
            };
        }
        if self.arm_refill_per_hour == defaults.arm_refill_per_hour {
            out.arm_refill_per_hour = SOVEREIGN_ARM_READS_PER_HOUR;
        }
        out
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

/// Waits that Azure's own answers ask for (see the module docs), per family.
pub(crate) struct Pauses {
    until: Vec<Mutex<Option<Instant>>>,
    arm_refill_per_hour: u32,
    enabled: bool,
}

impl Pauses {
    pub fn new(limits: &RateLimits) -> Pauses {
        Pauses {
            until: ApiFamily::ALL.iter().map(|_| Mutex::new(None)).collect(),
            arm_refill_per_hour: limits.arm_refill_per_hour.max(1),
            enabled: limits.enabled,
        }
    }

    /// Reads the remaining budget of an answer of `family` and, when it is spent, holds the next
    /// request of the family back. Returns the pause it set.
    pub fn observe(&self, family: ApiFamily, headers: &HeaderMap) -> Option<Duration> {
        if !self.enabled {
            return None;
        }
        let pause = match family {
            ApiFamily::ResourceGraph => graph_pause(headers),
            ApiFamily::Arm => arm_pause(headers, self.arm_refill_per_hour),
            _ => None,
        }?;
        let slot = self.until.get(family.index())?;
        let mut until = slot.lock().unwrap_or_else(|e| e.into_inner());
        let at = Instant::now() + pause;
        if until.is_none_or(|u| u < at) {
            *until = Some(at);
        }
        Some(pause)
    }

    /// Waits out a pause set by [`Pauses::observe`], if any.
    pub async fn wait(&self, family: ApiFamily) -> Duration {
        let at = self.until.get(family.index()).and_then(|slot| {
            let mut until = slot.lock().unwrap_or_else(|e| e.into_inner());
            match *until {
                Some(at) if at > Instant::now() => Some(at),
                _ => {
                    *until = None;
                    None
                }
            }
        });
        match at {
            Some(at) => {
                let wait = at.saturating_duration_since(Instant::now());
                tokio::time::sleep(wait).await;
                wait
            }
            None => Duration::ZERO,
        }
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Resource Graph: at 0 queries left, wait until the window resets.
fn graph_pause(headers: &HeaderMap) -> Option<Duration> {
    if header_u64(headers, "x-ms-user-quota-remaining")? > 0 {
        return None;
    }
    let resets = headers
        .get("x-ms-user-quota-resets-after")
        .and_then(|v| v.to_str().ok())
        .and_then(super::parse_hms)
        // The header is documented on every answer; without it, the documented window.
        .unwrap_or(Duration::from_secs(5));
    Some(resets)
}

/// Resource Manager: at 0 reads left in any bucket the answer names, wait for one read's refill
/// (with a margin: the bucket is measured at the server, not here).
fn arm_pause(headers: &HeaderMap, refill_per_hour: u32) -> Option<Duration> {
    let lowest = headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            n.starts_with("x-ms-ratelimit-remaining-")
                && !n.ends_with("-writes")
                && !n.ends_with("-deletes")
        })
        .filter_map(|(_, v)| v.to_str().ok()?.trim().parse::<u64>().ok())
        .min()?;
    let micros_per_read_with_margin = 3_600_000_000u64 * 5 / 4 / u64::from(refill_per_hour.max(1));
    (lowest == 0).then(|| Duration::from_micros(micros_per_read_with_margin))
}

impl fmt::Debug for Pauses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pauses").finish_non_exhaustive()
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

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_spent_graph_quota_pauses_until_it_resets() {
        let p = Pauses::new(&RateLimits::default());
        let spent = headers(&[
            ("x-ms-user-quota-remaining", "0"),
            ("x-ms-user-quota-resets-after", "00:00:03"),
        ]);
        assert_eq!(
            p.observe(ApiFamily::ResourceGraph, &spent),
            Some(Duration::from_secs(3))
        );
        let left = headers(&[("x-ms-user-quota-remaining", "4")]);
        assert_eq!(p.observe(ApiFamily::ResourceGraph, &left), None);
        assert_eq!(p.observe(ApiFamily::Machines, &spent), None);
    }

    #[test]
    fn a_spent_arm_bucket_pauses_one_refill_of_the_cloud() {
        let commercial = Pauses::new(&RateLimits::default());
        let spent = headers(&[
            ("x-ms-ratelimit-remaining-subscription-reads", "0"),
            ("x-ms-ratelimit-remaining-subscription-writes", "5"),
        ]);
        let d = commercial.observe(ApiFamily::Arm, &spent).unwrap();
        assert_eq!(d, Duration::from_millis(50), "1/25 s with a 25 % margin");
        let gov = Pauses::new(&RateLimits::default().for_cloud(Cloud::GccHigh));
        let d = gov.observe(ApiFamily::Arm, &spent).unwrap();
        assert_eq!(d, Duration::from_millis(375), "3600/12,000 s with a margin");
        let ok = headers(&[("x-ms-ratelimit-remaining-tenant-reads", "249")]);
        assert_eq!(commercial.observe(ApiFamily::Arm, &ok), None);
        let off = Pauses::new(&RateLimits::disabled());
        assert_eq!(off.observe(ApiFamily::Arm, &spent), None);
    }

    #[test]
    fn sovereign_clouds_get_the_hourly_arm_limit() {
        let gov = RateLimits::default().for_cloud(Cloud::Dod);
        assert_eq!(gov.arm.per_hour, Some(12_000));
        assert_eq!(gov.arm_refill_per_hour, 12_000);
        assert_eq!(
            RateLimits::default().for_cloud(Cloud::Gcc),
            RateLimits::default(),
            "GCC subscriptions live in commercial Azure"
        );
        let custom = RateLimits {
            arm: FamilyLimit {
                per_minute: Some(60),
                per_hour: None,
                burst: Some(1),
            },
            ..RateLimits::default()
        };
        assert_eq!(custom.for_cloud(Cloud::China).arm, custom.arm);
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
