//! The shared state of a running gateway and the router that maps paths to handlers.

use std::{ops::Deref, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{DefaultBodyLimit, FromRef, Request},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use cola_wire::nats::Topology;
use openidconnect::url::Url;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;
use tower_sessions::{
    Expiry, SessionManagerLayer,
    cookie::{SameSite, time::Duration as CookieDuration},
};

use crate::{
    GatewayConfig, GatewayError, assets,
    auth::Authenticators,
    events::JobEvents,
    extract::BodyLimit,
    health, jobs, languages, numeric, oidc, pages,
    pages::{live::LiveStreams, prelogin::PreLoginCookies, site::PublicSite},
    session::NatsSessionStore,
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
    /// Cancelled when the gateway stops: long waits and live streams end at once.
    pub shutdown: CancellationToken,
    /// The browser side: sessions, login.
    pub web: WebSettings,
    /// API tokens already checked (a token revoked here is forgotten at once).
    pub token_cache: crate::auth::TokenCache,
    /// Per-user quotas on submissions.
    pub quotas: crate::quota::Quotas,
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

/// Every route of the gateway, with the body limit, security headers and request tracing
/// around them.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/static/{file}", get(assets::serve))
        .merge(api_routes())
        .merge(pages::routes(&state))
        .fallback(not_found)
        .method_not_allowed_fallback(|| async { GatewayError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::map_response(security_headers))
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

/// The JSON API under `/api/v1` (bearer tokens only; the pages are merged next to it).
fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/languages", get(languages::list))
        .route("/api/v1/numeric/methods", get(numeric::methods))
        .route("/api/v1/jobs", get(jobs::list).post(jobs::create))
        .route("/api/v1/jobs/{id}", get(jobs::show).delete(jobs::cancel))
        .route("/api/v1/jobs/{id}/output.zip", get(jobs::output_zip))
}
