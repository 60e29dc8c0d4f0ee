//! CISA's Known Exploited Vulnerabilities (KEV) feed: download with a conditional GET, a size
//! limit and a timeout, and read with [`rampart_model::priority::kev`].
//!
//! The feed is public (no credentials): <https://www.cisa.gov/known-exploited-vulnerabilities-catalog>.
//! cisa.gov serves it with `ETag` and `Last-Modified`; sending them back (`If-None-Match`,
//! `If-Modified-Since`) gets `304 Not Modified` while the catalogue is unchanged, so a daily check
//! costs a few hundred bytes.

use std::time::Duration;

use futures::StreamExt as _;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::{StatusCode, Url};

use rampart_model::priority::KevCatalog;

/// Where CISA publishes the catalogue.
pub const DEFAULT_KEV_URL: &str =
    "https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json";
/// The feed is about 1.5 MB (1,400 entries in 2025); a file this large is not the feed.
pub const MAX_KEV_BYTES: u64 = 32 * 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the catalogue could not be read. Every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum IntelError {
    #[error(
        "the KEV feed URL '{url}' cannot be used: {reason}. Use an https:// URL (http:// only for a loopback address), e.g. {DEFAULT_KEV_URL}"
    )]
    InvalidUrl { url: String, reason: String },
    #[error(
        "could not download the KEV catalogue from {url}: {detail}. Check the network and any proxy; on a site without internet access, download the file elsewhere and run `rampart intel import kev FILE`"
    )]
    Network { url: String, detail: String },
    #[error(
        "{url} answered HTTP {status} instead of the KEV catalogue. Check the URL; if it is right, try again later or import a downloaded copy with `rampart intel import kev FILE`"
    )]
    Status { url: String, status: u16 },
    #[error(
        "the KEV catalogue from {source_name} is larger than {MAX_KEV_BYTES} bytes, so it is not CISA's feed (about 1.5 MB). Check the URL or the file"
    )]
    TooLarge { source_name: String },
    #[error(
        "{source_name} is not CISA's KEV catalogue ({detail}). Download it again from {DEFAULT_KEV_URL}"
    )]
    NotTheFeed { source_name: String, detail: String },
    #[error("{source_name} was not read whole: {detail}. Nothing was replaced; download it again")]
    Truncated { source_name: String, detail: String },
    #[error("the HTTP client could not be set up: {0}")]
    Client(String),
}

/// A KEV catalogue as read, with the validators for the next conditional GET.
#[derive(Debug, Clone)]
pub struct KevDownload {
    pub catalog: KevCatalog,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Entries that were skipped (the file was still taken): for the operator.
    pub warning: Option<String>,
}

/// The outcome of a conditional GET.
#[derive(Debug, Clone)]
pub enum KevFetch {
    /// `304`: the stored copy is current.
    NotModified,
    Fetched(Box<KevDownload>),
}

/// Reads the KEV feed from one URL.
#[derive(Debug, Clone)]
pub struct KevClient {
    http: reqwest::Client,
    url: Url,
}

