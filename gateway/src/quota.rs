//! Per-user quotas, checked before anything of a job is queued (no record, no input object,
//! no message): a user who is over one gets `429 Too Many Requests` with `Retry-After`.
//!
//! - **Unfinished jobs** (queued or running): the job stream holds a job's message until its
//!   job is terminal, on the user's own subjects `cola.<language>.<user>`, so the count is the
//!   stream's message count on `cola.*.<user>`, asked of the server at each submission. The
//!   stream also refuses, by itself, more than the quota on any one of those subjects
//!   (`max_messages_per_subject` with `discard_new_per_subject`): submissions racing each
//!   other, or through several gateways, cannot get past it in one language.
//! - **Submissions per minute**: a token bucket per user, in this gateway's memory (each
//!   gateway replica counts its own).
//! - **Output bytes stored**: the sizes of the user's output zips stored within the retention
//!   (`cola-usage`, see [`cola_wire::usage`]), read at most every few seconds per user: a
//!   user can go past it by what their jobs store in that time, and by one job's zip.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use cola_wire::{UserId, names, nats::Topology};
use futures::TryStreamExt;

use crate::GatewayError;

/// What a user is refused beyond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaConfig {
    /// Jobs of one user queued or running at once.
    pub max_unfinished: u64,
    /// Submissions one user may make per minute (in bursts of up to as many).
    pub submissions_per_minute: u32,
    /// Bytes of output zips one user may keep stored.
    pub max_stored_bytes: u64,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            max_unfinished: 50,
            submissions_per_minute: 600,
            max_stored_bytes: 512 << 20,
        }
    }
}

impl QuotaConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=100_000).contains(&self.max_unfinished) {
            return Err(format!(
                "the unfinished jobs per user must be between 1 and 100000, got {}",
                self.max_unfinished
            ));
        }
        if !(1..=1_000_000).contains(&self.submissions_per_minute) {
            return Err(format!(
                "the submissions per user and minute must be between 1 and 1000000, got {}",
                self.submissions_per_minute
            ));
        }
        if self.max_stored_bytes < 1 << 20 {
            return Err(format!(
                "the output storage per user must be at least 1 MB, got {} bytes",
                self.max_stored_bytes
            ));
        }
        Ok(())
    }
}

/// When a user over the unfinished-jobs quota is told to come back.
const UNFINISHED_RETRY_AFTER: Duration = Duration::from_secs(5);
/// When a user over the storage quota is told to come back: their oldest outputs expire by
/// the day.
const STORED_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// How long a user's stored bytes, once read, are taken as they are.
const STORED_FRESH_FOR: Duration = Duration::from_secs(5);
/// Users whose submission rate this gateway remembers at most; beyond, those who have not
/// submitted for a minute (their bucket is full again) are forgotten.
const MAX_TRACKED_USERS: usize = 100_000;

/// The quotas of one gateway process.
#[derive(Debug)]
pub struct Quotas {
    config: QuotaConfig,
    /// How long outputs are kept: what a user's stored bytes are summed over.
    retention: Duration,
    rates: Mutex<HashMap<UserId, Bucket>>,
    /// Stored bytes per user, and when they were read.
    stored: Mutex<HashMap<UserId, (Instant, u64)>>,
}

