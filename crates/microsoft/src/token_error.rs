//! Token errors, each with a plain explanation and the fix (<https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes>).
//!
//! The person reading these is an administrator setting up an integration: every message names the
//! field or portal page to look at. Microsoft's own description is kept (first line only, bounded),
//! and so are the trace and correlation ids that Microsoft support asks for. The client secret never
//! appears: it is only ever in the form body, which is never echoed.

use std::fmt;

use crate::text::bounded;
use crate::wire::entra::TokenErrorBody;

/// A problem and what to do about it, in words for the person who set up the integration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} Fix: {}", self.problem, self.fix)
    }
}

/// Microsoft Entra refused the token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRejection {
    /// HTTP status (400 or 401 in practice).
    pub status: u16,
    /// OAuth `error`: `invalid_client`, `invalid_request`, `unauthorized_client`, ...
    pub error: Option<String>,
    /// `error_codes[0]`, e.g. 7000215.
    pub aadsts: Option<u32>,
    /// The first line of `error_description`, at most 300 characters.
    pub description: Option<String>,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
    pub timestamp: Option<String>,
}

impl TokenRejection {
    pub(crate) fn from_body(status: u16, body: TokenErrorBody) -> TokenRejection {
        TokenRejection {
            status,
            aadsts: body.aadsts(),
            description: body.first_line().map(|l| bounded(l, 300)),
            error: body.error.map(|e| bounded(&e, 60)),
            trace_id: body.trace_id.map(|t| bounded(&t, 60)),
            correlation_id: body.correlation_id.map(|c| bounded(&c, 60)),
            timestamp: body.timestamp.map(|t| bounded(&t, 40)),
        }
    }
}

/// Why no access token could be obtained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Entra answered with an error (AADSTS code).
    #[error("{}", render_rejection(.0))]
    Rejected(Box<TokenRejection>),
    /// The login host could not be reached (DNS, connection, TLS, timeout).
    #[error("{}", self.explanation())]
    Unreachable { login_host: String, detail: String },
    /// Something answered, but not like Entra does (a proxy's page, a non-JSON body, a 5xx).
    #[error("{}", self.explanation())]
    UnexpectedResponse {
        login_host: String,
        status: u16,
        detail: String,
    },
}

impl TokenError {
    /// The AADSTS code, when Entra gave one.
    pub fn aadsts(&self) -> Option<u32> {
        match self {
            TokenError::Rejected(r) => r.aadsts,
            _ => None,
        }
    }

    /// The HTTP status of the token endpoint's answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            TokenError::Rejected(r) => Some(r.status),
            TokenError::UnexpectedResponse { status, .. } => Some(*status),
            TokenError::Unreachable { .. } => None,
        }
    }

    /// OAuth `error` (`invalid_client`, ...), when Entra gave one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            TokenError::Rejected(r) => r.error.as_deref(),
            _ => None,
        }
    }

    pub fn trace_id(&self) -> Option<&str> {
        match self {
            TokenError::Rejected(r) => r.trace_id.as_deref(),
            _ => None,
        }
    }

    pub fn correlation_id(&self) -> Option<&str> {
        match self {
            TokenError::Rejected(r) => r.correlation_id.as_deref(),
            _ => None,
        }
    }

    /// Whether trying again later could help (network trouble, Entra having a bad moment), as
    /// opposed to a configuration problem that needs a person.
    pub fn is_transient(&self) -> bool {
        match self {
            TokenError::Unreachable { .. } => true,
            TokenError::UnexpectedResponse { status, .. } => *status >= 500 || *status == 429,
            TokenError::Rejected(r) => r.status >= 500 || r.status == 429,
        }
    }

    /// What went wrong and how to fix it.
    pub fn explanation(&self) -> Explanation {
        match self {
            TokenError::Rejected(r) => explain_rejection(r),
            TokenError::Unreachable { login_host, detail } => Explanation {
                problem: format!(
                    "Rampart could not reach the Microsoft Entra login host {login_host} ({detail})."
                ),
                fix: format!(
                    "Check that the integration's cloud is right (commercial and GCC sign in at login.microsoftonline.com, GCC High and DoD at login.microsoftonline.us), \
                     that this machine can reach {login_host} (firewall, HTTPS proxy), and any login URL override."
                ),
            },
            TokenError::UnexpectedResponse {
                login_host,
                status,
                detail,
            } => Explanation {
                problem: format!(
                    "{login_host} answered the token request with HTTP {status}, which is not a Microsoft Entra answer ({detail})."
                ),
                fix: "If it is a 5xx, Microsoft Entra is having trouble: try again later. Otherwise check the login URL override and any proxy between Rampart and Microsoft.".to_owned(),
            },
        }
    }
}

