//! `make bench-fairness`: how long one user's job waits while another user floods the queue
//! (issue 10, fair share between users). A real `cola up --dev` (process backend, bubblewrap) and
//! two users with tokens issued as an operator issues them (`cola token issue --user`):
//!
//! - user A floods: `FLOOD_CLIENTS` concurrent clients submit C jobs that each burn
//!   `FLOOD_CPU_MS` of CPU, without waiting for them, and keep A's unfinished jobs at
//!   `FLOOD_BACKLOG` for the whole measurement. A `429` (a per-user quota) means "A's backlog is
//!   full": the client sleeps for its `Retry-After` (at most 1 s; 250 ms without one), tries
//!   again, and the refusal is counted;
//! - once A's backlog is built (reached, or refused by a quota), and `SETTLE_S` seconds later,
//!   user B submits a C hello world every `SAMPLE_INTERVAL_MS`, `SAMPLES` times, each with
//!   `?wait`, and records its queue time (`timings_ms.queue` of the job's view) and its submit →
//!   terminal latency.
//!
//! A's backlog is counted from a watch of A's keys in the `cola-jobs` bucket (every record change
//! is seen, and no polling through the API adds load). Prints B's p50/p95/max, A's backlog at
//! each of B's submissions, A's throughput meanwhile, A's refusals, and the load average.
//! `COLA_UP_ARGS` (split on whitespace) is passed to `cola up`, e.g. quota flags.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use cola_wire::{Status, UserId, names, nats::decode};
use futures::StreamExt as _;
use reqwest::{StatusCode, header::RETRY_AFTER};
use serde_json::{Value, json};

mod support;

use support::{ColaUp, HELLO_C, env_or, ms, percentile, submit};

const COLA: &str = env!("CARGO_BIN_EXE_cola");

/// The user who floods, and the user whose jobs are timed.
const FLOODER: &str = "bench-flood";
const PROBE: &str = "bench-probe";

/// How long a flood client backs off after a `429` at most, and without a `Retry-After`.
const MAX_BACK_OFF: Duration = Duration::from_secs(1);
const DEFAULT_BACK_OFF: Duration = Duration::from_millis(250);

/// How often a flood client whose backlog is full looks again.
const TOP_UP_EVERY: Duration = Duration::from_millis(50);

/// How long building A's backlog may take.
const BUILD_TIMEOUT: Duration = Duration::from_secs(120);

/// What the environment sets (see the module's documentation).
struct Settings {
    flood_clients: usize,
    flood_backlog: usize,
    flood_cpu_ms: u32,
    samples: usize,
    interval: Duration,
    settle: Duration,
    up_args: Vec<String>,
}

