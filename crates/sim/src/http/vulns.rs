//! `/api/vulnerabilities`, `/api/vulnerabilities/{id}`, `/{id}/machineReferences`,
//! `/api/vulnerabilities/machinesVulnerabilities`.

use std::ops::ControlFlow;

use axum::response::Response;

use crate::records::MachineReference;
use crate::world::snapshot::{Cursor, Snapshot};

use super::Ctx;
use super::filter::{MACHINE_VULNERABILITIES, VULNERABILITIES};
use super::machines::{entity, open_collection, push_item};
use super::window::{Place, Window};

/// `$top` cap and server page of `/api/vulnerabilities`.
const VULN_PAGE: u64 = 8_000;
/// `$top` cap and server page of `machinesVulnerabilities`.
const MV_PAGE: u64 = 10_000;

pub(crate) fn list(ctx: &Ctx) -> Response {
    let options = match ctx.list_options(VULN_PAGE, &VULNERABILITIES) {
        Ok(options) => options,
        Err(e) => return ctx.reject(e),
    };
    let (sim, base) = (ctx.sim.clone(), ctx.base.clone());
    let tick = sim.tick();
    ctx.json(move |sink| {
        open_collection(sink, &base, "Vulnerabilities")?;
        let exposure = sim.exposure(tick);
        let mut window = Window::new(&options, VULN_PAGE);
        let mut first = true;
        for j in 0..sim.world.catalogue.cves.len() {
            let v = if options.filter.is_some() || !window.skipping() {
                Some(sim.world.vulnerability(j, tick, exposure[j]))
            } else {
                None
            };
            if let (Some(f), Some(v)) = (&options.filter, &v)
                && !f.matches(v)
            {
                continue;
            }
            match window.place() {
                Place::Skipped => continue,
                Place::Past => break,
                Place::Taken => {}
            }
            if let Some(v) = v {
                push_item(sink, &mut first, &v)?;
            }
        }
        sink.write(b"]")?;
        if let Some(link) = window.next_link(&options, &base, "vulnerabilities") {
            sink.write(link.as_bytes())?;
        }
        sink.write(b"}")
    })
}

pub(crate) fn by_id(ctx: &Ctx, id: &str) -> Response {
    let tick = ctx.sim.tick();
    let Some(j) = ctx.sim.world.cve_index(id) else {
        let shown: String = id.chars().take(64).filter(|c| !c.is_control()).collect();
        return ctx.not_found(&format!("Vulnerability {shown} was not found"));
    };
    let sim = ctx.sim.clone();
    entity(ctx, "Vulnerabilities/$entity", move || {
        let exposed = sim.exposure(tick)[j];
        sim.world.vulnerability(j, tick, exposed)
    })
}

pub(crate) fn machine_references(ctx: &Ctx, id: &str) -> Response {
    let tick = ctx.sim.tick();
    let Some(j) = ctx.sim.world.cve_index(id) else {
        let shown: String = id.chars().take(64).filter(|c| !c.is_control()).collect();
        return ctx.not_found(&format!("Vulnerability {shown} was not found"));
    };
    let (sim, base) = (ctx.sim.clone(), ctx.base.clone());
    ctx.json(move |sink| {
        open_collection(sink, &base, "MachineReferences")?;
        let snap = Snapshot::new(&sim.world, tick);
        let mut first = true;
        for core in snap.devices() {
            if snap.device_cves(&core).contains(&(j as u32)) {
                let names = sim.world.names(&core);
                let group = sim.world.group(&core, tick);
                let r = MachineReference {
                    id: names.id,
                    computer_dns_name: names.name,
                    os_platform: core.platform.map_or("Other", |p| p.machine_name).to_owned(),
                    rbac_group_name: group.name.map(str::to_owned),
                };
                push_item(sink, &mut first, &r)?;
            }
        }
        sink.write(b"]}")
    })
}

pub(crate) fn machines_vulnerabilities(ctx: &Ctx) -> Response {
    let options = match ctx.list_options(MV_PAGE, &MACHINE_VULNERABILITIES) {
        Ok(options) => options,
        Err(e) => return ctx.reject(e),
    };
    let (sim, base) = (ctx.sim.clone(), ctx.base.clone());
    let tick = sim.tick();
    ctx.json(move |sink| {
        open_collection(
            sink,
            &base,
            "Collection(microsoft.windowsDefenderATP.api.PublicAssetVulnerabilityDto)",
        )?;
        let mut window = Window::new(&options, MV_PAGE);
        let mut first = true;
        let mut closed = false;
        let _ = Snapshot::new(&sim.world, tick).walk(
            Cursor { file: 0, line: 0 },
            false,
            &mut |_, row| {
                let Some(record) = row.machine_vulnerability() else {
                    return ControlFlow::Continue(());
                };
                if let Some(f) = &options.filter
                    && !f.matches(&record)
                {
                    return ControlFlow::Continue(());
                }
                match window.place() {
                    Place::Skipped => return ControlFlow::Continue(()),
                    Place::Past => return ControlFlow::Break(()),
                    Place::Taken => {}
                }
                if push_item(sink, &mut first, &record).is_err() {
                    closed = true;
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            },
        );
        if closed {
            return Err(super::stream::Closed);
        }
        sink.write(b"]")?;
        if let Some(link) =
            window.next_link(&options, &base, "vulnerabilities/machinesVulnerabilities")
        {
            sink.write(link.as_bytes())?;
        }
        sink.write(b"}")
    })
}
