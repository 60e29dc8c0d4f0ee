//! `rampart bench-download` (hidden): the transfer floor of a benchmark. It requests what a full
//! Endpoint sync requests — the device pages, the catalogue pages, the export listing, then every
//! `SoftwareVulnerabilitiesByMachine` page (or every export file) — from the same server, with the
//! same HTTP client library, and throws the bodies away. Nothing is decoded, converted or stored,
//! so no sync can be faster than this on the same machine.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use futures::StreamExt as _;

use crate::cli::{BenchDownloadArgs, SourceArg};

pub async fn run(args: BenchDownloadArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let secret = std::env::var(&args.client_secret_env).with_context(|| {
        format!(
            "the environment variable {} is not set",
            args.client_secret_env
        )
    })?;
    let http = reqwest::Client::builder()
        .build()
        .context("cannot build the HTTP client")?;
    let api = args.api_url.trim_end_matches('/').to_owned();
    let token_url = format!(
        "{}/{}/oauth2/v2.0/token",
        args.login_url.trim_end_matches('/'),
        args.tenant_id
    );
    let client_id = args.client_id.to_string();
    let token: serde_json::Value = http
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", secret.as_str()),
            ("scope", "https://api.securitycenter.microsoft.com/.default"),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let Some(bearer) = token.get("access_token").and_then(|t| t.as_str()) else {
        bail!("the token answer has no access_token");
    };
    let get = |url: String| http.get(url).bearer_auth(bearer).send();

    let mut tally = Tally::default();
    for (path, top) in [("api/machines", 10_000u64), ("api/vulnerabilities", 8_000)] {
        let mut skip = 0;
        loop {
            let resp = get(format!("{api}/{path}?$top={top}&$skip={skip}"))
                .await?
                .error_for_status()?;
            let records = tally.drain(resp, Some(b"\"id\":\"")).await?;
            if records < top {
                break;
            }
            skip += top;
        }
    }
    let listing: serde_json::Value = get(format!(
        "{api}/api/machines/SoftwareVulnerabilitiesExport?sasValidHours=2"
    ))
    .await?
    .error_for_status()?
    .json()
    .await?;
    tally.calls += 1;

    match args.source {
        SourceArg::Files => {
            let urls: Vec<String> = listing
                .get("exportFiles")
                .and_then(|f| f.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|u| u.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            // As many at a time as the sync downloads; no bearer token to storage.
            let mut downloads = futures::stream::iter(urls.into_iter().map(|u| {
                let http = http.clone();
                async move {
                    let resp = http.get(u).send().await?.error_for_status()?;
                    let mut t = Tally::default();
                    t.drain(resp, None).await?;
                    Ok::<_, anyhow::Error>(t)
                }
            }))
            .buffer_unordered(args.concurrency.max(1));
            while let Some(t) = downloads.next().await {
                let t = t?;
                tally.calls += t.calls;
                tally.bytes += t.bytes;
            }
        }
        SourceArg::Pages | SourceArg::Auto => {
            let mut next = Some(format!(
                "{api}/api/machines/SoftwareVulnerabilitiesByMachine?pageSize={}",
                args.page_size
            ));
            while let Some(url) = next.take() {
                let resp = get(url).await?.error_for_status()?;
                tally.drain(resp, None).await?;
                next = next_link(&tally.tail);
            }
        }
    }
    println!(
        "calls={} bytes={} seconds={:.2}",
        tally.calls,
        tally.bytes,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Default)]
struct Tally {
    calls: u64,
    bytes: u64,
    /// The last bytes of the last body: where `@odata.nextLink` is.
    tail: Vec<u8>,
}

const TAIL: usize = 4096;

impl Tally {
    /// Reads a body to its end, keeping only its tail; counts `needle` when given (records of
    /// `$top` pages, to stop at the short page as the sync does).
    async fn drain(
        &mut self,
        mut resp: reqwest::Response,
        needle: Option<&[u8]>,
    ) -> anyhow::Result<u64> {
        self.calls += 1;
        self.tail.clear();
        let mut found = 0u64;
        while let Some(chunk) = resp.chunk().await? {
            self.bytes += chunk.len() as u64;
            if let Some(n) = needle {
                // Occurrences across a chunk boundary are found in tail + chunk start.
                let keep = self.tail.len().min(n.len() - 1);
                let mut window = self.tail[self.tail.len() - keep..].to_vec();
                window.extend_from_slice(&chunk[..chunk.len().min(n.len() - 1)]);
                found += count(&window, n) + count(&chunk, n);
            }
            if chunk.len() >= TAIL {
                self.tail.clear();
                self.tail.extend_from_slice(&chunk[chunk.len() - TAIL..]);
            } else {
                self.tail.extend_from_slice(&chunk);
                let excess = self.tail.len().saturating_sub(TAIL);
                self.tail.drain(..excess);
            }
        }
        Ok(found)
    }
}

fn count(haystack: &[u8], needle: &[u8]) -> u64 {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count() as u64
}

fn next_link(tail: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(tail);
    let key = "\"@odata.nextLink\":\"";
    let start = text.rfind(key)? + key.len();
    let end = text[start..].find('"')? + start;
    Some(text[start..end].replace("\\/", "/"))
}
