//! REST API bearer tokens: random, shown once at creation, stored as a SHA-256 hash.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine as _;
use rampart_store::{ApiToken, TokenScope, Visibility};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, AppError};
use crate::state::AppState;

/// A new random token, `PREFIX_` + 32 random bytes in base64url.
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    format!(
        "{prefix}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// What is stored of a token.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Any valid API token (read or admin scope).
#[derive(Debug, Clone)]
pub struct ApiReader(pub ApiToken);

/// An API token with admin scope.
#[derive(Debug, Clone)]
pub struct ApiAdmin(pub ApiToken);

/// What a token may see (and, with admin scope, change): its one workspace, or everything for
/// a global token (docs/workspaces.md).
pub fn token_visibility(token: &ApiToken) -> Visibility {
    match token.workspace {
        Some(w) => Visibility::Workspaces(vec![w]),
        None => Visibility::All,
    }
}

impl ApiReader {
    pub fn vis(&self) -> Visibility {
        token_visibility(&self.0)
    }
}

impl ApiAdmin {
    pub fn vis(&self) -> Visibility {
        token_visibility(&self.0)
    }
}

async fn bearer(parts: &Parts, state: &AppState) -> Result<ApiToken, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AppError::Unauthenticated)?;
    // The scheme is case-insensitive (RFC 9110 §11.1): `bearer`, `BEARER` and `Bearer` alike.
    let token = value
        .trim_start()
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty() && t.len() <= 200)
        .ok_or(AppError::Unauthenticated)?;
    state
        .store()
        .api_token_by_hash(&token_hash(token))
        .await?
        .ok_or(ApiError(AppError::Unauthenticated))
}

impl FromRequestParts<AppState> for ApiReader {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(ApiReader(bearer(parts, state).await?))
    }
}

impl FromRequestParts<AppState> for ApiAdmin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts, state).await?;
        if token.scope != TokenScope::Admin {
            return Err(ApiError(AppError::Forbidden(
                "this API token has read scope; changing integrations and starting syncs needs an admin-scope token".into(),
            )));
        }
        Ok(ApiAdmin(token))
    }
}
