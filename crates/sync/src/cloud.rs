//! A sync run of a Defender for Cloud integration: the subscriptions the app can see, then per
//! subscription its secure score, control scores and recommendations (assessments joined with
//! their metadata) with the assessed resources as assets, legacy vulnerability sub-assessments
//! where the tenant still has them, and finally the current vulnerability findings (individual
//! `SoftwareUpdate` recommendations, one per CVE) through Resource Graph.
//!
//! Access is Azure RBAC per subscription, so one subscription can refuse (403
//! `AuthorizationFailed`) while the others answer. Such a run is *partial*: the refusing
//! subscription is recorded as failed with what to do, nothing is concluded for it, and the
//! subscriptions read completely are synced and concluded. A run where nothing could be read fails
//! and concludes nothing. An empty subscription list is Microsoft's way of saying "no role", so it
//! fails the run with the role-assignment steps instead of succeeding with nothing.

use rampart_model::RunId;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rampart_microsoft::CloudFinding;
use rampart_microsoft::{
    ApiError, ArmClient, CVE_DETAILS_PER_QUERY, ReadReport, authorization_failed_fix,
    is_authorization_failed,
};
use rampart_microsoft::{
    Assessment, AssessmentMetadata, AssessmentMetadataProperties, SubAssessment, VulnerabilityRow,
};
use rampart_model::{
    Asset, ControlScore, CveId, EntityCounts, IntegrationId, PostureScore, Recommendation,
    RunStatus, Subscription, SyncRun, Verdict, Vulnerability, parse_microsoft_timestamp,
    weighted_percent,
};
use rampart_store::{ReconcileScope, Store, StoreError, SubscriptionReadOutcome, UpsertCounts};

use crate::error::{RunError, SyncError};
use crate::pipeline::{Batch, Batching, PipeError, Piped, pipe};
use crate::run::{Job, MassChange, RunSetup};
use crate::verdict::{collapse, judge};

/// Fingerprints of the assessed resources met so far in a run, to count each resource once
/// (8 bytes a resource, not its id).
type Resources = HashSet<u64>;

/// `firstEvaluationDate` of a subscription's grouped vulnerability recommendations (those with a
/// `subAssessmentsLink`), by lower-cased assessment id: the first seen of their legacy
/// sub-assessments, which carry only when they were generated.
type Parents = HashMap<String, DateTime<Utc>>;

/// What a run that would mark too many cloud resources missing says.
const RESOURCES: MassChange = MassChange {
    things: "cloud resources",
    if_real: "the resources really went away",
};

/// Counts of a write that touches assets and one other table.
#[derive(Debug, Default, Clone, Copy)]
struct Both {
    assets: UpsertCounts,
    other: UpsertCounts,
    /// CVE catalogue entries added or completed from findings.
    catalogue: UpsertCounts,
}

impl std::ops::AddAssign for Both {
    fn add_assign(&mut self, rhs: Both) {
        self.assets += rhs.assets;
        self.other += rhs.other;
        self.catalogue += rhs.catalogue;
    }
}

/// What was read of one subscription.
struct SubscriptionRead {
    score: Option<PostureScore>,
    controls: Vec<ControlScore>,
    reads: Vec<(String, ReadReport)>,
}

pub(crate) async fn run(setup: RunSetup<'_>, client: &ArmClient) -> Result<SyncRun, SyncError> {
    let mut job = Job::open(setup, client, "full").await?;
    let read = match job.full().await {
        Ok(()) => job.prioritise().await,
        failed => failed,
    };
    job.note_recommendations();
    job.close(read).await
}

