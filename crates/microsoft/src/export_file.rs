//! Export files (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-assessment-software-vulnerabilities>): gzip-compressed JSON lines, PascalCase keys, null keys omitted,
//! one [`AssetVulnerability`] per line, possibly 0 bytes.
//!
//! Downloads go to Azure Blob Storage with a SAS signature in the URL: **no bearer token** is sent,
//! and the URL (a credential for hours) never appears in logs or errors. A file is decompressed and
//! parsed line by line as it arrives, so memory stays flat whatever its size.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use flate2::read::MultiGzDecoder;
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{ApiError, EndpointError};
use crate::family::ApiFamily;
use crate::http::body::{describe, read_bounded};
use crate::http::{Budget, Core};
use crate::paging::{
    Batches, ConsumerGone, EventTx, OddRecords, PageTiming, ReadEnd, ReadEvent, ReadPlan,
    ReadReport, consumer_gone, next_chunk, restart_or_fail,
};
use crate::record::decode_record;
use crate::wire::mde::AssetVulnerability;

/// A line of an export file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportLineError {
    /// The gzip stream or the underlying reader failed; nothing follows.
    #[error("the export file could not be read after line {line}: {detail}")]
    Io { line: u64, detail: String },
    /// The line is not a record (skipped; the lines after it are still read).
    #[error("line {line} of the export file is not a record: {detail}")]
    Json { line: u64, detail: String },
    /// A line longer than the limit (no newline found); nothing follows.
    #[error("line {line} of the export file is longer than {limit} bytes")]
    TooLong { line: u64, limit: usize },
}

/// Parses one line; `None` for a blank line.
fn parse_line<T: DeserializeOwned>(line: &[u8]) -> Option<Result<T, serde_json::Error>> {
    let trimmed = line.trim_ascii();
    (!trimmed.is_empty()).then(|| decode_record(trimmed))
}

/// Reads the records of an export file from any reader of its gzip bytes (a file on disk, a
/// download): one record per line, decompressed as it goes. Concatenated gzip members are read as one
/// stream, as Spark may write them.
pub fn read_export_lines<R: Read>(gzip: R, max_line_bytes: usize) -> ExportLines<R> {
    ExportLines {
        pending: Some(BufReader::new(gzip)),
        reader: None,
        buf: Vec::new(),
        line: 0,
        max_line_bytes,
        done: false,
    }
}

/// Iterator returned by [`read_export_lines`].
#[derive(Debug)]
pub struct ExportLines<R: Read> {
    /// The compressed input before the first read: a 0-byte file (Microsoft sends them) is not a
    /// gzip stream, so emptiness is checked before decompressing.
    pending: Option<BufReader<R>>,
    reader: Option<BufReader<MultiGzDecoder<BufReader<R>>>>,
    buf: Vec<u8>,
    line: u64,
    max_line_bytes: usize,
    done: bool,
}

impl<R: Read> Iterator for ExportLines<R> {
    type Item = Result<AssetVulnerability, ExportLineError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(mut raw) = self.pending.take() {
            match raw.fill_buf() {
                Ok([]) => self.done = true,
                Ok(_) => {
                    self.reader = Some(BufReader::with_capacity(
                        256 * 1024,
                        MultiGzDecoder::new(raw),
                    ));
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(ExportLineError::Io {
                        line: 0,
                        detail: e.to_string(),
                    }));
                }
            }
        }
        while !self.done {
            let Some(reader) = self.reader.as_mut() else {
                self.done = true;
                break;
            };
            self.buf.clear();
            let limit = self.max_line_bytes as u64 + 1;
            let read = reader.take(limit).read_until(b'\n', &mut self.buf);
            match read {
                Ok(0) => self.done = true,
                Ok(_) => {
                    self.line += 1;
                    if self.buf.len() > self.max_line_bytes && self.buf.last() != Some(&b'\n') {
                        self.done = true;
                        return Some(Err(ExportLineError::TooLong {
                            line: self.line,
                            limit: self.max_line_bytes,
                        }));
                    }
                    match parse_line(&self.buf) {
                        None => continue,
                        Some(Ok(record)) => return Some(Ok(record)),
                        Some(Err(e)) => {
                            return Some(Err(ExportLineError::Json {
                                line: self.line,
                                detail: e.to_string().chars().take(200).collect(),
                            }));
                        }
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(ExportLineError::Io {
                        line: self.line,
                        detail: e.to_string(),
                    }));
                }
            }
        }
        None
    }
}

