//! `/healthz` (the process is alive) and `/readyz` (it can serve: NATS connected, stream and
//! buckets present).

use std::time::Duration;

use async_nats::connection::State as ConnectionState;
use axum::{extract::State, http::StatusCode};
use cola_wire::nats::Topology;

use crate::state::AppState;

/// How long the readiness check may take before it counts as a failure.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(app): State<AppState>) -> (StatusCode, &'static str) {
    let state = app.client.connection_state();
    if state != ConnectionState::Connected {
        tracing::warn!(?state, "not ready: NATS is not connected");
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready");
    }
    let js = async_nats::jetstream::new(app.client.clone());
    match tokio::time::timeout(READY_CHECK_TIMEOUT, Topology::open(&js)).await {
        Ok(Ok(_)) => (StatusCode::OK, "ok"),
        Ok(Err(error)) => {
            tracing::warn!(%error, "not ready: stream or buckets missing");
            (StatusCode::SERVICE_UNAVAILABLE, "not ready")
        }
        Err(_) => {
            tracing::warn!("not ready: NATS did not answer within {READY_CHECK_TIMEOUT:?}");
            (StatusCode::SERVICE_UNAVAILABLE, "not ready")
        }
    }
}
