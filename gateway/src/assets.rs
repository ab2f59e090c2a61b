//! The static assets of the web app (`web/static`), built into the binary: the pages work on a
//! machine without internet, and nothing is loaded from anywhere else.

use std::sync::LazyLock;

use axum::{
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};

const CSS: &str = include_str!("../../web/static/app.css");
const JS: &str = include_str!("../../web/static/app.js");
const ICON: &str = include_str!("../../web/static/favicon.svg");

/// A short hash of every asset: pages link `/static/<file>?v=<version>`, so a new build is
/// never served stale from a browser's cache.
pub fn version() -> &'static str {
    static VERSION: LazyLock<String> = LazyLock::new(|| {
        let mut hash = Sha256::new();
        for asset in [CSS, JS, ICON] {
            hash.update(asset.as_bytes());
        }
        hex::encode(&hash.finalize()[..6])
    });
    &VERSION
}

/// `GET /static/{file}`.
pub async fn serve(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        "favicon.svg" => (ICON, "image/svg+xml"),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    response
}
