//! `integration test` for Defender for Cloud: the token for Azure Resource Manager, the
//! subscriptions the app can see (none means no Azure role, not an error from Microsoft), the
//! Defender plans that produce vulnerability data, then one read of every API a sync uses.
//!
//! Once the subscriptions are listed, every later step is run and reported as it went: a
//! subscription that refuses the plan check fails that step, and the reads are then made on a
//! subscription that answers, so their steps say what they read, never "not tried".

use futures::StreamExt;
use rampart_microsoft::ArmSubscription;
use rampart_microsoft::TokenError;
use rampart_microsoft::VulnerabilityCoverage;
use rampart_microsoft::{
    ApiError, ArmClient, NO_ROLE_EXPLANATION, ReadEvent, RecordStream, authorization_failed_fix,
    is_authorization_failed,
};
use rampart_model::Subscription;

use crate::cloud::label;
use crate::connection::{ConnectionReport, explained};

/// The Cloud steps, in order.
pub const CLOUD_STEPS: [&str; 9] = [
    "reach the login host",
    "get a token",
    "list subscriptions",
    "check Defender plans",
    "read secure scores",
    "read control scores",
    "read recommendations",
    "read recommendation metadata",
    "query Resource Graph",
];

/// What to do when no plan produces vulnerability data.
const PLAN_FIX: &str = "Turn a plan on where you want vulnerability findings: Azure portal → Microsoft Defender for Cloud → Environment settings → the subscription → Defender plans → Servers (Plan 2 or Plan 1) and Containers: On, or Defender CSPM: On with its Settings → Agentless scanning for machines (and for container registries) On → Save. Recommendations and secure scores are read either way";