/// A user's submissions left, refilled continuously.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Quotas {
    /// The quotas of `config`, for outputs kept `retention`.
    pub fn new(config: QuotaConfig, retention: Duration) -> Self {
        Self {
            config,
            retention,
            rates: Mutex::new(HashMap::new()),
            stored: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &QuotaConfig {
        &self.config
    }

    /// Admits one more submission of `user`, or says which quota refuses it.
    pub async fn admit(&self, topology: &Topology, user: &UserId) -> Result<(), GatewayError> {
        self.take_submission(user, Instant::now())?;
        let unfinished = unfinished_jobs(topology, user).await?;
        if unfinished >= self.config.max_unfinished {
            return Err(self.unfinished_refusal());
        }
        let stored = self.stored_bytes(topology, user).await?;
        if stored >= self.config.max_stored_bytes {
            return Err(GatewayError::TooManyRequests {
                message: format!(
                    "your outputs take {} MB, the most one user may keep ({} MB): they expire \
                     {} days after their job",
                    stored >> 20,
                    self.config.max_stored_bytes >> 20,
                    self.retention.as_secs().div_ceil(24 * 3600)
                ),
                retry_after: STORED_RETRY_AFTER,
            });
        }
        Ok(())
    }

    /// What `user`'s outputs take, as read at most [`STORED_FRESH_FOR`] ago.
    async fn stored_bytes(&self, topology: &Topology, user: &UserId) -> Result<u64, GatewayError> {
        let now = Instant::now();
        let cached = self.lock_stored().get(user).copied();
        if let Some((read, bytes)) = cached
            && now.duration_since(read) < STORED_FRESH_FOR
        {
            return Ok(bytes);
        }
        let bytes = topology.usage.stored(user, self.retention).await?;
        let mut stored = self.lock_stored();
        if stored.len() >= MAX_TRACKED_USERS {
            stored.retain(|_, (read, _)| now.duration_since(*read) < STORED_FRESH_FOR);
        }
        stored.insert(user.clone(), (now, bytes));
        Ok(bytes)
    }

    fn lock_stored(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, (Instant, u64)>> {
        self.stored.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The refusal of a job beyond the unfinished-jobs quota (also what the stream's own limit
    /// on a user's subject means).
    pub fn unfinished_refusal(&self) -> GatewayError {
        GatewayError::TooManyRequests {
            message: format!(
                "you have {} unfinished jobs, the most one user may have: wait for some to end",
                self.config.max_unfinished
            ),
            retry_after: UNFINISHED_RETRY_AFTER,
        }
    }

    /// Takes one submission from `user`'s bucket at `now`.
    fn take_submission(&self, user: &UserId, now: Instant) -> Result<(), GatewayError> {
        let per_second = f64::from(self.config.submissions_per_minute) / 60.0;
        let capacity = f64::from(self.config.submissions_per_minute);
        let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        if rates.len() >= MAX_TRACKED_USERS && !rates.contains_key(user) {
            rates.retain(|_, b| now.duration_since(b.at) < Duration::from_secs(60));
        }
        let bucket = rates.entry(user.clone()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let refilled = now.duration_since(bucket.at).as_secs_f64() * per_second;
        bucket.tokens = (bucket.tokens + refilled).min(capacity);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            let wait = (1.0 - bucket.tokens) / per_second;
            return Err(GatewayError::TooManyRequests {
                message: format!(
                    "you submitted more than {} jobs in a minute, the most one user may",
                    self.config.submissions_per_minute
                ),
                retry_after: Duration::from_secs_f64(wait.ceil().max(1.0)),
            });
        }
        bucket.tokens -= 1.0;
        Ok(())
    }
}

/// How many of `user`'s jobs are queued or running: their messages in the job stream.
async fn unfinished_jobs(topology: &Topology, user: &UserId) -> Result<u64, GatewayError> {
    let stream = topology
        .js
        .get_stream_no_info(names::STREAM)
        .await
        .map_err(|e| GatewayError::backend("open the job stream", e))?;
    let subjects = stream
        .info_with_subjects(names::user_job_subjects(user))
        .await
        .map_err(|e| GatewayError::backend("count a user's unfinished jobs", e))?;
    subjects
        .map_err(|e| GatewayError::backend("count a user's unfinished jobs", e))
        .try_fold(
            0u64,
            |total, (_, count)| async move { Ok(total + count as u64) },
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_gets_the_rate_and_a_burst_of_as_much_then_waits() {
        let quotas = Quotas::new(
            QuotaConfig {
                submissions_per_minute: 60,
                ..QuotaConfig::default()
            },
            Duration::from_secs(7 * 24 * 3600),
        );
        let (ada, bob) = (UserId::parse("ada").unwrap(), UserId::parse("bob").unwrap());
        let start = Instant::now();
        for _ in 0..60 {
            quotas.take_submission(&ada, start).unwrap();
        }
        let refused = quotas.take_submission(&ada, start).unwrap_err();
        assert!(
            matches!(refused, GatewayError::TooManyRequests { retry_after, .. } if retry_after == Duration::from_secs(1)),
            "{refused:?}"
        );
        // Others are not affected; a second later, one more is allowed.
        quotas.take_submission(&bob, start).unwrap();
        quotas
            .take_submission(&ada, start + Duration::from_millis(1_001))
            .unwrap();
        assert!(
            quotas
                .take_submission(&ada, start + Duration::from_millis(1_002))
                .is_err()
        );
    }

    #[test]
    fn quotas_outside_their_range_are_refused() {
        assert!(QuotaConfig::default().validate().is_ok());
        let none = QuotaConfig {
            max_unfinished: 0,
            ..QuotaConfig::default()
        };
        assert!(none.validate().unwrap_err().contains("unfinished"));
    }
}
