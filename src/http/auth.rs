//! Bearer tokens: an admin token that may call everything and an optional read-only
//! token for every `GET`, searches and `/metrics`.
//!
//! The check runs as the outermost layer of the API routes, before any extractor reads
//! the body or parses the names in the path, so a caller without a token learns nothing
//! about what exists. Tokens are compared in constant time (the time depends only on the
//! configured token's length, never on how much of a guess matched).

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// Who a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// May call everything.
    Admin,
    /// May read (every `GET`, searches, `/metrics`).
    Read,
}

/// The configured tokens; with no admin token the API is open.
#[derive(Clone, Default)]
pub struct Tokens {
    admin: Option<Vec<u8>>,
    read: Option<Vec<u8>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("admin", &self.admin.as_ref().map(|_| "***"))
            .field("read", &self.read.as_ref().map(|_| "***"))
            .finish()
    }
}

/// `a == b` in time that depends only on `want`'s length.
fn same(given: &[u8], want: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != want.len());
    for (i, w) in want.iter().enumerate() {
        diff |= given.get(i).copied().unwrap_or(0) ^ w;
    }
    std::hint::black_box(diff) == 0
}

/// Paths any caller may load: probes, the spec, the docs page and the dashboard with their
/// assets (the pages hold no data; every API call they make carries the token).
pub fn is_open(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/openapi.json" | "/docs" | "/ui")
        || path.starts_with("/docs/")
        || path.starts_with("/ui/")
}

/// The `x-vectune-role` header every answer carries: what the caller's token may do
/// (`admin`, `read`), `none` when auth is on and it gave no valid token, `open` when auth
/// is off. The dashboard reads it from `/health` to ask for a token and to hide write
/// buttons, without provoking a 401 or 403.
pub const ROLE_HEADER: &str = "x-vectune-role";

/// Whether the read-only token may make this call.
fn readable(method: &Method, path: &str) -> bool {
    method == Method::GET
        || method == Method::HEAD
        || (method == Method::POST && path.starts_with("/vectors/search/"))
}

impl Tokens {
    /// From the settings' tokens (already checked when the settings loaded).
    pub fn new(admin: Option<&str>, read: Option<&str>) -> Tokens {
        Tokens {
            admin: admin.map(|t| t.as_bytes().to_vec()),
            read: read.map(|t| t.as_bytes().to_vec()),
        }
    }

    /// Whether a token is required at all.
    pub fn enabled(&self) -> bool {
        self.admin.is_some()
    }

    /// The role of an `Authorization` header value, or `None` for a missing, malformed or
    /// wrong one.
    pub fn role(&self, authorization: Option<&[u8]>) -> Option<Role> {
        let value = authorization?;
        let (scheme, token) = value.split_at(value.iter().position(|&b| b == b' ')?);
        let token = &token[1..];
        if !scheme.eq_ignore_ascii_case(b"bearer") || token.is_empty() {
            return None;
        }
        // both compared every time: which one matched is not told by the timing either
        let admin = self.admin.as_deref().is_some_and(|a| same(token, a));
        let read = self.read.as_deref().is_some_and(|r| same(token, r));
        if admin {
            Some(Role::Admin)
        } else if read {
            Some(Role::Read)
        } else {
            None
        }
    }

    /// Decides one request: `Ok` to go on, or the `401`/`403` answer.
    pub fn check(&self, method: &Method, path: &str, authorization: Option<&[u8]>) -> Result<(), ApiError> {
        if !self.enabled() || is_open(path) {
            return Ok(());
        }
        match self.role(authorization) {
            Some(Role::Admin) => Ok(()),
            Some(Role::Read) if readable(method, path) => Ok(()),
            Some(Role::Read) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the read-only token may not change anything; use the admin token",
            )),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid bearer token (Authorization: Bearer <token>)",
            )),
        }
    }
}

