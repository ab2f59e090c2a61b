//! The router that maps paths to handlers, with the layers every response goes through.

use std::time::Instant;

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderName, HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use cola_wire::RequestId;
use tower_http::trace::TraceLayer;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    GatewayError, api_docs, assets, energy, health, jobs, languages, numeric, openapi, pages,
    state::AppState,
};

/// Every route of the gateway, with the body limit, security headers, request metrics and
/// tracing around them.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let (api, document) = api_routes().split_for_parts();
    let document = openapi::Served::new(&openapi::document(document, &state.config));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics))
        .route("/static/{file}", get(assets::serve))
        .route(api_docs::PATH, get(api_docs::page))
        .merge(api.layer(axum::Extension(document)))
        .merge(pages::routes(&state))
        .fallback(not_found)
        .method_not_allowed_fallback(|| async { GatewayError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            track_requests,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let request_id = request.extensions().get::<RequestId>();
                tracing::info_span!(
                    "http",
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id = request_id.map(RequestId::as_str),
                    user = tracing::field::Empty,
                    job_id = tracing::field::Empty,
                )
            }),
        )
        .layer(axum::middleware::from_fn(assign_request_id))
        .with_state(state)
}

/// The header a request's id comes in (from a client or a proxy) and goes back in.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Gives every request an id, to follow it (and the job it submits) through the logs of every
/// process: the client's `X-Request-Id` when it is a safe token ([`RequestId::parse`]), else a
/// new one. Handlers find it in the request's extensions; the answer carries it back.
async fn assign_request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| RequestId::parse(value).ok())
        .unwrap_or_default();
    request.extensions_mut().insert(id.clone());
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// `GET /metrics`: the gateway's Prometheus metrics.
async fn metrics(State(app): State<AppState>) -> Response {
    app.metrics.render(&app.client)
}

/// Counts and times every request by its route template (a layer around each route, so the
/// route it matched is known).
async fn track_requests(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let response = next.run(request).await;
    let route = route.as_ref().map(MatchedPath::as_str);
    let code = response.status().as_u16();
    app.metrics
        .answered(route, &method, code, started.elapsed());
    response
}

/// An unknown path: JSON under `/api/`, a page elsewhere.
async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        GatewayError::NotFound("no such endpoint").into_response()
    } else {
        pages::PageError::NotFound("no such page").into_response()
    }
}

/// The content security policy of every answer: scripts, styles and images from this site
/// only (no inline script), no framing, forms post only here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    // A handler may set a stricter policy of its own (e.g. a served SVG).
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    for (name, value) in [
        (header::X_FRAME_OPTIONS, "DENY"),
        // Not `no-referrer`: with it, browsers send `Origin: null` on this site's own forms,
        // and the pages could not tell them from another site's.
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The JSON API under `/api/v1` (bearer tokens only; the pages are merged next to it), with its
/// OpenAPI operations: each route comes from its handler's `#[utoipa::path]`, so the router
/// and the document list the same paths and methods. Add routes here with `routes!` only.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(languages::list))
        .routes(routes!(energy::list))
        .routes(routes!(numeric::methods))
        .routes(routes!(jobs::list, jobs::create))
        .routes(routes!(jobs::show))
        .routes(routes!(jobs::cancel))
        .routes(routes!(jobs::output_zip))
        .routes(routes!(openapi::serve))
}
