//! `/kev/known_exploited_vulnerabilities.json`: CISA's Known Exploited Vulnerabilities feed, in the
//! format of <https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json>
//! (schema: <https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities_schema.json>),
//! built from the emulator's own CVE catalogue so that a synced tenant has KEV-listed findings.
//!
//! A deterministic share of the CVEs is listed, each from a tick of its own: most before tick 0,
//! the rest over the following days, so advancing the clock ([`crate::Sim::tick`]) adds entries
//! the way CISA does. Like cisa.gov the file carries `ETag` and `Last-Modified`, and answers a
//! conditional GET (`If-None-Match`, `If-Modified-Since`) with `304 Not Modified` while no entry
//! was added. Targeted faults (`fail_next`, `truncate_next` on `known_exploited`) apply.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::json;

use crate::faults::Injected;
use crate::hash::{below, mix, unit};
use crate::state::Inner;
use crate::time::Ts;
use crate::world::catalog::PRODUCTS;

/// The file name cisa.gov uses; served under `/kev/` ([`crate::KEV_PATH`]).
pub(crate) const FILE: &str = "known_exploited_vulnerabilities.json";
/// Share of the catalogue's CVEs that are (or will be) KEV-listed.
const LISTED_SHARE: f64 = 0.12;
/// Listing ticks are spread over `-HISTORY..FUTURE` (6 h each): two thirds listed at start.
const HISTORY: i64 = 32;
const FUTURE: i64 = 16;
/// Share of listed CVEs with `knownRansomwareCampaignUse: "Known"`.
const RANSOMWARE_SHARE: f64 = 0.3;
/// CISA's usual remediation window for federal agencies (BOD 22-01).
const DUE_DAYS: i64 = 21;

/// One listed CVE: its catalogue index and the tick it was added at.
struct Listed {
    cve: usize,
    added: i64,
    ransomware: bool,
}

/// The CVEs listed at `tick`, in catalogue order.
fn listed(inner: &Inner, tick: i64) -> Vec<Listed> {
    let clock = inner.world.clock;
    inner
        .world
        .catalogue
        .cves
        .iter()
        .enumerate()
        .filter_map(|(j, cve)| {
            let h = mix(cve.hash, 0x004B_4556);
            if unit(h) >= LISTED_SHARE {
                return None;
            }
            let added = below(mix(h, 1), (HISTORY + FUTURE) as u64) as i64 - HISTORY;
            // CISA lists a CVE after it is published, never before.
            (added <= tick && clock.at(added) > cve.published).then(|| Listed {
                cve: j,
                added,
                ransomware: unit(mix(h, 2)) < RANSOMWARE_SHARE,
            })
        })
        .collect()
}

/// The CVE ids listed at `tick`.
pub(crate) fn ids(inner: &Inner, tick: i64) -> Vec<String> {
    listed(inner, tick)
        .iter()
        .map(|l| inner.world.catalogue.cves[l.cve].id.clone())
        .collect()
}

fn date_of(inner: &Inner, tick: i64) -> NaiveDate {
    Ts::at(inner.world.clock.at(tick)).to_chrono().date_naive()
}

fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

pub(crate) fn handle(
    inner: &Inner,
    method: &Method,
    headers: &HeaderMap,
    target: &str,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    let fault = inner.faults.targeted(target, false);
    if let Some(Injected::Status(status)) = fault {
        return plain(
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "Service Unavailable",
        );
    }
    let tick = inner.tick();
    let entries = listed(inner, tick);
    // The file changes only when an entry is added: its time is the newest listing.
    let newest = entries.iter().map(|l| l.added).max().unwrap_or(-HISTORY);
    let modified = Ts::at(inner.world.clock.at(newest)).to_chrono();
    let etag = format!("\"kev-{newest}-{}\"", entries.len());
    let not_modified = match headers.get(header::IF_NONE_MATCH) {
        Some(v) => v
            .to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*")),
        None => headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| DateTime::parse_from_rfc2822(v).ok())
            .is_some_and(|since| modified <= since),
    };
    let mut resp = if not_modified {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut body = feed(inner, &entries, modified).into_bytes();
        if fault == Some(Injected::Truncate) {
            // A download cut short: what a proxy or a dropped connection leaves on disk.
            body.truncate(body.len() / 2);
        }
        let mut r = Response::new(if method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(body)
        });
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&http_date(modified)) {
        h.insert(header::LAST_MODIFIED, v);
    }
    resp
}

fn feed(inner: &Inner, entries: &[Listed], released: DateTime<Utc>) -> String {
    let cves = &inner.world.catalogue.cves;
    let vulnerabilities: Vec<serde_json::Value> = entries
        .iter()
        .map(|l| {
            let cve = &cves[l.cve];
            let product = &PRODUCTS[cve.product];
            let added = date_of(inner, l.added);
            json!({
                "cveID": cve.id,
                "vendorProject": product.vendor,
                "product": product.display,
                "vulnerabilityName": format!("{} {} Vulnerability", product.vendor, product.display),
                "dateAdded": added.to_string(),
                "shortDescription": format!("{} contains a vulnerability that is being exploited in the wild.", product.display),
                "requiredAction": "Apply mitigations per vendor instructions, follow applicable BOD 22-01 guidance for cloud services, or discontinue use of the product if mitigations are unavailable.",
                "dueDate": (added + Duration::days(DUE_DAYS)).to_string(),
                "knownRansomwareCampaignUse": if l.ransomware { "Known" } else { "Unknown" },
                "notes": format!("https://nvd.nist.gov/vuln/detail/{}", cve.id),
                "cwes": ["CWE-20"],
            })
        })
        .collect();
    json!({
        "title": "CISA Catalog of Known Exploited Vulnerabilities",
        "catalogVersion": released.format("%Y.%m.%d").to_string(),
        "dateReleased": released.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "count": vulnerabilities.len(),
        "vulnerabilities": vulnerabilities,
    })
    .to_string()
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r
}
