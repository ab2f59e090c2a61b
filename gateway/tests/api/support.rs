//! A gateway started with `serve` on 127.0.0.1:0 against its own real nats-server. There is no
//! middleware: tests play its part by reading and writing the stream and buckets directly.

use std::time::Duration;

use async_nats::jetstream::{self, stream::State};
use cola_gateway::{GatewayConfig, GatewayError, serve, tokens};
use cola_testkit::TestNats;
use cola_wire::{JobId, JobMessage, JobRecord, UserId, names, nats::Transition};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

pub struct Gateway {
    pub nats: TestNats,
    pub base: String,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), GatewayError>>,
}

impl Gateway {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut GatewayConfig)) -> Self {
        let nats = TestNats::start().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut config = GatewayConfig {
            nats_url: nats.url(),
            ..GatewayConfig::default()
        };
        configure(&mut config);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, config, shutdown.clone()));
        let gateway = Self {
            nats,
            base,
            http: reqwest::Client::new(),
            shutdown,
            task,
        };
        gateway.wait_until_serving().await;
        gateway
    }

    async fn wait_until_serving(&self) {
        for _ in 0..200 {
            if let Ok(r) = self.http.get(self.url("/healthz")).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(!self.task.is_finished(), "the gateway stopped at start");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the gateway did not answer within 5 s");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A user with a fresh API token.
    pub async fn user(&self, name: &str) -> Caller {
        let user = UserId::parse(name).unwrap();
        let token = tokens::issue(&self.nats.topology.tokens, &user, "test")
            .await
            .unwrap();
        Caller { user, token }
    }

    pub fn request(&self, method: Method, path: &str, caller: &Caller) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&caller.token)
    }

    pub async fn submit(&self, caller: &Caller, body: Value) -> Response {
        self.request(Method::POST, "/api/v1/jobs", caller)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Submits a C hello world and returns its id.
    pub async fn submit_hello(&self, caller: &Caller) -> JobId {
        let response = self
            .submit(
                caller,
                serde_json::json!({"language": "c", "source": HELLO_C}),
            )
            .await;
        assert_eq!(response.status(), 201);
        let view: Value = response.json().await.unwrap();
        view["id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn get_json(&self, path: &str, caller: &Caller) -> (u16, Value) {
        let response = self
            .request(Method::GET, path, caller)
            .send()
            .await
            .unwrap();
        json_of(response).await
    }

    pub fn js(&self) -> jetstream::Context {
        jetstream::new(self.nats.client.clone())
    }

    /// Acknowledges the oldest job message, as the middleware does when its job has ended.
    pub async fn finish_one_message(&self) {
        use futures::StreamExt;
        let stream = self.js().get_stream(names::STREAM).await.unwrap();
        let consumer = stream
            .get_or_create_consumer(
                "test-finisher",
                jetstream::consumer::pull::Config {
                    durable_name: Some("test-finisher".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let mut batch = consumer.fetch().max_messages(1).messages().await.unwrap();
        let message = batch.next().await.unwrap().unwrap();
        message.double_ack().await.unwrap();
    }

    /// The job stream's counters.
    pub async fn queue_state(&self) -> State {
        let stream = self.js().get_stream(names::STREAM).await.unwrap();
        stream.get_info().await.unwrap().state
    }

    /// The job bucket's counters (its last sequence moves on every write).
    pub async fn records_state(&self) -> State {
        let stream = self
            .js()
            .get_stream(format!("KV_{}", names::JOBS_BUCKET))
            .await
            .unwrap();
        stream.get_info().await.unwrap().state
    }

    /// The last message on `cola.<language>.*` (any user): the job message and its `Nats-Msg-Id`.
    pub async fn last_message(&self, language: &str) -> (JobMessage, String) {
        let stream = self.js().get_stream(names::STREAM).await.unwrap();
        let message = stream
            .get_last_raw_message_by_subject(&format!("cola.{language}.*"))
            .await
            .unwrap();
        let msg_id = message
            .headers
            .get(names::MSG_ID_HEADER)
            .expect("a Nats-Msg-Id header")
            .to_string();
        (serde_json::from_slice(&message.payload).unwrap(), msg_id)
    }

    pub async fn record(&self, caller: &Caller, id: JobId) -> Option<JobRecord> {
        self.nats
            .topology
            .jobs
            .get(&cola_wire::JobKey::new(&caller.user, &id))
            .await
            .unwrap()
            .map(|(record, _)| record)
    }

    /// Changes a job's record as the middleware would (compare-and-set).
    pub async fn middleware_sets(
        &self,
        caller: &Caller,
        id: JobId,
        change: impl FnMut(&mut JobRecord) -> bool,
    ) -> JobRecord {
        match self
            .nats
            .topology
            .jobs
            .transition(&cola_wire::JobKey::new(&caller.user, &id), change)
            .await
            .unwrap()
        {
            Transition::Changed(record, _) => record,
            other => panic!("the record did not change: {other:?}"),
        }
    }

    pub async fn stop(self) -> Result<(), GatewayError> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the gateway stops within 10 s")
            .unwrap()
    }
}

pub struct Caller {
    pub user: UserId,
    pub token: String,
}

pub const HELLO_C: &str = "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n";

pub async fn json_of(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "status {status}, body {text}"
    );
    (status, serde_json::from_str(&text).unwrap())
}
