//! CSRF protection of the forms shown before sign-in (sign in, first-run setup) without a
//! server-side session: a signed double-submit cookie.
//!
//! The browser gets a random value in an HttpOnly cookie; the form carries the HMAC of that value
//! under a key derived from the master key. A post is accepted only when the form's token is the
//! HMAC of the cookie it came with. Another site can make the browser send the cookie but cannot
//! read it, and cannot plant a cookie of its own that matches a token without the key. So an
//! anonymous visit writes nothing to the database (OWASP's "signed double-submit cookie").

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine as _;
use hmac::{KeyInit as _, Mac};

use crate::state::AppState;

pub const COOKIE: &str = "rampart_form";

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The form token and, when the browser had no usable cookie yet, the cookie to set.
pub struct FormToken {
    pub token: String,
    pub set_cookie: Option<HeaderValue>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn sign(key: &[u8; 32], value: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(b"rampart sign-in form\0");
    mac.update(value.as_bytes());
    b64(&mac.finalize().into_bytes())
}

/// The cookie's value in the request, if it looks like one of ours.
fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|v| {
            v.len() == 43
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The token for a form of this page (reusing the browser's cookie when it has one).
pub fn issue(state: &AppState, headers: &HeaderMap) -> FormToken {
    let key = &state.auth.form_key;
    if let Some(value) = cookie_value(headers) {
        return FormToken {
            token: sign(key, &value),
            set_cookie: None,
        };
    }
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let value = b64(&bytes);
    // `Secure` is added by the portal's cookie layer when the browser came over HTTPS.
    let cookie = format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict");
    FormToken {
        token: sign(key, &value),
        set_cookie: HeaderValue::from_str(&cookie).ok(),
    }
}

/// Whether `given` is the token of the request's cookie.
pub fn verify(state: &AppState, headers: &HeaderMap, given: &str) -> bool {
    cookie_value(headers).is_some_and(|value| {
        let expected = sign(&state.auth.form_key, &value);
        super::csrf::tokens_match(given, &expected)
    })
}