/// Collects decompressed bytes for the async download path (`flate2::write::MultiGzDecoder` writes
/// into it; complete lines are taken out after every chunk).
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
}

impl Write for Lines {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum FileFailure {
    Transient { reason: String, delivered: u64 },
    Closed,
}

impl From<ConsumerGone> for FileFailure {
    fn from(_: ConsumerGone) -> Self {
        FileFailure::Closed
    }
}

/// Downloads one export file and delivers its records (see [`crate::MdeClient::export_file_records`]),
/// tagged `page` in every event (the file's index in its listing when several are read at once).
pub(crate) async fn read_export_file<T: DeserializeOwned + Send + 'static>(
    core: Arc<Core>,
    plan: ReadPlan,
    url: Url,
    page: u32,
    tx: EventTx<T>,
) -> Result<ReadReport, ApiError> {
    let family = ApiFamily::FileExport;
    let mut budget = Budget::new(&core.retry);
    loop {
        budget.attempts += 1;
        // No bearer token: the SAS signature in the URL is the credential.
        let request = core.http.get(url.clone()).send();
        let resp = match tokio::time::timeout(core.read_timeout, request).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                core.backoff_or_fail(family, &mut budget, None, describe(&e))
                    .await?;
                continue;
            }
            Err(_) => {
                core.backoff_or_fail(
                    family,
                    &mut budget,
                    None,
                    "no answer from the storage host".to_owned(),
                )
                .await?;
                continue;
            }
        };
        let status = resp.status().as_u16();
        match status {
            200..=299 => {}
            403 | 404 => {
                let code = storage_error_code(resp).await;
                return Err(EndpointError::ExportLinkStale { status, code }.into());
            }
            408 | 429 | 500..=599 => {
                core.backoff_or_fail(
                    family,
                    &mut budget,
                    Some(status),
                    format!("storage answered HTTP {status}"),
                )
                .await?;
                continue;
            }
            _ => {
                return Err(EndpointError::ExportFile(format!(
                    "the storage host answered the export file download with HTTP {status}"
                ))
                .into());
            }
        }
        match stream_file(&core, &plan, resp, page, &tx).await {
            Ok((delivered, odd, timing)) => {
                tracing::debug!(
                    family = %family,
                    file = page,
                    records = delivered,
                    network_ms = PageTiming::ms(timing.network),
                    decoding_ms = PageTiming::ms(timing.decoding),
                    consumer_ms = PageTiming::ms(timing.consumer),
                    "export file read"
                );
                tx.send(Ok(ReadEvent::PageDone {
                    page,
                    records: delivered,
                }))
                .await
                .map_err(|_| consumer_gone())?;
                let mut report = ReadReport::new(family);
                report.pages = 1;
                report.records = delivered;
                report.restarts = budget.restarts;
                report.add_odd(&odd);
                return Ok(report.finish(ReadEnd::EndOfFile, 0));
            }
            Err(FileFailure::Closed) => return Err(consumer_gone()),
            Err(FileFailure::Transient { reason, delivered }) => {
                restart_or_fail(&tx, page, &core, family, &mut budget, reason, delivered).await?;
            }
        }
    }
}

/// Azure Storage's error code: the `x-ms-error-code` header, else `<Code>` of the XML body
/// (`AuthenticationFailed`, `BlobNotFound`). The body is read only a little, and never echoed.
async fn storage_error_code(resp: reqwest::Response) -> Option<String> {
    let from_header = resp
        .headers()
        .get("x-ms-error-code")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if from_header.is_some() {
        return from_header;
    }
    let body = read_bounded(resp, 8 * 1024).await.ok()?;
    let text = String::from_utf8_lossy(&body.bytes);
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    let code = &text[start..start + len];
    (!code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| code.to_owned())
}

