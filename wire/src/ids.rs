//! Domain newtypes parsed at the edge: a value of these types is always valid.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("not a job id (a UUID is expected)")]
    JobId,
    #[error("not a user id (1 to 64 characters from A-Z a-z 0-9 _ -)")]
    UserId,
    #[error("not a language name (1 to 32 characters from a-z 0-9 _)")]
    Language,
    #[error("not a request id (1 to 64 characters from A-Z a-z 0-9 . _ : -)")]
    RequestId,
}

/// The id of the request that submitted a job, to follow it through every process's logs:
/// the client's own (`X-Request-Id`) when it is a safe token, else one the gateway made.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RequestId(String);

impl RequestId {
    /// A new id: a UUID v7 (its time, then random bits), without hyphens.
    pub fn new() -> Self {
        Self(Uuid::now_v7().simple().to_string())
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
        if (1..=64).contains(&s.len()) && s.chars().all(safe) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::RequestId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RequestId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<RequestId> for String {
    fn from(id: RequestId) -> String {
        id.0
    }
}

/// A job's id: a UUID v7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(value_type = String, format = Uuid, examples("0199a8e0-5b1c-7c3e-9f1a-2b3c4d5e6f70"))
)]
pub struct JobId(Uuid);

impl JobId {
    /// A new, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for JobId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        // Only the canonical hyphenated form: it is what keys and object names contain.
        if s.len() != 36 {
            return Err(IdError::JobId);
        }
        Uuid::parse_str(s).map(Self).map_err(|_| IdError::JobId)
    }
}

/// A user: a token safe in a KV key, a subject and an object name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::UserId)
        }
    }

    /// The id of the person an identity provider knows as `sub` (stable, unlike the e-mail).
    pub fn from_identity(issuer: &str, subject: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(issuer.as_bytes());
        hash.update([0]);
        hash.update(subject.as_bytes());
        Self(format!("u{}", &hex::encode(hash.finalize())[..32]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for UserId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<UserId> for String {
    fn from(u: UserId) -> String {
        u.0
    }
}

/// A language name as it appears in the subject `cola.<language>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Language(String);

impl Language {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::Language)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Language {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<Language> for String {
    fn from(l: Language) -> String {
        l.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_time_ordered_and_round_trip() {
        let a = JobId::new();
        let b = JobId::new();
        assert!(a < b);
        assert_eq!(a.to_string().parse::<JobId>().unwrap(), a);
        assert!("../etc/passwd".parse::<JobId>().is_err());
        assert!("0190b3c45d6e7f809a0b1c2d3e4f5a6b".parse::<JobId>().is_err());
    }

    #[test]
    fn user_ids_reject_what_is_unsafe_in_keys_and_paths() {
        for bad in ["", "a.b", "a/b", "a*", "a>", "..", &"x".repeat(65)] {
            assert!(UserId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(UserId::parse("dev").is_ok());
        let u = UserId::from_identity("https://accounts.google.com", "1234");
        assert_eq!(u.as_str().len(), 33);
        assert!(UserId::parse(u.as_str()).is_ok());
        assert_ne!(u, UserId::from_identity("https://other", "1234"));
    }

    #[test]
    fn language_names_are_subject_tokens() {
        assert!(Language::parse("javascript").is_ok());
        for bad in ["", "C", "c.x", "c>", "c*", "c d"] {
            assert!(Language::parse(bad).is_err(), "{bad:?}");
        }
    }
}
