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

use std::collections::HashSet;
use std::sync::Mutex;

use chrono::{DateTime, SubsecRound, Utc};
use sha2::{Digest, Sha256};

use futures::TryStreamExt;
use rampart_model::priority::{
    CloudRiskLevel, CriticalityMatch, CriticalityRule, Decision, DeviceExposureLevel,
    ExposureSignals, ExposureWhy, Factor, FactorPolicy, Factors, FindingContext, HumanImpact,
    HumanImpactWhy, KevEntry, SlaDays, SlaPolicy, SystemExposure, clock_start, criticality_for,
    exposure, human_impact,
};
use rampart_model::{
    Asset, CveId, Finding, FindingKey, Integration, IntegrationId, Product, RunId, Vulnerability,
};
use rampart_store::{
    AssessScope, AssessmentInput, AssessmentWrite, AssetFilter, Explanation, InsertAssessor,
    RecommendationFilter, Store, StoreError, StoredAssessment, Visibility,
};

/// The maps of a run's assessment are looked up several times per finding (its asset's profile,
/// its CVE, its exploitability, the computed inputs): hashed with foldhash, seeded per process,
/// at a fraction of SipHash's cost.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

mod explanations;

use explanations::Explanations;

/// Findings read (and written) per page.
const PAGE: u32 = 5000;

/// How findings are prioritised: the model's factor policy, and the installation's settings
/// (its SLA or the integration's own, its criticality rules).
#[derive(Debug, Clone, Default)]
pub struct PriorityPolicy {
    pub factors: FactorPolicy,
    pub sla: SlaPolicy,
    pub rules: Vec<CriticalityRule>,
}

impl PriorityPolicy {
    /// The policy for an integration's findings as stored now: its own SLA if it has one, else
    /// the installation's, and the criticality rules.
    pub async fn load(store: &dyn Store, integration: IntegrationId) -> Result<Self, StoreError> {
        let installation = store.sla_settings().await?.days;
        let days = store
            .integration_sla(&Visibility::All, integration)
            .await?
            .map_or(installation, |own| own.days);
        // The store checked the days when they were saved; a row that no longer passes (edited
        // by hand) is refused in words rather than silently replaced.
        let sla = SlaPolicy::new(days).map_err(|e| {
            StoreError::Corrupt(format!(
                "the stored SLA of integration {integration} is not valid ({e}): save it again in the portal"
            ))
        })?;
        let rules = store
            .criticality_rules()
            .await?
            .into_iter()
            .map(|r| r.rule)
            .collect();
        Ok(PriorityPolicy {
            factors: FactorPolicy::default(),
            sla,
            rules,
        })
    }

    /// What is recorded of the policy an integration's findings were assessed with: its SLA days
    /// (to rebase due dates when they change) and a digest of its rules.
    fn record(&self) -> String {
        let d = SlaDays::from(self.sla);
        let rules = serde_json::to_string(&self.rules).unwrap_or_default();
        let digest = Sha256::digest(rules.as_bytes());
        let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{},{},{},{};{hex}",
            d.immediate, d.out_of_cycle, d.scheduled, d.defer
        )
    }
}

/// The SLA of a recorded policy ([`PriorityPolicy::record`]).
fn recorded_sla(record: &str) -> Option<SlaPolicy> {
    let (days, _) = record.split_once(';')?;
    let mut d = days.split(',').map(|n| n.parse::<u32>().ok());
    let days = SlaDays {
        immediate: d.next()??,
        out_of_cycle: d.next()??,
        scheduled: d.next()??,
        defer: d.next()??,
    };
    SlaPolicy::new(days).ok()
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

/// The assets of one integration, each with its profile (an index into `representatives`).
struct Assets {
    profile_of: HashMap<i64, usize>,
    /// The same by Microsoft's id of the asset, for findings not stored yet.
    profile_of_source: HashMap<String, usize>,
    /// One asset per profile, with its criticality and reachability signals: what
    /// `Factors::for_finding` is given.
    representatives: Vec<(Asset, Option<CriticalityMatch>, ExposureSignals)>,
    /// Defender for Cloud's risk level of each unhealthy recommendation, by lower-cased
    /// assessment id (empty for Defender for Endpoint).
    risk_level_of: HashMap<String, CloudRiskLevel>,
    /// The highest risk level of each resource's vulnerability recommendations
    /// ([`VULNERABILITY_RECOMMENDATIONS`]), by lower-cased resource id.
    vulnerability_risk_of: HashMap<String, CloudRiskLevel>,
}

impl Assets {
    /// `cloud`: a Defender for Cloud integration, whose recommendations' risk is read too.
    async fn load(
        store: &dyn Store,
        integration: IntegrationId,
        cloud: bool,
        policy: &PriorityPolicy,
    ) -> Result<Self, StoreError> {
        let risks = if cloud {
            CloudRisks::load(store, integration).await?
        } else {
            CloudRisks::default()
        };
        let mut assets = Assets {
            profile_of: HashMap::default(),
            profile_of_source: HashMap::default(),
            representatives: Vec::new(),
            risk_level_of: risks.level_of,
            vulnerability_risk_of: risks.vulnerability_level_of,
        };
        let mut profiles: HashMap<AssetProfile, usize> = HashMap::default();
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
            let signals = risks
                .signals_of
                .get(&stored.id)
                .cloned()
                .unwrap_or_default();
            let profile = AssetProfile {
                exposure: exposure(Some(&asset), &signals, &policy.factors),
                human_impact: human_impact(Some(&asset), criticality.as_ref()),
                device_exposure: asset
                    .exposure_level
                    .as_deref()
                    .and_then(DeviceExposureLevel::parse),
            };
            let next = profiles.len();
            let index = *profiles.entry(profile).or_insert(next);
            assets.profile_of.insert(stored.id, index);
            assets
                .profile_of_source
                .insert(asset.source_id.clone(), index);
            if index == assets.representatives.len() {
                assets.representatives.push((asset, criticality, signals));
            }
        }
        Ok(assets)
    }

    /// Defender for Cloud's risk level of the recommendation a finding came from: its own
    /// (`reference` is its assessment id), a legacy sub-assessment's parent's, or else the
    /// level of its resource's vulnerability recommendation (the individual recommendations of
    /// the newer model may not be among those read).
    fn cloud_risk(&self, reference: Option<&str>) -> Option<CloudRiskLevel> {
        if self.risk_level_of.is_empty() {
            return None;
        }
        let reference = reference?.to_ascii_lowercase();
        if let Some(level) = self.risk_level_of.get(&reference) {
            return Some(*level);
        }
        if let Some(at) = reference.rfind("/subassessments/")
            && let Some(level) = self.risk_level_of.get(&reference[..at])
        {
            return Some(*level);
        }
        let resource =
            &reference[..reference.rfind("/providers/microsoft.security/assessments/")?];
        self.vulnerability_risk_of.get(resource).copied()
    }
}

