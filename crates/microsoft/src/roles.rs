//! Application roles: reading them from an access token and explaining the missing ones
//! (<https://learn.microsoft.com/en-us/defender-endpoint/api/exposed-apis-create-app-webapp>).
//!
//! A token request succeeds even when no permission has admin consent; the token then simply has no
//! `roles` claim and the API answers 403 later. Reading the claim right after acquiring the token lets
//! `integration test` name the exact permission to add, before any sync fails.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::wire::entra::Claims;

/// Decodes the payload of a JWT access token **without checking its signature**: Rampart is not the
/// resource server; the claims are only read to explain permission problems. `None` for a token that
/// is not a JWT (Entra may issue opaque tokens to other resources).
pub fn decode_claims(token: &str) -> Option<Claims> {
    let mut parts = token.split('.');
    let (_header, payload) = (parts.next()?, parts.next()?);
    parts.next()?; // a JWT has a signature part, even if empty
    // Tolerate padding although JWTs use unpadded base64url.
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// An application role an API needs. Any of `accepted` satisfies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequiredRole {
    /// The role to ask for (the least privilege that works).
    pub name: &'static str,
    /// Roles that satisfy the requirement, `name` included.
    pub accepted: &'static [&'static str],
    /// What Rampart reads with it, for the message.
    pub needed_for: &'static str,
}

/// Device inventory (`GET /api/machines`).
pub const MACHINE_READ: RequiredRole = RequiredRole {
    name: "Machine.Read.All",
    accepted: &["Machine.Read.All", "Machine.ReadWrite.All"],
    needed_for: "device inventory",
};

/// TVM data: the exports, the delta and the CVE catalogue.
pub const VULNERABILITY_READ: RequiredRole = RequiredRole {
    name: "Vulnerability.Read.All",
    accepted: &["Vulnerability.Read.All"],
    needed_for: "vulnerabilities",
};

/// What a Defender for Endpoint integration needs.
pub const ENDPOINT_ROLES: &[RequiredRole] = &[MACHINE_READ, VULNERABILITY_READ];

impl Claims {
    /// The roles claim, or `None` when the token has none at all (admin consent not granted).
    pub fn roles(&self) -> Option<&[String]> {
        self.roles.as_deref()
    }

    /// Whether the token carries a role that satisfies `required` (role names compare
    /// case-insensitively).
    pub fn has_role(&self, required: &RequiredRole) -> bool {
        self.roles().is_some_and(|roles| {
            roles
                .iter()
                .any(|r| required.accepted.iter().any(|a| a.eq_ignore_ascii_case(r)))
        })
    }

    /// The required roles this token lacks.
    pub fn missing_roles(&self, required: &[RequiredRole]) -> MissingRoles {
        MissingRoles {
            missing: required
                .iter()
                .copied()
                .filter(|r| !self.has_role(r))
                .collect(),
            roles_claim_present: self.roles.is_some(),
        }
    }
}

/// Required roles a token lacks, with the explanation of how to grant them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingRoles {
    pub missing: Vec<RequiredRole>,
    /// `false` when the token had no `roles` claim at all: admin consent was never granted.
    pub roles_claim_present: bool,
}

impl MissingRoles {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty()
    }

    /// The names of the missing roles.
    pub fn names(&self) -> Vec<&'static str> {
        self.missing.iter().map(|r| r.name).collect()
    }
}

impl fmt::Display for MissingRoles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.missing.is_empty() {
            return f.write_str("The token carries every application role Rampart needs.");
        }
        let list = self
            .missing
            .iter()
            .map(|r| format!("{} (for {})", r.name, r.needed_for))
            .collect::<Vec<_>>()
            .join(" and ");
        if self.roles_claim_present {
            write!(
                f,
                "The app lacks the application permission {list} on the WindowsDefenderATP API. "
            )?;
        } else {
            write!(
                f,
                "The app's token carries no roles at all: admin consent has not been granted for its application permissions, so it lacks {list} on the WindowsDefenderATP API. "
            )?;
        }
        let names = self.names().join(" and ");
        write!(
            f,
            "Fix: in Microsoft Entra open App registrations > your app > API permissions > Add a permission > APIs my organization uses, \
             search for WindowsDefenderATP, choose Application permissions, tick {names}, add them, then click Grant admin consent for your tenant \
             (an administrator must do this). New permissions reach Rampart with its next token, within about an hour."
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE;

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(payload),
            "c2ln"
        )
    }

    #[test]
    fn roles_are_read_from_the_payload() {
        let c = decode_claims(&jwt(
            r#"{"aud":"https://api.securitycenter.microsoft.com","tid":"t","appid":"a","exp":1714514576,"roles":["Machine.Read.All","SecurityRecommendation.Read.All"]}"#,
        ))
        .unwrap();
        assert_eq!(
            c.aud.as_deref(),
            Some("https://api.securitycenter.microsoft.com")
        );
        assert_eq!(c.exp, Some(1_714_514_576));
        assert!(c.has_role(&MACHINE_READ));
        let missing = c.missing_roles(ENDPOINT_ROLES);
        assert_eq!(missing.names(), vec!["Vulnerability.Read.All"]);
        let text = missing.to_string();
        for needle in [
            "Vulnerability.Read.All",
            "WindowsDefenderATP",
            "APIs my organization uses",
            "Application permissions",
            "Grant admin consent",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        assert!(!text.contains("Machine.Read.All"), "{text}");
    }

    #[test]
    fn readwrite_satisfies_read_and_case_does_not_matter() {
        let c = decode_claims(&jwt(
            r#"{"roles":["machine.readwrite.all","VULNERABILITY.READ.ALL"]}"#,
        ))
        .unwrap();
        assert!(c.missing_roles(ENDPOINT_ROLES).is_empty());
    }

    #[test]
    fn no_roles_claim_means_no_admin_consent() {
        let c = decode_claims(&jwt(r#"{"aud":"x"}"#)).unwrap();
        assert_eq!(c.roles(), None);
        let missing = c.missing_roles(ENDPOINT_ROLES);
        assert!(!missing.roles_claim_present);
        assert_eq!(
            missing.names(),
            vec!["Machine.Read.All", "Vulnerability.Read.All"]
        );
        assert!(
            missing
                .to_string()
                .contains("admin consent has not been granted"),
            "{missing}"
        );
        // An empty array is different from no claim: consent exists, but for other roles.
        let c = decode_claims(&jwt(r#"{"roles":[]}"#)).unwrap();
        assert!(c.missing_roles(ENDPOINT_ROLES).roles_claim_present);
    }

    #[test]
    fn padded_payloads_and_garbage() {
        let payload = URL_SAFE.encode(r#"{"roles":["A"]}"#);
        assert_eq!(
            decode_claims(&format!("h.{payload}.s"))
                .unwrap()
                .roles()
                .unwrap(),
            ["A"]
        );
        for bad in ["", "opaque-token", "a.b", "a.!!!.c", "a.bm90IGpzb24.c"] {
            assert!(decode_claims(bad).is_none(), "{bad}");
        }
    }
}
