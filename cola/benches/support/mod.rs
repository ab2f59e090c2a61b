//! What the benches share: timing a command, submitting a job through the HTTP API and waiting
//! for it, and summarising samples.

#![allow(dead_code)] // each bench uses its own subset

use std::{
    net::TcpListener,
    time::{Duration, Instant},
};

use serde_json::json;

/// Samples per measurement, after one warm-up.
pub const RUNS: usize = 20;

/// Runs `run` once to warm caches, then [`RUNS`] times, timing each.
pub fn timed_runs(mut run: impl FnMut()) -> Vec<Duration> {
    run();
    (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .collect()
}

/// Submit → terminal through the API with `?wait`, [`RUNS`] times after one warm-up.
pub async fn api_latencies(url: &str, token: &str, language: &str, source: &str) -> Vec<Duration> {
    let http = reqwest::Client::new();
    submit(&http, url, token, language, source).await; // warm-up
    let mut latencies = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        submit(&http, url, token, language, source).await;
        latencies.push(start.elapsed());
    }
    latencies
}

/// Submits a hello-world program and waits for it to succeed with `hello`.
pub async fn submit(http: &reqwest::Client, url: &str, token: &str, language: &str, source: &str) {
    let view: serde_json::Value = http
        .post(format!("{url}/api/v1/jobs?wait=60"))
        .bearer_auth(token)
        .json(&json!({ "language": language, "source": source }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(view["stdout"], "hello\n");
}

/// The `p`th percentile of `samples`.
pub fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[((sorted.len() - 1) * p) / 100]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
