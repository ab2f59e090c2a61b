//! The gateway's metrics (`GET /metrics`): jobs submitted by language, submissions refused by
//! cause, HTTP requests by route, method and status with their latency, and the NATS
//! connection. Labels name a language, a cause, a route template (`/api/v1/jobs/{id}`, never
//! the path asked for) or a status: never a user or a job.

use std::time::Duration;

use axum::{http::Method, response::Response};
use cola_telemetry::{
    metrics::{HistogramMaker, exposition, registry, request_seconds},
    nats::NatsConnectionMetrics,
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

use crate::GatewayError;

/// Every metric the gateway keeps, registered once at start.
pub struct GatewayMetrics {
    registry: Registry,
    pub nats: NatsConnectionMetrics,
    submitted: Family<LanguageLabel, Counter>,
    refused: Family<CauseLabel, Counter>,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram, HistogramMaker>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LanguageLabel {
    language: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabel {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    code: u16,
}

/// The route label of a request that matched no route (its path is never a label).
const UNMATCHED: &str = "unmatched";

impl Default for GatewayMetrics {
    fn default() -> Self {
        let mut metrics = Self {
            registry: registry(),
            nats: NatsConnectionMetrics::default(),
            submitted: Family::default(),
            refused: Family::default(),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(request_seconds),
        };
        let registry = &mut metrics.registry;
        metrics.nats.register(registry);
        registry.register(
            "jobs_submitted",
            "Jobs queued, by language",
            metrics.submitted.clone(),
        );
        registry.register(
            "submissions_refused",
            "Submissions refused before anything was queued, by cause (validation, quota, \
             queue_full)",
            metrics.refused.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status code",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its answer's headers, by route template and method",
            metrics.request_seconds.clone(),
        );
        metrics
    }
}

impl GatewayMetrics {
    /// A job of `language` was queued.
    pub fn submitted(&self, language: &'static str) {
        self.submitted
            .get_or_create(&LanguageLabel { language })
            .inc();
    }

    /// A submission ended in `error`: counted when it refused the submission itself (invalid,
    /// over a quota, queue full), not when the service failed.
    pub fn refused(&self, error: &GatewayError) {
        if let Some(cause) = refusal_cause(error) {
            self.refused.get_or_create(&CauseLabel { cause }).inc();
        }
    }

    /// The web form came back with errors next to its fields.
    pub fn form_refused(&self) {
        let cause = "validation";
        self.refused.get_or_create(&CauseLabel { cause }).inc();
    }

    /// A request to `route` (its template; `None` when it matched none) answered with `code`
    /// after `took`.
    pub fn answered(&self, route: Option<&str>, method: &Method, code: u16, took: Duration) {
        let route = route.unwrap_or(UNMATCHED).to_owned();
        let method = method_label(method);
        let labels = RouteLabels { route, method };
        self.request_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        let RouteLabels { route, method } = labels;
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                code,
            })
            .inc();
    }

    /// The metrics as text, with the connection's state read from `client` now.
    pub fn render(&self, client: &async_nats::Client) -> Response {
        self.nats.observe(client);
        exposition(&self.registry)
    }
}

/// Why a submission was refused, as a label; `None` for an error of the service.
fn refusal_cause(error: &GatewayError) -> Option<&'static str> {
    match error {
        GatewayError::Invalid { .. }
        | GatewayError::BodyTooLarge { .. }
        | GatewayError::NotJson => Some("validation"),
        GatewayError::TooManyRequests { .. } => Some("quota"),
        GatewayError::QueueFull => Some("queue_full"),
        _ => None,
    }
}

/// The method as a label: one of the few the gateway serves, or `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
