//! Keeping every open finding's decision, priority and due date current (issue 14; the rules are
//! `rampart_model::priority`, documented in docs/prioritisation.md).
//!
//! A sync run calls [`assess_integration`] once its rows are written and reconciled; a KEV
//! refresh calls it for the CVEs whose listing changed. It reads the integration's open findings
//! page by page and writes only the findings whose stored decision, priority, due date or
//! explanation differ from the new ones, each page in one transaction.
//!
//! The work is per distinct input, not per finding: a CVE's catalogue entry and KEV entry are read
//! once, an asset's exposure and human impact are worked out once, and the priority is computed
//! once per (CVE, asset profile, the finding's own CVSS and exploitability), which millions of
//! findings share.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use futures::TryStreamExt;
use rampart_model::priority::{
    CriticalityMatch, CriticalityRule, Decision, DeviceExposureLevel, ExposureSignals, ExposureWhy,
    Factor, FactorPolicy, Factors, FindingContext, HumanImpact, HumanImpactWhy, KevEntry,
    SlaPolicy, SystemExposure, clock_start, criticality_for, exposure, human_impact,
};
use rampart_model::{
    Asset, CveId, Finding, FindingKey, Integration, IntegrationId, Product, Vulnerability,
};
use rampart_store::{
    AssessScope, AssessmentInput, AssessmentWrite, AssetFilter, Explanation, Store, StoreError,
    StoredAssessment,
};

/// Findings read (and written) per page.
const PAGE: u32 = 5000;

/// How findings are prioritised: the model's defaults until they are configurable.
#[derive(Debug, Clone, Default)]
pub struct PriorityPolicy {
    pub factors: FactorPolicy,
    pub sla: SlaPolicy,
    pub rules: Vec<CriticalityRule>,
}

/// What an assessment did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AssessCounts {
    /// Open findings read.
    pub read: u64,
    /// Findings assessed for the first time (new, or reopened).
    pub assessed: u64,
    /// Findings whose decision, priority, due date or explanation changed.
    pub changed: u64,
    /// Distinct inputs the priority was computed for.
    pub computed: u64,
}

/// What about an asset moves a finding's priority, worked out once per asset. Assets with the
/// same profile give the same factors for the same CVE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AssetProfile {
    exposure: Factor<SystemExposure, ExposureWhy>,
    human_impact: Factor<HumanImpact, HumanImpactWhy>,
    device_exposure: Option<DeviceExposureLevel>,
}

/// The assets of one integration by id, each with its profile (an index into `representatives`).
struct Assets {
    profile_of: HashMap<i64, usize>,
    /// One asset per profile, with its criticality: what `Factors::for_finding` is given.
    representatives: Vec<(Asset, Option<CriticalityMatch>)>,
}

impl Assets {
    async fn load(
        store: &dyn Store,
        integration: IntegrationId,
        policy: &PriorityPolicy,
    ) -> Result<Self, StoreError> {
        let mut assets = Assets {
            profile_of: HashMap::new(),
            representatives: Vec::new(),
        };
        let mut profiles: HashMap<AssetProfile, usize> = HashMap::new();
        let mut stream = store.stream_assets(
            rampart_store::Visibility::All,
            AssetFilter {
                integration: Some(integration),
                ..AssetFilter::default()
            },
        );
        while let Some(stored) = stream.try_next().await? {
            let asset = stored.asset;
            let criticality = criticality_for(&asset, &policy.rules);
            let profile = AssetProfile {
                exposure: exposure(Some(&asset), &signals(), &policy.factors),
                human_impact: human_impact(Some(&asset), criticality.as_ref()),
                device_exposure: asset
                    .exposure_level
                    .as_deref()
                    .and_then(DeviceExposureLevel::parse),
            };
            let next = profiles.len();
            let index = *profiles.entry(profile).or_insert(next);
            if index == assets.representatives.len() {
                assets.representatives.push((asset, criticality));
            }
            assets.profile_of.insert(stored.id, index);
        }
        Ok(assets)
    }
}

/// What Rampart knows of reachability beyond the asset record. The asset's tags (MDE's
/// `Internet facing`) are read by the model; Defender for Cloud's risk factors and operator rules
/// are not stored yet, so they are unknown here (docs/prioritisation.md says what that assumes).
fn signals() -> ExposureSignals {
    ExposureSignals::default()
}

/// What one CVE contributes, read once.
#[derive(Default)]
struct CveFacts {
    vulnerability: Option<Vulnerability>,
    kev: Option<KevEntry>,
}

/// The inputs a finding's priority depends on besides its asset's profile and its CVE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct InputKey {
    cve: CveId,
    profile: Option<usize>,
    cvss_bits: Option<u64>,
    exploitability: Option<String>,
}

/// A computed priority, as stored.
#[derive(Debug, Clone, Copy)]
struct Computed {
    decision: Decision,
    score: u8,
    explanation_id: i64,
}

