//! The names a browser reaches cola's pages under: the public URL's host (and on loopback,
//! the other loopback names with its port), and the one origin their forms may come from.
//! [`crate::pages::site`] turns away requests for any other.

use openidconnect::url::{Host, Url};

use crate::config::is_loopback_url;

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
    /// Where people reach cola.
    pub fn public_url(&self) -> &Url {
        &self.public_url
    }

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
