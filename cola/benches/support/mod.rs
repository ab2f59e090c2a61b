//! What the benches share: timing a command, submitting a job through the HTTP API and waiting
//! for it, summarising samples, a real `cola up` with tokens for its users, and settings from the
//! environment.

#![allow(dead_code)] // each bench uses its own subset

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// Hello world in C, printing `hello`.
pub const HELLO_C: &str = "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n";

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
    let mut through_api = || {
        runtime.block_on(submit(&http, url, token, language, source));
    };
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

/// Submits a hello-world program and waits for it to succeed with `hello`; its last view.
pub async fn submit(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    language: &str,
    source: &str,
) -> Value {
    let body = json!({ "language": language, "source": source });
    let view = submit_until_terminal(http, url, token, &body).await;
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(view["stdout"], "hello\n");
    view
}

/// Longest `?wait` the gateway allows by default, in seconds.
const MAX_WAIT_S: u32 = 60;

/// Submits the job `body` with `?wait` and follows it (`GET` with `?wait` again, should its queue
/// outlast one wait) until it ends; its last view.
pub async fn submit_until_terminal(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> Value {
    let answer = http
        .post(format!("{url}/api/v1/jobs?wait={MAX_WAIT_S}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        reqwest::StatusCode::CREATED,
        "submitting {body}"
    );
    let mut view: Value = answer.json().await.unwrap();
    while !is_terminal(&view) {
        let id = view["id"].as_str().unwrap();
        view = http
            .get(format!("{url}/api/v1/jobs/{id}?wait={MAX_WAIT_S}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
    }
    view
}

/// Whether a job view's status is terminal.
fn is_terminal(view: &Value) -> bool {
    serde_json::from_value::<cola_wire::Status>(view["status"].clone())
        .unwrap_or_else(|e| panic!("job view without a status ({e}): {view}"))
        .is_terminal()
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
pub fn percentile<T: Ord + Copy>(samples: &[T], p: usize) -> T {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[((sorted.len() - 1) * p) / 100]
}

/// The environment variable `name` parsed, or `default` when it is unset.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(raw) => raw
            .parse()
            .unwrap_or_else(|_| panic!("{name}={raw:?} is not a valid value")),
        Err(_) => default,
    }
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

/// A release `cola up --dev` on free ports with its own data directory and nats-server, stopped
/// (SIGTERM) when dropped.
pub struct ColaUp {
    pub url: String,
    /// The dev user's token.
    pub token: String,
    pub nats_url: String,
    pub dir: tempfile::TempDir,
    cola_bin: String,
    child: Child,
}

impl ColaUp {
    /// Starts `cola_bin up --dev` with `extra` arguments and waits for its API and dev token.
    pub fn start(cola_bin: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let nats_url = format!("nats://127.0.0.1:{}", free_port());
        let log = dir.path().join("cola-up.log");
        let mut child = Command::new(cola_bin)
            .args(["up", "--dev", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--nats-url", &nats_url])
            .args(extra)
            .arg("--data-dir")
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let token_file = dir.path().join("dev-token");
        let start = Instant::now();
        while !token_file.exists() || std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "cola up {extra:?} exited ({status}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
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
            nats_url,
            dir,
            cola_bin: cola_bin.to_owned(),
            child,
        }
    }

    /// A new API token for `user`, as an operator issues one (`cola token issue --user`).
    pub fn issue_token(&self, user: &str) -> String {
        let out = Command::new(&self.cola_bin)
            .args(["token", "issue", "--user", user, "--name", "bench"])
            .args(["--nats-url", &self.nats_url])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cola token issue --user {user} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
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