async fn stream_file<T: DeserializeOwned + Send + 'static>(
    core: &Core,
    plan: &ReadPlan,
    mut resp: reqwest::Response,
    page: u32,
    tx: &EventTx<T>,
) -> Result<(u64, OddRecords, PageTiming), FileFailure> {
    // Whether the blob also says `Content-Encoding: gzip` is not documented (learn.microsoft.com/
    // en-us/defender-endpoint/api/get-assessment-software-vulnerabilities only says "GZIP"). With
    // it, the HTTP client has already decompressed the body; without it, the bytes are the gzip
    // file. The first bytes decide: gzip's magic number, or JSON lines.
    let mut body: Option<Body> = None;
    let mut out = Batches::new(tx, page, plan.batch_size);
    let mut odd = OddRecords::default();
    let mut compressed_bytes: u64 = 0;
    let mut parse = |line: &[u8], batch: &mut Vec<T>| match parse_line(line) {
        None => {}
        Some(Ok(r)) => batch.push(r),
        Some(Err(e)) => odd.note(line.trim_ascii(), &e),
    };
    let mut timing = PageTiming::default();
    loop {
        let chunk = match next_chunk(core, &mut resp, &mut timing).await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(failure) => {
                let reason = failure.reason(|| "the download stalled".to_owned());
                return Err(FileFailure::Transient {
                    reason,
                    delivered: out.delivered,
                });
            }
        };
        compressed_bytes += chunk.len() as u64;
        let decoding = Instant::now();
        let body = body.get_or_insert_with(|| Body::sniff(&chunk));
        if let Err(e) = body.write_all(&chunk) {
            return Err(FileFailure::Transient {
                reason: format!("the file is not valid gzip: {e}"),
                delivered: out.delivered,
            });
        }
        let buf = body.lines();
        if let Some(last_newline) = buf.iter().rposition(|b| *b == b'\n') {
            for line in buf[..last_newline].split(|b| *b == b'\n') {
                parse(line, &mut out.batch);
            }
            buf.drain(..=last_newline);
        } else if buf.len() > plan.max_record_bytes {
            return Err(FileFailure::Transient {
                reason: format!("a line is longer than {} bytes", plan.max_record_bytes),
                delivered: out.delivered,
            });
        }
        timing.decoding += decoding.elapsed();
        out.send_full(&mut timing).await?;
    }
    // A 0-byte file (Microsoft sends them) holds no records and no gzip header. A download cut
    // short ends inside a gzip member: finishing fails, and the file is read again.
    let lines = match body {
        None => Lines::default(),
        Some(_) if compressed_bytes == 0 => Lines::default(),
        Some(b) => b.finish().map_err(|e| FileFailure::Transient {
            reason: format!("the file ended early: {e}"),
            delivered: out.delivered,
        })?,
    };
    // Every record ends with a newline. A last fragment without one that is not a record means the
    // body was cut inside a record (a download can end "cleanly" short of its end): read again.
    let (complete_lines, tail) = match lines.buf.iter().rposition(|b| *b == b'\n') {
        Some(pos) => (&lines.buf[..pos], &lines.buf[pos + 1..]),
        None => (&lines.buf[..0], &lines.buf[..]),
    };
    for line in complete_lines.split(|b| *b == b'\n') {
        parse(line, &mut out.batch);
    }
    match parse_line(tail) {
        Some(Err(_)) => {
            return Err(FileFailure::Transient {
                reason: "the file ended in the middle of a record (the download was cut short)"
                    .to_owned(),
                delivered: out.delivered,
            });
        }
        Some(Ok(record)) => out.batch.push(record),
        None => {}
    }
    out.send_rest().await?;
    Ok((out.delivered, odd, timing))
}

