//! `rampart sync NAME | --all`.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use rampart_model::{Integration, Product, RunStatus, SyncRun};
use rampart_sync::progress::Progress;
use rampart_sync::{Engine, FindingsSource, SyncMode, SyncRequest};

use crate::cli::{Global, SourceArg, SyncArgs};
use crate::commands::integration::expiry_warning;
use crate::context;

pub async fn run(global: &Global, args: SyncArgs) -> anyhow::Result<ExitCode> {
    let engine = context::open_engine(global, context::engine_options(&args.engine)).await?;
    let request = SyncRequest {
        mode: if args.full {
            SyncMode::Full
        } else {
            SyncMode::Auto
        },
        accept_mass_changes: args.accept_mass_changes,
        source: match args.source {
            SourceArg::Auto => FindingsSource::Auto,
            SourceArg::Pages => FindingsSource::Pages,
            SourceArg::Files => FindingsSource::Files,
        },
    };
    // `--all --workspace W`: only that workspace's integrations.
    let vis =
        super::workspace::visibility(engine.store().as_ref(), args.workspace.as_deref()).await?;
    let integrations = match &args.name {
        Some(name) => vec![engine.store().get_integration_by_name(&vis, name).await?],
        None => engine
            .store()
            .list_integrations(&vis)
            .await?
            .into_iter()
            .filter(|i| i.enabled)
            .collect(),
    };
    if integrations.is_empty() {
        println!("No enabled integrations to sync. Add one with: rampart integration add --help");
        return Ok(ExitCode::SUCCESS);
    }
    let mut all_ok = true;
    for integration in &integrations {
        if let Some(w) = expiry_warning(integration) {
            eprintln!("warning: {w}");
        }
        let progress = TerminalProgress::new(integration.name.as_str());
        match sync_one(&engine, integration, request, &progress).await {
            Ok(run) => {
                progress.clear();
                print_run(integration, &run);
                all_ok &= run.status == RunStatus::Succeeded;
            }
            Err(e) => {
                progress.clear();
                eprintln!("error: sync of '{}' could not start: {e}", integration.name);
                all_ok = false;
            }
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(super) async fn sync_one(
    engine: &Engine,
    integration: &rampart_model::Integration,
    request: SyncRequest,
    progress: &TerminalProgress,
) -> Result<SyncRun, rampart_sync::SyncError> {
    engine.sync(integration, request, progress).await
}

pub(super) fn print_run(integration: &Integration, run: &SyncRun) {
    let name = integration.name.as_str();
    let took = run
        .finished_at
        .map(|f| (f - run.started_at).num_milliseconds() as f64 / 1000.0)
        .unwrap_or_default();
    let f = &run.findings;
    let a = &run.assets;
    let from = match run.source.as_deref() {
        Some("files") => " from export files",
        Some("pages") => " from JSON pages",
        _ => "",
    };
    println!(
        "{name}: {} ({} sync{from}, run {}, {took:.1} s)",
        run.status.as_str(),
        run.mode,
        run.id
    );
    match integration.product {
        Product::Endpoint => {
            println!(
                "  devices   {:>9} read, {} new, {} updated, {} back, {} missing",
                a.read, a.new, a.updated, a.reopened, a.resolved
            );
            println!(
                "  findings  {:>9} read, {} new, {} updated, {} reopened, {} fixed ({} rows without a CVE skipped)",
                f.read, f.new, f.updated, f.reopened, f.resolved, f.skipped
            );
            println!(
                "  catalogue {:>9} CVEs read, {} new",
                run.vulnerabilities.read, run.vulnerabilities.new
            );
        }
        Product::Cloud => {
            println!(
                "  resources {:>9} read, {} new, {} updated, {} back, {} missing",
                a.read, a.new, a.updated, a.reopened, a.resolved
            );
            println!(
                "  findings  {:>9} read, {} new, {} updated, {} reopened, {} fixed",
                f.read, f.new, f.updated, f.reopened, f.resolved
            );
        }
    }
    let odd = &run.odd_records;
    if odd.count > 0 {
        let ids = if odd.ids.is_empty() {
            String::new()
        } else {
            format!(
                ": {}{}",
                odd.ids.join(", "),
                if (odd.ids.len() as u64) < odd.count {
                    ", …"
                } else {
                    ""
                }
            )
        };
        println!("  unreadable {:>8} records skipped{ids}", odd.count);
        if let Some(e) = &odd.first_error {
            println!("            first: {e}");
        }
    }
    println!(
        "  API calls {:>9}, {} throttled (429), {} retries, {:.1} MB",
        run.api_calls,
        run.throttled,
        run.retries,
        run.bytes as f64 / 1e6
    );
    if let Some(error) = &run.error {
        eprintln!("error: {name}: {error}");
    }
}

/// Progress bars on a terminal, plain lines otherwise.
pub(super) struct TerminalProgress {
    name: String,
    tty: bool,
    bar: Mutex<Option<ProgressBar>>,
    /// The current phase, so a plain line can say what its number counts.
    phase: Mutex<String>,
}

impl TerminalProgress {
    pub(super) fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            tty: std::io::stderr().is_terminal(),
            bar: Mutex::new(None),
            phase: Mutex::new(String::new()),
        }
    }

    pub(super) fn clear(&self) {
        if let Ok(mut bar) = self.bar.lock()
            && let Some(b) = bar.take()
        {
            b.finish_and_clear();
        }
    }
}

impl Progress for TerminalProgress {
    fn phase(&self, phase: &str) {
        if let Ok(mut current) = self.phase.lock() {
            phase.clone_into(&mut current);
        }
        if !self.tty {
            eprintln!("{}: {phase}…", self.name);
            return;
        }
        let bar = ProgressBar::new_spinner();
        let style =
            ProgressStyle::with_template("{spinner} {prefix}: {msg} {human_pos} read ({per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_prefix(self.name.clone());
        bar.set_message(phase.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        if let Ok(mut slot) = self.bar.lock()
            && let Some(old) = slot.replace(bar)
        {
            old.finish();
        }
    }

    fn advance(&self, n: u64) {
        if let Ok(slot) = self.bar.lock()
            && let Some(bar) = slot.as_ref()
        {
            bar.inc(n);
        }
    }

    fn phase_done(&self, total: u64) {
        if !self.tty {
            let phase = self.phase.lock().map(|p| p.clone()).unwrap_or_default();
            eprintln!("{}: {phase}: {}", self.name, counted(&phase, total));
        }
    }

    fn note(&self, message: &str) {
        match self.bar.lock().ok().and_then(|b| b.clone()) {
            Some(bar) => bar.println(format!("  {message}")),
            None => eprintln!("{}: {message}", self.name),
        }
    }
}

/// A phase's final number with what it counts: records read, or changes made when reconciling
/// (see [`Progress::phase_done`]).
fn counted(phase: &str, total: u64) -> String {
    let (one, many) = if phase.starts_with("reconcil") {
        ("change made", "changes made")
    } else if phase.starts_with("indexing") {
        ("record indexed", "records indexed")
    } else {
        ("record read", "records read")
    };
    format!("{total} {}", if total == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::counted;

    #[test]
    fn a_plain_progress_number_names_its_unit() {
        assert_eq!(counted("reconciling", 0), "0 changes made");
        assert_eq!(
            counted("reading subscription 'Prod Workloads'", 1),
            "1 record read"
        );
        assert_eq!(counted("reading devices", 40), "40 records read");
    }
}