impl Settings {
    fn from_env() -> Self {
        Self {
            flood_clients: env_or("FLOOD_CLIENTS", 16),
            flood_backlog: env_or("FLOOD_BACKLOG", 300),
            flood_cpu_ms: env_or("FLOOD_CPU_MS", 200),
            samples: env_or("SAMPLES", 30),
            interval: Duration::from_millis(env_or("SAMPLE_INTERVAL_MS", 1000)),
            settle: Duration::from_secs(env_or("SETTLE_S", 3)),
            up_args: env_or("COLA_UP_ARGS", String::new())
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list: there is nothing to list.
    }
    let settings = Settings::from_env();
    let up_args: Vec<&str> = settings.up_args.iter().map(String::as_str).collect();
    let up = ColaUp::start(COLA, &up_args);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(bench(&up, &settings));
}

async fn bench(up: &ColaUp, settings: &Settings) {
    let began = Instant::now();
    println!(
        "fairness bench: cola up --dev {}; {} cores, load average {}",
        settings.up_args.join(" "),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    println!(
        "A ({FLOODER}): {} clients keep {} C jobs of {} ms CPU each unfinished; \
         B ({PROBE}): {} C hello worlds, one every {:.1} s",
        settings.flood_clients,
        settings.flood_backlog,
        settings.flood_cpu_ms,
        settings.samples,
        settings.interval.as_secs_f64()
    );
    let http = reqwest::Client::new();
    let (flood_token, probe_token) = (up.issue_token(FLOODER), up.issue_token(PROBE));
    let backlog = Backlog::watch(&up.nats_url, FLOODER).await;
    let flood = Flood::start(&http, &up.url, &flood_token, settings, &backlog);

    let built_in = flood.built(&backlog, settings.flood_backlog).await;
    let at_build = backlog.counts();
    println!(
        "A's backlog built in {:.1} s: {} queued, {} running; {} accepted, {} refused (429) so far",
        built_in.as_secs_f64(),
        at_build.queued,
        at_build.running,
        flood.tally.accepted.load(Ordering::Relaxed),
        flood.tally.refused.load(Ordering::Relaxed),
    );
    tokio::time::sleep(settings.settle).await;

    let window = Instant::now();
    let ended_before = backlog.counts();
    let samples = probe(&http, &up.url, &probe_token, settings, &backlog).await;
    let ended_after = backlog.counts();
    let window = window.elapsed();
    let (accepted, refused) = flood.stop().await;

    report(&samples);
    let ended = ended_after.ended() - ended_before.ended();
    println!(
        "A's throughput while B was measured: {ended} jobs ended in {:.1} s = {:.1} jobs/s \
         ({} of them not succeeded)",
        window.as_secs_f64(),
        ended as f64 / window.as_secs_f64(),
        ended_after.not_succeeded - ended_before.not_succeeded,
    );
    println!("A's submissions: {accepted} accepted, {refused} refused with 429");
    println!(
        "load average at the end {}; the bench took {:.0} s",
        load_average(),
        began.elapsed().as_secs_f64()
    );
}

/// One of B's jobs: A's backlog when it was submitted, its queue time and latency, and how many
/// of A's jobs ended meanwhile (with first come, first served: about A's backlog).
struct Sample {
    flood: Counts,
    queue: Duration,
    latency: Duration,
    flood_ended_meanwhile: usize,
}

/// B's jobs, one every `settings.interval` (each on its own task, so that a long queue does
/// not delay the next submission), each followed to its end.
async fn probe(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    settings: &Settings,
    backlog: &Backlog,
) -> Vec<Sample> {
    let start = tokio::time::Instant::now();
    let mut jobs = Vec::with_capacity(settings.samples);
    for i in 0..settings.samples {
        tokio::time::sleep_until(start + settings.interval * i as u32).await;
        let (http, url, token, backlog) = (
            http.clone(),
            url.to_owned(),
            token.to_owned(),
            backlog.clone(),
        );
        jobs.push(tokio::spawn(async move {
            let (submitted, flood) = (Instant::now(), backlog.counts());
            let view = submit(&http, &url, &token, "c", HELLO_C).await;
            let latency = submitted.elapsed();
            let flood_ended_meanwhile = backlog.counts().ended() - flood.ended();
            let queue = view["timings_ms"]["queue"]
                .as_u64()
                .unwrap_or_else(|| panic!("a finished job without a queue time: {view}"));
            Sample {
                flood,
                queue: Duration::from_millis(queue),
                latency,
                flood_ended_meanwhile,
            }
        }));
    }
    let mut samples = Vec::with_capacity(jobs.len());
    for job in jobs {
        samples.push(job.await.unwrap());
    }
    samples
}

fn report(samples: &[Sample]) {
    println!(
        "\n| B's job | A queued | A running | B queue time | B submit → terminal | A's jobs ended meanwhile |"
    );
    println!("|---|---|---|---|---|---|");
    for (i, s) in samples.iter().enumerate() {
        println!(
            "| {} | {} | {} | {:.0} ms | {:.0} ms | {} |",
            i + 1,
            s.flood.queued,
            s.flood.running,
            ms(s.queue),
            ms(s.latency),
            s.flood_ended_meanwhile
        );
    }
    let queue: Vec<Duration> = samples.iter().map(|s| s.queue).collect();
    let latency: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    let queued: Vec<usize> = samples.iter().map(|s| s.flood.queued).collect();
    let spread = |d: &[Duration]| {
        format!(
            "p50 {:.2} s, p95 {:.2} s, max {:.2} s",
            percentile(d, 50).as_secs_f64(),
            percentile(d, 95).as_secs_f64(),
            percentile(d, 100).as_secs_f64()
        )
    };
    println!(
        "\nB's queue time ({} jobs): {}",
        samples.len(),
        spread(&queue)
    );
    println!("B's submit → terminal: {}", spread(&latency));
    println!(
        "A's jobs queued when B submitted: min {}, p50 {}, max {}",
        percentile(&queued, 0),
        percentile(&queued, 50),
        percentile(&queued, 100)
    );
}

/// A's jobs by status, as a watch of the records sees them.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    queued: usize,
    running: usize,
    succeeded: usize,
    not_succeeded: usize,
}

impl Counts {
    fn unfinished(&self) -> usize {
        self.queued + self.running
    }

