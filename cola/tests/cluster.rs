//! Nothing lost when a NATS node goes (DESIGN.md, "Targets"): on a three-node JetStream cluster
//! with the stream and buckets at three replicas, a gateway and a real `cola middleware` process
//! connected to all three nodes, SIGKILL one node (the leader of the job stream) during a burst
//! of jobs. Every accepted job ends in a terminal state exactly once (one terminal write of its
//! record, seen by a watch on the bucket from before the burst), its output is stored, nothing
//! stays on the queue or half-created, and the API keeps answering.
//!
//! Numeric jobs: they run in the middleware itself, so the test is about NATS and the services,
//! not about executors (which take one NATS URL of their own).

mod common;

use std::{
    collections::HashMap,
    process::Child,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::jetstream::object_store;
use cola_testkit::TestCluster;
use cola_wire::{
    Status, UserId, names,
    nats::{Topology, decode},
};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Jobs in the burst, from [`CLIENTS`] concurrent clients.
const JOBS: usize = 240;
const CLIENTS: usize = 8;
/// The node is killed once this many jobs of the burst are accepted.
const KILL_AFTER: usize = 60;
/// The user's quota of unfinished jobs: room for the whole burst, which piles up while the
/// stream elects a new leader (the quota is not what this test is about).
const UNFINISHED_ALLOWED: usize = JOBS + 1;
/// Bound on every wait below; the test fails with what it was waiting for past it.
const PATIENCE: Duration = Duration::from_secs(120);

/// A `cola middleware` process, killed when dropped, logging to a file.
struct Middleware {
    child: Child,
    log: std::path::PathBuf,
}

impl Middleware {
    fn start(nats_url: &str, dir: &std::path::Path) -> Self {
        let log = dir.join("middleware.log");
        let child = common::middleware_command(nats_url, &dir.join("middleware"))
            .args(["--replicas", "3"])
            .args(["--max-unfinished-per-user", &UNFINISHED_ALLOWED.to_string()])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    /// The end of the middleware's log, for failure messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Middleware {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Waits until `check` returns `Some`, polling; fails with `what` (and `context()`) after
/// [`PATIENCE`].
async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    context: impl Fn() -> String,
    mut check: impl FnMut() -> F,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{what}: not within {PATIENCE:?}\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn numeric_job(i: usize) -> Value {
    // Different intervals, so that every job has its own answer.
    json!({ "language": "numeric", "problem": {
        "method": "bisection", "f": "x^3 + 4*x^2 - 10",
        "a": 1, "b": 2 + (i % 50) as i64, "tol": 1e-10, "max_iter": 200,
    }})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_of_three_nats_nodes_leaves_every_job_terminal_once() {
    let mut cluster = TestCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The gateway's warnings and errors (it runs in this process), for failure messages.
    let gateway_log = dir.path().join("gateway.log");
    let file = std::fs::File::create(&gateway_log).unwrap();
    tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .init();

    // The gateway (in this process) and the middleware, each given every node's URL.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let config = cola_gateway::GatewayConfig {
        listen: listener.local_addr().unwrap(),
        nats_url: cluster.url_list(),
        quotas: cola_gateway::quota::QuotaConfig {
            max_unfinished: UNFINISHED_ALLOWED as u64,
            ..cola_gateway::GatewayConfig::default().quotas
        },
        ..cola_gateway::GatewayConfig::default()
    };
    let gateway_stop = CancellationToken::new();
    let _stop_gateway = gateway_stop.clone().drop_guard();
    tokio::spawn(cola_gateway::serve(listener, config, gateway_stop));
    let middleware = Middleware::start(&cluster.url_list(), dir.path());

    // The node to lose: the leader of the job stream, the most disruptive one.
    let client = async_nats::connect(cluster.urls()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(names::STREAM).await.unwrap();
    let info = stream.info().await.unwrap();
    let cluster_info = info.cluster.clone().expect("a clustered stream");
    let victim = cluster_info
        .leader
        .clone()
        .expect("the stream has a leader");
    assert_eq!(
        cluster_info.replicas.len(),
        2,
        "the stream has three replicas: {cluster_info:?}"
    );

    // The observer talks to the two nodes that stay, and sees every write of every job record
    // from before the first job.
    let survivors: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|n| n.name != victim)
        .map(|n| n.url())
        .collect();
    let observer = async_nats::connect(survivors).await.unwrap();
    let topology = Topology::open(&async_nats::jetstream::new(observer))
        .await
        .unwrap();
    let writes: Arc<Mutex<HashMap<String, Vec<Status>>>> = Arc::default();
    let mut watch = topology.jobs.kv.watch_all().await.unwrap();
    let seen = writes.clone();
    tokio::spawn(async move {
        while let Some(entry) = watch.next().await {
            // A missed heartbeat while a node goes is reported, and the ordered consumer under
            // the watch starts again after the last entry it delivered: nothing is skipped.
            let Ok(entry) = entry else { continue };
            if entry.operation != async_nats::jetstream::kv::Operation::Put {
                continue;
            }
            let record = decode(&entry.key, &entry.value).expect("a job record");
            seen.lock()
                .unwrap()
                .entry(entry.key)
                .or_default()
                .push(record.status);
        }
    });

    let user = UserId::parse("alice").unwrap();
    let token = cola_gateway::tokens::issue(&topology.tokens, &user, "cluster")
        .await
        .unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    // Everything answers: one job through the API to its end.
    let warm = eventually(
        "a first job through the gateway and middleware",
        || middleware.log_tail(),
        || async {
            let response = http
                .post(format!("{api}/api/v1/jobs?wait=30"))
                .bearer_auth(&token)
                .json(&numeric_job(0))
                .send()
                .await
                .ok()?;
            let view: Value = response.json().await.ok()?;
            (view["status"] == "succeeded").then_some(view)
        },
    )
    .await;
    let mut accepted: Vec<String> = vec![warm["id"].as_str().unwrap().to_owned()];

    // The burst, and the node's loss in the middle of it.
    let accepted_count = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (http, api, token) = (http.clone(), api.clone(), token.clone());
        let accepted_count = accepted_count.clone();
        clients.push(tokio::spawn(async move {
            let (mut ids, mut refused) = (Vec::new(), Vec::new());
            for i in (client..JOBS).step_by(CLIENTS) {
                let response = http
                    .post(format!("{api}/api/v1/jobs"))
                    .bearer_auth(&token)
                    .json(&numeric_job(i))
                    .send()
                    .await
                    .expect("the gateway answers");
                let status = response.status().as_u16();
                let body: Value = response.json().await.expect("a JSON answer");
                if status == 201 {
                    ids.push(body["id"].as_str().unwrap().to_owned());
                    accepted_count.fetch_add(1, Ordering::SeqCst);
                } else {
                    refused.push((Instant::now(), status, body));
                }
            }
            (ids, refused)
        }));
    }
    eventually(
        "jobs of the burst accepted before the kill",
        || format!("accepted {}", accepted_count.load(Ordering::SeqCst)),
        || async { (accepted_count.load(Ordering::SeqCst) >= KILL_AFTER).then_some(()) },
    )
    .await;
    let killed_at = Instant::now();
    cluster.kill(&victim).await;
    let mut refused = Vec::new();
    for client in clients {
        let (ids, no) = client.await.unwrap();
        accepted.extend(ids);
        refused.extend(no);
    }
    // A refusal while the stream elects its new leader is allowed, if it says so (5xx) and
    // leaves nothing behind (checked below: every record in the bucket ends).
    for (_, status, body) in &refused {
        assert!(
            *status >= 500 && body["error"].is_string(),
            "a refused job: {status} {body}"
        );
    }
    let refusals_for = refused
        .iter()
        .map(|(at, ..)| at.saturating_duration_since(killed_at))
        .max()
        .unwrap_or_default();
    eprintln!(
        "killed {victim} after {KILL_AFTER} jobs; {} accepted, {} refused (5xx) in the \
         {refusals_for:?} after the kill",
        accepted.len(),
        refused.len()
    );
    assert!(
        accepted.len() > KILL_AFTER,
        "jobs are accepted after the loss of a node too: {} accepted, refusals: {refused:?}",
        accepted.len()
    );

    // Every accepted job ends, and the API answers for each.
    for id in &accepted {
        let view = eventually(
            &format!("job {id} terminal"),
            || middleware.log_tail(),
            || async {
                let response = http
                    .get(format!("{api}/api/v1/jobs/{id}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .ok()?;
                // Not found is an answer; a 5xx while the cluster settles is asked again.
                assert_ne!(response.status(), 404, "job {id} is there");
                if !response.status().is_success() {
                    return None;
                }
                let view: Value = response.json().await.ok()?;
                matches!(
                    view["status"].as_str(),
                    Some("succeeded" | "failed" | "cancelled")
                )
                .then_some(view)
            },
        )
        .await;
        assert_eq!(view["status"], "succeeded", "{view}");
        assert!(view["result"]["root"].is_number(), "{view}");
        // A missing object fails at once; a request the settling cluster did not answer
        // (no responders, time-out) is asked again.
        eventually(
            &format!("job {id}'s output info"),
            || middleware.log_tail(),
            || async {
                match topology
                    .outputs
                    .info(format!("alice/{id}-output.zip"))
                    .await
                {
                    Ok(_) => Some(()),
                    Err(error) => {
                        assert_ne!(
                            error.kind(),
                            object_store::InfoErrorKind::NotFound,
                            "job {id}'s output is stored"
                        );
                        None
                    }
                }
            },
        )
        .await;
    }

    // Nothing left behind: the queue empties (every message acknowledged) and every record in
    // the bucket, accepted or not, is terminal.
    // (JetStream requests may time out while the cluster settles: they are asked again.)
    eventually(
        "the job stream empty",
        || middleware.log_tail(),
        || async {
            let mut stream = topology.js.get_stream(names::STREAM).await.ok()?;
            let info = stream.info().await.ok()?;
            (info.state.messages == 0).then_some(())
        },
    )
    .await;
    let keys: Vec<String> = eventually("the bucket's keys", String::new, || async {
        let keys = topology.jobs.kv.keys().await.ok()?;
        keys.collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .ok()
    })
    .await;
    for key in &keys {
        let record = eventually(&format!("record {key}"), String::new, || async {
            let key = cola_wire::JobKey::parse(key).expect("a job key");
            topology.jobs.get(&key).await.ok()
        })
        .await;
        let (record, _) = record.expect("the record");
        assert!(
            record.status.is_terminal(),
            "{key} was left {:?} (accepted: {})\ngateway log:\n{}",
            record.status,
            accepted.iter().any(|id| key.ends_with(id.as_str())),
            std::fs::read_to_string(&gateway_log).unwrap_or_default()
        );
    }
    assert_eq!(
        keys.len(),
        accepted.len(),
        "one record per accepted job, none for a refused one"
    );

    // Once: the watch saw exactly one terminal write per job. Redeliveries come after the
    // ack wait (3 s): a second terminal write would be seen within two of them.
    eventually(
        "the watch has seen every job's end",
        String::new,
        || async {
            let writes = writes.lock().unwrap();
            accepted
                .iter()
                .all(|id| {
                    writes
                        .get(cola_wire::JobKey::new(&user, &id.parse().unwrap()).as_str())
                        .is_some_and(|w| w.iter().any(|s| s.is_terminal()))
                })
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let writes = writes.lock().unwrap().clone();
    for id in &accepted {
        let key = cola_wire::JobKey::new(&user, &id.parse().unwrap());
        let statuses = &writes[key.as_str()];
        let ends = statuses.iter().filter(|s| s.is_terminal()).count();
        assert_eq!(ends, 1, "job {id} ended {ends} times: {statuses:?}");
        assert_eq!(statuses.last().copied(), Some(Status::Succeeded));
    }

    // The API keeps answering on the two nodes left: new jobs run to their end.
    for i in 0..10 {
        let response = http
            .post(format!("{api}/api/v1/jobs?wait=30"))
            .bearer_auth(&token)
            .json(&numeric_job(i))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let view: Value = response.json().await.unwrap();
        assert_eq!(view["status"], "succeeded", "{view}");
    }
}
