//! The web app: HTML pages for people with a browser session (askama templates from
//! `web/templates`, assets from `web/static`).
//!
//! - [`auth`]: the login page, OIDC login and callback, the local developer login, logout;
//!   [`prelogin`]: the signed cookie that carries a login until it is done (nothing anonymous
//!   is stored).
//! - [`site`]: the `Host` and `Origin` checks in front of every page (DNS rebinding).
//! - [`jobs`]: the job list with the submit form, a job's page, cancel, the zip download;
//!   [`files`]: one file of the zip, shown or downloaded alone.
//! - [`form`]: the submit form: multipart parsing, validation errors next to their fields;
//!   [`numeric_form`]: its numeric mode (a method and its parameters).
//! - [`live`]: `/events`, Server-Sent Events of the user's job changes.
//! - [`tokens`]: the personal API tokens page.
//! - [`energy`]: the nodes' energy readings and a chart of the last hours.
//! - [`view`]: what the templates show.
//!
//! Pages authenticate with the session cookie only and the JSON API with bearer tokens only:
//! a cookie never authorizes an API call, so the API needs no CSRF defence. Every
//! state-changing form carries the session's CSRF token, and comes from this site's origin.

pub mod auth;
pub mod energy;
pub mod files;
pub mod form;
pub mod jobs;
pub mod live;
pub mod numeric_form;
pub mod site;
pub mod tokens;
pub mod view;

use askama::Template;
use axum::{
    Router,
    extract::{FromRequest, FromRequestParts, Request},
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::de::DeserializeOwned;
use tower_sessions::Session;

use crate::{
    GatewayError, assets,
    session::{self, LOGIN_KEY, Login},
    state::AppState,
};

/// Every page route, with the session layer around them and the host check around that (a
/// request for another name never reaches a session).
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(jobs::index))
        .route("/jobs", post(jobs::submit))
        .route("/jobs/{id}", get(jobs::show))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .route("/jobs/{id}/output.zip", get(jobs::output_zip))
        .route("/jobs/{id}/plot.svg", get(jobs::plot_svg))
        .route("/jobs/{id}/files/{*name}", get(files::show))
        .route("/jobs/{id}/download/{*name}", get(files::download))
        .route("/events", get(live::events))
        .route("/tokens", get(tokens::page).post(tokens::create))
        .route("/energy", get(energy::page))
        .route("/tokens/revoke", post(tokens::revoke))
        .route("/login", get(auth::login_page))
        .route("/auth/login", get(auth::start))
        .route("/auth/callback", get(auth::callback))
        .route("/auth/dev", post(auth::dev_login))
        .route("/logout", get(auth::logout_page).post(auth::logout))
        .layer(axum::middleware::map_response(no_store))
        .layer(state.web.session_layer())
        .layer(axum::middleware::from_fn_with_state(
            state.web.site.clone(),
            site::check,
        ))
}

/// Personal pages must not be kept by caches.
async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// What every page shows around its content: who is logged in, the logout form's CSRF token.
pub struct Chrome {
    pub user: Option<UserChrome>,
    pub csrf: String,
    /// Cache-busting version of the static assets.
    pub v: &'static str,
}

pub struct UserChrome {
    pub label: String,
    pub email: Option<String>,
    pub dev: bool,
}

impl Chrome {
    pub fn anonymous(csrf: String) -> Self {
        Self {
            user: None,
            csrf,
            v: assets::version(),
        }
    }

    pub fn for_user(signed: &SignedIn) -> Self {
        let login = &signed.login;
        let label = login.label();
        Self {
            user: Some(UserChrome {
                email: login.email.clone().filter(|e| *e != label),
                label,
                dev: login.method == "dev",
            }),
            csrf: signed.csrf.clone(),
            v: assets::version(),
        }
    }
}

/// A page request that can fail in a way a person can act on.
#[derive(Debug)]
pub enum PageError {
    /// Nobody is logged in: go to the login page, then back to `next`.
    LoginRequired {
        next: String,
    },
    /// A form without the session's CSRF token.
    Csrf,
    NotFound(&'static str),
    BadRequest(String),
    Forbidden(String),
    /// The identity provider failed (502).
    Upstream(String),
    /// Something the page needs is out of room or out of reach just now (503).
    Unavailable(&'static str),
    Gateway(GatewayError),
    Internal(String),
}

impl From<GatewayError> for PageError {
    fn from(error: GatewayError) -> Self {
        match error {
            GatewayError::NotFound(what) => Self::NotFound(what),
            other => Self::Gateway(other),
        }
    }
}

impl From<tower_sessions::session::Error> for PageError {
    fn from(error: tower_sessions::session::Error) -> Self {
        Self::Internal(format!("session store: {error}"))
    }
}

impl From<tower_sessions::session_store::Error> for PageError {
    fn from(error: tower_sessions::session_store::Error) -> Self {
        Self::Internal(format!("session store: {error}"))
    }
}

impl From<askama::Error> for PageError {
    fn from(error: askama::Error) -> Self {
        Self::Internal(format!("template: {error}"))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    status: u16,
    title: String,
    message: String,
    login_link: bool,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message, login_link) = match self {
            Self::LoginRequired { next } => {
                return Redirect::to(&format!("/login?next={}", encode_query(&next)))
                    .into_response();
            }
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form was not sent by this session (it may be old, or come from another \
                 site). Go back, reload the page and send it again."
                    .to_owned(),
                false,
            ),
            Self::NotFound(what) => (
                StatusCode::NOT_FOUND,
                "Not found",
                format!("Nothing here: {what}. It may have expired, or belong to someone else."),
                false,
            ),
            Self::BadRequest(message) => (StatusCode::BAD_REQUEST, "Bad request", message, false),
            Self::Forbidden(message) => (StatusCode::FORBIDDEN, "Not allowed", message, true),
            Self::Upstream(message) => {
                (StatusCode::BAD_GATEWAY, "Login unavailable", message, true)
            }
            Self::Unavailable(message) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Not available just now",
                message.to_owned(),
                false,
            ),
            Self::Gateway(error) => {
                let status = error.status();
                if status.is_server_error() {
                    tracing::error!(%error, source = ?std::error::Error::source(&error), "page failed");
                    (
                        status,
                        "Something went wrong",
                        "The service could not answer just now. Try again in a moment.".into(),
                        false,
                    )
                } else {
                    (status, "Cannot do that", error.to_string(), false)
                }
            }
            Self::Internal(detail) => {
                tracing::error!(detail, "page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The service could not answer just now. Try again in a moment.".into(),
                    false,
                )
            }
        };
        error_page(status, title, message, login_link)
    }
}