    fn ended(&self) -> usize {
        self.succeeded + self.not_succeeded
    }

    fn slot(&mut self, status: Status) -> &mut usize {
        match status {
            Status::Queued => &mut self.queued,
            Status::Running => &mut self.running,
            Status::Succeeded => &mut self.succeeded,
            Status::Failed | Status::Cancelled => &mut self.not_succeeded,
        }
    }
}

/// One user's jobs counted by status, kept up to date by a watch of their records.
#[derive(Clone, Default)]
struct Backlog {
    state: Arc<Mutex<(HashMap<String, Status>, Counts)>>,
}

impl Backlog {
    /// Starts watching `user`'s records (from now on) in the `cola-jobs` bucket.
    async fn watch(nats_url: &str, user: &str) -> Self {
        let client = async_nats::connect(nats_url).await.unwrap();
        let jobs = async_nats::jetstream::new(client)
            .get_key_value(names::JOBS_BUCKET)
            .await
            .unwrap();
        let user = UserId::parse(user).unwrap();
        let mut changes = jobs.watch(names::user_keys(&user)).await.unwrap();
        let backlog = Self::default();
        let state = backlog.state.clone();
        tokio::spawn(async move {
            while let Some(change) = changes.next().await {
                let change = change.expect("watching the flooding user's records");
                let (statuses, counts) = &mut *state.lock().unwrap();
                // A record taken back (a job refused at the stream, after it was created) is
                // no job of A's any more.
                let now = (change.operation == async_nats::jetstream::kv::Operation::Put)
                    .then(|| decode(&change.key, &change.value).unwrap().status);
                let before = match now {
                    Some(status) => statuses.insert(change.key, status),
                    None => statuses.remove(&change.key),
                };
                if let Some(before) = before {
                    *counts.slot(before) -= 1;
                }
                if let Some(status) = now {
                    *counts.slot(status) += 1;
                }
            }
        });
        backlog
    }