/// Microsoft's recommendations that carry a resource's CVE findings (assessment keys; the
/// grouped model's, kept by Defender for Cloud for machines, containers and AKS nodes:
/// <https://learn.microsoft.com/en-us/azure/defender-for-cloud/recommendations-reference-compute>,
/// <https://learn.microsoft.com/en-us/azure/defender-for-cloud/recommendations-reference-container>).
const VULNERABILITY_RECOMMENDATIONS: [&str; 13] = [
    "1195afff-c881-495e-9bc5-1486211ae03f", // machines (MDVM, Qualys, BYOL)
    "77a4a140-e051-481a-84cc-d4bf2109bd65", // EC2 instances
    "0a03fa35-e381-4e2f-ace6-2b9913db3381", // GCP compute instances
    "c0b7cfc6-3172-465a-b378-53c7ff2cc0d5", // Azure registry container images
    "33422d8f-ab1e-42be-bc9a-38685bb567b9", // container images in Azure registry
    "c609cf0f-71ab-41e9-a3c6-9a1f7fe1b8d5", // Azure running container images
    "682b2595-d045-4cff-b5aa-46624eb2dd8f", // AWS running container images
    "e538731a-80c8-4317-a119-13075e002516", // GCP running container images
    "c27441ae-775c-45be-8ffa-655de37362ce", // AWS ECR images
    "5cc3a2c1-8397-456f-8792-fe9d0d4c9145", // GCP registry images
    "24a15fbd-cfe4-4dff-b2be-1c367a6b2031", // AKS nodes
    "dbd0cb49-b563-45e7-9724-889e799fa648", // registry images (Qualys, retired)
    "41503391-efa5-47ee-9282-4eff6131462c", // running container images (Qualys, retired)
];

/// What Defender for Cloud's risk assessment (assessments api-version 2025-05-04, with the
/// Defender CSPM plan: <https://learn.microsoft.com/en-us/azure/defender-for-cloud/risk-prioritization>)
/// says of an integration's resources, read from its unhealthy recommendations as the run
/// stored them. Risk factors such as internet exposure describe the resource, so a resource's
/// factors are those of all its recommendations. (MDE's internet-facing tag is read from the
/// asset itself by the model; operator exposure rules are not offered yet.)
#[derive(Default)]
struct CloudRisks {
    /// By asset row id: the risk factors of the asset's recommendations (`Some`, possibly
    /// empty, once Microsoft evaluated a risk for one of them) and whether one lies on an attack
    /// path.
    signals_of: HashMap<i64, ExposureSignals>,
    level_of: HashMap<String, CloudRiskLevel>,
    vulnerability_level_of: HashMap<String, CloudRiskLevel>,
}