pub(crate) async fn test_cloud(client: &ArmClient) -> ConnectionReport {
    let mut report = ConnectionReport::new();
    let login = client.endpoints().login.to_string();
    let check = client.fresh_token().await;
    match &check {
        Err(TokenError::Unreachable { .. }) | Err(TokenError::UnexpectedResponse { .. }) => {
            report.push(CLOUD_STEPS[0], Err(explained(check.as_ref().err())));
        }
        _ => report.push(CLOUD_STEPS[0], Ok(format!("{login} answered"))),
    }
    match &check {
        Ok(()) => report.push(
            CLOUD_STEPS[1],
            Ok(format!(
                "token for Azure Resource Manager issued (scope {}); ARM tokens carry no roles, access is decided by Azure role assignments",
                client.endpoints().scope
            )),
        ),
        Err(e) => report.push(CLOUD_STEPS[1], Err(explained(Some(e)))),
    }
    if check.is_err() {
        skip_rest(&mut report, 2);
        return report;
    }

    let subs = match client.subscriptions().collect_all().await {
        Ok((subs, _)) => subs,
        Err(e) => {
            report.push(CLOUD_STEPS[2], Err((e.to_string(), None)));
            skip_rest(&mut report, 3);
            return report;
        }
    };
    if subs.is_empty() {
        report.push(
            CLOUD_STEPS[2],
            Err((
                "Azure Resource Manager lists no subscription for this app: it holds no Azure role"
                    .into(),
                Some(NO_ROLE_EXPLANATION.into()),
            )),
        );
        skip_rest(&mut report, 3);
        return report;
    }
    let subs: Vec<Subscription> = subs.into_iter().map(ArmSubscription::into_model).collect();
    let readable: Vec<&Subscription> = subs.iter().filter(|s| s.is_readable()).collect();
    let others: Vec<String> = subs
        .iter()
        .filter(|s| !s.is_readable())
        .map(|s| format!("{} ({})", label(s), s.state.as_deref().unwrap_or("?")))
        .collect();
    let mut detail = format!(
        "{} subscription(s) visible: {}",
        subs.len(),
        readable
            .iter()
            .map(|s| label(s))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !others.is_empty() {
        detail.push_str(&format!(
            "; not read because Microsoft serves no Defender data for them: {}",
            others.join(", ")
        ));
    }
    if readable.is_empty() {
        report.push(
            CLOUD_STEPS[2],
            Err((
                detail,
                Some("Every visible subscription is disabled or deleted: give the app a role on an active subscription".into()),
            )),
        );
        skip_rest(&mut report, 3);
        return report;
    }
    report.push(CLOUD_STEPS[2], Ok(detail));

    let denied = check_plans(client, &readable, &mut report).await;

    // The reads go to a subscription that answered; if none did, to the first, whose refusal
    // each step then reports.
    let answering: Vec<&Subscription> = readable
        .iter()
        .copied()
        .filter(|s| !denied.contains(&s.subscription_id))
        .collect();
    let first = answering.first().copied().unwrap_or(readable[0]);
    let sub = first.subscription_id.as_str();
    let on = format!("subscription {}", label(first));
    let r = first_record(client.secure_scores(sub)).await;
    report.record(
        CLOUD_STEPS[4],
        read_result(r, sub, |s| {
            let p = s.into_model(sub, None);
            format!("{on}: secure score {:.1} %", p.percent())
        }),
    );
    let r = first_record(client.secure_score_controls(sub)).await;
    report.record(
        CLOUD_STEPS[5],
        read_result(r, sub, |c| {
            format!(
                "{on}: control '{}'",
                c.properties.display_name.unwrap_or_default()
            )
        }),
    );
    let mut r = first_record(client.assessments(sub)).await;
    if let Err(e) = &r
        && client.use_assessments_fallback(e)
    {
        r = first_record(client.assessments(sub)).await;
    }
    let version = client.assessments_api();
    report.record(
        CLOUD_STEPS[6],
        read_result(r, sub, |a| {
            format!(
                "{on}: '{}' (api-version {version})",
                a.properties.display_name.unwrap_or_default()
            )
        }),
    );
    let r = first_record(client.assessment_metadata()).await;
    report.record(
        CLOUD_STEPS[7],
        read_result(r, sub, |m| {
            format!(
                "'{}' ({})",
                m.properties.display_name.unwrap_or_default(),
                m.properties.severity.unwrap_or_default()
            )
        }),
    );
    let ids: Vec<String> = if answering.is_empty() {
        readable.iter().map(|s| s.subscription_id.clone()).collect()
    } else {
        answering
            .iter()
            .map(|s| s.subscription_id.clone())
            .collect()
    };
    let r = client.read_one_vulnerability_row(&ids).await;
    report.record(
        CLOUD_STEPS[8],
        match r {
            Ok(Some(row)) => Ok(format!(
                "vulnerability query answered: {} on {}",
                row.cve_details()
                    .ok()
                    .and_then(|(cves, _)| cves.into_iter().next())
                    .and_then(|c| c.cve_id)
                    .unwrap_or_default(),
                row.resource_name.unwrap_or_default()
            )),
            Ok(None) => Ok(
                "vulnerability query answered with no rows (no open software vulnerabilities, or no plan producing them)"
                    .into(),
            ),
            Err(e) => Err((e.to_string(), None)),
        },
    );
    report
}

fn skip_rest(report: &mut ConnectionReport, from: usize) {
    for name in &CLOUD_STEPS[from..] {
        report.push(name, Ok(String::new()));
    }
}

/// Defender plans per subscription: a 403 means the app cannot read that subscription (a
/// failure: a sync would leave it out); machines or images without any plan that scans them is a
/// warning naming the subscriptions. Returns the subscriptions that refused.
async fn check_plans(
    client: &ArmClient,
    subs: &[&Subscription],
    report: &mut ConnectionReport,
) -> Vec<String> {
    let mut denied = Vec::new();
    let mut errors = Vec::new();
    let mut off = Vec::new();
    for s in subs {
        match client.pricings(&s.subscription_id).await {
            Ok(plans) => {
                let coverage = VulnerabilityCoverage::of(&plans);
                let mut missing = Vec::new();
                if !coverage.machines {
                    missing.push("machines (neither Defender for Servers nor Defender CSPM with agentless machine scanning)");
                }
                if !coverage.images {
                    missing.push("container images (neither Defender for Containers nor Defender CSPM with agentless registry scanning)");
                }
                if !missing.is_empty() {
                    off.push(format!(
                        "no plan scans {} in subscription {}",
                        missing.join(" or "),
                        label(s)
                    ));
                }
            }
            Err(e) if is_authorization_failed(&e) => denied.push(*s),
            Err(e) => errors.push(format!("{}: {e}", label(s))),
        }
    }
    let name = CLOUD_STEPS[3];
    let denied_ids = denied.iter().map(|s| s.subscription_id.clone()).collect();
    if let Some(first) = denied.first() {
        let list: Vec<String> = denied.iter().map(|s| label(s)).collect();
        report.push(
            name,
            Err((
                format!(
                    "Azure refused to show the app {} (HTTP 403 AuthorizationFailed): it is listed, but holds no role that can read Defender for Cloud there. A sync would leave it out",
                    list.join(", ")
                ),
                Some(authorization_failed_fix(&first.subscription_id)),
            )),
        );
    } else if !errors.is_empty() {
        report.push(name, Err((errors.join("; "), None)));
    } else if !off.is_empty() {
        report.warn(
            name,
            format!(
                "{}: they produce no vulnerability findings there",
                off.join("; ")
            ),
            PLAN_FIX.into(),
        );
    } else {
        report.push(
            name,
            Ok(format!(
                "machines and container images are scanned for vulnerabilities in all {} subscription(s) (Defender for Servers, Containers or CSPM)",
                subs.len()
            )),
        );
    }
    denied_ids
}

/// The first record of a read (an empty list is an answer too); the rest is not fetched.
async fn first_record<T: Send + 'static>(
    mut stream: RecordStream<T>,
) -> Result<Option<T>, ApiError> {
    while let Some(event) = stream.next().await {
        match event? {
            ReadEvent::Records { records, .. } => {
                if let Some(first) = records.into_iter().next() {
                    return Ok(Some(first));
                }
            }
            ReadEvent::Finished(_) => return Ok(None),
            ReadEvent::Restart { .. } | ReadEvent::PageDone { .. } => {}
        }
    }
    Ok(None)
}

fn read_result<T>(
    r: Result<Option<T>, ApiError>,
    sub: &str,
    describe: impl FnOnce(T) -> String,
) -> Result<String, (String, Option<String>)> {
    match r {
        Ok(Some(item)) => Ok(format!("read {}", describe(item))),
        Ok(None) => Ok("the API answered with an empty list".into()),
        Err(e) if is_authorization_failed(&e) => {
            Err((e.to_string(), Some(authorization_failed_fix(sub))))
        }
        Err(e) => Err((e.to_string(), None)),
    }
}
