//! Browser sessions: a [`SessionStore`] over the NATS KV bucket `cola-sessions`, so gateway
//! replicas keep no state of their own, and what a session holds.
//!
//! A session's key in the bucket is the hex SHA-256 of its id (the cookie value): whoever
//! reads the bucket cannot use what they read as a cookie. The bucket's max age removes
//! abandoned sessions; each record also carries its own expiry date (idle expiry, moved on by
//! every request), checked on every load.

use std::{fmt, time::Duration};

use async_nats::jetstream::kv;
use async_trait::async_trait;
use base64::Engine as _;
use cola_wire::UserId;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tower_sessions::{
    Session,
    session::{Id, Record},
    session_store::{self, SessionStore},
};

/// Who is logged in, kept in the session under [`LOGIN_KEY`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub user: UserId,
    pub email: Option<String>,
    pub name: Option<String>,
    /// `oidc` or `dev`.
    pub method: String,
    /// When the login happened (Unix seconds).
    pub at: i64,
}

impl Login {
    /// What the pages call the user: the name, else the e-mail, else the id.
    pub fn label(&self) -> String {
        self.name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .or_else(|| self.email.clone())
            .unwrap_or_else(|| self.user.to_string())
    }
}

/// Session key of the [`Login`].
pub const LOGIN_KEY: &str = "login";
/// Session key of the CSRF token of the session's forms.
pub const CSRF_KEY: &str = "csrf";

/// The session's CSRF token, created on first use.
pub async fn csrf_token(session: &Session) -> Result<String, session_store::Error> {
    if let Some(token) = session
        .get::<String>(CSRF_KEY)
        .await
        .map_err(to_store_error)?
    {
        return Ok(token);
    }
    let token = random_token();
    session
        .insert(CSRF_KEY, &token)
        .await
        .map_err(to_store_error)?;
    Ok(token)
}

/// Whether `submitted` is the session's CSRF token (compared in constant time).
pub async fn csrf_matches(
    session: &Session,
    submitted: Option<&str>,
) -> Result<bool, session_store::Error> {
    let Some(submitted) = submitted else {
        return Ok(false);
    };
    let expected = session
        .get::<String>(CSRF_KEY)
        .await
        .map_err(to_store_error)?;
    Ok(
        expected
            .is_some_and(|expected| constant_time_eq(expected.as_bytes(), submitted.as_bytes())),
    )
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 256 random bits, URL-safe base64.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn to_store_error(error: tower_sessions::session::Error) -> session_store::Error {
    match error {
        tower_sessions::session::Error::Store(e) => e,
        other => session_store::Error::Backend(other.to_string()),
    }
}

/// Sessions in the `cola-sessions` KV bucket.
#[derive(Clone)]
pub struct NatsSessionStore {
    kv: kv::Store,
}

impl fmt::Debug for NatsSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSessionStore")
            .field("bucket", &self.kv.name)
            .finish()
    }
}

/// What the bucket holds for one session.
#[derive(Serialize, Deserialize)]
struct Stored {
    data: std::collections::HashMap<String, serde_json::Value>,
    /// Unix seconds.
    expires: i64,
}

impl NatsSessionStore {
    pub fn new(kv: kv::Store) -> Self {
        Self { kv }
    }

    /// The bucket's max age (zero: none), which caps the idle expiry of sessions.
    pub async fn max_age(&self) -> Result<Duration, session_store::Error> {
        let status = self.kv.status().await.map_err(backend)?;
        Ok(status.max_age())
    }

    fn encode(record: &Record) -> Result<bytes::Bytes, session_store::Error> {
        let stored = Stored {
            data: record.data.clone(),
            expires: record.expiry_date.unix_timestamp(),
        };
        serde_json::to_vec(&stored)
            .map(Into::into)
            .map_err(|e| session_store::Error::Encode(e.to_string()))
    }
}

/// The bucket key of a session id: hex SHA-256 of the id as the cookie carries it.
pub fn key_of(id: &Id) -> String {
    hex::encode(Sha256::digest(id.to_string().as_bytes()))
}

fn backend(error: impl fmt::Display) -> session_store::Error {
    session_store::Error::Backend(error.to_string())
}

#[async_trait]
impl SessionStore for NatsSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let value = Self::encode(record)?;
        // A collision of 128 random bits is next to impossible; a few retries make it harmless.
        for _ in 0..8 {
            match self.kv.create(key_of(&record.id), value.clone()).await {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    record.id = Id::default();
                }
                Err(e) => return Err(backend(e)),
            }
        }
        Err(session_store::Error::Backend(
            "could not find a free session id".into(),
        ))
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.kv
            .put(key_of(&record.id), Self::encode(record)?)
            .await
            .map(|_| ())
            .map_err(backend)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let key = key_of(id);
        let Some(value) = self.kv.get(key.as_str()).await.map_err(backend)? else {
            return Ok(None);
        };
        let stored: Stored = match serde_json::from_slice(&value) {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(%error, "unreadable session record, ignoring it");
                return Ok(None);
            }
        };
        let Ok(expiry_date) = OffsetDateTime::from_unix_timestamp(stored.expires) else {
            return Ok(None);
        };
        if expiry_date <= OffsetDateTime::now_utc() {
            if let Err(error) = self.kv.purge(key.as_str()).await {
                tracing::debug!(%error, "could not remove an expired session");
            }
            return Ok(None);
        }
        Ok(Some(Record {
            id: *id,
            data: stored.data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.kv.purge(key_of(id)).await.map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_compare_in_constant_time_and_are_random() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
    }

    #[test]
    fn keys_hide_the_session_id() {
        let id = Id::default();
        let key = key_of(&id);
        assert_eq!(key.len(), 64);
        assert!(!key.contains(&id.to_string()));
    }

    #[test]
    fn labels_prefer_the_name() {
        let mut login = Login {
            user: UserId::parse("u1").unwrap(),
            email: Some("a@example.edu".into()),
            name: Some("Ada".into()),
            method: "oidc".into(),
            at: 0,
        };
        assert_eq!(login.label(), "Ada");
        login.name = None;
        assert_eq!(login.label(), "a@example.edu");
        login.email = None;
        assert_eq!(login.label(), "u1");
    }
}
