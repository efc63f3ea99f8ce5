//! The graph page: `GET /` serves one HTML file, `GET /page/{file}` its script and style sheet,
//! all three compiled into the binary (`include_str!` of `src/api/page/`). The page is plain
//! HTML and JavaScript of this repository (its own canvas chart, no third-party code) and reads
//! everything through the node's public API (`/api/v1/hosts`, `/api/v1/hosts/{host}/metrics`,
//! `/api/v1/query`) with the `query` token the user gives it, so serving it needs no token and
//! reveals no data.
//!
//! The HTML carries a `Content-Security-Policy` that allows only the node's own files and API
//! (no inline script, no framing), so a host or metric name, which the page only ever sets as
//! text, could not run as script even if that rule were broken.
//!
//! Caching: every answer carries an `ETag` (a hash of the file) and a conditional request with
//! that tag gets 304. The HTML is `no-cache` (revalidated on every load, so a new binary's page
//! shows at once); it names its assets with `?v=<their tag>`, so the assets can be cached for a
//! day: a changed file is a new URL.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::routing::fnv1a_64;

const HTML: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/graph.js");
const STYLE: &str = include_str!("page/graph.css");

/// One file as served: its body, content type, tag and cache rule.
struct Asset {
    body: String,
    content_type: &'static str,
    etag: String,
    cache_control: &'static str,
    /// `Content-Security-Policy`, for the HTML.
    policy: Option<&'static str>,
}

impl Asset {
    fn new(body: String, content_type: &'static str, cache_control: &'static str) -> Asset {
        let etag = format!("\"{:016x}\"", fnv1a_64(body.as_bytes()));
        Asset {
            body,
            content_type,
            etag,
            cache_control,
            policy: None,
        }
    }

    fn answer(&'static self, request: &HeaderMap) -> Response {
        let fresh = request
            .get(header::IF_NONE_MATCH)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == self.etag));
        let headers = [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(self.cache_control),
            ),
            (
                header::ETAG,
                HeaderValue::from_str(&self.etag).expect("a hex tag is a header value"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ];
        let mut answer = if fresh {
            (StatusCode::NOT_MODIFIED, headers).into_response()
        } else {
            (headers, self.body.as_str()).into_response()
        };
        if let Some(policy) = self.policy {
            answer.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(policy),
            );
        }
        answer
    }
}

const DAY: &str = "public, max-age=86400";

static SCRIPT_ASSET: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(SCRIPT.into(), "text/javascript; charset=utf-8", DAY));
static STYLE_ASSET: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(STYLE.into(), "text/css; charset=utf-8", DAY));
static HTML_ASSET: LazyLock<Asset> = LazyLock::new(|| {
    let version = |asset: &Asset| asset.etag.trim_matches('"').to_owned();
    let body = HTML
        .replace("{{script_version}}", &version(&SCRIPT_ASSET))
        .replace("{{style_version}}", &version(&STYLE_ASSET));
    Asset {
        policy: Some(POLICY),
        ..Asset::new(body, "text/html; charset=utf-8", "no-cache")
    }
});

/// The page loads nothing but its own files and talks to nothing but its node; no inline
/// script, no framing.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
                      base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `GET /`: the page.
pub async fn index(request: HeaderMap) -> Response {
    HTML_ASSET.answer(&request)
}

/// `GET /page/{file}`: `graph.js` or `graph.css`; anything else 404.
pub async fn asset(Path(file): Path<String>, request: HeaderMap) -> Response {
    match file.as_str() {
        "graph.js" => SCRIPT_ASSET.answer(&request),
        "graph.css" => STYLE_ASSET.answer(&request),
        _ => {
            super::ApiError(StatusCode::NOT_FOUND, format!("no page file {file:?}")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_its_assets_by_version() {
        let html = &HTML_ASSET.body;
        assert!(!html.contains("{{"), "a placeholder is left: {html}");
        let script = format!("/page/graph.js?v={}", SCRIPT_ASSET.etag.trim_matches('"'));
        let style = format!("/page/graph.css?v={}", STYLE_ASSET.etag.trim_matches('"'));
        assert!(html.contains(&script), "{script} not in the page");
        assert!(html.contains(&style), "{style} not in the page");
    }

    #[test]
    fn a_known_tag_gets_304() {
        let mut request = HeaderMap::new();
        let answer = SCRIPT_ASSET.answer(&request);
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.headers()[header::CACHE_CONTROL], DAY);
        request.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", {}", SCRIPT_ASSET.etag)).unwrap(),
        );
        assert_eq!(
            SCRIPT_ASSET.answer(&request).status(),
            StatusCode::NOT_MODIFIED
        );
        request.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"x\""));
        assert_eq!(SCRIPT_ASSET.answer(&request).status(), StatusCode::OK);
    }
}
