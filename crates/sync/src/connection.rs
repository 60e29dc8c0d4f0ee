//! `integration test`: each step of a connection, in order, with ✓/✗ and the fix for a failure.

use std::fmt;

use rampart_microsoft::MdeClient;
use rampart_microsoft::TokenError;

use crate::error::SyncError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Passed,
    /// It works, but something will be missing (e.g. a Defender plan that produces vulnerability
    /// data is off). Does not fail the test.
    Warning,
    Failed,
    /// Not tried because an earlier step failed.
    Skipped,
}

/// One step of a connection test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: &'static str,
    pub outcome: StepOutcome,
    /// What was found (`token for app … in tenant …, valid 59 min`), or what went wrong.
    pub detail: String,
    /// What to do about a failure.
    pub fix: Option<String>,
}

/// The steps of a connection test; `passed()` when no step failed or was skipped (warnings pass).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionReport {
    pub steps: Vec<Step>,
}

/// The Endpoint steps, in order.
pub const ENDPOINT_STEPS: [&str; 5] = [
    "reach the login host",
    "get a token",
    "check roles",
    "read one device",
    "read one vulnerability row",
];

impl ConnectionReport {
    pub fn passed(&self) -> bool {
        !self.steps.is_empty()
            && self
                .steps
                .iter()
                .all(|s| matches!(s.outcome, StepOutcome::Passed | StepOutcome::Warning))
    }

    /// The step called `name`, if the test got that far.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// The integration could not even be set up (secret undecryptable, bad URL override).
    pub(crate) fn setup_failed(error: &SyncError) -> Self {
        Self {
            steps: vec![Step {
                name: "prepare the connection",
                outcome: StepOutcome::Failed,
                detail: error.to_string(),
                fix: None,
            }],
        }
    }

    pub(crate) fn push(
        &mut self,
        name: &'static str,
        result: Result<String, (String, Option<String>)>,
    ) {
        if self.failed_before() {
            self.steps.push(Step {
                name,
                outcome: StepOutcome::Skipped,
                detail: "not tried: an earlier step failed".into(),
                fix: None,
            });
        } else {
            self.record(name, result);
        }
    }
}

impl ConnectionReport {
    pub(crate) fn new() -> Self {
        Self { steps: Vec::new() }
    }

    /// A step that was run: its own outcome, whatever happened before (an earlier failure on one
    /// subscription does not make a read that was made "not tried").
    pub(crate) fn record(
        &mut self,
        name: &'static str,
        result: Result<String, (String, Option<String>)>,
    ) {
        self.steps.push(match result {
            Ok(detail) => Step {
                name,
                outcome: StepOutcome::Passed,
                detail,
                fix: None,
            },
            Err((detail, fix)) => Step {
                name,
                outcome: StepOutcome::Failed,
                detail,
                fix,
            },
        });
    }

    fn failed_before(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s.outcome, StepOutcome::Failed | StepOutcome::Skipped))
    }

    /// A step that works with a caveat (skipped like any other after a failure).
    pub(crate) fn warn(&mut self, name: &'static str, detail: String, fix: String) {
        if self.failed_before() {
            return self.push(name, Ok(String::new()));
        }
        self.steps.push(Step {
            name,
            outcome: StepOutcome::Warning,
            detail,
            fix: Some(fix),
        });
    }
}

impl fmt::Display for ConnectionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            let mark = match step.outcome {
                StepOutcome::Passed => "✓",
                StepOutcome::Warning => "⚠",
                StepOutcome::Failed => "✗",
                StepOutcome::Skipped => "-",
            };
            writeln!(f, "{mark} {}. {}: {}", i + 1, step.name, step.detail)?;
            if let Some(fix) = &step.fix {
                let label = if step.outcome == StepOutcome::Warning {
                    "to do"
                } else {
                    "fix"
                };
                writeln!(f, "    {label}: {fix}")?;
            }
        }
        Ok(())
    }
}

pub(crate) async fn test_endpoint(client: &MdeClient) -> ConnectionReport {
    let mut report = ConnectionReport::new();
    let login = client.endpoints().login.to_string();
    let check = client.check_token().await;

    // Steps 1 and 2 both come from the token request: any answer from Entra proves the host is
    // reachable; only an answer with a token proves the credentials.
    match &check {
        Err(TokenError::Unreachable { .. }) | Err(TokenError::UnexpectedResponse { .. }) => {
            let (detail, fix) = explained(check.as_ref().err());
            report.push(ENDPOINT_STEPS[0], Err((detail, fix)));
        }
        _ => report.push(ENDPOINT_STEPS[0], Ok(format!("{login} answered"))),
    }
    match &check {
        Ok(token) => {
            let minutes = token.expires_in.as_secs() / 60;
            let app = token
                .claims
                .as_ref()
                .and_then(|c| c.app_displayname.clone().or(c.appid.clone()))
                .unwrap_or_else(|| "the app".into());
            report.push(
                ENDPOINT_STEPS[1],
                Ok(format!(
                    "token issued to {app}, valid for {minutes} more minutes"
                )),
            );
        }
        Err(e) => {
            let (detail, fix) = explained(Some(e));
            report.push(ENDPOINT_STEPS[1], Err((detail, fix)));
        }
    }
    match &check {
        Ok(token) => match &token.missing_roles {
            Some(missing) if !missing.is_empty() => {
                report.push(ENDPOINT_STEPS[2], Err((missing.to_string(), None)));
            }
            Some(_) => report.push(
                ENDPOINT_STEPS[2],
                Ok("Machine.Read.All and Vulnerability.Read.All are granted".into()),
            ),
            None => report.push(
                ENDPOINT_STEPS[2],
                Ok("the token does not list roles; the reads below will tell".into()),
            ),
        },
        Err(_) => report.push(ENDPOINT_STEPS[2], Ok(String::new())),
    }
    match client.read_one_machine().await {
        Ok(Some(m)) => report.push(
            ENDPOINT_STEPS[3],
            Ok(format!(
                "read device {}",
                m.computer_dns_name.clone().unwrap_or_else(|| m.id.clone())
            )),
        ),
        Ok(None) => report.push(
            ENDPOINT_STEPS[3],
            Ok("the API answered, but no device is onboarded yet (Microsoft has no recently seen devices for this tenant); syncs will find devices once they are onboarded".into()),
        ),
        Err(e) => report.push(ENDPOINT_STEPS[3], Err((e.to_string(), None))),
    }
    match client.read_one_vulnerability_row().await {
        Ok(Some(row)) => report.push(
            ENDPOINT_STEPS[4],
            Ok(format!(
                "read a row for {} {}",
                row.software_name.clone().unwrap_or_default(),
                row.cve_id.clone().unwrap_or_default()
            )),
        ),
        Ok(None) => report.push(
            ENDPOINT_STEPS[4],
            Ok("the API answered; no vulnerabilities are known yet".into()),
        ),
        Err(e) => report.push(ENDPOINT_STEPS[4], Err((e.to_string(), None))),
    }
    report
}

pub(crate) fn explained(error: Option<&TokenError>) -> (String, Option<String>) {
    match error {
        Some(e) => {
            let ex = e.explanation();
            let mut detail = ex.problem.clone();
            if let Some(code) = e.aadsts() {
                detail = format!("AADSTS{code}: {detail}");
            }
            (detail, Some(ex.fix))
        }
        None => ("unknown error".into(), None),
    }
}
