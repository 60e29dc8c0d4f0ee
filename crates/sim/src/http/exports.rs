//! The export APIs: `SoftwareVulnerabilitiesByMachine` (JSON pages), `SoftwareVulnerabilityChangesByMachine`
//! (delta pages) and `SoftwareVulnerabilitiesExport` (file URLs).
//!
//! Pages carry a `$skiptoken` shaped like Microsoft's — base64 of
//! `{"ExportDefinition":{"TimePath":"2026-11-01/0600/"},"ExportFileIndex":2,"LineStoppedAt":50000}` —
//! which pins the walk to the snapshot it started on, whatever the clock does meanwhile.

use std::ops::ControlFlow;

use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;

use crate::hash::mix;
use crate::state::Inner;
use crate::time::{Ts, iso_ts, wall_secs};
use crate::world::catalog::GROUPS;
use crate::world::delta;
use crate::world::snapshot::{Cursor, Snapshot};

use super::machines::open_collection;
use super::query::{self, encode};
use super::stream::{Closed, Sink};
use super::{ApiError, Ctx};

const DEFAULT_PAGE: u64 = 50_000;
const MAX_PAGE: u64 = 200_000;
/// How far back a pinned snapshot (and the delta's `sinceTime`) may reach: 14 days of 6-hour ticks.
const RETENTION_TICKS: i64 = 14 * 4;
const FOREIGN_HOST: &str = "https://evil.example.net";
pub(crate) const SAS_VERSION: &str = "2020-08-04";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SkipToken {
    export_definition: ExportDefinition,
    export_file_index: u32,
    line_stopped_at: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ExportDefinition {
    time_path: String,
}

fn encode_token(time_path: &str, at: Cursor) -> String {
    let json = format!(
        r#"{{"ExportDefinition":{{"TimePath":"{time_path}"}},"ExportFileIndex":{},"LineStoppedAt":{}}}"#,
        at.file, at.line
    );
    // Standard base64 as Microsoft's; '+' and '/' escaped so the link survives form decoding.
    STANDARD
        .encode(json)
        .replace('+', "%2B")
        .replace('/', "%2F")
}

/// A `$skiptoken` back to `(tick, cursor)`; anything forged, garbled or stale is a 400.
fn decode_token(
    ctx: &Ctx,
    raw: &str,
    max_file: impl Fn(i64) -> u32,
) -> Result<(i64, Cursor), ApiError> {
    let invalid = |why: &str| {
        ApiError::bad(
            "InvalidInput",
            format!("The $skiptoken is not valid: {why}."),
        )
    };
    if raw.len() > 1024 {
        return Err(invalid("it is too long"));
    }
    // A '+' sent unescaped arrives as a space.
    let raw = raw.trim().replace(' ', "+");
    let bytes = STANDARD
        .decode(&raw)
        .or_else(|_| URL_SAFE.decode(&raw))
        .or_else(|_| URL_SAFE_NO_PAD.decode(&raw))
        .map_err(|_| invalid("it is not base64"))?;
    let token: SkipToken = serde_json::from_slice(&bytes)
        .map_err(|_| invalid("it does not describe an export position"))?;
    let clock = ctx.sim.world.clock;
    let tick = clock
        .parse_time_path(&token.export_definition.time_path)
        .ok_or_else(|| invalid("it names no export snapshot"))?;
    let now = ctx.sim.tick();
    if tick > now {
        return Err(invalid("it names a snapshot that does not exist yet"));
    }
    if tick < now - RETENTION_TICKS {
        return Err(invalid(
            "its export snapshot has expired; start again without $skiptoken",
        ));
    }
    if token.export_file_index > max_file(tick) {
        return Err(invalid("it points past the end of the export"));
    }
    Ok((
        tick,
        Cursor {
            file: token.export_file_index,
            line: token.line_stopped_at,
        },
    ))
}

/// `pageSize` (also spelled `pagesize`): default 50,000, at most 200,000.
fn page_size(ctx: &Ctx) -> Result<u64, ApiError> {
    let Some(raw) = ctx.query.get("pageSize") else {
        return Ok(DEFAULT_PAGE);
    };
    match query::whole_number(raw) {
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        _ => Err(ApiError::bad(
            "InvalidInput",
            format!("pageSize must be an integer between 1 and {MAX_PAGE}; got '{raw}'."),
        )),
    }
}

/// A read's `pageSize`, `$top`, and where it starts (the snapshot's tick and first row): from its
/// `$skiptoken`, or at the current snapshot's first row. Checked in that order.
fn read_options(
    ctx: &Ctx,
    max_file: impl Fn(i64) -> u32,
) -> Result<(u64, Option<u64>, i64, Cursor), ApiError> {
    let page = page_size(ctx)?;
    let top = ctx.top(MAX_PAGE)?;
    let (tick, from) = match ctx.query.get("$skiptoken") {
        None => (ctx.sim.tick(), Cursor { file: 0, line: 0 }),
        Some(raw) => decode_token(ctx, raw, max_file)?,
    };
    Ok((page, top, tick, from))
}

/// One page of export rows, written as they stream past: at most `limit`, then the cursor of the
/// first row left for the next page.
struct RowPage {
    limit: u64,
    written: u64,
    next: Option<Cursor>,
    closed: bool,
}

impl RowPage {
    fn new(limit: u64) -> RowPage {
        RowPage {
            limit,
            written: 0,
            next: None,
            closed: false,
        }
    }

    /// Writes the row at `at` (`write` puts its JSON in the buffer), or stops: the page is full
    /// or the client went away.
    fn row(
        &mut self,
        sink: &mut Sink,
        at: Cursor,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> ControlFlow<()> {
        if self.written == self.limit {
            self.next = Some(at);
            return ControlFlow::Break(());
        }
        if self.written > 0 {
            sink.buf().push(b',');
        }
        write(sink.buf());
        self.written += 1;
        if sink.row_done().is_err() {
            self.closed = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    /// Closes the array; where the next page starts (none: this was the last), or `Closed` if the
    /// client went away.
    fn finish(self, sink: &mut Sink) -> Result<Option<Cursor>, Closed> {
        if self.closed {
            return Err(Closed);
        }
        sink.write(b"]")?;
        Ok(self.next)
    }
}

/// The host a nextLink names (a foreign one when a fault asks for it) and its `$skiptoken`.
fn continuation<'a>(sim: &Inner, base: &'a str, tick: i64, at: Cursor) -> (&'a str, String) {
    let host = if sim.faults.take_foreign_link() {
        FOREIGN_HOST
    } else {
        base
    };
    (host, encode_token(&sim.world.clock.time_path(tick), at))
}

pub(crate) fn by_machine(ctx: &Ctx) -> Response {
    let world = &ctx.sim.world;
    let (page, top, tick, from) = match read_options(ctx, |t| world.file_count(t)) {
        Ok(options) => options,
        Err(e) => return ctx.reject(e),
    };
    let (sim, base) = (ctx.sim.clone(), ctx.base.clone());
    ctx.json(move |sink| {
        open_collection(sink, &base, "Collection(microsoft.windowsDefenderATP.api.AssetVulnerability)")?;
        let mut rows = RowPage::new(top.unwrap_or(page));
        let _ = Snapshot::new(&sim.world, tick).walk(from, false, &mut |at, row| {
            rows.row(sink, at, |buf| row.write_json(buf, None))
        });
        let next = rows.finish(sink)?;
        if let (None, Some(at)) = (top, next) {
            let (host, token) = continuation(&sim, &base, tick, at);
            sink.write(
                format!(r#","@odata.nextLink":"{host}/api/machines/SoftwareVulnerabilitiesByMachine?pagesize={page}&$skiptoken={token}""#)
                    .as_bytes(),
            )?;
        }
        sink.write(b"}")
    })
}

fn parse_since(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    let bare = raw.strip_suffix('Z').unwrap_or(raw);
    if let Ok(t) = NaiveDateTime::parse_from_str(bare, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(t.and_utc());
    }
    NaiveDate::parse_from_str(bare, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

pub(crate) fn changes(ctx: &Ctx) -> Response {
    let Some(since_raw) = ctx.query.get("sinceTime").map(str::to_owned) else {
        return ctx.bad(
            "MissingRequiredParameter",
            "The sinceTime parameter is required.",
        );
    };
    let Some(since) = parse_since(&since_raw) else {
        return ctx.bad(
            "InvalidInput",
            "sinceTime must be an ISO 8601 date and time, such as 2026-11-01T06:00:00Z.",
        );
    };
    let world = &ctx.sim.world;
    let (page, top, tick, from) = match read_options(ctx, |t| world.chunks(t)) {
        Ok(options) => options,
        Err(e) => return ctx.reject(e),
    };
    let now = world.clock.at(tick);
    let oldest = now - RETENTION_TICKS * crate::time::TICK_SECS;
    if since.timestamp() < oldest {
        return ctx.bad(
            "InvalidInput",
            &format!(
                "sinceTime can be at most 14 days before the latest snapshot ({}); got {since_raw}.",
                iso_ts(Ts::at(oldest))
            ),
        );
    }
    // Every change of the 6-hour bucket holding sinceTime, and of all later buckets.
    let first = world.clock.bucket_of(since.timestamp());
    let (sim, base) = (ctx.sim.clone(), ctx.base.clone());
    ctx.json(move |sink| {
        open_collection(sink, &base, "Collection(microsoft.windowsDefenderATP.api.DeltaAssetVulnerability)")?;
        let mut rows = RowPage::new(top.unwrap_or(page));
        let _ = delta::walk(&sim.world, first, tick, from, &mut |at, row, status, event| {
            rows.row(sink, at, |buf| row.write_json(buf, Some((status, event))))
        });
        let next = rows.finish(sink)?;
        if let (None, Some(at)) = (top, next) {
            let (host, token) = continuation(&sim, &base, tick, at);
            sink.write(
                format!(
                    r#","@odata.nextLink":"{host}/api/machines/SoftwareVulnerabilityChangesByMachine?sincetime={}&pagesize={page}&$skiptoken={token}""#,
                    encode(&since_raw)
                )
                .as_bytes(),
            )?;
        }
        sink.write(b"}")
    })
}

/// The string a SAS signature covers.
pub(crate) fn sas_string_to_sign(path: &str, st: &str, se: &str) -> String {
    format!("r\n{st}\n{se}\n{path}\nb\n{SAS_VERSION}")
}

/// The job id in export paths (`temp-<guid>` and part file names) of a snapshot.
pub(crate) fn export_job(seed: u64, tick: i64) -> String {
    crate::world::guid(mix(mix(seed, 0xE4B), tick as u64))
}

/// The path (under the emulator's base URL) of one export file.
pub(crate) fn blob_path(sim: &crate::state::Inner, tick: i64, file: u32) -> String {
    let job = export_job(sim.config.seed, tick);
    let (_, group) = sim.world.file_coords(file);
    let time_path = sim.world.clock.time_path(tick);
    format!(
        "/blob/tvmexportsim/temp-{job}/{time_path}VaExport/json/OrgId={}/_RbacGroupId={}/part-{file:05}-{job}.c000.json.gz",
        sim.config.tenant_id, GROUPS[group].id
    )
}

pub(crate) fn file_export(ctx: &Ctx) -> Response {
    let hours = match ctx.query.get("sasValidHours") {
        None => 1,
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(h) if (1..=6).contains(&h) => h,
            _ => {
                return ctx.bad(
                    "InvalidInput",
                    &format!("sasValidHours must be an integer between 1 and 6; got '{raw}'."),
                );
            }
        },
    };
    let (sim, base) = (ctx.sim.clone(), ctx.base.clone());
    let tick = sim.tick();
    // SAS URLs live in wall-clock time; a URL issued after `expire_sas_now` must start after it.
    let st = wall_secs().max(sim.faults.sas_revoked_before() + 1);
    let se = st + hours * 3600;
    ctx.json(move |sink| {
        sink.write(
            format!(r#"{{"@odata.context":"{base}/api/$metadata#microsoft.windowsDefenderATP.api.ExportFilesResponse","exportFiles":["#)
                .as_bytes(),
        )?;
        let st = sas_time(st);
        let se = sas_time(se);
        let snap = Snapshot::new(&sim.world, tick);
        let mut first = true;
        let files = sim.world.file_count(tick);
        // Spark also leaves an empty part file behind: one 0-byte blob ends every non-empty listing.
        let listed = (0..files).filter(|f| snap.file_listed(*f)).collect::<Vec<_>>();
        let trailing = (!listed.is_empty()).then_some(files);
        for file in listed.into_iter().chain(trailing) {
            let path = blob_path(&sim, tick, file);
            let sig = STANDARD.encode(sim.sas.sign(sas_string_to_sign(&path, &st, &se).as_bytes()));
            let url = format!(
                "{base}{path}?sv={SAS_VERSION}&st={}&se={}&sr=b&sp=r&sig={}",
                encode(&st),
                encode(&se),
                encode(&sig)
            );
            if !std::mem::take(&mut first) {
                sink.buf().push(b',');
            }
            super::super::world::rows::push_json_str(sink.buf(), &url);
        }
        let generated = iso_ts(Ts::at(sim.world.clock.at(tick)));
        sink.write(format!(r#"],"generatedTime":"{generated}"}}"#).as_bytes())
    })
}

/// `2026-11-01T13:41:59Z`: SAS `st`/`se` format.
pub(crate) fn sas_time(secs: i64) -> String {
    iso_ts(Ts::at(secs))
}
