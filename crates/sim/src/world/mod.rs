//! The simulated tenant: a pure function of `(seed, tick)`.
//!
//! Nothing per device or per finding is stored. A device is an index; everything about it (kind, OS,
//! software, group, when it joins and leaves) is hashed from `(seed, index)`. Each installed product has
//! a number of *finding slots*; a slot lives through epochs of 40–60 ticks, each epoch holding one CVE of
//! that product after a short gap (so ~2 % of findings are fixed, and as many appear, per tick). Versions
//! advance in per-device epochs too (an upgrade re-keys the product's findings: `Fixed` + `New`), groups
//! change in long epochs, and CVE attributes change in revisions. Because every change happens at a
//! computable boundary, the delta API can list the changes between two snapshots without state.

pub(crate) mod catalog;
pub(crate) mod cloud;
pub(crate) mod cves;
pub(crate) mod delta;
mod devices;
mod entities;
pub(crate) mod rows;
pub(crate) mod snapshot;

use crate::config::SimConfig;
use crate::hash::{IdCodec, below, mix, pick, unit};
use crate::time::{Clock, TICK_SECS, Ts};

use catalog::{GROUPS, PLATFORMS, PRODUCTS, PlatformInfo, group_weights};
use cves::Catalogue;

pub(crate) use devices::Names;

/// Most products a platform can install (Windows clients: 19).
const MAX_SW: usize = 20;
/// Share of a slot's life during which it holds a finding (presence 0.92 × (1 − gap 2 / epoch 50)).
const ALIVE_SHARE: f64 = 0.883;
/// Per-tick chance that a device leaves, and the share of the initial fleet joining per tick.
const LEAVE_PER_TICK: f64 = 0.0025;
const JOIN_PER_TICK: f64 = 0.0025;
/// Device indexes per export file ("chunk"); each chunk is split further by device group.
pub(crate) const DEVICES_PER_CHUNK: u32 = 5000;

// Hash domain tags, so that different facts about one device are independent.
const T_DEVICE: u64 = 0xD0;
const T_KIND: u64 = 1;
const T_PLATFORM: u64 = 2;
const T_LEAVE: u64 = 3;
const T_SOFTWARE: u64 = 4;
const T_BUDGET: u64 = 5;
const T_GROUP: u64 = 6;
const T_SCAN: u64 = 7;
const T_DISCOVERED: u64 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Onboarded,
    /// Found by device discovery; no sensor, no TVM data. The value is `onboardingStatus`.
    Discovered(&'static str),
    /// The stale record of a reinstalled device: same name as the next index, `Inactive`, no TVM data.
    StaleDuplicate,
}

/// One product installed on one device.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Installed {
    pub(crate) product: usize,
    /// Finding slots; 0 means TVM lists the software without any CVE (a `cveId: null` row).
    pub(crate) slots: u32,
    pub(crate) hash: u64,
    period: i64,
    phase: i64,
    base_epoch: i64,
}

impl Installed {
    fn epoch(&self, tick: i64) -> i64 {
        (tick + self.phase).div_euclid(self.period)
    }

    /// Version number (see `Scheme::version`) at a tick; grows by one per upgrade.
    pub(crate) fn version_index(&self, tick: i64) -> u64 {
        (self.epoch(tick) - self.base_epoch).max(0) as u64
    }

    pub(crate) fn version(&self, tick: i64) -> String {
        PRODUCTS[self.product]
            .scheme
            .version(self.version_index(tick))
    }

    /// First tick of the version installed at `tick`.
    pub(crate) fn version_start(&self, tick: i64) -> i64 {
        self.epoch(tick) * self.period - self.phase
    }

    pub(crate) fn upgrade_ticks(&self, lo: i64, hi: i64, out: &mut Vec<i64>) {
        cves::periodic_boundaries(self.period, self.phase, lo, hi, out);
    }
}

/// Everything about a device that costs no allocation: cheap enough to compute for every device of a
/// file just to see whether it belongs there.
#[derive(Clone, Debug)]
pub(crate) struct Core {
    pub(crate) index: u32,
    pub(crate) hash: u64,
    pub(crate) kind: Kind,
    pub(crate) platform: Option<&'static PlatformInfo>,
    pub(crate) join: i64,
    pub(crate) leave: i64,
    software: [Installed; MAX_SW],
    n_software: usize,
    group_period: i64,
    group_phase: i64,
}

impl Core {
    pub(crate) fn software(&self) -> &[Installed] {
        &self.software[..self.n_software]
    }

    pub(crate) fn present(&self, tick: i64) -> bool {
        tick >= self.join && tick < self.leave
    }

    pub(crate) fn has_tvm_data(&self) -> bool {
        self.kind == Kind::Onboarded
    }

