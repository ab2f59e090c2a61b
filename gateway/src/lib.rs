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
//! - [`auth`]: the [`auth::Authenticated`] extractor of the API over pluggable authenticators
//!   (bearer tokens; the session cookie is for pages only).
//! - [`tokens`]: API tokens in the `cola-tokens` bucket (only their hashes are stored).
//! - [`extract`]: request extractors that answer malformed input with JSON errors.
//! - [`submit`]: the submission body and its validation (no I/O).
//! - [`queue`]: record → input zip → message, with rollback.
//! - [`jobs`], [`languages`], [`numeric`], [`health`]: the handlers.
//! - [`openapi`]: the OpenAPI 3.1 document of the API, from the handlers' own attributes and
//!   types; [`api_docs`]: the page that shows it (`/api/docs`).
//! - [`metrics`]: the Prometheus metrics (`/metrics`) and the layer that counts requests.
//! - [`listing`]: one user's job ids, read without scanning other users' keys.
//! - [`events`]: the one KV watch per process and its in-memory fan-out per user.
//! - [`wait`]: `?wait=N` on top of [`events`].
//! - [`view`]: what the API shows of a job.
//! - [`app`]: shared state, the router, the security headers of every answer.
//! - [`session`]: browser sessions in the `cola-sessions` bucket, CSRF tokens.
//! - [`oidc`]: OpenID Connect login (Google by default).
//! - [`pages`]: the web app (HTML pages, live updates, the tokens page); [`assets`]: its
//!   CSS, script and icon, built in.

#![forbid(unsafe_code)]

pub mod api_docs;
pub mod app;
pub mod assets;
pub mod auth;
pub mod config;
pub mod connection;
pub mod energy;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod jobs;
pub mod languages;
pub mod listing;
pub mod metrics;
pub mod numeric;
pub mod oidc;
pub mod openapi;
pub mod pages;
pub mod prelogin;
pub mod public_site;
pub mod queue;
pub mod quota;
pub mod session;
pub mod state;
pub mod streams;
pub mod submit;
pub mod tokens;
pub mod view;
pub mod wait;

use std::{net::SocketAddr, sync::Arc};

use axum::Router;
use cola_wire::{energy_store::EnergyStore, names, nats::Topology};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

pub use auth::Authenticated;
pub use config::{GatewayConfig, OidcConfig, Secret};
pub use error::GatewayError;

