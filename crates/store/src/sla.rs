//! SLA settings, criticality rules and SLA reporting (issue 14; docs/prioritisation.md, "SLA
//! settings", "Criticality rules" and "SLA reports"): the types the store reads and writes, and
//! the report and burn-down built from its rows. The SQL is `crate::sla_sql`.

use rampart_model::RunId;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use rampart_model::IntegrationId;
use rampart_model::priority::{CriticalityRule, Decision, SlaDays, SlaPolicy};

/// The installation's SLA days, and who last changed them (none: still the defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlaSettings {
    pub days: SlaDays,
    pub updated_by: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Default for SlaSettings {
    fn default() -> Self {
        SlaSettings {
            days: SlaPolicy::default().into(),
            updated_by: None,
            updated_at: None,
        }
    }
}

/// An integration's own SLA days, replacing the installation's for its findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntegrationSla {
    pub integration_id: IntegrationId,
    pub days: SlaDays,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

/// A criticality rule as stored: in order, with who last saved the list and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredRule {
    #[serde(flatten)]
    pub rule: CriticalityRule,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

/// Rules an installation may keep: enough for any organisation's tags and groups, few enough
/// that every asset is checked against all of them cheaply.
pub const MAX_RULES: usize = 500;
/// The longest rule name or matched value, in characters.
pub const MAX_RULE_TEXT: usize = 200;

/// One row of a run's snapshot: the integration's open findings of one decision and severity
/// (0: none given) at the end of the run's assessment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlaSnapshot {
    pub integration_id: IntegrationId,
    pub run_id: RunId,
    pub taken_at: DateTime<Utc>,
    /// None: the run left no open finding (a row of zeros marks the snapshot).
    pub decision: Option<Decision>,
    pub severity: u8,
    pub open: u64,
    pub overdue: u64,
    pub due_soon: u64,
    pub accepted: u64,
}

/// Findings fixed in a period with the same integration, severity, decision (when they were
/// fixed) and time to fix in whole hours (none: the finding was never assessed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedGroup {
    pub integration_id: IntegrationId,
    pub severity: u8,
    pub decision: Option<Decision>,
    pub hours: Option<i64>,
    pub fixed: u64,
    /// Of `fixed`, those that had a due date, and those fixed by it.
    pub with_due: u64,
    pub on_time: u64,
}

/// The SLA numbers of one line of the report (an integration, a severity, a decision, or all).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SlaLine {
    /// Open findings assessed (accepted ones included).
    pub open: u64,
    pub on_track: u64,
    pub due_soon: u64,
    pub overdue: u64,
    /// Open findings an exception covers: not on the clock.
    pub accepted: u64,
    /// Findings fixed in the period.
    pub fixed: u64,
    /// Of those with a due date, fixed by it (and how many had one).
    pub fixed_on_time: u64,
    pub fixed_with_due: u64,
    /// Time to fix (fixed time − clock start), in hours, nearest rank.
    pub median_hours_to_fix: Option<i64>,
    pub p90_hours_to_fix: Option<i64>,
    /// `fixed_on_time` as a percentage of `fixed_with_due`, one decimal.
    pub compliance_percent: Option<f64>,
    #[serde(skip)]
    hours: BTreeMap<i64, u64>,
}

impl SlaLine {
    fn add_open(&mut self, s: &SlaSnapshot) {
        self.open += s.open;
        self.overdue += s.overdue;
        self.due_soon += s.due_soon;
        self.accepted += s.accepted;
        self.on_track += s.open.saturating_sub(s.accepted + s.overdue + s.due_soon);
    }

    fn add_fixed(&mut self, g: &FixedGroup) {
        self.fixed += g.fixed;
        self.fixed_on_time += g.on_time;
        self.fixed_with_due += g.with_due;
        if let Some(h) = g.hours {
            *self.hours.entry(h.max(0)).or_default() += g.fixed;
        }
    }

    fn finish(&mut self) {
        self.median_hours_to_fix = nearest_rank(&self.hours, 50);
        self.p90_hours_to_fix = nearest_rank(&self.hours, 90);
        self.compliance_percent = (self.fixed_with_due > 0).then(|| {
            (self.fixed_on_time as f64 * 1000.0 / self.fixed_with_due as f64).round() / 10.0
        });
    }
}

/// The `percent`th percentile of a histogram by the nearest-rank method: the smallest value with
/// at least `percent` % of the observations at or below it.
fn nearest_rank(hist: &BTreeMap<i64, u64>, percent: u64) -> Option<i64> {
    let n: u64 = hist.values().sum();
    if n == 0 {
        return None;
    }
    let rank = (n * percent).div_ceil(100).max(1);
    let mut seen = 0;
    for (value, count) in hist {
        seen += count;
        if seen >= rank {
            return Some(*value);
        }
    }
    None
}

/// The SLA report: open findings as of each integration's last run, fixed ones in the period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SlaReport {
    pub total: SlaLine,
    pub by_integration: Vec<(IntegrationId, SlaLine)>,
    /// By severity, 0 when none was given; 4 is critical.
    pub by_severity: Vec<(u8, SlaLine)>,
    pub by_decision: Vec<(Decision, SlaLine)>,
    /// The time of each integration's latest snapshot, which the open counts are as of.
    pub as_of: Vec<(IntegrationId, DateTime<Utc>)>,
}

/// The lines of a map, each finished, in key order.
fn finished<K>(m: BTreeMap<K, SlaLine>) -> Vec<(K, SlaLine)> {
    m.into_iter()
        .map(|(k, mut l)| {
            l.finish();
            (k, l)
        })
        .collect()
}

