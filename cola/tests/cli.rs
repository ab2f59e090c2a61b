//! The `cola` binary as people use it: `cola up --dev`, `cola submit` and the other client
//! commands (`cola jobs …`, `cola languages`, `cola methods`).

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

/// `cola up --dev` on free ports with its data in a scratch directory, ready, with its token.
struct ColaUp {
    child: std::process::Child,
    dir: tempfile::TempDir,
    url: String,
    token: String,
    nats: u16,
}

impl ColaUp {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (http, nats) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{http}");
        let mut child = Command::new(COLA)
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
                child.try_wait().unwrap().is_none(),
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
        Self {
            child,
            dir,
            url,
            token,
            nats,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default()
    }

    /// `cola <args> --url <this> --token <this>`, with no client setting from the environment.
    fn client(&self, args: &[&str]) -> Client {
        let mut command = Command::new(COLA);
        command
            .args(args)
            .args(["--url", &self.url, "--token", &self.token]);
        Client::run(command)
    }
}

impl Drop for ColaUp {
    /// Stops `cola up` as a person would (SIGTERM), so that it stops the `nats-server` it
    /// spawned too; killed if it has not stopped within 20 s.
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_ok() {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// What a client command did.
struct Client {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Client {
    fn run(mut command: Command) -> Self {
        for name in ["COLA_URL", "COLA_TOKEN", "COLA_CONFIG"] {
            command.env_remove(name);
        }
        // No config file of the machine's user.
        command.env("XDG_CONFIG_HOME", "/nonexistent");
        let out = command.stdin(Stdio::null()).output().unwrap();
        Self {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts the exit code, showing what the command said otherwise.
    fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

#[test]
fn cola_up_dev_runs_everything_and_cola_submit_mirrors_the_job() {
    let mut up = ColaUp::start();
    let (dir, url, token, nats) = (
        up.dir.path().to_owned(),
        up.url.clone(),
        up.token.clone(),
        up.nats,
    );
    std::fs::write(dir.join("main.c"), common::C_HELLO).unwrap();
    let out = submit(&url, &token, &["--lang", "c"], &dir.join("main.c"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("succeeded"));

    std::fs::write(
        dir.join("main.js"),
        "console.error('bad'); process.exit(3)\n",
    )
    .unwrap();
    let out = submit(
        &url,
        &token,
        &["--lang", "javascript"],
        &dir.join("main.js"),
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
        &dir.join("main.js"),
    );
    // A refused token: exit code 77 (README "Command line").
    assert_eq!(out.status.code(), Some(77));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A numeric problem from a JSON file: the result is printed on stdout.
    let problem = dir.join("bisection.json");
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
    assert_eq!(out.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("400") && stderr.contains("problem."),
        "{stderr}"
    );

    // SIGTERM stops everything, the spawned nats-server included.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = up.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "cola up did not stop: {}",
            up.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{}", up.log());
    assert!(
        TcpListener::bind(("127.0.0.1", nats)).is_ok(),
        "nats-server still runs"
    );
}

/// The client commands against a live `cola up --dev`: what each prints as a table and as
/// JSON, the config file, and the exit code of each kind of outcome.
#[test]
fn cola_jobs_commands_list_show_cancel_download_and_follow_jobs() {
    let up = ColaUp::start();
    let catalogue = up.client(&["languages"]).expect(0);
    assert!(catalogue.stdout.starts_with("NAME"), "{}", catalogue.stdout);
    assert!(
        catalogue.stdout.contains("javascript"),
        "{}",
        catalogue.stdout
    );
    let languages = up.client(&["languages", "-o", "json"]).expect(0).json();
    assert!(languages["languages"].as_array().unwrap().len() >= 4);
    let methods = up.client(&["methods"]).expect(0);
    assert!(methods.stdout.contains("bisection"), "{}", methods.stdout);

    // Submitted without --wait: its id; followed live to its end by `watch`.
    let source = up.dir.path().join("main.c");
    std::fs::write(&source, common::C_HELLO).unwrap();
    let source = source.to_str().unwrap();
    let submitted = up.client(&["submit", "--lang", "c", source]).expect(0);
    let id = submitted
        .stdout
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let watched = up.client(&["jobs", "watch", &id]).expect(0);
    assert_eq!(watched.stdout, "hello\n");
    assert!(
        watched.stderr.contains(&format!("job {id} succeeded")),
        "{}",
        watched.stderr
    );
    // As JSON: one view per line, the last one ended.
    let watched = up.client(&["jobs", "watch", &id, "-o", "json"]).expect(0);
    let last: serde_json::Value =
        serde_json::from_str(watched.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "succeeded");

    let listed = up.client(&["jobs", "list"]).expect(0);
    assert!(listed.stdout.starts_with("ID"), "{}", listed.stdout);
    assert!(listed.stdout.contains(&id), "{}", listed.stdout);
    let page = up
        .client(&["jobs", "list", "-o", "json", "--limit", "5"])
        .expect(0)
        .json();
    assert_eq!(page["jobs"][0]["id"], id.as_str());
    let shown = up.client(&["jobs", "get", &id]).expect(0);
    assert!(shown.stdout.contains("succeeded"), "{}", shown.stdout);
    assert_eq!(
        up.client(&["jobs", "get", &id, "-o", "json"])
            .expect(0)
            .json()["id"],
        id.as_str()
    );

    let zip_path = up.dir.path().join("out.zip");
    up.client(&["jobs", "output", &id, "-f", zip_path.to_str().unwrap()])
        .expect(0);
    let zip = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    assert!(
        zip.file_names().any(|name| name == "stdout.txt"),
        "{:?}",
        zip.file_names().collect::<Vec<_>>()
    );

    // A job that would run for a minute, cancelled: `watch` ends with 1.
    let sleeper = up.dir.path().join("main.js");
    std::fs::write(&sleeper, "setTimeout(() => {}, 60000);\n").unwrap();
    let submitted = up
        .client(&["submit", "--lang", "javascript", sleeper.to_str().unwrap()])
        .expect(0);
    let slow = submitted
        .stdout
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let cancelled = up.client(&["jobs", "cancel", &slow]).expect(0);
    assert!(
        cancelled.stdout.contains("cancel requested"),
        "{}",
        cancelled.stdout
    );
    let watched = up.client(&["jobs", "watch", &slow]).expect(1);
    assert!(watched.stderr.contains("cancelled"), "{}", watched.stderr);

    // Each kind of failure has its exit code.
    let nobody = "01900000-0000-7000-8000-000000000000";
    up.client(&["jobs", "get", nobody]).expect(66);
    up.client(&["jobs", "list", "--limit", "0"]).expect(65);
    let mut command = Command::new(COLA);
    command.args(["jobs", "list", "--url", &up.url, "--token", "not-a-token"]);
    Client::run(command).expect(77);
    let mut command = Command::new(COLA);
    let closed = format!("http://127.0.0.1:{}", free_port());
    command.args(["jobs", "list", "--url", &closed, "--token", "t"]);
    Client::run(command).expect(69);
    let mut command = Command::new(COLA);
    command.args(["jobs", "list", "--url", &up.url]);
    let no_token = Client::run(command).expect(2);
    assert!(
        no_token.stderr.contains("COLA_TOKEN"),
        "{}",
        no_token.stderr
    );

    // The token from a config file readable by its owner only; refused when others can read it.
    let config = up.dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("url = \"{}\"\ntoken = \"{}\"\n", up.url, up.token),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut command = Command::new(COLA);
    command.args(["jobs", "list", "--config", config.to_str().unwrap()]);
    assert!(Client::run(command).expect(0).stdout.contains(&id));
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let mut command = Command::new(COLA);
    command.args(["jobs", "list", "--config", config.to_str().unwrap()]);
    let refused = Client::run(command).expect(2);
    assert!(refused.stderr.contains("chmod 600"), "{}", refused.stderr);
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
/// environment variable, and the executor reports to NATS itself, logging (as JSON lines here)
/// with the job's id and the id of the request that submitted it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cola_executor_takes_its_job_from_the_environment_and_reports_to_nats() {
    use cola_wire::{
        InputFile, Inputs, JobId, JobMessage, JobRecord, Language, RequestId, Status, UserId,
    };

    let nats = cola_testkit::TestNats::start().await;
    let lang = cola_wire::language(&Language::parse("c").unwrap()).unwrap();
    let message = JobMessage {
        schedule: None,
        request_id: Some(RequestId::parse("trace-7").unwrap()),
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
        .args(["--nats-url", &nats.url(), "--log-format", "json"])
        .env("COLA_TEST_JOB", serde_json::to_string(&message).unwrap())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let about_the_job = lines.iter().filter(|line| {
        line["span"]["request_id"] == "trace-7"
            && line["span"]["job_id"] == message.id.to_string().as_str()
    });
    assert!(about_the_job.count() >= 1, "{stderr}");
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