/// An HTML error page with `status`.
pub fn error_page(status: StatusCode, title: &str, message: String, login_link: bool) -> Response {
    let page = ErrorPage {
        chrome: Chrome::anonymous(String::new()),
        status: status.as_u16(),
        title: title.to_owned(),
        message,
        login_link,
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "error page failed to render");
            (status, title.to_owned()).into_response()
        }
    }
}

/// Renders `page` as a `200`.
pub fn render(page: &impl Template) -> Result<Response, PageError> {
    Ok(Html(page.render()?).into_response())
}

/// The session the session layer put on the request.
pub fn session_of(parts: &Parts) -> Result<Session, PageError> {
    parts
        .extensions
        .get::<Session>()
        .cloned()
        .ok_or_else(|| PageError::Internal("no session layer on a page route".into()))
}

/// A logged-in person, with their session and its CSRF token. Extracting it sends everybody
/// else to the login page (and back here afterwards, for a `GET`).
pub struct SignedIn {
    pub login: Login,
    pub session: Session,
    pub csrf: String,
}

impl SignedIn {
    /// Answers `403` unless `submitted` is this session's CSRF token.
    pub async fn check_csrf(&self, submitted: Option<&str>) -> Result<(), PageError> {
        check_csrf(&self.session, submitted).await
    }
}

/// Answers `403` unless `submitted` is `session`'s CSRF token.
pub async fn check_csrf(session: &Session, submitted: Option<&str>) -> Result<(), PageError> {
    if session::csrf_matches(session, submitted).await? {
        Ok(())
    } else {
        tracing::warn!("form refused: missing or wrong CSRF token");
        Err(PageError::Csrf)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, PageError> {
        let session = session_of(parts)?;
        let Some(login) = session.get::<Login>(LOGIN_KEY).await? else {
            let next = if parts.method == axum::http::Method::GET {
                parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(|| "/".into())
            } else {
                "/".into()
            };
            return Err(PageError::LoginRequired { next });
        };
        tracing::Span::current().record("user", tracing::field::display(&login.user));
        let csrf = session::csrf_token(&session).await?;
        Ok(Self {
            login,
            session,
            csrf,
        })
    }
}

/// The `{id}` of a job page; anything that is not a job id is a `404` page.
pub struct PageJobId(pub cola_wire::JobId);

impl<S: Send + Sync> FromRequestParts<S> for PageJobId {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PageError> {
        crate::extract::JobIdParam::from_request_parts(parts, state)
            .await
            .map(|crate::extract::JobIdParam(id)| Self(id))
            .map_err(|_| PageError::NotFound("no such job"))
    }
}

/// A URL-encoded form body; a body that is not one is a `400` page.
pub struct PageForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for PageForm<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, state: &S) -> Result<Self, PageError> {
        axum::Form::<T>::from_request(request, state)
            .await
            .map(|axum::Form(value)| Self(value))
            .map_err(|rejection| PageError::BadRequest(rejection.body_text()))
    }
}

/// `next` if it is a path on this site, else `/`: login redirects never leave the site.
pub fn local_path(next: Option<&str>) -> String {
    let Some(next) = next else {
        return "/".into();
    };
    let is_local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control() || c == '\\')
        && next.len() <= 2048;
    if is_local {
        next.to_owned()
    } else {
        "/".into()
    }
}

/// Percent-encodes a query value.
pub fn encode_query(value: &str) -> String {
    openidconnect::url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// `303 See Other` to `path` (after a form post).
pub fn see_other(path: &str) -> Response {
    Redirect::to(path).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(local_path(Some("/jobs/1?x=2")), "/jobs/1?x=2");
        assert_eq!(local_path(None), "/");
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "\\\\evil.example",
            "javascript:alert(1)",
            "evil.example",
            "/ok\r\nSet-Cookie: x",
            "",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad:?}");
        }
    }
}
