//! The middleware's live view of the nodes: every node's latest reading and every
//! middleware's presence, kept current by watching the buckets `cola-energy` and `cola-nodes`
//! (never read per job), and the readings of the last period for the [`Forecast`] (loaded from
//! the stream `COLA_ENERGY` at the start, then from the watch).

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use async_nats::jetstream::kv::{self, Operation};
use chrono::{DateTime, Utc};
use cola_wire::{
    energy::{EnergyReading, NodeName, NodePresence, Share},
    energy_store::{EnergyStore, PRESENCE_TTL},
};
use futures::StreamExt as _;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{
    forecast::{Forecast, Outlook},
    policy::NodeState,
};

/// How long a watch that ended waits before it is made again.
const REWATCH_AFTER: Duration = Duration::from_secs(1);
/// The most readings of the last period loaded at the start.
const LOAD_AT_MOST: usize = 200_000;

/// What the middleware knows about the nodes now.
#[derive(Default)]
pub struct NodesView {
    readings: RwLock<HashMap<NodeName, EnergyReading>>,
    presences: RwLock<HashMap<NodeName, NodePresence>>,
    /// The readings of the last period (`None`: no forecast).
    forecast: Option<RwLock<Forecast>>,
    /// Rung (to every waiter) when a reading or a presence changed, or this middleware's room.
    pub changed: Notify,
}

impl NodesView {
    /// A view that keeps a forecast over `forecast_period` (`None`: none).
    pub fn new(forecast_period: Option<Duration>) -> Self {
        Self {
            forecast: forecast_period.map(|period| RwLock::new(Forecast::new(period))),
            ..Self::default()
        }
    }

    /// What is expected of the nodes that `counts` from `now` to `until` (see
    /// [`Forecast::outlook`]); `None` without a forecast, or without readings from a period ago.
    pub fn forecast(
        &self,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        counts: impl Fn(&NodeName) -> bool,
    ) -> Option<Outlook> {
        let forecast = self.forecast.as_ref()?.read().expect("not poisoned");
        forecast.outlook(now, until, counts)
    }

    fn remember(&self, reading: &EnergyReading) {
        if let Some(forecast) = &self.forecast {
            forecast.write().expect("not poisoned").record(
                &reading.node,
                reading.updated_at,
                reading.renewable_share,
            );
        }
    }

    /// Loads the readings kept in the last period (the stream keeps one per node every
    /// [`super::intake::HISTORY_EVERY`]) into the forecast.
    async fn load_history(&self, store: &EnergyStore, period: Duration) {
        let since = cola_wire::job::now()
            - chrono::Duration::from_std(period).unwrap_or(chrono::TimeDelta::MAX);
        match store.history(since, LOAD_AT_MOST).await {
            Ok(readings) => {
                for reading in &readings {
                    self.remember(reading);
                }
                tracing::debug!(
                    readings = readings.len(),
                    "forecast: the last period loaded"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot load the last period's energy readings; the forecast starts empty")
            }
        }
    }

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

    /// Keeps the view current from `store` (the latest readings, the presences, and at the
    /// start the last period's readings) until `stop`.
    pub async fn follow(self: Arc<Self>, store: EnergyStore, stop: CancellationToken) {
        if let Some(forecast) = &self.forecast {
            let period = forecast.read().expect("not poisoned").period();
            self.load_history(&store, period).await;
        }
        let view = self.clone();
        let readings = follow_bucket(store.readings, stop.clone(), move |key, value| {
            let mut readings = view.readings.write().expect("not poisoned");
            update(&mut readings, key, value);
            if let Some(reading) = NodeName::parse(key).ok().and_then(|n| readings.get(&n)) {
                view.remember(reading);
            }
            drop(readings);
            view.changed.notify_waiters();
        });
        let presences = follow_bucket(store.nodes, stop, move |key, value| {
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
