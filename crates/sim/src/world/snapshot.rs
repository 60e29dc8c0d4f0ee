//! Reading one snapshot: the rows of a device, of an export file, of the whole tenant.
//!
//! The JSON export pages and the export files walk the same sequence (files in order, rows in order
//! within a file), so a `(file, line)` cursor — Microsoft's `ExportFileIndex` / `LineStoppedAt` — names
//! a row in both, and a page can resume anywhere by counting (not formatting) the rows before it.

use std::ops::ControlFlow;

use super::catalog::{Class, PRODUCTS};
use super::rows::RowData;
use super::{Core, World};

/// A row position: export file index and line within that file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub(crate) file: u32,
    pub(crate) line: u64,
}

#[derive(Clone, Copy)]
pub(crate) struct Snapshot<'w> {
    pub(crate) world: &'w World,
    pub(crate) tick: i64,
}

impl<'w> Snapshot<'w> {
    pub(crate) fn new(world: &'w World, tick: i64) -> Snapshot<'w> {
        Snapshot { world, tick }
    }

    /// Devices listed by `/api/machines` at this tick, in order.
    pub(crate) fn devices(self) -> impl Iterator<Item = Core> + 'w {
        let w = self.world;
        let t = self.tick;
        (0..w.range(t))
            .map(move |i| w.core(i))
            .filter(move |c| c.present(t))
    }

    /// Calls `f` with every export row of a device (software rows without CVE included).
    pub(crate) fn device_rows(
        self,
        core: &Core,
        f: &mut dyn FnMut(&RowData<'_>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let (w, t) = (self.world, self.tick);
        let Some(platform) = core.platform else {
            return ControlFlow::Continue(());
        };
        if !core.has_tvm_data() || !core.present(t) {
            return ControlFlow::Continue(());
        }
        let names = w.names(core);
        let group = w.group(core, t);
        let os_version = w.export_os_version(core, t);
        let scan = w.scan_time(core, t);
        let unix = matches!(platform.class, Class::Linux | Class::Mac);
        for sw in core.software() {
            let product = &PRODUCTS[sw.product];
            let version = sw.version(t);
            let mut row = RowData {
                names: &names,
                group,
                platform,
                os_version: &os_version,
                product,
                paths: if unix { product.unix } else { product.win },
                version: &version,
                cve: None,
                first_seen: scan,
                last_seen: scan,
            };
            if sw.slots == 0 {
                row.first_seen = w.software_first_seen(core, sw, t);
                row.last_seen = scan.max(row.first_seen);
                f(&row)?;
                continue;
            }
            for k in 0..sw.slots {
                if let Some(life) = w.slot_at(sw, k, t) {
                    let cve = &w.catalogue.cves[life.cve as usize];
                    row.cve = Some((cve, cve.attrs(t)));
                    row.first_seen = w.first_seen(core, &life);
                    row.last_seen = scan.max(row.first_seen);
                    f(&row)?;
                }
            }
        }
        ControlFlow::Continue(())
    }

    /// Rows of a device, without formatting anything.
    pub(crate) fn count_rows(self, core: &Core) -> u64 {
        if !core.has_tvm_data() || !core.present(self.tick) {
            return 0;
        }
        core.software()
            .iter()
            .map(|sw| {
                if sw.slots == 0 {
                    1
                } else {
                    (0..sw.slots)
                        .filter(|k| self.world.slot_at(sw, *k, self.tick).is_some())
                        .count() as u64
                }
            })
            .sum()
    }

    /// Devices whose rows go into an export file.
    pub(crate) fn file_devices(self, file: u32) -> impl Iterator<Item = Core> + 'w {
        let (w, t) = (self.world, self.tick);
        let (chunk, group) = w.file_coords(file);
        w.chunk_devices(chunk, t)
            .map(move |i| w.core(i))
            .filter(move |c| c.present(t) && c.has_tvm_data() && w.group_index(c, t) == group)
    }

    /// Whether the file exists in this snapshot's export (it has at least one device).
    pub(crate) fn file_listed(self, file: u32) -> bool {
        file < self.world.file_count(self.tick) && self.file_devices(file).next().is_some()
    }

