//! What the benches share: timing a command, submitting a job through the HTTP API and waiting
//! for it, and summarising samples.

#![allow(dead_code)] // each bench uses its own subset

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;

/// Samples per measurement, after one warm-up.
pub const RUNS: usize = 30;

/// How long the machine is left alone before each timed run: what a job leaves to do after its
/// answer (the warm pool refilling, the record's clean-up) must not slow the next run, of either
/// kind.
const SETTLE: Duration = Duration::from_millis(250);

/// Latencies of `baseline` and of the same program submitted through the API with `?wait`
/// (submit → terminal), alternated — one warm-up each, then [`RUNS`] of each in turn, each
/// after [`SETTLE`] — so that both meet the same machine: a slower minute slows both alike.
pub fn alternated(
    runtime: &tokio::runtime::Runtime,
    mut baseline: impl FnMut(),
    url: &str,
    token: &str,
    language: &str,
    source: &str,
) -> (Vec<Duration>, Vec<Duration>) {
    let http = reqwest::Client::new();
    let mut through_api = || runtime.block_on(submit(&http, url, token, language, source));
    baseline(); // warms caches (the Go build cache, the page cache)
    through_api();
    let timed = |run: &mut dyn FnMut()| {
        std::thread::sleep(SETTLE);
        let start = Instant::now();
        run();
        start.elapsed()
    };
    (0..RUNS)
        .map(|_| (timed(&mut baseline), timed(&mut through_api)))
        .unzip()
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

/// The median of `treated[i] / baseline[i]`: how much slower than its baseline a run was,
/// pair by pair (each pair ran back to back, see [`alternated`]).
pub fn median_ratio(baseline: &[Duration], treated: &[Duration]) -> f64 {
    let mut ratios: Vec<f64> = baseline
        .iter()
        .zip(treated)
        .map(|(b, t)| t.as_secs_f64() / b.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
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

/// A release `cola up --dev` on free ports with its own data directory, stopped (SIGTERM) when
/// dropped.
pub struct ColaUp {
    pub url: String,
    pub token: String,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl ColaUp {
    /// Starts `cola_bin up --dev` with `extra` arguments and waits for its API and dev token.
    pub fn start(cola_bin: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(cola_bin)
            .args(["up", "--dev", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--nats-url", &format!("nats://127.0.0.1:{}", free_port())])
            .args(extra)
            .arg("--data-dir")
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let token_file = dir.path().join("dev-token");
        let start = Instant::now();
        while !token_file.exists() || std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "cola up {extra:?} did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let token = std::fs::read_to_string(&token_file)
            .unwrap()
            .trim()
            .to_owned();
        Self {
            url: format!("http://127.0.0.1:{port}"),
            token,
            dir,
            child,
        }
    }
}

impl Drop for ColaUp {
    fn drop(&mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .ok();
        self.child.wait().ok();
    }
}
