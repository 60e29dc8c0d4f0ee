//! Login rate limiting: a few failed attempts per account and address, then a pause.
//!
//! An attempt is counted as failed *before* its password is checked, in the same step as the
//! check of the limit (one lock), and uncounted if the password was right. Checking first and
//! counting after the (slow, by design) password hash let parallel requests all pass the check
//! before any failure was recorded: 200 parallel wrong logins tried 56 passwords where 5 were
//! allowed.
//!
//! The address is the client's (see [`super::client`]): behind a trusted proxy, each client is
//! limited on its own, so that one attacker cannot lock every user out.

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

/// A login attempt allowed to check a password. It counts as a failure unless
/// [`Attempt::succeeded`] is called.
#[must_use = "an attempt counts as failed unless told it succeeded"]
pub struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    name_key: String,
    address_key: String,
}

impl LoginLimiter {
    fn keys(name: &str, ip: IpAddr) -> (String, String) {
        (format!("{}|{ip}", name.to_lowercase()), format!("*|{ip}"))
    }

    /// Counts an attempt of `name` from `ip`, or refuses it when too many failed recently.
    pub fn begin(&self, name: &str, ip: IpAddr) -> Result<Attempt<'_>, AppError> {
        let mut map = self.failures.lock().map_err(AppError::internal)?;
        let now = Instant::now();
        map.retain(|_, (_, since)| now.duration_since(*since) < WINDOW);
        let (name_key, address_key) = Self::keys(name, ip);
        for (key, max) in [
            (&name_key, MAX_FAILURES),
            (&address_key, MAX_FAILURES_PER_ADDRESS),
        ] {
            if map.get(key).is_some_and(|(n, _)| *n >= max) {
                return Err(AppError::TooManyRequests);
            }
        }
        for key in [&name_key, &address_key] {
            map.entry(key.clone()).or_insert((0, now)).0 += 1;
        }
        Ok(Attempt {
            limiter: self,
            name_key,
            address_key,
        })
    }
}

impl Attempt<'_> {
    /// The password was right: the account's failures from this address are forgotten, and this
    /// attempt no longer counts against the address.
    pub fn succeeded(self) {
        if let Ok(mut map) = self.limiter.failures.lock() {
            map.remove(&self.name_key);
            if let Some((n, _)) = map.get_mut(&self.address_key) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn locks_after_max_failures_and_only_that_name() {
        let l = LoginLimiter::default();
        for _ in 0..MAX_FAILURES {
            drop(l.begin("alice", IP).unwrap());
        }
        assert!(matches!(
            l.begin("Alice", IP),
            Err(AppError::TooManyRequests)
        ));
        l.begin("bob", IP).unwrap().succeeded();
        // Another address is not locked.
        drop(l.begin("alice", IpAddr::from([192, 0, 2, 1])).unwrap());
    }

    #[test]
    fn attempts_in_flight_count() {
        let l = LoginLimiter::default();
        // Attempts begun and not finished (their passwords still being checked) use up the limit.
        let pending: Vec<_> = (0..MAX_FAILURES)
            .map(|_| l.begin("alice", IP).unwrap())
            .collect();
        assert!(l.begin("alice", IP).is_err());
        // One of them succeeds: the account is free again.
        let mut pending = pending.into_iter();
        pending.next().unwrap().succeeded();
        assert!(l.begin("alice", IP).is_ok());
    }

    #[test]
    fn the_address_limit_covers_every_name() {
        let l = LoginLimiter::default();
        for i in 0..MAX_FAILURES_PER_ADDRESS {
            drop(l.begin(&format!("user{i}"), IP).unwrap());
        }
        assert!(l.begin("someone-else", IP).is_err());
    }
}
