//! The `cola` binary as people use it: `cola up --dev` and `cola submit`.

mod common;

use std::{
    net::TcpListener,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::COLA;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn cola_up_dev_runs_everything_and_cola_submit_mirrors_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let (http, nats) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{http}");
    let mut up = Command::new(COLA)
        .args([
            "up",
            "--dev",
            "--listen",
            &format!("127.0.0.1:{http}"),
            "--nats-url",
            &format!("nats://127.0.0.1:{nats}"),
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("up.log")).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default();
    let token_file = dir.path().join("dev-token");
    let start = Instant::now();
    while !(token_file.exists() && ready(&url)) {
        assert!(
            up.try_wait().unwrap().is_none(),
            "cola up exited: {}",
            log()
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "cola up not ready: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();

    std::fs::write(dir.path().join("main.c"), common::C_HELLO).unwrap();
    let out = submit(&url, &token, &["--lang", "c"], &dir.path().join("main.c"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("succeeded"));

    std::fs::write(
        dir.path().join("main.js"),
        "console.error('bad'); process.exit(3)\n",
    )
    .unwrap();
    let out = submit(
        &url,
        &token,
        &["--lang", "javascript"],
        &dir.path().join("main.js"),
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad"));

    let out = submit(
        &url,
        "not-a-token",
        &["--lang", "javascript"],
        &dir.path().join("main.js"),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A numeric problem from a JSON file: the result is printed on stdout.
    let problem = dir.path().join("bisection.json");
    std::fs::write(
        &problem,
        r#"{"method": "bisection", "f": "x^3 + 4*x^2 - 10", "a": 1, "b": 2, "tol": 1e-10, "max_iter": 100}"#,
    )
    .unwrap();
    let out = submit(&url, &token, &["--lang", "numeric", "--problem"], &problem);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let root = result["root"].as_f64().unwrap();
    assert!((root - 1.365_230_013_414_097).abs() < 1e-9, "{result}");
    // A problem the gateway refuses: the field is named and nothing runs.
    std::fs::write(
        &problem,
        r#"{"method": "bisection", "f": "x^3 + 4*x^2 - 10", "a": 2, "b": 1, "tol": 1e-10, "max_iter": 100}"#,
    )
    .unwrap();
    let out = submit(&url, &token, &["--lang", "numeric", "--problem"], &problem);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("400") && stderr.contains("problem."),
        "{stderr}"
    );

    // SIGTERM stops everything, the spawned nats-server included.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = up.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "cola up did not stop: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{}", log());
    assert!(
        TcpListener::bind(("127.0.0.1", nats)).is_ok(),
        "nats-server still runs"
    );
}

#[test]
fn cola_up_refuses_dev_mode_off_loopback_before_binding_anything() {
    let stderr = cola_up_refused(&["--dev", "--listen", "0.0.0.0:0"]);
    assert!(stderr.contains("loopback"));
}

/// A backend left out of the build (`--no-default-features`) is refused by name before
/// anything starts.
#[cfg(not(all(feature = "docker", feature = "kubernetes")))]
#[test]
fn cola_up_refuses_a_backend_left_out_of_the_build() {
    let missing = [
        ("docker", cfg!(feature = "docker")),
        ("kubernetes", cfg!(feature = "kubernetes")),
    ];
    for (backend, _) in missing.iter().filter(|(_, built)| !built) {
        let stderr = cola_up_refused(&["--backend", backend]);
        assert!(
            stderr.contains(&format!("built without the {backend} backend")),
            "{stderr}"
        );
    }
}

/// Runs `cola up` with `args` and a NATS URL nothing answers at, expects it to refuse (exit
/// code 2) before starting a NATS server, and returns what it printed.
fn cola_up_refused(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(COLA)
        .arg("up")
        .args(args)
        .args(["--nats-url", "nats://127.0.0.1:1"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        !dir.path().join("nats").exists(),
        "no NATS server was started"
    );
    stderr
}

fn submit(url: &str, token: &str, lang: &[&str], file: &std::path::Path) -> std::process::Output {
    Command::new(COLA)
        .arg("submit")
        .args(lang)
        .arg(file)
        .args(["--wait", "--url", url, "--token", token])
        .output()
        .unwrap()
}

fn ready(url: &str) -> bool {
    let Some(addr) = url.strip_prefix("http://") else {
        return false;
    };
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    use std::io::{Read, Write};
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
    if stream.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok();
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

/// `cola executor --job-env` (the Kubernetes backend's executor): the job message comes from an
/// environment variable, and the executor reports to NATS itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cola_executor_takes_its_job_from_the_environment_and_reports_to_nats() {
    use cola_wire::{InputFile, Inputs, JobId, JobMessage, JobRecord, Language, Status, UserId};

    let nats = cola_testkit::TestNats::start().await;
    let lang = cola_wire::language(&Language::parse("c").unwrap()).unwrap();
    let message = JobMessage {
        id: JobId::new(),
        user: UserId::parse("alice").unwrap(),
        language: lang.id(),
        args: Vec::new(),
        limits: lang.default_limits,
        created_at: cola_wire::job::now(),
        work: cola_wire::Work::Inputs(Inputs {
            files: vec![InputFile {
                name: "main.c".into(),
                content: common::C_HELLO.into(),
            }],
            stdin: String::new(),
        }),
    };
    let mut record = JobRecord::queued(&message, Vec::new(), 0);
    record.status = Status::Running;
    let key = cola_wire::JobKey::new(&message.user, &message.id);
    nats.topology.jobs.create(&key, &record).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(COLA)
        .args(["executor", "--job-env", "COLA_TEST_JOB", "--job-dir"])
        .arg(dir.path())
        .args(["--nats-url", &nats.url()])
        .env("COLA_TEST_JOB", serde_json::to_string(&message).unwrap())
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
    assert_eq!(record.stdout, "hello\n");
    assert!(record.output_object.is_some());

    // Without the variable, it says so.
    let out = Command::new(COLA)
        .args(["executor", "--job-env", "COLA_TEST_NO_JOB", "--job-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("COLA_TEST_NO_JOB"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
