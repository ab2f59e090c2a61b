//! What a browser holds between the login page and being logged in, in a short-lived signed
//! cookie of its own rather than in the session store, so that nothing an anonymous visitor
//! does is stored: the CSRF token of the developer login form, and the OpenID login on its way
//! to the provider (`state`, `nonce`, PKCE verifier, where to go next). The login that uses it
//! removes it; it lives [`PENDING_LOGIN_TTL`] at most.
//!
//! The cookie is `HttpOnly`, `SameSite=Lax` (the provider sends people back with a top-level
//! `GET`), `__Host-` when secure, and signed with HMAC-SHA-256. The key is derived from the
//! OpenID client secret, which every gateway replica has, so that a login started on one
//! replica can end on another; without a provider (the developer login, one process on
//! loopback) it is random per process.

use axum::http::{HeaderMap, HeaderValue, header};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tower_sessions::cookie::{Cookie, SameSite, time::Duration as CookieDuration};

use crate::{
    config::Secret,
    oidc::{PENDING_LOGIN_TTL, PendingLogin},
    session::random_token,
};

type HmacSha256 = Hmac<Sha256>;

/// What the cookie carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreLogin {
    /// The developer login form's CSRF token.
    pub csrf: String,
    /// The OpenID login on its way to the provider.
    pub pending: Option<PendingLogin>,
    /// Unix seconds; set each time the cookie is written.
    #[serde(default)]
    expires: i64,
}

impl PreLogin {
    /// A new one, with a fresh CSRF token and no login on its way.
    pub fn new() -> Self {
        Self {
            csrf: random_token(),
            pending: None,
            expires: 0,
        }
    }
}

impl Default for PreLogin {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes and reads the pre-login cookie.
pub struct PreLoginCookies {
    name: &'static str,
    secure: bool,
    key: [u8; 32],
}

impl PreLoginCookies {
    /// Cookies signed with a key derived from `oidc_secret`, or a random one without it.
    pub fn new(secure: bool, oidc_secret: Option<&Secret>) -> Self {
        let key = match oidc_secret {
            Some(secret) => {
                let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
                    .expect("HMAC takes a key of any length");
                mac.update(b"cola pre-login cookie v1");
                mac.finalize().into_bytes().into()
            }
            None => {
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                key
            }
        };
        Self {
            name: if secure {
                "__Host-cola_login"
            } else {
                "cola_login"
            },
            secure,
            key,
        }
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.key).expect("HMAC takes a key of any length")
    }

    /// The browser's pre-login, if it sent one that this gateway signed and that has not
    /// expired.
    pub fn read(&self, headers: &HeaderMap) -> Option<PreLogin> {
        let value = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|cookie| cookie.name() == self.name)?
            .value()
            .to_owned();
        let (payload, tag) = value.split_once('.')?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(tag).ok()?).ok()?;
        let prelogin: PreLogin =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (prelogin.expires > chrono::Utc::now().timestamp()).then_some(prelogin)
    }

    /// The `Set-Cookie` value that keeps `prelogin` for [`PENDING_LOGIN_TTL`] from now.
    pub fn set(&self, prelogin: &PreLogin) -> HeaderValue {
        let ttl = PENDING_LOGIN_TTL.as_secs() as i64;
        let stamped = PreLogin {
            expires: chrono::Utc::now().timestamp() + ttl,
            ..prelogin.clone()
        };
        let payload = URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&stamped).expect("a pre-login always serializes"));
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        self.cookie(format!("{payload}.{tag}"), CookieDuration::seconds(ttl))
    }

    /// The `Set-Cookie` value that removes the pre-login.
    pub fn clear(&self) -> HeaderValue {
        self.cookie(String::new(), CookieDuration::ZERO)
    }

    fn cookie(&self, value: String, max_age: CookieDuration) -> HeaderValue {
        let cookie = Cookie::build((self.name, value))
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure)
            .path("/")
            .max_age(max_age)
            .build();
        HeaderValue::from_str(&cookie.to_string())
            .expect("a cookie of base64 and fixed attributes is a valid header")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie.to_str().unwrap().split(';').next().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, format!("other=1; {pair}").parse().unwrap());
        headers
    }

    #[test]
    fn a_pre_login_comes_back_only_as_signed_by_this_key() {
        let secret = Secret::new("client-secret");
        let cookies = PreLoginCookies::new(false, Some(&secret));
        let prelogin = PreLogin::new();
        let headers = sent(&cookies.set(&prelogin));
        assert_eq!(cookies.read(&headers).unwrap().csrf, prelogin.csrf);
        // Another replica with the same client secret reads it too.
        let replica = PreLoginCookies::new(false, Some(&secret));
        assert!(replica.read(&headers).is_some());
        let other = PreLoginCookies::new(false, Some(&Secret::new("another")));
        assert!(other.read(&headers).is_none());
        assert!(PreLoginCookies::new(false, None).read(&headers).is_none());

        let value = headers[header::COOKIE].to_str().unwrap().to_owned();
        let forged = value.replacen(".", "x.", 1);
        let mut tampered = HeaderMap::new();
        tampered.insert(header::COOKIE, forged.parse().unwrap());
        assert!(cookies.read(&tampered).is_none());
    }

    #[test]
    fn the_cookie_is_http_only_lax_and_host_prefixed_when_secure() {
        let cookies = PreLoginCookies::new(true, None);
        let set = cookies.set(&PreLogin::new());
        let set = set.to_str().unwrap();
        assert!(set.starts_with("__Host-cola_login="), "{set}");
        for flag in [
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/",
            "Max-Age=900",
        ] {
            assert!(set.contains(flag), "{flag}: {set}");
        }
        let clear = cookies.clear();
        assert!(clear.to_str().unwrap().contains("Max-Age=0"));
    }
}
