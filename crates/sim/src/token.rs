//! Access tokens: JWT-shaped (base64url header.payload.signature) v1.0 tokens like Entra issues for
//! WindowsDefenderATP, signed with a per-process keyed hash so the emulator recognises its own and
//! rejects forged, foreign (another emulator's) and expired ones.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::hash::{Mac, mix};

/// Identifier URIs (and app id) of WindowsDefenderATP accepted as token audience by the MDE API
/// (<https://learn.microsoft.com/en-us/defender-endpoint/gov>).
pub(crate) const MDE_AUDIENCES: [&str; 6] = [
    "https://api.securitycenter.microsoft.com",
    "https://securitycenter.onmicrosoft.com/windowsatpservice",
    "https://api.securitycenter.windows.com",
    "https://api-gcc.securitycenter.microsoft.us",
    "https://api-gov.securitycenter.microsoft.us",
    "fc780465-2017-40d4-a0c5-307022471b92",
];

/// Other resources the tenant has service principals for: tokens are issued, but the MDE API
/// refuses them (wrong audience). ARM and Graph are here for the Defender for Cloud routes to come.
pub(crate) const OTHER_RESOURCES: [&str; 3] = [
    "https://api.security.microsoft.com",
    "https://graph.microsoft.com",
    "https://api.securitycenter.microsoft.com/windowsatpservice",
];

/// Audiences Azure Resource Manager (and Resource Graph, an ARM provider) accepts, per cloud
/// (<https://learn.microsoft.com/en-us/defender-endpoint/gov>): public, US Government and China, each with its `management.core` alias.
pub(crate) const ARM_AUDIENCES: [&str; 6] = [
    "https://management.azure.com",
    "https://management.core.windows.net",
    "https://management.usgovcloudapi.net",
    "https://management.core.usgovcloudapi.net",
    "https://management.chinacloudapi.cn",
    "https://management.core.chinacloudapi.cn",
];

pub(crate) fn is_arm_audience(aud: &str) -> bool {
    let aud = aud.strip_suffix('/').unwrap_or(aud);
    ARM_AUDIENCES.iter().any(|a| a.eq_ignore_ascii_case(aud))
}

/// Canonical resource for a requested one (case-insensitive, trailing slash ignored), if provisioned.
pub(crate) fn known_resource(requested: &str) -> Option<&'static str> {
    let r = requested.strip_suffix('/').unwrap_or(requested);
    MDE_AUDIENCES
        .iter()
        .chain(OTHER_RESOURCES.iter())
        .chain(ARM_AUDIENCES.iter())
        .find(|k| k.eq_ignore_ascii_case(r))
        .copied()
}

pub(crate) fn is_mde_audience(aud: &str) -> bool {
    MDE_AUDIENCES.iter().any(|a| a.eq_ignore_ascii_case(aud))
}

/// Token lifetime Entra reports in `expires_in`; `exp - iat` is 300 s more (nbf/iat are backdated).
pub(crate) const EXPIRES_IN: i64 = 3599;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub(crate) aud: String,
    pub(crate) iss: String,
    pub(crate) iat: i64,
    pub(crate) nbf: i64,
    pub(crate) exp: i64,
    pub(crate) aio: String,
    pub(crate) app_displayname: String,
    pub(crate) appid: String,
    pub(crate) appidacr: String,
    pub(crate) idp: String,
    pub(crate) oid: String,
    pub(crate) rh: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) roles: Option<Vec<String>>,
    pub(crate) sub: String,
    pub(crate) tenant_region_scope: String,
    pub(crate) tid: String,
    pub(crate) uti: String,
    pub(crate) ver: String,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TokenError {
    Malformed,
    BadSignature,
    Expired,
    NotYetValid,
    Revoked,
    WrongTenant,
}

impl TokenError {
    pub(crate) fn message(&self) -> &'static str {
        match self {
            TokenError::Malformed => "The access token is malformed.",
            TokenError::BadSignature => "The access token signature is invalid.",
            TokenError::Expired | TokenError::Revoked => "The access token has expired.",
            TokenError::NotYetValid => "The access token is not yet valid.",
            TokenError::WrongTenant => "The access token was issued for another tenant.",
        }
    }
}

pub(crate) struct Issuer {
    mac: Mac,
    nonce: std::sync::atomic::AtomicU64,
}

const HEADER: &str = r#"{"typ":"JWT","alg":"RS256","x5t":"rampart-sim","kid":"rampart-sim"}"#;
const MAX_TOKEN_LEN: usize = 16 * 1024;

impl Issuer {
    pub(crate) fn new(key: [u64; 4]) -> Issuer {
        Issuer {
            mac: Mac::new(key),
            nonce: std::sync::atomic::AtomicU64::new(key[0]),
        }
    }

    /// A fresh `uti`: the revocation epoch (see `Faults::expire_tokens_now`) plus random-looking bytes.
    pub(crate) fn uti(&self, epoch: u64) -> String {
        let n = self
            .nonce
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut bytes = [0u8; 18];
        bytes[..8].copy_from_slice(&epoch.to_le_bytes());
        bytes[8..16].copy_from_slice(&mix(n, 0x071).to_le_bytes());
        bytes[16..].copy_from_slice(&(mix(n, 0x072) as u16).to_le_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub(crate) fn mint(&self, claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(HEADER);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signed = format!("{header}.{payload}");
        let sig = URL_SAFE_NO_PAD.encode(self.mac.sign(signed.as_bytes()));
        format!("{signed}.{sig}")
    }

    /// Checks signature, lifetime (wall clock), revocation epoch and tenant.
    pub(crate) fn verify(
        &self,
        token: &str,
        now: i64,
        min_epoch: u64,
        tenant: &str,
    ) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| TokenError::Malformed)?;
        let signed_len = header.len() + 1 + payload.len();
        if !self.mac.verify(&token.as_bytes()[..signed_len], &sig) {
            return Err(TokenError::BadSignature);
        }
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if now >= claims.exp {
            return Err(TokenError::Expired);
        }
        if now + 300 < claims.nbf {
            return Err(TokenError::NotYetValid);
        }
        let epoch = URL_SAFE_NO_PAD
            .decode(&claims.uti)
            .ok()
            .and_then(|b| b.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()))
            .map(u64::from_le_bytes)
            .ok_or(TokenError::Malformed)?;
        if epoch < min_epoch {
            return Err(TokenError::Revoked);
        }
        if !claims.tid.eq_ignore_ascii_case(tenant) {
            return Err(TokenError::WrongTenant);
        }
        Ok(claims)
    }
}
