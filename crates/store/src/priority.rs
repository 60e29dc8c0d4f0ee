//! Stored prioritisation (issue 14): what the use case in `rampart-sync` reads to assess open
//! findings, and what it writes back. How the numbers are made is `rampart_model::priority`;
//! how they are stored is in docs/prioritisation.md ("How it is stored and kept current").

use chrono::{DateTime, Utc};
use rampart_model::RunId;
use serde::Serialize;

use rampart_model::priority::{Decision, FactorContribution, FactorName};
use rampart_model::{CveId, Finding};

use crate::common::{RowExt, corrupt, micros};
use crate::db::Dialect;
use crate::error::Result;
use crate::types::Backend;

/// What a finding's stored assessment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredAssessment {
    pub decision: Decision,
    /// 0–100.
    pub priority: u8,
    pub due_at: DateTime<Utc>,
    pub clock_start: DateTime<Utc>,
    /// The `priority_explanations` row saying why.
    pub explanation_id: i64,
}

/// An open finding as the prioritisation reads it: its own inputs, and what is stored now.
#[derive(Debug, Clone, PartialEq)]
pub struct AssessmentInput {
    pub finding_id: i64,
    pub asset_id: i64,
    pub cve_id: CveId,
    pub cvss: Option<f64>,
    pub exploitability: Option<String>,
    /// The recommendation the finding came from (Defender for Cloud: its assessment id), whose
    /// risk level is an input; Defender for Endpoint's reference otherwise.
    pub recommendation_reference: Option<String>,
    /// Microsoft's first-seen time, where the SLA clock starts.
    pub first_seen: Option<DateTime<Utc>>,
    /// When Rampart first read the finding (the clock's start without a first-seen time).
    pub first_observed: DateTime<Utc>,
    /// `None`: not assessed yet, or reopened since it was fixed.
    pub stored: Option<StoredAssessment>,
}

/// Which open findings of an integration an assessment reads.
#[derive(Debug, Clone, Copy)]
pub enum AssessScope<'a> {
    /// All of them.
    All,
    /// Those of these CVEs (the CVEs a KEV refresh changed).
    Cves(&'a [CveId]),
    /// Those whose inputs may have changed since the integration's previous assessment at
    /// `since`: not assessed yet (new, reopened), their own content changed by run `run_id`
    /// (CVSS, exploitability), their asset changed by it (tags, device value, exposure level),
    /// or their CVE's catalogue entry changed after `since`.
    ChangedBy { run_id: RunId, since: DateTime<Utc> },
}

/// A new assessment of one open finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssessmentWrite {
    pub finding_id: i64,
    pub assessment: StoredAssessment,
}

/// One "why this priority": the contributions in a compact text form under a digest of that
/// text, so that findings with the same factors share one row.
///
/// The form is one line per contribution, `factor=value:weight:points` (a newline in a value is
/// stored as a space). A first load of 2,000 devices stores ~45,000 distinct explanations (each
/// CVE's EPSS and CVSS on each kind of asset): as JSON objects they took 44 MB, more than the
/// findings themselves, and writing them cost as much as writing the findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub id: i64,
    pub contributions: String,
}

impl Explanation {
    /// The explanation of these contributions; `digest` turns the text into the row's id (the
    /// caller's hash: the store does not choose one).
    pub fn new(contributions: &[FactorContribution], digest: impl Fn(&str) -> i64) -> Self {
        let mut text = String::with_capacity(contributions.len() * 32);
        for c in contributions {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(c.factor.as_str());
            text.push('=');
            text.extend(c.value.chars().map(|ch| if ch == '\n' { ' ' } else { ch }));
            text.push(':');
            text.push_str(&c.weight.to_string());
            text.push(':');
            text.push_str(&c.points.to_string());
        }
        Explanation {
            id: digest(&text),
            contributions: text,
        }
    }
}

/// Reads a stored explanation back (the compact form, or the JSON that rows stored before it
/// use); a row that does not parse is reported as corrupt.
pub fn parse_explanation(text: &str) -> Result<Vec<FactorContribution>> {
    if text.starts_with('[') {
        return serde_json::from_str(text).map_err(|_| corrupt("priority explanation", text));
    }
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split('\n')
        .map(|line| parse_contribution(line).ok_or_else(|| corrupt("priority explanation", text)))
        .collect()
}

