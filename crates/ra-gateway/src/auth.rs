//! Optional bearer auth: every route but `/health` needs `Authorization: Bearer <key>`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// Whether the `Authorization` header carries `key`, compared in constant time (only
/// the length can leak). The scheme is case-insensitive and may be followed by several
/// spaces (RFC 7235: `bearer k` is `Bearer k`). The key is never logged.
pub fn authorized(header: Option<&[u8]>, key: &str) -> bool {
    let Some(token) = header.and_then(bearer_token) else {
        return false;
    };
    token.ct_eq(key.as_bytes()).into()
}

/// The credentials of a `Bearer` header, whatever the scheme's case.
fn bearer_token(header: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer";
    let (scheme, rest) = header.split_at_checked(SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) || rest.first() != Some(&b' ') {
        return None;
    }
    let start = rest.iter().position(|&b| b != b' ')?;
    Some(&rest[start..])
}

/// The middleware: 401 with a JSON body when a key is configured and not given.
pub async fn require_key(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.config.api_key {
        let header = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
        if !authorized(header, key.expose()) {
            return ApiError::Unauthorized.into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::authorized;

    #[test]
    fn only_the_exact_bearer_key_passes() {
        assert!(authorized(Some(b"Bearer k3y"), "k3y"));
        assert!(authorized(Some(b"bearer k3y"), "k3y"));
        assert!(authorized(Some(b"BEARER  k3y"), "k3y"));
        assert!(!authorized(Some(b"Bearerk3y"), "k3y"));
        assert!(!authorized(Some(b"Bearer "), "k3y"));
        assert!(!authorized(Some(b"Bearer k3Y"), "k3y"));
        assert!(!authorized(Some(b"Bearer k3"), "k3y"));
        assert!(!authorized(Some(b"Bearer k3yy"), "k3y"));
        assert!(!authorized(Some(b"k3y"), "k3y"));
        assert!(!authorized(Some(b"Basic k3y"), "k3y"));
        assert!(!authorized(None, "k3y"));
    }
}
