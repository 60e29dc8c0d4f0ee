//! Azure Resource Graph: `POST /providers/Microsoft.ResourceGraph/resources` (<https://learn.microsoft.com/en-us/azure/governance/resource-graph/concepts/work-with-data>).
//!
//! A real KQL engine is out of scope: the emulator answers the queries the client owns (the
//! individual `SoftwareUpdate`/`ServiceUpgrade` recommendations, the tenant-scope `cvedetails`
//! rows and the secure scores), recognised by their normalised text, and refuses anything else
//! with ARG's `BadRequest`. The envelope and the rules are Microsoft's: 100 rows by default, `$top`
//! 1–1000, `$skipToken` only when `id` is projected (else `resultTruncated: "true"`),
//! `resultTruncated` as a string, quota headers with a 15-queries-per-5-seconds window, 429
//! `RateLimiting`, `mv-expand` cut at 128 elements per row (`limit N` up to 400), `cvedetails`
//! only at tenant scope, and answers over 16 MiB (of serialized JSON) refused with 400
//! `ResponsePayloadTooLarge`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::state::Inner;
use crate::token::Claims;

use super::arm::{can_read, respond, visible_subscriptions};
use super::cloud_vuln_json::VulnQuery;
use super::{arm_json, cloud_vuln_json};

const MAX_BODY: usize = 1024 * 1024;

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    subscriptions: Option<Vec<String>>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    options: Option<Options>,
}

#[derive(Deserialize, Default)]
struct Options {
    #[serde(rename = "$top", default)]
    top: Option<i64>,
    #[serde(rename = "$skip", default)]
    skip: Option<i64>,
    #[serde(rename = "$skipToken", default)]
    skip_token: Option<String>,
    #[serde(rename = "resultFormat", default)]
    result_format: Option<String>,
}

fn bad(code: &str, message: &str) -> Response {
    let body = json!({"error": {
        "code": "BadRequest",
        "message": "Please provide below info when asking for support: timestamp = 2026-11-28T00:00:00Z, correlationId = 00000000-0000-0000-0000-000000000000.",
        "details": [{"code": code, "message": message}]
    }});
    respond(StatusCode::BAD_REQUEST, body.to_string().into_bytes())
}

/// Which canned query this is.
enum Known {
    Vulnerabilities(VulnQuery),
    /// The CVE ids asked for (upper-case), or every CVE.
    CveDetails(Option<Vec<String>>),
    SecureScores,
}

fn normalise(q: &str) -> String {
    q.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
        .replace('\'', "\"")
}

fn recognise(q: &str) -> Option<Known> {
    let n = normalise(q);
    if let Some(v) = VulnQuery::parse(&n) {
        return Some(Known::Vulnerabilities(v));
    }
    if n.contains("type =~ \"microsoft.security/cvedetails\"")
        || n.contains("type == \"microsoft.security/cvedetails\"")
    {
        return Some(Known::CveDetails(cve_list(&n)));
    }
    if n.contains("type == \"microsoft.security/securescores\"") {
        return Some(Known::SecureScores);
    }
    None
}

/// The list of `in~ ("CVE-…", …)` (upper-cased), if the query has one.
fn cve_list(n: &str) -> Option<Vec<String>> {
    let start = n.find("in~ (")? + "in~ (".len();
    let end = start + n[start..].find(')')?;
    Some(
        n[start..end]
            .split(',')
            .map(|c| c.trim().trim_matches('"').to_ascii_uppercase())
            .filter(|c| !c.is_empty())
            .collect(),
    )
}

/// Resource Graph's refusal of an answer over its size limit.
fn too_large(size: usize, limit: usize) -> Response {
    let body = json!({"error": {
        "code": "BadRequest",
        "message": "Please provide below info when asking for support: timestamp = 2026-11-28T00:00:00Z, correlationId = 00000000-0000-0000-0000-000000000000.",
        "details": [{
            "code": "ResponsePayloadTooLarge",
            "message": format!("Response payload size is {size}, and has exceeded the limit of {limit}. Please consider querying less data at a time and make paginated call if needed.")
        }]
    }});
    respond(StatusCode::BAD_REQUEST, body.to_string().into_bytes())
}

/// `| project id` (as the first projected column or later): only then can ARG page.
fn projects_id(q: &str) -> bool {
    let n = normalise(q);
    n.split("| project ")
        .skip(1)
        .last()
        .is_some_and(|cols| cols.split(',').any(|c| c.trim() == "id"))
}

