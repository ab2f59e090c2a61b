//! OpenID Connect login (authorization-code flow with PKCE, `state` and `nonce`), Google by
//! default, any certified provider by changing the issuer.
//!
//! The provider's metadata and keys come from `<issuer>/.well-known/openid-configuration` on
//! the first login and are read again after an hour, or at once when an ID token is
//! signed with a key not seen yet (providers rotate their keys). The ID token's signature,
//! `iss`, `aud`, `exp` and `nonce` are checked by `openidconnect`; the user is
//! `UserId::from_identity(iss, sub)`: the provider's stable subject, never the e-mail.
//!
//! The e-mail address comes from the ID token (Google puts it there) or, when the ID token has
//! no verified one, from the UserInfo endpoint, asked with the access token for the same
//! subject: a provider that follows the specification strictly returns the claims of the
//! `email` scope there only. Either way, only the JSON boolean `"email_verified": true`
//! verifies an address.

use std::{
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use cola_wire::UserId;
use openidconnect::{
    AccessToken, AsyncHttpClient, AuthenticationFlow, AuthorizationCode, ClaimsVerificationError,
    ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    HttpClientError, HttpRequest, HttpResponse, IssuerUrl, Nonce, OAuth2TokenResponse as _,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
    SignatureVerificationError, SubjectIdentifier, TokenResponse as _, UserInfoError,
    core::{
        CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreResponseType,
        CoreUserInfoClaims,
    },
    reqwest,
    url::Url,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::config::OidcConfig;

/// How long discovered metadata and keys are used before they are read again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// How long a login may stay at the provider before its `state` is no longer accepted.
pub const PENDING_LOGIN_TTL: Duration = Duration::from_secs(15 * 60);
/// Timeout of each request to the provider.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// Signature algorithms accepted for ID tokens: asymmetric only (never `none` or HMAC).
const ALLOWED_ALGS: [CoreJwsSigningAlgorithm; 8] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why a login did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached or its metadata is unusable.
    #[error("identity provider unavailable: {0}")]
    Provider(String),
    /// The code could not be exchanged for tokens.
    #[error("the identity provider refused the login: {0}")]
    Exchange(String),
    /// The answer could not be read (e.g. an ID token whose claims have the wrong types).
    #[error("the identity provider's answer could not be read: {0}")]
    Unreadable(String),
    /// The answer has no ID token.
    #[error("the identity provider sent no ID token")]
    NoIdToken,
    /// The ID token failed a check (signature, issuer, audience, expiry, nonce).
    #[error("the ID token is not valid: {0}")]
    Claims(#[from] ClaimsVerificationError),
    /// The person is not on the allow-lists.
    #[error("{0} may not use this service")]
    NotAllowed(String),
}

/// A login on its way to the provider, kept in the session until the callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// Where to go after the login (a local path).
    pub next: String,
    /// Unix seconds.
    pub started: i64,
}

/// Who the provider says logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: UserId,
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

/// The configured provider, discovered lazily.
pub struct Provider {
    config: OidcConfig,
    redirect: RedirectUrl,
    http: reqwest::Client,
    cached: Mutex<Option<(Instant, Arc<Client>)>>,
}

impl Provider {
    /// The provider for `config`, redirecting back to `<public_url>/auth/callback`.
    pub fn new(config: OidcConfig, public_url: &Url) -> Result<Self, OidcError> {
        let redirect = public_url
            .join("/auth/callback")
            .map_err(|e| OidcError::Provider(e.to_string()))?;
        let http = reqwest::Client::builder()
            // Following redirects from the provider's endpoints would open an SSRF hole.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()
            .map_err(|e| OidcError::Provider(e.to_string()))?;
        Ok(Self {
            config,
            redirect: RedirectUrl::from_url(redirect),
            http,
            cached: Mutex::new(None),
        })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// The redirect URI registered with the provider.
    pub fn redirect_uri(&self) -> &str {
        self.redirect.as_str()
    }

    /// What the login button calls the provider.
    pub fn display_name(&self) -> String {
        let issuer = self.config.issuer.trim_end_matches('/');
        if issuer == crate::config::GOOGLE_ISSUER {
            return "Google".into();
        }
        Url::parse(issuer)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "your identity provider".into())
    }

    async fn client(&self, refresh: bool) -> Result<Arc<Client>, OidcError> {
        let mut cached = self.cached.lock().await;
        if !refresh
            && let Some((at, client)) = cached.as_ref()
            && at.elapsed() < METADATA_TTL
        {
            return Ok(client.clone());
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| OidcError::Provider(e.to_string()))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| {
                tracing::warn!(error = %error_chain(&e), issuer = %self.config.issuer, "OIDC discovery failed");
                OidcError::Provider(e.to_string())
            })?;
        let client = Arc::new(
            CoreClient::from_provider_metadata(
                metadata,
                ClientId::new(self.config.client_id.clone()),
                Some(ClientSecret::new(
                    self.config.client_secret.expose().to_owned(),
                )),
            )
            .set_redirect_uri(self.redirect.clone()),
        );
        tracing::info!(issuer = %self.config.issuer, "OIDC provider metadata loaded");
        *cached = Some((Instant::now(), client.clone()));
        Ok(client)
    }

    /// Starts a login: the provider's authorization URL and what the callback must check.
    pub async fn begin(&self, next: String) -> Result<(Url, PendingLogin), OidcError> {
        let client = self.client(false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        let pending = PendingLogin {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            next,
            started: chrono::Utc::now().timestamp(),
        };
        Ok((url, pending))
    }

    /// Finishes a login whose `state` was already checked against `pending`: exchanges `code`
    /// (with the PKCE verifier), verifies the ID token and the allow-lists.
    pub async fn finish(
        &self,
        pending: &PendingLogin,
        code: String,
    ) -> Result<Identity, OidcError> {
        let client = self.client(false).await?;
        let response = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| OidcError::Provider(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| {
                tracing::warn!(error = %error_chain(&e), "OIDC code exchange failed");
                match e {
                    RequestTokenError::Parse(..) => OidcError::Unreadable(e.to_string()),
                    _ => OidcError::Exchange(e.to_string()),
                }
            })?;
        let id_token = response.id_token().ok_or(OidcError::NoIdToken)?;
        let nonce = Nonce::new(pending.nonce.clone());
        let email_verified = says_email_verified(&id_token.to_string());
        let verify = |client: &Client| -> Result<Identity, ClaimsVerificationError> {
            let verifier = client.id_token_verifier().set_allowed_algs(ALLOWED_ALGS);
            let claims = id_token.claims(&verifier, &nonce)?;
            let issuer = claims.issuer().as_str().to_owned();
            let subject = claims.subject().as_str().to_owned();
            Ok(Identity {
                user: UserId::from_identity(&issuer, &subject),
                email: claims.email().map(|e| e.as_str().to_owned()),
                email_verified: email_verified && claims.email_verified() == Some(true),
                name: claims
                    .name()
                    .and_then(|n| n.get(None))
                    .map(|n| n.as_str().to_owned()),
                issuer,
                subject,
            })
        };
        let identity = match verify(&client) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                // The provider may have rotated its keys since they were read.
                let fresh = self.client(true).await?;
                verify(&fresh)?
            }
            other => other?,
        };
        let identity = if identity.email.is_some() && identity.email_verified {
            identity
        } else {
            self.with_user_info(&client, response.access_token(), identity)
                .await?
        };
        self.admit(&identity)?;
        Ok(identity)
    }

    /// `identity` with the e-mail address (and name, if it has none) that the provider's
    /// UserInfo endpoint gives for its subject; unchanged when the provider has no UserInfo
    /// endpoint or UserInfo names no address.
    async fn with_user_info(
        &self,
        client: &Client,
        access_token: &AccessToken,
        mut identity: Identity,
    ) -> Result<Identity, OidcError> {
        let subject = SubjectIdentifier::new(identity.subject.clone());
        let Ok(request) = client.user_info(access_token.clone(), Some(subject)) else {
            return Ok(identity);
        };
        // The answer as it came, for the one claim the library reads more loosely than cola.
        let recording = Recording {
            http: self.http.clone(),
            body: std::sync::Mutex::new(Vec::new()),
        };
        let answer = request.request_async(&recording).await;
        let claims: CoreUserInfoClaims = answer.map_err(|e| {
            tracing::warn!(error = %error_chain(&e), "OIDC UserInfo request failed");
            match e {
                UserInfoError::ClaimsVerification(e) => OidcError::Claims(e),
                UserInfoError::Parse(_) => OidcError::Unreadable(e.to_string()),
                _ => OidcError::Exchange(format!("UserInfo: {e}")),
            }
        })?;
        if let Some(email) = claims.email() {
            let verified = user_info_says_email_verified(&recording.body());
            identity.email = Some(email.as_str().to_owned());
            identity.email_verified = verified && claims.email_verified() == Some(true);
        }
        if identity.name.is_none() {
            identity.name = claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned());
        }
        Ok(identity)
    }

    /// Checks the allow-lists: with any list set, only a verified e-mail on a list (or in a
    /// listed domain) gets in.
    pub fn admit(&self, identity: &Identity) -> Result<(), OidcError> {
        if !self.config.is_restricted() {
            return Ok(());
        }
        let who = identity
            .email
            .clone()
            .unwrap_or_else(|| format!("the account {}", identity.subject));
        let Some(email) = identity
            .email
            .as_deref()
            .filter(|_| identity.email_verified)
        else {
            return Err(OidcError::NotAllowed(format!(
                "{who} (no verified e-mail address)"
            )));
        };
        let Some((local, domain)) = parse_email(email) else {
            return Err(OidcError::NotAllowed(format!(
                "{who} (not a valid e-mail address)"
            )));
        };
        if self
            .config
            .allowed_emails
            .contains(&format!("{local}@{domain}"))
            || self.config.allowed_domains.contains(&domain)
        {
            Ok(())
        } else {
            Err(OidcError::NotAllowed(who))
        }
    }
}

