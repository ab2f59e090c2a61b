//! `GET /api/docs`: the API reference, a readable page over the OpenAPI document
//! ([`crate::openapi`]). Swagger UI and its initializer come from `/static` ([`crate::assets`],
//! built into the binary); the page has no inline script or style, so the site's
//! Content-Security-Policy applies to it unchanged.

use std::sync::LazyLock;

use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};

use crate::{assets, openapi};

/// Where the page is served.
pub const PATH: &str = "/api/docs";

/// `GET /api/docs`.
pub async fn page() -> Response {
    static PAGE: LazyLock<String> = LazyLock::new(|| {
        let v = assets::version();
        format!(
            r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cola API reference</title>
<link rel="icon" href="/static/favicon.svg?v={v}" type="image/svg+xml">
<link rel="stylesheet" href="/static/swagger-ui.css?v={v}">
</head>
<body>
<div id="swagger-ui" data-spec="{spec}"></div>
<script src="/static/swagger-ui-bundle.js?v={v}"></script>
<script src="/static/api-docs.js?v={v}"></script>
</body>
</html>
"#,
            spec = openapi::PATH,
        )
    });
    let mut response = PAGE.as_str().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}
