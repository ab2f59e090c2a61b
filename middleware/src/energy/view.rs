//! The middleware's live view of the nodes: every node's latest reading and every
//! middleware's presence, kept current by watching the buckets `cola-energy` and `cola-nodes`
//! (never read per job).

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use async_nats::jetstream::kv::{self, Operation};
use chrono::{DateTime, Utc};
use cola_wire::{
    energy::{EnergyReading, NodeName, NodePresence, Share},
    energy_store::PRESENCE_TTL,
};
use futures::StreamExt as _;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::policy::NodeState;

/// How long a watch that ended waits before it is made again.
const REWATCH_AFTER: Duration = Duration::from_secs(1);

/// What the middleware knows about the nodes now.
#[derive(Default)]
pub struct NodesView {
    readings: RwLock<HashMap<NodeName, EnergyReading>>,
    presences: RwLock<HashMap<NodeName, NodePresence>>,
    /// Rung (to every waiter) when a reading or a presence changed, or this middleware's room.
    pub changed: Notify,
}

impl NodesView {
    /// The nodes with a middleware, with their fresh shares (`fresh_for` at `now`). A presence
    /// not refreshed within [`PRESENCE_TTL`] is gone (the bucket drops it without telling its
    /// watchers).
    pub fn nodes(&self, now: DateTime<Utc>, fresh_for: Duration) -> Vec<NodeState> {
        let presences = self.presences.read().expect("not poisoned");
        presences
            .values()
            .filter(|p| {
                now.signed_duration_since(p.updated_at)
                    .to_std()
                    .is_ok_and(|age| age <= PRESENCE_TTL)
                    || p.updated_at > now
            })
            .map(|p| NodeState {
                node: p.node.clone(),
                share: self.share(&p.node, now, fresh_for),
                free: p.free,
                slots: p.slots,
            })
            .collect()
    }

    /// `node`'s renewable share from a fresh reading, if there is one.
    pub fn share(&self, node: &NodeName, now: DateTime<Utc>, fresh_for: Duration) -> Option<Share> {
        let readings = self.readings.read().expect("not poisoned");
        readings
            .get(node)
            .filter(|r| !r.is_stale(now, fresh_for))
            .map(|r| r.renewable_share)
    }

    /// Every node's fresh share (nodes with a middleware or not: Kubernetes nodes).
    pub fn fresh_shares(&self, now: DateTime<Utc>, fresh_for: Duration) -> Vec<(NodeName, Share)> {
        let readings = self.readings.read().expect("not poisoned");
        let mut shares: Vec<_> = readings
            .values()
            .filter(|r| !r.is_stale(now, fresh_for))
            .map(|r| (r.node.clone(), r.renewable_share))
            .collect();
        shares.sort_by(|a, b| a.0.cmp(&b.0));
        shares
    }

    /// Keeps the view current from `readings` and `presences` until `stop`.
    pub async fn follow(
        self: Arc<Self>,
        readings: kv::Store,
        presences: kv::Store,
        stop: CancellationToken,
    ) {
        let view = self.clone();
        let readings = follow_bucket(readings, stop.clone(), move |key, value| {
            update(
                &mut view.readings.write().expect("not poisoned"),
                key,
                value,
            );
            view.changed.notify_waiters();
        });
        let presences = follow_bucket(presences, stop, move |key, value| {
            update(
                &mut self.presences.write().expect("not poisoned"),
                key,
                value,
            );
            self.changed.notify_waiters();
        });
        tokio::join!(readings, presences);
    }
}

/// Puts the decoded `value` under `key` (a node name), or removes it (`None`: deleted, or a
/// value that does not decode).
fn update<T: DeserializeOwned>(map: &mut HashMap<NodeName, T>, key: &str, value: Option<&[u8]>) {
    let Ok(node) = NodeName::parse(key) else {
        return;
    };
    match value.and_then(|v| serde_json::from_slice(v).ok()) {
        Some(decoded) => {
            map.insert(node, decoded);
        }
        None => {
            map.remove(&node);
        }
    }
}

/// Watches every key of `bucket` (its current values first), passing each change to `apply`
/// (`None` for a deletion), until `stop`; a watch that ends is made again.
async fn follow_bucket(
    bucket: kv::Store,
    stop: CancellationToken,
    apply: impl Fn(&str, Option<&[u8]>),
) {
    while !stop.is_cancelled() {
        match bucket.watch_with_history(">").await {
            Ok(mut watch) => loop {
                let entry = tokio::select! {
                    _ = stop.cancelled() => return,
                    entry = watch.next() => entry,
                };
                match entry {
                    Some(Ok(entry)) => match entry.operation {
                        Operation::Put => apply(&entry.key, Some(&entry.value)),
                        Operation::Delete | Operation::Purge => apply(&entry.key, None),
                    },
                    Some(Err(e)) => {
                        tracing::warn!(bucket = bucket.name, error = %e, "watch failed; watching again");
                        break;
                    }
                    None => break,
                }
            },
            Err(e) => tracing::warn!(bucket = bucket.name, error = %e, "cannot watch"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(REWATCH_AFTER) => {}
        }
    }
}
