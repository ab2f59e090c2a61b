//! The middleware's probe endpoints, for orchestrators (Kubernetes liveness and readiness):
//! `GET /healthz` answers while the process serves; `GET /readyz` answers 200 while the
//! middleware is connected to NATS and pulling jobs, 503 before and once it stops; and its
//! Prometheus metrics, `GET /metrics` (see [`crate::metrics`]). Nothing else is served on that
//! port.
//!
//! [`run`](crate::run) serves nothing itself: a caller that wants probes makes [`Probes`],
//! serves them with [`serve`] on its own listener and passes them to
//! [`run_with_probes`](crate::run_with_probes), which reports its connection and pull loop.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use async_nats::connection::State as ConnectionState;
use axum::{Router, extract::State, http::StatusCode, response::Response, routing::get};
use tokio_util::sync::CancellationToken;

use crate::metrics::{MiddlewareMetrics, Observed};

/// What the probes and the metrics report, shared between the pull loop and the endpoints.
#[derive(Clone, Default)]
pub struct Probes {
    inner: Arc<ProbeState>,
}

#[derive(Default)]
struct ProbeState {
    pulling: AtomicBool,
    client: Mutex<Option<async_nats::Client>>,
    metrics: Arc<MiddlewareMetrics>,
    /// What the metrics read when scraped, once the middleware pulls.
    observed: Mutex<Option<Observed>>,
}

impl Probes {
    pub fn new() -> Self {
        Self::default()
    }

    /// The NATS connection whose state readiness follows.
    pub fn connected(&self, client: &async_nats::Client) {
        *self.inner.client.lock().expect("probe state lock") = Some(client.clone());
    }

    /// The metrics the middleware keeps.
    pub fn metrics(&self) -> &Arc<MiddlewareMetrics> {
        &self.inner.metrics
    }

    /// What the metrics read when scraped: the connection, the consumer, the backend.
    pub fn observe(&self, observed: Observed) {
        *self.inner.observed.lock().expect("probe state lock") = Some(observed);
    }

    /// Whether the pull loop is taking jobs.
    pub fn set_pulling(&self, pulling: bool) {
        self.inner.pulling.store(pulling, Ordering::SeqCst);
    }

    /// Pulling jobs while connected to NATS.
    pub fn is_ready(&self) -> bool {
        let connected = self
            .inner
            .client
            .lock()
            .expect("probe state lock")
            .as_ref()
            .is_some_and(|c| c.connection_state() == ConnectionState::Connected);
        connected && self.inner.pulling.load(Ordering::SeqCst)
    }
}

/// Serves the probes on `listener` until `shutdown`.
pub async fn serve(listener: tokio::net::TcpListener, probes: Probes, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(probes);
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(%error, "health endpoint stopped");
    }
}

async fn readyz(State(probes): State<Probes>) -> (StatusCode, &'static str) {
    if probes.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// `GET /metrics`; before the middleware is connected, without what it reads from NATS.
async fn metrics(State(probes): State<Probes>) -> Response {
    let observed = probes
        .inner
        .observed
        .lock()
        .expect("probe state lock")
        .clone();
    let ready = probes.is_ready();
    probes.metrics().render(observed.as_ref(), ready).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    async fn status(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response.lines().next().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn ready_only_while_connected_and_pulling() {
        const UNAVAILABLE: &str = "HTTP/1.1 503 Service Unavailable";
        let nats = cola_testkit::TestNats::start().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let probes = Probes::new();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, probes.clone(), shutdown.clone()));

        assert_eq!(status(addr, "/healthz").await, "HTTP/1.1 200 OK");
        assert_eq!(status(addr, "/readyz").await, UNAVAILABLE);
        // Pulling without a connection, and connected without pulling: both not ready.
        probes.set_pulling(true);
        assert_eq!(status(addr, "/readyz").await, UNAVAILABLE);
        probes.set_pulling(false);
        let client = async_nats::connect(nats.url()).await.unwrap();
        probes.connected(&client);
        assert_eq!(status(addr, "/readyz").await, UNAVAILABLE);
        probes.set_pulling(true);
        assert_eq!(status(addr, "/readyz").await, "HTTP/1.1 200 OK");
        // NATS goes away: not ready, still alive.
        drop(nats);
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        while probes.is_ready() {
            assert!(
                tokio::time::Instant::now() < until,
                "still ready without NATS"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(status(addr, "/readyz").await, UNAVAILABLE);
        assert_eq!(status(addr, "/healthz").await, "HTTP/1.1 200 OK");

        shutdown.cancel();
        server.await.unwrap();
    }
}
