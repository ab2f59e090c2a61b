//! A whole cola on this machine for end-to-end tests: a real nats-server, the gateway (in
//! process, on a free port), and real `cola middleware` processes with the process backend,
//! which run every job in a real `cola executor` inside real bubblewrap.
#![allow(dead_code)]

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use cola_testkit::TestNats;
use cola_wire::{UserId, nats::JobStore};
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

    /// NATS and the gateway only: jobs stay queued until a middleware starts.
    pub async fn without_middleware() -> Self {
        Self::without_middleware_with(|_| {}).await
    }

    async fn without_middleware_with(
        configure: impl FnOnce(&mut cola_gateway::GatewayConfig),
    ) -> Self {
        let nats = TestNats::start().await;
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
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("middleware")
    }

    /// Starts one more `cola middleware` process (3 s ack wait, so redelivery is quick).
    pub fn start_middleware(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("middleware.log"))
            .unwrap();
        let child = Command::new(COLA)
            .arg("middleware")
            .args(["--nats-url", &self.nats.url()])
            .arg("--data-dir")
            .arg(self.data_dir())
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
            .stdout(Stdio::null())
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

    pub fn middleware_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("middleware.log")).unwrap_or_default()
    }

    pub fn jobs(&self) -> &JobStore {
        &self.nats.topology.jobs
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