/// The gzip magic number (RFC 1952, section 2.3.1).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A download's bytes on their way to lines: gunzipped, or already plain.
enum Body {
    Gzip(Box<flate2::write::MultiGzDecoder<Lines>>),
    Plain(Lines),
}

impl Body {
    /// Decides by the first chunk (never empty: empty chunks are not delivered).
    fn sniff(first: &[u8]) -> Body {
        // One byte is enough to rule gzip out: a JSON line starts with `{` or whitespace.
        if first.first() == Some(&GZIP_MAGIC[0]) {
            Body::Gzip(Box::new(flate2::write::MultiGzDecoder::new(
                Lines::default(),
            )))
        } else {
            tracing::debug!("export file arrived decompressed (Content-Encoding: gzip)");
            Body::Plain(Lines::default())
        }
    }

    fn write_all(&mut self, chunk: &[u8]) -> io::Result<()> {
        match self {
            Body::Gzip(gz) => gz.write_all(chunk),
            Body::Plain(lines) => lines.write_all(chunk),
        }
    }

    fn lines(&mut self) -> &mut Vec<u8> {
        match self {
            Body::Gzip(gz) => &mut gz.get_mut().buf,
            Body::Plain(lines) => &mut lines.buf,
        }
    }

    fn finish(self) -> io::Result<Lines> {
        match self {
            Body::Gzip(gz) => gz.finish(),
            Body::Plain(lines) => Ok(lines),
        }
    }
}

/// An export file URL must be https (or plain http to this machine, the emulator). The error never
/// repeats the URL: it carries a SAS signature.
pub(crate) fn parse_download_url(s: &str) -> Result<Url, ApiError> {
    let bad = |why: &str| {
        ApiError::from(EndpointError::ExportFile(format!(
            "the export file link is not usable: {why}"
        )))
    };
    let url = Url::parse(s).map_err(|_| bad("not a URL"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(bad("only https links are followed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    fn gzip(text: &str) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    const LINES: &str = "{\"DeviceId\":\"a\",\"CveId\":\"CVE-2025-49734\",\"CvssScore\":7,\"OSPlatform\":\"Windows10\"}\n\
                         \n\
                         {\"DeviceId\":\"b\",\"SoftwareName\":\"x\"}\r\n\
                         not json\n\
                         {\"DeviceId\":\"c\"}";

    #[test]
    fn lines_are_read_one_by_one_and_bad_lines_skipped() {
        let got: Vec<_> = read_export_lines(&gzip(LINES)[..], 1 << 20).collect();
        assert_eq!(got.len(), 4);
        let first = got[0].as_ref().unwrap();
        assert_eq!(first.os_platform.as_deref(), Some("Windows10"));
        assert_eq!(first.cvss_score, Some(7.0));
        assert_eq!(got[1].as_ref().unwrap().device_id.as_deref(), Some("b"));
        assert!(matches!(got[2], Err(ExportLineError::Json { line: 4, .. })));
        assert_eq!(got[3].as_ref().unwrap().device_id.as_deref(), Some("c"));
    }

    #[test]
    fn concatenated_members_empty_files_and_truncation() {
        let mut two = gzip("{\"DeviceId\":\"a\"}\n");
        two.extend(gzip("{\"DeviceId\":\"b\"}\n"));
        assert_eq!(
            read_export_lines(&two[..], 1024)
                .filter(Result::is_ok)
                .count(),
            2
        );
        assert_eq!(
            read_export_lines(&[][..], 1024).count(),
            0,
            "a 0-byte file has no records"
        );
        let whole = gzip(&LINES.repeat(50));
        let cut = &whole[..whole.len() / 2];
        assert!(
            read_export_lines(cut, 1 << 20).any(|r| matches!(r, Err(ExportLineError::Io { .. }))),
            "a truncated file must end in an error"
        );
    }

    #[test]
    fn overlong_lines_stop_the_read() {
        let got: Vec<_> = read_export_lines(&gzip(&"x".repeat(100))[..], 10).collect();
        assert!(matches!(
            got.as_slice(),
            [Err(ExportLineError::TooLong { .. })]
        ));
    }
}