impl CloudRisks {
    async fn load(store: &dyn Store, integration: IntegrationId) -> Result<Self, StoreError> {
        let mut risks = CloudRisks::default();
        let mut stream = store.stream_recommendations(
            Visibility::All,
            RecommendationFilter {
                integration: Some(integration),
                status: Some("Unhealthy".into()),
                ..RecommendationFilter::default()
            },
        );
        while let Some(stored) = stream.try_next().await? {
            let rec = stored.recommendation;
            let Some(risk) = rec.risk.filter(|r| !r.is_empty()) else {
                continue;
            };
            if let Some(level) = risk.level.as_deref().and_then(CloudRiskLevel::parse) {
                risks
                    .level_of
                    .insert(rec.assessment_id.to_ascii_lowercase(), level);
                if VULNERABILITY_RECOMMENDATIONS.contains(&rec.key.to_ascii_lowercase().as_str()) {
                    let highest = risks
                        .vulnerability_level_of
                        .entry(rec.resource_id.to_ascii_lowercase())
                        .or_insert(level);
                    *highest = (*highest).max(level);
                }
            }
            let Some(asset) = stored.asset_id else {
                continue;
            };
            let signals = risks.signals_of.entry(asset).or_default();
            let factors = signals.cloud_risk_factors.get_or_insert_with(Vec::new);
            for f in risk.factors {
                if !factors.contains(&f) {
                    factors.push(f);
                }
            }
            signals.attack_paths |= !risk.attack_paths.is_empty();
        }
        // The same factors in the same order whatever order the recommendations came in.
        for signals in risks.signals_of.values_mut() {
            if let Some(factors) = signals.cloud_risk_factors.as_mut() {
                factors.sort();
            }
        }
        Ok(risks)
    }
}

/// What one CVE contributes, read once.
#[derive(Default)]
struct CveFacts {
    vulnerability: Option<Vulnerability>,
    kev: Option<KevEntry>,
}

/// The inputs a finding's priority depends on: its CVE and exploitability (as indexes into
/// [`Knowledge`]'s tables, so that looking a finding up copies no string), its asset's profile
/// and its own CVSS score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct InputKey {
    cve: usize,
    profile: Option<usize>,
    cloud_risk: Option<CloudRiskLevel>,
    cvss_bits: Option<u64>,
    exploitability: Option<usize>,
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

/// Everything an assessment has read and worked out so far, shared by the run's pass over
/// stored findings ([`assess_integration`]) and the bulk path's assessment of new rows
/// ([`InlineAssessor`]), so that both give a finding exactly the same result: each CVE's
/// catalogue and KEV entries read once, each asset's profile worked out once, the priority
/// computed once per distinct input.
struct Knowledge {
    policy: PriorityPolicy,
    /// Defender for Cloud's catalogue entries carry no exploit data: passing them would read as
    /// "no known exploit" (see `FindingContext::vulnerability`).
    use_catalogue: bool,
    /// A Defender for Cloud integration: its recommendations' risk is an input.
    cloud: bool,
    cve_index: HashMap<CveId, usize>,
    facts: Vec<(CveId, CveFacts)>,
    exploitability_index: HashMap<String, usize>,
    exploitabilities: Vec<String>,
    computed: HashMap<InputKey, Computed>,
    /// Every explanation computed, by id.
    explanations: Explanations,
    /// Loaded when first needed: a re-sync that changed nothing reads no asset.
    assets: Option<Assets>,
    computations: u64,
}

impl Knowledge {
    fn new(integration: &Integration, policy: PriorityPolicy) -> Self {
        Knowledge {
            policy,
            use_catalogue: integration.product == Product::Endpoint,
            cloud: integration.product == Product::Cloud,
            cve_index: HashMap::default(),
            facts: Vec::new(),
            exploitability_index: HashMap::default(),
            exploitabilities: Vec::new(),
            computed: HashMap::default(),
            explanations: Explanations::default(),
            assets: None,
            computations: 0,
        }
    }

