//! Logging in and out: `/login`, `/auth/login` (off to the identity provider),
//! `/auth/callback` (back from it), `/auth/dev` (the local developer, dev mode on loopback
//! only), `/logout`.
//!
//! Nobody is stored before they are logged in: the developer form's CSRF token and the login
//! on its way to the provider live in the browser's pre-login cookie ([`crate::prelogin`]).
//! A session is made at the login, with a new id (a session that was already logged in gets a
//! new id too), so an id planted before the login is worthless after it. The `state` sent to
//! the provider is checked (in constant time) against the pre-login's, single use and for
//! [`PENDING_LOGIN_TTL`]; a callback without it changes nothing, so a link from elsewhere
//! cannot log anybody out. The PKCE verifier and the `nonce` make a stolen code or token
//! useless to anybody else. Logging out is a form (`POST`, CSRF token); it ends the session's
//! live streams too.

use askama::Template;
use axum::{
    Extension,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use cola_wire::UserId;
use serde::Deserialize;
use tower_sessions::Session;

use crate::{
    oidc::{OidcError, PENDING_LOGIN_TTL, PendingLogin},
    pages::{
        Chrome, PageError, PageForm, SignedIn, check_csrf, encode_query, error_page, local_path,
        render, see_other,
    },
    session::{self, CSRF_KEY, LOGIN_KEY, Login, constant_time_eq},
    state::AppState,
};

/// The user of the local developer login.
pub const DEV_USER: &str = "dev";

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub chrome: Chrome,
    pub next: String,
    pub provider: Option<String>,
    pub provider_href: String,
    pub dev: bool,
    pub message: Option<&'static str>,
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    bye: Option<String>,
}

/// The same path on the public URL, when the request came in under another host name: the
/// session cookie must be set on the host the provider sends people back to.
fn on_public_host(app: &AppState, headers: &HeaderMap, uri: &Uri) -> Option<Response> {
    app.web.oidc.as_ref()?;
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let public = &app.web.public_url;
    let expected = match (public.host_str(), public.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => return None,
    };
    if host.eq_ignore_ascii_case(&expected) {
        return None;
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let target = public.join(path).ok()?;
    Some(see_other(target.as_str()))
}

/// `GET /login`: the ways to log in offered here.
pub async fn login_page(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Query(query): Query<LoginQuery>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    if let Some(redirect) = on_public_host(&app, &headers, &uri) {
        return Ok(redirect);
    }
    let next = local_path(query.next.as_deref());
    if session.get::<Login>(LOGIN_KEY).await?.is_some() {
        return Ok(see_other(&next));
    }
    let dev = app.web.dev_login;
    // Only the developer login is a form: its CSRF token lives in the pre-login cookie.
    let prelogin = dev.then(|| app.web.prelogin.read(&headers).unwrap_or_default());
    let page = LoginPage {
        chrome: Chrome::anonymous(
            prelogin
                .as_ref()
                .map(|p| p.csrf.clone())
                .unwrap_or_default(),
        ),
        provider_href: format!("/auth/login?next={}", encode_query(&next)),
        next,
        provider: app.web.oidc.as_ref().map(|p| p.display_name()),
        dev,
        message: query.bye.is_some().then_some("You are logged out."),
    };
    let mut response = render(&page)?;
    if let Some(prelogin) = prelogin {
        with_cookie(&mut response, app.web.prelogin.set(&prelogin));
    }
    Ok(response)
}

fn with_cookie(response: &mut Response, set_cookie: HeaderValue) {
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie);
}

/// `GET /auth/login`: off to the identity provider.
pub async fn start(
    State(app): State<AppState>,
    Query(query): Query<LoginQuery>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    let Some(provider) = app.web.oidc.clone() else {
        return Err(PageError::NotFound("no identity provider is configured"));
    };
    if let Some(redirect) = on_public_host(&app, &headers, &uri) {
        return Ok(redirect);
    }
    let next = local_path(query.next.as_deref());
    let (url, pending) = provider.begin(next).await.map_err(|error| {
        PageError::Upstream(format!(
            "The identity provider cannot be reached just now ({error}). Try again in a moment."
        ))
    })?;
    let mut prelogin = app.web.prelogin.read(&headers).unwrap_or_default();
    prelogin.pending = Some(pending);
    let mut response = see_other(url.as_str());
    with_cookie(&mut response, app.web.prelogin.set(&prelogin));
    Ok(response)
}

#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /auth/callback`: back from the identity provider. Without the pre-login's `state`
/// nothing changes (whoever is logged in stays so); with it, the pre-login is used up whatever
/// comes next.
pub async fn callback(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Query(query): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let Some(provider) = app.web.oidc.clone() else {
        return Err(PageError::NotFound("no identity provider is configured"));
    };
    let pending = app.web.prelogin.read(&headers).and_then(|p| p.pending);
    let now = chrono::Utc::now().timestamp();
    let valid = match (&pending, &query.state) {
        (Some(pending), Some(state)) => {
            constant_time_eq(pending.state.as_bytes(), state.as_bytes())
                && now.saturating_sub(pending.started) <= PENDING_LOGIN_TTL.as_secs() as i64
        }
        _ => false,
    };
    let Some(pending) = pending.filter(|_| valid) else {
        tracing::warn!("login callback refused: unknown, used or expired state");
        return Ok(login_failed(
            StatusCode::BAD_REQUEST,
            "This login is not valid any more: it expired, was already used, or was started in \
             another browser. Log in again.",
        ));
    };
    let mut response = match complete_login(&app, &provider, &session, &pending, query).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    with_cookie(&mut response, app.web.prelogin.clear());
    Ok(response)
}