/// One `factor=value:weight:points` line.
fn parse_contribution(line: &str) -> Option<FactorContribution> {
    let (factor, rest) = line.split_once('=')?;
    let (rest, points) = rest.rsplit_once(':')?;
    let (value, weight) = rest.rsplit_once(':')?;
    Some(FactorContribution {
        factor: FactorName::parse(factor)?,
        value: value.to_owned(),
        weight: weight.parse().ok()?,
        points: points.parse().ok()?,
    })
}

/// Assesses findings as the bulk path first writes them, so that a first load writes each row
/// once, with its decision, priority and due date, instead of inserting it bare and updating it
/// in a second pass (which doubled the rows written: docs/prioritisation.md, "How it is stored
/// and kept current"). Implemented by the use case in `rampart-sync`; the store only asks.
///
/// Only rows the upsert *inserts* take these values: a row that is already stored keeps its
/// assessment, and the run's assessment afterwards decides whether it changes (escalation needs
/// the stored due date, and leaving the columns out of the upsert's SET list keeps an unchanged
/// re-read from rewriting index entries).
///
/// The explanations the assessments refer to are not stored with the rows: the assessor keeps
/// them and its user stores them once, in id order, when the load is done. Their ids are
/// content hashes, so batch by batch each one landed on a random page of the table: at 20,000
/// devices the ~93,000 explanations (40 MB) wrote 724 MB of write-ahead log that way, against
/// 35 MB in id order at the end.
pub trait InsertAssessor: Send + Sync {
    /// The assessment of `finding` if it is new, first read at the start of the run that writes
    /// it (which the assessor knows); `None` leaves it to the run's assessment (its asset is not
    /// known yet, say).
    fn assess(&self, finding: &Finding) -> Option<StoredAssessment>;
}

/// The columns [`decode_input`] reads.
pub(crate) const INPUT_COLUMNS: &str = "f.id, f.asset_id, f.cve_id, f.cvss, f.exploitability, \
     f.recommendation_reference, f.first_seen, f.first_observed, f.decision, f.priority, f.due_at, f.clock_start, f.explanation_id";

pub(crate) fn decode_stored(r: &impl RowExt) -> Result<Option<StoredAssessment>> {
    let (Some(decision), Some(priority), Some(due_at), Some(clock_start), Some(explanation_id)) = (
        r.opt_text("decision")?,
        r.opt_f64("priority")?,
        r.opt_ts("due_at")?,
        r.opt_ts("clock_start")?,
        r.opt_int("explanation_id")?,
    ) else {
        return Ok(None);
    };
    Ok(Some(StoredAssessment {
        decision: Decision::parse(&decision).ok_or_else(|| corrupt("decision", &decision))?,
        priority: priority.clamp(0.0, 100.0) as u8,
        due_at,
        clock_start,
        explanation_id,
    }))
}

pub(crate) fn decode_input(r: &impl RowExt) -> Result<AssessmentInput> {
    let cve = r.text("cve_id")?;
    Ok(AssessmentInput {
        finding_id: r.int("id")?,
        asset_id: r.int("asset_id")?,
        cve_id: cve.parse().map_err(|_| corrupt("CVE id", &cve))?,
        cvss: r.opt_f64("cvss")?,
        exploitability: r.opt_text("exploitability")?,
        recommendation_reference: r.opt_text("recommendation_reference")?,
        first_seen: r.opt_ts("first_seen")?,
        first_observed: r.ts("first_observed")?,
        stored: decode_stored(r)?,
    })
}

/// A timestamp in a JSON row: microseconds on SQLite (as it stores them), RFC 3339 on PostgreSQL.
#[derive(Serialize)]
#[serde(untagged)]
enum JsonTime {
    Micros(i64),
    Text(String),
}

fn json_time(backend: Backend, t: DateTime<Utc>) -> JsonTime {
    match backend {
        Backend::Sqlite => JsonTime::Micros(micros(t)),
        Backend::Postgres => JsonTime::Text(t.to_rfc3339()),
    }
}

#[derive(Serialize)]
struct WriteRow<'a> {
    id: i64,
    d: &'a str,
    p: f64,
    due: JsonTime,
    cs: JsonTime,
    e: i64,
}

