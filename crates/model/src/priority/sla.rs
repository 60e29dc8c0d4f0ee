//! SLA clocks: when a finding is due, and whether it is on track.
//!
//! The clock starts when the exposure began, Microsoft's first-seen time of the finding, not when
//! Rampart first read it. When the decision later becomes more urgent (an exploit appears), the
//! finding is due at the earlier of its old due date and the change time plus the new decision's
//! SLA. Rampart never moves a due date later by itself: a less urgent decision keeps the old date
//! (accept the risk with an exception if it can now wait). An exception pauses the clock: when it
//! ends, the finding has as much time left as it had when it was accepted.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::decision::Decision;
use super::factors::Factors;
use super::score::Priority;

/// Days allowed per decision. Always at least one day, at most ten years, and never more for a
/// more urgent decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SlaDays", into = "SlaDays")]
pub struct SlaPolicy(SlaDays);

/// The days of an [`SlaPolicy`] as written in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaDays {
    pub immediate: u32,
    pub out_of_cycle: u32,
    pub scheduled: u32,
    pub defer: u32,
}

/// Why an SLA configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlaPolicyError {
    #[error(
        "the SLA for {decision} findings is {days} days: use a whole number of days from 1 to {max}"
    )]
    OutOfRange {
        decision: Decision,
        days: u32,
        max: u32,
    },
    #[error(
        "the SLA for {urgent} findings ({urgent_days} days) is longer than for {calmer} findings ({calmer_days} days): a more urgent decision must not get more time"
    )]
    NotOrdered {
        urgent: Decision,
        urgent_days: u32,
        calmer: Decision,
        calmer_days: u32,
    },
}

impl SlaDays {
    fn get(&self, decision: Decision) -> u32 {
        match decision {
            Decision::Immediate => self.immediate,
            Decision::OutOfCycle => self.out_of_cycle,
            Decision::Scheduled => self.scheduled,
            Decision::Defer => self.defer,
        }
    }
}

impl SlaPolicy {
    pub const MAX_DAYS: u32 = 3650;

    pub fn new(days: SlaDays) -> Result<SlaPolicy, SlaPolicyError> {
        for decision in Decision::ALL {
            let d = days.get(decision);
            if !(1..=Self::MAX_DAYS).contains(&d) {
                return Err(SlaPolicyError::OutOfRange {
                    decision,
                    days: d,
                    max: Self::MAX_DAYS,
                });
            }
        }
        for pair in Decision::ALL.windows(2) {
            let (calmer, urgent) = (pair[0], pair[1]);
            if days.get(urgent) > days.get(calmer) {
                return Err(SlaPolicyError::NotOrdered {
                    urgent,
                    urgent_days: days.get(urgent),
                    calmer,
                    calmer_days: days.get(calmer),
                });
            }
        }
        Ok(SlaPolicy(days))
    }

    pub fn days(&self, decision: Decision) -> u32 {
        self.0.get(decision)
    }

    /// The time a finding with this decision is given.
    pub fn window(&self, decision: Decision) -> TimeDelta {
        TimeDelta::days(i64::from(self.days(decision)))
    }

    /// When a finding whose clock started at `clock_start` is due under `decision`.
    pub fn due_at(&self, decision: Decision, clock_start: DateTime<Utc>) -> DateTime<Utc> {
        clock_start + self.window(decision)
    }

    /// The due date after the decision changed to `new_decision` at `changed_at`: the earlier of
    /// the old due date and `changed_at` plus the new decision's SLA. For a more urgent decision
    /// that is the escalation rule; for the same or a calmer one it keeps the old date.
    pub fn due_after_change(
        &self,
        old_due: DateTime<Utc>,
        new_decision: Decision,
        changed_at: DateTime<Utc>,
    ) -> DateTime<Utc> {
        old_due.min(changed_at + self.window(new_decision))
    }
}

