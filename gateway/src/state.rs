//! The shared state of a running gateway: what every handler can reach (configuration, NATS,
//! authentication, quotas, and the web app's sessions and login settings).

use std::{ops::Deref, sync::Arc, time::Duration};

use axum::extract::FromRef;
use cola_wire::{energy_store::EnergyStore, nats::Topology};
use openidconnect::url::Url;
use tokio_util::sync::CancellationToken;
use tower_sessions::{
    Expiry, SessionManagerLayer,
    cookie::{SameSite, time::Duration as CookieDuration},
};

use crate::{
    GatewayConfig, auth::Authenticators, events::JobEvents, extract::BodyLimit, oidc,
    prelogin::PreLoginCookies, public_site::PublicSite, session::NatsSessionStore,
    streams::LiveStreams,
};

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub config: GatewayConfig,
    pub client: async_nats::Client,
    pub topology: Topology,
    /// The nodes' energy readings.
    pub energy: EnergyStore,
    pub events: JobEvents,
    pub auth: Authenticators,
    /// Cancelled when the gateway stops: long waits and live streams end at once.
    pub shutdown: CancellationToken,
    /// The browser side: sessions, login.
    pub web: WebSettings,
    /// API tokens already checked (a token revoked here is forgotten at once).
    pub token_cache: crate::auth::TokenCache,
    /// Per-user quotas on submissions.
    pub quotas: crate::quota::Quotas,
    /// What `/metrics` reports.
    pub metrics: crate::metrics::GatewayMetrics,
}

/// How the web app logs people in and keeps their sessions.
pub struct WebSettings {
    /// Where people reach the gateway (the redirect URI is under it).
    pub public_url: Url,
    /// Whether the session cookie is `Secure` (all but plain HTTP on loopback).
    pub secure_cookies: bool,
    /// The names and origin the pages answer to (`public_url`'s).
    pub site: PublicSite,
    /// Whether "continue as local developer" is offered (dev mode, on loopback, under a
    /// loopback name).
    pub dev_login: bool,
    pub oidc: Option<Arc<oidc::Provider>>,
    pub sessions: NatsSessionStore,
    /// The signed cookie that carries a login until it is done.
    pub prelogin: PreLoginCookies,
    /// The live streams open per session, ended with it.
    pub live: LiveStreams,
    /// A session ends after this long without a request.
    pub session_idle: Duration,
}

/// The session cookie's name. `__Host-` makes browsers insist on `Secure`, `Path=/` and no
/// `Domain`; on plain-HTTP loopback a cookie cannot be `Secure`, so the prefix is left out.
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-cola_session"
    } else {
        "cola_session"
    }
}

impl WebSettings {
    /// The session layer of the page routes.
    pub fn session_layer(&self) -> SessionManagerLayer<NatsSessionStore> {
        let idle =
            CookieDuration::seconds(i64::try_from(self.session_idle.as_secs()).unwrap_or(i64::MAX));
        SessionManagerLayer::new(self.sessions.clone())
            .with_name(session_cookie_name(self.secure_cookies))
            .with_http_only(true)
            .with_same_site(SameSite::Lax)
            .with_secure(self.secure_cookies)
            .with_path("/")
            .with_expiry(Expiry::OnInactivity(idle))
            // Every request moves the idle expiry on.
            .with_always_save(true)
    }
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
