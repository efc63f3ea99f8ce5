//! Bearer tokens for the node's own API, in three scopes: `write` (`POST /api/v1/write` and
//! InfluxDB's `POST /write`, `POST /api/v2/write`, which also take the token as
//! `Authorization: Token T`, as the password of Basic auth or as the `p` parameter),
//! `admin` (deletes and renames) and `query` (everything else that reads: queries, the
//! catalogue, expressions, Opsview's graph API under `/rest/`, `/status`, `/metrics`). A scope with no tokens configured
//! (`[auth]`) is open. A protected request without a token, or with one the node does not
//! know, gets 401 with `WWW-Authenticate: Bearer`; a known token without the scope gets 403.
//!
//! Calls between nodes carry `cache.peer_secret` in `X-Perfpipe-Peer` instead and pass every
//! scope when it matches; `/internal/` paths take nothing else once a secret is set. `/health`
//! (load balancers), the plugins' cache and state API (Opsview's protocol has no tokens; its
//! namespaces can be encrypted instead) and the graph page's files (`GET /`, `GET /page/…`:
//! static, holding no data; the page sends the user's `query` token with its own API calls)
//! are never behind tokens. Tokens are compared in constant time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, Node};
use crate::cachemanager::peers::PEER_HEADER;
use crate::config::AuthConfig;

/// What a request may need a token for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Write,
    Query,
    Admin,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Scope::Write => "write",
            Scope::Query => "query",
            Scope::Admin => "admin",
        }
    }

    fn tokens(self, auth: &AuthConfig) -> &[String] {
        match self {
            Scope::Write => &auth.write_tokens,
            Scope::Query => &auth.query_tokens,
            Scope::Admin => &auth.admin_tokens,
        }
    }
}

/// Who may call `method path`: `None` for the paths never behind tokens.
pub fn scope_of(method: &Method, path: &str) -> Option<Scope> {
    match (method, path) {
        (_, "/health" | "/ping" | "/get_data" | "/set_data" | "/store_data" | "/fetch_data") => {
            None
        }
        (&Method::GET | &Method::HEAD, "/") => None,
        (&Method::GET | &Method::HEAD, page) if page.starts_with("/page/") => None,
        (&Method::POST, "/api/v1/write" | "/write" | "/api/v2/write") => Some(Scope::Write),
        (&Method::DELETE, _) | (&Method::POST, "/api/v1/rename") => Some(Scope::Admin),
        _ => Some(Scope::Query),
    }
}

/// The middleware: lets a request through or answers 401/403 for it.
pub async fn require_token(
    State(node): State<Arc<Node>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let secret = node.config.cache.peer_secret.as_bytes();
    let peer = request
        .headers()
        .get(PEER_HEADER)
        .is_some_and(|given| !secret.is_empty() && constant_time_eq(given.as_bytes(), secret));
    if path.starts_with("/internal/") {
        if secret.is_empty() || peer {
            return next.run(request).await;
        }
        return ApiError(
            StatusCode::FORBIDDEN,
            "calls between nodes need cache.peer_secret".into(),
        )
        .into_response();
    }
    let Some(scope) = scope_of(request.method(), path) else {
        return next.run(request).await;
    };
    let auth = &node.config.auth;
    let allowed = scope.tokens(auth);
    if allowed.is_empty() || peer {
        return next.run(request).await;
    }
    let given = given_token(&request);
    let given = given.as_deref();
    let known = |tokens: &[String]| {
        given.is_some_and(|given| {
            tokens
                .iter()
                .any(|token| constant_time_eq(token.as_bytes(), given.as_bytes()))
        })
    };
    if known(allowed) {
        return next.run(request).await;
    }
    let status =
        if known(&auth.write_tokens) || known(&auth.query_tokens) || known(&auth.admin_tokens) {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::UNAUTHORIZED
        };
    let message = match (status, given) {
        (StatusCode::FORBIDDEN, _) => format!("this token lacks the {} scope", scope.name()),
        (_, None) => format!("a bearer token of the {} scope is needed", scope.name()),
        (_, Some(_)) => "unknown token".to_owned(),
    };
    let mut answer = ApiError(status, message).into_response();
    if status == StatusCode::UNAUTHORIZED {
        answer.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    answer
}

/// The token a request carries: `Authorization: Bearer T` (or `Token T`, as InfluxDB clients
/// send it); on InfluxDB's write paths also the password of `Authorization: Basic` or the
/// `p` query parameter (InfluxDB 1.x clients; the user name is not checked).
fn given_token(request: &Request) -> Option<String> {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let influx = matches!(request.uri().path(), "/write" | "/api/v2/write");
    if let Some(value) = header {
        for scheme in ["Bearer ", "bearer ", "Token ", "token "] {
            if let Some(token) = value.strip_prefix(scheme) {
                return Some(token.trim().to_owned());
            }
        }
        if influx {
            if let Some(encoded) = value
                .strip_prefix("Basic ")
                .or_else(|| value.strip_prefix("basic "))
            {
                use base64::Engine as _;
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()?;
                let decoded = String::from_utf8(decoded).ok()?;
                return decoded
                    .split_once(':')
                    .map(|(_, password)| password.to_owned());
            }
        }
    }
    if influx {
        return form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .find(|(name, _)| name == "p")
            .map(|(_, password)| password.into_owned());
    }
    None
}

/// Equality whose time does not depend on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |differ, (x, y)| differ | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_follow_method_and_path() {
        assert_eq!(scope_of(&Method::POST, "/api/v1/write"), Some(Scope::Write));
        assert_eq!(scope_of(&Method::GET, "/api/v1/query"), Some(Scope::Query));
        assert_eq!(scope_of(&Method::GET, "/metrics"), Some(Scope::Query));
        assert_eq!(
            scope_of(&Method::DELETE, "/api/v1/hosts/h"),
            Some(Scope::Admin)
        );
        assert_eq!(
            scope_of(&Method::POST, "/api/v1/rename"),
            Some(Scope::Admin)
        );
        assert_eq!(scope_of(&Method::GET, "/rest/graph"), Some(Scope::Query));
        assert_eq!(
            scope_of(&Method::GET, "/rest/runtime/performancemetric"),
            Some(Scope::Query)
        );
        assert_eq!(scope_of(&Method::GET, "/api/v1/series"), Some(Scope::Query));
        assert_eq!(scope_of(&Method::POST, "/write"), Some(Scope::Write));
        assert_eq!(scope_of(&Method::POST, "/api/v2/write"), Some(Scope::Write));
        assert_eq!(scope_of(&Method::GET, "/ping"), None);
        assert_eq!(scope_of(&Method::GET, "/health"), None);
        assert_eq!(scope_of(&Method::POST, "/get_data"), None);
        assert_eq!(scope_of(&Method::GET, "/"), None);
        assert_eq!(scope_of(&Method::GET, "/page/graph.js"), None);
        assert_eq!(scope_of(&Method::POST, "/"), Some(Scope::Query));
        assert_eq!(scope_of(&Method::GET, "/pages"), Some(Scope::Query));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
