//! A whole cola on this machine for end-to-end tests: a real nats-server, the gateway (in
//! process, on a free port), and real `cola middleware` processes with the process backend,
//! which run every job in a real `cola executor` inside real bubblewrap — or with the Docker
//! backend ([`Stack::start_docker`]), which runs every job in a real container of a real dockerd
//! ([`docker`]).
#![allow(dead_code)]

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use cola_testkit::TestNats;
use cola_wire::{
    JobKey, JobRecord, UserId,
    nats::{JobStore, TopologyConfig},
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const COLA: &str = env!("CARGO_BIN_EXE_cola");

pub struct Stack {
    pub nats: TestNats,
    pub dir: tempfile::TempDir,
    pub url: String,
    pub http: reqwest::Client,
    gateway_stop: CancellationToken,
    middlewares: Vec<Child>,
    /// Arguments of `cola middleware` beyond the NATS URL, data directory and timings.
    pub middleware_args: Vec<String>,
}

impl Stack {
    /// NATS, the gateway and one middleware.
    pub async fn start() -> Self {
        let mut stack = Self::without_middleware().await;
        stack.start_middleware();
        stack
    }

    /// NATS, the gateway configured further by `configure`, and one middleware.
    pub async fn start_with_gateway(
        configure: impl FnOnce(&mut cola_gateway::GatewayConfig),
    ) -> Self {
        let mut stack = Self::without_middleware_with(configure).await;
        stack.start_middleware();
        stack
    }

    /// NATS with its stream and buckets made as `topology` says, the gateway and one
    /// middleware.
    pub async fn start_with_topology(topology: &TopologyConfig) -> Self {
        let mut stack = Self::with_nats(TestNats::start_with(topology).await, |_| {}).await;
        stack.start_middleware();
        stack
    }

    /// NATS with an MQTT listener for energy telemetry (as `cola up --mqtt-listen`) and the
    /// gateway, configured further by `configure`; no middleware yet.
    pub async fn with_mqtt(configure: impl FnOnce(&mut cola_gateway::GatewayConfig)) -> Self {
        Self::with_nats(TestNats::start_with_mqtt().await, configure).await
    }

    /// NATS and the gateway only: jobs stay queued until a middleware starts.
    pub async fn without_middleware() -> Self {
        Self::without_middleware_with(|_| {}).await
    }

    async fn without_middleware_with(
        configure: impl FnOnce(&mut cola_gateway::GatewayConfig),
    ) -> Self {
        Self::with_nats(TestNats::start().await, configure).await
    }

    /// The gateway, configured further by `configure`, on `nats`.
    async fn with_nats(
        nats: TestNats,
        configure: impl FnOnce(&mut cola_gateway::GatewayConfig),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut config = cola_gateway::GatewayConfig {
            listen: listener.local_addr().unwrap(),
            nats_url: nats.url(),
            ..cola_gateway::GatewayConfig::default()
        };
        configure(&mut config);
        let gateway_stop = CancellationToken::new();
        tokio::spawn(cola_gateway::serve(listener, config, gateway_stop.clone()));
        Self {
            nats,
            dir,
            url,
            http: reqwest::Client::new(),
            gateway_stop,
            middlewares: Vec::new(),
            middleware_args: Vec::new(),
        }
    }

    /// NATS, the gateway and one middleware with the Docker backend, running the executor
    /// images built from the `cola` binary under test (see [`docker::images`]).
    pub async fn start_docker() -> Self {
        let mut stack = Self::docker_without_middleware().await;
        stack.start_middleware();
        stack
    }

    /// NATS and the gateway; middlewares started later use the Docker backend.
    pub async fn docker_without_middleware() -> Self {
        let tag = docker::images();
        let mut stack = Self::without_middleware().await;
        stack.middleware_args = vec![
            "--backend".into(),
            "docker".into(),
            "--executor-image-tag".into(),
            tag,
        ];
        stack
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("middleware")
    }

    /// Starts one more `cola middleware` process (3 s ack wait, so redelivery is quick).
    pub fn start_middleware(&mut self) {
        self.start_middleware_with(&[]);
    }

    /// [`start_middleware`](Self::start_middleware), with `args` too.
    pub fn start_middleware_with(&mut self, args: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("middleware.log"))
            .unwrap();
        let child = middleware_command(&self.nats.url(), &self.data_dir())
            .args(&self.middleware_args)
            .args(args)
            .stderr(log)
            .spawn()
            .unwrap();
        self.middlewares.push(child);
    }

    /// SIGKILLs the most recently started middleware, as a crash would.
    pub fn kill_middleware(&mut self) {
        let mut child = self.middlewares.pop().expect("a middleware runs");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// The process id of the most recently started middleware.
    pub fn middleware_pid(&self) -> u32 {
        self.middlewares.last().expect("a middleware runs").id()
    }

    pub fn middleware_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("middleware.log")).unwrap_or_default()
    }

    pub fn jobs(&self) -> &JobStore {
        &self.nats.topology.jobs
    }

    /// The record of the job `id` of `user`.
    pub async fn record(&self, user: &str, id: &str) -> JobRecord {
        let key = JobKey::parse(&format!("{user}.{id}")).expect("a valid job key");
        let found = self.jobs().get(&key).await.unwrap();
        found.unwrap_or_else(|| panic!("no record {key}")).0
    }

    /// Waits until the job `id` of `user` has its executor recorded (it has been launched).
    pub async fn executor_recorded(&self, user: &str, id: &str) {
        for _ in 0..300 {
            if self.record(user, id).await.executor.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "job {id} has no executor within 15 s\n{}",
            self.middleware_log()
        );
    }

    /// An API token for `user`.
    pub async fn token(&self, user: &str) -> String {
        cola_gateway::tokens::issue(
            &self.nats.topology.tokens,
            &UserId::parse(user).unwrap(),
            "test",
        )
        .await
        .unwrap()
    }

    /// POST /api/v1/jobs?wait=N; the status code and the JSON answer.
    pub async fn submit(&self, token: &str, body: Value, wait: u64) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/api/v1/jobs?wait={wait}", self.url))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Submits and waits for the end; panics (with the middleware's log) if it does not end.
    pub async fn run(&self, token: &str, body: Value) -> Value {
        let (status, view) = self.submit(token, body, 60).await;
        assert_eq!(status, 201, "{view}");
        self.wait_terminal(token, view["id"].as_str().unwrap(), Duration::from_secs(90))
            .await
    }

    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// `POST /api/v1/jobs/{id}/cancel`: asks to cancel a job; the answer's status code.
    pub async fn cancel(&self, token: &str, id: &str) -> u16 {
        self.http
            .post(format!("{}/api/v1/jobs/{id}/cancel", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    pub async fn view(&self, token: &str, id: &str) -> Value {
        self.get(token, &format!("/api/v1/jobs/{id}"))
            .await
            .json()
            .await
            .unwrap()
    }

    /// Reads the job until it is terminal.
    pub async fn wait_terminal(&self, token: &str, id: &str, timeout: Duration) -> Value {
        self.wait_for(token, id, timeout, |v| {
            matches!(
                v["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
        })
        .await
    }

    pub async fn wait_for(
        &self,
        token: &str,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            let view = self.view(token, id).await;
            if done(&view) {
                return view;
            }
            assert!(
                start.elapsed() < timeout,
                "job {id} did not get there in {timeout:?}: {view}\n{}",
                self.middleware_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The names of the entries of a job's output zip.
    pub async fn zip_entries(&self, token: &str, id: &str) -> Vec<(String, String)> {
        let response = self
            .get(token, &format!("/api/v1/jobs/{id}/output.zip"))
            .await;
        assert_eq!(response.status(), 200);
        let bytes = response.bytes().await.unwrap();
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
        (0..zip.len())
            .map(|i| {
                let mut entry = zip.by_index(i).unwrap();
                let mut text = String::new();
                std::io::Read::read_to_string(&mut entry, &mut text).ok();
                (entry.name().to_owned(), text)
            })
            .collect()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.gateway_stop.cancel();
        for child in &mut self.middlewares {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// A job body for `language` with one source file.
pub fn job(language: &str, source: &str) -> Value {
    json!({ "language": language, "source": source })
}

pub const C_HELLO: &str = "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n";
pub const GO_HELLO: &str =
    "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n";
pub const JS_HELLO: &str = "console.log('hello');\n";

/// `cola middleware` on `nats_url` with its data in `data_dir`, as the tests run it: two jobs at
/// once, 2 s of grace, a 3 s ack wait (so redelivery is quick), `info` logs on its stderr.
pub fn middleware_command(nats_url: &str, data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(COLA);
    command
        .arg("middleware")
        .args(["--nats-url", nats_url])
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--concurrency",
            "2",
            "--grace-seconds",
            "2",
            "--ack-wait-seconds",
            "3",
        ])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

/// Hello world in C, Go and JavaScript through `stack`: each succeeds, says hello, and its zip
/// holds stdout, stderr, `result.json` and, for compiled languages only, the compiler's output.
/// Returns each language with its job id.
pub async fn hello_world_in_every_language(
    stack: &Stack,
    token: &str,
) -> Vec<(&'static str, String)> {
    let mut ids = Vec::new();
    for (language, source, compiled) in [
        ("c", C_HELLO, true),
        ("go", GO_HELLO, true),
        ("javascript", JS_HELLO, false),
    ] {
        let view = stack.run(token, job(language, source)).await;
        assert_eq!(
            view["status"],
            "succeeded",
            "{language}: {view}\n{}",
            stack.middleware_log()
        );
        assert_eq!(view["stdout"], "hello\n", "{language}");
        assert!(view["reason"].is_null());
        assert_eq!(view["exit_code"], 0);
        assert!(view["timings_ms"]["run"].as_u64().is_some(), "{view}");
        let id = view["id"].as_str().unwrap().to_owned();
        assert_eq!(view["output_url"], format!("/api/v1/jobs/{id}/output.zip"));
        let entries = stack.zip_entries(token, &id).await;
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        for expected in ["stdout.txt", "stderr.txt", "result.json"] {
            assert!(names.contains(&expected), "{language}: {names:?}");
        }
        assert_eq!(
            names.contains(&"compile.txt"),
            compiled,
            "{language}: {names:?}"
        );
        let stdout = entries.iter().find(|(n, _)| n == "stdout.txt").unwrap();
        assert_eq!(stdout.1, "hello\n");
        let result: Value =
            serde_json::from_str(&entries.iter().find(|(n, _)| n == "result.json").unwrap().1)
                .unwrap();
        assert_eq!(result["status"], "succeeded");
        ids.push((language, id));
    }
    ids
}

/// Waits until `done` holds, polling; panics with `what` after `timeout`.
pub async fn eventually(timeout: Duration, what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What `find` finds, once it finds something within `timeout`; `None` if it never does.
pub async fn eventually_some<T>(timeout: Duration, find: impl Fn() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(found) = find() {
            return Some(found);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Docker daemon and cola's executor images for the tests. Nothing is skipped: without a
/// daemon (and one cannot be started) or images, the tests fail and say why.
pub mod docker {
    use std::{path::Path, process::Command, sync::OnceLock};

    /// The repository root.
    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the cola crate is in the workspace")
    }

    /// Makes sure a daemon answers (`scripts/dockerd.sh` starts Debian's dockerd when none
    /// does) and that the executor images of the `cola` binary under test exist, building them
    /// with `scripts/images.sh --cola-binary` when not; returns their tag. The tag names the
    /// binary (its size and modification time), so a rebuilt binary gets new images and an
    /// unchanged one reuses them. Once per test process; concurrent test processes serialise on
    /// a lock file.
    pub fn images() -> String {
        static TAG: OnceLock<String> = OnceLock::new();
        TAG.get_or_init(|| {
            run(
                Command::new(root().join("scripts/dockerd.sh")),
                "scripts/dockerd.sh",
            );
            let binary = Path::new(super::COLA);
            let meta = std::fs::metadata(binary).expect("the cola binary");
            let modified = meta
                .modified()
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            let tag = format!("test-{:x}-{:x}", meta.len(), modified.as_nanos());
            let lock = std::fs::File::create(std::env::temp_dir().join("cola-test-images.lock"))
                .expect("the images lock file");
            lock.lock().expect("locking the images lock file");
            let languages = ["c", "go", "javascript"];
            if !languages
                .iter()
                .all(|l| image_exists(&format!("cola-executor-{l}:{tag}")))
            {
                let mut build = Command::new(root().join("scripts/images.sh"));
                build.arg("--cola-binary").arg(binary).args(["--tag", &tag]);
                run(build, "scripts/images.sh");
                remove_other_test_images(&tag);
            }
            tag
        })
        .clone()
    }

    /// Images of earlier test binaries (`*:test-*` but `tag`): each set weighs gigabytes.
    fn remove_other_test_images(tag: &str) {
        let images =
            cli(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]).expect("docker image ls");
        let stale: Vec<&str> = images
            .lines()
            .filter(|image| {
                image.starts_with("cola")
                    && image.rsplit_once(':').is_some_and(|(_, t)| {
                        t.starts_with("test-") && t != tag && !t.starts_with(&format!("{tag}-"))
                    })
            })
            .collect();
        if !stale.is_empty() {
            let mut args = vec!["image", "rm", "--force"];
            args.extend(&stale);
            if let Err(e) = cli(&args) {
                eprintln!("cannot remove stale test images: {e}");
            }
        }
    }

    fn image_exists(image: &str) -> bool {
        cli(&["image", "inspect", image]).is_ok()
    }

    fn run(mut command: Command, what: &str) {
        let out = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        assert!(
            out.status.success(),
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs the docker CLI against the test daemon (started, with the images built, on first
    /// use); its standard output, or what went wrong.
    pub fn docker(args: &[&str]) -> Result<String, String> {
        images();
        cli(args)
    }

    /// Runs the docker CLI; its standard output, or what went wrong.
    fn cli(args: &[&str]) -> Result<String, String> {
        let out = Command::new("docker")
            .args(args)
            .output()
            .map_err(|e| format!("cannot run docker: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Names of the containers labelled as cola's job containers, running or not.
    pub fn job_containers() -> Vec<String> {
        docker(&[
            "ps",
            "-a",
            "--filter",
            "label=cola.job-id",
            "--format",
            "{{.Names}}",
        ])
        .expect("docker ps")
        .lines()
        .map(str::to_owned)
        .collect()
    }

    /// Whether the job's container exists.
    pub fn container_of(job_id: &str) -> Option<String> {
        let name = format!("cola-{job_id}");
        job_containers().into_iter().find(|n| *n == name)
    }

    /// Volumes, by name.
    pub fn volumes() -> Vec<String> {
        docker(&["volume", "ls", "--format", "{{.Name}}"])
            .expect("docker volume ls")
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// A C job reads stdin, gets two arguments and writes a file under `out/`: all three come back
/// (stdout in the view, the file in the zip).
pub async fn stdin_args_and_out_files_round_trip(stack: &Stack) {
    let token = stack.token("alice").await;
    let source = r#"#include <stdio.h>
#include <sys/stat.h>
int main(int argc, char **argv) {
    char line[64];
    if (!fgets(line, sizeof line, stdin)) return 3;
    mkdir("out", 0755);
    FILE *f = fopen("out/result.txt", "w");
    fprintf(f, "%s|%s|%s", argv[1], argv[2], line);
    fclose(f);
    printf("args=%d\n", argc - 1);
    return 0;
}
"#;
    let body = json!({ "language": "c", "files": [{ "name": "main.c", "content": source }], "stdin": "from stdin\n", "args": ["one", "two words"] });
    let view = stack.run(&token, body).await;
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(view["stdout"], "args=2\n");
    let entries = stack
        .zip_entries(&token, view["id"].as_str().unwrap())
        .await;
    let file = entries
        .iter()
        .find(|(n, _)| n == "out/result.txt")
        .expect("out/result.txt in the zip");
    assert_eq!(file.1, "one|two words|from stdin\n");
}