impl Default for SlaPolicy {
    /// Immediate 2 days, out-of-cycle 7, scheduled 30, defer 90.
    fn default() -> Self {
        SlaPolicy(SlaDays {
            immediate: 2,
            out_of_cycle: 7,
            scheduled: 30,
            defer: 90,
        })
    }
}

impl TryFrom<SlaDays> for SlaPolicy {
    type Error = SlaPolicyError;
    fn try_from(days: SlaDays) -> Result<Self, Self::Error> {
        SlaPolicy::new(days)
    }
}

impl From<SlaPolicy> for SlaDays {
    fn from(policy: SlaPolicy) -> Self {
        policy.0
    }
}

/// When a finding's clock starts: Microsoft's first-seen time, or when Rampart first read the
/// finding if Microsoft gave none, whichever is earlier (a first-seen time in the future is
/// clock skew, and the exposure cannot have begun after Rampart saw it).
pub fn clock_start(first_seen: Option<DateTime<Utc>>, first_read: DateTime<Utc>) -> DateTime<Utc> {
    first_seen.map_or(first_read, |seen| seen.min(first_read))
}

/// Accepted risk: the finding's clock is paused from `accepted_at` until `expires_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exception {
    pub accepted_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl Exception {
    pub fn in_force(&self, now: DateTime<Utc>) -> bool {
        self.accepted_at <= now && now < self.expires_at
    }

    /// The due date once the exception has ended: moved by the time the clock was paused.
    pub fn resumed_due(&self, due: DateTime<Utc>) -> DateTime<Utc> {
        due + (self.expires_at - self.accepted_at).max(TimeDelta::zero())
    }
}

/// Where a finding stands against its SLA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaStatus {
    OnTrack,
    /// At most a fifth of the finding's time is left.
    DueSoon,
    Overdue,
    /// An exception is in force.
    Accepted,
    /// The finding is fixed: nothing is pending.
    Closed,
}

impl SlaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SlaStatus::OnTrack => "on_track",
            SlaStatus::DueSoon => "due_soon",
            SlaStatus::Overdue => "overdue",
            SlaStatus::Accepted => "accepted",
            SlaStatus::Closed => "closed",
        }
    }
}

/// A finding's SLA status at `now`. `due` is its due date without any pause; `exception` is the
/// latest exception on it, if any. Once the exception has expired the clock runs again, with the
/// due date moved by the paused time. *Due soon* means at most a fifth of the time allowed
/// (`due − clock_start`) is left.
pub fn sla_status(
    now: DateTime<Utc>,
    due: DateTime<Utc>,
    clock_start: DateTime<Utc>,
    exception: Option<&Exception>,
    closed: bool,
) -> SlaStatus {
    if closed {
        return SlaStatus::Closed;
    }
    // The time the finding is given does not grow with a pause: only its end moves.
    let allowed = due - clock_start;
    let due = match exception {
        Some(e) if e.in_force(now) => return SlaStatus::Accepted,
        Some(e) if now >= e.expires_at => e.resumed_due(due),
        _ => due,
    };
    if now >= due {
        return SlaStatus::Overdue;
    }
    let left = due - now;
    if left * 5 <= allowed {
        SlaStatus::DueSoon
    } else {
        SlaStatus::OnTrack
    }
}

/// Everything Rampart stores about an open finding's urgency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessment {
    pub priority: Priority,
    pub due_at: DateTime<Utc>,
}

impl Assessment {
    /// The first assessment of a finding whose clock started at `clock_start`.
    pub fn new(factors: &Factors, policy: &SlaPolicy, clock_start: DateTime<Utc>) -> Assessment {
        let priority = factors.priority();
        Assessment {
            due_at: policy.due_at(priority.decision, clock_start),
            priority,
        }
    }

    /// The assessment after the factors changed at `at`: a new decision and priority, and a due
    /// date that only ever moves earlier.
    pub fn reassess(&self, factors: &Factors, policy: &SlaPolicy, at: DateTime<Utc>) -> Assessment {
        let priority = factors.priority();
        Assessment {
            due_at: policy.due_after_change(self.due_at, priority.decision, at),
            priority,
        }
    }
}