    pub(crate) fn group_boundaries(&self, lo: i64, hi: i64, out: &mut Vec<i64>) {
        if self.kind == Kind::Onboarded {
            cves::periodic_boundaries(self.group_period, self.group_phase, lo, hi, out);
        }
    }
}

/// A finding slot during one of its epochs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotLife {
    /// Index into the catalogue.
    pub(crate) cve: u32,
    /// First tick of this finding (before the device joined, if it joined later).
    pub(crate) birth: i64,
    pub(crate) hash: u64,
}

pub(crate) struct World {
    pub(crate) seed: u64,
    pub(crate) initial: u32,
    join_per_tick: u32,
    findings_per_device: u32,
    pub(crate) clock: Clock,
    pub(crate) catalogue: Catalogue,
    pub(crate) ids: IdCodec,
    pub(crate) subscriptions: [String; 3],
    /// `SimConfig::cloud_cves_in_one_package`.
    pub(crate) cloud_big_package: u32,
}

/// `[0, 1)` fraction of a second at 100 ns precision, with 0, 3 or 7 significant digits.
fn fraction(h: u64) -> u32 {
    match h % 4 {
        0 => 0,
        1 => below(h >> 2, 1000) as u32 * 1_000_000,
        _ => below(h >> 2, 10_000_000) as u32 * 100,
    }
}

pub(crate) fn guid(h: u64) -> String {
    let a = mix(h, 0x6A1D);
    let b = mix(a, 0x6A1E);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xFFFF,
        a & 0xFFF,
        0x8000 | (b >> 48) & 0x3FFF,
        b & 0xFFFF_FFFF_FFFF
    )
}

impl World {
    pub(crate) fn new(config: &SimConfig) -> World {
        let clock = Clock {
            start: config.start_time.timestamp(),
        };
        let initial = config.devices;
        let join_per_tick = if initial == 0 {
            0
        } else {
            ((f64::from(initial) * JOIN_PER_TICK).ceil() as u32).max(1)
        };
        let sub = |n| guid(mix(mix(config.seed, 0x5B5), n));
        World {
            seed: config.seed,
            initial,
            join_per_tick,
            findings_per_device: config.findings_per_device,
            clock,
            catalogue: Catalogue::build(config.seed, config.findings_per_device, &clock),
            ids: IdCodec::new(config.seed),
            subscriptions: [sub(1), sub(2), sub(3)],
            cloud_big_package: config.cloud_cves_in_one_package,
        }
    }

    /// Device indexes that exist at or before `tick` (those that left are still in the range).
    pub(crate) fn range(&self, tick: i64) -> u32 {
        let joined = u64::from(self.join_per_tick) * tick.max(0) as u64;
        (u64::from(self.initial) + joined).min(u64::from(u32::MAX)) as u32
    }

    pub(crate) fn device_hash(&self, index: u32) -> u64 {
        mix(mix(self.seed, T_DEVICE), u64::from(index))
    }

    fn join_tick(&self, index: u32) -> i64 {
        if index < self.initial {
            i64::MIN / 4
        } else {
            // Nobody joins an empty tenant.
            (index - self.initial)
                .checked_div(self.join_per_tick)
                .map_or(i64::MAX / 4, |n| 1 + i64::from(n))
        }
    }

    fn discovered_at(&self, index: u32) -> bool {
        unit(mix(self.device_hash(index), T_KIND)) < 0.08
    }

