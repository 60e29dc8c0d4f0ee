//! `/_sim/…`: drive the emulator over HTTP (so tests in any language can): advance time, read the
//! truth and the counters, inject faults. Unauthenticated on purpose; never expose the emulator.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::http::{Method, StatusCode};
use axum::response::Response;

use crate::state::Inner;
use crate::world::snapshot::Snapshot;

use super::errors::mde;
use super::json_value;
use super::query::Query;
use super::stream::{self, Encoding, Splice, StreamSpec};

fn bad(message: &str) -> Response {
    mde(StatusCode::BAD_REQUEST, "BadRequest", message, "_sim")
}

fn ok(value: serde_json::Value) -> Response {
    json_value(StatusCode::OK, &value)
}

fn number<T: std::str::FromStr>(q: &Query, name: &str, default: T) -> Result<T, String> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("'{name}' must be a number")),
    }
}

pub(crate) fn handle(
    inner: &Arc<Inner>,
    method: &Method,
    segs: &[String],
    raw_query: &str,
    base: &str,
) -> Response {
    let q = match Query::parse(raw_query) {
        Ok(q) => q,
        Err(e) => return bad(&e.0),
    };
    let lower = super::lowercased(segs);
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let post = *method == Method::POST;
    match (l.as_slice(), post) {
        ([], false) => info(inner, base),
        (["tick"], true) => {
            let n: u32 = match number(&q, "n", 1u32) {
                Ok(n) if n <= 100_000 => n,
                Ok(_) => return bad("'n' must be at most 100000"),
                Err(e) => return bad(&e),
            };
            let tick = inner.advance(n);
            ok(
                serde_json::json!({"tick": tick, "now": crate::time::iso_ts(crate::time::Ts::at(inner.world.clock.at(tick)))}),
            )
        }
        (["stats"], false) => {
            ok(serde_json::to_value(inner.counters.snapshot(inner.tick())).unwrap_or_default())
        }
        (["truth", what], false) => {
            let tick = match number(&q, "tick", inner.tick()) {
                Ok(t) => t,
                Err(e) => return bad(&e),
            };
            truth(inner, what, tick)
        }
        (["compression"], true) => match q.get("enabled") {
            Some("true") => {
                inner.compression.store(true, Ordering::Relaxed);
                ok(serde_json::json!({"compression": true}))
            }
            Some("false") => {
                inner.compression.store(false, Ordering::Relaxed);
                ok(serde_json::json!({"compression": false}))
            }
            _ => bad("'enabled' must be true or false"),
        },
        (["faults", kind], true) => fault(inner, kind, &q),
        _ => mde(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "Unknown control endpoint (see the README of rampart-sim).",
            "_sim",
        ),
    }
}

fn info(inner: &Inner, base: &str) -> Response {
    let c = &inner.config;
    ok(serde_json::json!({
        "tenantId": c.tenant_id,
        "clientId": c.client_id,
        "tokenUrl": format!("{base}/{}/oauth2/v2.0/token", c.tenant_id),
        "apiUrl": base,
        "scope": "https://api.securitycenter.microsoft.com/.default",
        "seed": c.seed,
        "devices": c.devices,
        "findingsPerDevice": c.findings_per_device,
        "tick": inner.tick(),
        "now": crate::time::iso_ts(crate::time::Ts::at(inner.world.clock.at(inner.tick()))),
        "rateLimits": c.rate_limits,
        "faultRate": c.fault_rate,
    }))
}

fn fault(inner: &Inner, kind: &str, q: &Query) -> Response {
    let times = match number(q, "times", 1u32) {
        Ok(t) => t,
        Err(e) => return bad(&e),
    };
    let path = q.get("path").unwrap_or("");
    let f = &inner.faults;
    match kind {
        "fail_next" => {
            let status = match number(q, "status", 500u16) {
                Ok(s) => s,
                Err(e) => return bad(&e),
            };
            f.fail_next(path, status, times);
        }
        "fail_export_page" => match number(q, "n", 1u32) {
            Ok(n) => f.fail_export_page(n),
            Err(e) => return bad(&e),
        },
        "truncate_next" => f.truncate_next(path, times),
        "reset_next" => f.reset_next(path, times),
        "expire_tokens_now" => f.expire_tokens_now(),
        "foreign_next_link" => f.foreign_next_link(times),
        "expire_sas_now" => f.expire_sas_now(),
        "expire_sas_after" => match number(q, "n", 0u32) {
            Ok(n) => f.expire_sas_after(n),
            Err(e) => return bad(&e),
        },
        "clear" => f.clear(),
        _ => {
            return mde(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                "Unknown fault.",
                "_sim",
            );
        }
    }
    ok(serde_json::json!({"fault": kind, "armed": true}))
}

/// JSON lines, streamed.
fn truth(inner: &Arc<Inner>, what: &str, tick: i64) -> Response {
    let spec = || StreamSpec {
        content_type: "application/x-ndjson",
        compress: Encoding::Identity,
        content_encoding: false,
        truncate: false,
        splice: Splice::None,
    };
    let sim = inner.clone();
    match what {
        "machines" => stream::respond(inner, spec(), move |sink| {
            for core in Snapshot::new(&sim.world, tick).devices() {
                let _ = serde_json::to_writer(sink.buf(), &sim.world.machine(&core, tick));
                sink.buf().push(b'\n');
                sink.row_done()?;
            }
            Ok(())
        }),
        "findings" => stream::respond(inner, spec(), move |sink| {
            let snap = Snapshot::new(&sim.world, tick);
            for core in snap.devices() {
                let mut closed = false;
                let _ = snap.device_rows(&core, &mut |row| {
                    if let Some(f) = row.to_finding() {
                        let _ = serde_json::to_writer(sink.buf(), &f);
                        sink.buf().push(b'\n');
                        if sink.row_done().is_err() {
                            closed = true;
                            return ControlFlow::Break(());
                        }
                    }
                    ControlFlow::Continue(())
                });
                if closed {
                    return Err(stream::Closed);
                }
            }
            Ok(())
        }),
        "vulnerabilities" => stream::respond(inner, spec(), move |sink| {
            let exposure = sim.exposure(tick);
            for j in 0..sim.world.catalogue.cves.len() {
                let _ = serde_json::to_writer(
                    sink.buf(),
                    &sim.world.vulnerability(j, tick, exposure[j]),
                );
                sink.buf().push(b'\n');
                sink.row_done()?;
            }
            Ok(())
        }),
        _ => mde(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "Truth is machines, findings or vulnerabilities.",
            "_sim",
        ),
    }
}
