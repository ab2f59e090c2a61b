//! What a gateway is told at start, and the checks it passes before any port is bound.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use openidconnect::url::{Host, Url};

use crate::GatewayError;

/// The largest message the job stream accepts (its `max_message_size`). A job message must fit
/// in it with room to spare: inputs above [`GatewayConfig::inline_input_bytes`] travel through
/// the object store instead.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Room a job message needs besides its inputs (ids, limits, args, JSON syntax).
const MESSAGE_HEADROOM_BYTES: usize = 128 << 10;

/// The largest encoded job message sent inline; a larger one (e.g. inputs full of characters
/// that JSON escapes) goes through the object store like large inputs do.
pub(crate) const MAX_INLINE_MESSAGE_BYTES: usize = MAX_MESSAGE_BYTES - MESSAGE_HEADROOM_BYTES / 2;

/// The longest `?wait` an operator may allow. A wait holds an HTTP connection open.
const MAX_WAIT_CEILING: Duration = Duration::from_secs(10 * 60);

/// Google's issuer, the default identity provider.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// The longest idle expiry a browser session may have.
const MAX_SESSION_IDLE: Duration = Duration::from_secs(30 * 24 * 3600);

/// A secret from the configuration: kept out of `Debug` output and logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Browser login through an OpenID Connect provider (Google by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// The provider's issuer URL (`COLA_OIDC_ISSUER`); its
    /// `/.well-known/openid-configuration` is read on the first login.
    pub issuer: String,
    /// The OAuth client registered with the provider (`COLA_OIDC_CLIENT_ID`).
    pub client_id: String,
    /// Its secret (`COLA_OIDC_CLIENT_SECRET`).
    pub client_secret: Secret,
    /// E-mail domains whose people may log in (`COLA_ALLOWED_DOMAINS`, e.g. `example.edu`).
    pub allowed_domains: Vec<String>,
    /// E-mail addresses that may log in (`COLA_ALLOWED_EMAILS`).
    /// With neither list, anybody the provider knows may log in.
    pub allowed_emails: Vec<String>,
}

impl OidcConfig {
    /// The login settings from the `COLA_OIDC_*` options as given: none when neither a client
    /// id nor a secret is given; an error when only one of them is. `issuer` defaults to
    /// [`GOOGLE_ISSUER`]; empty entries of the lists are ignored.
    pub fn from_options(
        issuer: Option<String>,
        client_id: Option<String>,
        client_secret: Option<String>,
        allowed_domains: Vec<String>,
        allowed_emails: Vec<String>,
    ) -> Result<Option<Self>, GatewayError> {
        let given = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let clean = |list: Vec<String>| -> Vec<String> {
            list.iter()
                .flat_map(|v| v.split(','))
                .map(|v| v.trim().to_ascii_lowercase())
                .filter(|v| !v.is_empty())
                .collect()
        };
        match (given(client_id), given(client_secret)) {
            (None, None) => Ok(None),
            (Some(client_id), Some(secret)) => Ok(Some(Self {
                issuer: given(issuer).unwrap_or_else(|| GOOGLE_ISSUER.into()),
                client_id,
                client_secret: Secret::new(secret),
                allowed_domains: clean(allowed_domains),
                allowed_emails: clean(allowed_emails),
            })),
            (Some(_), None) => Err(GatewayError::Config(
                "COLA_OIDC_CLIENT_ID is set but COLA_OIDC_CLIENT_SECRET is not".into(),
            )),
            (None, Some(_)) => Err(GatewayError::Config(
                "COLA_OIDC_CLIENT_SECRET is set but COLA_OIDC_CLIENT_ID is not".into(),
            )),
        }
    }

    /// Whether any allow-list restricts who may log in.
    pub fn is_restricted(&self) -> bool {
        !self.allowed_domains.is_empty() || !self.allowed_emails.is_empty()
    }
}

/// The gateway's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Where [`crate::run`] listens for HTTP.
    pub listen: SocketAddr,
    /// The NATS server (or cluster seed) to connect to.
    pub nats_url: String,
    /// The largest request body accepted; a larger one gets `413`.
    pub max_body_bytes: usize,
    /// Inputs whose content is larger than this travel as an input zip through the object store
    /// instead of inside the job message.
    pub inline_input_bytes: usize,
    /// The longest `?wait=N` a request may ask for.
    pub max_wait: Duration,
    /// The URL people reach the gateway at (`COLA_PUBLIC_URL`), e.g. `https://cola.example.edu`.
    /// The login redirect URI is `<public_url>/auth/callback`; the session cookie is `Secure`
    /// unless this is plain HTTP on a loopback host. Unset: `http://localhost:<port>` when
    /// listening on loopback (required otherwise, once a login is configured).
    pub public_url: Option<String>,
    /// Browser login through OpenID Connect; `None` turns it off.
    pub oidc: Option<OidcConfig>,
    /// Offer the "continue as local developer" login (user `dev`). Refused unless the gateway
    /// listens on a loopback address (`cola up --dev`).
    pub dev: bool,
    /// A browser session ends after this long without a request (at most the `cola-sessions`
    /// bucket's max age).
    pub session_idle: Duration,
    /// Per-user quotas on submissions.
    pub quotas: crate::quota::QuotaConfig,
    /// At start-up, how long to keep trying to reach NATS and find cola's stream and buckets
    /// (which a middleware makes) before giving up; none: the first failure stops the start.
    pub start_patience: Duration,
    /// How long an energy reading counts (older ones are shown stale), as the middlewares'
    /// `--energy-fresh-for`.
    pub energy_fresh_for: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            nats_url: "nats://127.0.0.1:4222".into(),
            max_body_bytes: 1 << 20,
            inline_input_bytes: 256 << 10,
            max_wait: Duration::from_secs(60),
            public_url: None,
            oidc: None,
            dev: false,
            session_idle: Duration::from_secs(12 * 3600),
            quotas: crate::quota::QuotaConfig::default(),
            start_patience: Duration::ZERO,
            energy_fresh_for: Duration::from_secs(300),
        }
    }
}

