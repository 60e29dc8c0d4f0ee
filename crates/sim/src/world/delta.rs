//! The delta API's change events between snapshots, computed from the boundaries of the generator.
//!
//! Events of tick `s` describe the change from snapshot `s − 1` to snapshot `s` and carry
//! `eventTimestamp` = the time of snapshot `s`. For each finding slot only the ticks where something can
//! change are inspected (device join/leave, group change, software upgrade, slot epoch start and birth,
//! CVE revision), so a 14-day window costs a few checks per slot, not 56.

use std::ops::ControlFlow;

use crate::time::Ts;

use super::catalog::{Class, GROUPS, PRODUCTS};
use super::rows::{RowData, Status};
use super::snapshot::Cursor;
use super::{Core, Installed, SlotLife, World};

#[derive(Clone, Copy, PartialEq, Eq)]
struct SlotState {
    life: SlotLife,
    version: u64,
    group: usize,
}

/// Per-device facts at one tick, computed once for all the device's events at that tick.
struct DeviceAt {
    tick: i64,
    group: usize,
    os_version: String,
    scan: Ts,
}

fn state(w: &World, core: &Core, sw: &Installed, k: u32, t: i64) -> Option<SlotState> {
    if !core.present(t) {
        return None;
    }
    let life = w.slot_at(sw, k, t)?;
    Some(SlotState {
        life,
        version: sw.version_index(t),
        group: w.group_index(core, t),
    })
}

