//! Telemetry in: the readings devices publish on `energy.<node>` (directly, or as the MQTT topic
//! `energy/<node>` through NATS's MQTT listener), checked and kept as each node's latest in
//! `cola-energy`, and now and then in the day's history. Every middleware listens in one queue
//! group, so each reading is kept once. A reading that is not one (a bad node name, a payload
//! that is not JSON, a share out of range) is counted and logged, and changes nothing.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use cola_wire::{
    energy::{EnergyError, EnergyReading, NodeName, Telemetry},
    energy_store::EnergyStore,
    names,
};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use crate::metrics::MiddlewareMetrics;

/// How often a node's readings go to the day's history (its latest is always kept).
pub const HISTORY_EVERY: Duration = Duration::from_secs(30);
/// How often a refused reading of the same node is logged (each one is counted).
const LOG_REFUSED_EVERY: Duration = Duration::from_secs(60);

/// Takes readings in from `client` until `stop`.
pub async fn take_in(
    client: async_nats::Client,
    store: EnergyStore,
    metrics: Arc<MiddlewareMetrics>,
    stop: CancellationToken,
) {
    let mut subscription = match client
        .queue_subscribe(names::ENERGY_SUBJECTS, names::ENERGY_INTAKE_GROUP.into())
        .await
    {
        Ok(subscription) => subscription,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for energy telemetry");
            return;
        }
    };
    let mut intake = Intake::default();
    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => break,
            message = subscription.next() => message,
        };
        let Some(message) = message else { break };
        let outcome = intake
            .keep(&store, &message.subject, &message.payload, Instant::now())
            .await;
        metrics.telemetry(outcome.label());
        if let Outcome::Refused { node, error } = &outcome
            && intake.should_log(node, Instant::now())
        {
            tracing::warn!(subject = %message.subject, error = %error, "energy telemetry refused");
        }
    }
    let _ = subscription.unsubscribe().await;
}

/// What became of one reading.
#[derive(Debug)]
pub enum Outcome {
    Kept,
    Refused {
        node: String,
        error: EnergyError,
    },
    /// NATS would not keep it.
    Failed,
}

impl Outcome {
    /// The metric label of the outcome: `kept`, `failed`, or the kind of refusal.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Kept => "kept",
            Self::Failed => "failed",
            Self::Refused { error, .. } => error.cause(),
        }
    }
}

/// The intake's memory: when each node's readings last went to the history, and when a
/// refusal about it was last logged.
#[derive(Default)]
struct Intake {
    history: HashMap<NodeName, Instant>,
    logged: HashMap<String, Instant>,
}

impl Intake {
    async fn keep(
        &mut self,
        store: &EnergyStore,
        subject: &str,
        payload: &[u8],
        now: Instant,
    ) -> Outcome {
        let node_part = names::node_of_energy_subject(subject).unwrap_or(subject);
        let refused = |error| Outcome::Refused {
            node: node_part.chars().take(63).collect(),
            error,
        };
        let node = match NodeName::parse(node_part) {
            Ok(node) => node,
            Err(e) => return refused(e),
        };
        let telemetry = match Telemetry::parse(payload) {
            Ok(telemetry) => telemetry,
            Err(e) => return refused(e),
        };
        let reading = EnergyReading::new(node, telemetry, cola_wire::job::now());
        if let Err(e) = store.put_reading(&reading).await {
            tracing::warn!(node = %reading.node, error = %e, "cannot keep an energy reading");
            return Outcome::Failed;
        }
        let due = self
            .history
            .get(&reading.node)
            .is_none_or(|last| now.duration_since(*last) >= HISTORY_EVERY);
        if due {
            match store.append_history(&reading).await {
                Ok(()) => {
                    self.history.insert(reading.node, now);
                }
                Err(e) => tracing::warn!(error = %e, "cannot keep an energy reading's history"),
            }
        }
        Outcome::Kept
    }

    /// Whether a refusal about `node` is logged now (at most one per node a minute).
    fn should_log(&mut self, node: &str, now: Instant) -> bool {
        let due = self
            .logged
            .get(node)
            .is_none_or(|last| now.duration_since(*last) >= LOG_REFUSED_EVERY);
        if due {
            if self.logged.len() > 10_000 {
                self.logged.clear();
            }
            self.logged.insert(node.to_owned(), now);
        }
        due
    }
}
