//! Microsoft's documented call limits (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-machines>), per application + tenant and endpoint family, per minute
//! and per hour, as sliding windows.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::stats::Family;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// `(per minute, per hour)`; `None` = not limited (tokens, blobs, control).
pub(crate) fn limits(family: Family) -> Option<(usize, Option<usize>)> {
    match family {
        Family::Machines => Some((100, Some(1500))),
        Family::MachineVulnerabilities => Some((50, Some(1500))),
        Family::JsonExport | Family::Delta => Some((30, Some(1000))),
        Family::FileExport => Some((5, Some(20))),
        // "100 calls / 60 s" fallback of the API terms of use for endpoints without stated limits.
        Family::Vulnerabilities | Family::Other => Some((100, None)),
        // ARM and Resource Graph have their own buckets (`crate::arm_limits`).
        Family::Token | Family::Blob | Family::Control | Family::Arm | Family::ResourceGraph => {
            None
        }
    }
}

#[derive(Default)]
pub(crate) struct RateLimiter {
    calls: HashMap<(String, Family), VecDeque<Instant>>,
}

impl RateLimiter {
    /// Counts the call, or says how many whole seconds until a slot frees.
    pub(crate) fn check(&mut self, caller: &str, family: Family, now: Instant) -> Result<(), u64> {
        let Some((per_minute, per_hour)) = limits(family) else {
            return Ok(());
        };
        let window = if per_hour.is_some() { HOUR } else { MINUTE };
        let calls = self.calls.entry((caller.to_owned(), family)).or_default();
        while calls
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            calls.pop_front();
        }
        let wait = |oldest: Instant, span: Duration| -> u64 {
            let left = span.saturating_sub(now.duration_since(oldest));
            left.as_secs() + u64::from(left.subsec_nanos() > 0)
        };
        let in_minute = calls
            .iter()
            .rev()
            .take_while(|t| now.duration_since(**t) < MINUTE)
            .count();
        if in_minute >= per_minute {
            let oldest = calls[calls.len() - in_minute];
            return Err(wait(oldest, MINUTE).max(1));
        }
        if let Some(per_hour) = per_hour
            && calls.len() >= per_hour
            && let Some(oldest) = calls.front()
        {
            return Err(wait(*oldest, HOUR).max(1));
        }
        calls.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minute_and_hour_windows() {
        let mut rl = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(rl.check("app", Family::FileExport, t0).is_ok());
        }
        let wait = rl.check("app", Family::FileExport, t0).unwrap_err();
        assert_eq!(wait, 60);
        // Another family and another caller are separate buckets.
        assert!(rl.check("app", Family::Machines, t0).is_ok());
        assert!(rl.check("other", Family::FileExport, t0).is_ok());
        // After a minute, the minute window frees; after 20 calls the hour window bites.
        let mut t = t0;
        for _ in 0..3 {
            t += MINUTE;
            for _ in 0..5 {
                assert!(rl.check("app", Family::FileExport, t).is_ok());
            }
        }
        t += MINUTE;
        let wait = rl.check("app", Family::FileExport, t).unwrap_err();
        assert_eq!(wait, 3600 - 4 * 60);
        assert!(rl.check("app", Family::Token, t).is_ok());
    }
}
