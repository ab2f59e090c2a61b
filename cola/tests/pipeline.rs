//! End to end on one machine: HTTP API → JetStream → middleware → `cola executor` in
//! bubblewrap → zip in the object store → job record, with real components only.

mod common;

use std::time::Duration;

use common::{C_HELLO, JS_HELLO, Stack, job};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_world_in_every_language_succeeds_with_its_zip() {
    let stack = Stack::start().await;
    let token = stack.token("alice").await;
    common::hello_world_in_every_language(&stack, &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_args_and_out_files_make_the_round_trip() {
    let stack = Stack::start().await;
    common::stdin_args_and_out_files_round_trip(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_end_with_their_reason() {
    let stack = Stack::start().await;
    let token = stack.token("alice").await;
    let compile_error = stack
        .run(&token, job("c", "int main(void) { return nope; }\n"))
        .await;
    assert_eq!(compile_error["status"], "failed");
    assert_eq!(compile_error["reason"], "compile_error");
    assert!(
        compile_error["compile_output"]
            .as_str()
            .unwrap()
            .contains("nope"),
        "{compile_error}"
    );

    let exit = stack
        .run(&token, job("javascript", "process.exit(3)\n"))
        .await;
    assert_eq!(
        (exit["reason"].as_str(), exit["exit_code"].as_i64()),
        (Some("runtime_error"), Some(3)),
        "{exit}"
    );

    let body = json!({ "language": "c", "source": "int main(void) { for (;;) {} }\n", "limits": { "wall_time_ms": 1000, "cpu_time_ms": 1000 } });
    let looping = stack.run(&token, body).await;
    assert_eq!(looping["reason"], "time_limit", "{looping}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_says_how_jobs_are_isolated_and_shared_memory_is_held_to_the_limit() {
    let stack = Stack::start().await;
    let token = stack.token("alice").await;
    // Run as root, as CI does: a cgroup and a disk allowance per job.
    let mut languages = serde_json::Value::Null;
    for _ in 0..100 {
        languages = stack
            .get(&token, "/api/v1/languages")
            .await
            .json()
            .await
            .unwrap();
        if !languages["isolation"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let isolation = &languages["isolation"];
    assert_eq!(isolation["cgroup"]["enforced"], true, "{isolation}");
    assert_eq!(isolation["disk"]["enforced"], true, "{isolation}");
    assert!(
        isolation["cgroup"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("cgroup v"),
        "{isolation}"
    );
    let shared = "#define _GNU_SOURCE\n#include <sys/mman.h>\nint main(void) { char *p = mmap(0, 1UL << 30, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0); for (unsigned long i = 0; i < 1UL << 30; i += 4096) p[i] = 1; return 0; }\n";
    let body = json!({ "language": "c", "source": shared, "limits": { "memory_mb": 64 } });
    let done = stack.run(&token, body).await;
    assert_eq!(done["reason"], "memory_limit", "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_job_starts_soon_however_many_another_user_queued_first() {
    let stack = Stack::start().await;
    let (ada, bob) = (stack.token("ada").await, stack.token("bob").await);
    // 30 jobs of a second each on 2 slots: 15 s of work queued before bob's.
    let slow = job("javascript", "setTimeout(() => {}, 1000);\n");
    let mut adas = Vec::new();
    for _ in 0..30 {
        let (status, view) = stack.submit(&ada, slow.clone(), 0).await;
        assert_eq!(status, 201, "{view}");
        adas.push(view["id"].as_str().unwrap().to_owned());
    }
    let (status, bobs) = stack
        .submit(&bob, job("javascript", "console.log('hi');\n"), 30)
        .await;
    assert_eq!(
        (status, &bobs["status"]),
        (201, &json!("succeeded")),
        "{bobs}"
    );
    let queued_ms = bobs["timings_ms"]["queue"].as_u64().unwrap();
    assert!(queued_ms < 3_000, "bob's job waited {queued_ms} ms");
    // ada's jobs still start in the order she submitted them.
    let mut started = Vec::new();
    for id in &adas {
        let view = stack.wait_terminal(&ada, id, Duration::from_secs(60)).await;
        assert_eq!(view["status"], "succeeded", "{view}");
        let at = view["started_at"].as_str().unwrap();
        started.push(chrono::DateTime::parse_from_rfc3339(at).unwrap());
    }
    // (Two slots start two jobs at once: which of them writes `running` first is a race.)
    for (i, earlier) in started.iter().enumerate() {
        for later in &started[i + 1..] {
            let overtaken_by = (*earlier - *later).num_milliseconds();
            assert!(
                overtaken_by < 250,
                "ada's job {i} started {overtaken_by} ms after a later one: {started:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_outputs_count_against_their_users_storage() {
    let stack = Stack::start().await;
    let token = stack.token("alice").await;
    let alice = cola_wire::UserId::parse("alice").unwrap();
    let week = Duration::from_secs(7 * 24 * 3600);
    let usage = &stack.nats.topology.usage;
    // An executor counts its zip before it ends the record.
    let done = stack.run(&token, job("c", C_HELLO)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let after_program = usage.stored(&alice, week).await.unwrap();
    assert!(after_program > 100, "{after_program}");
    // The middleware counts its numeric zips every second.
    let numeric = json!({"language": "numeric", "problem": {"method": "bisection", "f": "x^2 - 2", "a": 0, "b": 2, "tol": 1e-10, "max_iter": 100}});
    let done = stack.run(&token, numeric).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let mut stored = after_program;
    for _ in 0..50 {
        stored = usage.stored(&alice, week).await.unwrap();
        if stored > after_program {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stored > after_program, "{stored} after {after_program}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_can_be_cancelled() {
    let stack = Stack::start().await;
    let token = stack.token("alice").await;
    let body = json!({ "language": "c", "source": "#include <unistd.h>\nint main(void) { for (;;) sleep(1); }\n", "limits": { "wall_time_ms": 30000 } });
    let (status, view) = stack.submit(&token, body, 0).await;
    assert_eq!(status, 201);
    let id = view["id"].as_str().unwrap().to_owned();
    stack
        .wait_for(&token, &id, Duration::from_secs(30), |v| {
            v["status"] == "running"
        })
        .await;
    // Let the program itself start (the record turns running before the compile step).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(stack.cancel(&token, &id).await, 202);
    let view = stack
        .wait_terminal(&token, &id, Duration::from_secs(10))
        .await;
    assert_eq!(view["status"], "cancelled", "{view}");
    // The executor and its directory are gone.
    let jobs_dir = stack.data_dir().join("jobs").join(&id);
    for _ in 0..50 {
        if !jobs_dir.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!jobs_dir.exists(), "job directory left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_middleware_leaves_its_job_to_another_which_finishes_it_once() {
    let mut stack = Stack::start().await;
    let token = stack.token("alice").await;
    let source = "#include <stdio.h>\n#include <unistd.h>\nint main(void) { sleep(3); puts(\"done\"); return 0; }\n";
    let (_, view) = stack.submit(&token, job("c", source), 0).await;
    let id = view["id"].as_str().unwrap().to_owned();
    // Wait until the executor is recorded, then crash the middleware.
    stack.executor_recorded("alice", &id).await;
    stack.kill_middleware();
    stack.start_middleware();
    let view = stack
        .wait_terminal(&token, &id, Duration::from_secs(60))
        .await;
    assert_eq!(
        view["status"],
        "succeeded",
        "{view}\n{}",
        stack.middleware_log()
    );
    assert_eq!(view["stdout"], "done\n");
    let record = stack.record("alice", &id).await;
    assert_eq!(record.attempt, 1, "the job ran once");
    // The message is acknowledged: the work queue drains.
    let mut stream = stack.nats.topology.js.get_stream("COLA").await.unwrap();
    for _ in 0..100 {
        if stream.info().await.unwrap().state.messages == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stream.info().await.unwrap().state.messages, 0);
}

/// Waits for the job `id` to end, which must be `succeeded` with `stdout`.
async fn succeeds_saying(stack: &Stack, token: &str, id: &str, stdout: &str) {
    let view = stack
        .wait_terminal(token, id, Duration::from_secs(60))
        .await;
    assert_eq!(
        (view["status"].as_str(), view["stdout"].as_str()),
        (Some("succeeded"), Some(stdout)),
        "{view}\n{}",
        stack.middleware_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_middleware_died_before_recording_its_executor_runs_once() {
    use async_nats::jetstream::consumer::PullConsumer;
    use cola_middleware::{
        Backend as _,
        process::{ProcessBackend, ProcessBackendConfig},
    };
    use futures::StreamExt as _;

    // A middleware makes the shared consumer (with the tests' 3 s ack wait), then stops.
    let mut stack = Stack::start().await;
    let js = stack.nats.topology.js.clone();
    let mut made = None;
    for _ in 0..300 {
        made = js.get_consumer_from_stream("middleware", "COLA").await.ok();
        if made.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let consumer: PullConsumer = made.expect("the middleware makes its consumer");
    stack.kill_middleware();
    let token = stack.token("alice").await;
    let source = "#include <stdio.h>\n#include <unistd.h>\nint main(void) { sleep(8); puts(\"done\"); return 0; }\n";
    let mut body = job("c", source);
    body["limits"] = json!({"wall_time_ms": 15000, "cpu_time_ms": 15000});
    let (status, view) = stack.submit(&token, body, 0).await;
    assert_eq!(status, 201, "{view}");
    let id = view["id"].as_str().unwrap().to_owned();
    let key = cola_wire::JobKey::parse(&format!("alice.{id}")).unwrap();

    // Middleware A takes the job, marks it running and launches its executor as a middleware
    // does, and stops before recording the executor (and before acknowledging).
    let msg = consumer
        .fetch()
        .max_messages(1)
        .messages()
        .await
        .unwrap()
        .next()
        .await
        .expect("the job is delivered")
        .unwrap();
    let message: cola_wire::JobMessage = serde_json::from_slice(&msg.payload).unwrap();
    stack
        .jobs()
        .transition(&key, |r| {
            r.status = cola_wire::Status::Running;
            r.started_at = Some(cola_wire::job::now());
            r.attempt += 1;
            true
        })
        .await
        .unwrap();
    let backend = ProcessBackend::new(ProcessBackendConfig {
        executor_bin: common::COLA.into(),
        jobs_dir: stack.data_dir().join("jobs"),
        nats_url: stack.nats.url(),
        executor_args: Vec::new(),
        warm_executors: 1,
    })
    .unwrap();
    backend.prestart();
    let first = backend.launch(&message).await.unwrap();
    assert!(
        first.id.contains(":warm-"),
        "a pre-started executor took it: {first:?}"
    );
    // Launching a job given already adopts its executor.
    assert_eq!(backend.launch(&message).await.unwrap(), first);
    drop(msg);

    // Middleware B is given the job again (its ack wait is over) while that executor runs.
    stack.start_middleware();
    succeeds_saying(&stack, &token, &id, "done\n").await;
    let record = stack.record("alice", &id).await;
    assert_eq!(
        (record.attempt, record.executor.as_ref()),
        (1, Some(&first)),
        "the job ran once, in the executor launched first\n{}",
        stack.middleware_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_completes_while_nats_is_down_ends_succeeded_with_its_zip() {
    let mut stack = Stack::start().await;
    let token = stack.token("alice").await;
    let source = "#include <stdio.h>\n#include <unistd.h>\nint main(void) { sleep(1); puts(\"done\"); return 0; }\n";
    let (status, view) = stack.submit(&token, job("c", source), 0).await;
    assert_eq!(status, 201, "{view}");
    let id = view["id"].as_str().unwrap().to_owned();
    stack.executor_recorded("alice", &id).await;
    // Down while the program ends and its executor reports, for longer than one attempt to
    // store the zip may wait for its acknowledgement (5 s); then back on the same port and store.
    stack.nats.server.stop().await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    stack.nats.server.start_again().await.unwrap();
    succeeds_saying(&stack, &token, &id, "done\n").await;
    let entries = stack.zip_entries(&token, &id).await;
    assert!(
        entries
            .iter()
            .any(|(name, text)| name == "stdout.txt" && text == "done\n"),
        "{entries:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_survive_a_nats_restart() {
    let mut stack = Stack::without_middleware().await;
    let token = stack.token("alice").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let (status, view) = stack
            .submit(&token, job("javascript", &format!("console.log({i})\n")), 0)
            .await;
        assert_eq!(status, 201, "{view}");
        assert_eq!(view["status"], "queued");
        ids.push(view["id"].as_str().unwrap().to_owned());
    }
    stack.nats.server.restart().await.unwrap();
    stack.start_middleware();
    for (i, id) in ids.iter().enumerate() {
        let view = stack
            .wait_terminal(&token, id, Duration::from_secs(60))
            .await;
        assert_eq!(view["status"], "succeeded", "{view}");
        assert_eq!(view["stdout"], format!("{i}\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_message_is_terminated_not_looped() {
    let stack = Stack::start().await;
    let js = &stack.nats.topology.js;
    js.publish("cola.c", "not json".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let mut stream = js.get_stream("COLA").await.unwrap();
    for _ in 0..100 {
        if stream.info().await.unwrap().state.messages == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        0,
        "{}",
        stack.middleware_log()
    );
    // The middleware still works afterwards.
    let token = stack.token("alice").await;
    assert_eq!(
        stack.run(&token, job("javascript", JS_HELLO)).await["status"],
        "succeeded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_see_only_their_own_jobs() {
    let stack = Stack::start().await;
    let alice = stack.token("alice").await;
    let bob = stack.token("bob").await;
    let view = stack.run(&alice, job("javascript", JS_HELLO)).await;
    let id = view["id"].as_str().unwrap();
    assert_eq!(
        stack
            .get(&bob, &format!("/api/v1/jobs/{id}"))
            .await
            .status(),
        404
    );
    assert_eq!(
        stack
            .get(&bob, &format!("/api/v1/jobs/{id}/output.zip"))
            .await
            .status(),
        404
    );
    assert_eq!(stack.cancel(&bob, id).await, 404);
    let list: serde_json::Value = stack.get(&bob, "/api/v1/jobs").await.json().await.unwrap();
    assert_eq!(list["jobs"].as_array().unwrap().len(), 0);
    let list: serde_json::Value = stack
        .get(&alice, "/api/v1/jobs")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["jobs"][0]["id"], id);
}

/// The directories of pre-started executors under `jobs_dir`.
fn warm_dirs(jobs_dir: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(jobs_dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("warm-"))
        .collect();
    names.sort();
    names
}

/// Live `cola executor --wait-for-job` processes working under `jobs_dir`.
fn waiting_executors(jobs_dir: &std::path::Path) -> Vec<i32> {
    let jobs_dir = jobs_dir.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            cmdline.contains("--wait-for-job") && cmdline.contains(&jobs_dir)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_started_executors_run_jobs_refill_and_leave_with_their_middleware() {
    let mut stack = Stack::without_middleware().await;
    stack.middleware_args = vec!["--warm-executors".into(), "2".into()];
    stack.start_middleware();
    let jobs_dir = stack.data_dir().join("jobs");
    let pool_is_full =
        || warm_dirs(&jobs_dir).len() == 2 && waiting_executors(&jobs_dir).len() == 2;
    common::eventually(Duration::from_secs(30), "two executors wait", pool_is_full).await;
    let token = stack.token("alice").await;

    // A job runs in one of the waiting executors; another takes its place.
    let waiting = warm_dirs(&jobs_dir);
    let view = stack.run(&token, job("c", C_HELLO)).await;
    assert_eq!(view["status"], "succeeded", "{view}");
    let record = stack.record("alice", view["id"].as_str().unwrap()).await;
    let handle = record.executor.expect("the executor is recorded");
    let used = handle.id.rsplit(':').next().unwrap().to_owned();
    assert!(
        waiting.contains(&used),
        "{used} was not waiting: {waiting:?}"
    );
    common::eventually(Duration::from_secs(30), "the pool refilled", || {
        pool_is_full() && !warm_dirs(&jobs_dir).contains(&used)
    })
    .await;

    // Executors that died while waiting are passed over: the job still runs.
    kill_waiting_executors(&jobs_dir);
    let view = stack.run(&token, job("javascript", JS_HELLO)).await;
    assert_eq!(
        view["status"],
        "succeeded",
        "{view}\n{}",
        stack.middleware_log()
    );
    assert!(
        stack
            .middleware_log()
            .contains("a pre-started executor ended before its job"),
        "{}",
        stack.middleware_log()
    );
    common::eventually(Duration::from_secs(30), "the pool refilled", pool_is_full).await;

    // Without their middleware, waiting executors end and remove their directories.
    stack.kill_middleware();
    common::eventually(
        Duration::from_secs(30),
        "waiting executors gone with their directories",
        || waiting_executors(&jobs_dir).is_empty() && warm_dirs(&jobs_dir).is_empty(),
    )
    .await;

    // Killed while waiting, with their middleware, they leave their directories behind; the
    // next middleware removes them.
    stack.start_middleware();
    common::eventually(Duration::from_secs(30), "two executors wait", pool_is_full).await;
    let abandoned = warm_dirs(&jobs_dir);
    kill_waiting_executors(&jobs_dir);
    stack.kill_middleware();
    common::eventually(Duration::from_secs(30), "the executors are gone", || {
        waiting_executors(&jobs_dir).is_empty()
    })
    .await;
    assert_eq!(warm_dirs(&jobs_dir), abandoned);
    stack.start_middleware();
    common::eventually(
        Duration::from_secs(30),
        "abandoned directories removed, a new pool waiting",
        || pool_is_full() && warm_dirs(&jobs_dir).iter().all(|d| !abandoned.contains(d)),
    )
    .await;
}

fn kill_waiting_executors(jobs_dir: &std::path::Path) {
    let killed = waiting_executors(jobs_dir);
    for pid in &killed {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    // Dead, not dying: a job handed to an executor in the middle of its exit would be lost with
    // it (the middleware cannot tell that case from an executor that crashed on its job).
    let exited = |pid: &i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        })
    };
    let started = std::time::Instant::now();
    while !killed.iter().all(exited) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "killed executors still run"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// POST a C hello world with `request_id` as `X-Request-Id` (if any); the job's id and the
/// request id the gateway answered with.
async fn submit_with_request_id(
    stack: &Stack,
    token: &str,
    request_id: Option<&str>,
) -> (String, String) {
    let mut request = stack
        .http
        .post(format!("{}/api/v1/jobs", stack.url))
        .bearer_auth(token)
        .json(&job("c", C_HELLO));
    if let Some(id) = request_id {
        request = request.header("X-Request-Id", id);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 201);
    let answered = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let view: serde_json::Value = response.json().await.unwrap();
    (view["id"].as_str().unwrap().to_owned(), answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_follows_its_job_from_the_gateway_through_the_stream_to_the_middleware() {
    let mut stack = Stack::without_middleware().await;
    let token = stack.token("alice").await;
    let (traced, answered) = submit_with_request_id(&stack, &token, Some("trace-42.a")).await;
    assert_eq!(answered, "trace-42.a");
    // Made by the gateway when the client sends none, or one that is not a safe token.
    let (_, made) = submit_with_request_id(&stack, &token, None).await;
    assert_eq!(made.len(), 32, "{made}");
    let (_, replaced) = submit_with_request_id(&stack, &token, Some("no spaces, please")).await;
    assert!(replaced.len() == 32 && replaced != made, "{replaced}");

    // The stream's message carries it in a header.
    let js = async_nats::jetstream::new(async_nats::connect(stack.nats.url()).await.unwrap());
    let mut stream = js.get_stream(cola_wire::names::STREAM).await.unwrap();
    let subject = "cola.c.alice";
    let first = stream.info().await.unwrap().state.first_sequence;
    let message = stream.get_raw_message(first).await.unwrap();
    assert_eq!(message.subject.as_str(), subject);
    let headers = message.headers;
    assert_eq!(
        headers
            .get(cola_wire::names::REQUEST_ID_HEADER)
            .map(|v| v.as_str()),
        Some("trace-42.a")
    );

    // The middleware logs the job's end (as a JSON line: its log is not a terminal) with it.
    stack.start_middleware();
    stack
        .wait_terminal(&token, &traced, Duration::from_secs(60))
        .await;
    let ended = common::eventually_some(Duration::from_secs(10), || {
        stack.middleware_log().lines().find_map(|line| {
            let line: serde_json::Value = serde_json::from_str(line).ok()?;
            (line["message"] == "job ended" && line["span"]["job_id"] == traced.as_str())
                .then_some(line)
        })
    })
    .await
    .unwrap_or_else(|| panic!("no end of {traced} logged:\n{}", stack.middleware_log()));
    assert_eq!(ended["span"]["request_id"], "trace-42.a", "{ended}");
    assert_eq!(ended["span"]["user"], "alice", "{ended}");
    assert_eq!(ended["span"]["language"], "c", "{ended}");
    assert_eq!(ended["status"], "succeeded", "{ended}");
    for timing in ["queue_ms", "run_ms", "total_ms"] {
        assert!(ended[timing].is_u64(), "{timing}: {ended}");
    }
}
