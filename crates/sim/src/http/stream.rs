//! Streaming response bodies.
//!
//! Records are generated on a blocking thread into ~64 KiB chunks, optionally compressed on the fly
//! (flate2, fast level), and handed to the HTTP body through a bounded channel: a 200 MB page is never
//! in memory, and a client that stops reading stops the generator.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use flate2::Compression;
use flate2::write::{GzEncoder, ZlibEncoder};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::state::Inner;

pub(crate) const CHUNK: usize = 64 * 1024;
pub(crate) const ODATA_JSON: &str =
    "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8";

/// Compression of the bytes the producer writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    Identity,
    /// HTTP `deflate`, i.e. zlib-wrapped (RFC 9110), what MDE sends when offered.
    Deflate,
    Gzip,
}

impl Encoding {
    /// What to answer an `Accept-Encoding` with: deflate first (as MDE), then gzip, else identity.
    pub(crate) fn negotiate(headers: &HeaderMap) -> Encoding {
        let Some(accept) = headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
        else {
            return Encoding::Identity;
        };
        let offered = |name: &str| {
            accept.split(',').any(|item| {
                let mut parts = item.split(';');
                let coding = parts.next().unwrap_or("").trim();
                let refused = parts.any(|p| {
                    let p = p.trim();
                    p.strip_prefix("q=")
                        .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
                });
                (coding.eq_ignore_ascii_case(name) || coding == "*") && !refused
            })
        };
        if offered("deflate") {
            Encoding::Deflate
        } else if offered("gzip") {
            Encoding::Gzip
        } else {
            Encoding::Identity
        }
    }

    fn header(self) -> Option<&'static str> {
        match self {
            Encoding::Identity => None,
            Encoding::Deflate => Some("deflate"),
            Encoding::Gzip => Some("gzip"),
        }
    }
}

enum Encoder {
    None,
    Gzip(GzEncoder<Vec<u8>>),
    Zlib(ZlibEncoder<Vec<u8>>),
}

/// A change to a collection body, made at its first flush (fault injection).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Splice {
    #[default]
    None,
    /// Insert a record holding a bare `NaN`: the body is no longer valid JSON.
    Garble,
    /// Insert a valid record of an unexpected shape.
    OddRecord,
}

impl Splice {
    fn record(self, n: u64) -> Option<String> {
        match self {
            Splice::None => None,
            Splice::Garble => Some(r#"{"id":"garbled-record","cvssScore":NaN}"#.to_owned()),
            // Numbers where every Microsoft entity has strings: no client's types accept them.
            Splice::OddRecord => Some(format!(
                r#"{{"id":"odd-record-{n}","firstSeen":17,"lastSeen":17,"publishedOn":17,"updatedOn":17,"deviceId":17,"computerDnsName":17,"name":17,"severity":17,"exposureLevel":17,"osPlatform":17,"cveId":17,"softwareName":17}}"#
            )),
        }
    }
}

static SPLICED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The producer stopped: the client went away, or an injected truncation ended the body.
#[derive(Debug)]
pub(crate) struct Closed;

type Chunk = Result<Bytes, std::io::Error>;

pub(crate) struct Sink {
    raw: Vec<u8>,
    encoder: Encoder,
    tx: mpsc::Sender<Chunk>,
    truncate: bool,
    splice: Splice,
    done: bool,
    rows: u64,
    sim: Arc<Inner>,
}

impl Sink {
    /// The buffer to append to; call [`Sink::row_done`] after each record.
    pub(crate) fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.raw
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), Closed> {
        self.raw.extend_from_slice(bytes);
        self.maybe_flush()
    }

    /// Counts a record and flushes a full chunk.
    pub(crate) fn row_done(&mut self) -> Result<(), Closed> {
        self.rows += 1;
        self.maybe_flush()
    }

    pub(crate) fn maybe_flush(&mut self) -> Result<(), Closed> {
        if self.raw.len() >= CHUNK {
            self.flush(false)
        } else {
            Ok(())
        }
    }