/// The gateway's HTTP client, keeping the body of the last answer it got.
struct Recording {
    http: reqwest::Client,
    body: std::sync::Mutex<Vec<u8>>,
}

impl Recording {
    fn body(&self) -> Vec<u8> {
        self.body.lock().expect("not poisoned").clone()
    }
}

impl<'c> AsyncHttpClient<'c> for Recording {
    type Error = HttpClientError<reqwest::Error>;
    type Future =
        Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + Sync + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self.http.call(request).await?;
            self.body
                .lock()
                .expect("not poisoned")
                .clone_from(response.body());
            Ok(response)
        })
    }
}

/// Whether a UserInfo answer (JSON, or a JWT whose signature the library checked) says
/// `"email_verified": true`, the JSON boolean: the library reads the string `"true"` as true
/// too (the gateway accepts string booleans so that such a provider's answers can be read at
/// all), cola does not.
fn user_info_says_email_verified(body: &[u8]) -> bool {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(claims) => claims.get("email_verified") == Some(&serde_json::Value::Bool(true)),
        Err(_) => std::str::from_utf8(body).is_ok_and(|jwt| says_email_verified(jwt.trim())),
    }
}

/// Whether an ID token (compact form, its signature already checked) says
/// `"email_verified": true`, the JSON boolean. A string such as `"true"`, or anything else,
/// leaves the address unverified.
fn says_email_verified(id_token: &str) -> bool {
    let Some(payload) = id_token.split('.').nth(1) else {
        return false;
    };
    let Ok(json) = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&json)
        .is_ok_and(|claims| claims.get("email_verified") == Some(&serde_json::Value::Bool(true)))
}

