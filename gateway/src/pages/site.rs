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
use openidconnect::url::{Host, Url};

use crate::{config::is_loopback_url, pages::error_page};

/// The names a browser reaches cola's pages under.
#[derive(Debug, Clone)]
pub struct PublicSite {
    /// Where people reach cola, for the message of a refused name.
    public_url: Url,
    /// `http` or `https`, as in the public URL.
    scheme: String,
    /// Host (lower case, IPv6 in brackets) and port of every accepted name.
    names: Vec<(String, u16)>,
}

/// The loopback names a browser may use for a public URL on loopback.
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

impl PublicSite {
    /// The public URL's name, and with it, when that is on loopback, every loopback name with
    /// the same port.
    pub fn new(public_url: &Url) -> Self {
        let scheme = public_url.scheme().to_owned();
        let port = public_url.port_or_known_default().unwrap_or(80);
        let mut names = vec![(
            public_url
                .host_str()
                .unwrap_or_default()
                .to_ascii_lowercase(),
            port,
        )];
        if is_loopback_url(public_url) {
            names.extend(LOOPBACK_NAMES.iter().map(|name| (name.to_string(), port)));
        }
        Self {
            public_url: public_url.clone(),
            scheme,
            names,
        }
    }

    /// Whether the public URL is reached by a loopback name only (`localhost`, `127.0.0.1`,
    /// `[::1]`): what the developer login requires.
    pub fn is_loopback_only(&self) -> bool {
        LOOPBACK_NAMES.contains(&self.names[0].0.as_str())
    }

    /// Whether a `Host` value (`host[:port]`) names this site. `None` for a value that is no
    /// host and port at all.
    pub fn accepts_host(&self, host: &str) -> Option<bool> {
        let is_authority = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
        if !is_authority {
            return None;
        }
        let url = Url::parse(&format!("{}://{host}/", self.scheme)).ok()?;
        Some(self.is_named_by(&url))
    }

    /// Whether an `Origin` value is this site's (`scheme://host[:port]`, nothing else).
    pub fn accepts_origin(&self, origin: &str) -> bool {
        let Ok(url) = Url::parse(origin) else {
            return false;
        };
        // A bare origin serializes back as itself plus the path `/`: a path, a user, a query or
        // a spelled-out default port make the two differ.
        url.scheme() == self.scheme
            && url.as_str().strip_suffix('/') == Some(origin.to_ascii_lowercase().as_str())
            && self.is_named_by(&url)
    }

    /// Whether `url`'s host and port are one of the site's names.
    fn is_named_by(&self, url: &Url) -> bool {
        let host = match url.host() {
            Some(Host::Domain(domain)) => domain.to_ascii_lowercase(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => format!("[{ip}]"),
            None => return false,
        };
        let Some(port) = url.port_or_known_default() else {
            return false;
        };
        self.names
            .iter()
            .any(|(name, p)| *name == host && *p == port)
    }
}

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
                    site.public_url
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

#[cfg(test)]
mod tests {
    use super::*;

    fn site(url: &str) -> PublicSite {
        PublicSite::new(&Url::parse(url).unwrap())
    }

    #[test]
    fn loopback_public_urls_answer_under_every_loopback_name_with_their_port() {
        let site = site("http://localhost:8080");
        for host in [
            "localhost:8080",
            "LOCALHOST:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
        ] {
            assert_eq!(site.accepts_host(host), Some(true), "{host}");
        }
        for host in [
            "localhost",
            "localhost:8081",
            "attacker.example:8080",
            "localhost.attacker.example:8080",
            "127.0.0.2:8080",
        ] {
            assert_eq!(site.accepts_host(host), Some(false), "{host}");
        }
        for host in [
            "",
            "a@localhost:8080",
            "localhost:8080/",
            "localhost :8080",
            "localhost:99999",
        ] {
            assert_eq!(site.accepts_host(host), None, "{host:?}");
        }
        assert!(site.is_loopback_only());
        assert!(site.accepts_origin("http://127.0.0.1:8080"));
        for origin in [
            "null",
            "https://localhost:8080",
            "http://localhost:8080/",
            "http://localhost",
        ] {
            assert!(!site.accepts_origin(origin), "{origin}");
        }
    }

    #[test]
    fn other_public_urls_answer_under_their_own_name_only() {
        let site = site("https://cola.example.edu");
        for host in [
            "cola.example.edu",
            "Cola.Example.Edu",
            "cola.example.edu:443",
        ] {
            assert_eq!(site.accepts_host(host), Some(true), "{host}");
        }
        for host in [
            "localhost:443",
            "127.0.0.1",
            "cola.example.edu:80",
            "example.edu",
        ] {
            assert_eq!(site.accepts_host(host), Some(false), "{host}");
        }
        assert!(!site.is_loopback_only());
        assert!(site.accepts_origin("https://cola.example.edu"));
        assert!(!site.accepts_origin("http://cola.example.edu"));
        assert!(!self::site("http://dev.localhost:8080").is_loopback_only());
    }
}
