//! The middleware's metrics (`GET /metrics` on its health listener): jobs finished by
//! language, status and reason; how long they queued, ran and took in all; jobs in flight;
//! executors started ahead and waiting; the stream consumer's backlog; the NATS connection.
//! Labels name a language, a status or a reason: never a user or a job.
//!
//! Counted by the middleware that carried each job to its end, so that the sum over replicas
//! is the service's. The consumer's backlog is the stream's, the same from every replica.

use std::sync::{Arc, atomic::AtomicU64};

use async_nats::jetstream::consumer::PullConsumer;
use axum::response::Response;
use chrono::{DateTime, Utc};
use cola_telemetry::{
    metrics::{HistogramMaker, exposition, job_seconds, registry},
    nats::NatsConnectionMetrics,
};
use cola_wire::{JobRecord, Language};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::backend::Backend;

/// Every metric the middleware keeps, registered once at start.
pub struct MiddlewareMetrics {
    registry: Registry,
    pub nats: NatsConnectionMetrics,
    finished: Family<FinishedLabels, Counter>,
    queue_seconds: Family<LanguageLabel, Histogram, HistogramMaker>,
    run_seconds: Family<LanguageLabel, Histogram, HistogramMaker>,
    total_seconds: Family<LanguageLabel, Histogram, HistogramMaker>,
    in_flight: Family<LanguageLabel, Gauge>,
    executors_waiting: Gauge,
    consumer_pending: Gauge,
    consumer_ack_pending: Gauge,
    ready: Gauge,
    telemetry: Family<OutcomeLabel, Counter>,
    executor_cpu: Family<PowerLabels, Counter<f64, AtomicU64>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PowerLabels {
    /// A node name (the operator's nodes: a bounded set).
    node: String,
    /// `renewable` or `grid`.
    power: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LanguageLabel {
    language: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FinishedLabels {
    language: &'static str,
    status: &'static str,
    /// Empty for a job that succeeded or was cancelled.
    reason: &'static str,
}

impl Default for MiddlewareMetrics {
    fn default() -> Self {
        let mut metrics = Self {
            registry: registry(),
            nats: NatsConnectionMetrics::default(),
            finished: Family::default(),
            queue_seconds: Family::new_with_constructor(job_seconds),
            run_seconds: Family::new_with_constructor(job_seconds),
            total_seconds: Family::new_with_constructor(job_seconds),
            in_flight: Family::default(),
            executors_waiting: Gauge::default(),
            consumer_pending: Gauge::default(),
            consumer_ack_pending: Gauge::default(),
            ready: Gauge::default(),
            telemetry: Family::default(),
            executor_cpu: Family::default(),
        };
        metrics.register();
        metrics
    }
}

impl MiddlewareMetrics {
    fn register(&mut self) {
        let registry = &mut self.registry;
        self.nats.register(registry);
        registry.register(
            "jobs_finished",
            "Jobs this middleware carried to their end, by language, status and reason",
            self.finished.clone(),
        );
        registry.register(
            "job_queue_seconds",
            "Time from a finished job's submission to its start, by language",
            self.queue_seconds.clone(),
        );
        registry.register(
            "job_run_seconds",
            "Time from a finished job's start to its end, by language",
            self.run_seconds.clone(),
        );
        registry.register(
            "job_total_seconds",
            "Time from a finished job's submission to its end, by language",
            self.total_seconds.clone(),
        );
        registry.register(
            "jobs_in_flight",
            "Jobs this middleware holds now (waiting for a slot or running), by language",
            self.in_flight.clone(),
        );
        registry.register(
            "middleware_ready",
            "Whether this middleware is connected to NATS and pulling jobs (1) or not (0), when \
             scraped",
            self.ready.clone(),
        );
        registry.register(
            "executors_waiting",
            "Executors started ahead of their jobs and waiting for one, when scraped",
            self.executors_waiting.clone(),
        );
        registry.register(
            "consumer_pending_messages",
            "Job messages in the stream not yet delivered to any middleware, when scraped",
            self.consumer_pending.clone(),
        );
        registry.register(
            "energy_readings",
            "Energy telemetry readings this middleware took in, by outcome: kept, failed (NATS \
             would not keep it), or why it was refused (node_name, too_large, not_json, \
             out_of_range)",
            self.telemetry.clone(),
        );
        registry.register(
            "executor_cpu_seconds",
            "CPU time of the executors of the jobs this middleware carried to their end, by \
             node and by power: renewable (the node's renewable share when the job started) \
             or grid (the rest, and all of it when the share was not known)",
            self.executor_cpu.clone(),
        );
        registry.register(
            "consumer_ack_pending_messages",
            "Job messages delivered to middlewares and not yet acknowledged, when scraped",
            self.consumer_ack_pending.clone(),
        );
    }

    /// A job of `language` is held from now until the returned guard drops.
    pub fn in_flight(self: &Arc<Self>, language: &Language) -> InFlight {
        let labels = LanguageLabel {
            language: language_label(language),
        };
        self.in_flight.get_or_create(&labels).inc();
        InFlight {
            metrics: self.clone(),
            labels,
        }
    }

    /// A telemetry reading taken in, with its outcome's label.
    pub fn telemetry(&self, outcome: &'static str) {
        self.telemetry
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// `record` has ended (it is terminal).
    pub fn finished(&self, record: &JobRecord) {
        self.count_cpu(record);
        let language = language_label(&record.language);
        let labels = FinishedLabels {
            language,
            status: record.status.as_str(),
            reason: record.reason.map_or("", |r| r.as_str()),
        };
        self.finished.get_or_create(&labels).inc();
        let language = LanguageLabel {
            language: labels.language,
        };
        let times = [
            (
                &self.queue_seconds,
                Some(record.created_at),
                record.started_at,
            ),
            (&self.run_seconds, record.started_at, record.finished_at),
            (
                &self.total_seconds,
                Some(record.created_at),
                record.finished_at,
            ),
        ];
        for (histogram, from, to) in times {
            if let Some(seconds) = seconds_between(from, to) {
                histogram.get_or_create(&language).observe(seconds);
            }
        }
    }

    /// The executor CPU time of `record` (ended), split by the renewable share of its node.
    fn count_cpu(&self, record: &JobRecord) {
        let (Some(cpu_ms), Some(node)) = (record.timings_ms.cpu, &record.node) else {
            return;
        };
        let seconds = cpu_ms as f64 / 1000.0;
        let renewable = seconds * record.renewable_share.map_or(0.0, |s| s.get());
        for (power, part) in [("renewable", renewable), ("grid", seconds - renewable)] {
            let labels = PowerLabels {
                node: node.to_string(),
                power,
            };
            self.executor_cpu.get_or_create(&labels).inc_by(part);
        }
    }

    /// The metrics as text, with the gauges that are read when scraped read now from `now`
    /// (`None` before the middleware is connected and has its consumer); `ready`: whether the
    /// middleware pulls jobs while connected.
    pub async fn render(&self, now: Option<&Observed>, ready: bool) -> Response {
        self.ready.set(i64::from(ready));
        if let Some(now) = now {
            self.read_now(now).await;
        }
        exposition(&self.registry)
    }

    async fn read_now(&self, now: &Observed) {
        self.nats.observe(&now.client);
        let waiting = now.backend.executors_waiting();
        self.executors_waiting
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        match now.consumer.get_info().await {
            Ok(info) => {
                let pending = i64::try_from(info.num_pending).unwrap_or(i64::MAX);
                self.consumer_pending.set(pending);
                let ack_pending = i64::try_from(info.num_ack_pending).unwrap_or(i64::MAX);
                self.consumer_ack_pending.set(ack_pending);
            }
            // The last values stay; `cola_nats_connected` tells why they may be old.
            Err(error) => tracing::warn!(%error, "cannot read the consumer's backlog"),
        }
    }
}

/// What the gauges read when scraped are read from, once the middleware runs.
#[derive(Clone)]
pub struct Observed {
    pub client: async_nats::Client,
    pub consumer: PullConsumer,
    pub backend: Arc<dyn Backend>,
}

/// A job held by the middleware; counted in `cola_jobs_in_flight` until dropped.
pub struct InFlight {
    metrics: Arc<MiddlewareMetrics>,
    labels: LanguageLabel,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.in_flight.get_or_create(&self.labels).dec();
    }
}

/// A language's name from the language table: the label's values stay a fixed set whatever
/// a message says (an unknown language, which never runs, is `unknown`).
fn language_label(name: &Language) -> &'static str {
    cola_wire::language(name).map_or("unknown", |l| l.name)
}

/// Seconds from `from` to `to`, when both are known and in order.
fn seconds_between(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Option<f64> {
    let micros = (to? - from?).num_microseconds()?;
    (micros >= 0).then(|| micros as f64 / 1e6)
}
