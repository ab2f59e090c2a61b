//! The static assets of the web app (`web/static`), built into the binary: the pages work on a
//! machine without internet, and nothing is loaded from anywhere else. The API reference page
//! (`/api/docs`, [`crate::api_docs`]) adds Swagger UI's script and stylesheet, fetched at build
//! time from npm by `build.rs` (never committed), and its own small initializer script.

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
const API_DOCS_JS: &str = include_str!("../../web/static/api-docs.js");
const SWAGGER_UI_JS: &[u8] = include_bytes!(concat!(
    env!("COLA_SWAGGER_UI_DIR"),
    "/swagger-ui-bundle.js"
));
const SWAGGER_UI_CSS: &[u8] =
    include_bytes!(concat!(env!("COLA_SWAGGER_UI_DIR"), "/swagger-ui.css"));
// `SWAGGER_UI_IMAGES`: the images of Swagger UI's stylesheet, which `build.rs` takes out of it
// (they were `data:` URLs, which the site's policy refuses).
include!(concat!(env!("COLA_SWAGGER_UI_DIR"), "/images.rs"));

/// A short hash of every asset: pages link `/static/<file>?v=<version>`, so a new build is
/// never served stale from a browser's cache.
pub fn version() -> &'static str {
    static VERSION: LazyLock<String> = LazyLock::new(|| {
        let mut hash = Sha256::new();
        for asset in [CSS, JS, ICON, API_DOCS_JS] {
            hash.update(asset.as_bytes());
        }
        for asset in [SWAGGER_UI_JS, SWAGGER_UI_CSS] {
            hash.update(asset);
        }
        hex::encode(&hash.finalize()[..6])
    });
    &VERSION
}

/// `GET /static/{file}`.
pub async fn serve(Path(file): Path<String>) -> Response {
    let (body, content_type): (&'static [u8], _) = match file.as_str() {
        "app.css" => (CSS.as_bytes(), "text/css; charset=utf-8"),
        "app.js" => (JS.as_bytes(), "text/javascript; charset=utf-8"),
        "favicon.svg" => (ICON.as_bytes(), "image/svg+xml"),
        "api-docs.js" => (API_DOCS_JS.as_bytes(), "text/javascript; charset=utf-8"),
        "swagger-ui-bundle.js" => (SWAGGER_UI_JS, "text/javascript; charset=utf-8"),
        "swagger-ui.css" => (SWAGGER_UI_CSS, "text/css; charset=utf-8"),
        other => match SWAGGER_UI_IMAGES.iter().find(|(name, _, _)| *name == other) {
            Some((_, content_type, bytes)) => (*bytes, *content_type),
            None => return (StatusCode::NOT_FOUND, "no such file").into_response(),
        },
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