/// An e-mail address as its local part and domain, lower case, when it is one: exactly one
/// `@`; a local part of dot-separated runs of RFC 5322 `atext` (no quoted strings, no
/// comments), at most 64 characters; a domain of at least two dot-separated labels of ASCII
/// letters, digits and inner hyphens, at most 253 characters.
pub fn parse_email(address: &str) -> Option<(String, String)> {
    let address = address.to_ascii_lowercase();
    let (local, domain) = address.split_once('@')?;
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    let local_ok = local.len() <= 64
        && local
            .split('.')
            .all(|run| !run.is_empty() && run.chars().all(atext));
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let domain_ok = domain.len() <= 253 && domain.contains('.') && domain.split('.').all(label_ok);
    (local_ok && domain_ok).then(|| (local.to_owned(), domain.to_owned()))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn provider(domains: &[&str], emails: &[&str]) -> Provider {
        let config = OidcConfig {
            issuer: crate::config::GOOGLE_ISSUER.into(),
            client_id: "id".into(),
            client_secret: Secret::new("secret"),
            allowed_domains: domains.iter().map(|s| s.to_string()).collect(),
            allowed_emails: emails.iter().map(|s| s.to_string()).collect(),
        };
        Provider::new(config, &Url::parse("http://localhost:8080").unwrap()).unwrap()
    }

    fn identity(email: Option<&str>, verified: bool) -> Identity {
        Identity {
            user: UserId::from_identity("https://accounts.google.com", "1"),
            issuer: "https://accounts.google.com".into(),
            subject: "1".into(),
            email: email.map(str::to_owned),
            email_verified: verified,
            name: None,
        }
    }

    #[test]
    fn the_redirect_uri_is_under_the_public_url() {
        let p = provider(&[], &[]);
        assert_eq!(p.redirect_uri(), "http://localhost:8080/auth/callback");
        assert_eq!(p.display_name(), "Google");
    }

    #[test]
    fn allow_lists_need_a_verified_matching_email() {
        let open = provider(&[], &[]);
        assert!(open.admit(&identity(None, false)).is_ok());
        let p = provider(&["example.edu"], &["guest@other.org"]);
        assert!(p.admit(&identity(Some("Ada@Example.edu"), true)).is_ok());
        assert!(p.admit(&identity(Some("guest@other.org"), true)).is_ok());
        assert!(p.admit(&identity(Some("ada@example.edu"), false)).is_err());
        assert!(
            p.admit(&identity(Some("eve@example.edu.evil"), true))
                .is_err()
        );
        assert!(
            p.admit(&identity(Some("eve@sub.example.edu"), true))
                .is_err()
        );
        assert!(p.admit(&identity(None, true)).is_err());
        for forged in [
            "x@evil.com@example.edu",
            "\"x@evil.com\"@example.edu",
            "x@evil.com(@example.edu)",
            "@example.edu",
            "x y@example.edu",
            "x..y@example.edu",
            "x@example.edu.",
            "x@-example.edu",
            "x@example",
        ] {
            assert!(p.admit(&identity(Some(forged), true)).is_err(), "{forged}");
        }
    }

    #[test]
    fn addresses_are_split_at_their_one_at_sign() {
        assert_eq!(
            parse_email("Ada.L+cola@Example.EDU"),
            Some(("ada.l+cola".into(), "example.edu".into()))
        );
        assert_eq!(parse_email("a@b@example.edu"), None);
        assert_eq!(
            parse_email(&format!("{}@example.edu", "a".repeat(65))),
            None
        );
        assert!(parse_email(&format!("{}@example.edu", "a".repeat(64))).is_some());
    }

    /// A compact JWT with `claims` as its payload (its signature is not looked at here).
    fn token(claims: &str) -> String {
        format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(claims))
    }

    #[test]
    fn only_the_boolean_true_verifies_an_address_from_user_info() {
        let says = |body: &str| user_info_says_email_verified(body.as_bytes());
        assert!(says(
            r#"{"sub":"ada","email":"a@example.edu","email_verified":true}"#
        ));
        for body in [
            r#"{"sub":"ada","email":"a@example.edu","email_verified":"true"}"#,
            r#"{"sub":"ada","email":"a@example.edu"}"#,
            "not json",
        ] {
            assert!(!says(body), "{body}");
        }
        // A signed answer: the claims are the JWT's payload.
        assert!(says(&token(r#"{"sub":"ada","email_verified":true}"#)));
        assert!(!says(&token(r#"{"sub":"ada","email_verified":"true"}"#)));
    }

    #[test]
    fn only_the_boolean_true_verifies_an_address() {
        assert!(says_email_verified(&token(r#"{"email_verified":true}"#)));
        for claims in [
            r#"{"email_verified":"true"}"#,
            r#"{"email_verified":1}"#,
            r#"{"email_verified":false}"#,
            r#"{}"#,
        ] {
            assert!(!says_email_verified(&token(claims)), "{claims}");
        }
        assert!(!says_email_verified("not a token"));
    }
}