fn render_rejection(r: &TokenRejection) -> String {
    let mut s = explain_rejection(r).to_string();
    let mut ids = Vec::new();
    if let Some(code) = r.aadsts {
        ids.push(format!("AADSTS{code}"));
    }
    if let Some(t) = &r.trace_id {
        ids.push(format!("trace ID {t}"));
    }
    if let Some(c) = &r.correlation_id {
        ids.push(format!("correlation ID {c}"));
    }
    if !ids.is_empty() {
        s.push_str(&format!(" ({})", ids.join(", ")));
    }
    s
}

/// The explanation of an AADSTS code, or of Microsoft's own words for codes this table lacks.
pub fn explain_rejection(r: &TokenRejection) -> Explanation {
    if let Some(e) = r.aadsts.and_then(explain_aadsts) {
        return e;
    }
    let said = r
        .description
        .clone()
        .or_else(|| r.error.clone())
        .unwrap_or_else(|| format!("HTTP {}", r.status));
    Explanation {
        problem: format!("Microsoft Entra refused the token request: {said}"),
        fix: match r.aadsts {
            Some(code) => format!(
                "Look up AADSTS{code} at https://login.microsoftonline.com/error?code={code} and check the integration's tenant ID, client ID, client secret and cloud."
            ),
            None => {
                "Check the integration's tenant ID, client ID, client secret and cloud.".to_owned()
            }
        },
    }
}

