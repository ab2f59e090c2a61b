//! The energy telemetry on NATS: each node's latest reading (KV `cola-energy`), each
//! middleware's presence (KV `cola-nodes`), and the readings of the last day (stream
//! `COLA_ENERGY`, for the chart on `/energy`). See [`crate::energy`] for the values.

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{self, DeliverPolicy},
    kv,
    stream::{self, DiscardPolicy, StorageType},
};
use chrono::{DateTime, Utc};
use futures::{StreamExt as _, TryStreamExt as _};

use crate::{
    energy::{EnergyReading, NodeName, NodePresence},
    names,
    nats::NatsError,
};

/// How long a node's latest reading is kept when no newer one comes (it is stale long before).
pub const READING_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a middleware's presence is kept unless it refreshes it.
pub const PRESENCE_TTL: Duration = Duration::from_secs(30);
/// How long the readings of the chart are kept.
pub const HISTORY_AGE: Duration = Duration::from_secs(24 * 3600);
/// The most readings kept per node for the chart (one a minute for a day, twice over).
const HISTORY_PER_NODE: i64 = 2 * 24 * 60;

/// The energy buckets and stream.
#[derive(Clone)]
pub struct EnergyStore {
    pub readings: kv::Store,
    pub nodes: kv::Store,
    history: stream::Stream,
    js: jetstream::Context,
}