/// The writes as one JSON array for [`write_sql`].
pub(crate) fn writes_json(backend: Backend, writes: &[AssessmentWrite]) -> String {
    let rows: Vec<WriteRow<'_>> = writes
        .iter()
        .map(|w| WriteRow {
            id: w.finding_id,
            d: w.assessment.decision.as_str(),
            p: f64::from(w.assessment.priority),
            due: json_time(backend, w.assessment.due_at),
            cs: json_time(backend, w.assessment.clock_start),
            e: w.assessment.explanation_id,
        })
        .collect();
    serde_json::to_string(&rows).unwrap_or_else(|_| "[]".to_owned())
}

#[derive(Serialize)]
struct ExplanationRow<'a> {
    id: i64,
    c: &'a str,
}

pub(crate) fn explanations_json(explanations: &[Explanation]) -> String {
    let rows: Vec<ExplanationRow<'_>> = explanations
        .iter()
        .map(|e| ExplanationRow {
            id: e.id,
            c: &e.contributions,
        })
        .collect();
    serde_json::to_string(&rows).unwrap_or_else(|_| "[]".to_owned())
}

/// Stores explanations not stored yet: `$1` is [`explanations_json`].
pub(crate) fn explanations_sql(backend: Backend) -> &'static str {
    match backend {
        // `WHERE true` lets SQLite tell the upsert's ON CONFLICT from a join's ON.
        Backend::Sqlite => {
            "INSERT INTO priority_explanations (id, contributions) \
             SELECT json_extract(value, '$.id'), json_extract(value, '$.c') FROM json_each($1) WHERE true \
             ON CONFLICT (id) DO NOTHING"
        }
        Backend::Postgres => {
            // In id order: batches written at the same time meet shared rows in the same order.
            "INSERT INTO priority_explanations (id, contributions) \
             SELECT id, c FROM jsonb_to_recordset($1::jsonb) AS x(id bigint, c text) ORDER BY id \
             ON CONFLICT (id) DO NOTHING"
        }
    }
}

/// Writes assessments of findings that are still open: `$1` is [`writes_json`], `$2` the time
/// of the change (the finding's change marker for `changed_since`).
pub(crate) fn write_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "UPDATE findings SET decision = json_extract(u.value, '$.d'), \
             priority = json_extract(u.value, '$.p'), due_at = json_extract(u.value, '$.due'), \
             clock_start = json_extract(u.value, '$.cs'), explanation_id = json_extract(u.value, '$.e'), \
             assessed_at = $2 \
             FROM json_each($1) AS u WHERE findings.id = json_extract(u.value, '$.id') AND findings.status = 'open'"
        }
        Backend::Postgres => {
            "UPDATE findings AS f SET decision = u.d, priority = u.p, due_at = u.due, \
             clock_start = u.cs, explanation_id = u.e, assessed_at = $2 \
             FROM jsonb_to_recordset($1::jsonb) AS u(id bigint, d text, p float8, due timestamptz, cs timestamptz, e bigint) \
             WHERE f.id = u.id AND f.status = 'open'"
        }
    }
}

/// Marks stale the remediation plan's roll-up (crate::fix_plan) of every integration with a
/// finding among the writes `$1` ([`writes_json`]); `$2` is true.
pub(crate) fn mark_plans_stale_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "UPDATE fix_plan_builds SET stale = $2 WHERE integration_id IN (SELECT f.integration_id \
             FROM findings f WHERE f.id IN (SELECT json_extract(u.value, '$.id') FROM json_each($1) AS u))"
        }
        Backend::Postgres => {
            "UPDATE fix_plan_builds SET stale = $2 WHERE integration_id IN (SELECT f.integration_id \
             FROM findings f WHERE f.id IN (SELECT u.id FROM jsonb_to_recordset($1::jsonb) AS u(id bigint)))"
        }
    }
}

/// Moves the `findings_generation` of the integrations whose findings `write_sql` just wrote
/// (`$1` the same rows): a first load's tally of its rows (`crate::first_load_tally`) no longer
/// stands for them.
pub(crate) fn findings_rewritten_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "UPDATE integrations SET findings_generation = findings_generation + 1 WHERE id IN (SELECT f.integration_id \
             FROM findings f WHERE f.id IN (SELECT json_extract(u.value, '$.id') FROM json_each($1) AS u))"
        }
        Backend::Postgres => {
            "UPDATE integrations SET findings_generation = findings_generation + 1 WHERE id IN (SELECT f.integration_id \
             FROM findings f WHERE f.id IN (SELECT u.id FROM jsonb_to_recordset($1::jsonb) AS u(id bigint)))"
        }
    }
}

