//! Throughput checks at benchmark scale. Ignored by default (slow in debug builds); run with
//! `cargo test -p rampart-sim --release --test contract perf -- --ignored --nocapture`.

use std::io::{BufRead, BufReader};
use std::time::Instant;

use rampart_sim::SimConfig;
use reqwest::StatusCode;

use crate::helpers::App;

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// Counts occurrences of `needle` in a stream of chunks (matches may straddle chunk boundaries).
struct Counter {
    needle: &'static [u8],
    tail: Vec<u8>,
    count: u64,
}

impl Counter {
    fn feed(&mut self, chunk: &[u8]) {
        let mut buf = std::mem::take(&mut self.tail);
        buf.extend_from_slice(chunk);
        self.count += buf
            .windows(self.needle.len())
            .filter(|w| *w == self.needle)
            .count() as u64;
        let keep = buf.len().min(self.needle.len() - 1);
        self.tail = buf[buf.len() - keep..].to_vec();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn streams_the_export_of_20000_devices_at_flat_memory() {
    let started = Instant::now();
    let app = App::start(SimConfig {
        devices: 20_000,
        rate_limits: false,
        ..SimConfig::default()
    })
    .await;
    eprintln!("started in {:?}", started.elapsed());
    let token = app.token().await;
    let plain = reqwest::Client::builder()
        .no_proxy()
        .no_gzip()
        .no_deflate()
        .build()
        .unwrap();
    for compressed in [false, true] {
        app.running.sim.set_compression(compressed);
        let started = Instant::now();
        let mut url = Some(format!(
            "{}/api/machines/SoftwareVulnerabilitiesByMachine?pageSize=100000",
            app.url()
        ));
        let (mut bytes, mut pages) = (0u64, 0u64);
        let mut rows = Counter {
            needle: b"\"deviceId\":",
            tail: Vec::new(),
            count: 0,
        };
        let mut links = Counter {
            needle: b"\"@odata.nextLink\":\"",
            tail: Vec::new(),
            count: 0,
        };
        while let Some(u) = url.take() {
            // Compressed pages are decoded by reqwest; the byte count is then the decoded size.
            let client = if compressed { &app.client } else { &plain };
            let mut resp = client.get(&u).bearer_auth(&token).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let mut last = Vec::new();
            while let Some(chunk) = resp.chunk().await.unwrap() {
                bytes += chunk.len() as u64;
                rows.feed(&chunk);
                links.feed(&chunk);
                last.extend_from_slice(&chunk);
                if last.len() > 4096 {
                    last.drain(..last.len() - 4096);
                }
            }
            pages += 1;
            let tail = String::from_utf8_lossy(&last);
            url = tail
                .split("\"@odata.nextLink\":\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .map(str::to_owned);
        }
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "JSON export (compression {compressed}): {} rows, {pages} pages, {:.0} MB in {secs:.1} s = {:.0} rows/s, {:.0} MB/s; peak RSS {} MiB",
            rows.count,
            bytes as f64 / 1e6,
            rows.count as f64 / secs,
            bytes as f64 / 1e6 / secs,
            peak_rss_mib()
        );
        assert!(rows.count > 1_500_000);
    }

    let started = Instant::now();
    let listing = app
        .get("/api/machines/SoftwareVulnerabilitiesExport", &token)
        .await
        .json();
    let mut lines = 0u64;
    let mut compressed = 0u64;
    for url in listing["exportFiles"].as_array().unwrap() {
        let reply = plain.get(url.as_str().unwrap()).send().await.unwrap();
        let body = crate::helpers::read_body(reply).await.unwrap().body;
        compressed += body.len() as u64;
        if body.is_empty() {
            continue;
        }
        lines += BufReader::new(flate2::read::GzDecoder::new(&body[..]))
            .lines()
            .count() as u64;
    }
    eprintln!(
        "file export: {lines} lines, {:.0} MB gzip in {:.1} s; peak RSS {} MiB",
        compressed as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
}
