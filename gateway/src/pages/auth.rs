//! Logging in and out: `/login`, `/auth/login` (off to the identity provider),
//! `/auth/callback` (back from it), `/auth/dev` (the local developer, dev mode on loopback
//! only), `/logout`.
//!
//! The session id is cycled at every login, so an id planted before the login is worthless
//! after it. The `state` sent to the provider is checked (in constant time) against the one
//! kept in the session, single use and for [`PENDING_LOGIN_TTL`]; the PKCE verifier and the
//! `nonce` make a stolen code or token useless to anybody else.

use askama::Template;
use axum::{
    Extension,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use cola_wire::UserId;
use serde::Deserialize;
use tower_sessions::Session;

use crate::{
    app::AppState,
    oidc::{OidcError, PENDING_LOGIN_TTL, PendingLogin},
    pages::{
        Chrome, PageError, PageForm, SignedIn, check_csrf, encode_query, error_page, local_path,
        render, see_other,
    },
    session::{self, CSRF_KEY, LOGIN_KEY, Login, PENDING_KEY, constant_time_eq},
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
    // Only the developer login is a form: it needs the CSRF token (and so a session).
    let csrf = if dev {
        session::csrf_token(&session).await?
    } else {
        String::new()
    };
    let page = LoginPage {
        chrome: Chrome::anonymous(csrf),
        provider_href: format!("/auth/login?next={}", encode_query(&next)),
        next,
        provider: app.web.oidc.as_ref().map(|p| p.display_name()),
        dev,
        message: query.bye.is_some().then_some("You are logged out."),
    };
    render(&page)
}

/// `GET /auth/login`: off to the identity provider.
pub async fn start(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
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
    session.insert(PENDING_KEY, &pending).await?;
    Ok(see_other(url.as_str()))
}

#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /auth/callback`: back from the identity provider.
pub async fn callback(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, PageError> {
    let Some(provider) = app.web.oidc.clone() else {
        return Err(PageError::NotFound("no identity provider is configured"));
    };
    let pending: Option<PendingLogin> = session.remove(PENDING_KEY).await?;
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
        // Whatever this session held, it is not logged in by this request.
        session.flush().await?;
        return Ok(login_failed(
            StatusCode::BAD_REQUEST,
            "This login is not valid any more: it expired, was already used, or was started in \
             another browser. Log in again.",
        ));
    };
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
    let identity = match provider.finish(&pending, code).await {
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
        at: now,
    };
    tracing::info!(user = %login.user, "logged in");
    log_in(&session, login).await?;
    Ok(see_other(&local_path(Some(&pending.next))))
}

/// A new session id, the login, a new CSRF token.
async fn log_in(session: &Session, login: Login) -> Result<(), PageError> {
    session.cycle_id().await?;
    session.remove_value(PENDING_KEY).await?;
    session.insert(LOGIN_KEY, &login).await?;
    session.insert(CSRF_KEY, session::random_token()).await?;
    Ok(())
}

fn login_failed(status: StatusCode, message: &str) -> Response {
    error_page(status, "Login failed", message.to_owned(), true)
}

#[derive(Debug, Deserialize)]
pub struct DevForm {
    csrf: Option<String>,
    next: Option<String>,
}

/// `POST /auth/dev`: "continue as local developer" (user `dev`); dev mode on loopback only.
pub async fn dev_login(
    State(app): State<AppState>,
    Extension(session): Extension<Session>,
    PageForm(form): PageForm<DevForm>,
) -> Result<Response, PageError> {
    if !app.web.dev_login {
        return Err(PageError::Forbidden(
            "The local developer login is only offered when cola runs in dev mode on a loopback \
             address."
                .into(),
        ));
    }
    check_csrf(&session, form.csrf.as_deref()).await?;
    let login = Login {
        user: UserId::parse(DEV_USER).expect("a valid user id"),
        email: None,
        name: Some("Local developer".into()),
        method: "dev".into(),
        at: chrono::Utc::now().timestamp(),
    };
    log_in(&session, login).await?;
    tracing::info!(user = DEV_USER, "logged in as the local developer");
    Ok(see_other(&local_path(form.next.as_deref())))
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

/// `POST /logout`: ends the session (removed from the store, cookie cleared).
pub async fn logout(
    Extension(session): Extension<Session>,
    PageForm(form): PageForm<LogoutForm>,
) -> Result<Response, PageError> {
    if session.get::<Login>(LOGIN_KEY).await?.is_none() {
        return Ok(see_other("/login"));
    }
    check_csrf(&session, form.csrf.as_deref()).await?;
    session.flush().await?;
    tracing::info!("logged out");
    Ok((see_other("/login?bye=1")).into_response())
}
