//! `make bench-middleware`: the middleware's own cost (DESIGN.md, "Targets": CPU ≤ 10% of one
//! core at 100 jobs/s; memory flat with 10,000 queued jobs). A real nats-server and a real
//! `cola middleware` process (process backend); jobs are queued exactly as the gateway queues
//! them (`cola_gateway::queue::enqueue`: record, then message), without HTTP, so that the only
//! cola process measured is the middleware.
//!
//! 1. CPU: jobs fed at a steady rate; the middleware's CPU time (utime + stime of its process in
//!    `/proc/<pid>/stat`: its own threads only, not the executors it starts) over the window,
//!    as a share of one core.
//!    a. numeric jobs at 100 jobs/s: solved in the middleware, so the figure includes solving
//!    (by design: there is no executor);
//!    b. C hello-world jobs through the process backend at `CODE_RATE` (default 10 jobs/s: a
//!    C job compiles with gcc, and 2 cores run ~30 of them a second in all): the
//!    middleware's CPU per job (pull, two record writes, launching, watching and reaping the
//!    executor, ack), and what that is at 100 jobs/s.
//! 2. Memory: 10,000 numeric jobs queued while no middleware runs; then one starts and its RSS
//!    (`VmRSS` in `/proc/<pid>/status`) is sampled every 100 ms while the queue is large and
//!    while it drains, against its RSS while serving the steady 100 jobs/s of 1a.
//!
//! Settings (environment): `SECONDS` (each CPU window, default 20), `CODE_RATE` (default 10),
//! `QUEUED` (default 10000), `LOG` (the middleware's `RUST_LOG`, default info as `cola up`).

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use cola_gateway::{
    GatewayConfig,
    quota::{QuotaConfig, Quotas},
    submit::SubmitRequest,
};
use cola_testkit::{TestNats, process_cpu};
use cola_wire::{JobId, UserId, names, nats::Topology};
use futures::StreamExt;
use serde_json::{Value, json};

mod support;

use support::{HELLO_C, env_or};

const COLA: &str = env!("CARGO_BIN_EXE_cola");

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list: there is nothing to list.
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

fn numeric() -> Value {
    json!({ "language": "numeric", "problem": {
        "method": "bisection", "f": "x^3 + 4*x^2 - 10", "a": 1, "b": 2, "tol": 1e-10, "max_iter": 100,
    }})
}

fn c_hello() -> Value {
    json!({ "language": "c", "source": HELLO_C })
}