    /// Those of `cves` not met before, sorted and without repeats.
    fn unknown_cves<'c>(&self, cves: impl Iterator<Item = &'c CveId>) -> Vec<CveId> {
        let mut new: Vec<CveId> = cves
            .filter(|c| !self.cve_index.contains_key(*c))
            .cloned()
            .collect();
        new.sort_unstable();
        new.dedup();
        new
    }

    /// Reads the catalogue and KEV entries of `cves` (not met before: [`Knowledge::unknown_cves`]).
    async fn read_facts(
        store: &dyn Store,
        use_catalogue: bool,
        cves: &[CveId],
    ) -> Result<Vec<(CveId, CveFacts)>, StoreError> {
        let mut facts: HashMap<CveId, CveFacts> = cves
            .iter()
            .map(|c| (c.clone(), CveFacts::default()))
            .collect();
        if use_catalogue {
            for v in store.vulnerabilities_for(cves).await? {
                if let Some(f) = facts.get_mut(&v.cve_id) {
                    f.vulnerability = Some(v);
                }
            }
        }
        for k in store.kev_entries_for(cves).await? {
            if let Some(f) = facts.get_mut(&k.cve_id) {
                f.kev = Some(k);
            }
        }
        Ok(facts.into_iter().collect())
    }

    fn learn(&mut self, facts: Vec<(CveId, CveFacts)>) {
        for (cve, f) in facts {
            if !self.cve_index.contains_key(&cve) {
                self.cve_index.insert(cve.clone(), self.facts.len());
                self.facts.push((cve, f));
            }
        }
    }

    async fn learn_cves<'c>(
        &mut self,
        store: &dyn Store,
        cves: impl Iterator<Item = &'c CveId>,
    ) -> Result<(), StoreError> {
        let new = self.unknown_cves(cves);
        if !new.is_empty() {
            let facts = Self::read_facts(store, self.use_catalogue, &new).await?;
            self.learn(facts);
        }
        Ok(())
    }

    async fn load_assets(
        &mut self,
        store: &dyn Store,
        integration: IntegrationId,
    ) -> Result<(), StoreError> {
        if self.assets.is_none() {
            self.assets = Some(Assets::load(store, integration, self.cloud, &self.policy).await?);
        }
        Ok(())
    }

    /// Defender for Cloud's risk level of the recommendation a finding came from.
    fn cloud_risk(&self, reference: Option<&str>) -> Option<CloudRiskLevel> {
        self.assets.as_ref()?.cloud_risk(reference)
    }

    /// The priority of a finding of `cve` (whose facts were learnt) on an asset of `profile`,
    /// with its own CVSS score, exploitability and recommendation's risk level; `None` when the
    /// CVE was not learnt.
    fn compute(
        &mut self,
        cve: &CveId,
        profile: Option<usize>,
        cvss: Option<f64>,
        exploitability: Option<&str>,
        cloud_risk: Option<CloudRiskLevel>,
    ) -> Option<Computed> {
        let cve_at = *self.cve_index.get(cve)?;
        let exploitability_at = exploitability.map(|e| match self.exploitability_index.get(e) {
            Some(&i) => i,
            None => {
                let i = self.exploitabilities.len();
                self.exploitabilities.push(e.to_owned());
                self.exploitability_index.insert(e.to_owned(), i);
                i
            }
        });
        let key = InputKey {
            cve: cve_at,
            profile,
            cloud_risk,
            cvss_bits: cvss.map(f64::to_bits),
            exploitability: exploitability_at,
        };
        if let Some(c) = self.computed.get(&key) {
            return Some(*c);
        }
        let facts = &self.facts[cve_at].1;
        let representative =
            profile.and_then(|p| self.assets.as_ref().map(|a| &a.representatives[p]));
        let context = FindingContext {
            vulnerability: facts.vulnerability.as_ref().filter(|_| self.use_catalogue),
            asset: representative.map(|(a, _, _)| a),
            kev: facts.kev.as_ref(),
            exposure: representative
                .map(|(_, _, signals)| signals.clone())
                .unwrap_or_default(),
            criticality: representative.and_then(|(_, c, _)| c.clone()),
            cloud_risk,
        };
        let finding = finding_stub(cve, cvss, exploitability.map(str::to_owned));
        let priority = Factors::for_finding(&finding, &context, &self.policy.factors).priority();
        let explanation = Explanation::new(&priority.contributions, digest);
        let c = Computed {
            decision: priority.decision,
            score: priority.score,
            explanation_id: explanation.id,
        };
        self.explanations.insert(&explanation);
        self.computations += 1;
        self.computed.insert(key, c);
        Some(c)
    }
}

/// The new stored assessment of a finding, or `None` when what is stored is current.
///
/// A finding assessed for the first time is due its decision's SLA after its clock started
/// (Microsoft's first-seen time). A later change of decision, priority or explanation at `at`
/// moves the due date to the earlier of the old one and `at` + the new decision's SLA: escalation
/// brings it forward, de-escalation keeps it (`SlaPolicy::due_after_change`).
///
/// `previous`: the SLA the stored due dates were counted with, when it differs from `sla` (an
/// administrator changed it): see [`rebased_due`].
fn next_assessment(
    input: &AssessmentInput,
    computed: Computed,
    sla: &SlaPolicy,
    previous: Option<&SlaPolicy>,
    at: DateTime<Utc>,
) -> Option<StoredAssessment> {
    let Some(stored) = input.stored else {
        return Some(first_assessment(
            computed,
            sla,
            input.first_seen,
            input.first_observed,
        ));
    };
    let base = match previous {
        Some(old) if old != sla => rebased_due(&stored, old, sla),
        _ => stored.due_at,
    };
    let due_at = if stored.decision == computed.decision {
        base
    } else {
        sla.due_after_change(base, computed.decision, at)
    };
    if stored.decision == computed.decision
        && stored.priority == computed.score
        && stored.explanation_id == computed.explanation_id
        && stored.due_at == due_at
    {
        return None;
    }
    Some(StoredAssessment {
        decision: computed.decision,
        priority: computed.score,
        due_at,
        clock_start: stored.clock_start,
        explanation_id: computed.explanation_id,
    })
}

/// A stored due date once the SLA changed from `old` to `new` (docs/prioritisation.md, "SLA
/// settings"): a due date that is still its decision's old SLA after the clock started becomes
/// the new SLA after it (earlier or later); one an escalation or de-escalation moved keeps its
/// date, unless the new SLA after the clock's start is earlier. So a changed SLA never gives a
/// finding more time than the escalation rule left it.
fn rebased_due(stored: &StoredAssessment, old: &SlaPolicy, new: &SlaPolicy) -> DateTime<Utc> {
    let fresh = new.due_at(stored.decision, stored.clock_start);
    if stored.due_at == old.due_at(stored.decision, stored.clock_start) {
        fresh
    } else {
        stored.due_at.min(fresh)
    }
}

