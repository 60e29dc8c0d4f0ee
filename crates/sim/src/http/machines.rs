//! `/api/machines`, `/api/machines/{id}`, `/api/machines/findbytag`, `/api/machines/{id}/vulnerabilities`.

use std::sync::Arc;

use axum::response::Response;

use crate::records::Machine;
use crate::state::Inner;
use crate::world::Core;
use crate::world::snapshot::Snapshot;

use super::Ctx;
use super::filter::MACHINES;
use super::stream::{Closed, Sink};
use super::window::{Place, Window};

/// Server-side page size of `/api/machines` (and the `$top` cap).
pub(crate) const PAGE: u64 = 10_000;

/// Opens an OData collection answer: `{"@odata.context":"{base}/api/$metadata#{context}","value":[`.
pub(crate) fn open_collection(sink: &mut Sink, base: &str, context: &str) -> Result<(), Closed> {
    sink.write(
        format!(r#"{{"@odata.context":"{base}/api/$metadata#{context}","value":["#).as_bytes(),
    )
}

/// Writes `value` as the next array element.
pub(crate) fn push_item<T: serde::Serialize>(
    sink: &mut Sink,
    first: &mut bool,
    value: &T,
) -> Result<(), Closed> {
    if !std::mem::take(first) {
        sink.buf().push(b',');
    }
    let _ = serde_json::to_writer(sink.buf(), value);
    sink.row_done()
}

/// Whether `GET /api/machines` returns this device. With
/// [`unlisted_device_share`](crate::SimConfig::unlisted_device_share), a stable share of the
/// onboarded devices is left out (retention, device-group scoping) while their vulnerability rows
/// stay in the exports.
pub(crate) fn listed(sim: &Inner, core: &Core) -> bool {
    let share = sim.config.unlisted_device_share;
    !(share > 0.0
        && core.has_tvm_data()
        && crate::hash::unit(crate::hash::mix(core.hash, 0x0011_57ED)) < share)
}

/// The devices `GET /api/machines` returns at `tick`, in order.
pub(crate) fn listed_devices(sim: &Inner, tick: i64) -> impl Iterator<Item = Core> + '_ {
    Snapshot::new(&sim.world, tick)
        .devices()
        .filter(move |core| listed(sim, core))
}

/// Writes a machine as the next array element, without `ipAddresses` when the tenant is served
/// like Microsoft's get-machines example (only `lastIpAddress` / `lastExternalIpAddress`).
pub(crate) fn push_machine(
    sim: &Inner,
    sink: &mut Sink,
    first: &mut bool,
    m: &Machine,
) -> Result<(), Closed> {
    if sim.config.machines_without_ip_addresses {
        let mut v = serde_json::to_value(m).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("ipAddresses");
        }
        push_item(sink, first, &v)
    } else {
        push_item(sink, first, m)
    }
}

pub(crate) fn list(ctx: &Ctx) -> Response {
    let options = match ctx.list_options(PAGE, &MACHINES) {
        Ok(options) => options,
        Err(e) => return ctx.reject(e),
    };
    let sim = ctx.sim.clone();
    let base = ctx.base.clone();
    let tick = sim.tick();
    // get-machines, "Response": "If no recent machines found - 404 Not Found." (A `$skip` past
    // the end of a non-empty set is an empty 200 page.)
    if listed_devices(&sim, tick).next().is_none() {
        return ctx.not_found("No recent machines found.");
    }
    ctx.json(move |sink| {
        open_collection(sink, &base, "Machines")?;
        let world = &sim.world;
        let mut window = Window::new(&options, PAGE);
        let mut first = true;
        for core in listed_devices(&sim, tick) {
            // Without a filter, skipping needs no record at all.
            let machine = match &options.filter {
                Some(f) => {
                    let m = world.machine(&core, tick);
                    if !f.matches(&m) {
                        continue;
                    }
                    Some(m)
                }
                None => None,
            };
            match window.place() {
                Place::Skipped => continue,
                Place::Past => break,
                Place::Taken => {}
            }
            let m = machine.unwrap_or_else(|| world.machine(&core, tick));
            push_machine(&sim, sink, &mut first, &m)?;
        }
        sink.write(b"]")?;
        if let Some(link) = window.next_link(&options, &base, "machines") {
            sink.write(link.as_bytes())?;
        }
        sink.write(b"}")
    })
}

