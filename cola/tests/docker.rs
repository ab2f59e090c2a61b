//! The Docker backend end to end, against a real dockerd and the executor images built from the
//! `cola` binary under test: HTTP API → JetStream → `cola middleware --backend docker` → one
//! container per job (inputs in through the Engine API, the result frame out through the
//! container's log) → zip in the object store → job record. The daemon and images come from
//! `common::docker`; without them these tests fail, they never skip.

mod common;

use std::time::Duration;

use common::{C_HELLO, JS_HELLO, Stack, docker, job};
use serde_json::{Value, json};

/// The job's id, after checking that it is gone from Docker.
async fn assert_no_container(view: &Value) -> String {
    let id = view["id"].as_str().unwrap().to_owned();
    assert_no_container_of(&id).await;
    id
}

async fn assert_no_container_of(id: &str) {
    common::eventually(
        Duration::from_secs(20),
        &format!("the container of job {id} is removed"),
        || docker::container_of(id).is_none(),
    )
    .await;
}

fn c_job(source: &str, limits: Value) -> Value {
    json!({ "language": "c", "source": source, "limits": limits })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_world_in_every_language_succeeds_in_a_container() {
    let stack = Stack::start_docker().await;
    let token = stack.token("alice").await;
    for (_, id) in common::hello_world_in_every_language(&stack, &token).await {
        assert_no_container_of(&id).await;
        let record = stack
            .jobs()
            .get(&cola_wire::JobKey::parse(&format!("alice.{id}")).unwrap())
            .await
            .unwrap();
        let executor = record.unwrap().0.executor.expect("an executor handle");
        assert_eq!(
            (executor.backend.as_str(), executor.id),
            ("docker", format!("cola-{id}"))
        );
    }
    // A numeric job is solved by the middleware itself, whatever its backend.
    let body = json!({"language": "numeric", "problem": {"method": "bisection", "f": "x^3 + 4*x^2 - 10", "a": 1, "b": 2, "tol": 1e-10, "max_iter": 200}});
    let view = stack.run(&token, body).await;
    assert_eq!(view["status"], "succeeded", "{view}");
    let key = cola_wire::JobKey::parse(&format!("alice.{}", view["id"].as_str().unwrap())).unwrap();
    let (record, _) = stack.jobs().get(&key).await.unwrap().unwrap();
    assert!(record.executor.is_none(), "{record:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_args_and_out_files_make_the_round_trip_through_the_engine_api() {
    let stack = Stack::start_docker().await;
    common::stdin_args_and_out_files_round_trip(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_is_a_sandbox() {
    let stack = Stack::start_docker().await;
    let token = stack.token("alice").await;
    // Each line: what was tried, then `ok` or the error.
    let source = r#"#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
extern char **environ;
static void try_write(const char *path) {
    FILE *f = fopen(path, "w");
    printf("write %s: %s\n", path, f ? "ok" : strerror(errno));
    if (f) fclose(f);
}
static void try_read(const char *path) {
    FILE *f = fopen(path, "r");
    printf("read %s: %s\n", path, f ? "ok" : strerror(errno));
    if (f) fclose(f);
}
int main(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(53) };
    inet_pton(AF_INET, "1.1.1.1", &addr.sin_addr);
    int c = connect(s, (struct sockaddr *)&addr, sizeof addr);
    printf("connect 1.1.1.1: %s\n", c == 0 ? "ok" : strerror(errno));
    inet_pton(AF_INET, "172.17.0.1", &addr.sin_addr);
    c = connect(socket(AF_INET, SOCK_STREAM, 0), (struct sockaddr *)&addr, sizeof addr);
    printf("connect 172.17.0.1: %s\n", c == 0 ? "ok" : strerror(errno));
    try_write("/etc/cola");
    try_write("/usr/local/bin/cola");
    try_write("/cola");
    try_write("out/inside.txt");
    try_write("/tmp/scratch");
    try_read("/proc/1/environ");
    try_read("/var/run/docker.sock");
    printf("uid %d\n", (int)getuid());
    int n = 0;
    for (char **e = environ; *e; e++) n++;
    printf("environment %d\n", n);
    return 0;
}
"#;
    let view = stack.run(&token, job("c", source)).await;
    assert_eq!(view["status"], "succeeded", "{view}");
    let stdout = view["stdout"].as_str().unwrap();
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix}: {stdout}"))
            .to_owned()
    };
    assert_eq!(
        line("connect 1.1.1.1"),
        "connect 1.1.1.1: Network is unreachable"
    );
    assert_eq!(
        line("connect 172.17.0.1"),
        "connect 172.17.0.1: Network is unreachable"
    );
    for outside in ["/etc/cola", "/usr/local/bin/cola", "/cola"] {
        let result = line(&format!("write {outside}"));
        assert!(
            result.ends_with("Read-only file system") || result.ends_with("Permission denied"),
            "{result}"
        );
    }
    assert_eq!(line("write out/inside.txt"), "write out/inside.txt: ok");
    assert_eq!(line("write /tmp/scratch"), "write /tmp/scratch: ok");
    // The executor (PID 1) is not dumpable: its environment is closed to the job's uid.
    assert_eq!(
        line("read /proc/1/environ"),
        "read /proc/1/environ: Permission denied"
    );
    assert_eq!(
        line("read /var/run/docker.sock"),
        "read /var/run/docker.sock: No such file or directory"
    );
    assert_ne!(line("uid"), "uid 0");
    // PATH, HOME and LANG only.
    assert_eq!(line("environment"), "environment 3");
}

/// Writes 64 files of 512 KiB (each under the per-file limit) into `DIR` until one fails.
const FILL_DISK: &str = "#include <stdio.h>\n#include <string.h>\nint main(void) { static char block[512 << 10]; memset(block, 'x', sizeof block); for (int i = 0; i < 64; i++) { char name[64]; snprintf(name, sizeof name, \"DIR/f%d\", i); FILE *f = fopen(name, \"w\"); if (!f || fwrite(block, 1, sizeof block, f) != sizeof block || fclose(f) != 0) return 1; } return 0; }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_end_jobs_with_their_reason() {
    let stack = Stack::start_docker().await;
    let token = stack.token("alice").await;
    let cases = [
        (
            "a memory bomb",
            c_job(
                "#include <stdlib.h>\n#include <string.h>\nint main(void) { for (;;) { char *p = malloc(1 << 20); if (!p) return 1; memset(p, 1, 1 << 20); } }\n",
                json!({ "memory_mb": 64 }),
            ),
            "memory_limit",
        ),
        (
            // Shared memory escapes RLIMIT_DATA: the container's memory cgroup stops it.
            "a shared-memory bomb",
            c_job(
                "#define _GNU_SOURCE\n#include <string.h>\n#include <sys/mman.h>\nint main(void) { for (;;) { char *p = mmap(0, 64 << 20, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0); if (p == MAP_FAILED) return 1; memset(p, 1, 64 << 20); } }\n",
                json!({ "memory_mb": 64, "wall_time_ms": 30000, "cpu_time_ms": 30000 }),
            ),
            "memory_limit",
        ),
        (
            "an infinite loop",
            c_job(
                "int main(void) { for (;;) {} }\n",
                json!({ "wall_time_ms": 1000, "cpu_time_ms": 1000 }),
            ),
            "time_limit",
        ),
        (
            "a sleeper past its wall time",
            c_job(
                "#include <unistd.h>\nint main(void) { sleep(60); return 0; }\n",
                json!({ "wall_time_ms": 1000 }),
            ),
            "time_limit",
        ),
        (
            "a fork bomb",
            c_job(
                "#include <unistd.h>\nint main(void) { for (;;) fork(); }\n",
                json!({ "processes": 16, "wall_time_ms": 1500, "cpu_time_ms": 1000 }),
            ),
            "time_limit",
        ),
        (
            "a flood of output",
            c_job(
                "#include <stdio.h>\nint main(void) { for (;;) putchar('x'); }\n",
                json!({ "output_kb": 64 }),
            ),
            "output_limit",
        ),
        (
            "files past the disk allowance in the work area",
            c_job(
                FILL_DISK.replace("DIR", ".").as_str(),
                json!({ "disk_mb": 16 }),
            ),
            "output_limit",
        ),
        (
            "files past the disk allowance in /tmp",
            c_job(
                FILL_DISK.replace("DIR", "/tmp").as_str(),
                json!({ "disk_mb": 16 }),
            ),
            "output_limit",
        ),
        (
            "a compile error",
            c_job("int main(void) { return nope; }\n", json!({})),
            "compile_error",
        ),
    ];
    for (what, body, reason) in cases {
        let started = std::time::Instant::now();
        let view = stack.run(&token, body).await;
        assert_eq!(
            (view["status"].as_str(), view["reason"].as_str()),
            (Some("failed"), Some(reason)),
            "{what}: {view}\n{}",
            stack.middleware_log()
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what} took {:?}",
            started.elapsed()
        );
        assert_no_container(&view).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_jobs_with_cancels_and_timeouts_leave_no_container_or_volume() {
    let volumes_before = docker::volumes();
    let stack = Stack::start_docker().await;
    // Two users, each within the quota of unfinished jobs.
    let tokens = [stack.token("alice").await, stack.token("bob").await];
    let token = |i: usize| &tokens[i % 2];
    let mut ids = Vec::new();
    let mut cancels = Vec::new();
    for i in 0..100 {
        let body = match i % 10 {
            // Stops at its wall time.
            3 => {
                json!({ "language": "javascript", "source": "for (;;) {}\n", "limits": { "wall_time_ms": 1000, "cpu_time_ms": 1000 } })
            }
            // Cancelled below, queued or running.
            7 => {
                json!({ "language": "javascript", "source": "setTimeout(() => {}, 60000);\n", "limits": { "wall_time_ms": 30000 } })
            }
            _ => json!({ "language": "javascript", "source": format!("console.log({i});\n") }),
        };
        let (status, view) = stack.submit(token(i), body, 0).await;
        assert_eq!(status, 201, "{view}");
        let id = view["id"].as_str().unwrap().to_owned();
        if i % 10 == 7 {
            cancels.push((i, id.clone()));
        }
        ids.push(id);
    }
    for (i, id) in &cancels {
        let status = stack.cancel(token(*i), id).await;
        assert!((200..300).contains(&status), "{status}");
    }
    for (i, id) in ids.iter().enumerate() {
        let view = stack
            .wait_terminal(token(i), id, Duration::from_secs(300))
            .await;
        let expected = match i % 10 {
            3 => ("failed", Some("time_limit")),
            7 => ("cancelled", None),
            _ => ("succeeded", None),
        };
        assert_eq!(
            (view["status"].as_str().unwrap(), view["reason"].as_str()),
            expected,
            "job {i}: {view}"
        );
    }
    common::eventually(
        Duration::from_secs(30),
        "every job's container is removed",
        || {
            let left = docker::job_containers();
            ids.iter().all(|id| !left.contains(&format!("cola-{id}")))
        },
    )
    .await;
    let created: Vec<String> = docker::volumes()
        .into_iter()
        .filter(|v| !volumes_before.contains(v))
        .collect();
    assert!(created.is_empty(), "volumes left behind: {created:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_middleware_leaves_running_containers_to_the_next_which_finishes_each_job_once() {
    let mut stack = Stack::docker_without_middleware().await;
    let token = stack.token("alice").await;
    let mut ids = Vec::new();
    // A compiled job too: its run step's memory limit is set by whichever middleware watches it.
    let jobs = [
        (
            "javascript",
            "setTimeout(() => console.log('done 0'), 3000);\n",
        ),
        (
            "c",
            "#include <stdio.h>\n#include <unistd.h>\nint main(void) { sleep(3); puts(\"done 1\"); return 0; }\n",
        ),
    ];
    for (language, source) in jobs {
        let (status, view) = stack.submit(&token, job(language, source), 0).await;
        assert_eq!(status, 201, "{view}");
        ids.push(view["id"].as_str().unwrap().to_owned());
    }
    stack.start_middleware();
    // Both containers run and are recorded; then the middleware dies without cleaning up.
    for _ in 0..600 {
        let mut recorded = 0;
        for id in &ids {
            let record = stack
                .jobs()
                .get(&cola_wire::JobKey::parse(&format!("alice.{id}")).unwrap())
                .await
                .unwrap();
            recorded += usize::from(record.is_some_and(|(r, _)| r.executor.is_some()));
        }
        if recorded == ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ids.iter().all(|id| docker::container_of(id).is_some()));
    stack.kill_middleware();
    // One job's container ends while no middleware watches it: its outcome waits in its log.
    tokio::time::sleep(Duration::from_secs(4)).await;
    stack.start_middleware();
    for (i, id) in ids.iter().enumerate() {
        let view = stack
            .wait_terminal(&token, id, Duration::from_secs(90))
            .await;
        assert_eq!(
            view["status"],
            "succeeded",
            "{view}\n{}",
            stack.middleware_log()
        );
        assert_eq!(view["stdout"], format!("done {i}\n"));
        let (record, _) = stack
            .jobs()
            .get(&cola_wire::JobKey::parse(&format!("alice.{id}")).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.attempt, 1, "the job ran once");
        assert_no_container(&view).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_at_start_up_removes_containers_of_ended_jobs() {
    let mut stack = Stack::docker_without_middleware().await;
    let token = stack.token("alice").await;
    let body = json!({ "language": "javascript", "source": "setTimeout(() => {}, 60000);\n", "limits": { "wall_time_ms": 60000 } });
    let (_, view) = stack.submit(&token, body, 0).await;
    let id = view["id"].as_str().unwrap().to_owned();
    stack.start_middleware();
    common::eventually(Duration::from_secs(60), "the container runs", || {
        docker::container_of(&id).is_some()
    })
    .await;
    stack.kill_middleware();
    // The job ends while no middleware runs (as another replica's deadline would end it).
    let key = cola_wire::JobKey::parse(&format!("alice.{id}")).unwrap();
    stack
        .jobs()
        .transition(&key, |r| {
            r.finish(cola_wire::Status::Cancelled, None, cola_wire::job::now());
            true
        })
        .await
        .unwrap();
    stack.start_middleware();
    common::eventually(
        Duration::from_secs(30),
        "the sweep removes the container",
        || docker::container_of(&id).is_none(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_errors_and_bad_result_frames_are_internal_errors_for_operators() {
    let tag = docker::images();
    // An image whose "executor" prints no result frame.
    let garbage = format!("{tag}-garbage");
    let dockerfile = format!(
        "FROM cola-executor-javascript:{tag}\nENTRYPOINT [\"/bin/sh\", \"-c\", \"echo not a frame; echo oops >&2\"]\n"
    );
    let mut build = std::process::Command::new("docker")
        .args([
            "build",
            "-q",
            "-t",
            &format!("cola-executor-javascript:{garbage}"),
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut build.stdin.take().unwrap(), dockerfile.as_bytes()).unwrap();
    assert!(build.wait().unwrap().success());

    let mut stack = Stack::docker_without_middleware().await;
    let position = stack
        .middleware_args
        .iter()
        .position(|a| a == "--executor-image-tag")
        .unwrap();
    stack.middleware_args[position + 1] = garbage;
    stack.start_middleware();
    let token = stack.token("alice").await;
    let record_of = |view: &Value| {
        cola_wire::JobKey::parse(&format!("alice.{}", view["id"].as_str().unwrap())).unwrap()
    };

    let view = stack.run(&token, job("javascript", JS_HELLO)).await;
    assert_eq!(view["reason"], "internal_error", "{view}");
    let (record, _) = stack.jobs().get(&record_of(&view)).await.unwrap().unwrap();
    let message = record.message.unwrap();
    assert!(
        message.contains("without a valid result") && message.contains("oops"),
        "{message}"
    );
    assert_eq!(
        view["stdout"], "",
        "nothing of it reaches the user's output"
    );
    assert_no_container(&view).await;

    // No image of that tag for C: the daemon's own words end up in the record.
    let view = stack.run(&token, job("c", C_HELLO)).await;
    assert_eq!(view["reason"], "internal_error", "{view}");
    let (record, _) = stack.jobs().get(&record_of(&view)).await.unwrap().unwrap();
    let message = record.message.unwrap();
    assert!(message.contains("No such image"), "{message}");
    assert_eq!(view["stderr"], "");
    assert_no_container(&view).await;
}

/// The executor image as the Kubernetes backend runs it, under the Pod's security context
/// (read-only root, uid 10001, no capabilities, no privilege escalation, `/work` and `/tmp` as
/// the only writable places) and with the Pod's arguments: the job comes from `COLA_JOB`, the
/// executor reports to NATS itself, and user code cannot read the NATS URL or the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executor_image_runs_a_pod_job_under_the_pods_security_context() {
    use cola_wire::{InputFile, Inputs, JobId, JobMessage, JobRecord, Language, Status, UserId};

    let tag = docker::images();
    let nats = cola_testkit::TestNats::start().await;
    let lang = cola_wire::language(&Language::parse("c").unwrap()).unwrap();
    // The program prints what it can see of the executor's secrets.
    let source = r#"#include <stdio.h>
#include <stdlib.h>
int main(void) {
    FILE *f = fopen("/proc/1/environ", "r");
    printf("environ:%s job:%s url:%s\n", f ? "readable" : "closed",
           getenv("COLA_JOB") ? "set" : "unset", getenv("COLA_NATS_URL") ? "set" : "unset");
    return 0;
}
"#;
    let message = JobMessage {
        schedule: None,
        request_id: None,
        id: JobId::new(),
        user: UserId::parse("alice").unwrap(),
        language: lang.id(),
        args: Vec::new(),
        limits: lang.default_limits,
        created_at: cola_wire::job::now(),
        work: cola_wire::Work::Inputs(Inputs {
            files: vec![InputFile {
                name: "main.c".into(),
                content: source.into(),
            }],
            stdin: String::new(),
        }),
    };
    let mut record = JobRecord::queued(&message, Vec::new(), 0);
    record.status = Status::Running;
    let key = cola_wire::JobKey::new(&message.user, &message.id);
    nats.topology.jobs.create(&key, &record).await.unwrap();

    let tmpfs = "rw,exec,nosuid,nodev,size=64m,uid=10001,gid=10001,mode=0700";
    let out = tokio::process::Command::new("docker")
        // The host network only to reach the test's NATS on loopback (in a cluster, a
        // NetworkPolicy lets the Pod reach NATS and nothing else).
        .args(["run", "--rm", "--network", "host", "--read-only"])
        .args(["--cap-drop", "ALL", "--security-opt", "no-new-privileges"])
        .args(["--user", "10001:10001"])
        .args(["--tmpfs", &format!("/work:{tmpfs}")])
        .args(["--tmpfs", &format!("/tmp:{tmpfs}")])
        .args([
            "-e",
            &format!("COLA_JOB={}", serde_json::to_string(&message).unwrap()),
        ])
        .args(["-e", &format!("COLA_NATS_URL={}", nats.url())])
        .arg(format!("cola-executor-c:{tag}"))
        .args(cola_middleware::kube::default_executor_args())
        // One container doing both steps, as an interpreted language's Pod does (a compiled
        // one's splits them: `cola/tests/split_steps.rs`).
        .args(["--job-env", cola_middleware::kube::JOB_ENV])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (record, _) = nats.topology.jobs.get(&key).await.unwrap().unwrap();
    assert_eq!(record.status, Status::Succeeded, "{record:?}");
    assert_eq!(record.stdout, "environ:closed job:unset url:unset\n");
    assert!(record.output_object.is_some());
}

/// A step ends with its main process, as in the sandbox: whatever it left behind is killed,
/// also processes outside its process group that keep its stdout open; and its CPU limit
/// counts every process of the container, also those that left the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_ends_with_its_main_process_and_its_cpu_limit_counts_every_process() {
    let stack = Stack::start_docker().await;
    let token = stack.token("alice").await;
    let c_background = "#include <stdio.h>\n#include <unistd.h>\nint main(void) { puts(\"parent done\"); fflush(stdout); if (fork() == 0) { sleep(100); _exit(0); } return 0; }\n";
    let js_background = "require(\"child_process\").spawn(\"/bin/sleep\", [\"100\"], { detached: true, stdio: \"inherit\" }).unref();\nconsole.log(\"parent done\");\n";
    for (language, source) in [("c", c_background), ("javascript", js_background)] {
        let started = std::time::Instant::now();
        let view = stack.run(&token, job(language, source)).await;
        assert_eq!(
            (view["status"].as_str(), view["stdout"].as_str()),
            (Some("succeeded"), Some("parent done\n")),
            "{language}: {view}\n{}",
            stack.middleware_log()
        );
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{language} took {:?}",
            started.elapsed()
        );
        assert_no_container(&view).await;
    }

    // A chain of processes, each in a session of its own, each burning less than the CPU
    // limit before it hands over to a child, while the main process sleeps.
    let chain = r#"#include <time.h>
#include <unistd.h>
static void burn(double seconds) {
    clock_t end = clock() + (clock_t)(seconds * CLOCKS_PER_SEC);
    while (clock() < end) {}
}
int main(void) {
    if (fork() == 0) {
        for (;;) {
            setsid();
            burn(0.3);
            if (fork() != 0) _exit(0);
        }
    }
    sleep(30);
    return 0;
}
"#;
    let view = stack
        .run(
            &token,
            c_job(chain, json!({ "cpu_time_ms": 1000, "wall_time_ms": 20000 })),
        )
        .await;
    assert_eq!(
        (view["status"].as_str(), view["reason"].as_str()),
        (Some("failed"), Some("time_limit")),
        "{view}"
    );
    let id = assert_no_container(&view).await;
    let (record, _) = stack
        .jobs()
        .get(&cola_wire::JobKey::parse(&format!("alice.{id}")).unwrap())
        .await
        .unwrap()
        .unwrap();
    let message = record.message.unwrap_or_default();
    assert!(message.contains("CPU time limit"), "{message}: {view}");
    // Stopped at its CPU time, long before its wall time (however busy this machine is).
    let run_ms = view["timings_ms"]["run"].as_u64().unwrap();
    assert!(run_ms < 15000, "the chain ran {run_ms} ms: {view}");
}

/// The container's memory limit is the compile step's only until the run step: then the
/// program's own, shared memory and tmpfs files included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_step_is_held_to_its_own_memory_limit() {
    let stack = Stack::start_docker().await;
    let token = stack.token("alice").await;
    let shared = "#define _GNU_SOURCE\n#include <stdio.h>\n#include <string.h>\n#include <sys/mman.h>\nint main(void) { size_t size = (size_t)1 << 30; char *p = mmap(0, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0); if (p == MAP_FAILED) return 1; memset(p, 1, size); puts(\"touched\"); return 0; }\n";
    // 200 files of 1000 KB (under the file size limit) in /tmp, as many in /work: each half
    // fits its tmpfs (a disk allowance of 256 MB each), not the program's memory limit.
    let files = r#"#include <stdio.h>
#include <string.h>
static char block[1000 << 10];
int main(void) {
    memset(block, 1, sizeof block);
    char path[64];
    for (int i = 0; i < 400; i++) {
        snprintf(path, sizeof path, i % 2 ? "/tmp/%d" : "%d", i);
        FILE *f = fopen(path, "w");
        if (!f || fwrite(block, 1, sizeof block, f) != sizeof block || fclose(f) != 0) return 1;
    }
    puts("written");
    return 0;
}
"#;
    for (what, source) in [("shared memory", shared), ("tmpfs files", files)] {
        let view = stack
            .run(
                &token,
                c_job(source, json!({ "memory_mb": 256, "disk_mb": 256 })),
            )
            .await;
        assert_eq!(
            (view["status"].as_str(), view["reason"].as_str()),
            (Some("failed"), Some("memory_limit")),
            "{what}: {view}\n{}",
            stack.middleware_log()
        );
        assert_no_container(&view).await;
    }
    // What fits the limit still runs, after a compile step that needs more than it.
    let view = stack
        .run(&token, c_job(C_HELLO, json!({ "memory_mb": 16 })))
        .await;
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(view["stdout"], "hello\n");
}

/// User code runs as the executor's uid and can replace the executor's logs with links: the
/// executor reads none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_replaced_by_links_are_not_followed() {
    let stack = Stack::start_docker().await;
    let token = stack.token("alice").await;
    let source = r#"#include <stdio.h>
#include <unistd.h>
int main(void) {
    puts("mine");
    fflush(stdout);
    const char *logs[] = { "../../logs/stdout", "../../logs/stderr", "../../logs/compile" };
    const char *targets[] = { "/etc/passwd", "/proc/1/maps", "/etc/passwd" };
    for (int i = 0; i < 3; i++) {
        if (unlink(logs[i]) != 0 || symlink(targets[i], logs[i]) != 0) {
            perror(logs[i]);
            return 1;
        }
    }
    return 0;
}
"#;
    let view = stack.run(&token, job("c", source)).await;
    assert_eq!(view["status"], "succeeded", "{view}");
    let id = view["id"].as_str().unwrap();
    let mut texts: Vec<(String, String)> = ["stdout", "stderr", "compile_output"]
        .iter()
        .map(|field| (field.to_string(), view[field].as_str().unwrap().to_owned()))
        .collect();
    texts.extend(stack.zip_entries(&token, id).await);
    for (name, text) in &texts {
        assert!(
            !text.contains("root:") && !text.contains("/usr/local/bin/cola"),
            "{name} shows a file the link points to: {text}"
        );
    }
}