/// Counts the query against the principal's quota; `Err(seconds until the window frees)`.
fn quota(inner: &Inner, principal: &str) -> Result<(usize, u64), u64> {
    // Microsoft's 15 per 5 s by default; configurable, as Microsoft says it may change.
    let quota = inner.config.graph_quota as usize;
    let window = Duration::from_secs(u64::from(inner.config.graph_quota_window_secs));
    let now = Instant::now();
    let mut all = inner.graph_quota.lock().unwrap_or_else(|e| e.into_inner());
    let calls = all.entry(principal.to_owned()).or_default();
    while calls
        .front()
        .is_some_and(|t| now.duration_since(*t) >= window)
    {
        calls.pop_front();
    }
    let resets = |oldest: Option<&Instant>| {
        oldest.map_or(window.as_secs(), |t| {
            window
                .saturating_sub(now.duration_since(*t))
                .as_secs()
                .max(1)
        })
    };
    if !inner.config.rate_limits {
        // Unthrottled: the whole quota is always left.
        return Ok((quota, window.as_secs()));
    }
    if calls.len() >= quota {
        return Err(resets(calls.front()));
    }
    calls.push_back(now);
    Ok((quota.saturating_sub(calls.len()), resets(calls.front())))
}

pub(super) async fn handle(inner: &Inner, claims: &Claims, body: Body) -> Response {
    let (remaining, resets) = match quota(inner, &claims.oid) {
        Ok(q) => q,
        Err(wait) => {
            inner.counters.throttled.fetch_add(1, Ordering::Relaxed);
            let body = json!({"error": {
                "code": "RateLimiting",
                "message": "Please provide below info when asking for support: timestamp = 2026-11-28T00:00:00Z, correlationId = 00000000-0000-0000-0000-000000000000.",
                "details": [{"code": "RateLimiting", "message": "Client application has been throttled and should not attempt to repeat the request until an amount of time has elapsed. Please see https://aka.ms/resourcegraph-throttling for help."}]
            }});
            let mut resp = respond(StatusCode::TOO_MANY_REQUESTS, body.to_string().into_bytes());
            let h = resp.headers_mut();
            h.insert("x-ms-user-quota-remaining", HeaderValue::from_static("0"));
            if let Ok(v) = HeaderValue::from_str(&format!("00:00:{wait:02}")) {
                h.insert("x-ms-user-quota-resets-after", v);
            }
            return resp;
        }
    };
    let mut resp = answer(inner, body).await;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&remaining.to_string()) {
        h.insert("x-ms-user-quota-remaining", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("00:00:{resets:02}")) {
        h.insert("x-ms-user-quota-resets-after", v);
    }
    resp
}

