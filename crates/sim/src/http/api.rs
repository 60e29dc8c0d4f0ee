//! The MDE API pipeline: route, authenticate (401), authorise by role (403), rate-limit (429), inject
//! faults, then hand over to the endpoint's handler.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;

use crate::faults::Injected;
use crate::state::Inner;
use crate::stats::Family;
use crate::token::{Claims, TokenError, is_mde_audience};

use super::errors::{self, mde};
use super::query::Query;
use super::stream::{Encoding, Splice};
use super::{Ctx, after_fault, choose_fault, exports, machines, vulns};

/// The MDE API routes (after `/api` and an optional `/v1.0`).
enum Api {
    Machines,
    Machine(String),
    MachineVulnerabilities(String),
    FindByTag,
    ByMachine,
    FileExport,
    Changes,
    Vulnerabilities,
    Vulnerability(String),
    MachineReferences(String),
    MachinesVulnerabilities,
    Unknown,
}

impl Api {
    fn route(segs: &[String]) -> Api {
        let lower = super::lowercased(segs);
        let l: Vec<&str> = lower.iter().map(String::as_str).collect();
        match l.as_slice() {
            ["machines"] => Api::Machines,
            ["machines", "softwarevulnerabilitiesbymachine"] => Api::ByMachine,
            ["machines", "softwarevulnerabilitiesexport"] => Api::FileExport,
            ["machines", "softwarevulnerabilitychangesbymachine"] => Api::Changes,
            ["machines", "findbytag"] => Api::FindByTag,
            ["machines", _] => Api::Machine(segs[1].clone()),
            ["machines", _, "vulnerabilities"] => Api::MachineVulnerabilities(segs[1].clone()),
            ["vulnerabilities"] => Api::Vulnerabilities,
            ["vulnerabilities", "machinesvulnerabilities"] => Api::MachinesVulnerabilities,
            ["vulnerabilities", _] => Api::Vulnerability(segs[1].clone()),
            ["vulnerabilities", _, "machinereferences"] => Api::MachineReferences(segs[1].clone()),
            _ => Api::Unknown,
        }
    }

    fn family(&self) -> Family {
        match self {
            Api::Machines | Api::Machine(_) | Api::FindByTag => Family::Machines,
            Api::MachineVulnerabilities(_) => Family::MachineVulnerabilities,
            Api::ByMachine => Family::JsonExport,
            Api::Changes => Family::Delta,
            Api::FileExport => Family::FileExport,
            Api::Vulnerabilities
            | Api::Vulnerability(_)
            | Api::MachineReferences(_)
            | Api::MachinesVulnerabilities => Family::Vulnerabilities,
            Api::Unknown => Family::Other,
        }
    }

    /// Application roles that grant access (any one suffices), per the reference's permission table.
    fn roles(&self) -> &'static [&'static str] {
        match self.family() {
            Family::Machines => &["Machine.Read.All", "Machine.ReadWrite.All"],
            _ => &["Vulnerability.Read.All"],
        }
    }
}

/// The claims of the request's bearer token; `None` when there is no bearer token at all.
fn authenticate(inner: &Inner, headers: &HeaderMap) -> Result<Claims, Option<TokenError>> {
    let token = super::bearer(headers).ok_or(None)?;
    let now = crate::time::wall_secs();
    inner
        .issuer
        .verify(
            token,
            now,
            inner.faults.token_epoch(),
            &inner.config.tenant_id,
        )
        .map_err(Some)
}

pub(super) fn handle(
    inner: Arc<Inner>,
    parts: &Parts,
    segs: &[String],
    base: String,
    target: String,
) -> Response {
    let (method, headers) = (&parts.method, &parts.headers);
    let path = parts.uri.path();
    let raw_query = parts.uri.query().unwrap_or("");
    let segs = match segs.first() {
        Some(v) if v.eq_ignore_ascii_case("v1.0") => &segs[1..],
        _ => segs,
    };
    let route = Api::route(segs);
    let family = route.family();
    inner.counters.call(family);
    let claims = match authenticate(&inner, headers) {
        Ok(c) => c,
        Err(why) => {
            let message = why.map_or(
                "Authorization header is missing or is not a bearer token.",
                |e| e.message(),
            );
            return mde(StatusCode::UNAUTHORIZED, "Unauthorized", message, &target);
        }
    };
    if !is_mde_audience(&claims.aud) {
        return mde(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "The audience '{}' of the access token is not valid for this API.",
                claims.aud
            ),
            &target,
        );
    }
    if matches!(route, Api::Unknown) {
        return mde(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "The requested resource does not exist.",
            &target,
        );
    }
    let required = route.roles();
    let granted = claims.roles.as_deref().unwrap_or(&[]);
    if !granted
        .iter()
        .any(|r| required.iter().any(|q| q.eq_ignore_ascii_case(r)))
    {
        return mde(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "Missing application roles. API required roles: {}, application roles: {}.",
                required.join(","),
                granted.join(",")
            ),
            &target,
        );
    }
    if *method != Method::GET {
        return mde(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("The method {method} is not allowed on this resource."),
            &target,
        );
    }
    if inner.config.rate_limits {
        let caller = format!("{}/{}", claims.tid, claims.appid);
        let verdict = inner
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check(&caller, family, Instant::now());
        if let Err(wait) = verdict {
            inner.counters.throttled.fetch_add(1, Ordering::Relaxed);
            return errors::too_many(wait, &target);
        }
    }
    let fault = choose_fault(
        &inner,
        family,
        path,
        raw_query,
        matches!(route, Api::ByMachine),
    );
    if let Some(Injected::Status(status)) = fault {
        inner.counters.faults.fetch_add(1, Ordering::Relaxed);
        if status == 429 {
            inner.counters.throttled.fetch_add(1, Ordering::Relaxed);
        }
        return errors::injected(status, &target);
    }
    let query = match Query::parse(raw_query) {
        Ok(q) => q,
        Err(e) => return mde(StatusCode::BAD_REQUEST, "BadRequest", &e.0, &target),
    };
    let encoding = if inner.compression.load(Ordering::Relaxed) {
        Encoding::negotiate(headers)
    } else {
        Encoding::Identity
    };
    let ctx = Ctx {
        sim: inner.clone(),
        query,
        base,
        target,
        encoding,
        truncate: fault == Some(Injected::Truncate),
        splice: match fault {
            Some(Injected::Garble) => Splice::Garble,
            Some(Injected::OddRecord) => Splice::OddRecord,
            _ => Splice::None,
        },
    };
    let resp = match &route {
        Api::Machines => machines::list(&ctx),
        Api::Machine(id) => machines::by_id(&ctx, id),
        Api::FindByTag => machines::find_by_tag(&ctx),
        Api::MachineVulnerabilities(id) => machines::vulnerabilities(&ctx, id),
        Api::ByMachine => exports::by_machine(&ctx),
        Api::Changes => exports::changes(&ctx),
        Api::FileExport => exports::file_export(&ctx),
        Api::Vulnerabilities => vulns::list(&ctx),
        Api::Vulnerability(id) => vulns::by_id(&ctx, id),
        Api::MachineReferences(id) => vulns::machine_references(&ctx, id),
        Api::MachinesVulnerabilities => vulns::machines_vulnerabilities(&ctx),
        Api::Unknown => ctx.not_found("The requested resource does not exist."),
    };
    after_fault(&inner, fault, resp)
}
