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
        self.snapshot()
            .devices()
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
