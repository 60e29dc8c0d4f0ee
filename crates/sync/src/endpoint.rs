//! A sync run of a Defender for Endpoint integration: devices, the CVE catalogue, and the
//! vulnerability findings, read in full (a baseline) or as Microsoft's changes since the last read.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use rampart_microsoft::NotAFinding;
use rampart_microsoft::{ExportFilesResponse, FindingRow};
use rampart_microsoft::{MdeClient, ReadEnd, ReadReport, RecordStream};
use rampart_model::{EntityCounts, RunStatus, SyncRun, Verdict};
use rampart_store::{Backend, InsertAssessor, ReconcileScope, UpsertCounts};

use crate::delta;
use crate::error::{RunError, SyncError};
use crate::options::{FindingsSource, SyncMode};
use crate::pipeline::{Batching, Piped, pipe};
use crate::priority::InlineAssessor;
use crate::run::{Job, MassChange, RunSetup};
use crate::verdict::judge;

/// Sync-state keys kept per integration between runs.
pub(crate) const BASELINE_AT: &str = "endpoint.baseline_at";
/// The watermark of the delta API: every change at or before it is already in the store.
pub(crate) const DELTA_SINCE: &str = "endpoint.delta_since";
/// When (on this machine's clock) [`DELTA_SINCE`] last took a new value: how old the watermark is
/// on Microsoft's side, whose clock Rampart does not read.
pub(crate) const DELTA_SINCE_SET_AT: &str = "endpoint.delta_since_set_at";
/// The newest `updatedOn` of the CVE catalogue read so far: a delta run reads only the entries
/// updated after it (`$filter=updatedOn gt …`).
pub(crate) const CATALOGUE_UPDATED: &str = "endpoint.catalogue_updated_on";

/// Microsoft accepts a delta `sinceTime` at most 14 days back (get-assessment-software-
/// vulnerabilities, "Delta export"); a watermark this old re-baselines instead. The margin covers
/// the watermark's own lag behind Microsoft's clock (one 6-hour bucket and its delivery).
fn delta_age_limit() -> chrono::Duration {
    chrono::Duration::days(14) - chrono::Duration::hours(12)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Full,
    Delta { since: DateTime<Utc> },
}

/// What a run that would mark too many devices missing says.
const DEVICES: MassChange = MassChange {
    things: "devices",
    if_real: "the devices really left (offboarding, retention)",
};

pub(crate) async fn run(setup: RunSetup<'_>, client: &MdeClient) -> Result<SyncRun, SyncError> {
    let mode = choose_mode(&setup, Utc::now()).await?;
    let word = match mode {
        Mode::Full => "full",
        Mode::Delta { .. } => "delta",
    };
    let mut job = Job::open(setup, client, word).await?;
    let read = match mode {
        Mode::Full => job.full().await,
        Mode::Delta { since } => job.delta(since).await,
    };
    let read = match read {
        Ok(()) => job.prioritise().await,
        failed => failed,
    };
    job.close(read).await
}

/// A delta is used only right after an unbroken chain of complete runs since a recent baseline:
/// any gap (a failed, partial or held run) re-baselines, so the result always equals a full read.
async fn choose_mode(setup: &RunSetup<'_>, now: DateTime<Utc>) -> Result<Mode, SyncError> {
    let (options, integration, store) = (setup.options, setup.integration, setup.store);
    if setup.request.mode == SyncMode::Full || !options.incremental {
        return Ok(Mode::Full);
    }
    let state = |key| store.get_sync_state(integration.id, key);
    let (Some(baseline), Some(since)) = (state(BASELINE_AT).await?, state(DELTA_SINCE).await?)
    else {
        return Ok(Mode::Full);
    };
    let (Ok(baseline), Ok(since)) = (
        DateTime::parse_from_rfc3339(&baseline),
        DateTime::parse_from_rfc3339(&since),
    ) else {
        return Ok(Mode::Full);
    };
    if now.signed_duration_since(baseline) > options.rebaseline_after {
        return Ok(Mode::Full);
    }
    // However the re-baseline period is set, Microsoft refuses a sinceTime older than 14 days.
    let set_at = state(DELTA_SINCE_SET_AT)
        .await?
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .unwrap_or(baseline);
    if now.signed_duration_since(set_at) > delta_age_limit() {
        tracing::info!(
            message = "Delta watermark too old for Microsoft; re-baselining.",
            integration = %integration.name,
            since = %since
        );
        return Ok(Mode::Full);
    }
    let last = store
        .list_runs(&rampart_store::Visibility::All, integration.id, 1)
        .await?;
    let unbroken = last.first().is_some_and(|run| {
        run.status == RunStatus::Succeeded && run.verdict == Some(Verdict::Complete)
    });
    if !unbroken {
        return Ok(Mode::Full);
    }
    Ok(Mode::Delta {
        since: since.with_timezone(&Utc),
    })
}