/// Only `https`, except plain `http` to a loopback address (the emulator, a local mirror).
pub fn check_feed_url(raw: &str) -> Result<Url, IntelError> {
    // A URL with a user name or password is never echoed: the error reaches logs and pages.
    let shown: String = if raw.contains('@') {
        "(not shown: it may hold a password)".to_owned()
    } else {
        raw.chars().take(200).collect()
    };
    let invalid = |reason: &str| IntelError::InvalidUrl {
        url: shown.clone(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(raw.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("it carries a user name or password"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(invalid("plain http is allowed only to a loopback address")),
        other => Err(invalid(&format!("'{other}' is not http(s)"))),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl KevClient {
    pub fn new(url: &str) -> Result<KevClient, IntelError> {
        let url = check_feed_url(url)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("rampart/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TIMEOUT)
            // A redirect may not leave https (or loopback) either.
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                if attempt.previous().len() >= 5 {
                    attempt.error("too many redirects")
                } else if check_feed_url(attempt.url().as_str()).is_err() {
                    attempt.error("redirected away from https")
                } else {
                    attempt.follow()
                }
            }))
            .gzip(true)
            .build()
            .map_err(|e| IntelError::Client(e.to_string()))?;
        Ok(KevClient { http, url })
    }

    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// Downloads the catalogue, or learns that the copy with these validators is current.
    pub async fn fetch(
        &self,
        etag: Option<&str>,
        last_modified: Option<&str>,
    ) -> Result<KevFetch, IntelError> {
        let url = self.url.to_string();
        let network = |e: reqwest::Error| IntelError::Network {
            url: url.clone(),
            detail: describe(&e),
        };
        let mut req = self.http.get(self.url.clone());
        if let Some(tag) = etag {
            req = req.header(IF_NONE_MATCH, tag);
        }
        if let Some(since) = last_modified {
            req = req.header(IF_MODIFIED_SINCE, since);
        }
        let resp = req.send().await.map_err(network)?;
        let status = resp.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(KevFetch::NotModified);
        }
        if !status.is_success() {
            return Err(IntelError::Status {
                url,
                status: status.as_u16(),
            });
        }
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let (etag, last_modified) = (header(ETAG), header(LAST_MODIFIED));
        if resp.content_length().is_some_and(|n| n > MAX_KEV_BYTES) {
            return Err(IntelError::TooLarge { source_name: url });
        }
        let mut body = Vec::new();
        let mut chunks = resp.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(network)?;
            if (body.len() + chunk.len()) as u64 > MAX_KEV_BYTES {
                return Err(IntelError::TooLarge { source_name: url });
            }
            body.extend_from_slice(&chunk);
        }
        let (catalog, warning) = read_kev(&body, &url)?;
        Ok(KevFetch::Fetched(Box::new(KevDownload {
            catalog,
            etag,
            last_modified,
            warning,
        })))
    }
}

/// Reads a KEV file (downloaded or imported). Refused: a file that is not the feed, one cut
/// short, one that states more entries than it holds, one without any entry. Taken with a
/// warning: a file with some unreadable entries (CISA's schema drifts; the rest is still good).
pub fn read_kev(
    bytes: &[u8],
    source_name: &str,
) -> Result<(KevCatalog, Option<String>), IntelError> {
    if bytes.len() as u64 > MAX_KEV_BYTES {
        return Err(IntelError::TooLarge {
            source_name: source_name.to_owned(),
        });
    }
    let catalog: KevCatalog = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_eof() {
            IntelError::Truncated {
                source_name: source_name.to_owned(),
                detail: format!("the file ends early ({e})"),
            }
        } else {
            IntelError::NotTheFeed {
                source_name: source_name.to_owned(),
                detail: e.to_string(),
            }
        }
    })?;
    let seen = (catalog.len() + catalog.bad_entries()) as u64;
    if catalog.count.is_some_and(|c| c != seen) {
        return Err(IntelError::Truncated {
            source_name: source_name.to_owned(),
            detail: catalog.problems().unwrap_or_default(),
        });
    }
    if catalog.is_empty() {
        return Err(IntelError::NotTheFeed {
            source_name: source_name.to_owned(),
            detail: "it lists no readable vulnerability".to_owned(),
        });
    }
    let warning = catalog.problems();
    Ok((catalog, warning))
}

/// A reqwest error in words, with its causes (the top level alone says little).
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "the request timed out".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback() {
        assert!(check_feed_url(DEFAULT_KEV_URL).is_ok());
        assert!(check_feed_url("http://127.0.0.1:8080/kev/x.json").is_ok());
        assert!(check_feed_url("http://localhost/kev.json").is_ok());
        assert!(check_feed_url("http://[::1]/kev.json").is_ok());
        for bad in [
            "http://www.cisa.gov/kev.json",
            "ftp://127.0.0.1/kev.json",
            "file:///tmp/kev.json",
            "https://user:pw@example.com/kev.json",
            "not a url",
        ] {
            let e = check_feed_url(bad).unwrap_err().to_string();
            assert!(e.contains("cannot be used"), "{bad}: {e}");
            assert!(!e.contains("pw@"), "{e}");
        }
    }

    #[test]
    fn files_that_are_not_whole_are_refused() {
        let whole = r#"{"count":1,"vulnerabilities":[{"cveID":"CVE-2024-3400"}]}"#;
        assert!(read_kev(whole.as_bytes(), "f").unwrap().1.is_none());
        let cut = &whole[..whole.len() / 2];
        let e = read_kev(cut.as_bytes(), "f").unwrap_err().to_string();
        assert!(
            e.contains("ends early") && e.contains("download it again"),
            "{e}"
        );
        let short = r#"{"count":9,"vulnerabilities":[{"cveID":"CVE-2024-3400"}]}"#;
        let e = read_kev(short.as_bytes(), "f").unwrap_err().to_string();
        assert!(e.contains("states 9 entries but holds 1"), "{e}");
        let other = r#"{"value":[]}"#;
        let e = read_kev(other.as_bytes(), "f").unwrap_err().to_string();
        assert!(e.contains("is not CISA's KEV catalogue"), "{e}");
        let empty = r#"{"vulnerabilities":[]}"#;
        assert!(read_kev(empty.as_bytes(), "f").is_err());
        let drift = r#"{"vulnerabilities":[{"cveID":"CVE-2024-3400"},{"cveID":"junk"}]}"#;
        let (kev, warning) = read_kev(drift.as_bytes(), "f").unwrap();
        assert_eq!(kev.len(), 1);
        assert!(warning.unwrap().contains("could not be read"));
    }
}