/// The id of an explanation: the first 8 bytes of the SHA-256 of its JSON. Stable across
/// processes and versions (unlike `std`'s hasher), so equal explanations share one row.
fn digest(json: &str) -> i64 {
    let hash = Sha256::digest(json.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    i64::from_be_bytes(first)
}

/// A finding carrying only what `Factors::for_finding` reads of it (its CVSS and exploitability).
fn finding_stub(cve: &CveId, cvss: Option<f64>, exploitability: Option<String>) -> Finding {
    Finding {
        key: FindingKey {
            asset_source_id: String::new(),
            software_vendor: String::new(),
            software_name: String::new(),
            software_version: String::new(),
            cve_id: cve.clone(),
        },
        asset_name: None,
        asset_os_platform: None,
        asset_os_version: None,
        severity: None,
        cvss,
        exploitability,
        recommended_update: None,
        recommendation_reference: None,
        first_seen: None,
        last_seen: None,
    }
}

/// The new stored assessment of a finding, or `None` when what is stored is current.
///
/// A finding assessed for the first time is due its decision's SLA after its clock started
/// (Microsoft's first-seen time). A later change of decision, priority or explanation at `at`
/// moves the due date to the earlier of the old one and `at` + the new decision's SLA: escalation
/// brings it forward, de-escalation keeps it (`SlaPolicy::due_after_change`).
fn next_assessment(
    input: &AssessmentInput,
    computed: Computed,
    sla: &SlaPolicy,
    at: DateTime<Utc>,
) -> Option<StoredAssessment> {
    match input.stored {
        None => {
            let start = clock_start(input.first_seen, input.first_observed);
            Some(StoredAssessment {
                decision: computed.decision,
                priority: computed.score,
                due_at: sla.due_at(computed.decision, start),
                clock_start: start,
                explanation_id: computed.explanation_id,
            })
        }
        Some(stored)
            if stored.decision == computed.decision
                && stored.priority == computed.score
                && stored.explanation_id == computed.explanation_id =>
        {
            None
        }
        Some(stored) => Some(StoredAssessment {
            decision: computed.decision,
            priority: computed.score,
            due_at: if stored.decision == computed.decision {
                stored.due_at
            } else {
                sla.due_after_change(stored.due_at, computed.decision, at)
            },
            clock_start: stored.clock_start,
            explanation_id: computed.explanation_id,
        }),
    }
}

/// Assesses the integration's open findings in `scope` and stores what changed, stamped `at`.
pub async fn assess_integration(
    store: &dyn Store,
    integration: &Integration,
    scope: AssessScope<'_>,
    policy: &PriorityPolicy,
    at: DateTime<Utc>,
) -> Result<AssessCounts, StoreError> {
    // Loaded with the first page that has findings to assess: a re-sync that changed nothing
    // reads no asset.
    let mut loaded: Option<Assets> = None;
    // Defender for Cloud's catalogue entries carry no exploit data: passing them would read as
    // "no known exploit" (see `FindingContext::vulnerability`).
    let use_catalogue = integration.product == Product::Endpoint;
    let mut facts: HashMap<CveId, CveFacts> = HashMap::new();
    let mut computed: HashMap<InputKey, Computed> = HashMap::new();
    // Every explanation computed, and those already sent to the store in this assessment.
    let mut explanations: HashMap<i64, Explanation> = HashMap::new();
    let mut sent: HashSet<i64> = HashSet::new();
    let mut counts = AssessCounts::default();
    let mut after = None;
    loop {
        let page = store
            .assessment_inputs(integration.id, scope, after, PAGE)
            .await?;
        counts.read += page.items.len() as u64;
        if page.items.is_empty() {
            break;
        }
        let assets = match &mut loaded {
            Some(assets) => &*assets,
            None => &*loaded.insert(Assets::load(store, integration.id, policy).await?),
        };

        // The CVEs of this page not met before: their catalogue and KEV entries, in two reads.
        let mut new_cves: Vec<CveId> = page
            .items
            .iter()
            .map(|i| &i.cve_id)
            .filter(|c| !facts.contains_key(*c))
            .cloned()
            .collect();
        new_cves.sort_unstable();
        new_cves.dedup();
        for cve in &new_cves {
            facts.insert(cve.clone(), CveFacts::default());
        }
        if use_catalogue {
            for v in store.vulnerabilities_for(&new_cves).await? {
                if let Some(f) = facts.get_mut(&v.cve_id) {
                    f.vulnerability = Some(v);
                }
            }
        }
        for k in store.kev_entries_for(&new_cves).await? {
            if let Some(f) = facts.get_mut(&k.cve_id) {
                f.kev = Some(k);
            }
        }

        let mut writes = Vec::new();
        for input in &page.items {
            let profile = assets.profile_of.get(&input.asset_id).copied();
            let key = InputKey {
                cve: input.cve_id.clone(),
                profile,
                cvss_bits: input.cvss.map(f64::to_bits),
                exploitability: input.exploitability.clone(),
            };
            let result = match computed.get(&key) {
                Some(c) => *c,
                None => {
                    let cve = facts.get(&input.cve_id);
                    let representative = profile.map(|p| &assets.representatives[p]);
                    let context = FindingContext {
                        vulnerability: cve.and_then(|c| c.vulnerability.as_ref()),
                        asset: representative.map(|(a, _)| a),
                        kev: cve.and_then(|c| c.kev.as_ref()),
                        exposure: signals(),
                        criticality: representative.and_then(|(_, c)| c.clone()),
                        cloud_risk: None,
                    };
                    let finding =
                        finding_stub(&input.cve_id, input.cvss, input.exploitability.clone());
                    let priority =
                        Factors::for_finding(&finding, &context, &policy.factors).priority();
                    let explanation = Explanation::new(&priority.contributions, digest);
                    let c = Computed {
                        decision: priority.decision,
                        score: priority.score,
                        explanation_id: explanation.id,
                    };
                    explanations.entry(explanation.id).or_insert(explanation);
                    counts.computed += 1;
                    computed.insert(key, c);
                    c
                }
            };
            if let Some(assessment) = next_assessment(input, result, &policy.sla, at) {
                if input.stored.is_none() {
                    counts.assessed += 1;
                } else {
                    counts.changed += 1;
                }
                writes.push(AssessmentWrite {
                    finding_id: input.finding_id,
                    assessment,
                });
            }
        }
        // An explanation is stored with the first findings that refer to it.
        let keep: Vec<Explanation> = writes
            .iter()
            .map(|w| w.assessment.explanation_id)
            .filter(|id| sent.insert(*id))
            .filter_map(|id| explanations.get(&id).cloned())
            .collect();
        store.write_assessments(&keep, &writes, at).await?;
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(counts)
}

/// The `sync_state` keys of an integration's last assessment: when it started, and which
/// prioritisation model made it.
const ASSESSED_AT: &str = "priority_assessed_at";
const ASSESSED_RUN: &str = "priority_assessed_run";
const ASSESSED_BY: &str = "priority_model";
/// Changes whenever the model's rules or this module's inputs change, so that the next run
/// re-assesses every finding instead of only those whose inputs changed.
const MODEL_VERSION: &str = "1";

/// What a sync run re-assesses: only the findings whose inputs may have changed since the
/// integration's previous assessment, or all of them when that is not known for sure: the first
/// run, after a change of the model, when the previous run did not finish its assessment (what it
/// changed is not recorded anywhere else), when a KEV catalogue was read since (its own
/// re-assessment may have failed), and for Defender for Cloud (a run may upsert one resource
/// several times, so an asset's change marker is not reliable there).
pub(crate) async fn assess_after_run(
    store: &dyn Store,
    integration: &Integration,
    run_id: i64,
    at: DateTime<Utc>,
) -> Result<AssessCounts, StoreError> {
    // What this assessment reads is what the store holds from now on: the catalogue entries this
    // run wrote are older, so the next run compares against this moment, not the run's start
    // (that made every run after a catalogue read re-assess every finding).
    let inputs_read_at = Utc::now();
    let previous = store
        .get_sync_state(integration.id, ASSESSED_AT)
        .await?
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc));
    let same_model = store
        .get_sync_state(integration.id, ASSESSED_BY)
        .await?
        .as_deref()
        == Some(MODEL_VERSION);
    let kev_read = store
        .intel_source(rampart_store::KEV_SOURCE)
        .await?
        .and_then(|s| s.fetched_at);
    let assessed_run = store
        .get_sync_state(integration.id, ASSESSED_RUN)
        .await?
        .and_then(|r| r.parse::<i64>().ok());
    let previous_run = store
        .list_runs(&rampart_store::Visibility::All, integration.id, 2)
        .await?
        .into_iter()
        .map(|r| r.id)
        .find(|&id| id != run_id);
    let trusted = same_model
        && integration.product == Product::Endpoint
        && assessed_run.is_some()
        && assessed_run == previous_run;
    let scope = match previous {
        Some(since) if trusted && kev_read.is_none_or(|k| k <= since) => {
            AssessScope::ChangedBy { run_id, since }
        }
        _ => AssessScope::All,
    };
    let counts =
        assess_integration(store, integration, scope, &PriorityPolicy::default(), at).await?;
    store
        .set_sync_state(integration.id, ASSESSED_AT, &inputs_read_at.to_rfc3339())
        .await?;
    store
        .set_sync_state(integration.id, ASSESSED_RUN, &run_id.to_string())
        .await?;
    store
        .set_sync_state(integration.id, ASSESSED_BY, MODEL_VERSION)
        .await?;
    Ok(counts)
}