    fn platform_of(&self, index: u32) -> &'static PlatformInfo {
        let weights: [(usize, u32); 7] = std::array::from_fn(|i| (i, PLATFORMS[i].1));
        &PLATFORMS[pick(mix(self.device_hash(index), T_PLATFORM), &weights)].0
    }

    pub(crate) fn core(&self, index: u32) -> Core {
        let h = self.device_hash(index);
        let u = unit(mix(h, T_KIND));
        let kind = if u < 0.08 {
            Kind::Discovered(pick(
                mix(h, T_DISCOVERED),
                &[
                    ("CanBeOnboarded", 60u32),
                    ("Unsupported", 25),
                    ("InsufficientInfo", 15),
                ],
            ))
        } else if u < 0.095
            && index.is_multiple_of(2)
            && index < u32::MAX
            && !self.discovered_at(index + 1)
        {
            Kind::StaleDuplicate
        } else {
            Kind::Onboarded
        };
        let platform = match kind {
            Kind::Onboarded => Some(self.platform_of(index)),
            Kind::StaleDuplicate => Some(self.platform_of(index + 1)),
            Kind::Discovered(_) => None,
        };
        let join = self.join_tick(index);
        let leave_u = unit(mix(h, T_LEAVE));
        let stay = ((1.0 - leave_u).ln() / (1.0 - LEAVE_PER_TICK).ln())
            .floor()
            .clamp(0.0, 1e9) as i64;
        let leave = join.max(0) + 1 + stay;
        let group_period = 300 + below(mix(h, T_GROUP), 300) as i64;
        let mut core = Core {
            index,
            hash: h,
            kind,
            platform,
            join,
            leave,
            software: [Installed::default(); MAX_SW],
            n_software: 0,
            group_period,
            group_phase: below(mix(h, T_GROUP + 100), group_period as u64) as i64,
        };
        if let (Kind::Onboarded, Some(p)) = (kind, platform) {
            self.install(&mut core, p);
        }
        core
    }

    fn install(&self, core: &mut Core, platform: &PlatformInfo) {
        let h = core.hash;
        let (u1, u2) = (unit(mix(h, T_BUDGET)), unit(mix(h, T_BUDGET + 1)));
        let budget = f64::from(self.findings_per_device) / ALIVE_SHARE * (0.25 + 0.75 * (u1 + u2));
        let mut total_weight = 0u32;
        for &(p, prob) in platform.software {
            if core.n_software == MAX_SW {
                break;
            }
            let hs = mix(mix(h, T_SOFTWARE), p as u64);
            if unit(hs) >= prob {
                continue;
            }
            let period =
                (f64::from(PRODUCTS[p].period) * (0.75 + 0.5 * unit(mix(hs, 1)))).max(8.0) as i64;
            let phase = below(mix(hs, 2), period as u64) as i64;
            let lag = below(mix(hs, 3), 4) as i64;
            let mut sw = Installed {
                product: p,
                slots: 0,
                hash: hs,
                period,
                phase,
                base_epoch: 0,
            };
            sw.base_epoch = sw.epoch(0) - (20 - lag);
            total_weight += PRODUCTS[p].weight;
            core.software[core.n_software] = sw;
            core.n_software += 1;
        }
        for sw in &mut core.software[..core.n_software] {
            let cap = self.catalogue.ranges[sw.product].1 / 4;
            let w = f64::from(PRODUCTS[sw.product].weight);
            let expected = if total_weight == 0 {
                0.0
            } else {
                budget * w / f64::from(total_weight)
            };
            sw.slots = ((expected + unit(mix(sw.hash, 4))).floor() as u32).min(cap);
        }
    }

    /// Index into [`GROUPS`] of the device's group at a tick.
    pub(crate) fn group_index(&self, core: &Core, tick: i64) -> usize {
        match (core.kind, core.platform) {
            (Kind::Onboarded, Some(p)) => {
                let epoch = (tick + core.group_phase).div_euclid(core.group_period);
                pick(
                    mix(mix(core.hash, T_GROUP + 1), epoch as u64),
                    group_weights(p.class),
                )
            }
            (Kind::StaleDuplicate, Some(p)) => {
                pick(mix(core.hash, T_GROUP + 2), group_weights(p.class))
            }
            _ => 0,
        }
    }

    pub(crate) fn group(&self, core: &Core, tick: i64) -> &'static catalog::Group {
        &GROUPS[self.group_index(core, tick)]
    }

    /// The slot's finding at `tick`, if it holds one (device presence is the caller's business).
    pub(crate) fn slot_at(&self, sw: &Installed, k: u32, tick: i64) -> Option<SlotLife> {
        let (hk, period, phase) = slot_params(sw, k);
        let x = tick + phase;
        let epoch = x.div_euclid(period);
        let pos = x.rem_euclid(period);
        let he = mix(hk, epoch as u64);
        if unit(he) >= 0.92 {
            return None;
        }
        let gap = 1 + (mix(he, 1) % 3) as i64;
        if pos < gap {
            return None;
        }
        // Slot k only ever picks CVEs at positions ≡ k (mod slots): the CVEs of one device's product
        // are therefore distinct, and the record key (device, software, version, CVE) unique.
        let (first, count) = self.catalogue.ranges[sw.product];
        let n = sw.slots;
        let choices = (count - 1 - k) / n + 1;
        let pos_in_product = k + n * below(mix(he, 2), u64::from(choices)) as u32;
        Some(SlotLife {
            cve: first + pos_in_product,
            birth: epoch * period - phase + gap,
            hash: he,
        })
    }

    /// Ticks in `lo..=hi` at which a slot may change (epoch starts and births).
    pub(crate) fn slot_change_ticks(
        &self,
        sw: &Installed,
        k: u32,
        lo: i64,
        hi: i64,
        out: &mut Vec<i64>,
    ) {
        let (hk, period, phase) = slot_params(sw, k);
        let mut epoch = (lo - 1 + phase).div_euclid(period);
        loop {
            let start = epoch * period - phase;
            if start > hi {
                break;
            }
            let he = mix(hk, epoch as u64);
            let birth = start + 1 + (mix(he, 1) % 3) as i64;
            for t in [start, birth] {
                if (lo..=hi).contains(&t) {
                    out.push(t);
                }
            }
            epoch += 1;
        }
    }

    pub(crate) fn first_seen(&self, core: &Core, life: &SlotLife) -> Ts {
        let birth = life.birth.max(core.join);
        let h = mix(life.hash, birth as u64);
        Ts {
            secs: self.clock.at(birth) - 1 - below(h, (TICK_SECS - 1) as u64) as i64,
            nanos: fraction(mix(h, 0xF5)),
        }
    }

    /// First seen of a software row without CVE: when its current version appeared.
    pub(crate) fn software_first_seen(&self, core: &Core, sw: &Installed, tick: i64) -> Ts {
        let start = sw.version_start(tick).max(core.join);
        let h = mix(sw.hash, start as u64);
        Ts {
            secs: self.clock.at(start) - 1 - below(h, (TICK_SECS - 1) as u64) as i64,
            nanos: fraction(mix(h, 0xF6)),
        }
    }

    /// When the device's last TVM scan before the snapshot ran.
    pub(crate) fn scan_time(&self, core: &Core, tick: i64) -> Ts {
        let h = mix(mix(core.hash, T_SCAN), tick as u64);
        Ts {
            secs: self.clock.at(tick) - below(h, TICK_SECS as u64) as i64,
            nanos: fraction(mix(h, 1)),
        }
    }

    /// `osVersion` of export rows: the OS product's version, or a fixed name on Linux.
    pub(crate) fn export_os_version(&self, core: &Core, tick: i64) -> String {
        match core.platform {
            Some(p) => match p.export_os_version {
                Some(v) => v.to_owned(),
                None => core
                    .software()
                    .iter()
                    .find(|s| s.product == p.os_product)
                    .map(|s| s.version(tick))
                    .unwrap_or_default(),
            },
            None => String::new(),
        }
    }

    pub(crate) fn chunks(&self, tick: i64) -> u32 {
        self.range(tick).div_ceil(DEVICES_PER_CHUNK)
    }

    /// Export files at a tick: one per (chunk of device indexes × device group), Spark-style.
    pub(crate) fn file_count(&self, tick: i64) -> u32 {
        self.chunks(tick).saturating_mul(GROUPS.len() as u32)
    }

    /// `(chunk, group index)` of a file.
    pub(crate) fn file_coords(&self, file: u32) -> (u32, usize) {
        (
            file / GROUPS.len() as u32,
            (file % GROUPS.len() as u32) as usize,
        )
    }

    pub(crate) fn chunk_devices(&self, chunk: u32, tick: i64) -> std::ops::Range<u32> {
        let lo = chunk.saturating_mul(DEVICES_PER_CHUNK);
        let hi = lo.saturating_add(DEVICES_PER_CHUNK).min(self.range(tick));
        lo..hi.max(lo)
    }
}

