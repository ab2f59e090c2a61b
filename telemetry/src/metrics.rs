//! The registry every service's metrics go into, its exposition, and the histogram buckets
//! the services share.

use axum::{
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::text::encode, metrics::histogram::Histogram, registry::Registry,
};

/// The content type of the OpenMetrics text format, which Prometheus asks for first.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A registry whose metrics are all named `cola_…`.
pub fn registry() -> Registry {
    Registry::with_prefix("cola")
}

/// The answer to `GET /metrics`: every metric of `registry`, as text.
pub fn exposition(registry: &Registry) -> Response {
    let mut body = String::with_capacity(16 << 10);
    match encode(&mut body, registry) {
        Ok(()) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot encode the metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Upper bounds (seconds) of the buckets for how long a job waits or runs: numeric jobs take
/// about a millisecond, programs from a tenth of a second to the longest time limit.
const JOB_SECONDS_BUCKETS: [f64; 18] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

/// Upper bounds (seconds) of the buckets for how long an HTTP request takes: most answer in
/// a millisecond or less; one that waits for its job (`?wait`) up to a minute.
const REQUEST_SECONDS_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0, 60.0,
];

/// A histogram of a job's queue, run or total time, in seconds.
pub fn job_seconds() -> Histogram {
    Histogram::new(JOB_SECONDS_BUCKETS)
}

/// A histogram of HTTP request durations, in seconds.
pub fn request_seconds() -> Histogram {
    Histogram::new(REQUEST_SECONDS_BUCKETS)
}

/// The constructor type of a histogram family (`Family<Labels, Histogram, HistogramMaker>`).
pub type HistogramMaker = fn() -> Histogram;

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::{counter::Counter, family::Family};

    use super::*;

    #[test]
    fn metrics_are_named_with_the_prefix_and_served_as_openmetrics() {
        let mut registry = registry();
        let jobs = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
        registry.register("jobs_submitted", "Jobs submitted", jobs.clone());
        let waited: Family<Vec<(&'static str, &'static str)>, Histogram, HistogramMaker> =
            Family::new_with_constructor(job_seconds);
        registry.register("job_queue_seconds", "Time queued", waited.clone());
        jobs.get_or_create(&vec![("language", "c")]).inc();
        waited
            .get_or_create(&vec![("language", "c")])
            .observe(0.003);

        let response = exposition(&registry);
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("cola_jobs_submitted_total{language=\"c\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("cola_job_queue_seconds_bucket{le=\"0.005\",language=\"c\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("cola_job_queue_seconds_bucket{le=\"0.0025\",language=\"c\"} 0"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
