//! Login rate limiting: a few failed attempts per account and address, then a pause.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::AppError;

/// Failed logins allowed per (name, address) within [`WINDOW`].
pub const MAX_FAILURES: u32 = 5;
/// Failed logins allowed per address (any name) within [`WINDOW`].
pub const MAX_FAILURES_PER_ADDRESS: u32 = 20;
pub const WINDOW: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginLimiter {
    fn keys(name: &str, ip: Option<IpAddr>) -> [(String, u32); 2] {
        let ip = ip.map(|i| i.to_string()).unwrap_or_default();
        [
            (format!("{}|{ip}", name.to_lowercase()), MAX_FAILURES),
            (format!("*|{ip}"), MAX_FAILURES_PER_ADDRESS),
        ]
    }

    /// Refuses when too many attempts failed recently.
    pub fn check(&self, name: &str, ip: Option<IpAddr>) -> Result<(), AppError> {
        let mut map = self.failures.lock().map_err(AppError::internal)?;
        let now = Instant::now();
        map.retain(|_, (_, since)| now.duration_since(*since) < WINDOW);
        for (key, max) in Self::keys(name, ip) {
            if map.get(&key).is_some_and(|(n, _)| *n >= max) {
                return Err(AppError::TooManyRequests);
            }
        }
        Ok(())
    }

    pub fn failed(&self, name: &str, ip: Option<IpAddr>) {
        if let Ok(mut map) = self.failures.lock() {
            for (key, _) in Self::keys(name, ip) {
                map.entry(key).or_insert((0, Instant::now())).0 += 1;
            }
        }
    }

    pub fn succeeded(&self, name: &str, ip: Option<IpAddr>) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(&Self::keys(name, ip)[0].0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures_and_only_that_name() {
        let l = LoginLimiter::default();
        let ip = Some(IpAddr::from([127, 0, 0, 1]));
        for _ in 0..MAX_FAILURES {
            assert!(l.check("alice", ip).is_ok());
            l.failed("alice", ip);
        }
        assert!(matches!(
            l.check("Alice", ip),
            Err(AppError::TooManyRequests)
        ));
        assert!(l.check("bob", ip).is_ok());
    }
}