/// Walks the events of ticks `first..=last` (devices in index order, chunked like export files).
pub(crate) fn walk(
    w: &World,
    first: i64,
    last: i64,
    from: Cursor,
    f: &mut dyn FnMut(Cursor, &RowData<'_>, Status, Ts) -> ControlFlow<()>,
) -> ControlFlow<()> {
    if first > last {
        return ControlFlow::Continue(());
    }
    let chunks = w.chunks(last);
    let mut skip = from.line;
    let mut ticks = Vec::new();
    let mut cve_ticks = Vec::new();
    for chunk in from.file..chunks {
        let mut line = 0u64;
        for i in w.chunk_devices(chunk, last) {
            let core = w.core(i);
            let Some(platform) = core.platform else {
                continue;
            };
            if !core.has_tvm_data() || core.leave < first || core.join > last {
                continue;
            }
            let names = w.names(&core);
            let unix = matches!(platform.class, Class::Linux | Class::Mac);
            let mut at: Vec<DeviceAt> = Vec::new();
            for sw in core.software() {
                if sw.slots == 0 {
                    continue;
                }
                let product = &PRODUCTS[sw.product];
                for k in 0..sw.slots {
                    ticks.clear();
                    for t in [core.join, core.leave] {
                        if (first..=last).contains(&t) {
                            ticks.push(t);
                        }
                    }
                    core.group_boundaries(first, last, &mut ticks);
                    sw.upgrade_ticks(first, last, &mut ticks);
                    w.slot_change_ticks(sw, k, first, last, &mut ticks);
                    // CVE revisions matter for every CVE the slot holds during the window; it only
                    // switches CVE at the ticks already listed.
                    cve_ticks.clear();
                    let mut seen_cve = None;
                    for t in std::iter::once(first - 1).chain(ticks.iter().copied()) {
                        if let Some(life) = w.slot_at(sw, k, t)
                            && seen_cve != Some(life.cve)
                        {
                            seen_cve = Some(life.cve);
                            w.catalogue.cves[life.cve as usize].revision_boundaries(
                                first,
                                last,
                                &mut cve_ticks,
                            );
                        }
                    }
                    ticks.extend_from_slice(&cve_ticks);
                    ticks.sort_unstable();
                    ticks.dedup();
                    for &s in ticks.iter() {
                        let prev = state(w, &core, sw, k, s - 1);
                        let cur = state(w, &core, sw, k, s);
                        let mut events: [Option<(Status, SlotState, i64)>; 2] = [None, None];
                        match (prev, cur) {
                            (Some(p), Some(c)) if p == c => {
                                let cve = &w.catalogue.cves[c.life.cve as usize];
                                if cve.attrs(s - 1) != cve.attrs(s) {
                                    events[0] = Some((Status::Updated, c, s));
                                }
                            }
                            _ => {
                                events[0] = prev.map(|p| (Status::Fixed, p, s - 1));
                                events[1] = cur.map(|c| (Status::New, c, s));
                            }
                        }
                        for (status, st, data_tick) in events.into_iter().flatten() {
                            if skip > 0 {
                                skip -= 1;
                                line += 1;
                                continue;
                            }
                            let pos = match at.iter().position(|d| d.tick == data_tick) {
                                Some(p) => p,
                                None => {
                                    at.push(DeviceAt {
                                        tick: data_tick,
                                        group: w.group_index(&core, data_tick),
                                        os_version: w.export_os_version(&core, data_tick),
                                        scan: w.scan_time(&core, data_tick),
                                    });
                                    at.len() - 1
                                }
                            };
                            let d = &at[pos];
                            let cve = &w.catalogue.cves[st.life.cve as usize];
                            let version = product.scheme.version(st.version);
                            let first_seen = w.first_seen(&core, &st.life);
                            let row = RowData {
                                names: &names,
                                group: &GROUPS[d.group],
                                platform,
                                os_version: &d.os_version,
                                product,
                                paths: if unix { product.unix } else { product.win },
                                version: &version,
                                cve: Some((cve, cve.attrs(data_tick))),
                                first_seen,
                                last_seen: d.scan.max(first_seen),
                            };
                            let cursor = Cursor { file: chunk, line };
                            line += 1;
                            f(cursor, &row, status, Ts::at(w.clock.at(s)))?;
                        }
                    }
                }
            }
        }
        skip = 0;
    }
    ControlFlow::Continue(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::SimConfig;
    use crate::world::snapshot::Snapshot;

    type Key = String;
    type Val = (u32, String, String, u8, u8, Ts);

    fn row_val(row: &RowData<'_>) -> Option<(Key, Val)> {
        let (cve, attrs) = row.cve?;
        let mut id = Vec::new();
        row.write_json(&mut id, None);
        let v: serde_json::Value = serde_json::from_slice(&id).unwrap();
        Some((
            v["id"].as_str().unwrap().to_owned(),
            (
                row.group.id,
                cve.id.clone(),
                row.version.to_owned(),
                attrs.cvss,
                attrs.exploit,
                row.first_seen,
            ),
        ))
    }

    fn snapshot(w: &World, t: i64) -> BTreeMap<Key, Val> {
        let mut out = BTreeMap::new();
        let _ = Snapshot::new(w, t).walk(Cursor { file: 0, line: 0 }, false, &mut |_, row| {
            if let Some((k, v)) = row_val(row) {
                assert!(out.insert(k, v).is_none(), "duplicate key");
            }
            ControlFlow::Continue(())
        });
        out
    }

    #[test]
    fn applying_the_delta_to_a_snapshot_gives_the_later_snapshot() {
        let w = World::new(&SimConfig {
            devices: 120,
            findings_per_device: 40,
            ..SimConfig::default()
        });
        for (t0, t1) in [(0i64, 1i64), (0, 9), (-20, 3), (5, 5)] {
            let mut state = snapshot(&w, t0);
            let mut events = Vec::new();
            let _ = walk(
                &w,
                t0,
                t1,
                Cursor { file: 0, line: 0 },
                &mut |_, row, status, at| {
                    let (k, v) = row_val(row).unwrap();
                    events.push((at, status, k, v));
                    ControlFlow::Continue(())
                },
            );
            events.sort_by_key(|e| e.0);
            for (_, status, k, v) in events {
                match status {
                    Status::Fixed => {
                        state.remove(&k);
                    }
                    Status::New | Status::Updated => {
                        state.insert(k, v);
                    }
                }
            }
            assert_eq!(state, snapshot(&w, t1), "window {t0}..={t1}");
        }
    }
}