    /// Walks rows from `from` to the end of the snapshot, giving each row's cursor.
    pub(crate) fn walk(
        self,
        from: Cursor,
        only_file: bool,
        f: &mut dyn FnMut(Cursor, &RowData<'_>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let files = self.world.file_count(self.tick);
        let mut skip = from.line;
        let mut file = from.file;
        while file < files {
            let mut line = 0u64;
            for core in self.file_devices(file) {
                if skip > 0 {
                    let n = self.count_rows(&core);
                    if n <= skip {
                        skip -= n;
                        line += n;
                        continue;
                    }
                }
                self.device_rows(&core, &mut |row| {
                    if skip > 0 {
                        skip -= 1;
                        line += 1;
                        return ControlFlow::Continue(());
                    }
                    let at = Cursor { file, line };
                    line += 1;
                    f(at, row)
                })?;
            }
            if only_file {
                break;
            }
            // A cursor past the end of its file simply continues with the next file.
            skip = 0;
            file += 1;
        }
        ControlFlow::Continue(())
    }

    /// Open findings per CVE (the `exposedMachines` of the catalogue).
    pub(crate) fn exposure(self) -> Vec<u32> {
        let w = self.world;
        let mut counts = vec![0u32; w.catalogue.cves.len()];
        for core in self.devices() {
            if !core.has_tvm_data() {
                continue;
            }
            for sw in core.software() {
                for k in 0..sw.slots {
                    if let Some(life) = w.slot_at(sw, k, self.tick) {
                        counts[life.cve as usize] += 1;
                    }
                }
            }
        }
        counts
    }

    /// Catalogue indexes of a device's open CVEs.
    pub(crate) fn device_cves(self, core: &Core) -> Vec<u32> {
        let mut out = Vec::new();
        if core.has_tvm_data() && core.present(self.tick) {
            for sw in core.software() {
                for k in 0..sw.slots {
                    if let Some(life) = self.world.slot_at(sw, k, self.tick) {
                        out.push(life.cve);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimConfig;

    #[test]
    fn software_rows_without_cve_are_a_few_percent_at_default_density() {
        let w = World::new(&SimConfig {
            devices: 300,
            ..SimConfig::default()
        });
        let (mut rows, mut nulls) = (0u64, 0u64);
        let _ = Snapshot::new(&w, 0).walk(Cursor { file: 0, line: 0 }, false, &mut |_, row| {
            rows += 1;
            nulls += u64::from(row.cve.is_none());
            ControlFlow::Continue(())
        });
        let share = nulls as f64 / rows as f64;
        assert!((0.01..0.06).contains(&share), "{nulls}/{rows}");
    }
}

#[cfg(test)]
mod perf {
    use super::*;
    use crate::config::SimConfig;

    /// Generation + serialization cost per row, without HTTP:
    /// `cargo test -p rampart-sim --release --lib generation_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn generation_cost() {
        let w = World::new(&SimConfig {
            devices: 20_000,
            ..SimConfig::default()
        });
        for pascal in [false, true] {
            let started = std::time::Instant::now();
            let mut buf = Vec::with_capacity(1 << 17);
            let (mut rows, mut bytes) = (0u64, 0u64);
            let _ = Snapshot::new(&w, 0).walk(Cursor { file: 0, line: 0 }, false, &mut |_, row| {
                if pascal {
                    row.write_pascal(&mut buf)
                } else {
                    row.write_json(&mut buf, None)
                }
                rows += 1;
                if buf.len() > 1 << 16 {
                    bytes += buf.len() as u64;
                    buf.clear();
                }
                ControlFlow::Continue(())
            });
            let el = started.elapsed();
            eprintln!(
                "pascal={pascal}: {rows} rows, {} MB in {el:?}: {:.0} ns/row",
                bytes / 1_000_000,
                el.as_nanos() as f64 / rows as f64
            );
        }
        let started = std::time::Instant::now();
        let mut events = 0u64;
        let _ =
            crate::world::delta::walk(&w, -4, 0, Cursor { file: 0, line: 0 }, &mut |_, _, _, _| {
                events += 1;
                ControlFlow::Continue(())
            });
        eprintln!(
            "delta of one day: {events} events in {:?}",
            started.elapsed()
        );
    }
}
