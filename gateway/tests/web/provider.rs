//! An OpenID provider for the handler tests: discovery, keys and a token endpoint on a real
//! HTTP port, with ID tokens signed by a fresh RSA key (made with `openssl`). Each test says
//! which ID token the next code exchange returns.

use std::{
    process::Command,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    extract::{Form, State},
    routing::{get, post},
};
use base64::Engine as _;
use chrono::{Duration, Utc};
use openidconnect::{
    Audience, EmptyAdditionalClaims, EndUserEmail, EndUserName, IssuerUrl, JsonWebKeyId,
    LocalizedClaim, Nonce, PrivateSigningKey as _, StandardClaims, SubjectIdentifier,
    core::{
        CoreIdTokenClaims, CoreJsonWebKeySet, CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey,
    },
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const CLIENT_ID: &str = "cola-test-client";
pub const CLIENT_SECRET: &str = "cola-test-secret";

/// What the token endpoint saw of the last exchange.
#[derive(Default, Clone, Debug)]
pub struct Exchange {
    pub code: String,
    pub code_verifier: String,
    pub client_id: String,
}

struct Inner {
    issuer: String,
    key: CoreRsaPrivateSigningKey,
    next_response: Mutex<Option<Value>>,
    exchanges: Mutex<Vec<Exchange>>,
}

#[derive(Clone)]
pub struct Provider(Arc<Inner>);

/// Who logs in, and how the ID token is spoiled.
pub struct Claims<'a> {
    pub subject: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub nonce: &'a str,
    pub audience: &'a str,
    pub issuer: Option<&'a str>,
    pub expires_in: Duration,
}

impl<'a> Claims<'a> {
    pub fn valid(subject: &'a str, nonce: &'a str) -> Self {
        Self {
            subject,
            email: "ada@example.edu",
            name: "Ada Lovelace",
            nonce,
            audience: CLIENT_ID,
            issuer: None,
            expires_in: Duration::minutes(5),
        }
    }
}

fn rsa_key_pem() -> String {
    let output = Command::new("openssl")
        .args(["genrsa", "-traditional", "2048"])
        .output()
        .expect("openssl generates an RSA key");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

impl Provider {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let key = CoreRsaPrivateSigningKey::from_pem(
            &rsa_key_pem(),
            Some(JsonWebKeyId::new("test-key".into())),
        )
        .unwrap();
        let provider = Self(Arc::new(Inner {
            issuer,
            key,
            next_response: Mutex::new(None),
            exchanges: Mutex::new(Vec::new()),
        }));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .with_state(provider.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        provider
    }

    pub fn issuer(&self) -> &str {
        &self.0.issuer
    }

    /// A signed ID token with `claims`.
    pub fn id_token(&self, claims: &Claims<'_>) -> String {
        self.id_token_edited(claims, |_| {})
    }

    /// A signed ID token with `claims`, its JSON payload changed by `edit` before signing
    /// (for claims a well-behaved provider would not send, e.g. `"email_verified": "true"`).
    pub fn id_token_edited(&self, claims: &Claims<'_>, edit: impl FnOnce(&mut Value)) -> String {
        let now = Utc::now();
        let issuer = claims.issuer.unwrap_or(&self.0.issuer);
        let standard = StandardClaims::new(SubjectIdentifier::new(claims.subject.into()))
            .set_email(Some(EndUserEmail::new(claims.email.into())))
            .set_email_verified(Some(true))
            .set_name(Some(LocalizedClaim::from(EndUserName::new(
                claims.name.into(),
            ))));
        let id_claims = CoreIdTokenClaims::new(
            IssuerUrl::new(issuer.into()).unwrap(),
            vec![Audience::new(claims.audience.into())],
            now + claims.expires_in,
            now - Duration::seconds(5),
            standard,
            EmptyAdditionalClaims {},
        )
        .set_nonce(Some(Nonce::new(claims.nonce.into())));
        let mut payload = serde_json::to_value(&id_claims).unwrap();
        edit(&mut payload);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": "test-key"});
        let signing_input = format!(
            "{}.{}",
            b64.encode(serde_json::to_vec(&header).unwrap()),
            b64.encode(serde_json::to_vec(&payload).unwrap())
        );
        let signature = self
            .0
            .key
            .sign(
                &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                signing_input.as_bytes(),
            )
            .unwrap();
        format!("{signing_input}.{}", b64.encode(signature))
    }

    /// The next code exchange answers with this ID token.
    pub fn answer_with(&self, id_token: String) {
        *self.0.next_response.lock().unwrap() = Some(json!({
            "access_token": "test-access-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
        }));
    }

    pub fn exchanges(&self) -> Vec<Exchange> {
        self.0.exchanges.lock().unwrap().clone()
    }
}

/// The same token with its payload changed (`sub` replaced): the signature no longer fits.
pub fn tamper(token: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    payload["sub"] = json!("someone-else");
    let payload = b64.encode(serde_json::to_vec(&payload).unwrap());
    format!("{}.{}.{}", parts[0], payload, parts[2])
}

/// The same payload with `alg: none` and no signature.
pub fn unsigned(token: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    format!("{header}.{}.", parts[1])
}

/// Whether `verifier` is the PKCE verifier of `challenge` (S256).
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
        == challenge
}

async fn discovery(State(p): State<Provider>) -> Json<Value> {
    let issuer = &p.0.issuer;
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn jwks(State(p): State<Provider>) -> Json<CoreJsonWebKeySet> {
    Json(CoreJsonWebKeySet::new(vec![p.0.key.as_verification_key()]))
}

async fn token(
    State(p): State<Provider>,
    headers: axum::http::HeaderMap,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let client_id = form.get("client_id").cloned().unwrap_or_else(|| {
        // client_secret_basic
        let basic = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
            .map(|v| String::from_utf8(v).unwrap())
            .unwrap_or_default();
        basic.split(':').next().unwrap_or("").to_owned()
    });
    p.0.exchanges.lock().unwrap().push(Exchange {
        code: form.get("code").cloned().unwrap_or_default(),
        code_verifier: form.get("code_verifier").cloned().unwrap_or_default(),
        client_id,
    });
    match p.0.next_response.lock().unwrap().take() {
        Some(answer) => Json(answer).into_response(),
        None => (
            axum::http::StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response(),
    }
}
