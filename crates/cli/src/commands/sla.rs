//! `rampart sla show | set | unset | report`: the SLA days per decision and SLA compliance
//! (docs/prioritisation.md, "SLA settings" and "SLA reports"), through the same use cases as the
//! portal and the API, so a change is audited and queues the same re-assessment.

use rampart_model::IntegrationId;
use std::collections::HashMap;
use std::process::ExitCode;

use chrono::Utc;
use rampart_model::Integration;
use rampart_model::priority::SlaDays;
use rampart_store::{SlaLine, Store, Visibility};
use rampart_sync::sla::{self, SettingsError};

use crate::cli::{Global, SlaCommand, SlaReportArgs, SlaSetArgs};
use crate::context;
use crate::output::usage;

/// Who the audit log names for changes made on the command line.
const ACTOR: &str = "cli";

fn problem(e: SettingsError) -> anyhow::Error {
    match e {
        SettingsError::Invalid(m) | SettingsError::NotFound(m) | SettingsError::Forbidden(m) => {
            usage(m)
        }
        SettingsError::Store(e) => e.into(),
    }
}

pub async fn run(global: &Global, command: SlaCommand) -> anyhow::Result<ExitCode> {
    let engine = context::open_engine(global, rampart_sync::EngineOptions::default()).await?;
    let store = engine.store().as_ref();
    match command {
        SlaCommand::Show => show(store).await?,
        SlaCommand::Set(args) => set(store, &args).await?,
        SlaCommand::Unset { integration } => {
            let i = store
                .get_integration_by_name(&Visibility::All, &integration)
                .await?;
            sla::set_integration_sla(store, &Visibility::All, i.id, None, ACTOR, Utc::now())
                .await
                .map_err(problem)?;
            println!(
                "Integration '{}' uses the installation's SLA days again.",
                i.name
            );
            print_reassessment(&[i.name.to_string()]);
        }
        SlaCommand::Report(args) => report(store, &args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

fn days_line(days: &SlaDays) -> String {
    format!(
        "immediate {} days, out-of-cycle {}, scheduled {}, defer {}",
        days.immediate, days.out_of_cycle, days.scheduled, days.defer
    )
}

async fn show(store: &dyn Store) -> anyhow::Result<()> {
    let installation = store.sla_settings().await?;
    let changed = match (&installation.updated_by, installation.updated_at) {
        (Some(by), Some(at)) => format!(" (set by {by}, {})", at.format("%Y-%m-%d %H:%M UTC")),
        _ => " (the defaults)".to_owned(),
    };
    println!("Installation: {}{changed}", days_line(&installation.days));
    for i in store.list_integrations(&Visibility::All).await? {
        match store.integration_sla(&Visibility::All, i.id).await? {
            Some(own) => println!(
                "Integration '{}': {} (its own, set by {}, {})",
                i.name,
                days_line(&own.days),
                own.updated_by,
                own.updated_at.format("%Y-%m-%d %H:%M UTC")
            ),
            None => println!("Integration '{}': the installation's", i.name),
        }
    }
    Ok(())
}

async fn set(store: &dyn Store, args: &SlaSetArgs) -> anyhow::Result<()> {
    if args.immediate.is_none()
        && args.out_of_cycle.is_none()
        && args.scheduled.is_none()
        && args.defer.is_none()
    {
        return Err(usage(
            "no days given: name at least one of --immediate, --out-of-cycle, --scheduled, --defer",
        ));
    }
    let installation = store.sla_settings().await?.days;
    let integration: Option<Integration> = match &args.integration {
        Some(name) => Some(
            store
                .get_integration_by_name(&Visibility::All, name)
                .await?,
        ),
        None => None,
    };
    // Days not given keep what applies now: the integration's own, else the installation's.
    let current = match &integration {
        Some(i) => store
            .integration_sla(&Visibility::All, i.id)
            .await?
            .map_or(installation, |own| own.days),
        None => installation,
    };
    let days = SlaDays {
        immediate: args.immediate.unwrap_or(current.immediate),
        out_of_cycle: args.out_of_cycle.unwrap_or(current.out_of_cycle),
        scheduled: args.scheduled.unwrap_or(current.scheduled),
        defer: args.defer.unwrap_or(current.defer),
    };
    let now = Utc::now();
    match integration {
        Some(i) => {
            sla::set_integration_sla(store, &Visibility::All, i.id, Some(days), ACTOR, now)
                .await
                .map_err(problem)?;
            println!("Integration '{}': {}.", i.name, days_line(&days));
            print_reassessment(&[i.name.to_string()]);
        }
        None => {
            sla::set_installation_sla(store, &Visibility::All, days, ACTOR, now)
                .await
                .map_err(problem)?;
            println!("Installation: {}.", days_line(&days));
            let using: Vec<String> = sla::on_installation_sla(store)
                .await?
                .into_iter()
                .map(|i| i.name.to_string())
                .collect();
            print_reassessment(&using);
        }
    }
    Ok(())
}

/// Says who applies the new days: the findings' due dates move when they are re-assessed.
fn print_reassessment(integrations: &[String]) {
    if integrations.is_empty() {
        return;
    }
    println!(
        "Re-assessment queued for {}: a running `rampart serve` applies it at its next scheduler tick; without one, the next `rampart sync` of each integration does.",
        integrations
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

async fn report(store: &dyn Store, args: &SlaReportArgs) -> anyhow::Result<()> {
    let days = sla::period(args.days).map_err(problem)?;
    let integrations = store.list_integrations(&Visibility::All).await?;
    let only = match &args.integration {
        Some(name) => Some(
            store
                .get_integration_by_name(&Visibility::All, name)
                .await?
                .id,
        ),
        None => None,
    };
    let r = sla::report(store, &Visibility::All, only, days, Utc::now())
        .await
        .map_err(problem)?;
    let name = |id: IntegrationId| {
        integrations
            .iter()
            .find(|i| i.id == id)
            .map_or_else(|| id.to_string(), |i| i.name.to_string())
    };
    if args.json {
        // The API's shape (`GET /api/v1/sla/report`), so scripts read either the same way.
        let names: HashMap<IntegrationId, String> = integrations
            .iter()
            .map(|i| (i.id, i.name.to_string()))
            .collect();
        let out = rampart_web::report_out(&r, &names, days);
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "SLA report: open findings as of each integration's last run; fixed in the last {days} days."
    );
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>9}",
        "",
        "OPEN",
        "ON TRACK",
        "DUE SOON",
        "OVERDUE",
        "ACCEPTED",
        "FIXED",
        "ON TIME",
        "MEDIAN TTF",
        "P90 TTF"
    );
    print_line("all", &r.total);
    let groups: [(&str, Vec<(String, &SlaLine)>); 3] = [
        (
            "By integration",
            r.by_integration
                .iter()
                .map(|(i, l)| (name(*i), l))
                .collect(),
        ),
        (
            "By decision",
            r.by_decision
                .iter()
                .map(|(d, l)| (d.as_str().to_owned(), l))
                .collect(),
        ),
        (
            "By severity",
            r.by_severity
                .iter()
                .map(|(s, l)| (rampart_web::severity_name(*s).to_owned(), l))
                .collect(),
        ),
    ];
    for (title, lines) in groups {
        if lines.is_empty() {
            continue;
        }
        println!("{title}:");
        for (label, line) in lines {
            print_line(&format!("  {label}"), line);
        }
    }
    Ok(())
}

fn hours(h: Option<i64>) -> String {
    match h {
        None => "-".to_owned(),
        Some(h) if h < 48 => format!("{h} h"),
        Some(h) => format!("{:.1} d", h as f64 / 24.0),
    }
}

fn print_line(label: &str, l: &SlaLine) {
    let on_time = match l.compliance_percent {
        Some(p) => format!("{p:.1} %"),
        None => "-".to_owned(),
    };
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>9}",
        label.chars().take(28).collect::<String>(),
        l.open,
        l.on_track,
        l.due_soon,
        l.overdue,
        l.accepted,
        l.fixed,
        on_time,
        hours(l.median_hours_to_fix),
        hours(l.p90_hours_to_fix)
    );
}
