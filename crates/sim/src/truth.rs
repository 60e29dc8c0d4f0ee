//! What the tenant holds at one snapshot, for tests to compare a store with, record by record.

use std::ops::ControlFlow;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::records::{Finding, Machine, Vulnerability};
use crate::state::Inner;
use crate::world::snapshot::Snapshot;

/// The tenant at one tick. Iterators generate records on the fly (memory stays flat).
pub struct Truth {
    pub(crate) sim: Arc<Inner>,
    pub(crate) tick: i64,
}

impl Truth {
    /// The snapshot this truth describes.
    pub fn tick(&self) -> i64 {
        self.tick
    }

    /// Simulated time of the snapshot (the export's `generatedTime`).
    pub fn time(&self) -> DateTime<Utc> {
        crate::time::Ts::at(self.sim.world.clock.at(self.tick)).to_chrono()
    }

    fn snapshot(&self) -> Snapshot<'_> {
        Snapshot::new(&self.sim.world, self.tick)
    }

    /// Every device exactly as `GET /api/machines` returns it (onboarded, discovered, stale duplicates),
    /// in the API's order.
    pub fn machines(&self) -> impl Iterator<Item = Machine> + '_ {
        let w = &self.sim.world;
        crate::http::listed_devices(&self.sim, self.tick)
            .map(move |core| w.machine(&core, self.tick))
    }

    /// Devices that `GET /api/machines` leaves out while the vulnerability exports carry their
    /// rows (see [`SimConfig::unlisted_device_share`](crate::SimConfig::unlisted_device_share)).
    pub fn unlisted_machines(&self) -> impl Iterator<Item = Machine> + '_ {
        let w = &self.sim.world;
        self.snapshot()
            .devices()
            .filter(move |core| !crate::http::listed(&self.sim, core))
            .map(move |core| w.machine(&core, self.tick))
    }

    /// Every open finding (rows of the export with a CVE), in export order.
    pub fn findings(&self) -> impl Iterator<Item = Finding> + '_ {
        let snap = self.snapshot();
        snap.devices().flat_map(move |core| {
            let mut out = Vec::new();
            let _ = snap.device_rows(&core, &mut |row| {
                if let Some(f) = row.to_finding() {
                    out.push(f);
                }
                ControlFlow::Continue(())
            });
            out
        })
    }

    /// The CVE catalogue as `GET /api/vulnerabilities` returns it.
    pub fn vulnerabilities(&self) -> impl Iterator<Item = Vulnerability> + '_ {
        let exposure = self.sim.exposure(self.tick);
        let w = &self.sim.world;
        let tick = self.tick;
        (0..w.catalogue.cves.len()).map(move |j| w.vulnerability(j, tick, exposure[j]))
    }
}

/// The Defender for Cloud side (whatever the app's Azure role: the tenant, not what it may see).
impl Truth {
    /// Every subscription, enabled and disabled, as `GET /subscriptions` lists them with a role.
    pub fn cloud_subscriptions(&self) -> Vec<crate::CloudSubscription> {
        self.sim.world.cloud_subscriptions()
    }

    fn views(&self) -> impl Iterator<Item = crate::world::cloud::SubscriptionView> + '_ {
        self.cloud_subscriptions().into_iter().filter_map(move |s| {
            self.sim
                .world
                .subscription_view(&s.subscription_id, self.tick)
        })
    }

    /// `ascScore` of every enabled subscription.
    pub fn secure_scores(&self) -> Vec<crate::SecureScore> {
        self.views().map(|v| v.score).collect()
    }

    /// Every control score of every enabled subscription.
    pub fn score_controls(&self) -> Vec<crate::ScoreControl> {
        self.views().flat_map(|v| v.controls).collect()
    }

    /// Every built-in recommendation per resource (the individual `SoftwareUpdate` ones are
    /// [`Truth::cloud_findings`]).
    pub fn cloud_assessments(&self) -> Vec<crate::CloudAssessment> {
        self.views().flat_map(|v| v.assessments).collect()
    }

    /// Every assessed resource (subscriptions themselves included): those with at least one
    /// recommendation, built-in or individual. A resource without any is invisible to the API (an
    /// AKS cluster between two vulnerable node images).
    pub fn cloud_resources(&self) -> Vec<crate::CloudResource> {
        self.views()
            .flat_map(|v| {
                let assessed: Vec<bool> = (0..v.resources.len())
                    .map(|i| {
                        let id = &v.resources[i].id;
                        v.updates.iter().any(|u| u.resource == i)
                            || v.assessments.iter().any(|a| &a.resource_id == id)
                    })
                    .collect();
                v.resources
                    .into_iter()
                    .zip(assessed)
                    .filter_map(|(r, seen)| seen.then_some(r))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// One record per CVE of every individual `SoftwareUpdate` recommendation.
    pub fn cloud_findings(&self) -> Vec<crate::CloudFinding> {
        let clock = self.sim.world.clock;
        self.views().flat_map(|v| v.findings(&clock)).collect()
    }

    /// Assessment ids of the individual recommendations whose package was updated: Microsoft
    /// lists them as `Healthy`, without `CvesDetails`.
    pub fn fixed_package_recommendations(&self) -> Vec<String> {
        self.views()
            .flat_map(|v| v.updates)
            .filter(|u| u.healthy)
            .map(|u| u.id)
            .collect()
    }

    /// Tenant secure score in percent, as Microsoft computes it (Learn's Resource Graph sample
    /// "Secure score per management group"): Σ round(weight × current / max, 2) over enabled
    /// subscriptions (0 for a max of 0), divided by Σ weight (a weight of 0 counting as 1), × 100,
    /// rounded to 2 decimals. Never an average of percentages, and not Σ(weight × current) /
    /// Σ(weight × max), which differs when subscriptions' maxima differ (they do here).
    pub fn tenant_score_percent(&self) -> Option<f64> {
        let scores = self.secure_scores();
        if scores.is_empty() {
            return None;
        }
        let round2 = |x: f64| (x * 100.0).round() / 100.0;
        let num: f64 = scores
            .iter()
            .map(|s| {
                if s.max == 0 {
                    0.0
                } else {
                    round2(s.weight as f64 * s.current / f64::from(s.max))
                }
            })
            .sum();
        let den: f64 = scores.iter().map(|s| s.weight.max(1) as f64).sum();
        Some(round2(num / den * 100.0))
    }
}
