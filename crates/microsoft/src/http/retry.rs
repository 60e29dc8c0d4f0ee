//! Retry policy: bounded, jittered exponential backoff, and `Retry-After` for throttling
//! (<https://learn.microsoft.com/en-us/defender-endpoint/api/common-errors>).

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng as _;

/// How failures are retried. One budget applies per request (per page: a page read again from its
/// start after a cut body spends from the same budget as a 503).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after transient failures (5xx, timeouts, resets, truncated or unparsable bodies).
    pub max_retries: u32,
    /// First backoff; doubles per retry, with jitter.
    pub base_delay: Duration,
    /// Longest backoff between two attempts.
    pub max_delay: Duration,
    /// First wait after a 429 without `Retry-After`; doubles per 429, with jitter.
    pub throttle_base: Duration,
    /// How many 429s one request may meet before it fails.
    pub max_throttle_retries: u32,
    /// A `Retry-After` longer than this (the hourly budget is spent) fails the request at once with
    /// the wait in the error, so the scheduler can come back later instead of holding a worker.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 6,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            throttle_base: Duration::from_secs(5),
            max_throttle_retries: 10,
            max_retry_after: Duration::from_secs(15 * 60),
        }
    }
}

impl RetryPolicy {
    /// The same policy with every delay scaled to start at `base`: for tests against the emulator,
    /// and for benchmarks.
    pub fn with_base_delay(base: Duration) -> RetryPolicy {
        RetryPolicy {
            base_delay: base,
            max_delay: base.saturating_mul(16),
            throttle_base: base.saturating_mul(5),
            ..RetryPolicy::default()
        }
    }

    /// Backoff before retry number `retry` (1-based) after a transient failure.
    pub fn backoff(&self, retry: u32) -> Duration {
        jittered(self.base_delay, retry, self.max_delay)
    }

    /// Wait before retry number `retry` after a 429 without `Retry-After`.
    pub fn throttle_backoff(&self, retry: u32) -> Duration {
        jittered(
            self.throttle_base,
            retry,
            self.max_delay.max(self.throttle_base),
        )
    }
}

/// `base · 2^(n-1)`, capped, then "equal jitter": half fixed, half random, so that many clients
/// throttled together do not retry together, yet none retries too early.
fn jittered(base: Duration, n: u32, cap: Duration) -> Duration {
    let exp = base
        .saturating_mul(1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX))
        .min(cap);
    let half = exp / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

/// Parses `Retry-After`: seconds (what Microsoft sends) or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// The retries one request has left.
#[derive(Debug)]
pub(crate) struct Budget<'a> {
    policy: &'a RetryPolicy,
    /// Attempts made so far (for messages).
    pub attempts: u32,
    transient: u32,
    throttled: u32,
    /// A 401 was answered by invalidating the token once.
    pub reauthenticated: bool,
    /// A 404 was retried once (Microsoft has returned intermittent 404s for existing machines).
    pub retried_not_found: bool,
    /// Attempts of a streamed page or file that failed after delivering records (the consumer
    /// receives them again).
    pub restarts: u32,
}

/// A 429 that will not be waited out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ThrottleVerdict {
    Wait(Duration),
    /// Too many 429s, or `Retry-After` beyond the policy's cap.
    GiveUp,
}

impl<'a> Budget<'a> {
    pub fn new(policy: &'a RetryPolicy) -> Budget<'a> {
        Budget {
            policy,
            attempts: 0,
            transient: 0,
            throttled: 0,
            reauthenticated: false,
            retried_not_found: false,
            restarts: 0,
        }
    }

    /// A transient failure: the delay before the next attempt, or `None` when the budget is spent.
    pub fn transient(&mut self) -> Option<Duration> {
        if self.transient >= self.policy.max_retries {
            return None;
        }
        self.transient += 1;
        Some(self.policy.backoff(self.transient))
    }

    /// A 429, with its `Retry-After` if any.
    pub fn throttled(&mut self, retry_after: Option<Duration>) -> ThrottleVerdict {
        if self.throttled >= self.policy.max_throttle_retries {
            return ThrottleVerdict::GiveUp;
        }
        self.throttled += 1;
        match retry_after {
            Some(d) if d > self.policy.max_retry_after => ThrottleVerdict::GiveUp,
            // Waiting exactly as long as asked; a little extra keeps clocks apart from the edge.
            Some(d) => {
                ThrottleVerdict::Wait(d + Duration::from_millis(rand::rng().random_range(0..=250)))
            }
            None => ThrottleVerdict::Wait(self.policy.throttle_backoff(self.throttled)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let p = RetryPolicy::default();
        for n in 1..=10 {
            let d = p.backoff(n);
            let exp = Duration::from_secs(1u64 << (n - 1)).min(p.max_delay);
            assert!(d >= exp / 2 && d <= exp, "retry {n}: {d:?}");
        }
        assert!(p.backoff(1000) <= p.max_delay);
        let t = p.throttle_backoff(1);
        assert!(
            t >= Duration::from_millis(2500) && t <= Duration::from_secs(5),
            "{t:?}"
        );
    }

    #[test]
    fn retry_after_in_seconds_or_http_date() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn budgets_are_bounded() {
        let p = RetryPolicy::with_base_delay(Duration::from_millis(1));
        let mut b = Budget::new(&p);
        for _ in 0..p.max_retries {
            assert!(b.transient().is_some());
        }
        assert!(b.transient().is_none());

        let mut b = Budget::new(&p);
        assert!(
            matches!(b.throttled(Some(Duration::from_secs(2))), ThrottleVerdict::Wait(d) if d >= Duration::from_secs(2) && d <= Duration::from_millis(2250))
        );
        assert_eq!(
            b.throttled(Some(Duration::from_secs(3600))),
            ThrottleVerdict::GiveUp
        );
        for _ in 2..p.max_throttle_retries {
            assert!(matches!(b.throttled(None), ThrottleVerdict::Wait(_)));
        }
        assert_eq!(b.throttled(None), ThrottleVerdict::GiveUp);
    }
}