/// A device present at the current tick, by machine id or (as the docs allow) computer name.
pub(crate) fn find(sim: &Inner, tick: i64, id: &str) -> Option<Core> {
    if let Some(index) = sim.world.ids.decode(id) {
        let core = sim.world.core(index);
        return (index < sim.world.range(tick) && core.present(tick) && listed(sim, &core))
            .then_some(core);
    }
    if id.len() > 255 || id.len() == 40 {
        return None;
    }
    listed_devices(sim, tick).find(|core| {
        sim.world
            .names(core)
            .name
            .is_some_and(|n| n.eq_ignore_ascii_case(id))
    })
}

/// `{"@odata.context": …, <fields of value>}` for a single entity.
/// The value is built on the producer thread (it may need a scan of the tenant).
pub(crate) fn entity<T: serde::Serialize>(
    ctx: &Ctx,
    context: &str,
    value: impl FnOnce() -> T + Send + 'static,
) -> Response {
    let head = format!(
        r#"{{"@odata.context":"{}/api/$metadata#{context}""#,
        ctx.base
    );
    ctx.json(move |sink| {
        let body = serde_json::to_vec(&value()).unwrap_or_else(|_| b"{}".to_vec());
        sink.write(head.as_bytes())?;
        if body.len() > 2 {
            sink.write(b",")?;
            sink.write(&body[1..])?;
        } else {
            sink.write(b"}")?;
        }
        sink.row_done()
    })
}

pub(crate) fn by_id(ctx: &Ctx, id: &str) -> Response {
    let tick = ctx.sim.tick();
    let Some(core) = find(&ctx.sim, tick, id) else {
        return ctx.not_found(&format!("Machine {} was not found", shorten(id)));
    };
    let machine: Machine = ctx.sim.world.machine(&core, tick);
    entity(ctx, "Machines/$entity", move || machine)
}

fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(64).filter(|c| !c.is_control()).collect();
    if s.chars().count() > 64 {
        out.push('…');
    }
    out
}

pub(crate) fn find_by_tag(ctx: &Ctx) -> Response {
    let Some(tag) = ctx.query.get("tag").map(str::to_owned) else {
        return ctx.bad("MissingRequiredParameter", "The tag parameter is required.");
    };
    let starts_with = match ctx.query.get("useStartsWithFilter") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => return ctx.bad("InvalidInput", "useStartsWithFilter must be true or false."),
    };
    let sim = ctx.sim.clone();
    let base = ctx.base.clone();
    let tick = sim.tick();
    let tag = tag.to_lowercase();
    ctx.json(move |sink| {
        open_collection(sink, &base, "Machines")?;
        let mut first = true;
        for core in listed_devices(&sim, tick) {
            let m = sim.world.machine(&core, tick);
            let hit = m.machine_tags.iter().any(|t| {
                let t = t.to_lowercase();
                if starts_with {
                    t.starts_with(&tag)
                } else {
                    t == tag
                }
            });
            if hit {
                push_machine(&sim, sink, &mut first, &m)?;
            }
        }
        sink.write(b"]}")
    })
}

pub(crate) fn vulnerabilities(ctx: &Ctx, id: &str) -> Response {
    let tick = ctx.sim.tick();
    let Some(core) = find(&ctx.sim, tick, id) else {
        return ctx.not_found(&format!("Machine {} was not found", shorten(id)));
    };
    let sim: Arc<Inner> = ctx.sim.clone();
    let base = ctx.base.clone();
    ctx.json(move |sink| {
        open_collection(
            sink,
            &base,
            "Collection(Analytics.Contracts.PublicAPI.PublicVulnerabilityDto)",
        )?;
        let exposure = sim.exposure(tick);
        let mut cves = Snapshot::new(&sim.world, tick).device_cves(&core);
        cves.sort_unstable();
        cves.dedup();
        let mut first = true;
        for j in cves {
            let v = sim
                .world
                .vulnerability(j as usize, tick, exposure[j as usize]);
            push_item(sink, &mut first, &v)?;
        }
        sink.write(b"]}")
    })
}