use crate::{
    auth::{Authenticators, BearerTokens},
    prelogin::PreLoginCookies,
    public_site::PublicSite,
    session::NatsSessionStore,
    state::{AppState, Shared, WebSettings},
    streams::LiveStreams,
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
/// flight are finished (a `?wait` answers at once with the job as it is, live streams end).
pub async fn serve(
    listener: TcpListener,
    config: GatewayConfig,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    let local = listener
        .local_addr()
        .map_err(|source| GatewayError::Listen {
            addr: config.listen.to_string(),
            source,
        })?;
    let gateway = Gateway::start(config, local, &shutdown).await?;
    tracing::info!(addr = %local, public_url = %gateway.state.web.public_url, "gateway listening");
    let served = axum::serve(listener, gateway.router())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    gateway.stop().await;
    tracing::info!(addr = %local, "gateway stopped");
    served.map_err(GatewayError::Serve)
}

/// A started gateway: connected to NATS, watching job records, ready to route requests. Tests
/// drive its [`Gateway::router`] directly (`tower::ServiceExt::oneshot`).
pub struct Gateway {
    state: AppState,
    watch: JoinHandle<()>,
    tokens_watch: JoinHandle<()>,
}

impl Gateway {
    /// Checks `config`, connects to NATS, opens the stream and buckets and starts the job
    /// watch. `listen` is the address the router is served on (the developer login is offered
    /// only on loopback).
    pub async fn start(
        config: GatewayConfig,
        listen: SocketAddr,
        shutdown: &CancellationToken,
    ) -> Result<Self, GatewayError> {
        config.validate()?;
        let what = "connecting to NATS and opening cola's stream and buckets";
        let metrics = metrics::GatewayMetrics::default();
        let (client, reconnects, topology, energy) =
            cola_wire::nats_connect::patiently(what, config.start_patience, || async {
                let (client, reconnects) =
                    connection::connect(&config.nats_url, &metrics.nats).await?;
                let js = async_nats::jetstream::new(client.clone());
                let topology = Topology::open(&js)
                    .await
                    .map_err(GatewayError::MissingTopology)?;
                let energy = EnergyStore::open(&js)
                    .await
                    .map_err(GatewayError::MissingTopology)?;
                Ok::<_, GatewayError>((client, reconnects, topology, energy))
            })
            .await?;
        let js = async_nats::jetstream::new(client.clone());
        let sessions = js
            .get_key_value(names::SESSIONS_BUCKET)
            .await
            .map_err(|e| {
                GatewayError::MissingTopology(cola_wire::nats::NatsError::nats(
                    "open bucket cola-sessions",
                    e,
                ))
            })?;
        let web = web_settings(&config, listen, NatsSessionStore::new(sessions)).await?;

        // Stopping the gateway stops the watch; the watch never stops the gateway.
        let stopping = shutdown.child_token();
        let token_cache = auth::TokenCache::default();
        let tokens_watch = tokio::spawn(auth::watch_tokens(
            topology.tokens.clone(),
            token_cache.clone(),
            reconnects.clone(),
            stopping.clone(),
        ));
        let (events, watch) =
            events::start_watch(topology.jobs.kv.clone(), reconnects, stopping.clone()).await?;
        let auth = Authenticators::new(vec![Arc::new(BearerTokens::new(
            topology.tokens.clone(),
            token_cache.clone(),
        ))]);
        let quotas = config.quotas;
        let retention = outputs_retention(&topology).await;
        let state = AppState::new(Shared {
            config,
            client,
            topology,
            energy,
            events,
            auth,
            shutdown: stopping,
            web,
            token_cache,
            quotas: crate::quota::Quotas::new(quotas, retention),
            metrics,
        });
        Ok(Self {
            state,
            watch,
            tokens_watch,
        })
    }

    /// Every route, ready to serve.
    pub fn router(&self) -> Router {
        app::router(self.state.clone())
    }

    /// The shared state (for tests).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops the job and token watches and waits for them.
    pub async fn stop(self) {
        self.state.shutdown.cancel();
        if let Err(error) = self.watch.await {
            tracing::error!(%error, "job watch task failed");
        }
        if let Err(error) = self.tokens_watch.await {
            tracing::error!(%error, "token watch task failed");
        }
    }
}

/// How long outputs are kept (the object store's max age); a week when it cannot be read.
async fn outputs_retention(topology: &Topology) -> std::time::Duration {
    const WEEK: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
    let stream = format!("OBJ_{}", cola_wire::names::OUTPUTS_BUCKET);
    match topology.js.get_stream(stream).await {
        Ok(stream) if !stream.cached_info().config.max_age.is_zero() => {
            stream.cached_info().config.max_age
        }
        Ok(_) => WEEK,
        Err(error) => {
            tracing::warn!(%error, "cannot read the outputs' retention; taking a week");
            WEEK
        }
    }
}

async fn web_settings(
    config: &GatewayConfig,
    listen: SocketAddr,
    sessions: NatsSessionStore,
) -> Result<WebSettings, GatewayError> {
    let public_url = config.public_url(listen);
    let oidc = match &config.oidc {
        Some(oidc) => {
            if !oidc.is_restricted() {
                tracing::warn!(
                    issuer = %oidc.issuer,
                    "no COLA_ALLOWED_DOMAINS or COLA_ALLOWED_EMAILS: anybody with an account at \
                     the identity provider can log in"
                );
            }
            let provider = oidc::Provider::new(oidc.clone(), &public_url)
                .map_err(|e| GatewayError::Config(e.to_string()))?;
            tracing::info!(issuer = %oidc.issuer, redirect_uri = provider.redirect_uri(), "browser login enabled");
            Some(Arc::new(provider))
        }
        None => None,
    };
    let site = PublicSite::new(&public_url);
    let dev_login = config.dev_login_allowed(listen) && site.is_loopback_only();
    if config.dev && !dev_login {
        tracing::warn!(
            %listen,
            %public_url,
            "dev login refused: it needs a loopback address and a public URL on localhost, \
             127.0.0.1 or [::1]"
        );
    }
    let max_age = sessions
        .max_age()
        .await
        .map_err(|e| GatewayError::backend("read the cola-sessions bucket", e.to_string()))?;
    let mut session_idle = config.session_idle;
    if !max_age.is_zero() && session_idle > max_age {
        tracing::warn!(
            ?session_idle,
            ?max_age,
            "sessions cannot outlive the cola-sessions bucket's max age: using it as idle expiry"
        );
        session_idle = max_age;
    }
    let secure_cookies = config::cookie_must_be_secure(&public_url);
    Ok(WebSettings {
        secure_cookies,
        public_url,
        site,
        dev_login,
        prelogin: PreLoginCookies::new(
            secure_cookies,
            config.oidc.as_ref().map(|o| &o.client_secret),
        ),
        oidc,
        sessions,
        session_idle,
        live: LiveStreams::default(),
    })
}