/// Open findings that need attention now, for the dashboard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrgentCounts {
    /// Open findings whose decision is `immediate`.
    pub immediate: u64,
    /// Open findings past their due date.
    pub overdue: u64,
}

/// The lowest priority of an `immediate` finding: decisions are bands of priorities, and
/// `immediate` is the top one (75–100, docs/prioritisation.md).
pub(crate) const IMMEDIATE_FROM: u8 = 75;

/// SQL over `f`: open, `immediate`, read from findings_by_priority.
fn immediate_sql() -> String {
    format!(
        "f.status = 'open' AND COALESCE(f.priority, -1) >= {IMMEDIATE_FROM} AND f.decision = 'immediate'"
    )
}

/// SQL over `f`: open and due by `$1` (now), read from findings_open_by_due.
const DUE_BY_NOW_SQL: &str = "f.status = 'open' AND f.due_at <= $1";

/// Counts [`UrgentCounts`] at `$1` (now) as if no exception existed: two index ranges. `scope`
/// is appended to each count's conditions (a visibility's, or nothing).
pub(crate) fn urgent_counts_before_exceptions_sql(scope: &str) -> String {
    format!(
        "SELECT (SELECT count(*) FROM findings f WHERE {}{scope}) AS immediate, \
         (SELECT count(*) FROM findings f WHERE {DUE_BY_NOW_SQL}{scope}) AS overdue",
        immediate_sql()
    )
}

/// Counts [`UrgentCounts`] at `$1` (now) from two index ranges: immediate findings are the top
/// band of priorities, read from findings_by_priority; overdue ones from findings_open_by_due.
/// Then takes away the findings exceptions change (crate::exceptions): those accepted now, and,
/// of the overdue, those whose due date a pause moved past now; only the few findings
/// exceptions cover are checked for it. `scope` is appended to every count's conditions (a
/// visibility's, or nothing).
pub(crate) fn urgent_counts_sql(d: Dialect, scope: &str) -> String {
    let covered = crate::exceptions::covered_sql(d, "$1");
    let accepted = crate::exceptions::in_force_sql("$1");
    let due = crate::exceptions::effective_due_sql(d, "$1");
    let immediate = immediate_sql();
    format!(
        "SELECT \
         (SELECT count(*) FROM findings f WHERE {immediate}{scope}) \
         - (SELECT count(*) FROM findings f WHERE f.id IN ({covered}) AND {immediate} AND {accepted}{scope}) \
         AS immediate, \
         (SELECT count(*) FROM findings f WHERE {DUE_BY_NOW_SQL}{scope}) \
         - (SELECT count(*) FROM findings f WHERE f.id IN ({covered}) AND {DUE_BY_NOW_SQL} \
         AND ({accepted} OR {due} > $1){scope}) AS overdue"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contribution(
        factor: FactorName,
        value: &str,
        weight: u32,
        points: u8,
    ) -> FactorContribution {
        FactorContribution {
            factor,
            value: value.to_owned(),
            weight,
            points,
        }
    }

    #[test]
    fn explanations_read_back_as_written() {
        let contributions = vec![
            contribution(FactorName::Decision, "out-of-cycle", 0, 50),
            contribution(FactorName::Exploitation, "active (kev): a=b:c", 2, 4),
            contribution(
                FactorName::CloudRisk,
                "unknown, counted as between medium and high",
                1,
                1,
            ),
        ];
        let explanation = Explanation::new(&contributions, |t| t.len() as i64);
        assert_eq!(
            parse_explanation(&explanation.contributions).unwrap(),
            contributions
        );
        // A newline inside a value cannot split the record.
        let odd = vec![contribution(FactorName::Epss, "two\nlines", 3, 1)];
        let read = parse_explanation(&Explanation::new(&odd, |_| 0).contributions).unwrap();
        assert_eq!(read[0].value, "two lines");
    }

    #[test]
    fn explanations_stored_as_json_still_read() {
        let json = r#"[{"factor":"cvss","value":"9.8","weight":2,"points":3}]"#;
        assert_eq!(
            parse_explanation(json).unwrap(),
            vec![contribution(FactorName::Cvss, "9.8", 2, 3)]
        );
        assert!(parse_explanation("cvss=9.8").is_err());
        assert!(parse_explanation("nonsense=1:2:3").is_err());
    }
}