impl Job<'_, ArmClient> {
    fn id(&self) -> IntegrationId {
        self.integration.id
    }

    /// One write at a time: a Cloud batch writes assets and then recommendations or findings,
    /// and two such batches at once would contend for the same asset rows (Cloud volumes are
    /// small; the Endpoint bulk load is where concurrent writes pay).
    fn batch(&self) -> Batching {
        self.batching(1)
    }

    /// What the run did to recommendations, said once at its end (whether it failed or not).
    fn note_recommendations(&self) {
        let r = &self.outcome.recommendations;
        if r.read > 0 {
            self.progress.note(&format!(
                "recommendations: {} read, {} new, {} changed, {} back, {} removed",
                r.read, r.new, r.updated, r.reopened, r.resolved
            ));
            tracing::info!(
                message = "Recommendations synced.",
                integration = %self.integration.name,
                run_id = self.run_id.get(),
                read = r.read,
                new = r.new,
                updated = r.updated,
                reopened = r.reopened,
                removed = r.resolved
            );
        }
    }

    /// How the read of `sub` ended, for the subscription's record.
    async fn record_read(
        &self,
        sub: &Subscription,
        outcome: SubscriptionReadOutcome,
    ) -> Result<(), StoreError> {
        self.store
            .record_subscription_read(self.id(), self.run_id, &sub.subscription_id, &outcome)
            .await
    }

    async fn full(&mut self) -> Result<(), RunError> {
        self.client.check_token().await?;

        self.progress.phase("reading subscriptions");
        let (subs, subs_report) = self.client.subscriptions().collect_all().await?;
        self.progress.phase_done(subs.len() as u64);
        if subs.is_empty() {
            return Err(RunError::NoSubscription);
        }
        let subs: Vec<Subscription> = subs.into_iter().map(|s| s.into_model()).collect();
        self.store
            .upsert_subscriptions(self.id(), self.run_id, &subs)
            .await?;

        self.progress.phase("reading recommendation metadata");
        let (metadata, metadata_report) = self.client.assessment_metadata().collect_all().await?;
        self.progress.phase_done(metadata.len() as u64);
        let metadata: HashMap<String, AssessmentMetadataProperties> = metadata
            .into_iter()
            .map(|m: AssessmentMetadata| (m.name.to_ascii_lowercase(), m.properties))
            .collect();
        let metadata = Arc::new(metadata);

        let mut resources = Resources::new();
        let mut complete: Vec<&Subscription> = Vec::new();
        let mut problems: Vec<String> = Vec::new();
        let mut reads: Vec<(String, ReadReport)> = vec![
            ("subscriptions".into(), subs_report),
            ("recommendation metadata".into(), metadata_report),
        ];
        let mut scores = Vec::new();
        let mut controls = Vec::new();
        for sub in &subs {
            if !sub.is_readable() {
                let why = format!(
                    "the subscription is {}: Microsoft serves no Defender data for it",
                    sub.state.as_deref().unwrap_or("not active")
                );
                self.record_read(sub, SubscriptionReadOutcome::Skipped(why))
                    .await?;
                continue;
            }
            self.progress
                .phase(&format!("reading subscription {}", label(sub)));
            let failure = match self
                .read_subscription(sub, Arc::clone(&metadata), &mut resources)
                .await
            {
                Ok(read) => {
                    let unfinished: Vec<String> = read
                        .reads
                        .iter()
                        .filter(|(_, r)| !r.complete)
                        .map(|(what, r)| {
                            format!(
                                "the {what} read did not provably reach its end ({})",
                                r.reason
                            )
                        })
                        .collect();
                    if unfinished.is_empty() {
                        complete.push(sub);
                        scores.extend(read.score);
                        controls.extend(read.controls);
                        reads.extend(read.reads);
                        None
                    } else {
                        Some(unfinished.join("; "))
                    }
                }
                Err(PipeError::Write(e)) => return Err(e.into()),
                Err(PipeError::Read(e)) => {
                    tracing::warn!(
                        message = "Subscription could not be read.",
                        integration = %self.integration.name,
                        subscription = %sub.subscription_id,
                        error = %e
                    );
                    Some(explain_subscription_error(&e, sub))
                }
            };
            if let Some(why) = failure {
                problems.push(format!("subscription {}: {why}", label(sub)));
                self.record_read(sub, SubscriptionReadOutcome::Failed(why))
                    .await?;
            }
            self.progress.phase_done(0);
        }
        if complete.is_empty() {
            return Err(if problems.is_empty() {
                RunError::NoActiveSubscription
            } else {
                RunError::NoSubscriptionReadCompletely(problems)
            });
        }

        // Current vulnerability data: one Resource Graph read over the subscriptions read in full
        // (Resource Graph silently leaves out what the app cannot read, so only those are asked).
        let ids: Vec<String> = complete.iter().map(|s| s.subscription_id.clone()).collect();
        let vulnerabilities = match self.vulnerability_findings(&ids).await {
            Ok(piped) => Some(piped),
            Err(PipeError::Write(e)) => return Err(e.into()),
            Err(PipeError::Read(e)) => {
                problems.push(format!(
                    "the vulnerability query (Resource Graph) failed, so no subscription's findings can be concluded: {e}"
                ));
                None
            }
        };
        let concluded: Vec<&Subscription> = match &vulnerabilities {
            Some(piped) if piped.report.complete => complete.clone(),
            Some(piped) => {
                problems.push(format!(
                    "the vulnerability query (Resource Graph) did not provably reach its end ({}), so no subscription's findings can be concluded",
                    piped.report.reason
                ));
                Vec::new()
            }
            None => Vec::new(),
        };
        if let Some(piped) = &vulnerabilities {
            reads.push(("vulnerability findings".into(), piped.report.clone()));
        }

        // Posture of the subscriptions read in full, once per run: the history is per run.
        let captured_at = Utc::now();
        self.store
            .record_posture(self.id(), self.run_id, captured_at, &scores, &controls)
            .await?;
        if let Some(tenant) = weighted_percent(&scores) {
            self.progress.note(&format!(
                "tenant secure score {tenant:.2} % (Microsoft's weighting: Σ weight × current / max ÷ Σ weight)"
            ));
        }
        for sub in &complete {
            let outcome = if concluded
                .iter()
                .any(|c| c.subscription_id == sub.subscription_id)
            {
                SubscriptionReadOutcome::Ok
            } else {
                SubscriptionReadOutcome::Failed(
                    "its vulnerability findings could not be read completely".into(),
                )
            };
            self.record_read(sub, outcome).await?;
        }

        if concluded.is_empty() {
            self.settle(Verdict::Incomplete(problems.join(". ")));
            return Ok(());
        }
        let previous = self.last_complete_full_run().await?;
        let named: Vec<(&str, &ReadReport)> = reads.iter().map(|(w, r)| (w.as_str(), r)).collect();
        let mut verdict = judge(
            &named,
            self.outcome.findings.read,
            previous.as_ref().map(|run| run.findings.read),
            self.request.accept_mass_changes,
        );
        // Recommendations are concluded too (unseen ones become Removed): an answer that lost half
        // of them is held like a collapsed vulnerability read.
        if verdict.is_complete() && !self.request.accept_mass_changes {
            verdict = collapse(
                "recommendations",
                self.outcome.recommendations.read,
                previous.as_ref().map(|run| run.recommendations.read),
                "resources deleted, Defender plans turned off",
            )
            .unwrap_or(verdict);
        }
        let ids: Vec<String> = concluded
            .iter()
            .map(|s| s.subscription_id.clone())
            .collect();
        self.conclude(verdict, ids, &problems).await
    }

    /// Reads one subscription: score, controls, recommendations (with their resources as assets),
    /// legacy sub-assessments.
    async fn read_subscription(
        &mut self,
        sub: &Subscription,
        metadata: Arc<HashMap<String, AssessmentMetadataProperties>>,
        resources: &mut Resources,
    ) -> Result<SubscriptionRead, PipeError> {
        let id = sub.subscription_id.as_str();
        let mut reads = Vec::new();
        let (items, report) = self.client.secure_scores(id).collect_all().await?;
        let score = items
            .iter()
            .find(|s| {
                s.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case("ascScore"))
            })
            .or(items.first())
            .cloned()
            .map(|s| s.into_model(id, sub.display_name.clone()));
        reads.push(("secure score".to_owned(), report));

        let (items, report) = self.client.secure_score_controls(id).collect_all().await?;
        let controls = items.into_iter().map(|c| c.into_model(id)).collect();
        reads.push(("control scores".to_owned(), report));

        let before = resources.len();
        let read = self
            .recommendations(sub, Arc::clone(&metadata), resources)
            .await;
        let (piped, parents) = match read {
            // A cloud without assessments 2025-05-04 (and its risk): once more with 2021-06-01.
            // The refusal comes before any record, so nothing was written twice.
            Err(PipeError::Read(e)) if self.client.use_assessments_fallback(&e) => {
                tracing::info!(
                    message = "Assessments api-version not served here; reading without risk.",
                    subscription = id,
                    error = %e
                );
                self.progress.note(&format!(
                    "Azure does not serve assessments api-version {} here, so recommendations are read without Microsoft's risk level ({})",
                    rampart_microsoft::ASSESSMENTS_API,
                    rampart_microsoft::ASSESSMENTS_FALLBACK_API
                ));
                self.recommendations(sub, metadata, resources).await?
            }
            other => other?,
        };
        self.outcome.assets.read += (resources.len() - before) as u64;
        self.outcome.recommendations.read += piped.report.records;
        add(&mut self.outcome.recommendations, piped.counts.other);
        add(&mut self.outcome.assets, piped.counts.assets);
        reads.push(("recommendations".to_owned(), piped.report));

        match self.legacy_findings(sub, &parents).await {
            Ok((piped, produced)) => {
                self.count_findings(&piped, produced);
                reads.push((
                    "legacy vulnerability sub-assessments".to_owned(),
                    piped.report,
                ));
            }
            // Deprecated since 2026-07-31: a tenant may answer with an error instead of an empty
            // list (reference, headline). Only a refusal or a transient failure matters.
            Err(PipeError::Read(ApiError::Refused(e))) if matches!(e.status, 400 | 404 | 410) => {
                tracing::info!(
                    message = "Legacy sub-assessments unavailable; reading individual recommendations only.",
                    subscription = id,
                    status = e.status
                );
            }
            Err(e) => return Err(e),
        }
        Ok(SubscriptionRead {
            score,
            controls,
            reads,
        })
    }

    /// Assessments → recommendations (built-in ones: individual `SoftwareUpdate` ones are findings,
    /// read through Resource Graph) and their resources → assets; with the grouped ones'
    /// evaluation dates, for their legacy sub-assessments.
    async fn recommendations(
        &mut self,
        sub: &Subscription,
        metadata: Arc<HashMap<String, AssessmentMetadataProperties>>,
        resources: &mut Resources,
    ) -> Result<(Piped<Both>, Parents), PipeError> {
        let (store, id, run) = (Arc::clone(&self.store), self.id(), self.run_id);
        let batch = self.batch();
        let sub_id = sub.subscription_id.clone();
        let sub_name = sub.display_name.clone();
        let mut parents = Parents::new();
        let grouped = &mut parents;
        let piped = pipe(
            self.client.assessments(&sub.subscription_id),
            move |a: Assessment| {
                let asset = a.asset(sub_name.as_deref());
                if let Some(asset) = &asset {
                    resources.insert(fingerprint(&asset.source_id));
                }
                if let Some(first) = grouped_first_evaluation(&a) {
                    grouped.insert(a.id.to_ascii_lowercase(), first);
                }
                let recommendation = if a.is_individual() {
                    None
                } else {
                    let key = a.name.clone().unwrap_or_default().to_ascii_lowercase();
                    Some(a.into_model(&sub_id, metadata.get(&key)))
                };
                Some((asset, recommendation))
            },
            batch,
            move |mut batch: Batch<(Option<Asset>, Option<Recommendation>)>| {
                let store = Arc::clone(&store);
                async move {
                    let (assets, recs): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
                    let assets = unique_assets(assets.into_iter().flatten());
                    let recs: Vec<Recommendation> = recs.into_iter().flatten().collect();
                    let mut counts = Both::default();
                    if !assets.is_empty() {
                        counts.assets = store.upsert_assets(id, run, &assets).await?;
                    }
                    if !recs.is_empty() {
                        counts.other = store.upsert_recommendations(id, run, &recs).await?;
                    }
                    Ok(counts)
                }
            },
            self.progress,
        )
        .await?;
        Ok((piped, parents))
    }

    /// Legacy grouped findings (`subAssessments`, 2019-01-01-preview), and how many findings they
    /// made (a row holds several CVEs).
    async fn legacy_findings(
        &mut self,
        sub: &Subscription,
        parents: &Parents,
    ) -> Result<(Piped<Both>, u64), PipeError> {
        let (store, id, run) = (Arc::clone(&self.store), self.id(), self.run_id);
        let mut produced = 0u64;
        let piped = pipe(
            self.client.sub_assessments(&sub.subscription_id),
            |s: SubAssessment| {
                let asset = s.asset();
                let parent = s
                    .parent_assessment_id()
                    .and_then(|p| parents.get(&p).copied());
                let findings = s.into_findings(parent);
                produced += findings.len() as u64;
                (!findings.is_empty()).then_some((asset, findings))
            },
            self.batch(),
            move |batch| write_finding_batch(Arc::clone(&store), id, run, batch),
            self.progress,
        )
        .await?;
        Ok((piped, produced))
    }

    /// The individual `SoftwareUpdate` and `ServiceUpgrade` recommendations of `subscriptions`,
    /// one finding per CVE of their `CvesDetails` (expanded here, never by Resource Graph's
    /// `mv-expand`, which stops at 128). Findings whose CVE entry carried only its id wait for the
    /// tenant-scope `cvedetails` rows before they are written.
    async fn vulnerability_findings(
        &mut self,
        subscriptions: &[String],
    ) -> Result<Piped<Both>, PipeError> {
        self.progress
            .phase("reading vulnerability findings (Resource Graph)");
        let (store, id, run) = (Arc::clone(&self.store), self.id(), self.run_id);
        let mut produced = 0u64;
        let mut refused = 0u64;
        let mut held: Vec<(Option<Asset>, CloudFinding)> = Vec::new();
        let mut piped = pipe(
            self.client.vulnerability_rows(subscriptions),
            |row: VulnerabilityRow| {
                let asset = row.asset();
                let row_id = row.id.clone();
                match row.into_findings() {
                    Ok(out) => {
                        for why in &out.refused {
                            tracing::warn!(message = "CVE entry skipped.", recommendation = %row_id, reason = %why);
                        }
                        refused += out.refused.len() as u64;
                        produced += out.findings.len() as u64;
                        let (later, now): (Vec<_>, Vec<_>) =
                            out.findings.into_iter().partition(|f| f.needs_details);
                        held.extend(later.into_iter().map(|f| (asset.clone(), f)));
                        Some((asset, now))
                    }
                    Err(e) => {
                        tracing::warn!(message = "Vulnerability row skipped.", recommendation = %row_id, reason = %e);
                        None
                    }
                }
            },
            self.batch(),
            move |batch| write_finding_batch(Arc::clone(&store), id, run, batch),
            self.progress,
        )
        .await?;
        if !held.is_empty() {
            piped.counts += self.enrich_and_write(held).await?;
        }
        piped.skipped += refused;
        self.count_findings(&piped, produced);
        self.progress.phase_done(produced);
        Ok(piped)
    }

    /// Completes findings from the tenant-scope `microsoft.security/cvedetails` rows, then writes
    /// them. Those rows are extra detail: when they cannot be read (no tenant-wide role, a
    /// failure), the findings keep the recommendation's severity and are written all the same.
    async fn enrich_and_write(
        &mut self,
        mut held: Vec<(Option<Asset>, CloudFinding)>,
    ) -> Result<Both, PipeError> {
        self.progress
            .phase("reading CVE details (Resource Graph, tenant scope)");
        let mut ids: Vec<CveId> = held
            .iter()
            .map(|(_, f)| f.finding.key.cve_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        let mut details = HashMap::new();
        for chunk in ids.chunks(CVE_DETAILS_PER_QUERY) {
            match self.client.cve_details(chunk).collect_all().await {
                Ok((rows, _)) => {
                    for row in rows {
                        if let Some(cve) = row.cve() {
                            details.insert(cve.to_ascii_uppercase(), row);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(message = "CVE details unavailable.", error = %e);
                    self.progress.note(&format!(
                        "CVE details (microsoft.security/cvedetails) could not be read, so {} findings keep their recommendation's severity and have no CVSS: {e}",
                        held.len()
                    ));
                    break;
                }
            }
        }
        for (_, f) in &mut held {
            if let Some(d) = details.get(f.finding.key.cve_id.as_str()) {
                f.enrich(d);
            }
        }
        self.progress.phase_done(details.len() as u64);
        let mut counts = Both::default();
        let size = self.options.write_batch.max(1);
        while !held.is_empty() {
            let rest = held.split_off(held.len().min(size));
            let batch = std::mem::replace(&mut held, rest);
            let (assets, findings): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            counts += write_findings(
                &self.store,
                self.id(),
                self.run_id,
                assets.into_iter().flatten(),
                findings,
            )
            .await
            .map_err(PipeError::Write)?;
        }
        Ok(counts)
    }

    /// Counts a findings read: `produced` findings (a row or sub-assessment holds several CVEs).
    fn count_findings(&mut self, piped: &Piped<Both>, produced: u64) {
        let f = &mut self.outcome.findings;
        f.read += produced;
        f.skipped += piped.skipped;
        add(f, piped.counts.other);
        // CVEs new to the catalogue, or completed; a CVE comes once per finding, so no `read`.
        add(&mut self.outcome.vulnerabilities, piped.counts.catalogue);
        // Assets first met in a finding (not in any recommendation) count as assets.
        self.outcome.assets.new += piped.counts.assets.new;
        self.outcome.assets.reopened += piped.counts.assets.reopened;
    }

    /// Reconciles the subscriptions read completely and sets the run's status: succeeded when
    /// every subscription was, partial (with each problem in words) otherwise.
    async fn conclude(
        &mut self,
        verdict: Verdict,
        subscriptions: Vec<String>,
        problems: &[String],
    ) -> Result<(), RunError> {
        let scope = ReconcileScope::Subscriptions(subscriptions);
        let verdict = self.reconcile(verdict, scope, &RESOURCES).await?;
        if verdict.is_complete() && !problems.is_empty() {
            let why = format!(
                "{}. Nothing was concluded for {}; the other subscriptions were synced and concluded",
                problems.join(". "),
                if problems.len() == 1 { "it" } else { "those" }
            );
            self.outcome.status = RunStatus::Partial;
            self.outcome.error = Some(why.clone());
            self.outcome.verdict = Some(Verdict::Incomplete(why));
        } else {
            self.settle(verdict);
        }
        Ok(())
    }
}

/// [`write_findings`] of one batch of the findings pipes: each record's asset and its findings.
async fn write_finding_batch(
    store: Arc<dyn Store>,
    id: IntegrationId,
    run: RunId,
    mut batch: Batch<(Option<Asset>, Vec<CloudFinding>)>,
) -> Result<Both, StoreError> {
    let (assets, findings): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
    let findings: Vec<CloudFinding> = findings.into_iter().flatten().collect();
    write_findings(&store, id, run, assets.into_iter().flatten(), findings).await
}

/// Upserts the assets findings are on before the findings: the store would otherwise create an
/// unknown asset as an MDE `device`.
async fn write_findings(
    store: &Arc<dyn Store>,
    id: IntegrationId,
    run: RunId,
    assets: impl Iterator<Item = Asset>,
    findings: Vec<CloudFinding>,
) -> Result<Both, StoreError> {
    let assets = unique_assets(assets);
    let mut counts = Both::default();
    if !assets.is_empty() {
        counts.assets = store.upsert_assets(id, run, &assets).await?;
    }
    if !findings.is_empty() {
        // Cloud-only CVEs belong in the catalogue too (the Vulnerabilities page, exports), with
        // what Microsoft said of the CVE (published and modified dates, vector, description);
        // `fill` never overwrites what Defender for Endpoint said of a CVE.
        let (findings, facts): (Vec<_>, Vec<Vulnerability>) = findings
            .into_iter()
            .map(|c| {
                let mut facts = c.cve;
                facts.severity = facts.severity.or(c.finding.severity);
                facts.cvss = facts.cvss.or(c.finding.cvss);
                (c.finding, facts)
            })
            .unzip();
        counts.other = store.upsert_findings(id, run, &findings).await?;
        counts.catalogue = store.fill_vulnerabilities(&facts).await?;
    }
    Ok(counts)
}

/// The `firstEvaluationDate` of a grouped recommendation that has sub-assessments.
fn grouped_first_evaluation(a: &Assessment) -> Option<DateTime<Utc>> {
    let data = &a.properties.additional_data;
    if !data
        .keys()
        .any(|k| k.eq_ignore_ascii_case("subAssessmentsLink"))
    {
        return None;
    }
    parse_microsoft_timestamp(a.properties.status.first_evaluation_date.as_deref()?).ok()
}

fn fingerprint(id: &str) -> u64 {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// One copy of each asset of a batch (a resource has several recommendations).
fn unique_assets(assets: impl Iterator<Item = Asset>) -> Vec<Asset> {
    let mut seen = HashSet::new();
    assets
        .filter(|a| seen.insert(a.source_id.clone()))
        .collect()
}

fn add(counts: &mut EntityCounts, c: UpsertCounts) {
    counts.new += c.new;
    counts.updated += c.updated;
    counts.reopened += c.reopened;
}

/// `'Prod Workloads' (291bba3f-…)`.
pub(crate) fn label(s: &Subscription) -> String {
    match &s.display_name {
        Some(n) => format!("'{n}' ({})", s.subscription_id),
        None => s.subscription_id.clone(),
    }
}

/// Why a subscription's read failed, and what to do.
fn explain_subscription_error(e: &ApiError, sub: &Subscription) -> String {
    if is_authorization_failed(e) {
        format!(
            "Azure refused to show the app this subscription's Defender data (HTTP 403 AuthorizationFailed): the app is listed there, but holds no role that can read it. {}",
            authorization_failed_fix(&sub.subscription_id)
        )
    } else {
        e.to_string()
    }
}