/// The layer: refuses before the route's extractors run.
pub async fn require_token(
    State(tokens): State<std::sync::Arc<Tokens>>,
    req: Request,
    next: Next,
) -> Response {
    let auth = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let role = match (tokens.enabled(), tokens.role(auth)) {
        (false, _) => "open",
        (true, Some(Role::Admin)) => "admin",
        (true, Some(Role::Read)) => "read",
        (true, None) => "none",
    };
    match tokens.check(req.method(), req.uri().path(), auth) {
        Ok(()) => {
            let mut r = next.run(req).await;
            r.headers_mut()
                .insert(ROLE_HEADER, header::HeaderValue::from_static(role));
            r
        }
        Err(e) => {
            let unauthorized = e.status() == StatusCode::UNAUTHORIZED;
            let mut r = e.into_response();
            if unauthorized {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "admin-token-123";
    const READ: &str = "read-token-456";

    fn tokens() -> Tokens {
        Tokens::new(Some(ADMIN), Some(READ))
    }

    fn code(r: Result<(), ApiError>) -> Option<&'static str> {
        r.err().map(|e| e.code())
    }

    #[test]
    fn headers_are_parsed_strictly() {
        let t = tokens();
        let role = |h: &str| t.role(Some(h.as_bytes()));
        assert_eq!(role(&format!("Bearer {ADMIN}")), Some(Role::Admin));
        assert_eq!(role(&format!("bearer {ADMIN}")), Some(Role::Admin));
        assert_eq!(role(&format!("Bearer {READ}")), Some(Role::Read));
        for bad in [
            "Bearer".to_string(),
            "Bearer ".to_string(),
            ADMIN.to_string(),
            format!("Token {ADMIN}"),
            format!("Basic {ADMIN}"),
            format!("Bearer {}", &ADMIN[..ADMIN.len() - 1]),
            format!("Bearer {ADMIN}{ADMIN}"),
            format!("Bearer  {ADMIN}"),
            format!("Bearer {ADMIN} "),
            "Bearer \"\"".to_string(),
        ] {
            assert_eq!(role(&bad), None, "{bad:?}");
        }
        assert_eq!(t.role(None), None);
    }

    #[test]
    fn roles_and_open_paths() {
        let t = tokens();
        let admin = format!("Bearer {ADMIN}");
        let read = format!("Bearer {READ}");
        let a = Some(admin.as_bytes());
        let r = Some(read.as_bytes());
        for p in [
            "/health",
            "/ready",
            "/openapi.json",
            "/docs",
            "/docs/swagger-ui.css",
        ] {
            assert_eq!(code(t.check(&Method::GET, p, None)), None, "{p}");
        }
        assert_eq!(
            code(t.check(&Method::GET, "/metrics", None)),
            Some("unauthorized")
        );
        assert_eq!(code(t.check(&Method::GET, "/docsx", None)), Some("unauthorized"));
        assert_eq!(code(t.check(&Method::GET, "/metrics", r)), None);
        assert_eq!(code(t.check(&Method::GET, "/vectors/indexes", r)), None);
        assert_eq!(code(t.check(&Method::POST, "/vectors/search/x", r)), None);
        assert_eq!(
            code(t.check(&Method::POST, "/vectors/indexes", r)),
            Some("forbidden")
        );
        assert_eq!(
            code(t.check(&Method::DELETE, "/vectors/indexes/x", r)),
            Some("forbidden")
        );
        assert_eq!(
            code(t.check(&Method::PUT, "/vectors/hnsw/agent/x", r)),
            Some("forbidden")
        );
        assert_eq!(code(t.check(&Method::DELETE, "/vectors/indexes/x", a)), None);
        // no token configured: open
        let open = Tokens::default();
        assert_eq!(
            code(open.check(&Method::DELETE, "/vectors/indexes/x", None)),
            None
        );
    }

    #[test]
    fn comparison_is_exact() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abd", b"abc"));
        assert!(!same(b"ab", b"abc"));
        assert!(!same(b"abcd", b"abc"));
        assert!(!same(b"", b"abc"));
    }
}