impl SlaReport {
    /// `latest`: the rows of each integration's latest snapshot; `fixed`: the period's fixes.
    pub fn build(latest: &[SlaSnapshot], fixed: &[FixedGroup]) -> SlaReport {
        let mut total = SlaLine::default();
        let mut by_integration: BTreeMap<IntegrationId, SlaLine> = BTreeMap::new();
        let mut by_severity: BTreeMap<u8, SlaLine> = BTreeMap::new();
        let mut by_decision: BTreeMap<Decision, SlaLine> = BTreeMap::new();
        let mut as_of: BTreeMap<IntegrationId, DateTime<Utc>> = BTreeMap::new();
        for s in latest {
            as_of.insert(s.integration_id, s.taken_at);
            total.add_open(s);
            by_integration
                .entry(s.integration_id)
                .or_default()
                .add_open(s);
            by_severity.entry(s.severity).or_default().add_open(s);
            if let Some(d) = s.decision {
                by_decision.entry(d).or_default().add_open(s);
            }
        }
        for g in fixed {
            total.add_fixed(g);
            by_integration
                .entry(g.integration_id)
                .or_default()
                .add_fixed(g);
            by_severity.entry(g.severity).or_default().add_fixed(g);
            if let Some(d) = g.decision {
                by_decision.entry(d).or_default().add_fixed(g);
            }
        }
        total.finish();
        let mut by_severity = finished(by_severity);
        by_severity.reverse();
        let mut by_decision = finished(by_decision);
        by_decision.reverse();
        SlaReport {
            total,
            by_integration: finished(by_integration),
            by_severity,
            by_decision,
            as_of: as_of.into_iter().collect(),
        }
    }
}

/// One point of the burn-down: the open findings of each decision at `at`, summed over the
/// integrations in it, each counted as of its latest snapshot at or before `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BurndownPoint {
    pub at: DateTime<Utc>,
    /// Open findings per decision, most urgent first: immediate, out-of-cycle, scheduled, defer.
    pub open: [u64; 4],
    pub overdue: u64,
    pub accepted: u64,
}

/// The index of a decision in [`BurndownPoint::open`].
pub fn burndown_index(d: Decision) -> usize {
    match d {
        Decision::Immediate => 0,
        Decision::OutOfCycle => 1,
        Decision::Scheduled => 2,
        Decision::Defer => 3,
    }
}

/// The burn-down from snapshot rows (any order): one point per run.
pub fn burndown(rows: &[SlaSnapshot]) -> Vec<BurndownPoint> {
    // Each run's totals, in time order.
    let mut runs: BTreeMap<(DateTime<Utc>, i64), (IntegrationId, BurndownPoint)> = BTreeMap::new();
    for r in rows {
        let (_, p) = runs.entry((r.taken_at, r.run_id.get())).or_insert_with(|| {
            (
                r.integration_id,
                BurndownPoint {
                    at: r.taken_at,
                    open: [0; 4],
                    overdue: 0,
                    accepted: 0,
                },
            )
        });
        if let Some(d) = r.decision {
            p.open[burndown_index(d)] += r.open;
        }
        p.overdue += r.overdue;
        p.accepted += r.accepted;
    }
    let mut current: BTreeMap<IntegrationId, BurndownPoint> = BTreeMap::new();
    let mut points: Vec<BurndownPoint> = Vec::new();
    for ((at, _), (integration, p)) in runs {
        current.insert(integration, p);
        let mut sum = BurndownPoint {
            at,
            open: [0; 4],
            overdue: 0,
            accepted: 0,
        };
        for c in current.values() {
            for (s, o) in sum.open.iter_mut().zip(c.open) {
                *s += o;
            }
            sum.overdue += c.overdue;
            sum.accepted += c.accepted;
        }
        // Runs of several integrations at one instant make one point.
        if points.last().is_some_and(|l| l.at == at) {
            points.pop();
        }
        points.push(sum);
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + h * 3600, 0)
            .single()
            .unwrap_or_default()
    }

    fn snap(i: i64, run: RunId, at: i64, d: Decision, open: u64) -> SlaSnapshot {
        SlaSnapshot {
            integration_id: IntegrationId(i),
            run_id: run,
            taken_at: t(at),
            decision: Some(d),
            severity: 3,
            open,
            overdue: 1,
            due_soon: 0,
            accepted: 0,
        }
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let hist: BTreeMap<i64, u64> = [(1, 1), (2, 1), (3, 1), (10, 1)].into_iter().collect();
        assert_eq!(nearest_rank(&hist, 50), Some(2));
        assert_eq!(nearest_rank(&hist, 90), Some(10));
        assert_eq!(nearest_rank(&BTreeMap::new(), 50), None);
    }

    #[test]
    fn burndown_sums_each_integrations_latest_run() {
        let rows = [
            snap(1, RunId(10), 0, Decision::Immediate, 5),
            snap(1, RunId(10), 0, Decision::Defer, 2),
            snap(2, RunId(11), 1, Decision::Immediate, 3),
            snap(1, RunId(12), 2, Decision::Immediate, 1),
        ];
        let points = burndown(&rows);
        let open: Vec<[u64; 4]> = points.iter().map(|p| p.open).collect();
        assert_eq!(open, vec![[5, 0, 0, 2], [8, 0, 0, 2], [4, 0, 0, 0]]);
        assert_eq!(points[2].overdue, 2);
    }
}