impl EnergyStore {
    /// Opens the buckets and the stream, making them (with `replicas` copies each) if missing.
    pub async fn ensure(js: &jetstream::Context, replicas: usize) -> Result<Self, NatsError> {
        let kv_config = |bucket: &str, max_age: Duration| kv::Config {
            bucket: bucket.into(),
            history: 1,
            max_age,
            max_bytes: 16 << 20,
            max_value_size: 4096,
            storage: StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        let readings = js
            .create_or_update_key_value(kv_config(names::ENERGY_BUCKET, READING_TTL))
            .await
            .map_err(|e| NatsError::nats("create bucket cola-energy", e))?;
        let nodes = js
            .create_or_update_key_value(kv_config(names::NODES_BUCKET, PRESENCE_TTL))
            .await
            .map_err(|e| NatsError::nats("create bucket cola-nodes", e))?;
        js.create_or_update_stream(stream::Config {
            name: names::ENERGY_HISTORY_STREAM.into(),
            subjects: vec![names::ENERGY_HISTORY_SUBJECTS.into()],
            storage: StorageType::File,
            num_replicas: replicas,
            max_age: HISTORY_AGE,
            max_messages_per_subject: HISTORY_PER_NODE,
            max_bytes: 64 << 20,
            max_message_size: 4096,
            discard: DiscardPolicy::Old,
            ..Default::default()
        })
        .await
        .map_err(|e| NatsError::nats("create stream COLA_ENERGY", e))?;
        let history = js
            .get_stream(names::ENERGY_HISTORY_STREAM)
            .await
            .map_err(|e| NatsError::nats("open stream COLA_ENERGY", e))?;
        Ok(Self {
            readings,
            nodes,
            history,
            js: js.clone(),
        })
    }

    /// Opens the buckets and the stream a middleware made.
    pub async fn open(js: &jetstream::Context) -> Result<Self, NatsError> {
        let (readings, nodes, history) = tokio::try_join!(
            async {
                js.get_key_value(names::ENERGY_BUCKET)
                    .await
                    .map_err(|e| NatsError::nats("open bucket cola-energy", e))
            },
            async {
                js.get_key_value(names::NODES_BUCKET)
                    .await
                    .map_err(|e| NatsError::nats("open bucket cola-nodes", e))
            },
            async {
                js.get_stream(names::ENERGY_HISTORY_STREAM)
                    .await
                    .map_err(|e| NatsError::nats("open stream COLA_ENERGY", e))
            },
        )?;
        Ok(Self {
            readings,
            nodes,
            history,
            js: js.clone(),
        })
    }

    /// Keeps `reading` as its node's latest.
    pub async fn put_reading(&self, reading: &EnergyReading) -> Result<(), NatsError> {
        let value = serde_json::to_vec(reading).expect("a reading serializes");
        self.readings
            .put(reading.node.as_str(), value.into())
            .await
            .map_err(|e| NatsError::nats("put energy reading", e))?;
        Ok(())
    }

    /// Every node's latest reading, by node name (values that do not decode are skipped).
    pub async fn readings(&self) -> Result<Vec<EnergyReading>, NatsError> {
        let keys: Vec<String> = match self.readings.keys().await {
            Ok(keys) => keys
                .try_collect()
                .await
                .map_err(|e| NatsError::nats("list energy readings", e))?,
            Err(e) => return Err(NatsError::nats("list energy readings", e)),
        };
        let mut readings = Vec::with_capacity(keys.len());
        for key in keys {
            let value = self
                .readings
                .get(&key)
                .await
                .map_err(|e| NatsError::nats("get energy reading", e))?;
            if let Some(reading) = value.and_then(|v| serde_json::from_slice(&v).ok()) {
                readings.push(reading);
            }
        }
        readings.sort_by(|a: &EnergyReading, b| a.node.cmp(&b.node));
        Ok(readings)
    }

    /// Adds `reading` to the readings of the last day.
    pub async fn append_history(&self, reading: &EnergyReading) -> Result<(), NatsError> {
        let value = serde_json::to_vec(reading).expect("a reading serializes");
        self.js
            .publish(names::energy_history_subject(&reading.node), value.into())
            .await
            .map_err(|e| NatsError::nats("keep energy reading", e))?
            .await
            .map_err(|e| NatsError::nats("keep energy reading (acknowledgement)", e))?;
        Ok(())
    }

    /// The readings kept since `since`, oldest first, at most `limit`.
    pub async fn history(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<EnergyReading>, NatsError> {
        let consumer = self
            .history
            .create_consumer(consumer::pull::Config {
                deliver_policy: DeliverPolicy::ByStartTime {
                    start_time: time::OffsetDateTime::from_unix_timestamp_nanos(
                        since.timestamp_nanos_opt().unwrap_or_default().into(),
                    )
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
                },
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                memory_storage: true,
                ..Default::default()
            })
            .await
            .map_err(|e| NatsError::nats("read energy history", e))?;
        let mut readings = Vec::new();
        'batches: while readings.len() < limit {
            let mut batch = consumer
                .fetch()
                .max_messages((limit - readings.len()).min(1000))
                .messages()
                .await
                .map_err(|e| NatsError::nats("read energy history", e))?;
            let mut got = 0;
            while let Some(message) = batch.next().await {
                let message = message.map_err(|e| NatsError::nats("read energy history", e))?;
                got += 1;
                if let Ok(reading) = serde_json::from_slice(&message.payload) {
                    readings.push(reading);
                }
                if message.info().is_ok_and(|info| info.pending == 0) {
                    break 'batches;
                }
            }
            if got == 0 {
                break;
            }
        }
        let _ = self
            .history
            .delete_consumer(&consumer.cached_info().name)
            .await;
        Ok(readings)
    }

    /// Keeps `presence` as its node's middleware's (for [`PRESENCE_TTL`]).
    pub async fn put_presence(&self, presence: &NodePresence) -> Result<(), NatsError> {
        let value = serde_json::to_vec(presence).expect("a presence serializes");
        self.nodes
            .put(presence.node.as_str(), value.into())
            .await
            .map_err(|e| NatsError::nats("put node presence", e))?;
        Ok(())
    }

    /// Removes `node`'s presence (its middleware stops).
    pub async fn remove_presence(&self, node: &NodeName) -> Result<(), NatsError> {
        self.nodes
            .delete(node.as_str())
            .await
            .map_err(|e| NatsError::nats("remove node presence", e))
    }
}
