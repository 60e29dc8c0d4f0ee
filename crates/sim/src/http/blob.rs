//! Export file downloads: what Azure Blob Storage would serve behind the SAS URLs of
//! `SoftwareVulnerabilitiesExport`. No bearer token; the SAS signature and expiry (wall clock) decide.

use std::ops::ControlFlow;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::DateTime;

use crate::state::Inner;
use crate::time::{Ts, wall_secs};
use crate::world::snapshot::{Cursor, Snapshot};

use super::errors::storage;
use super::exports::{SAS_VERSION, blob_path};
use super::query::Query;
use super::stream::{self, Encoding, StreamSpec};

fn http_date(secs: i64) -> String {
    Ts::at(secs)
        .to_chrono()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

fn auth_failed(detail: &str) -> Response {
    storage(
        StatusCode::FORBIDDEN,
        "AuthenticationFailed",
        "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.",
        Some(detail),
    )
}

fn not_found() -> Response {
    storage(
        StatusCode::NOT_FOUND,
        "BlobNotFound",
        "The specified blob does not exist.",
        None,
    )
}

/// `(tick, file)` of a blob path, if it is exactly one the emulator issues.
fn locate(inner: &Inner, segs: &[String], path: &str) -> Option<(i64, u32)> {
    if segs.len() != 10 {
        return None;
    }
    let tick = inner
        .world
        .clock
        .parse_time_path(&format!("{}/{}/", segs[3], segs[4]))?;
    let digits = segs[9].strip_prefix("part-")?.get(..5)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let file: u32 = digits.parse().ok()?;
    // `file_count` itself is the trailing empty part file of every non-empty export.
    (tick <= inner.tick()
        && file <= inner.world.file_count(tick)
        && blob_path(inner, tick, file) == path)
        .then_some((tick, file))
}

pub(crate) async fn download(
    inner: &Arc<Inner>,
    segs: &[String],
    raw_query: &str,
    truncate: bool,
) -> Response {
    let path = format!("/{}", segs.join("/"));
    let Ok(query) = Query::parse(raw_query) else {
        return storage(
            StatusCode::BAD_REQUEST,
            "InvalidQueryParameterValue",
            "Value for one of the query parameters specified in the request URI is invalid.",
            None,
        );
    };
    let Some(sig) = query.get("sig") else {
        // Anonymous access to a private container.
        return storage(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "The specified resource does not exist.",
            None,
        );
    };
    let (Some(sv), Some(st), Some(se), Some(sr), Some(sp)) = (
        query.get("sv"),
        query.get("st"),
        query.get("se"),
        query.get("sr"),
        query.get("sp"),
    ) else {
        return auth_failed("Signature fields not well formed.");
    };
    let signed = format!("{sp}\n{st}\n{se}\n{path}\n{sr}\n{sv}");
    let valid = STANDARD
        .decode(sig)
        .is_ok_and(|s| inner.sas.verify(signed.as_bytes(), &s));
    if !valid || sv != SAS_VERSION {
        return auth_failed(&format!(
            "Signature did not match. String to sign used was {}",
            signed.replace('\n', "\\n")
        ));
    }
    let (Ok(start), Ok(expiry)) = (
        DateTime::parse_from_rfc3339(st),
        DateTime::parse_from_rfc3339(se),
    ) else {
        return auth_failed("Signature fields not well formed.");
    };
    let now = wall_secs();
    if now >= expiry.timestamp() || start.timestamp() <= inner.faults.sas_revoked_before() {
        return auth_failed(&format!(
            "Signed expiry time [{}] must be after current time [{}]",
            http_date(expiry.timestamp()),
            http_date(now)
        ));
    }
    if start.timestamp() > now + 15 * 60 {
        return auth_failed(&format!(
            "Signed start time [{}] is after current time [{}]",
            http_date(start.timestamp()),
            http_date(now)
        ));
    }
    let Some((tick, file)) = locate(inner, segs, &path) else {
        return not_found();
    };
    // Spark writes empty part files as 0 bytes; find out before choosing a gzip body.
    let sim = inner.clone();
    let has_rows = tokio::task::spawn_blocking(move || {
        Snapshot::new(&sim.world, tick)
            .walk(Cursor { file, line: 0 }, true, &mut |_, _| {
                ControlFlow::Break(())
            })
            .is_break()
    })
    .await
    .unwrap_or(true);
    let mut resp = if has_rows {
        let sim = inner.clone();
        stream::respond(
            inner,
            StreamSpec {
                content_type: "application/octet-stream",
                compress: Encoding::Gzip,
                // The bytes are the gzip file either way; the header only says whether the
                // blob's stored content encoding is gzip (then HTTP clients decompress it).
                content_encoding: inner.config.blob_content_encoding,
                truncate,
                splice: stream::Splice::None,
            },
            move |sink| {
                let mut closed = false;
                let _ = Snapshot::new(&sim.world, tick).walk(
                    Cursor { file, line: 0 },
                    true,
                    &mut |_, row| {
                        row.write_pascal(sink.buf());
                        sink.buf().push(b'\n');
                        if sink.row_done().is_err() {
                            closed = true;
                            return ControlFlow::Break(());
                        }
                        ControlFlow::Continue(())
                    },
                );
                if closed { Err(stream::Closed) } else { Ok(()) }
            },
        )
    } else {
        let mut r = Response::new(Body::empty());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        r
    };
    let h = resp.headers_mut();
    h.insert("x-ms-blob-type", HeaderValue::from_static("BlockBlob"));
    h.insert("x-ms-version", HeaderValue::from_static(SAS_VERSION));
    resp
}