/// The rest of a callback whose `state` was the pre-login's: the provider's answer, the code
/// exchange, the ID token, the allow-lists, and the login.
async fn complete_login(
    app: &AppState,
    provider: &crate::oidc::Provider,
    session: &Session,
    pending: &PendingLogin,
    query: CallbackQuery,
) -> Result<Response, PageError> {
    if let Some(error) = query.error {
        let detail = query.error_description.unwrap_or(error);
        tracing::info!(detail, "the identity provider ended the login");
        return Ok(login_failed(
            StatusCode::FORBIDDEN,
            &format!("The identity provider did not log you in: {detail}"),
        ));
    }
    let Some(code) = query.code.filter(|c| !c.is_empty()) else {
        return Ok(login_failed(
            StatusCode::BAD_REQUEST,
            "The identity provider sent no authorization code. Log in again.",
        ));
    };
    let identity = match provider.finish(pending, code).await {
        Ok(identity) => identity,
        Err(OidcError::NotAllowed(who)) => {
            tracing::info!(who, "login refused by the allow-lists");
            return Ok(login_failed(
                StatusCode::FORBIDDEN,
                &format!(
                    "{who} may not use this service. Ask its administrator to add your address \
                     or domain, or log in with another account."
                ),
            ));
        }
        Err(error @ (OidcError::Provider(_) | OidcError::Exchange(_))) => {
            tracing::warn!(%error, "login failed at the identity provider");
            return Ok(login_failed(
                StatusCode::BAD_GATEWAY,
                "The identity provider could not complete the login. Try again in a moment.",
            ));
        }
        Err(error) => {
            tracing::warn!(%error, "login refused: the ID token did not verify");
            return Ok(login_failed(
                StatusCode::BAD_REQUEST,
                "The identity provider's answer could not be verified. Log in again.",
            ));
        }
    };
    let login = Login {
        user: identity.user,
        email: identity.email,
        name: identity.name,
        method: "oidc".into(),
        at: chrono::Utc::now().timestamp(),
    };
    let user = login.user.clone();
    log_in(app, session, login).await?;
    tracing::info!(%user, "logged in");
    Ok(see_other(&local_path(Some(&pending.next))))
}

/// The login in a session of its own: a session that was already logged in gets a new id
/// (and its live streams end), one that was not is made now. Stored before the answer, so that
/// a store that refuses it (full, or unreachable) is a clear `503`, not a session-less login.
async fn log_in(app: &AppState, session: &Session, login: Login) -> Result<(), PageError> {
    // Reading the session drops an id the store does not know.
    session.get_value(LOGIN_KEY).await?;
    if let Some(previous) = session.id() {
        app.web.live.close(&previous);
        session.cycle_id().await?;
    }
    session.insert(LOGIN_KEY, &login).await?;
    session.insert(CSRF_KEY, session::random_token()).await?;
    session.save().await.map_err(|error| {
        tracing::error!(%error, "login refused: the session store did not take the session");
        PageError::Unavailable(
            "The service cannot keep more sessions just now, so it cannot log you in. Try \
             again in a few minutes.",
        )
    })
}

fn login_failed(status: StatusCode, message: &str) -> Response {
    error_page(status, "Login failed", message.to_owned(), true)
}

#[derive(Debug, Deserialize)]
pub struct DevForm {
    csrf: Option<String>,
    next: Option<String>,
}

/// `POST /auth/dev`: "continue as local developer" (user `dev`); dev mode on loopback only,
/// with the CSRF token of the pre-login cookie.
pub async fn dev_login(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    PageForm(form): PageForm<DevForm>,
) -> Result<Response, PageError> {
    if !app.web.dev_login {
        return Err(PageError::Forbidden(
            "The local developer login is only offered when cola runs in dev mode on a loopback \
             address."
                .into(),
        ));
    }
    let expected = app.web.prelogin.read(&headers).map(|p| p.csrf);
    let matches = match (expected, form.csrf.as_deref()) {
        (Some(expected), Some(sent)) => constant_time_eq(expected.as_bytes(), sent.as_bytes()),
        _ => false,
    };
    if !matches {
        tracing::warn!("developer login refused: missing or wrong CSRF token");
        return Err(PageError::Csrf);
    }
    let login = Login {
        user: UserId::parse(DEV_USER).expect("a valid user id"),
        email: None,
        name: Some("Local developer".into()),
        method: "dev".into(),
        at: chrono::Utc::now().timestamp(),
    };
    log_in(&app, &session, login).await?;
    tracing::info!(user = DEV_USER, "logged in as the local developer");
    let mut response = see_other(&local_path(form.next.as_deref()));
    with_cookie(&mut response, app.web.prelogin.clear());
    Ok(response)
}

#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage {
    pub chrome: Chrome,
}

/// `GET /logout`: a page with the logout button (logging out is a form, like every change).
pub async fn logout_page(signed: SignedIn) -> Result<Response, PageError> {
    render(&LogoutPage {
        chrome: Chrome::for_user(&signed),
    })
}

#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    csrf: Option<String>,
}

/// `POST /logout`: ends the session (removed from the store, cookie cleared) and its live
/// streams.
pub async fn logout(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    PageForm(form): PageForm<LogoutForm>,
) -> Result<Response, PageError> {
    if session.get::<Login>(LOGIN_KEY).await?.is_none() {
        return Ok(see_other("/login"));
    }
    check_csrf(&session, form.csrf.as_deref()).await?;
    let id = session.id();
    session.flush().await?;
    if let Some(id) = id {
        app.web.live.close(&id);
    }
    tracing::info!("logged out");
    Ok(see_other("/login?bye=1"))
}
