//! API tokens, kept in the KV bucket `cola-tokens`.
//!
//! A token is a long random string shown once to its owner. The bucket stores only its SHA-256
//! (as the key, in hex) with who it belongs to, so a leak of the bucket leaks no usable token.

use async_nats::jetstream::kv;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use cola_wire::UserId;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::GatewayError;

/// Every token starts with this, so a leaked one is easy to recognise (e.g. by secret scanners).
pub const TOKEN_PREFIX: &str = "cola_";

/// Random bytes in a token (256 bits).
const TOKEN_RANDOM_BYTES: usize = 32;

/// The longest token name accepted.
const MAX_NAME_CHARS: usize = 100;

/// What the bucket holds about one token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The user the token authenticates as.
    pub user: UserId,
    /// What the owner called it (e.g. `dev`, `laptop`).
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// Creates a token for `user` and returns it. This is the only time the token is seen: only
/// its hash is stored.
pub async fn issue(tokens: &kv::Store, user: &UserId, name: &str) -> Result<String, GatewayError> {
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(GatewayError::invalid_field(
            "name",
            format!("token name must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    let mut random = [0u8; TOKEN_RANDOM_BYTES];
    rand::rng().fill_bytes(&mut random);
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
    );
    let record = TokenRecord {
        user: user.clone(),
        name: name.to_owned(),
        created_at: Utc::now(),
    };
    let value = serde_json::to_vec(&record).expect("a token record always serializes");
    tokens
        .create(key_of(&token), value.into())
        .await
        .map_err(|e| GatewayError::backend("store API token", e))?;
    tracing::info!(user = %user, name, "API token issued");
    Ok(token)
}

/// Whom `token` belongs to, if it is a token this service issued and has not revoked.
pub async fn lookup(tokens: &kv::Store, token: &str) -> Result<Option<TokenRecord>, GatewayError> {
    if !looks_like_a_token(token) {
        return Ok(None);
    }
    let key = key_of(token);
    let Some(value) = tokens
        .get(key.as_str())
        .await
        .map_err(|e| GatewayError::backend("read API token", e))?
    else {
        return Ok(None);
    };
    match serde_json::from_slice(&value) {
        Ok(record) => Ok(Some(record)),
        Err(error) => {
            tracing::error!(%error, token_hash = %key, "unreadable API token record, refusing it");
            Ok(None)
        }
    }
}

/// Makes `token` unusable from now on. Revoking an unknown token is not an error.
pub async fn revoke(tokens: &kv::Store, token: &str) -> Result<(), GatewayError> {
    if !looks_like_a_token(token) {
        return Ok(());
    }
    tokens
        .purge(key_of(token))
        .await
        .map_err(|e| GatewayError::backend("revoke API token", e))
}

/// The bucket key of a token: the hex SHA-256 of the whole token.
pub fn key_of(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A cheap shape check so garbage never costs a NATS round trip.
fn looks_like_a_token(token: &str) -> bool {
    let Some(random) = token.strip_prefix(TOKEN_PREFIX) else {
        return false;
    };
    random.len() == (TOKEN_RANDOM_BYTES * 4).div_ceil(3)
        && random
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shape_check_accepts_issued_tokens_only() {
        let random = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
        assert!(looks_like_a_token(&format!("{TOKEN_PREFIX}{random}")));
        assert!(!looks_like_a_token(&random));
        assert!(!looks_like_a_token("cola_short"));
        assert!(!looks_like_a_token(&format!(
            "{TOKEN_PREFIX}{}",
            "+".repeat(43)
        )));
    }

    #[test]
    fn keys_are_hex_sha256() {
        let key = key_of("cola_x");
        assert_eq!(key.len(), 64);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(key, key_of("cola_y"));
    }
}
