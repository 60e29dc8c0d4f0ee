//! What the request path needs from tokens and from its caller, as traits and a function type, so
//! that it stays below the Entra token client and knows no product's role names.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::error::{ApiError, Refusal};
use crate::token_error::TokenError;
use crate::wire::entra::Claims;

/// Where the request path gets its bearer tokens (the Entra client-credentials client).
pub(crate) trait TokenSource: fmt::Debug + Send + Sync {
    /// A valid token: the cached one or a new one.
    fn bearer(&self) -> BoxFuture<'_, Result<Arc<dyn Bearer>, TokenError>>;
    /// The API refused `stale` (401): the next [`bearer`](Self::bearer) fetches a new token.
    fn invalidate(&self, stale: &dyn Bearer);
}

/// An access token as the request path sees it.
pub(crate) trait Bearer: Send + Sync {
    /// The value for the `Authorization` header only.
    fn secret(&self) -> &str;
    /// Which fetch it came from, so that one 401 retires it and not a newer token.
    fn generation(&self) -> u64;
    /// The decoded payload, when the token is a JWT.
    fn claims(&self) -> Option<&Claims>;
}

/// What a 403 `Forbidden` means for the caller's API. The caller knows which roles its calls need
/// (Defender for Endpoint's application roles); Azure guards by RBAC and keeps Microsoft's answer.
pub(crate) type OnForbidden = fn(Refusal, &dyn Bearer) -> ApiError;