/// Plain explanations for the codes users hit in practice (<https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes>).
pub fn explain_aadsts(code: u32) -> Option<Explanation> {
    let (problem, fix) = match code {
        7_000_215 => (
            "The client secret is wrong.",
            "In Microsoft Entra, open App registrations > your app > Certificates & secrets and copy the secret's Value (shown only right after it was created), not its Secret ID; \
             paste it into the integration. If the value is lost, create a new client secret and use its Value.",
        ),
        7_000_222 => (
            "The client secret has expired.",
            "Create a new client secret under App registrations > your app > Certificates & secrets, then update the integration in Rampart with the new secret's Value (and its expiry date, so Rampart can warn you next time).",
        ),
        90_002 => (
            "Tenant not found: Microsoft Entra knows no tenant with this ID in the chosen cloud.",
            "Copy the Directory (tenant) ID from the app's Overview page in Microsoft Entra, and check the integration's cloud (a GCC High or DoD tenant does not exist in the commercial cloud, and the other way round).",
        ),
        900_023 => (
            "The tenant ID is not in a valid form.",
            "Use the Directory (tenant) ID GUID from the app's Overview page (like 72f988bf-86f1-41af-91ab-2d7cd011db47) or a verified domain (like contoso.onmicrosoft.com).",
        ),
        50_059 => (
            "The request did not identify a tenant (for example 'common' or 'organizations' was used).",
            "Use the tenant's own Directory (tenant) ID: client credentials need the one real tenant.",
        ),
        700_016 => (
            "There is no application with this client ID in this tenant.",
            "Check the Application (client) ID and the Directory (tenant) ID on the app's Overview page. If the app is registered in another tenant (multi-tenant app), an administrator of this tenant must grant admin consent so that it exists here.",
        ),
        7_000_218 => (
            "The request carried no client secret.",
            "Enter the client secret's Value in the integration.",
        ),
        900_144 => (
            "The token request is missing a required parameter.",
            "Rampart always sends every parameter, so something between Rampart and Microsoft changed the request: check the login URL override and any proxy. If neither applies, report this as a Rampart bug.",
        ),
        70_011 | 1_002_012 => (
            "The requested scope is not valid for client credentials.",
            "The scope must be the Defender for Endpoint API's identifier followed by /.default (https://api.securitycenter.microsoft.com/.default in the commercial cloud). Remove or correct any scope override, and check the cloud.",
        ),
        700_022 => (
            "The request asked for scopes of more than one API at once.",
            "Use a single scope ending in /.default; remove or correct any scope override.",
        ),
        500_011 => (
            "Defender for Endpoint (WindowsDefenderATP) is not provisioned in this tenant, or the wrong cloud was chosen.",
            "Check that this tenant has Microsoft Defender for Endpoint (open the Microsoft Defender portal once as an administrator to provision it) and that the integration's cloud matches the tenant (GCC, GCC High and DoD have their own API hosts).",
        ),
        901_002 => (
            "The 'resource' parameter was sent to the v2 token endpoint.",
            "Rampart sends 'scope', so the login URL override or a proxy points at the wrong endpoint: remove the override or fix the proxy.",
        ),
        7_000_112 => (
            "The application is disabled in this tenant.",
            "An administrator must enable it: Microsoft Entra > Enterprise applications > your app > Properties > Enabled for users to sign-in = Yes.",
        ),
        53_003 => (
            "A Conditional Access policy blocked the app's sign-in.",
            "Ask an administrator to allow this app in the Conditional Access policies for workload identities (for example allow Rampart's outgoing IP address, or exclude the app).",
        ),
        _ => return None,
    };
    Some(Explanation {
        problem: problem.to_owned(),
        fix: fix.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code the reference lists has its own explanation, naming the thing to check.
    #[test]
    fn every_listed_code_is_explained() {
        let cases: &[(u32, &str)] = &[
            (7_000_215, "Value"),
            (7_000_222, "new client secret"),
            (90_002, "Directory (tenant) ID"),
            (900_023, "Directory (tenant) ID"),
            (50_059, "tenant"),
            (700_016, "Application (client) ID"),
            (7_000_218, "secret"),
            (900_144, "proxy"),
            (70_011, "/.default"),
            (700_022, "single scope"),
            (500_011, "not provisioned"),
            (901_002, "resource"),
            (7_000_112, "disabled"),
            (53_003, "Conditional Access"),
        ];
        for (code, needle) in cases {
            let e = explain_aadsts(*code).unwrap_or_else(|| panic!("AADSTS{code} unexplained"));
            let text = e.to_string();
            assert!(text.contains(needle), "AADSTS{code}: {text}");
            assert!(!e.fix.is_empty());
        }
        assert!(
            explain_aadsts(700_016)
                .unwrap()
                .fix
                .contains("admin consent")
        );
        assert!(
            explain_aadsts(7_000_215)
                .unwrap()
                .fix
                .contains("not its Secret ID")
        );
        assert!(
            explain_aadsts(500_011)
                .unwrap()
                .problem
                .contains("wrong cloud")
        );
    }

    #[test]
    fn unknown_codes_show_microsofts_first_line_without_trace_noise() {
        let body = TokenErrorBody {
            error: Some("invalid_request".into()),
            error_description: Some(
                "AADSTS99999: Something new happened.\r\nTrace ID: abc\r\nCorrelation ID: def\r\nTimestamp: 2024-07-15 11:14:02Z"
                    .into(),
            ),
            error_codes: vec![99_999],
            trace_id: Some("abc".into()),
            correlation_id: Some("def".into()),
            ..Default::default()
        };
        let err = TokenError::Rejected(Box::new(TokenRejection::from_body(400, body)));
        let text = err.to_string();
        assert!(
            text.contains("AADSTS99999: Something new happened."),
            "{text}"
        );
        assert!(!text.contains("Timestamp:"), "{text}");
        assert!(
            text.contains("trace ID abc") && text.contains("correlation ID def"),
            "{text}"
        );
        assert_eq!(err.aadsts(), Some(99_999));
        assert_eq!(err.status(), Some(400));
        assert_eq!(err.error_code(), Some("invalid_request"));
    }

    #[test]
    fn network_errors_point_at_cloud_proxy_and_url() {
        let err = TokenError::Unreachable {
            login_host: "login.microsoftonline.us".into(),
            detail: "connection refused".into(),
        };
        let text = err.to_string();
        assert!(
            text.contains("login.microsoftonline.us")
                && text.contains("proxy")
                && text.contains("cloud"),
            "{text}"
        );
        assert!(err.is_transient());
    }

    #[test]
    fn hostile_descriptions_are_bounded() {
        let body = TokenErrorBody {
            error_description: Some(format!("AADSTS1: {}", "x\u{7}".repeat(5000))),
            ..Default::default()
        };
        let r = TokenRejection::from_body(400, body);
        assert!(r.description.as_ref().unwrap().chars().count() <= 301);
        assert!(!r.description.unwrap().contains('\u{7}'));
    }
}
