//! Listing one user's jobs without scanning anybody else's.
//!
//! The `cola-jobs` bucket is the stream `KV_cola-jobs` with one subject per key
//! (`$KV.cola-jobs.<user>.<job-id>`). A short-lived ordered consumer filtered to the user's
//! subjects, delivering the last message per subject and headers only, yields exactly the
//! user's live keys; its pending count at creation says how many to read, so a user without
//! jobs costs one round trip and never a wait.

use std::{str::FromStr as _, time::Duration};

use async_nats::{
    HeaderMap,
    jetstream::{
        consumer::{Consumer, DeliverPolicy, ReplayPolicy, pull},
        kv,
    },
};
use cola_wire::{JobId, JobKey, UserId, names};
use futures::StreamExt as _;

use crate::GatewayError;

/// How long reading one user's keys may take before the listing gives up.
const LISTING_TIMEOUT: Duration = Duration::from_secs(10);

/// The ids of every job `user` has a record of, in no particular order.
pub async fn job_ids(jobs: &kv::Store, user: &UserId) -> Result<Vec<JobId>, GatewayError> {
    let prefix = jobs.prefix.as_str();
    let consumer = jobs
        .stream
        .create_consumer(pull::OrderedConfig {
            description: Some("cola-gateway: list a user's jobs".into()),
            filter_subject: format!("{prefix}{}", names::user_keys(user)),
            deliver_policy: DeliverPolicy::LastPerSubject,
            replay_policy: ReplayPolicy::Instant,
            headers_only: true,
            ..Default::default()
        })
        .await
        .map_err(|e| GatewayError::backend("create job listing consumer", e))?;
    let pending = consumer.cached_info().num_pending;
    let consumer_name = consumer.cached_info().name.clone();
    let ids = if pending == 0 {
        Ok(Vec::new())
    } else {
        tokio::time::timeout(LISTING_TIMEOUT, read_keys(consumer, pending, prefix, user))
            .await
            .unwrap_or_else(|_| {
                Err(GatewayError::backend(
                    "list jobs",
                    format!("reading {pending} keys took longer than {LISTING_TIMEOUT:?}"),
                ))
            })
    };
    // Don't leave the consumer around until the server's inactivity timeout.
    let stream = jobs.stream.clone();
    tokio::spawn(async move {
        if let Err(error) = stream.delete_consumer(&consumer_name).await {
            tracing::debug!(%error, consumer = %consumer_name, "could not delete listing consumer");
        }
    });
    ids
}

async fn read_keys(
    consumer: Consumer<pull::OrderedConfig>,
    pending: u64,
    prefix: &str,
    user: &UserId,
) -> Result<Vec<JobId>, GatewayError> {
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| GatewayError::backend("read job listing", e))?;
    let mut ids = Vec::with_capacity(usize::try_from(pending).unwrap_or(0).min(1 << 16));
    let mut read = 0;
    while read < pending {
        let Some(message) = messages.next().await else {
            break;
        };
        let message = message.map_err(|e| GatewayError::backend("read job listing", e))?;
        read += 1;
        let key = message.subject.as_str().strip_prefix(prefix).unwrap_or("");
        if let Some(key) = JobKey::parse(key)
            && key.user() == user
            && is_put(message.headers.as_ref())
        {
            ids.push(key.id());
        }
        // Stop when the stream has nothing more for this user right now.
        if message.info().is_ok_and(|info| info.pending == 0) {
            break;
        }
    }
    Ok(ids)
}

/// Whether a KV message is a value (not a delete or purge marker).
fn is_put(headers: Option<&HeaderMap>) -> bool {
    let Some(headers) = headers else {
        return true;
    };
    if headers.get("Nats-Marker-Reason").is_some() {
        return false;
    }
    headers.get("KV-Operation").is_none_or(|operation| {
        kv::Operation::from_str(operation.as_str()).is_ok_and(|op| op == kv::Operation::Put)
    })
}

/// One page of a listing: ids newest first, strictly older than `before`.
pub fn page(mut ids: Vec<JobId>, before: Option<JobId>, limit: usize) -> (Vec<JobId>, bool) {
    if let Some(before) = before {
        ids.retain(|id| *id < before);
    }
    ids.sort_unstable_by(|a, b| b.cmp(a));
    let more = ids.len() > limit;
    ids.truncate(limit);
    (ids, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_newest_first_and_continue_before_the_cursor() {
        let ids: Vec<JobId> = (0..5).map(|_| JobId::new()).collect();
        let shuffled = vec![ids[2], ids[0], ids[4], ids[1], ids[3]];
        let (first, more) = page(shuffled.clone(), None, 2);
        assert_eq!(first, [ids[4], ids[3]]);
        assert!(more);
        let (second, more) = page(shuffled.clone(), Some(ids[3]), 2);
        assert_eq!(second, [ids[2], ids[1]]);
        assert!(more);
        let (last, more) = page(shuffled, Some(ids[1]), 2);
        assert_eq!(last, [ids[0]]);
        assert!(!more);
    }

    #[test]
    fn delete_and_purge_markers_are_not_jobs() {
        assert!(is_put(None));
        let mut headers = HeaderMap::new();
        headers.insert("KV-Operation", "PURGE");
        assert!(!is_put(Some(&headers)));
        let mut headers = HeaderMap::new();
        headers.insert("KV-Operation", "DEL");
        assert!(!is_put(Some(&headers)));
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Size", "120");
        assert!(is_put(Some(&headers)));
    }
}