impl GatewayConfig {
    /// Checks the configuration; [`crate::run`] and [`crate::serve`] call this before doing
    /// anything else.
    pub fn validate(&self) -> Result<(), GatewayError> {
        let invalid = |message: String| Err(GatewayError::Config(message));
        if self.nats_url.trim().is_empty() {
            return invalid("nats_url must not be empty".into());
        }
        if self.max_body_bytes < 1024 {
            return invalid(format!(
                "max_body_bytes must be at least 1024, got {}",
                self.max_body_bytes
            ));
        }
        let inline_ceiling = MAX_MESSAGE_BYTES - MESSAGE_HEADROOM_BYTES;
        if self.inline_input_bytes > inline_ceiling {
            return invalid(format!(
                "inline_input_bytes must be at most {inline_ceiling} (a job message is limited \
                 to {MAX_MESSAGE_BYTES} bytes), got {}",
                self.inline_input_bytes
            ));
        }
        if self.max_wait > MAX_WAIT_CEILING {
            return invalid(format!(
                "max_wait must be at most {} s, got {} s",
                MAX_WAIT_CEILING.as_secs(),
                self.max_wait.as_secs_f64()
            ));
        }
        if self.session_idle < Duration::from_secs(60) || self.session_idle > MAX_SESSION_IDLE {
            return invalid(format!(
                "session_idle must be from 60 s to {} days, got {} s",
                MAX_SESSION_IDLE.as_secs() / 86400,
                self.session_idle.as_secs()
            ));
        }
        self.quotas.validate().map_err(GatewayError::Config)?;
        if self.dev && !self.listen.ip().is_loopback() {
            return invalid(format!(
                "dev login is only offered on a loopback address, but listen is {}",
                self.listen
            ));
        }
        if let Some(raw) = &self.public_url {
            parse_public_url(raw).map_err(GatewayError::Config)?;
        }
        if let Some(oidc) = &self.oidc {
            if self.public_url.is_none() && !self.listen.ip().is_loopback() {
                return invalid(format!(
                    "public_url (COLA_PUBLIC_URL) is required for the login when listening on \
                     {}: it makes the redirect URI <public-url>/auth/callback",
                    self.listen
                ));
            }
            let issuer = Url::parse(&oidc.issuer)
                .map_err(|e| GatewayError::Config(format!("oidc issuer: {e}")))?;
            if !matches!(issuer.scheme(), "https" | "http") {
                return invalid(format!("oidc issuer must be an http(s) URL, got {issuer}"));
            }
            if issuer.scheme() == "http" && !is_loopback_url(&issuer) {
                return invalid(format!(
                    "oidc issuer must use https (plain http only on loopback), got {issuer}"
                ));
            }
            if oidc.client_id.trim().is_empty() {
                return invalid("oidc client_id must not be empty".into());
            }
            if oidc.client_secret.expose().is_empty() {
                return invalid("oidc client_secret must not be empty".into());
            }
        }
        Ok(())
    }

    /// The public URL: as configured, else `http://localhost:<port>` of `listen`.
    pub fn public_url(&self, listen: SocketAddr) -> Url {
        match &self.public_url {
            Some(raw) => parse_public_url(raw).expect("validated public_url"),
            None => {
                let host = if listen.ip().is_loopback() || listen.ip().is_unspecified() {
                    "localhost".to_owned()
                } else {
                    match listen.ip() {
                        IpAddr::V4(ip) => ip.to_string(),
                        IpAddr::V6(ip) => format!("[{ip}]"),
                    }
                };
                Url::parse(&format!("http://{host}:{}", listen.port()))
                    .expect("a host and port make a URL")
            }
        }
    }

    /// Whether the browser login as user `dev` is offered on `listen` (the address actually
    /// bound): only when configured and only on loopback.
    pub fn dev_login_allowed(&self, listen: SocketAddr) -> bool {
        self.dev && listen.ip().is_loopback()
    }
}

