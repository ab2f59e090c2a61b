//! The cola gateway: the HTTP edge of the service.
//!
//! It authenticates callers, turns a submission into a job (a record in the KV bucket
//! `cola-jobs`, then a message on the stream `COLA`), shows a caller their own jobs, holds
//! answers until a job ends (`?wait`), asks for cancellation and streams output zips from the
//! object store. It never changes a job's state after creating it (it only sets
//! `cancel_requested`, by compare-and-set) and never touches a backend: that is the
//! middleware's job.
//!
//! Code map:
//! - [`config`]: [`GatewayConfig`] and its checks.
//! - [`connection`]: the NATS connection and its reconnect signal.
//! - [`error`]: [`GatewayError`], the one error type, and its JSON answers.
//! - [`auth`]: the [`auth::Authenticated`] extractor over pluggable authenticators (bearer
//!   tokens now; browser sessions slot in as another authenticator).
//! - [`tokens`]: API tokens in the `cola-tokens` bucket (only their hashes are stored).
//! - [`extract`]: request extractors that answer malformed input with JSON errors.
//! - [`submit`]: the submission body and its validation (no I/O).
//! - [`queue`]: record → input zip → message, with rollback.
//! - [`jobs`], [`languages`], [`health`]: the handlers.
//! - [`listing`]: one user's job ids, read without scanning other users' keys.
//! - [`events`]: the one KV watch per process and its in-memory fan-out per user.
//! - [`wait`]: `?wait=N` on top of [`events`].
//! - [`view`]: what the API shows of a job.
//! - [`app`]: shared state and the router.

pub mod app;
pub mod auth;
pub mod config;
pub mod connection;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod jobs;
pub mod languages;
pub mod listing;
pub mod queue;
pub mod submit;
pub mod tokens;
pub mod view;
pub mod wait;

use std::sync::Arc;

use cola_wire::nats::Topology;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use auth::Authenticated;
pub use config::GatewayConfig;
pub use error::GatewayError;

use crate::{
    app::{AppState, Shared},
    auth::{Authenticators, BearerTokens},
};

/// Runs the gateway on `config.listen` until `shutdown` is cancelled.
pub async fn run(config: GatewayConfig, shutdown: CancellationToken) -> Result<(), GatewayError> {
    config.validate()?;
    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| GatewayError::Listen {
                addr: config.listen.to_string(),
                source,
            })?;
    serve(listener, config, shutdown).await
}

/// Runs the gateway on an already bound `listener` until `shutdown` is cancelled; requests in
/// flight are finished (a `?wait` answers at once with the job as it is).
pub async fn serve(
    listener: TcpListener,
    config: GatewayConfig,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    config.validate()?;
    let (client, reconnects) = connection::connect(&config.nats_url).await?;
    let js = async_nats::jetstream::new(client.clone());
    let topology = Topology::open(&js)
        .await
        .map_err(GatewayError::MissingTopology)?;

    // Stopping the gateway stops the watch; the watch never stops the gateway.
    let stopping = shutdown.child_token();
    let (events, watch) =
        events::start_watch(topology.jobs.kv.clone(), reconnects, stopping.clone()).await?;
    let auth = Authenticators::new(vec![Arc::new(BearerTokens::new(topology.tokens.clone()))]);
    let state = AppState::new(Shared {
        config,
        client,
        topology,
        events,
        auth,
        shutdown: stopping.clone(),
    });

    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    tracing::info!(%addr, "gateway listening");
    let served = axum::serve(listener, app::router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    stopping.cancel();
    if let Err(error) = watch.await {
        tracing::error!(%error, "job watch task failed");
    }
    tracing::info!(%addr, "gateway stopped");
    served.map_err(GatewayError::Serve)
}
