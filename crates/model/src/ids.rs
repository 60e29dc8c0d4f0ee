//! Checked identifiers. Each one is parsed once at the edge (CLI, portal, API, wire) and is valid
//! everywhere after that.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a piece of user or wire input is not a valid identifier. The message is written for the person
/// who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error(
        "'{0}' is not a valid tenant ID: use the Directory (tenant) ID GUID from the app's Overview page in Microsoft Entra (like 72f988bf-86f1-41af-91ab-2d7cd011db47) or a verified domain (like contoso.onmicrosoft.com)"
    )]
    Tenant(String),
    #[error(
        "'{0}' is not a valid client ID: use the Application (client) ID GUID from the app's Overview page in Microsoft Entra (like 00000000-0000-0000-0000-000000000000)"
    )]
    Client(String),
    #[error("'{0}' is not a Defender for Endpoint device ID (40 hexadecimal characters)")]
    Device(String),
    #[error("'{0}' is not a vulnerability ID (like CVE-2024-12345)")]
    Cve(String),
    #[error(
        "'{0}' is not a valid integration name: use 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit"
    )]
    IntegrationName(String),
}

/// Shows at most 80 characters of hostile input in an error message.
fn shown(input: &str) -> String {
    let mut s: String = input.chars().take(80).collect();
    if input.chars().count() > 80 {
        s.push('…');
    }
    s
}

/// A Microsoft Entra tenant: a GUID, or a verified DNS domain such as `contoso.onmicrosoft.com`.
/// The well-known multi-tenant aliases (`common`, `organizations`, `consumers`) are refused: client
/// credentials need the one real tenant (AADSTS50059 otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TenantId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if let Ok(guid) = Uuid::try_parse(t)
            && t.len() == 36
        {
            return Ok(Self(guid.hyphenated().to_string()));
        }
        let is_domain = t.len() <= 253
            && t.contains('.')
            && t.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if is_domain {
            Ok(Self(t.to_ascii_lowercase()))
        } else {
            Err(IdError::Tenant(shown(s)))
        }
    }
}

impl TryFrom<String> for TenantId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> Self {
        t.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The Application (client) ID of an Entra app registration: always a GUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientId(Uuid);

impl FromStr for ClientId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        match Uuid::try_parse(t) {
            Ok(u) if t.len() == 36 => Ok(Self(u)),
            _ => Err(IdError::Client(shown(s))),
        }
    }
}

impl TryFrom<String> for ClientId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ClientId> for String {
    fn from(c: ClientId) -> Self {
        c.to_string()
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

/// A Defender for Endpoint machine id: 40 lowercase hexadecimal characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

impl DeviceId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DeviceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(IdError::Device(shown(s)))
        }
    }
}

impl TryFrom<String> for DeviceId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DeviceId> for String {
    fn from(d: DeviceId) -> Self {
        d.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A vulnerability identifier: `CVE-YYYY-N…` (upper-cased), or one of Microsoft's own `TVM-…` ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CveId(String);

impl CveId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CveId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        let valid = if let Some(rest) = upper.strip_prefix("CVE-") {
            let mut parts = rest.splitn(2, '-');
            let year = parts.next().unwrap_or("");
            let seq = parts.next().unwrap_or("");
            year.len() == 4
                && year.bytes().all(|b| b.is_ascii_digit())
                && (4..=10).contains(&seq.len())
                && seq.bytes().all(|b| b.is_ascii_digit())
        } else if let Some(rest) = upper.strip_prefix("TVM-") {
            !rest.is_empty()
                && rest.len() <= 60
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        } else {
            false
        };
        if valid {
            Ok(Self(upper))
        } else {
            Err(IdError::Cve(shown(s)))
        }
    }
}

impl TryFrom<String> for CveId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<CveId> for String {
    fn from(c: CveId) -> Self {
        c.0
    }
}

impl fmt::Display for CveId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name a person gives an integration (`contoso-mde`): used on the command line and in URLs, so
/// it is kept to a safe alphabet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IntegrationName(String);

impl IntegrationName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for IntegrationName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = (1..=64).contains(&s.len())
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::IntegrationName(shown(s)))
        }
    }
}

impl TryFrom<String> for IntegrationName {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<IntegrationName> for String {
    fn from(n: IntegrationName) -> Self {
        n.0
    }
}

impl fmt::Display for IntegrationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_accepts_guid_and_domain_and_refuses_aliases() {
        assert!(
            "72F988BF-86F1-41AF-91AB-2D7CD011DB47"
                .parse::<TenantId>()
                .is_ok()
        );
        assert_eq!(
            "Contoso.OnMicrosoft.com"
                .parse::<TenantId>()
                .unwrap()
                .as_str(),
            "contoso.onmicrosoft.com"
        );
        assert!("common".parse::<TenantId>().is_err());
        assert!("organizations".parse::<TenantId>().is_err());
        assert!("72f988bf-86f1-41af-91ab".parse::<TenantId>().is_err());
        assert!("evil/../path.com".parse::<TenantId>().is_err());
        assert!("".parse::<TenantId>().is_err());
    }

    #[test]
    fn client_id_must_be_a_hyphenated_guid() {
        assert!(
            "00000000-0000-0000-0000-000000000001"
                .parse::<ClientId>()
                .is_ok()
        );
        assert!(
            "00000000000000000000000000000001"
                .parse::<ClientId>()
                .is_err()
        );
        assert!("my-app".parse::<ClientId>().is_err());
    }

    #[test]
    fn cve_ids_are_normalised() {
        assert_eq!(
            "cve-2024-1234".parse::<CveId>().unwrap().as_str(),
            "CVE-2024-1234"
        );
        assert!("TVM-2020-0002".parse::<CveId>().is_ok());
        assert!("CVE-24-1".parse::<CveId>().is_err());
        assert!("<script>".parse::<CveId>().is_err());
    }

    #[test]
    fn errors_do_not_echo_unbounded_input() {
        let long = "x".repeat(10_000);
        let msg = long.parse::<ClientId>().unwrap_err().to_string();
        assert!(msg.len() < 400, "{msg}");
    }
}
