//! The shared state of a running gateway and the router that maps paths to handlers.

use std::{ops::Deref, sync::Arc};

use axum::{
    Router,
    extract::{DefaultBodyLimit, FromRef, Request},
    routing::get,
};
use cola_wire::nats::Topology;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use crate::{
    GatewayConfig, GatewayError, auth::Authenticators, events::JobEvents, extract::BodyLimit,
    health, jobs, languages,
};

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub config: GatewayConfig,
    pub client: async_nats::Client,
    pub topology: Topology,
    pub events: JobEvents,
    pub auth: Authenticators,
    /// Cancelled when the gateway stops: long waits answer at once.
    pub shutdown: CancellationToken,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl FromRef<AppState> for Authenticators {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

impl FromRef<AppState> for BodyLimit {
    fn from_ref(state: &AppState) -> Self {
        BodyLimit(state.config.max_body_bytes)
    }
}

/// Every route of the gateway, with the body limit and request tracing around them.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(api_routes())
        .fallback(|| async { GatewayError::NotFound("no such endpoint") })
        .method_not_allowed_fallback(|| async { GatewayError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                tracing::info_span!(
                    "http",
                    method = %request.method(),
                    path = %request.uri().path(),
                    user = tracing::field::Empty,
                    job_id = tracing::field::Empty,
                )
            }),
        )
        .with_state(state)
}

/// The JSON API under `/api/v1` (browser pages will be merged next to it).
fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/languages", get(languages::list))
        .route("/api/v1/jobs", get(jobs::list).post(jobs::create))
        .route("/api/v1/jobs/{id}", get(jobs::show).delete(jobs::cancel))
        .route("/api/v1/jobs/{id}/output.zip", get(jobs::output_zip))
}