async fn answer(inner: &Inner, body: Body) -> Response {
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return bad(
            "InvalidRequestContent",
            "The request body is too large or unreadable.",
        );
    };
    let req: Request = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            return bad(
                "InvalidRequestContent",
                &format!("The request content was invalid and could not be deserialized: {e}"),
            );
        }
    };
    let Some(query) = req.query.filter(|q| !q.trim().is_empty()) else {
        return bad("InvalidQuery", "Query is required.");
    };
    let options = req.options.unwrap_or_default();
    let top = match options.top {
        None => 100,
        Some(n) if (1..=1000).contains(&n) => n as usize,
        Some(n) => {
            return bad(
                "InvalidRequestParameter",
                &format!("The $top value '{n}' is invalid: it must be between 1 and 1000."),
            );
        }
    };
    if options
        .result_format
        .as_deref()
        .is_some_and(|f| !f.eq_ignore_ascii_case("objectArray"))
    {
        return bad(
            "UnsupportedResultFormat",
            "The emulator answers resultFormat 'objectArray' only.",
        );
    }
    let Some(known) = recognise(&query) else {
        return bad(
            "InvalidQuery",
            "Query is invalid. Please refer to the documentation for the Azure Resource Graph service and fix the error before retrying.",
        );
    };
    let (tick, offset) = match options.skip_token.as_deref() {
        None => (inner.tick(), options.skip.unwrap_or(0).max(0) as usize),
        Some(t) => match URL_SAFE_NO_PAD
            .decode(t.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                let (a, b) = s.split_once('|')?;
                Some((a.parse::<i64>().ok()?, b.parse::<usize>().ok()?))
            }) {
            Some(v) => v,
            None => return bad("InvalidSkipToken", "The skip token is not valid."),
        },
    };
    // Scope: the subscriptions asked for (or all visible), minus those the principal cannot read;
    // ARG filters silently, it never says 403.
    let visible: Vec<String> = visible_subscriptions(inner)
        .into_iter()
        .map(|s| s.subscription_id)
        .filter(|s| can_read(inner, s))
        .collect();
    let tenant_scope = req.subscriptions.is_none();
    let scope: Vec<String> = match req.subscriptions {
        Some(asked) => asked
            .into_iter()
            .map(|s| s.to_ascii_lowercase())
            .filter(|s| visible.contains(s))
            .collect(),
        None => visible,
    };
    let w = &inner.world;
    let tenant = &inner.config.tenant_id;
    let ids_only = inner.config.cloud_cve_ids_only;
    let views: Vec<_> = scope
        .iter()
        .filter_map(|sub| w.subscription_view(sub, tick))
        .collect();
    let mut rows: Vec<Value> = Vec::new();
    match &known {
        Known::Vulnerabilities(q) => {
            for v in &views {
                rows.extend(cloud_vuln_json::graph_rows(w, v, tenant, q, ids_only));
            }
        }
        // Tenant scope only: "Queries run at the subscription scope don't return data from
        // this resource type" (Learn, transition-grouped-individual-recommendations).
        Known::CveDetails(wanted) if tenant_scope && inner.config.cloud_cvedetails => {
            rows = cloud_vuln_json::cve_details_rows(w, &views, wanted.as_deref());
        }
        Known::CveDetails(_) => {}
        Known::SecureScores => rows.extend(views.iter().map(arm_json::score_row)),
    }
    let total = rows.len();
    let pageable = projects_id(&query);
    let start = offset.min(total);
    let end = (start + top).min(total);
    let more = end < total;
    let page: Vec<Value> = rows[start..end].to_vec();
    let count = page.len();
    let mut out = json!({
        "totalRecords": total,
        "count": count,
        "resultTruncated": if more && !pageable { "true" } else { "false" },
        "facets": [],
        "data": page,
    });
    if more
        && pageable
        && let Some(map) = out.as_object_mut()
    {
        map.insert(
            "$skipToken".into(),
            URL_SAFE_NO_PAD.encode(format!("{tick}|{end}")).into(),
        );
    }
    let bytes = out.to_string().into_bytes();
    let limit = inner.config.graph_max_response_bytes;
    if bytes.len() > limit {
        return too_large(bytes.len(), limit);
    }
    inner
        .counters
        .rows
        .fetch_add(count as u64, Ordering::Relaxed);
    let mut resp = respond(StatusCode::OK, bytes);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_must_be_projected_for_paging() {
        assert!(projects_id("R | project id, name"));
        assert!(projects_id("R | project name,\n  id"));
        assert!(!projects_id("R | project name, identity"));
        assert!(!projects_id("R | extend id2 = id"));
    }

    #[test]
    fn the_cvedetails_list_is_read_from_the_query() {
        let n = normalise(&rampart_like_cve_query());
        assert_eq!(
            cve_list(&n),
            Some(vec![
                "CVE-2025-10001".to_owned(),
                "CVE-2025-10022".to_owned()
            ])
        );
        assert!(matches!(recognise(&n), Some(Known::CveDetails(Some(_)))));
    }

    fn rampart_like_cve_query() -> String {
        r#"securityresources
| where type =~ "microsoft.security/cvedetails"
| extend cveId = tostring(coalesce(properties.cveId, name))
| where cveId in~ ("CVE-2025-10001", "cve-2025-10022")
| project id, name, cveId, properties"#
            .to_owned()
    }

    #[test]
    fn mv_expand_is_cut_at_128_unless_a_limit_is_given() {
        let q = |extra: &str| {
            VulnQuery::parse(&normalise(&format!(
                "securityresources | where type == 'microsoft.security/assessments' | where properties.metadata.recommendationCategory == 'SoftwareUpdate' {extra} | project id"
            )))
            .expect("recognised")
        };
        assert_eq!(q("").expand, None);
        assert_eq!(q("| mv-expand c = x").expand, Some(128));
        assert_eq!(q("| mv-expand limit 300 c = x").expand, Some(300));
        assert_eq!(q("| mv-expand limit 5000 c = x").expand, Some(400));
        assert!(!q("").service_upgrade);
    }
}
