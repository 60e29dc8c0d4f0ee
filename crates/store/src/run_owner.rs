//! Who runs a sync: a process on a host. A run whose owning process is gone can be taken over at
//! once instead of after [`crate::STALE_RUN_AFTER`], so that a sync killed with SIGKILL (or a
//! crashed machine's run, after a reboot) does not block the next one for half an hour.

use std::fmt;

/// A process identity that survives PID reuse: host name, PID and the process's start time (in
/// clock ticks since boot, from `/proc/PID/stat`), plus the boot id so a reboot is noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOwner {
    host: String,
    boot: String,
    pid: u32,
    started: u64,
}

impl RunOwner {
    /// This process.
    pub fn current() -> RunOwner {
        let pid = std::process::id();
        RunOwner {
            host: host_name(),
            boot: boot_id(),
            pid,
            started: process_start(pid).unwrap_or(0),
        }
    }

    /// Parses what [`fmt::Display`] wrote; `None` for anything else.
    pub fn parse(s: &str) -> Option<RunOwner> {
        let mut parts = s.rsplitn(4, ':');
        let started = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let boot = parts.next()?.to_owned();
        let host = parts.next()?.to_owned();
        Some(RunOwner {
            host,
            boot,
            pid,
            started,
        })
    }

    /// For people: "PID 123 on host".
    pub fn describe(&self) -> String {
        format!("PID {} on {}", self.pid, self.host)
    }

    /// Whether `self` (a recorded owner) is certainly gone, as seen from `here` (this process).
    /// Only a process on the same host can tell; another host's run is judged by its heartbeat.
    pub fn is_certainly_gone(&self, here: &RunOwner) -> bool {
        if self.host != here.host || self.host.is_empty() {
            return false;
        }
        if !self.boot.is_empty() && !here.boot.is_empty() && self.boot != here.boot {
            // The machine rebooted since: every process of that boot is gone.
            return true;
        }
        match process_start(self.pid) {
            None => true,
            Some(started) => self.started != 0 && started != self.started,
        }
    }
}

impl fmt::Display for RunOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.host, self.boot, self.pid, self.started
        )
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().replace(':', "_"))
        .unwrap_or_default()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().replace(':', "_"))
        .unwrap_or_default()
}

/// Field 22 of `/proc/PID/stat`: the start time. `None` when there is no such process (or no
/// procfs, where nothing can be told and the heartbeat rule applies).
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: start after it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_round_trips() {
        let me = RunOwner::current();
        let again = RunOwner::parse(&me.to_string()).unwrap();
        assert_eq!(again, me);
        assert!(!me.is_certainly_gone(&me));
    }

    #[test]
    fn a_finished_process_is_gone_and_another_host_is_not_judged() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let started = process_start(pid).unwrap_or(1);
        child.wait().unwrap();
        let me = RunOwner::current();
        let dead = RunOwner {
            pid,
            started,
            ..me.clone()
        };
        assert!(dead.is_certainly_gone(&me));
        let elsewhere = RunOwner {
            host: "another-host".into(),
            ..dead
        };
        assert!(!elsewhere.is_certainly_gone(&me));
        assert!(RunOwner::parse("garbage").is_none());
    }
}
