//! Which names the pages answer under: the public URL's host (and on loopback, the other
//! loopback names with its port), and which origin their forms may come from.
//!
//! A page elsewhere can make a browser call cola under its own name, resolved to cola's
//! address (DNS rebinding): the browser then treats cola's answers as that page's own and
//! lets it read them. Checking `Host` against the public URL keeps pages, forms and sessions
//! to requests addressed to cola; checking `Origin` on state-changing requests keeps forms to
//! cola's own pages. The JSON API is not checked: it takes only bearer tokens, nothing a
//! browser adds on its own, so another name gains nothing there (and in-cluster clients may
//! call the gateway by its service name).

use axum::{
    extract::{Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::Next,
    response::Response,
};

use crate::{pages::error_page, public_site::PublicSite};

/// The `Host` a request names: the header, else (HTTP/2) the URI's authority.
fn requested_host<'a>(headers: &'a HeaderMap, uri: &'a axum::http::Uri) -> Option<&'a str> {
    match headers.get(header::HOST) {
        Some(value) => value.to_str().ok(),
        None => uri.authority().map(|a| a.as_str()),
    }
}

/// The layer of every page route: a request for another name gets `421`, a form from another
/// origin `403`, before any session is read or made.
pub async fn check(State(site): State<PublicSite>, request: Request, next: Next) -> Response {
    match refusal(&site, &request) {
        Some(refused) => refused,
        None => next.run(request).await,
    }
}

/// Why `request` gets no page, if it does not.
fn refusal(site: &PublicSite, request: &Request) -> Option<Response> {
    let headers = request.headers();
    match requested_host(headers, request.uri()).and_then(|h| site.accepts_host(h)) {
        Some(true) => {}
        Some(false) => {
            tracing::info!(host = ?headers.get(header::HOST), "page refused: another host name");
            return Some(error_page(
                StatusCode::MISDIRECTED_REQUEST,
                "Wrong address",
                format!(
                    "This service answers at {}; open it there.",
                    site.public_url()
                ),
                false,
            ));
        }
        None => {
            return Some(error_page(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The request names no valid host.".into(),
                false,
            ));
        }
    }
    let changes_state = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let origin = headers.get(header::ORIGIN).filter(|_| changes_state)?;
    if origin.to_str().is_ok_and(|o| site.accepts_origin(o)) {
        return None;
    }
    tracing::warn!(?origin, "form refused: sent from another origin");
    Some(error_page(
        StatusCode::FORBIDDEN,
        "Not allowed",
        "This form was sent from another site. Open cola and send it from there.".into(),
        false,
    ))
}
