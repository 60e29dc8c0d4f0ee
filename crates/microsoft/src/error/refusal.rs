//! Microsoft's error answer to one request, rendered with the hint that fits its status and code.

use std::time::Duration;

use crate::family::ApiFamily;

/// A Microsoft API (Defender for Endpoint, Resource Manager, Resource Graph) answered with an error
/// status that retrying does not fix (or retries ran out on a 429). `message` is Microsoft's free
/// text, bounded; branch on `code`, never on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct Refusal {
    pub family: ApiFamily,
    pub status: u16,
    /// `error.code`: `BadRequest`, `ResourceNotFound`, `Forbidden`, `TooManyRequests`, ...
    pub code: Option<String>,
    pub message: Option<String>,
    /// `error.target`: Microsoft's per-request correlation id.
    pub target: Option<String>,
    /// For 429: how long Microsoft asked to wait.
    pub retry_after: Option<Duration>,
    /// `error.details[]`: ARM and Resource Graph give the real reason here (`ResponsePayloadTooLarge`)
    /// under a generic `BadRequest` and an opaque "Please provide below info…" message.
    pub details: Vec<RefusalDetail>,
}

/// One entry of an error's `details[]`, bounded like the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalDetail {
    pub code: Option<String>,
    pub message: Option<String>,
}

impl Refusal {
    /// Whether one of `details[]` carries `code` (case-insensitive).
    pub fn has_detail(&self, code: &str) -> bool {
        self.details.iter().any(|d| {
            d.code
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case(code))
        })
    }

    fn render(&self) -> String {
        let mut s = format!(
            "{} refused the {} request with HTTP {}",
            self.family.service(),
            self.family,
            self.status
        );
        if let Some(code) = &self.code {
            s.push_str(&format!(" {code}"));
        }
        if let Some(m) = &self.message {
            s.push_str(&format!(": {m}"));
        }
        if !s.ends_with('.') {
            s.push('.');
        }
        for d in &self.details {
            let text = match (&d.code, &d.message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.clone(),
                (None, Some(m)) => m.clone(),
                (None, None) => continue,
            };
            s.push_str(&format!(" Details: {text}"));
            if !s.ends_with('.') {
                s.push('.');
            }
        }
        let graph = self.family == ApiFamily::ResourceGraph;
        let hint = match (self.status, self.code.as_deref()) {
            (400, _) if graph && self.has_detail("ResponsePayloadTooLarge") => Some(
                "Resource Graph answers at most 16 MiB at a time; Rampart asked for fewer rows per page down to one and the answer was still too large.".to_owned(),
            ),
            (400, _) if graph => Some(
                "Resource Graph refused the query; the details above say why.".to_owned(),
            ),
            (401, _) => Some(
                "The API refused the token even after a fresh one was fetched: check the integration's cloud (the token must be for the same cloud as the API host) and any scope or API URL override.".to_owned(),
            ),
            (403, Some(c)) if c.eq_ignore_ascii_case("DisabledFeature") => Some(
                "The feature is not enabled for this tenant (for example Defender Vulnerability Management is not licensed).".to_owned(),
            ),
            (404, _) => Some(
                "Microsoft says there is nothing at this address; for the device list this can mean the tenant has no recently seen devices.".to_owned(),
            ),
            (429, _) => Some(match self.retry_after {
                Some(d) => format!(
                    "Microsoft's rate limit for this app and tenant is spent; it asked to wait {} s. The next sync will continue.",
                    d.as_secs()
                ),
                None => "Microsoft's rate limit for this app and tenant is spent; the next sync will continue.".to_owned(),
            }),
            (400, _) => Some(
                "Microsoft refused a parameter of the request (for example a delta start time older than 14 days).".to_owned(),
            ),
            _ => None,
        };
        if let Some(h) = hint {
            s.push(' ');
            s.push_str(&h);
        }
        if let Some(t) = &self.target {
            s.push_str(&format!(" (request id {t})"));
        }
        s
    }
}