    fn counts(&self) -> Counts {
        self.state.lock().unwrap().1
    }
}

/// What A's clients were answered, and how many of their submissions are under way.
#[derive(Default)]
struct Tally {
    accepted: AtomicUsize,
    refused: AtomicUsize,
    in_flight: AtomicUsize,
}

/// User A's clients.
struct Flood {
    tally: Arc<Tally>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Flood {
    fn start(
        http: &reqwest::Client,
        url: &str,
        token: &str,
        settings: &Settings,
        backlog: &Backlog,
    ) -> Self {
        let job = Arc::new(json!({ "language": "c", "source": burner(settings.flood_cpu_ms) }));
        let tally = Arc::new(Tally::default());
        let clients = (0..settings.flood_clients)
            .map(|_| {
                let client = FloodClient {
                    http: http.clone(),
                    url: url.to_owned(),
                    token: token.to_owned(),
                    job: job.clone(),
                    backlog: backlog.clone(),
                    target: settings.flood_backlog,
                    tally: tally.clone(),
                };
                tokio::spawn(client.run())
            })
            .collect();
        Self { tally, clients }
    }

    /// Waits until A's backlog reaches `target` or a submission is refused; how long that took.
    async fn built(&self, backlog: &Backlog, target: usize) -> Duration {
        let start = Instant::now();
        while backlog.counts().unfinished() < target
            && self.tally.refused.load(Ordering::Relaxed) == 0
        {
            assert!(
                start.elapsed() < BUILD_TIMEOUT,
                "A's backlog stays at {:?} after {BUILD_TIMEOUT:?}",
                backlog.counts()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        start.elapsed()
    }

    /// Stops the clients (a client that failed fails the bench); accepted and refused
    /// submissions.
    async fn stop(self) -> (usize, usize) {
        for client in self.clients {
            client.abort();
            if let Err(error) = client.await
                && error.is_panic()
            {
                std::panic::resume_unwind(error.into_panic());
            }
        }
        (
            self.tally.accepted.load(Ordering::Relaxed),
            self.tally.refused.load(Ordering::Relaxed),
        )
    }
}

/// One of A's clients: submits while A's backlog is below its target.
struct FloodClient {
    http: reqwest::Client,
    url: String,
    token: String,
    job: Arc<Value>,
    backlog: Backlog,
    target: usize,
    tally: Arc<Tally>,
}

impl FloodClient {
    async fn run(self) {
        loop {
            let unfinished =
                self.backlog.counts().unfinished() + self.tally.in_flight.load(Ordering::Relaxed);
            if unfinished >= self.target {
                tokio::time::sleep(TOP_UP_EVERY).await;
                continue;
            }
            self.tally.in_flight.fetch_add(1, Ordering::Relaxed);
            let answer = self
                .http
                .post(format!("{}/api/v1/jobs", self.url))
                .bearer_auth(&self.token)
                .json(&*self.job)
                .send()
                .await
                .unwrap();
            self.tally.in_flight.fetch_sub(1, Ordering::Relaxed);
            match answer.status() {
                StatusCode::CREATED => {
                    self.tally.accepted.fetch_add(1, Ordering::Relaxed);
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    self.tally.refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(back_off(answer.headers())).await;
                }
                other => panic!(
                    "A's submission answered {other}: {}",
                    answer.text().await.unwrap_or_default()
                ),
            }
        }
    }
}

/// How long to wait after a `429`: its `Retry-After` (seconds), at most [`MAX_BACK_OFF`] so
/// that A's backlog stays full.
fn back_off(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(DEFAULT_BACK_OFF, |s| {
            Duration::from_secs_f64(s).min(MAX_BACK_OFF)
        })
}

/// A C program that burns `cpu_ms` of CPU time (its own, as `clock()` counts it) and prints how
/// many rounds that took.
fn burner(cpu_ms: u32) -> String {
    format!(
        "#include <stdio.h>\n#include <time.h>\n\
         int main(void) {{\n\
         \x20   const clock_t budget = (clock_t)((double)CLOCKS_PER_SEC * {cpu_ms} / 1000.0);\n\
         \x20   volatile unsigned long x = 1, rounds = 0;\n\
         \x20   while (clock() < budget) {{\n\
         \x20       for (int i = 0; i < 100000; i++) x = x * 6364136223846793005UL + 1;\n\
         \x20       rounds++;\n\
         \x20   }}\n\
         \x20   printf(\"%lu\\n\", rounds);\n\
         \x20   return 0;\n\
         }}\n"
    )
}

/// `/proc/loadavg`'s 1, 5 and 15 minute averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}
