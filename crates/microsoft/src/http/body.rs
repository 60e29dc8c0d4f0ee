//! Bounded body reads, for error bodies and small JSON answers. Page bodies are streamed instead
//! (see `decode`); `Response::text`/`bytes` are disallowed in `clippy.toml` because they have no bound.

use reqwest::Response;

/// A body read up to a limit.
#[derive(Debug)]
pub(crate) struct Bounded {
    pub bytes: Vec<u8>,
    /// The body was longer than the limit; `bytes` holds its start.
    pub cut: bool,
}

/// Reads at most `limit` bytes of `resp`'s body. The rest is not read: the connection is dropped.
pub(crate) async fn read_bounded(
    mut resp: Response,
    limit: usize,
) -> Result<Bounded, reqwest::Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(Bounded { bytes, cut: true });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Bounded { bytes, cut: false })
}

/// At most `max` characters of a body for a message: printable, on one line.
pub(crate) fn snippet(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control() || *c == ' ')
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out.trim().to_owned()
}

/// A transport error in words, without the URL (which may carry a SAS signature) and with the
/// causes that reqwest keeps in its source chain ("connection refused", "operation timed out").
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    if e.is_timeout() {
        parts.push("timed out".to_owned());
    } else if e.is_connect() {
        parts.push("could not connect".to_owned());
    } else if e.is_body() || e.is_decode() {
        parts.push("the body was cut off or could not be decompressed".to_owned());
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    if parts.is_empty() {
        parts.push("request failed".to_owned());
    }
    let joined = parts.join(": ");
    joined.chars().take(300).collect()
}
