//! What each user keeps in the object store, for the per-user storage quota: the bytes of the
//! output zips stored, counted per user and day in the KV bucket `cola-usage` (key
//! `<user>.<day>`, the day counted from 1970-01-01 UTC). Whoever stores a zip adds its size
//! ([`crate::nats::report_outcome`], the numeric runtime); the gateway sums a user's days within
//! the retention, as the outputs themselves expire after it. The bucket's own age limit (a day
//! more than the retention) drops old days.
//!
//! A count is an upper bound: a zip stored twice (a job solved again after a redelivery) counts
//! twice, which can only make a user reach the quota sooner.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use async_nats::jetstream::kv;
use futures::future::try_join_all;

use crate::{UserId, nats_error::NatsError};

const DAY_SECS: u64 = 24 * 3600;

/// The `cola-usage` bucket, typed.
#[derive(Clone)]
pub struct UsageStore {
    pub kv: kv::Store,
}

impl UsageStore {
    /// Adds `bytes` to `user`'s count of today.
    pub async fn add(&self, user: &UserId, bytes: u64) -> Result<(), NatsError> {
        let key = day_key(user, today());
        loop {
            let entry = self
                .kv
                .entry(&key)
                .await
                .map_err(|e| NatsError::nats("read a usage count", e))?;
            let (count, revision) = match entry {
                Some(e) if matches!(e.operation, kv::Operation::Put) => {
                    (parse_count(&e.value), e.revision)
                }
                Some(e) => (0, e.revision),
                None => (0, 0),
            };
            let value = (count + bytes).to_string().into();
            // Somebody else counting first makes the write fail: count again from theirs.
            if revision == 0 {
                match self.kv.create(&key, value).await {
                    Ok(_) => return Ok(()),
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(NatsError::nats("write a usage count", e)),
                }
            }
            match self.kv.update(&key, value, revision).await {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                Err(e) => return Err(NatsError::nats("write a usage count", e)),
            }
        }
    }

    /// What `user` stored in the last `within` (to the day).
    pub async fn stored(&self, user: &UserId, within: Duration) -> Result<u64, NatsError> {
        let days = within.as_secs().div_ceil(DAY_SECS);
        let today = today();
        let reads = (0..=days).map(|back| {
            let key = day_key(user, today.saturating_sub(back));
            async move {
                self.kv
                    .get(&key)
                    .await
                    .map(|value| value.map_or(0, |v| parse_count(&v)))
                    .map_err(|e| NatsError::nats("read a usage count", e))
            }
        });
        Ok(try_join_all(reads).await?.into_iter().sum())
    }
}

/// Bytes stored, counted in memory and written to [`UsageStore`] now and then: for a
/// process that stores many small zips (the middleware's numeric runtime), one write per user
/// and flush rather than two round trips per zip.
#[derive(Debug, Default)]
pub struct Tally {
    pending: Mutex<HashMap<UserId, u64>>,
}

impl Tally {
    pub fn add(&self, user: &UserId, bytes: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        *pending.entry(user.clone()).or_default() += bytes;
    }

    /// Writes what was counted since the last flush; what cannot be written is kept for the
    /// next.
    pub async fn flush(&self, store: &UsageStore) {
        let counted = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for (user, bytes) in counted {
            if let Err(e) = store.add(&user, bytes).await {
                tracing::warn!(%user, error = %e, "cannot write a usage count; keeping it for later");
                self.add(&user, bytes);
            }
        }
    }
}

fn today() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / DAY_SECS)
}

fn day_key(user: &UserId, day: u64) -> String {
    format!("{}.{day}", user.as_str())
}

fn parse_count(value: &[u8]) -> u64 {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_user_and_day() {
        let user = UserId::parse("ada").unwrap();
        assert_eq!(day_key(&user, 20_000), "ada.20000");
        assert_eq!(parse_count(b"1234"), 1234);
        assert_eq!(parse_count(b"junk"), 0);
    }
}