/// A finding's first assessment: its clock starts at Microsoft's first-seen time (or when
/// Rampart first read it, if earlier or unknown), and it is due its decision's SLA after that.
fn first_assessment(
    computed: Computed,
    sla: &SlaPolicy,
    first_seen: Option<DateTime<Utc>>,
    first_read: DateTime<Utc>,
) -> StoredAssessment {
    let start = clock_start(first_seen, first_read);
    StoredAssessment {
        decision: computed.decision,
        priority: computed.score,
        due_at: sla.due_at(computed.decision, start),
        clock_start: start,
        explanation_id: computed.explanation_id,
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
    assess_rebasing(
        store,
        integration,
        scope,
        policy,
        None,
        Explain::Changed,
        at,
    )
    .await
}

/// [`assess_integration`], moving due dates counted with the `previous` SLA to the policy's
/// ([`rebased_due`]).
async fn assess_rebasing(
    store: &dyn Store,
    integration: &Integration,
    scope: AssessScope<'_>,
    policy: &PriorityPolicy,
    previous: Option<&SlaPolicy>,
    explain: Explain,
    at: DateTime<Utc>,
) -> Result<AssessCounts, StoreError> {
    let mut known = Knowledge::new(integration, policy.clone());
    // Explanations already sent to the store in this assessment.
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
        known.load_assets(store, integration.id).await?;
        known
            .learn_cves(store, page.items.iter().map(|i| &i.cve_id))
            .await?;

        let mut writes = Vec::new();
        let mut explained = Vec::new();
        for input in &page.items {
            let profile = known
                .assets
                .as_ref()
                .and_then(|a| a.profile_of.get(&input.asset_id).copied());
            let cloud_risk = known.cloud_risk(input.recommendation_reference.as_deref());
            let Some(result) = known.compute(
                &input.cve_id,
                profile,
                input.cvss,
                input.exploitability.as_deref(),
                cloud_risk,
            ) else {
                continue;
            };
            if explain == Explain::Every {
                explained.push(result.explanation_id);
            }
            if let Some(assessment) =
                next_assessment(input, result, &known.policy.sla, previous, at)
            {
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
        // An explanation is stored with the first findings that refer to it, in id order.
        let mut keep: Vec<Explanation> = writes
            .iter()
            .map(|w| w.assessment.explanation_id)
            .chain(explained)
            .filter(|id| sent.insert(*id))
            .filter_map(|id| known.explanations.get(id))
            .collect();
        keep.sort_unstable_by_key(|e| e.id);
        store.write_assessments(&keep, &writes, at).await?;
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    counts.computed = known.computations;
    Ok(counts)
}

/// Assesses the findings a full read inserts, as the bulk path writes them (see
/// [`InsertAssessor`]): a first load then writes each row once. Before each batch is written,
/// [`InlineAssessor::prepare`] reads what the batch's findings need (the integration's assets,
/// once; the catalogue and KEV entries of CVEs not met before). A finding whose asset is not
/// stored yet (the device list did not return it) is left unassessed, for the run's pass.
///
/// The explanations the rows refer to are kept here and stored once the read is done
/// ([`InlineAssessor::store_explanations`]), in id order. Until then the integration owes them
/// (`sync_state`): should the run stop before, the next run's assessment stores those of every
/// open finding ([`assess_after_run`]).
pub(crate) struct InlineAssessor {
    integration: IntegrationId,
    known: Mutex<Knowledge>,
    /// The run's start as the store keeps it (to the microsecond): when its new findings were
    /// first read.
    first_read: DateTime<Utc>,
    /// Before anything it knows was read: a catalogue entry changed after this may be stale in
    /// what it assessed (the run's pass re-assesses those findings).
    pub since: DateTime<Utc>,
}

/// Explanations per statement when a load's are stored: bounds the JSON parameter (~0.5 KB each).
const EXPLANATIONS_PER_WRITE: usize = 10_000;

impl InlineAssessor {
    /// The assessor of a first load that started at `run_started`, with the integration's policy
    /// as stored now, recorded as the one its findings are assessed with (before any is written).
    pub async fn start(
        store: &dyn Store,
        integration: &Integration,
        run_started: DateTime<Utc>,
    ) -> Result<Self, StoreError> {
        let policy = PriorityPolicy::load(store, integration.id).await?;
        store
            .set_sync_state(integration.id, ASSESSED_POLICY, &policy.record())
            .await?;
        store
            .set_sync_state(integration.id, EXPLANATIONS_OWED, OWED)
            .await?;
        Ok(Self::new(integration, policy, run_started))
    }

    pub fn new(
        integration: &Integration,
        policy: PriorityPolicy,
        run_started: DateTime<Utc>,
    ) -> Self {
        InlineAssessor {
            integration: integration.id,
            known: Mutex::new(Knowledge::new(integration, policy)),
            first_read: run_started.trunc_subsecs(6),
            since: Utc::now(),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Knowledge> {
        // A panic while holding the lock cannot leave the caches half-updated in a way that
        // matters (each entry is inserted whole), so a poisoned lock is used as it is.
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads what `findings` need to be assessed; the reads happen without holding the lock.
    pub async fn prepare(&self, store: &dyn Store, findings: &[Finding]) -> Result<(), StoreError> {
        let (need_assets, use_catalogue, cloud, new_cves) = {
            let known = self.known();
            (
                known.assets.is_none(),
                known.use_catalogue,
                known.cloud,
                known.unknown_cves(findings.iter().map(|f| &f.key.cve_id)),
            )
        };
        if need_assets {
            let policy = self.known().policy.clone();
            let assets = Assets::load(store, self.integration, cloud, &policy).await?;
            self.known().assets.get_or_insert(assets);
        }
        if !new_cves.is_empty() {
            let facts = Knowledge::read_facts(store, use_catalogue, &new_cves).await?;
            self.known().learn(facts);
        }
        Ok(())
    }

    /// Stores every explanation the assessed rows refer to, in id order (appended to the table
    /// instead of scattered over it), and clears the integration's debt of them. Called once the
    /// read is done, whether it succeeded or not: rows of committed batches refer to them.
    /// They are taken out of the assessor, not copied: it assesses nothing after this, and a
    /// 20,000-device load holds ~93,000 of them (peak RSS 263–283 MiB copied, 235–253 moved;
    /// see [`Explanations`] for how they are kept until then).
    pub async fn store_explanations(&self, store: &dyn Store) -> Result<(), StoreError> {
        // Put together a statement's worth at a time: as text, all of them would be the
        // memory that `Explanations` saves.
        let table = std::mem::take(&mut self.known().explanations);
        for ids in table.sorted_ids().chunks(EXPLANATIONS_PER_WRITE) {
            let chunk: Vec<Explanation> = ids.iter().filter_map(|&id| table.get(id)).collect();
            store
                .write_assessments(&chunk, &[], self.first_read)
                .await?;
        }
        store
            .set_sync_state(self.integration, EXPLANATIONS_OWED, PAID)
            .await
    }
}

impl InsertAssessor for InlineAssessor {
    fn assess(&self, finding: &Finding) -> Option<StoredAssessment> {
        // What the store keeps of a value with a NUL in it differs from the value (it is
        // replaced): such rows are left to the run's pass, which reads what was stored.
        let exploitability = finding.exploitability.as_deref();
        if exploitability.is_some_and(|e| e.contains('\0')) {
            return None;
        }
        let mut known = self.known();
        let profile = *known
            .assets
            .as_ref()?
            .profile_of_source
            .get(&finding.key.asset_source_id)?;
        // The store keeps a CVSS score that is not a finite number as none.
        let cvss = finding.cvss.filter(|c| c.is_finite());
        let cloud_risk = known.cloud_risk(finding.recommendation_reference.as_deref());
        let computed = known.compute(
            &finding.key.cve_id,
            Some(profile),
            cvss,
            exploitability,
            cloud_risk,
        )?;
        Some(first_assessment(
            computed,
            &known.policy.sla,
            finding.first_seen,
            self.first_read,
        ))
    }
}

/// The `sync_state` keys of an integration's last assessment: when it started, and which
/// prioritisation model made it.
const ASSESSED_AT: &str = "priority_assessed_at";
const ASSESSED_RUN: &str = "priority_assessed_run";
const ASSESSED_BY: &str = "priority_model";
/// The policy the integration's stored assessments were made with ([`PriorityPolicy::record`]);
/// none: the model's defaults (every assessment before settings were stored).
const ASSESSED_POLICY: &str = "priority_policy";
/// Whether a first load's explanations are still to be stored ([`InlineAssessor`]): `OWED` from
/// its start until they are, `PAID` after.
const EXPLANATIONS_OWED: &str = "priority_explanations_owed";
const OWED: &str = "owed";
const PAID: &str = "paid";
/// Times an assessment starts again because the settings changed while it ran.
const POLICY_RETRIES: usize = 3;

/// Assesses the integration's findings in `scope` (none: only if the policy changed) with the
/// policy stored now. When its findings were assessed with another policy (an administrator
/// changed the SLA or the rules), every open finding is assessed, its due date moved to the new
/// SLA ([`rebased_due`]), and the new policy recorded. Settings saved while it ran are checked
/// once it is done, and assessed then: whichever assessment of an integration ends last (a run's,
/// a re-assessment job's, on any worker) ends with the settings as they are.
pub async fn assess_with_current_policy(
    store: &dyn Store,
    integration: &Integration,
    scope: Option<AssessScope<'_>>,
    at: DateTime<Utc>,
) -> Result<AssessCounts, StoreError> {
    assess_current(store, integration, scope, Explain::Changed, at).await
}

/// Which explanations an assessment stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Explain {
    /// Those of the assessments it changes (the others are stored already).
    Changed,
    /// Those of every finding it reads: a first load stopped before it stored its own
    /// ([`InlineAssessor`]).
    Every,
}

/// [`assess_with_current_policy`], storing the explanations `explain` says.
async fn assess_current(
    store: &dyn Store,
    integration: &Integration,
    scope: Option<AssessScope<'_>>,
    explain: Explain,
    at: DateTime<Utc>,
) -> Result<AssessCounts, StoreError> {
    let mut total = AssessCounts::default();
    let mut policy = PriorityPolicy::load(store, integration.id).await?;
    let mut scope = scope;
    let mut explain = explain;
    for _ in 0..POLICY_RETRIES {
        let recorded = store
            .get_sync_state(integration.id, ASSESSED_POLICY)
            .await?
            .unwrap_or_else(|| PriorityPolicy::default().record());
        let current = policy.record();
        let counts = if recorded != current {
            let previous = recorded_sla(&recorded).unwrap_or_default();
            assess_rebasing(
                store,
                integration,
                AssessScope::All,
                &policy,
                Some(&previous),
                explain,
                at,
            )
            .await?
        } else if let Some(scope) = scope {
            assess_rebasing(store, integration, scope, &policy, None, explain, at).await?
        } else {
            AssessCounts::default()
        };
        total.read += counts.read;
        total.assessed += counts.assessed;
        total.changed += counts.changed;
        total.computed += counts.computed;
        store
            .set_sync_state(integration.id, ASSESSED_POLICY, &current)
            .await?;
        let now = PriorityPolicy::load(store, integration.id).await?;
        if now.record() == current {
            break;
        }
        policy = now;
        scope = None;
        explain = Explain::Changed;
    }
    Ok(total)
}

/// Queues a re-assessment of each of `integrations` (after an administrator changed settings
/// that apply to them), due now, and returns how many were queued. A queued sync stands for one
/// (it assesses with the settings as they are); a running job checks the settings again when its
/// assessment ends (see [`assess_with_current_policy`]). The job table keeps one active job per
/// integration on every engine, so two workers never re-assess one integration at once.
pub async fn queue_reassessment(
    store: &dyn Store,
    integrations: &[IntegrationId],
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut queued = 0;
    for &id in integrations {
        if let rampart_store::Enqueued::Queued(_) = store
            .enqueue_job(id, rampart_store::JobKind::Reassess, now, now)
            .await?
        {
            queued += 1;
        }
    }
    Ok(queued)
}

/// Queues a re-assessment of the integration when the settings stored now are not those its
/// findings were last assessed with; says whether it queued one. A worker calls it when a job
/// ends: a change saved while that job ran, after its assessment's last look at the settings,
/// found the job running and queued nothing.
pub async fn queue_if_stale(
    store: &dyn Store,
    integration: IntegrationId,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    if assessed_with_current_policy(store, integration).await? {
        return Ok(false);
    }
    Ok(queue_reassessment(store, &[integration], now).await? > 0)
}

/// Whether the integration's findings were last assessed with the settings that apply now (an
/// integration removed meanwhile has nothing left to assess: true).
pub async fn assessed_with_current_policy(
    store: &dyn Store,
    integration: IntegrationId,
) -> Result<bool, StoreError> {
    let current = match PriorityPolicy::load(store, integration).await {
        Ok(policy) => policy.record(),
        Err(StoreError::NotFound(_)) => return Ok(true),
        Err(e) => return Err(e),
    };
    let recorded = store
        .get_sync_state(integration, ASSESSED_POLICY)
        .await?
        .unwrap_or_else(|| PriorityPolicy::default().record());
    Ok(current == recorded)
}

/// Re-assesses an integration's open findings after its settings changed (a `reassess` job),
/// and says what it did.
pub async fn reassess(
    store: &dyn Store,
    integration: &Integration,
    at: DateTime<Utc>,
) -> Result<AssessCounts, StoreError> {
    assess_outside_run(store, integration, None, at).await
}

/// [`assess_with_current_policy`] outside a sync run (a settings change, a KEV refresh), then
/// the remediation plan counted again when priorities moved: a run's end counts it, nothing else
/// does.
pub async fn assess_outside_run(
    store: &dyn Store,
    integration: &Integration,
    scope: Option<AssessScope<'_>>,
    at: DateTime<Utc>,
) -> Result<AssessCounts, StoreError> {
    let counts = assess_with_current_policy(store, integration, scope, at).await?;
    if counts.assessed + counts.changed > 0 {
        store.refresh_fix_plan(integration.id, at).await?;
    }
    Ok(counts)
}

/// Changes whenever the model's rules or this module's inputs change, so that the next run
/// re-assesses every finding instead of only those whose inputs changed.
const MODEL_VERSION: &str = "1";

/// How stale the SLA report's counts may get when runs change nothing (see [`assess_after_run`]).
const SNAPSHOT_AT_LEAST_EVERY: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// What a sync run re-assesses: only the findings whose inputs may have changed since the
/// integration's previous assessment, or all of them when that is not known for sure: the first
/// run, after a change of the model, when the previous run did not finish its assessment (what it
/// changed is not recorded anywhere else), when a KEV catalogue was read since (its own
/// re-assessment may have failed), and for Defender for Cloud (a run may upsert one resource
/// several times, so an asset's change marker is not reliable there).
///
/// `first_load`: the run was the integration's first load and its bulk path assessed the rows it
/// inserted ([`InlineAssessor`]), having started reading what it knows at this time. Every open
/// finding is then one of those rows, so only the few it left unassessed and those whose inputs
/// changed after that moment need the pass, even on the integration's first run.
///
/// `findings_changed`: the run added, changed, fixed or reopened findings (it decides whether a
/// new SLA snapshot is worth its cost).
pub(crate) async fn assess_after_run(
    store: &dyn Store,
    integration: &Integration,
    run_id: RunId,
    at: DateTime<Utc>,
    first_load: Option<DateTime<Utc>>,
    findings_changed: bool,
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
        && assessed_run == previous_run.map(RunId::get);
    // A first load that stopped before it stored its explanations left its findings referring
    // to explanations the store lacks: every open finding's are stored now.
    let owed = first_load.is_none()
        && store
            .get_sync_state(integration.id, EXPLANATIONS_OWED)
            .await?
            .as_deref()
            == Some(OWED);
    let scope = match (first_load, previous) {
        _ if owed => AssessScope::All,
        (Some(since), _) if kev_read.is_none_or(|k| k <= since) => {
            AssessScope::ChangedBy { run_id, since }
        }
        (_, Some(since)) if trusted && kev_read.is_none_or(|k| k <= since) => {
            AssessScope::ChangedBy { run_id, since }
        }
        _ => AssessScope::All,
    };
    let explain = if owed {
        Explain::Every
    } else {
        Explain::Changed
    };
    let counts = assess_current(store, integration, Some(scope), explain, at).await?;
    if owed {
        store
            .set_sync_state(integration.id, EXPLANATIONS_OWED, PAID)
            .await?;
    }
    store
        .set_sync_state(integration.id, ASSESSED_AT, &inputs_read_at.to_rfc3339())
        .await?;
    store
        .set_sync_state(integration.id, ASSESSED_RUN, &run_id.to_string())
        .await?;
    store
        .set_sync_state(integration.id, ASSESSED_BY, MODEL_VERSION)
        .await?;
    // The burn-down's point for this run, once every open finding is assessed. A snapshot reads
    // every open finding (1.7 s at 1,900,000 on SQLite, more than the rest of a delta run that
    // changed nothing), so a run that changed no finding and no priority takes one only when
    // the last is over an hour old: only the passing of time moves its counts then.
    let now = Utc::now();
    let last = store
        .latest_sla_snapshots(&rampart_store::Visibility::All)
        .await?
        .into_iter()
        .filter(|s| s.integration_id == integration.id)
        .map(|s| s.taken_at)
        .max();
    let moved = findings_changed || counts.assessed + counts.changed > 0;
    if moved || last.is_none_or(|t| now - t >= SNAPSHOT_AT_LEAST_EVERY) {
        store
            .record_sla_snapshot(integration.id, run_id, now)
            .await?;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(n: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
            .single()
            .unwrap_or_default()
            + chrono::TimeDelta::days(n)
    }

    fn sla(immediate: u32, out_of_cycle: u32, scheduled: u32, defer: u32) -> SlaPolicy {
        SlaPolicy::new(SlaDays {
            immediate,
            out_of_cycle,
            scheduled,
            defer,
        })
        .unwrap_or_default()
    }

    fn stored(decision: Decision, due: i64) -> StoredAssessment {
        StoredAssessment {
            decision,
            priority: 30,
            due_at: day(due),
            clock_start: day(0),
            explanation_id: 1,
        }
    }

    #[test]
    fn a_due_date_nothing_moved_follows_the_new_sla_both_ways() {
        let old = SlaPolicy::default();
        let s = stored(Decision::Scheduled, 30);
        assert_eq!(rebased_due(&s, &old, &sla(2, 7, 20, 90)), day(20));
        assert_eq!(rebased_due(&s, &old, &sla(2, 7, 45, 90)), day(45));
    }

    #[test]
    fn an_escalated_due_date_never_moves_later() {
        let old = SlaPolicy::default();
        // Scheduled, escalated on day 1 to immediate: due day 3 instead of day 2 + ... = day 3.
        let s = stored(Decision::Immediate, 3);
        // A longer SLA keeps the escalation's date; a shorter one brings it forward.
        assert_eq!(rebased_due(&s, &old, &sla(5, 7, 30, 90)), day(3));
        assert_eq!(rebased_due(&s, &old, &sla(1, 7, 30, 90)), day(1));
    }

    #[test]
    fn records_read_back() {
        let p = PriorityPolicy {
            sla: sla(1, 3, 10, 30),
            ..PriorityPolicy::default()
        };
        assert_eq!(recorded_sla(&p.record()), Some(p.sla));
        assert_eq!(recorded_sla("nonsense"), None);
        assert_ne!(p.record(), PriorityPolicy::default().record());
    }
}