    fn send(&mut self, bytes: Vec<u8>) -> Result<(), Closed> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.tx
            .blocking_send(Ok(Bytes::from(bytes)))
            .map_err(|_| Closed)
    }

    fn flush(&mut self, last: bool) -> Result<(), Closed> {
        if self.done {
            return Err(Closed);
        }
        let finishing = last || self.truncate;
        if let Some(record) = self
            .splice
            .record(SPLICED.fetch_add(1, Ordering::Relaxed) + 1)
        {
            self.splice = Splice::None;
            // Right after the opening of the `value` array (exports and entity sets alike).
            if let Some(at) = find(&self.raw, b"\"value\":[") {
                let at = at + b"\"value\":[".len();
                let empty = self.raw.get(at) == Some(&b']');
                let mut insert = record.into_bytes();
                if !empty {
                    insert.push(b',');
                }
                self.raw.splice(at..at, insert);
            }
        }
        if self.truncate {
            // Cut mid-record: half of what is buffered (the first chunk), then end the body cleanly.
            let keep = self.raw.len() / 2;
            self.raw.truncate(keep);
        }
        // Identity hands its buffer to the body; encoders compress from it and reuse it.
        let out = match &mut self.encoder {
            Encoder::None => {
                std::mem::replace(&mut self.raw, Vec::with_capacity(CHUNK + CHUNK / 4))
            }
            Encoder::Gzip(e) => {
                let _ = e.write_all(&self.raw);
                self.raw.clear();
                std::mem::take(e.get_mut())
            }
            Encoder::Zlib(e) => {
                let _ = e.write_all(&self.raw);
                self.raw.clear();
                std::mem::take(e.get_mut())
            }
        };
        let mut out = out;
        if finishing {
            self.done = true;
            match std::mem::replace(&mut self.encoder, Encoder::None) {
                Encoder::None => {}
                Encoder::Gzip(e) => out.extend(e.finish().unwrap_or_default()),
                Encoder::Zlib(e) => out.extend(e.finish().unwrap_or_default()),
            }
        }
        self.send(out)?;
        if self.truncate { Err(Closed) } else { Ok(()) }
    }

    fn finish(mut self) {
        let _ = self.flush(true);
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.sim
            .counters
            .rows
            .fetch_add(self.rows, Ordering::Relaxed);
    }
}

/// Options of a streamed response.
pub(crate) struct StreamSpec {
    pub(crate) content_type: &'static str,
    /// Compression applied to the bytes.
    pub(crate) compress: Encoding,
    /// Announce the compression as `Content-Encoding` (false for gzip files served as files).
    pub(crate) content_encoding: bool,
    pub(crate) truncate: bool,
    pub(crate) splice: Splice,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Runs `produce` on a blocking thread and streams what it writes.
pub(crate) fn respond(
    sim: &Arc<Inner>,
    spec: StreamSpec,
    produce: impl FnOnce(&mut Sink) -> Result<(), Closed> + Send + 'static,
) -> Response {
    let (tx, mut rx) = mpsc::channel::<Chunk>(4);
    let level = Compression::fast();
    let encoder = match spec.compress {
        Encoding::Identity => Encoder::None,
        Encoding::Gzip => Encoder::Gzip(GzEncoder::new(Vec::with_capacity(CHUNK / 2), level)),
        Encoding::Deflate => Encoder::Zlib(ZlibEncoder::new(Vec::with_capacity(CHUNK / 2), level)),
    };
    let sink = Sink {
        raw: Vec::with_capacity(CHUNK + CHUNK / 4),
        encoder,
        tx,
        truncate: spec.truncate,
        splice: spec.splice,
        done: false,
        rows: 0,
        sim: sim.clone(),
    };
    tokio::task::spawn_blocking(move || {
        let mut sink = sink;
        if produce(&mut sink).is_ok() {
            sink.finish();
        }
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(spec.content_type),
    );
    if spec.content_encoding
        && let Some(enc) = spec.compress.header()
    {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(enc));
    }
    resp
}

/// Drops the connection half-way through the first chunk of the body.
pub(crate) fn reset_body(resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let stream = body
        .into_data_stream()
        .take(1)
        .map(|chunk| {
            chunk
                .map(|b| b.slice(..b.len() / 2))
                .map_err(std::io::Error::other)
        })
        .chain(futures::stream::once(async {
            Err::<Bytes, _>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "injected connection reset",
            ))
        }));
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Delivers the first chunks of the body slowly (bounded, so tests stay fast).
pub(crate) fn slow_body(resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let stream = body
        .into_data_stream()
        .enumerate()
        .then(|(i, chunk)| async move {
            if i < 8 {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            chunk
        });
    Response::from_parts(parts, Body::from_stream(stream))
}
