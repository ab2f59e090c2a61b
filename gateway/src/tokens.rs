//! API tokens, kept in the KV bucket `cola-tokens`.
//!
//! A token is a long random string shown once to its owner. The bucket stores only its SHA-256
//! (as the key, in hex) with who it belongs to, so a leak of the bucket leaks no usable token.
//!
//! Each user's tokens are also listed under one key, `by-user.<user>` (a JSON list of the
//! hashes with their names and dates, changed only by compare-and-set), so the tokens page
//! reads one key instead of scanning the bucket. The index is written before the token and
//! cleaned after it is revoked: a token that works is always listed, so its owner can always
//! revoke it.

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

/// The most tokens one user may have at once.
pub const MAX_TOKENS_PER_USER: usize = 50;

/// Prefix of the per-user index keys (a token key is 64 hex digits: no clash).
const INDEX_PREFIX: &str = "by-user.";

/// One token as its owner's list shows it (the token itself is never kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// The token's hash: its key in the bucket, and how the owner names it to revoke it.
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenIndex {
    tokens: Vec<TokenInfo>,
}

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
    let info = TokenInfo {
        id: key_of(&token),
        name: record.name.clone(),
        created_at: record.created_at,
    };
    let mut full = false;
    update_index(tokens, user, |index| {
        full = index.tokens.len() >= MAX_TOKENS_PER_USER;
        if !full {
            index.tokens.push(info.clone());
        }
        !full
    })
    .await?;
    if full {
        return Err(GatewayError::invalid_field(
            "name",
            format!("you already have {MAX_TOKENS_PER_USER} tokens: revoke one first"),
        ));
    }
    let value = serde_json::to_vec(&record).expect("a token record always serializes");
    if let Err(error) = tokens.create(info.id.as_str(), value.into()).await {
        let _ = remove_from_index(tokens, user, &info.id).await;
        return Err(GatewayError::backend("store API token", error));
    }
    tracing::info!(user = %user, name, "API token issued");
    Ok(token)
}

/// `user`'s tokens, oldest first.
pub async fn list(tokens: &kv::Store, user: &UserId) -> Result<Vec<TokenInfo>, GatewayError> {
    Ok(read_index(tokens, user).await?.0.tokens)
}

/// Revokes the token `id` (its hash, as [`list`] shows it) if it is one of `user`'s; whether
/// it was.
pub async fn revoke_by_id(
    tokens: &kv::Store,
    user: &UserId,
    id: &str,
) -> Result<bool, GatewayError> {
    let listed = read_index(tokens, user)
        .await?
        .0
        .tokens
        .iter()
        .any(|t| t.id == id);
    if !listed {
        return Ok(false);
    }
    // Defence in depth: the record under the hash must name the same user.
    if let Some(value) = tokens
        .get(id)
        .await
        .map_err(|e| GatewayError::backend("read API token", e))?
    {
        let owner = serde_json::from_slice::<TokenRecord>(&value).map(|r| r.user);
        if owner.as_ref().ok() != Some(user) {
            tracing::error!(user = %user, token_hash = id, "token index names a token of someone else");
            return Ok(false);
        }
        tokens
            .purge(id)
            .await
            .map_err(|e| GatewayError::backend("revoke API token", e))?;
    }
    remove_from_index(tokens, user, id).await?;
    tracing::info!(user = %user, token_hash = id, "API token revoked");
    Ok(true)
}

fn index_key(user: &UserId) -> String {
    format!("{INDEX_PREFIX}{}", user.as_str())
}

/// The user's index with its revision (0: no index yet).
async fn read_index(tokens: &kv::Store, user: &UserId) -> Result<(TokenIndex, u64), GatewayError> {
    let entry = tokens
        .entry(index_key(user))
        .await
        .map_err(|e| GatewayError::backend("read token index", e))?;
    match entry {
        Some(entry) if entry.operation == kv::Operation::Put => {
            let index = serde_json::from_slice(&entry.value).unwrap_or_else(|error| {
                tracing::error!(%error, user = %user, "unreadable token index, starting a new one");
                TokenIndex::default()
            });
            Ok((index, entry.revision))
        }
        // A purged index leaves a marker whose revision a new value must follow.
        Some(entry) => Ok((TokenIndex::default(), entry.revision)),
        None => Ok((TokenIndex::default(), 0)),
    }
}

/// Changes the user's index by compare-and-set; `change` returns `false` to leave it.
async fn update_index(
    tokens: &kv::Store,
    user: &UserId,
    mut change: impl FnMut(&mut TokenIndex) -> bool,
) -> Result<(), GatewayError> {
    let key = index_key(user);
    for _ in 0..32 {
        let (mut index, revision) = read_index(tokens, user).await?;
        if !change(&mut index) {
            return Ok(());
        }
        let value = serde_json::to_vec(&index).expect("a token index always serializes");
        let written = if revision == 0 {
            tokens
                .create(key.as_str(), value.into())
                .await
                .map(|_| ())
                .map_err(|e| {
                    (
                        e.kind() == kv::CreateErrorKind::AlreadyExists,
                        e.to_string(),
                    )
                })
        } else {
            tokens
                .update(key.as_str(), value.into(), revision)
                .await
                .map(|_| ())
                .map_err(|e| {
                    (
                        e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                        e.to_string(),
                    )
                })
        };
        match written {
            Ok(()) => return Ok(()),
            Err((true, _)) => continue,
            Err((false, error)) => return Err(GatewayError::backend("write token index", error)),
        }
    }
    Err(GatewayError::backend(
        "write token index",
        "too many concurrent changes",
    ))
}

async fn remove_from_index(
    tokens: &kv::Store,
    user: &UserId,
    id: &str,
) -> Result<(), GatewayError> {
    update_index(tokens, user, |index| {
        let before = index.tokens.len();
        index.tokens.retain(|t| t.id != id);
        index.tokens.len() != before
    })
    .await
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
    let Some(record) = lookup(tokens, token).await? else {
        return Ok(());
    };
    let key = key_of(token);
    tokens
        .purge(key.as_str())
        .await
        .map_err(|e| GatewayError::backend("revoke API token", e))?;
    remove_from_index(tokens, &record.user, &key).await
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