/// Checks a public URL: http(s), a host, no query, no fragment, no path but `/`.
fn parse_public_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("public_url {raw:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("public_url must be http or https, got {raw:?}"));
    }
    if url.host().is_none()
        || url.query().is_some()
        || url.fragment().is_some()
        || url.path() != "/"
        || !url.username().is_empty()
    {
        return Err(format!(
            "public_url must be a scheme, a host and an optional port (no path, query or user), \
             got {raw:?}"
        ));
    }
    Ok(url)
}

/// Whether `url` is plain or secure HTTP to this machine (`localhost`, 127.0.0.0/8, `[::1]`).
pub fn is_loopback_url(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(domain)) => {
            domain.eq_ignore_ascii_case("localhost") || domain.ends_with(".localhost")
        }
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Whether the session cookie must be `Secure`: always, except for plain HTTP on loopback.
pub fn cookie_must_be_secure(public_url: &Url) -> bool {
    !(public_url.scheme() == "http" && is_loopback_url(public_url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid() {
        GatewayConfig::default().validate().unwrap();
    }

    #[test]
    fn each_bad_setting_is_named() {
        type Spoil = fn(&mut GatewayConfig);
        let cases: [(Spoil, &str); 10] = [
            (|c| c.nats_url = " ".into(), "nats_url"),
            (|c| c.max_body_bytes = 10, "max_body_bytes"),
            (|c| c.inline_input_bytes = 2 << 20, "inline_input_bytes"),
            (|c| c.max_wait = Duration::from_secs(3600), "max_wait"),
            (|c| c.session_idle = Duration::from_secs(1), "session_idle"),
            (
                |c| {
                    c.dev = true;
                    c.listen = SocketAddr::from(([0, 0, 0, 0], 8080));
                },
                "dev login",
            ),
            (
                |c| c.public_url = Some("https://cola.example/app".into()),
                "public_url",
            ),
            (
                |c| {
                    c.oidc = Some(oidc());
                    c.listen = SocketAddr::from(([0, 0, 0, 0], 8080));
                },
                "public_url",
            ),
            (
                |c| {
                    c.oidc = Some(OidcConfig {
                        issuer: "http://idp.example".into(),
                        ..oidc()
                    })
                },
                "https",
            ),
            (
                |c| {
                    c.oidc = Some(OidcConfig {
                        client_id: " ".into(),
                        ..oidc()
                    })
                },
                "client_id",
            ),
        ];
        for (spoil, name) in cases {
            let mut config = GatewayConfig::default();
            spoil(&mut config);
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }

    fn oidc() -> OidcConfig {
        OidcConfig::from_options(
            None,
            Some("client".into()),
            Some("s3cret".into()),
            vec!["Example.edu, ".into()],
            vec![],
        )
        .unwrap()
        .unwrap()
    }

    #[test]
    fn oidc_options_need_both_id_and_secret_and_default_to_google() {
        let config = oidc();
        assert_eq!(config.issuer, GOOGLE_ISSUER);
        assert_eq!(config.allowed_domains, ["example.edu"]);
        assert!(config.is_restricted());
        assert!(!format!("{config:?}").contains("s3cret"));
        let none = OidcConfig::from_options(None, None, Some(String::new()), vec![], vec![]);
        assert_eq!(none.unwrap(), None);
        assert!(OidcConfig::from_options(None, Some("id".into()), None, vec![], vec![]).is_err());
        assert!(OidcConfig::from_options(None, None, Some("s".into()), vec![], vec![]).is_err());
        let on_loopback = GatewayConfig {
            oidc: Some(config),
            ..GatewayConfig::default()
        };
        on_loopback.validate().unwrap();
    }

    #[test]
    fn public_url_and_cookie_security() {
        let config = GatewayConfig::default();
        let listen = SocketAddr::from(([127, 0, 0, 1], 8080));
        let url = config.public_url(listen);
        assert_eq!(url.as_str(), "http://localhost:8080/");
        assert!(!cookie_must_be_secure(&url));
        for (raw, secure) in [
            ("http://127.0.0.1:9000", false),
            ("http://[::1]:9000", false),
            ("https://localhost", true),
            ("http://cola.example.edu", true),
            ("https://cola.example.edu", true),
        ] {
            let config = GatewayConfig {
                public_url: Some(raw.into()),
                ..GatewayConfig::default()
            };
            config.validate().unwrap();
            assert_eq!(
                cookie_must_be_secure(&config.public_url(listen)),
                secure,
                "{raw}"
            );
        }
    }

    #[test]
    fn dev_login_only_on_loopback() {
        let config = GatewayConfig {
            dev: true,
            ..GatewayConfig::default()
        };
        config.validate().unwrap();
        assert!(config.dev_login_allowed(SocketAddr::from(([127, 0, 0, 1], 1))));
        assert!(!config.dev_login_allowed(SocketAddr::from(([0, 0, 0, 0], 1))));
        assert!(!config.dev_login_allowed(SocketAddr::from(([10, 0, 0, 7], 1))));
        assert!(!GatewayConfig::default().dev_login_allowed(SocketAddr::from(([127, 0, 0, 1], 1))));
    }
}