async fn bench() {
    let seconds: f64 = env_or("SECONDS", 20.0);
    let code_rate: f64 = env_or("CODE_RATE", 10.0);
    let queued: usize = env_or("QUEUED", 10_000);
    let nats = TestNats::start().await;
    let dir = tempfile::tempdir().unwrap();
    let topology = Arc::new(nats.topology.clone());
    println!(
        "middleware bench: nats-server {}, {} cores, {seconds} s windows, RUST_LOG={}",
        nats.url(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::var("LOG").unwrap_or_else(|_| "info".into())
    );

    // 1a and 1b: one middleware, warmed up by a few jobs of each kind.
    let middleware = Middleware::start(&nats.url(), dir.path());
    for body in [numeric(), c_hello(), numeric(), c_hello()] {
        let ids = feed(&topology, body, 1, 1.0).await.0;
        wait_terminal(&topology, &ids, Duration::from_secs(60), &middleware).await;
    }
    for (label, body, rate) in [
        ("numeric", numeric(), 100.0),
        ("C hello (process backend)", c_hello(), code_rate),
    ] {
        let jobs = (rate * seconds).round() as usize;
        let sampler = RssSampler::start(middleware.pid());
        let cpu0 = process_cpu(middleware.pid());
        let (ids, fed_in) = feed(&topology, body, jobs, rate).await;
        let cpu1 = process_cpu(middleware.pid());
        let drained_in =
            wait_terminal(&topology, &ids, Duration::from_secs(300), &middleware).await;
        let rss = sampler.stop().await;
        let cpu = (cpu1 - cpu0).as_secs_f64();
        let share = cpu / fed_in.as_secs_f64();
        let per_job = cpu / jobs as f64;
        println!(
            "{label}: {jobs} jobs at {:.1} jobs/s over {:.1} s (all terminal {:.1} s after the last): \
             middleware CPU {:.2} s = {:.1}% of one core; {:.0} µs per job → {:.1}% of one core \
             at 100 jobs/s; RSS {} (min {:.1} MiB, max {:.1} MiB)",
            jobs as f64 / fed_in.as_secs_f64(),
            fed_in.as_secs_f64(),
            drained_in.as_secs_f64(),
            cpu,
            share * 100.0,
            per_job * 1e6,
            per_job * 100.0 * 100.0,
            summary(&rss),
            mib(rss.iter().map(|s| s.1).min().unwrap_or(0)),
            mib(rss.iter().map(|s| s.1).max().unwrap_or(0)),
        );
    }
    drop(middleware);

    // 2: a large queue, then a fresh middleware.
    let start = Instant::now();
    let ids = enqueue_many(&topology, numeric(), queued).await;
    let info = topology
        .js
        .get_stream(names::STREAM)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .clone();
    println!(
        "queued {queued} numeric jobs in {:.1} s (no middleware running): stream holds {} messages, {:.1} MiB",
        start.elapsed().as_secs_f64(),
        info.messages,
        info.bytes as f64 / (1 << 20) as f64
    );
    let middleware = Middleware::start(&nats.url(), dir.path());
    let sampler = RssSampler::start(middleware.pid());
    let stream = topology.js.get_stream(names::STREAM).await.unwrap();
    let started = Instant::now();
    let mut backlog = Vec::new();
    loop {
        let messages = stream.clone().info().await.unwrap().state.messages;
        backlog.push((started.elapsed(), messages));
        if messages == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the queue did not drain within 600 s\n{}",
            middleware.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained = started.elapsed();
    // A little more of the idle middleware after the drain.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = sampler.stop().await;
    wait_terminal(&topology, &ids, Duration::from_secs(60), &middleware).await;
    let backlog_at = |t: Duration| {
        backlog
            .iter()
            .rev()
            .find(|(at, _)| *at <= t)
            .map_or(queued as u64, |b| b.1)
    };
    let large: Vec<u64> = rss
        .iter()
        .filter(|(t, _)| backlog_at(*t) >= queued as u64 / 2)
        .map(|s| s.1)
        .collect();
    println!(
        "{queued} queued jobs drained in {:.1} s ({:.0} jobs/s); RSS sampled every 100 ms ({} samples): \
         {}; while ≥ {} were queued: max {:.1} MiB ({} samples); after the drain: {:.1} MiB",
        drained.as_secs_f64(),
        queued as f64 / drained.as_secs_f64(),
        rss.len(),
        summary(&rss),
        queued / 2,
        mib(large.iter().copied().max().unwrap_or(0)),
        large.len(),
        mib(rss.last().map_or(0, |s| s.1)),
    );
    println!("RSS over time (s, MiB, jobs still queued):");
    for (t, kib) in rss.iter().step_by(5) {
        println!(
            "  {:5.1} {:6.1} {:6}",
            t.as_secs_f64(),
            mib(*kib),
            backlog_at(*t)
        );
    }
}

/// A `cola middleware` process (process backend, default concurrency), killed when dropped.
struct Middleware {
    child: Child,
    log: std::path::PathBuf,
}

impl Middleware {
    fn start(nats_url: &str, dir: &Path) -> Self {
        let log = dir.join("middleware.log");
        let child = Command::new(COLA)
            .arg("middleware")
            .args(["--nats-url", nats_url])
            .arg("--data-dir")
            .arg(dir.join("middleware"))
            .env(
                "RUST_LOG",
                std::env::var("LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Middleware {
    fn drop(&mut self) {
        // SIGTERM: the middleware drains (nothing runs) and exits.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .ok();
        self.child.wait().ok();
    }
}

/// Users the queued jobs are spread over: as many as a class, each well within the default
/// quota of unfinished jobs.
const USERS: usize = 500;

/// Queues one job exactly as the gateway does (quotas checked, validated, record created,
/// message published), for one of [`USERS`] users in turn: the job's key.
async fn enqueue(topology: &Topology, body: &Value) -> cola_wire::JobKey {
    static NEXT_USER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    static QUOTAS: std::sync::OnceLock<Quotas> = std::sync::OnceLock::new();
    let quotas = QUOTAS.get_or_init(|| {
        Quotas::new(
            QuotaConfig {
                submissions_per_minute: 1_000_000,
                ..QuotaConfig::default()
            },
            Duration::from_secs(7 * 24 * 3600),
        )
    });
    let valid = serde_json::from_value::<SubmitRequest>(body.clone())
        .unwrap()
        .validate()
        .unwrap();
    let id = JobId::new();
    let user = NEXT_USER.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % USERS;
    let user = UserId::parse(&format!("bench{user}")).unwrap();
    cola_gateway::queue::enqueue(
        topology,
        &GatewayConfig::default(),
        quotas,
        &user,
        (id, &cola_wire::RequestId::new()),
        valid,
    )
    .await
    .unwrap();
    cola_wire::JobKey::new(&user, &id)
}

/// Queues `jobs` jobs at `rate` jobs/s (each on its own task, on a fixed schedule); the ids and
/// how long feeding took.
async fn feed(
    topology: &Arc<Topology>,
    body: Value,
    jobs: usize,
    rate: f64,
) -> (Vec<cola_wire::JobKey>, Duration) {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(jobs);
    for i in 0..jobs {
        tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into()).await;
        let (topology, body) = (topology.clone(), body.clone());
        tasks.push(tokio::spawn(async move { enqueue(&topology, &body).await }));
    }
    let mut ids = Vec::with_capacity(jobs);
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    (
        ids,
        start
            .elapsed()
            .max(Duration::from_secs_f64(jobs as f64 / rate)),
    )
}

/// Queues `jobs` jobs as fast as 64 at a time go.
async fn enqueue_many(
    topology: &Arc<Topology>,
    body: Value,
    jobs: usize,
) -> Vec<cola_wire::JobKey> {
    futures::stream::iter(0..jobs)
        .map(|_| {
            let (topology, body) = (topology.clone(), body.clone());
            async move { enqueue(&topology, &body).await }
        })
        .buffer_unordered(64)
        .collect()
        .await
}

/// Waits until every job's record is terminal (and succeeded); how long that took.
async fn wait_terminal(
    topology: &Topology,
    keys: &[cola_wire::JobKey],
    timeout: Duration,
    middleware: &Middleware,
) -> Duration {
    let start = Instant::now();
    let mut pending: Vec<cola_wire::JobKey> = keys.to_vec();
    while !pending.is_empty() {
        let checked: Vec<(cola_wire::JobKey, bool)> = futures::stream::iter(pending)
            .map(|key| async move {
                let (record, _) = topology.jobs.get(&key).await.unwrap().expect("record");
                if record.status.is_terminal() {
                    assert_eq!(
                        record.status,
                        cola_wire::Status::Succeeded,
                        "job {key}: {record:?}"
                    );
                }
                let done = record.status.is_terminal();
                (key, done)
            })
            .buffer_unordered(64)
            .collect()
            .await;
        pending = checked
            .into_iter()
            .filter(|(_, done)| !done)
            .map(|(key, _)| key)
            .collect();
        assert!(
            start.elapsed() < timeout,
            "{} jobs not terminal within {timeout:?}\n{}",
            pending.len(),
            middleware.log_tail()
        );
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    start.elapsed()
}

/// VmRSS of `pid`, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .filter(|&kib| kib > 0) // a process still being exec'd
}

/// Samples a process's RSS every 100 ms on a thread of its own.
struct RssSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(Duration, u64)>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut samples = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                if let Some(kib) = rss_kib(pid) {
                    samples.push((start.elapsed(), kib));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        });
        Self { stop, thread }
    }

    async fn stop(self) -> Vec<(Duration, u64)> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::task::spawn_blocking(move || self.thread.join().unwrap())
            .await
            .unwrap()
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// First, median and last sample.
fn summary(samples: &[(Duration, u64)]) -> String {
    if samples.is_empty() {
        return "no samples".into();
    }
    let mut sorted: Vec<u64> = samples.iter().map(|s| s.1).collect();
    sorted.sort_unstable();
    format!(
        "first {:.1} MiB, median {:.1} MiB, last {:.1} MiB",
        mib(samples[0].1),
        mib(sorted[sorted.len() / 2]),
        mib(samples[samples.len() - 1].1)
    )
}
