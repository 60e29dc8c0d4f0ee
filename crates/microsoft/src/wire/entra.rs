//! Microsoft Entra ID token endpoint shapes (<https://learn.microsoft.com/en-us/defender-endpoint/api/exposed-apis-create-app-webapp>).

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::lenient;

/// A successful token response from the v2 endpoint (numbers) or the v1 endpoint (strings of
/// digits, plus `expires_on`, `not_before` and `resource`). The access token is kept in a
/// [`SecretString`], so `Debug` never shows it.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token_type: Option<String>,
    /// Seconds until the token expires. Trusted for caching (`exp` in the token may differ).
    #[serde(deserialize_with = "lenient::req_u64")]
    pub expires_in: u64,
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub ext_expires_in: Option<u64>,
    /// v1 only: expiry as Unix seconds.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub expires_on: Option<u64>,
    /// v1 only.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub not_before: Option<u64>,
    /// v1 only: the resource the token is for.
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(deserialize_with = "lenient::secret")]
    pub access_token: SecretString,
}

/// The body Entra sends with HTTP 400/401 from the token endpoint.
///
/// Microsoft asks clients to branch on `error` and `error_codes[0]`, never on the description text.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct TokenErrorBody {
    #[serde(default)]
    pub error: Option<String>,
    /// Several lines separated by `\r\n`: the message, then `Trace ID:`, `Correlation ID:`, `Timestamp:`.
    #[serde(default)]
    pub error_description: Option<String>,
    #[serde(default)]
    pub error_codes: Vec<u32>,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub trace_id: Option<String>,
    #[serde(default)]
    pub correlation_id: Option<String>,
    #[serde(default)]
    pub error_uri: Option<String>,
}

impl TokenErrorBody {
    /// The AADSTS code: `error_codes[0]`, or the number after `AADSTS` at the start of the description
    /// when the array is missing.
    pub fn aadsts(&self) -> Option<u32> {
        if let Some(code) = self.error_codes.first() {
            return Some(*code);
        }
        let d = self.error_description.as_deref()?;
        let rest = &d[d.find("AADSTS")? + "AADSTS".len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    }

    /// The first line of the description: what happened, without the trace noise that follows.
    pub fn first_line(&self) -> Option<&str> {
        let d = self.error_description.as_deref()?;
        let line = d.split(['\r', '\n']).next()?.trim();
        (!line.is_empty()).then_some(line)
    }
}

/// The claims of an access token's payload that Rampart reads (<https://learn.microsoft.com/en-us/defender-endpoint/api/exposed-apis-create-app-webapp>).
///
/// Rampart is not the resource server, so it does not check the signature: it decodes the payload
/// only to tell the user which application roles the token carries.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Claims {
    /// Audience: the identifier URI the token was requested for, e.g.
    /// `https://api.securitycenter.microsoft.com`.
    #[serde(default, deserialize_with = "lenient::opt_string_or_seq")]
    pub aud: Option<String>,
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub iat: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub nbf: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub exp: Option<i64>,
    /// The application (client) ID that obtained the token.
    #[serde(default)]
    pub appid: Option<String>,
    #[serde(default)]
    pub app_displayname: Option<String>,
    /// `1` = client secret, `2` = certificate.
    #[serde(default)]
    pub appidacr: Option<String>,
    #[serde(default)]
    pub idp: Option<String>,
    #[serde(default)]
    pub oid: Option<String>,
    #[serde(default)]
    pub sub: Option<String>,
    /// Tenant ID.
    #[serde(default)]
    pub tid: Option<String>,
    #[serde(default)]
    pub ver: Option<String>,
    #[serde(default)]
    pub tenant_region_scope: Option<String>,
    /// Application roles granted with admin consent. **Absent** (not empty) when no application
    /// permission has been consented: the token call succeeds and the API answers 403 later.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn v2_numbers_and_v1_strings_both_parse() {
        let v2: TokenResponse = serde_json::from_str(
            r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"abc"}"#,
        )
        .unwrap();
        assert_eq!(v2.expires_in, 3599);
        assert_eq!(v2.access_token.expose_secret(), "abc");
        let v1: TokenResponse = serde_json::from_str(
            r#"{"token_type":"Bearer","expires_in":"3599","ext_expires_in":"0","expires_on":"1388452167","not_before":"1388448267","resource":"https://api.securitycenter.microsoft.com","access_token":"abc"}"#,
        )
        .unwrap();
        assert_eq!(v1.expires_in, 3599);
        assert_eq!(v1.expires_on, Some(1_388_452_167));
        assert!(
            serde_json::from_str::<TokenResponse>(r#"{"expires_in":"soon","access_token":"a"}"#)
                .is_err()
        );
    }

    #[test]
    fn token_response_debug_hides_the_token() {
        let r: TokenResponse =
            serde_json::from_str(r#"{"expires_in":1,"access_token":"eyJsecret-token"}"#).unwrap();
        let shown = format!("{r:?}");
        assert!(!shown.contains("eyJsecret-token"), "{shown}");
    }

    #[test]
    fn aadsts_comes_from_codes_or_description() {
        let body = TokenErrorBody {
            error_description: Some("AADSTS90002: Tenant 'x' not found.\r\nTrace ID: 1".into()),
            ..Default::default()
        };
        assert_eq!(body.aadsts(), Some(90002));
        assert_eq!(
            body.first_line(),
            Some("AADSTS90002: Tenant 'x' not found.")
        );
        let body = TokenErrorBody {
            error_codes: vec![7_000_215],
            ..Default::default()
        };
        assert_eq!(body.aadsts(), Some(7_000_215));
        assert_eq!(TokenErrorBody::default().aadsts(), None);
    }
}