impl Job<'_, MdeClient> {
    /// Endpoint batches are written several at once where the store can (the bulk load is
    /// where concurrent writes pay).
    fn batch(&self) -> Batching {
        self.batching(self.store.concurrent_writes())
    }

    /// Refuses to start reading with a token that lacks roles: the API would answer 403 anyway,
    /// and this way the message names the role and the consent step.
    async fn check_roles(&mut self) -> Result<(), RunError> {
        let check = self.client.check_token().await?;
        match check.missing_roles {
            Some(missing) if !missing.is_empty() => Err(RunError::MissingRoles(missing)),
            _ => Ok(()),
        }
    }

    async fn devices(&mut self) -> Result<ReadReport, RunError> {
        self.progress.phase("reading devices");
        let (store, id, run) = (Arc::clone(&self.store), self.integration.id, self.run_id);
        let piped = pipe(
            self.client.machines(),
            |m| Some(m.into_asset()),
            self.batch(),
            move |batch| {
                let store = Arc::clone(&store);
                async move { store.upsert_assets(id, run, &batch).await }
            },
            self.progress,
        )
        .await?;
        self.outcome.assets = counts(&piped);
        self.progress.phase_done(piped.report.records);
        if piped.report.reason == ReadEnd::NothingThere {
            self.progress.note(
                "Microsoft has no recently seen devices for this tenant (404 Not Found): no device is onboarded yet",
            );
        }
        self.note_odd(&piped.report);
        Ok(piped.report)
    }

    /// The CVE catalogue: whole, or (`incremental`, on delta runs after a complete catalogue read)
    /// only the entries Microsoft updated since the newest `updatedOn` already stored.
    async fn catalogue(&mut self, incremental: bool) -> Result<ReadReport, RunError> {
        let id = self.integration.id;
        let since = if incremental {
            self.store
                .get_sync_state(id, CATALOGUE_UPDATED)
                .await?
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc))
        } else {
            None
        };
        let stream = match since {
            Some(since) => {
                self.progress
                    .phase("reading the vulnerability catalogue's updates");
                self.client.vulnerabilities_updated_since(since)
            }
            None => {
                self.progress.phase("reading the vulnerability catalogue");
                self.client.vulnerabilities()
            }
        };
        let store = Arc::clone(&self.store);
        let mut newest: Option<DateTime<Utc>> = since;
        let piped = pipe(
            stream,
            |v| match v.into_model() {
                Ok(v) => {
                    if v.updated_on > newest {
                        newest = v.updated_on;
                    }
                    Some(v)
                }
                Err(e) => {
                    tracing::debug!(message = "Catalogue entry skipped.", reason = %e);
                    None
                }
            },
            self.batch(),
            move |batch| {
                let store = Arc::clone(&store);
                async move { store.upsert_vulnerabilities(&batch).await }
            },
            self.progress,
        )
        .await?;
        self.outcome.vulnerabilities = counts(&piped);
        self.progress.phase_done(piped.report.records);
        self.note_odd(&piped.report);
        // The next delta reads from here only if this read saw everything up to it.
        if piped.report.complete
            && let Some(newest) = newest
        {
            self.store
                .set_sync_state(id, CATALOGUE_UPDATED, &rfc3339(newest))
                .await?;
        }
        Ok(piped.report)
    }

    /// `Auto` decides by the device count just read.
    fn findings_source(&self, devices: u64) -> FindingsSource {
        match self.request.source {
            FindingsSource::Auto if devices >= self.options.file_export_threshold => {
                FindingsSource::Files
            }
            FindingsSource::Auto => FindingsSource::Pages,
            forced => forced,
        }
    }

    /// The stream of the snapshot's rows from `source`, and the snapshot's generation time.
    async fn findings_stream(
        &mut self,
        source: FindingsSource,
    ) -> Result<(RecordStream<FindingRow>, Option<DateTime<Utc>>), RunError> {
        if source == FindingsSource::Files {
            self.progress.phase("listing the export files");
            let options = self.options.file_reads.clone();
            // The listing names one snapshot and its generation time: the read below is exactly
            // that snapshot. (One call of the file-export budget, 5/min and 20/h.)
            let listing = self.client.export_files(options.sas_valid_hours).await?;
            let generated = generated_time(&listing);
            self.progress.phase_done(listing.export_files.len() as u64);
            self.progress.phase("reading findings from export files");
            return Ok((self.client.export_records(listing, options), generated));
        }
        // The snapshot's generation time, asked *before* the read: the snapshot the pages then
        // serve is this one or a newer one, so every change after it is either in the pages or
        // still to come through the delta API. (One call of the file-export budget, per baseline.)
        let generated = self.snapshot_generated_before_read().await;
        self.progress.phase("reading findings");
        let pages = self
            .client
            .software_vulnerability_rows(self.options.export_page_size);
        Ok((pages, generated))
    }

    async fn full(&mut self) -> Result<(), RunError> {
        self.check_roles().await?;
        let devices = self.devices().await?;
        let catalogue = self.catalogue(false).await?;

        let source = self.findings_source(devices.records);
        self.outcome.source = Some(source.as_str().to_owned());
        let (rows, generated) = self.findings_stream(source).await?;
        let (store, id, run) = (Arc::clone(&self.store), self.integration.id, self.run_id);
        let mut newest_seen: Option<DateTime<Utc>> = None;
        let mut malformed = 0u64;
        let deferred = self.store.begin_bulk_findings(id).await?;
        // On a first load every row is new: it is written with its priority (one write per row
        // instead of two). On a later full read almost every row exists already and keeps its
        // assessment, so working one out for each row would be wasted (measured: a full re-read
        // at 2,000 devices took 2.0 s instead of 1.1 s); the few new rows are left to the run's
        // pass, which finds them unassessed.
        let assessor = if deferred {
            Some(Arc::new(
                InlineAssessor::start(self.store.as_ref(), self.integration, self.started_at)
                    .await?,
            ))
        } else {
            None
        };
        let inline = assessor.clone();
        let piped = pipe(
            rows,
            |row| match row.into_finding() {
                Ok(f) => {
                    if f.last_seen > newest_seen {
                        newest_seen = f.last_seen;
                    }
                    Some(f)
                }
                // Software rows without a CVE are inventory, not findings: normal.
                Err(NotAFinding::NoCve) => None,
                Err(e) => {
                    malformed += 1;
                    tracing::warn!(message = "Vulnerability row skipped.", reason = %e);
                    None
                }
            },
            self.batch(),
            move |batch| {
                let store = Arc::clone(&store);
                let assessor = inline.clone();
                async move {
                    if let Some(a) = &assessor {
                        a.prepare(store.as_ref(), &batch).await?;
                    }
                    let assessor = assessor.as_deref().map(|a| a as &dyn InsertAssessor);
                    store
                        .upsert_findings_assessed(id, run, &batch, assessor)
                        .await
                }
            },
            self.progress,
        )
        .await;
        // Whether the read worked or not, what was put off is rebuilt, in one sorted pass.
        let rebuild = async {
            if deferred {
                self.progress.phase("indexing findings");
                self.store.end_bulk_findings().await
            } else {
                Ok(())
            }
        };
        // Whether the read worked or not, the rows written refer to their explanations.
        let explain = async {
            match &assessor {
                Some(a) => a.store_explanations(self.store.as_ref()).await,
                None => Ok(()),
            }
        };
        // On SQLite the rebuild goes first: it also closes the first-load writer and frees its
        // page cache, which the explanations' writes would otherwise find still full (20,000
        // devices: peak memory 159–173 MiB with the explanations first, 140–142 MiB after).
        // PostgreSQL writes the explanations (0.58 s of statements at 20,000 devices) while its
        // other sessions build the indexes.
        let (rebuilt, explained) = match self.store.backend() {
            Backend::Postgres => futures::join!(rebuild, explain),
            Backend::Sqlite => (rebuild.await, explain.await),
        };
        self.first_load_assessed_since = assessor.map(|a| a.since);
        let piped = piped?;
        explained?;
        rebuilt?;
        self.outcome.findings = counts(&piped);
        self.progress.phase_done(piped.report.records);
        self.note_odd(&piped.report);
        if malformed > 0 {
            tracing::warn!(
                message = "Some vulnerability rows were malformed and skipped.",
                count = malformed
            );
        }

        let previous = self.last_complete_full_run().await?;
        let verdict = judge(
            &[
                ("devices", &devices),
                ("vulnerability catalogue", &catalogue),
                ("findings", &piped.report),
            ],
            piped.report.records,
            previous.map(|run| run.findings.read),
            self.request.accept_mass_changes,
        );
        let verdict = self
            .reconcile(verdict, ReconcileScope::Everything, &DEVICES)
            .await?;
        self.settle(verdict);
        if self.outcome.status == RunStatus::Succeeded {
            let now = self.outcome.finished_at;
            self.store
                .set_sync_state(id, BASELINE_AT, &rfc3339(now))
                .await?;
            // The next delta starts where this snapshot's data ends, on Microsoft's clock (not
            // ours): no row of the snapshot was seen after its generation, so both bounds are at
            // or before it, and replaying a change the snapshot already holds is harmless.
            if let Some(watermark) = newest_seen.max(generated) {
                self.store
                    .set_sync_state(id, DELTA_SINCE, &rfc3339(watermark))
                    .await?;
                self.store
                    .set_sync_state(id, DELTA_SINCE_SET_AT, &rfc3339(now))
                    .await?;
            }
        }
        Ok(())
    }

    async fn delta(&mut self, since: DateTime<Utc>) -> Result<(), RunError> {
        self.check_roles().await?;
        let devices = self.devices().await?;
        let catalogue = self.catalogue(true).await?;

        self.progress.phase("reading changes");
        let stream = self
            .client
            .vulnerability_changes_since(since, self.options.export_page_size);
        let read = delta::read_changes(stream, since, self.progress).await?;
        self.note_odd(&read.report);
        let applied = delta::apply(
            &self.store,
            self.integration.id,
            self.run_id,
            &read.changes,
            self.batch().size,
        )
        .await?;
        self.outcome.findings = EntityCounts {
            read: read.report.records,
            new: applied.upserted.new,
            updated: applied.upserted.updated,
            resolved: applied.fixed,
            reopened: applied.upserted.reopened,
            skipped: read.skipped,
        };
        self.progress.phase_done(read.report.records);

        let verdict = judge(
            &[
                ("devices", &devices),
                ("vulnerability catalogue", &catalogue),
                ("changes", &read.report),
            ],
            u64::MAX,
            None,
            self.request.accept_mass_changes,
        );
        let verdict = self
            .reconcile(verdict, ReconcileScope::AssetsOnly, &DEVICES)
            .await?;
        self.settle(verdict);
        if self.outcome.status == RunStatus::Succeeded
            && let Some(newest) = read.newest_event
            && newest > since
        {
            let id = self.integration.id;
            self.store
                .set_sync_state(id, DELTA_SINCE, &rfc3339(newest))
                .await?;
            self.store
                .set_sync_state(id, DELTA_SINCE_SET_AT, &rfc3339(self.outcome.finished_at))
                .await?;
        }
        Ok(())
    }

    /// `generatedTime` of the latest export snapshot, when Microsoft tells it.
    async fn snapshot_generated_before_read(&self) -> Option<DateTime<Utc>> {
        match self.client.export_files(1).await {
            Ok(files) => generated_time(&files),
            Err(e) => {
                tracing::debug!(message = "Snapshot time unavailable.", error = %e);
                None
            }
        }
    }
}

fn counts(piped: &Piped) -> EntityCounts {
    let c: UpsertCounts = piped.counts;
    EntityCounts {
        read: piped.report.records,
        new: c.new,
        updated: c.updated,
        resolved: 0,
        reopened: c.reopened,
        skipped: piped.skipped,
    }
}

fn generated_time(listing: &ExportFilesResponse) -> Option<DateTime<Utc>> {
    listing
        .generated_time
        .as_deref()
        .and_then(|t| rampart_model::parse_microsoft_timestamp(t).ok())
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}
