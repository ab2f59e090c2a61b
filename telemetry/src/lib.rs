//! What every cola service reports about itself, the same way: its Prometheus metrics, served
//! at `/metrics` in the OpenMetrics text format by `prometheus-client` ([`metrics`]), what its
//! NATS connection did ([`nats`]), and its logs, as text or one JSON object per line ([`logs`]).
//!
//! Invariants: every metric is named `cola_…` in base units (`_seconds`, `_bytes`; the encoder
//! adds `_total` to counters), and no label carries a user or a job id: each label's values
//! come from a small fixed set (a language, a status, a route template), so a metric's series
//! stay few however many people use the service.

pub mod logs;
pub mod metrics;
pub mod nats;