fn slot_params(sw: &Installed, k: u32) -> (u64, i64, i64) {
    let hk = mix(sw.hash, u64::from(k) + 1);
    let period = 40 + (hk % 21) as i64;
    let phase = ((hk >> 8) % period as u64) as i64;
    (hk, period, phase)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(devices: u32) -> World {
        World::new(&SimConfig {
            devices,
            ..SimConfig::default()
        })
    }

    #[test]
    fn initial_devices_are_present_at_tick_zero_and_joiners_later() {
        let w = world(1000);
        assert_eq!(w.range(0), 1000);
        assert!((0..1000).all(|i| w.core(i).present(0)));
        let joiner = w.core(1000);
        assert!(!joiner.present(0));
        assert!(joiner.present(1) || joiner.leave <= 1);
    }

    #[test]
    fn slot_change_ticks_cover_every_change() {
        let w = world(50);
        for i in 0..50 {
            let core = w.core(i);
            for sw in core.software() {
                for k in 0..sw.slots.min(5) {
                    let mut ticks = Vec::new();
                    w.slot_change_ticks(sw, k, -100, 100, &mut ticks);
                    for t in -99..=100 {
                        if w.slot_at(sw, k, t) != w.slot_at(sw, k, t - 1) {
                            assert!(ticks.contains(&t), "slot change at {t} not listed");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn average_findings_are_near_the_configured_density() {
        let w = world(400);
        let mut total = 0u64;
        let mut onboarded = 0u64;
        for i in 0..400 {
            let core = w.core(i);
            if !core.has_tvm_data() {
                continue;
            }
            onboarded += 1;
            for sw in core.software() {
                total += (0..sw.slots)
                    .filter(|k| w.slot_at(sw, *k, 0).is_some())
                    .count() as u64;
            }
        }
        let avg = total as f64 / onboarded as f64;
        assert!((80.0..120.0).contains(&avg), "average {avg}");
    }
}
