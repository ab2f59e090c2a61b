//! The Kubernetes backend against a mocked API server (tower-test): every call the backend makes
//! is taken in order and asserted (method, path, query, body), and a call that never comes fails
//! the test after a timeout. Job records live in a real nats-server.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use bytes::Bytes;
use cola_middleware::{
    Backend, BackendError, ExecutorExit, MiddlewareConfig,
    kube::{self as kb, KubeBackend, KubeBackendConfig, SecretKeyRef},
};
use cola_testkit::TestNats;
use cola_wire::{
    ExecutorHandle, InputFile, Inputs, JobId, JobKey, JobMessage, JobRecord, Language, Reason,
    Status, UserId, Work,
    input_object::{fetch_inputs, store_inputs},
    language, names,
    nats::{Topology, TopologyConfig},
};
use http::{Method, Request, Response};
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::UnsyncBoxBody};
use kube::{Client, client::Body};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower_test::mock::{self, Handle, SendResponse};

const NS: &str = "cola-executors";
const PODS: &str = "/api/v1/namespaces/cola-executors/pods";
/// How long a call the backend should make may take to come.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the mocked API server answers with.
type Reply = Response<UnsyncBoxBody<Bytes, std::io::Error>>;

/// The mocked API server: the other end of the client's service.
struct ApiServer {
    handle: Handle<Request<Body>, Reply>,
}

/// One call the backend made.
struct Call {
    request: Request<Body>,
    reply: SendResponse<Reply>,
}

impl Call {
    fn query(&self) -> BTreeMap<String, String> {
        let query = self.request.uri().query().unwrap_or_default();
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    }

    async fn body(self) -> (Value, SendResponse<Reply>) {
        let bytes = self.request.into_body().collect_bytes().await.unwrap();
        (serde_json::from_slice(&bytes).unwrap(), self.reply)
    }

    fn respond(self, code: u16, body: Value) {
        self.reply.send_response(response(code, &body));
    }
}

impl ApiServer {
    /// The next call, which must be `method` on `path`.
    async fn next(&mut self, method: Method, path: &str) -> Call {
        let (request, reply) = tokio::time::timeout(CALL_TIMEOUT, self.handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("no {method} {path} within {CALL_TIMEOUT:?}"))
            .expect("the client is gone");
        assert_eq!(request.method(), method, "method of {}", request.uri());
        assert_eq!(request.uri().path(), path, "path of {method}");
        Call { request, reply }
    }

    /// No call comes for a while.
    async fn quiet(&mut self) {
        let next = tokio::time::timeout(Duration::from_millis(300), self.handle.next_request());
        if let Ok(Some((request, _))) = next.await {
            panic!("unexpected call {} {}", request.method(), request.uri());
        }
    }

    /// Answers the start-up reconciliation's list with `pods`.
    async fn list(&mut self, pods: Vec<Value>) {
        let call = self.next(Method::GET, PODS).await;
        let query = call.query();
        assert_eq!(
            query["labelSelector"],
            "app.kubernetes.io/name=cola-executor,app.kubernetes.io/managed-by=cola-middleware"
        );
        assert_eq!(query["limit"], "500");
        call.respond(
            200,
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "10"}, "items": pods}),
        );
    }

    /// Takes the create call and checks the Pod is the job's; returns the Pod sent.
    async fn create(&mut self, job: &JobMessage, code: u16, answer: Option<Value>) -> Value {
        let call = self.next(Method::POST, PODS).await;
        let (pod, reply) = call.body().await;
        assert_eq!(pod["metadata"]["name"], pod_name(job));
        let answer = answer.unwrap_or_else(|| with_status(&pod, "1", json!({"phase": "Pending"})));
        reply.send_response(response(code, &answer));
        pod
    }

    async fn get(&mut self, job: &JobMessage, answer: Value) {
        let path = format!("{PODS}/{}", pod_name(job));
        let code = answer["code"].as_u64().unwrap_or(200) as u16;
        self.next(Method::GET, &path).await.respond(code, answer);
    }

    /// Takes a watch from `version` and streams `events` (then the watch ends).
    async fn watch(&mut self, job: &JobMessage, version: &str, events: &[(&str, Value)]) {
        let call = self.next(Method::GET, PODS).await;
        let query = call.query();
        assert_eq!(query["watch"], "true");
        assert_eq!(
            query["fieldSelector"],
            format!("metadata.name={}", pod_name(job))
        );
        assert_eq!(query["resourceVersion"], version);
        let mut body = Vec::new();
        for (kind, object) in events {
            serde_json::to_writer(&mut body, &json!({"type": kind, "object": object})).unwrap();
            body.push(b'\n');
        }
        call.reply
            .send_response(Response::builder().status(200).body(full(body)).unwrap());
    }

    /// Takes the delete of the job's Pod, answering `code`.
    async fn delete(&mut self, job: &JobMessage, code: u16) {
        let call = self
            .next(Method::DELETE, &format!("{PODS}/{}", pod_name(job)))
            .await;
        let (options, reply) = call.body().await;
        assert_eq!(options["gracePeriodSeconds"], 1);
        assert_eq!(options["propagationPolicy"], "Background");
        let body = if code == 200 {
            json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 200})
        } else {
            api_status(code, "NotFound", "pods not found")
        };
        reply.send_response(response(code, &body));
    }
}

fn full(bytes: Vec<u8>) -> UnsyncBoxBody<Bytes, std::io::Error> {
    Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn response(code: u16, body: &Value) -> Reply {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(full(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn api_status(code: u16, reason: &str, message: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": message, "metadata": {}})
}

fn config() -> KubeBackendConfig {
    let mut config = KubeBackendConfig::new(
        NS,
        SecretKeyRef {
            name: "cola-executor-nats".into(),
            key: "url".into(),
        },
    );
    config.image_registry = "registry.example.com/cola/".into();
    config.image_tag = "1.2.3".into();
    config
}

fn backend(config: KubeBackendConfig) -> (Arc<KubeBackend>, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Reply>();
    let client = Client::new(service, "default");
    let backend = KubeBackend::new(client, config).expect("valid configuration");
    (Arc::new(backend), ApiServer { handle })
}

/// A backend attached to a real nats-server's topology (after an empty reconciliation).
async fn attached(config: KubeBackendConfig) -> (Arc<KubeBackend>, ApiServer, TestNats) {
    let nats = TestNats::start().await;
    let (backend, mut api) = backend(config);
    let (attached, ()) = tokio::join!(backend.attach(&nats.topology), api.list(vec![]));
    attached.expect("attach");
    (backend, api, nats)
}

fn job() -> JobMessage {
    let lang = Language::parse("c").unwrap();
    JobMessage {
        schedule: None,
        request_id: None,
        id: JobId::new(),
        user: UserId::parse("u0123456789abcdef").unwrap(),
        limits: language(&lang).unwrap().default_limits,
        language: lang,
        args: vec!["one".into()],
        created_at: cola_wire::job::now(),
        work: Work::Inputs(Inputs {
            files: vec![InputFile {
                name: "main.c".into(),
                content: "int main(void) { return 0; }\n".into(),
            }],
            stdin: String::new(),
        }),
    }
}

fn pod_name(job: &JobMessage) -> String {
    format!("cola-job-{}", job.id)
}

/// `backend.wait(handle)` on a task of its own, so the test can answer the API calls it makes.
fn wait_in_background(
    backend: &Arc<KubeBackend>,
    handle: ExecutorHandle,
) -> tokio::task::JoinHandle<Result<ExecutorExit, BackendError>> {
    let backend = backend.clone();
    tokio::spawn(async move { backend.wait(&handle).await })
}

fn handle_of(job: &JobMessage) -> ExecutorHandle {
    ExecutorHandle {
        backend: "kubernetes".into(),
        node: "kubernetes".into(),
        id: format!("{NS}/{}", pod_name(job)),
    }
}

/// Creates the job's record, moved to running as the middleware does before launching.
async fn running_record(topology: &Topology, job: &JobMessage) -> JobKey {
    let key = cola_wire::JobKey::new(&job.user, &job.id);
    topology
        .jobs
        .create(&key, &JobRecord::queued(job, vec![], 0))
        .await
        .unwrap();
    topology
        .jobs
        .transition(&key, |r| {
            r.status = Status::Running;
            true
        })
        .await
        .unwrap();
    key
}

async fn record(topology: &Topology, key: &JobKey) -> JobRecord {
    topology.jobs.get(key).await.unwrap().expect("record").0
}

/// The Pod `pod_spec` as the API server would return it, with `status`.
fn with_status(pod: &Value, version: &str, status: Value) -> Value {
    let mut pod = pod.clone();
    pod["apiVersion"] = json!("v1");
    pod["kind"] = json!("Pod");
    pod["metadata"]["resourceVersion"] = json!(version);
    pod["metadata"]["uid"] = json!("6a0e2c9e-0000-4000-8000-000000000001");
    if pod["metadata"]["creationTimestamp"].is_null() {
        pod["metadata"]["creationTimestamp"] = json!(chrono::Utc::now().to_rfc3339());
    }
    pod["status"] = status;
    pod
}

/// The Pod the backend makes for `job`, as created a while ago.
fn existing_pod(backend: &KubeBackend, job: &JobMessage, version: &str, status: Value) -> Value {
    let pod = backend
        .pod_for(job, serde_json::to_string(job).unwrap())
        .unwrap();
    with_status(&serde_json::to_value(pod).unwrap(), version, status)
}

fn container(state: Value) -> Value {
    json!([{
        "name": "executor", "image": "registry.example.com/cola/cola-executor-c:1.2.3",
        "imageID": "", "ready": false, "restartCount": 0, "state": state
    }])
}

fn running() -> Value {
    json!({"phase": "Running", "containerStatuses": container(json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}))})
}

fn terminated(phase: &str, exit_code: i32, reason: &str) -> Value {
    json!({"phase": phase, "containerStatuses": container(json!({"terminated": {"exitCode": exit_code, "reason": reason}}))})
}

#[tokio::test]
async fn a_job_pod_is_created_watched_to_success_and_deleted() {
    let (backend, mut api, nats) = attached(config()).await;
    let job = job();
    let key = running_record(&nats.topology, &job).await;

    let launch = tokio::spawn({
        let (backend, job) = (backend.clone(), job.clone());
        async move { backend.launch(&job).await }
    });
    let pod = api.create(&job, 201, None).await;
    let handle = launch.await.unwrap().expect("launched");
    assert_eq!(handle, handle_of(&job));

    // What was created: the job's Pod, with the job in its environment.
    assert_eq!(pod["metadata"]["namespace"], NS);
    let labels = &pod["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/name"], "cola-executor");
    assert_eq!(labels["cola/job-id"], job.id.to_string());
    assert_eq!(labels["cola/language"], "c");
    assert_eq!(labels["cola/user-hash"], kb::user_hash(&job.user));
    assert_ne!(labels["cola/user-hash"], job.user.as_str());
    assert_eq!(pod["metadata"]["annotations"]["cola/job-key"], key.as_str());
    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Never");
    // compile 30 s + run 5 s + 20 s slack + 120 s to start
    assert_eq!(spec["activeDeadlineSeconds"], 175);
    // A compiled language: the compile step in a container of its own, and beside it the run
    // step's, each with its own memory limit; the compile container has the job, the run
    // container takes it from the compile container's handoff.
    assert!(spec.get("initContainers").is_none());
    let compile = &spec["containers"][0];
    let c = &spec["containers"][1];
    assert_eq!(
        (&compile["name"], &c["name"]),
        (&json!("compile"), &json!("executor"))
    );
    let base = ["--sandbox", "container", "--job-dir", "/work"];
    assert_eq!(
        compile["args"],
        json!(
            [
                base.as_slice(),
                &["--job-env", "COLA_JOB", "--step", "compile"]
            ]
            .concat()
        )
    );
    assert_eq!(
        c["args"],
        json!([base.as_slice(), &["--step", "run", "--job-from-handoff"]].concat())
    );
    let has_job = |container: &Value| {
        let env = container["env"].as_array().unwrap();
        env.iter().find(|e| e["name"] == "COLA_JOB").cloned()
    };
    assert!(
        has_job(c).is_none(),
        "the run container's job comes from the handoff"
    );
    // The job message without its sources: those went to the input object.
    let job_env = has_job(compile).expect("the compile container's job");
    let sent: JobMessage = serde_json::from_str(job_env["value"].as_str().unwrap()).unwrap();
    let object = names::input_object(&job.user, &job.id);
    assert_eq!(sent.work, Work::InputObject(object.clone()));
    assert_eq!(
        JobMessage {
            schedule: None,
            work: job.work.clone(),
            ..sent
        },
        job
    );
    let inputs = fetch_inputs(&nats.topology.outputs, &object).await.unwrap();
    assert_eq!(Some(&inputs), job.work.inputs());
    assert!(
        !job_env["value"].as_str().unwrap().contains("int main"),
        "no source in the Pod"
    );
    for container in [compile, c] {
        assert_eq!(
            container["image"],
            "registry.example.com/cola/cola-executor-c:1.2.3"
        );
        let env = container["env"].as_array().unwrap();
        let nats_env = env.iter().find(|e| e["name"] == "COLA_NATS_URL").unwrap();
        assert!(nats_env.get("value").is_none(), "the NATS URL never inline");
        assert_eq!(
            nats_env["valueFrom"]["secretKeyRef"],
            json!({"name": "cola-executor-nats", "key": "url", "optional": false})
        );
        // Both request the run's 256 MiB plus overhead.
        assert_eq!(container["resources"]["requests"]["memory"], "384Mi");
        assert_eq!(container["resources"]["limits"]["cpu"], "1000m");
        assert_eq!(container["volumeMounts"][0]["mountPath"], "/work");
    }
    // The compiler may use its 2048 MiB, the program only its 256 MiB (plus overhead each); the
    // CPU request is the run container's (the steps run one after the other). The work areas are
    // in memory: the compile container has room for them (68 + 64 MiB).
    assert_eq!(compile["resources"]["limits"]["memory"], "2308Mi");
    assert_eq!(compile["resources"]["requests"]["cpu"], "10m");
    assert_eq!(c["resources"]["requests"]["cpu"], "250m");
    assert_eq!(c["resources"]["limits"]["memory"], "384Mi");
    // Storage: the job's 64 MB disk allowance in /work (with 1 MiB of compiler output, 1 MiB
    // of the program's and the message, rounded up, and 1 MiB) and in /tmp, and 64 MiB of logs.
    assert_eq!(c["resources"]["limits"]["ephemeral-storage"], "196Mi");
    let volumes = spec["volumes"].as_array().unwrap();
    assert_eq!(volumes[0]["name"], "work");
    assert_eq!(volumes[0]["emptyDir"]["sizeLimit"], "68Mi");
    assert_eq!(
        volumes[0]["emptyDir"]["medium"], "Memory",
        "never the node's disk"
    );
    assert_eq!(volumes[1]["name"], "tmp");
    assert_eq!(volumes[1]["emptyDir"]["sizeLimit"], "64Mi");
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/work");

    // Watched to the end: a read, then a watch from its version.
    let wait = tokio::spawn({
        let (backend, handle) = (backend.clone(), handle.clone());
        async move { backend.wait(&handle).await }
    });
    api.get(&job, with_status(&pod, "1", json!({"phase": "Pending"})))
        .await;
    api.watch(
        &job,
        "1",
        &[
            ("MODIFIED", with_status(&pod, "2", running())),
            (
                "MODIFIED",
                with_status(&pod, "3", terminated("Succeeded", 0, "Completed")),
            ),
        ],
    )
    .await;
    let exit = wait.await.unwrap().expect("waited");
    assert!(exit.description.contains("exited with code 0"), "{exit:?}");
    api.quiet().await;
    // A success is the executor's to record: the backend leaves the record alone.
    assert_eq!(record(&nats.topology, &key).await.status, Status::Running);

    // Deleted after it finished; deleting one that is gone is fine.
    let cleanup = tokio::spawn({
        let (backend, handle) = (backend.clone(), handle.clone());
        async move { backend.cleanup(&handle).await }
    });
    api.delete(&job, 200).await;
    cleanup.await.unwrap().expect("deleted");
    let kill = tokio::spawn({
        let (backend, handle) = (backend.clone(), handle.clone());
        async move { backend.kill(&handle).await }
    });
    api.delete(&job, 404).await;
    kill.await
        .unwrap()
        .expect("a Pod that is gone needs no kill");
    api.quiet().await;
}

#[tokio::test]
async fn a_watch_that_ends_or_expires_is_resumed_from_a_fresh_read() {
    let (backend, mut api, _nats) = attached(config()).await;
    let job = job();
    let handle = handle_of(&job);
    let wait = wait_in_background(&backend, handle);
    api.get(&job, existing_pod(&backend, &job, "5", running()))
        .await;
    // The watch closes without news, then a second one says 410 Gone: read again each time.
    api.watch(&job, "5", &[]).await;
    api.get(&job, existing_pod(&backend, &job, "7", running()))
        .await;
    api.watch(
        &job,
        "7",
        &[(
            "ERROR",
            api_status(410, "Expired", "too old resource version"),
        )],
    )
    .await;
    api.get(
        &job,
        existing_pod(&backend, &job, "9", terminated("Succeeded", 0, "Completed")),
    )
    .await;
    let exit = wait.await.unwrap().unwrap();
    assert!(exit.description.contains("exited with code 0"));
    api.quiet().await;
}

#[tokio::test]
async fn an_oom_killed_pod_ends_the_job_with_memory_limit() {
    let (backend, mut api, nats) = attached(config()).await;
    let job = job();
    let key = running_record(&nats.topology, &job).await;
    let handle = handle_of(&job);
    let wait = wait_in_background(&backend, handle);
    api.get(&job, existing_pod(&backend, &job, "4", running()))
        .await;
    api.watch(
        &job,
        "4",
        &[(
            "MODIFIED",
            existing_pod(&backend, &job, "5", terminated("Failed", 137, "OOMKilled")),
        )],
    )
    .await;
    let exit = wait.await.unwrap().unwrap();
    assert!(
        exit.description.contains("memory limit (384Mi)"),
        "{exit:?}"
    );
    let r = record(&nats.topology, &key).await;
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.reason, Some(Reason::MemoryLimit));
    assert!(r.message.unwrap().contains("exceeding its memory limit"));
    api.quiet().await;
}

#[tokio::test]
async fn a_pod_past_its_active_deadline_ends_the_job_with_time_limit() {
    let (backend, mut api, nats) = attached(config()).await;
    let job = job();
    let key = running_record(&nats.topology, &job).await;
    let handle = handle_of(&job);
    let wait = wait_in_background(&backend, handle);
    api.get(&job, existing_pod(&backend, &job, "4", running()))
        .await;
    let status = json!({
        "phase": "Failed", "reason": "DeadlineExceeded",
        "message": "Pod was active on the node longer than the specified deadline",
        "containerStatuses": container(json!({"terminated": {
            "exitCode": 137, "reason": "Error", "startedAt": "2026-01-01T00:00:00Z"
        }}))
    });
    api.watch(
        &job,
        "4",
        &[("MODIFIED", existing_pod(&backend, &job, "5", status))],
    )
    .await;
    let exit = wait.await.unwrap().unwrap();
    assert!(
        exit.description.contains("active deadline of 175 s"),
        "{exit:?}"
    );
    let r = record(&nats.topology, &key).await;
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.reason, Some(Reason::TimeLimit));
    api.quiet().await;
}

#[tokio::test]
async fn the_executors_own_report_wins_over_what_the_cluster_saw() {
    let (backend, mut api, nats) = attached(config()).await;
    let job = job();
    let key = running_record(&nats.topology, &job).await;
    // The executor reported first (its program ran out of memory under its rlimit).
    nats.topology
        .jobs
        .transition(&key, |r| {
            r.finish(
                Status::Failed,
                Some(Reason::RuntimeError),
                cola_wire::job::now(),
            );
            true
        })
        .await
        .unwrap();
    let handle = handle_of(&job);
    let wait = wait_in_background(&backend, handle);
    api.get(
        &job,
        existing_pod(&backend, &job, "4", terminated("Failed", 137, "OOMKilled")),
    )
    .await;
    wait.await.unwrap().unwrap();
    assert_eq!(
        record(&nats.topology, &key).await.reason,
        Some(Reason::RuntimeError)
    );
}

#[tokio::test]
async fn a_pod_that_cannot_pull_its_image_is_deleted_and_the_job_ends_internal_error() {
    let mut config = config();
    config.pending_timeout = Duration::from_secs(60);
    let (backend, mut api, nats) = attached(config).await;
    let job = job();
    let key = running_record(&nats.topology, &job).await;
    let handle = handle_of(&job);
    let wait = wait_in_background(&backend, handle);
    let mut pod = existing_pod(
        &backend,
        &job,
        "4",
        json!({"phase": "Pending", "containerStatuses": container(json!({"waiting": {
            "reason": "ImagePullBackOff",
            "message": "Back-off pulling image \"registry.example.com/cola/cola-executor-c:1.2.3\""
        }}))}),
    );
    pod["metadata"]["creationTimestamp"] =
        json!((chrono::Utc::now() - chrono::Duration::seconds(61)).to_rfc3339());
    api.get(&job, pod).await;
    api.delete(&job, 200).await;
    let exit = wait.await.unwrap().unwrap();
    assert!(
        exit.description.contains("did not start within 60 s"),
        "{exit:?}"
    );
    let r = record(&nats.topology, &key).await;
    assert_eq!(r.status, Status::Failed);
    assert_eq!(r.reason, Some(Reason::InternalError));
    let message = r.message.unwrap();
    assert!(
        message.contains("ImagePullBackOff: Back-off pulling image"),
        "{message}"
    );
    api.quiet().await;
}

#[tokio::test]
async fn an_unschedulable_pod_fails_when_its_pending_time_runs_out_without_news() {
    let mut config = config();
    config.pending_timeout = Duration::from_secs(2);
    let (backend, mut api, nats) = attached(config).await;
    let job = job();
    let key = running_record(&nats.topology, &job).await;
    let handle = handle_of(&job);
    let wait = wait_in_background(&backend, handle);
    let unschedulable = json!({"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient memory."
    }]});
    api.get(
        &job,
        existing_pod(&backend, &job, "4", unschedulable.clone()),
    )
    .await;
    // The watch stays open and silent: the backend must wake up by itself at the deadline.
    let call = api.next(Method::GET, PODS).await;
    assert_eq!(call.query()["watch"], "true");
    let (open, body) = open_body();
    call.reply
        .send_response(Response::builder().status(200).body(body).unwrap());
    let started = tokio::time::Instant::now();
    api.get(&job, existing_pod(&backend, &job, "4", unschedulable))
        .await;
    assert!(started.elapsed() >= Duration::from_millis(1500));
    api.delete(&job, 200).await;
    let exit = wait.await.unwrap().unwrap();
    assert!(
        exit.description.contains("unschedulable: 0/3 nodes"),
        "{exit:?}"
    );
    let r = record(&nats.topology, &key).await;
    assert_eq!(r.reason, Some(Reason::InternalError));
    drop(open);
}

type Frames = futures::channel::mpsc::Sender<Result<http_body::Frame<Bytes>, std::io::Error>>;

/// A response body that stays open (and silent) until its sender is dropped.
fn open_body() -> (Frames, UnsyncBoxBody<Bytes, std::io::Error>) {
    let (frames, rx) = futures::channel::mpsc::channel(1);
    (frames, StreamBody::new(rx).boxed_unsync())
}

#[tokio::test]
async fn a_create_that_conflicts_adopts_the_jobs_existing_pod() {
    let (backend, mut api, _nats) = attached(config()).await;
    let job = job();
    let launch = tokio::spawn({
        let (backend, job) = (backend.clone(), job.clone());
        async move { backend.launch(&job).await }
    });
    api.create(
        &job,
        409,
        Some(api_status(
            409,
            "AlreadyExists",
            "pods \"cola-job\" already exists",
        )),
    )
    .await;
    api.get(&job, existing_pod(&backend, &job, "3", running()))
        .await;
    assert_eq!(launch.await.unwrap().unwrap(), handle_of(&job));
    api.quiet().await;

    // A Pod of that name that is not this job's is never adopted.
    let launch = tokio::spawn({
        let (backend, job) = (backend.clone(), job.clone());
        async move { backend.launch(&job).await }
    });
    api.create(&job, 409, Some(api_status(409, "AlreadyExists", "exists")))
        .await;
    let mut other = existing_pod(&backend, &job, "3", running());
    other["metadata"]["labels"]["cola/job-id"] = json!(JobId::new().to_string());
    api.get(&job, other).await;
    let e = launch.await.unwrap().unwrap_err();
    assert!(e.to_string().contains("is not this job's executor"), "{e}");
    assert!(matches!(e, BackendError::Conflict { .. }), "{e:?}");
}

#[tokio::test]
async fn api_errors_surface_with_the_api_servers_words() {
    let (backend, mut api, _nats) = attached(config()).await;
    let job = job();
    let launch = tokio::spawn({
        let (backend, job) = (backend.clone(), job.clone());
        async move { backend.launch(&job).await }
    });
    api.create(
        &job,
        403,
        Some(api_status(
            403,
            "Forbidden",
            "pods is forbidden: User \"system:serviceaccount:cola:cola-middleware\" cannot create resource",
        )),
    )
    .await;
    let e = launch.await.unwrap().unwrap_err();
    assert_eq!(e.backend(), "kubernetes");
    assert!(e.to_string().contains("create Pod"), "{e}");
    assert!(e.to_string().contains("403 Forbidden"), "{e}");
    assert!(e.to_string().contains("cannot create resource"), "{e}");
    // The API server's answer stays at hand as the error's source.
    let source = std::error::Error::source(&e).expect("a source");
    let status = source.downcast_ref::<kube::Error>();
    assert!(
        matches!(status, Some(kube::Error::Api(s)) if s.code == 403),
        "{source:?}"
    );
    // Missing rights are no lack of room: the job fails rather than waits.
    assert!(!e.is_no_room_now(), "{e}");

    // A quota used up (or an API server asking to slow down) is: the job is tried again later.
    for (code, reason, message) in [
        (
            403,
            "Forbidden",
            "pods \"cola-job-x\" is forbidden: exceeded quota: cola-executors, requested: pods=1, used: pods=20, limited: pods=20",
        ),
        (429, "TooManyRequests", "too many requests"),
    ] {
        let launch = tokio::spawn({
            let (backend, job) = (backend.clone(), job.clone());
            async move { backend.launch(&job).await }
        });
        api.create(&job, code, Some(api_status(code, reason, message)))
            .await;
        let e = launch.await.unwrap().unwrap_err();
        assert!(e.is_no_room_now(), "{e}");
    }

    // Following a Pod: a few failures are retried, then the error is returned.
    let handle = handle_of(&job);
    let wait = wait_in_background(&backend, handle);
    for _ in 0..5 {
        api.get(
            &job,
            api_status(500, "InternalError", "etcdserver: request timed out"),
        )
        .await;
    }
    let e = wait.await.unwrap().unwrap_err();
    assert!(
        e.to_string().contains("500 InternalError (etcdserver"),
        "{e}"
    );
    api.quiet().await;
}

#[tokio::test]
async fn start_up_reconciliation_adopts_live_pods_and_finishes_or_deletes_the_rest() {
    let nats = TestNats::start().await;
    let (backend, mut api) = backend(config());
    let topology = &nats.topology;

    // Open job, live Pod: adopted (left running).
    let live = job();
    running_record(topology, &live).await;
    // Open job, OOM-killed Pod: memory_limit recorded, Pod deleted.
    let oom = job();
    let oom_key = running_record(topology, &oom).await;
    // Open job, Pod that exited without a report: internal_error recorded, Pod deleted.
    let silent = job();
    let silent_key = running_record(topology, &silent).await;
    // Finished job: its Pod is deleted.
    let done = job();
    let done_key = running_record(topology, &done).await;
    topology
        .jobs
        .transition(&done_key, |r| {
            r.finish(Status::Succeeded, None, cola_wire::job::now());
            true
        })
        .await
        .unwrap();
    // No record at all (expired): deleted.
    let orphan = job();

    let pods = vec![
        existing_pod(&backend, &live, "1", running()),
        existing_pod(&backend, &oom, "2", terminated("Failed", 137, "OOMKilled")),
        existing_pod(&backend, &silent, "3", terminated("Failed", 1, "Error")),
        existing_pod(
            &backend,
            &done,
            "4",
            terminated("Succeeded", 0, "Completed"),
        ),
        existing_pod(&backend, &orphan, "5", running()),
    ];
    let reconcile = tokio::spawn({
        let (backend, topology) = (backend.clone(), topology.clone());
        async move { backend.reconcile(&topology).await }
    });
    api.list(pods).await;
    api.delete(&oom, 200).await;
    api.delete(&silent, 200).await;
    api.delete(&done, 200).await;
    api.delete(&orphan, 404).await;
    let report = reconcile.await.unwrap().unwrap();
    api.quiet().await;

    assert_eq!(report.adopted, vec![pod_name(&live)]);
    assert_eq!(report.finished, vec![pod_name(&oom), pod_name(&silent)]);
    assert_eq!(
        report.deleted,
        vec![
            pod_name(&oom),
            pod_name(&silent),
            pod_name(&done),
            pod_name(&orphan)
        ]
    );
    let r = record(topology, &oom_key).await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Failed, Some(Reason::MemoryLimit))
    );
    let r = record(topology, &silent_key).await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Failed, Some(Reason::InternalError))
    );
    assert!(r.message.unwrap().contains("without reporting a result"));
    assert_eq!(record(topology, &done_key).await.status, Status::Succeeded);
}

#[tokio::test]
async fn reconciliation_follows_the_lists_continue_token() {
    let nats = TestNats::start().await;
    let (backend, mut api) = backend(config());
    let orphan = job();
    let reconcile = tokio::spawn({
        let (backend, topology) = (backend.clone(), nats.topology.clone());
        async move { backend.reconcile(&topology).await }
    });
    let call = api.next(Method::GET, PODS).await;
    assert!(!call.query().contains_key("continue"));
    call.respond(
        200,
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"continue": "page-2"}, "items": []}),
    );
    let call = api.next(Method::GET, PODS).await;
    assert_eq!(call.query()["continue"], "page-2");
    call.respond(
        200,
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
               "items": [existing_pod(&backend, &orphan, "1", running())]}),
    );
    api.delete(&orphan, 200).await;
    let report = reconcile.await.unwrap().unwrap();
    assert_eq!(report.deleted, vec![pod_name(&orphan)]);
}

/// The whole middleware with the Kubernetes backend: a job whose Pod is OOM-killed ends
/// `memory_limit`, its Pod is deleted and its message acknowledged; a job whose Pod cannot be
/// created ends `internal_error` with the API server's words.
#[tokio::test]
async fn the_middleware_runs_jobs_through_pods_and_records_what_the_cluster_saw() {
    let nats = TestNats::start().await;
    let (backend, mut api) = backend(config());
    let shutdown = CancellationToken::new();
    let probes = cola_middleware::health::Probes::new();
    let middleware = tokio::spawn(cola_middleware::run_with_probes(
        MiddlewareConfig {
            nats_url: nats.url(),
            concurrency: 1,
            lookahead: 100,
            numeric_in_flight: 8,
            grace: Duration::from_secs(1),
            ack_wait: Duration::from_secs(30),
            topology: TopologyConfig::default(),
            start_patience: Duration::ZERO,
            energy: cola_middleware::energy::EnergyConfig::on(
                cola_wire::energy::NodeName::parse("node-1").unwrap(),
            ),
        },
        backend.clone(),
        shutdown.clone(),
        probes.clone(),
    ));
    // Start-up: the reconciliation's list, before which the middleware is not ready.
    assert!(!probes.is_ready());
    api.list(vec![]).await;

    let oom = job();
    let oom_key = submit(&nats, &oom).await;
    let pod = api.create(&oom, 201, None).await;
    api.get(&oom, with_status(&pod, "2", running())).await;
    api.watch(
        &oom,
        "2",
        &[(
            "MODIFIED",
            with_status(&pod, "3", terminated("Failed", 137, "OOMKilled")),
        )],
    )
    .await;
    api.delete(&oom, 200).await;
    let r = wait_terminal(&nats.topology, &oom_key).await;
    assert_eq!(r.reason, Some(Reason::MemoryLimit));
    assert_eq!(r.executor, Some(handle_of(&oom)));

    let refused = job();
    let refused_key = submit(&nats, &refused).await;
    api.create(
        &refused,
        422,
        Some(api_status(
            422,
            "Invalid",
            "Pod \"x\" is invalid: spec.runtimeClassName: not found",
        )),
    )
    .await;
    let r = wait_terminal(&nats.topology, &refused_key).await;
    assert_eq!(r.reason, Some(Reason::InternalError));
    assert!(r.message.unwrap().contains("422 Invalid"));
    api.quiet().await;

    // A job delivered again after it ended (its middleware stopped before cleaning up): its Pod
    // is deleted at once, and its message acknowledged.
    let ended = job();
    let ended_key = cola_wire::JobKey::new(&ended.user, &ended.id);
    let mut record = JobRecord::queued(&ended, vec![], 0);
    record.status = Status::Running;
    record.executor = Some(handle_of(&ended));
    record.finish(Status::Succeeded, None, cola_wire::job::now());
    nats.topology
        .jobs
        .create(&ended_key, &record)
        .await
        .unwrap();
    publish(&nats, &ended).await;
    api.delete(&ended, 200).await;
    api.delete(&ended, 404).await;
    api.quiet().await;
    assert_eq!(
        self::record(&nats.topology, &ended_key).await.status,
        Status::Succeeded
    );

    assert!(probes.is_ready());
    shutdown.cancel();
    middleware.await.unwrap().unwrap();
    assert!(!probes.is_ready());
    // Both messages were acknowledged: nothing is left for redelivery.
    let mut stream = nats.topology.js.get_stream(names::STREAM).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 0);
}

/// Creates the record and publishes the message, as the gateway does.
async fn submit(nats: &TestNats, job: &JobMessage) -> JobKey {
    let key = cola_wire::JobKey::new(&job.user, &job.id);
    nats.topology
        .jobs
        .create(&key, &JobRecord::queued(job, vec![], 0))
        .await
        .unwrap();
    publish(nats, job).await;
    key
}

/// Publishes the job's message, as the gateway does.
async fn publish(nats: &TestNats, job: &JobMessage) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(names::MSG_ID_HEADER, job.id.to_string().as_str());
    nats.topology
        .js
        .publish_with_headers(
            names::job_subject(&job.language, &job.user),
            headers,
            serde_json::to_vec(job).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

async fn wait_terminal(topology: &Topology, key: &JobKey) -> JobRecord {
    let until = tokio::time::Instant::now() + CALL_TIMEOUT;
    loop {
        let r = record(topology, key).await;
        if r.status.is_terminal() {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{key} never ended: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_pod_is_hardened_and_placed_as_configured() {
    let mut config = config();
    config.runtime_class = Some("gvisor".into());
    config.node_selector = kb::parse_node_selector("cola/executors=true").unwrap();
    config.tolerations = vec![kb::parse_toleration("cola/executors=true:NoSchedule").unwrap()];
    config.user_namespaces = true;
    config.service_account = Some("cola-executor".into());
    let (backend, _api) = backend(config);
    let job = job();
    let pod = backend.pod_for(&job, "{}".into()).unwrap();
    let pod = serde_json::to_value(pod).unwrap();
    let spec = &pod["spec"];

    assert_eq!(spec["automountServiceAccountToken"], false);
    assert_eq!(spec["serviceAccountName"], "cola-executor");
    assert_eq!(spec["enableServiceLinks"], false);
    assert_eq!(spec["hostNetwork"], false);
    assert_eq!(spec["hostPID"], false);
    assert_eq!(spec["hostIPC"], false);
    assert_eq!(spec["hostUsers"], false);
    assert_eq!(spec["shareProcessNamespace"], false);
    let psc = &spec["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert_eq!(psc["runAsUser"], 10001);
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    // A C job: its compile container and its executor, hardened alike.
    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2);
    for container in containers {
        let sc = &container["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true);
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["privileged"], false);
        assert_eq!(sc["capabilities"], json!({"drop": ["ALL"]}));
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    }
    // A language without a compile step: one container does both, with the program's limit.
    let mut js = job.clone();
    js.language = Language::parse("javascript").unwrap();
    js.limits = language(&js.language).unwrap().default_limits;
    let js_pod = serde_json::to_value(backend.pod_for(&js, "{}".into()).unwrap()).unwrap();
    assert!(js_pod["spec"].get("initContainers").is_none());
    let js_executor = &js_pod["spec"]["containers"][0];
    assert!(!js_executor["args"].to_string().contains("--step"));
    assert_eq!(
        js_executor["resources"]["limits"]["memory"],
        format!("{}Mi", js.limits.memory_mb + 128)
    );
    // Only size-limited emptyDirs: no host paths, no projected token.
    for volume in spec["volumes"].as_array().unwrap() {
        let keys: Vec<_> = volume.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["emptyDir", "name"], "{volume}");
        assert!(volume["emptyDir"]["sizeLimit"].is_string());
    }

    assert_eq!(spec["runtimeClassName"], "gvisor");
    assert_eq!(spec["nodeSelector"], json!({"cola/executors": "true"}));
    assert_eq!(
        spec["tolerations"],
        json!([{"key": "cola/executors", "operator": "Equal", "value": "true", "effect": "NoSchedule"}])
    );
    assert_eq!(
        spec["topologySpreadConstraints"],
        json!([{
            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "cola-executor"}}
        }])
    );

    // The defaults leave placement alone.
    let (plain, _api) = self::backend(self::config());
    let pod = serde_json::to_value(plain.pod_for(&job, "{}".into()).unwrap()).unwrap();
    for field in [
        "runtimeClassName",
        "nodeSelector",
        "tolerations",
        "hostUsers",
        "serviceAccountName",
    ] {
        assert!(pod["spec"].get(field).is_none(), "{field}");
    }
}

#[tokio::test]
async fn large_inputs_travel_through_the_object_store_not_the_pod() {
    let (backend, mut api, nats) = attached(config()).await;
    let mut job = job();
    let big = "x".repeat(200 * 1024);
    let Work::Inputs(inputs) = &mut job.work else {
        unreachable!("the test job's inputs are inline")
    };
    inputs.files.push(InputFile {
        name: "data.txt".into(),
        content: big.clone(),
    });
    let launch = tokio::spawn({
        let (backend, job) = (backend.clone(), job.clone());
        async move { backend.launch(&job).await }
    });
    let pod = api.create(&job, 201, None).await;
    launch.await.unwrap().unwrap();
    let env = pod["spec"]["containers"][0]["env"].as_array().unwrap();
    let value = env.iter().find(|e| e["name"] == "COLA_JOB").unwrap()["value"]
        .as_str()
        .unwrap();
    assert!(value.len() < 96 * 1024);
    let sent: JobMessage = serde_json::from_str(value).unwrap();
    let object = names::input_object(&job.user, &job.id);
    assert_eq!(sent.work, Work::InputObject(object.clone()));
    let inputs = fetch_inputs(&nats.topology.outputs, &object).await.unwrap();
    assert_eq!(Some(&inputs), job.work.inputs());
}

#[tokio::test]
async fn only_an_existing_pod_not_being_deleted_is_alive() {
    let (backend, mut api) = backend(config());
    let job = job();
    let ask = |backend: Arc<KubeBackend>, handle: ExecutorHandle| {
        tokio::spawn(async move { backend.is_alive(&handle).await })
    };
    let alive = ask(backend.clone(), handle_of(&job));
    api.get(&job, existing_pod(&backend, &job, "1", running()))
        .await;
    assert!(alive.await.unwrap().unwrap());

    let alive = ask(backend.clone(), handle_of(&job));
    let mut deleting = existing_pod(&backend, &job, "2", running());
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    api.get(&job, deleting).await;
    assert!(!alive.await.unwrap().unwrap());

    let alive = ask(backend.clone(), handle_of(&job));
    api.get(&job, api_status(404, "NotFound", "pods not found"))
        .await;
    assert!(!alive.await.unwrap().unwrap());

    // Another backend's, another cluster's or another namespace's handle: not asked at all.
    let mut foreign = handle_of(&job);
    foreign.backend = "process".into();
    assert!(!backend.is_alive(&foreign).await.unwrap());
    let mut elsewhere = handle_of(&job);
    elsewhere.id = format!("default/{}", pod_name(&job));
    assert!(!backend.is_alive(&elsewhere).await.unwrap());
    backend.kill(&elsewhere).await.unwrap();
    api.quiet().await;
}

/// The Pod the backend makes, as the manifests configure it, is committed as
/// `k8s/tests/executor-pod.json`, where the manifest tests validate it against the Kubernetes
/// schema and the executor namespace's policies. Regenerate it with `COLA_BLESS=1`.
#[test]
fn the_executor_pod_matches_the_example_the_manifest_tests_check() {
    let mut config = KubeBackendConfig::new(
        NS,
        SecretKeyRef {
            name: "cola-executor-nats".into(),
            key: "url".into(),
        },
    );
    config.image_registry = "registry.example.com/cola".into();
    config.image_tag = "0.1.0".into();
    config.service_account = Some("cola-executor".into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let (backend, _api) = backend(config);
    let mut job = job();
    job.id = "019ab1c2-3d4e-7f50-8a6b-7c8d9e0f1a2b".parse().unwrap();
    job.created_at = "2026-11-23T12:00:00Z".parse().unwrap();
    // As the backend sends it: the inputs in the object store.
    job.work = Work::InputObject(names::input_object(&job.user, &job.id));
    let json = serde_json::to_string(&job).unwrap();
    let pod = serde_json::to_value(backend.pod_for(&job, json).unwrap()).unwrap();
    let mut text = serde_json::to_string_pretty(&pod).unwrap();
    text.push('\n');
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/tests/executor-pod.json");
    if std::env::var_os("COLA_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "{} is not the Pod the backend makes; run with COLA_BLESS=1 and review the diff",
        path.display()
    );
}

/// The NATS configuration of `k8s/base/config.yaml` (without its cluster block) in a real
/// nats-server: the `executor` user can do all an executor does (open the topology, read its
/// record and input object, store its zip, end its record) and cannot read the job stream, the
/// API tokens or change the stream.
#[tokio::test]
async fn the_manifests_nats_users_allow_an_executor_exactly_its_work() {
    use async_nats::{ConnectOptions, jetstream};
    use cola_wire::{
        RunReport, Timings,
        nats::{Reported, report_outcome},
    };

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = std::fs::read_to_string(root.join("k8s/base/config.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (port, mqtt_port) = (
        cola_testkit::free_port().unwrap(),
        cola_testkit::free_port().unwrap(),
    );
    let conf = nats_conf_for_test(&manifest, port, mqtt_port, &dir.path().join("store"));
    let conf_path = dir.path().join("nats.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut server = tokio::process::Command::new(cola_testkit::nats_server_binary())
        .arg("-c")
        .arg(&conf_path)
        .env("SERVER_NAME", "cola-nats-0")
        .env("NATS_SERVICES_PASSWORD", "services-secret")
        .env("NATS_EXECUTOR_PASSWORD", "executor-secret")
        .env("NATS_TELEMETRY_PASSWORD", "telemetry-secret")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let connect = |user: &str, password: &str| {
        let options = ConnectOptions::with_user_and_password(user.into(), password.into());
        let url = url.clone();
        async move {
            let until = tokio::time::Instant::now() + CALL_TIMEOUT;
            loop {
                match options.clone().connect(&url).await {
                    Ok(client) => break client,
                    Err(e) if tokio::time::Instant::now() < until => {
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("connect: {e}"),
                }
            }
        }
    };

    // The services set everything up and queue a job with an input object.
    let services = jetstream::new(connect("cola", "services-secret").await);
    let topology = Topology::ensure(&services, &TopologyConfig::default())
        .await
        .unwrap();
    let job = job();
    let key = running_record(&topology, &job).await;
    let input = names::input_object(&job.user, &job.id);
    store_inputs(&topology.outputs, &input, job.work.inputs().unwrap())
        .await
        .unwrap();
    topology
        .tokens
        .put("secret-token", "x".into())
        .await
        .unwrap();
    assert!(
        ConnectOptions::with_user_and_password("executor".into(), "wrong".into())
            .connect(&url)
            .await
            .is_err(),
        "a wrong password is refused"
    );

    // A Pod started ahead of its job waits on its subject and answers the hand-over.
    let warm = connect("executor", "executor-secret").await;
    let subject = names::warm_subject("cola-job-warm-c-0123456789ab");
    let mut waiting = warm.subscribe(subject.clone()).await.unwrap();
    warm.flush().await.unwrap();
    let middleware = services.client();
    // (Asked again while the server has not yet seen the subscription: "no responders".)
    let hand_over = async {
        let until = tokio::time::Instant::now() + CALL_TIMEOUT;
        loop {
            match middleware.request(subject.clone(), "job".into()).await {
                Err(e)
                    if e.kind() == async_nats::RequestErrorKind::NoResponders
                        && tokio::time::Instant::now() < until =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                answer => break answer,
            }
        }
    };
    let (answer, ()) = tokio::join!(hand_over, async {
        use futures::StreamExt as _;
        let request = tokio::time::timeout(2 * CALL_TIMEOUT, waiting.next())
            .await
            .expect("the hand-over reaches the executor")
            .unwrap();
        assert_eq!(&request.payload[..], b"job");
        warm.publish(request.reply.unwrap(), "".into())
            .await
            .unwrap();
        warm.flush().await.unwrap();
    });
    answer.expect("the executor may answer the request that brought its job");

    // The executor does its work.
    let executor = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(1))
        .build(connect("executor", "executor-secret").await);
    let mine = Topology::open(&executor).await.expect("open the topology");
    let (own, _) = mine.jobs.get(&key).await.unwrap().expect("its record");
    assert_eq!(own.status, Status::Running);
    let inputs = fetch_inputs(&mine.outputs, &input).await.unwrap();
    assert_eq!(Some(&inputs), job.work.inputs());
    let report = RunReport {
        status: Status::Succeeded,
        reason: None,
        exit_code: Some(0),
        signal: None,
        timings_ms: Timings::default(),
        limits: job.limits,
        message: None,
        stdout: "hello\n".into(),
        stderr: String::new(),
        compile_output: String::new(),
        output_object: None,
    };
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    let reported = report_outcome(&mine, &job.user, &job.id, report, Some(b"PK-zip"), until)
        .await
        .unwrap();
    assert!(matches!(reported, Reported::Recorded(_)), "{reported:?}");
    let r = record(&topology, &key).await;
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(
        r.output_object,
        Some(names::output_object(&job.user, &job.id))
    );
    // Its zip counts against its user's storage.
    let week = Duration::from_secs(7 * 24 * 3600);
    assert_eq!(topology.usage.stored(&job.user, week).await.unwrap(), 6);

    // A device sends energy telemetry over MQTT (a real client, mosquitto_pub), and nothing
    // else; its user cannot log in over plain NATS.
    let mut telemetry = services.client().subscribe("energy.*").await.unwrap();
    services.client().flush().await.unwrap();
    let publish = |topic: &str, password: &str| {
        std::process::Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &mqtt_port.to_string(), "-q", "1"])
            .args(["-u", "cola-telemetry", "-P", password, "-t", topic])
            .args(["-m", r#"{"renewable_share": 0.5}"#])
            .output()
            .expect("mosquitto_pub (Debian mosquitto-clients; scripts/setup.sh installs it)")
    };
    assert!(
        publish("energy/node-1", "telemetry-secret")
            .status
            .success()
    );
    let reading = tokio::time::timeout(CALL_TIMEOUT, futures::StreamExt::next(&mut telemetry))
        .await
        .expect("the reading arrives")
        .unwrap();
    assert_eq!(reading.subject.as_str(), "energy.node-1");
    assert!(!publish("energy/node-1", "wrong").status.success());
    publish("cola/c/ada", "telemetry-secret");
    assert!(
        ConnectOptions::with_user_and_password("cola-telemetry".into(), "telemetry-secret".into())
            .connect(&url)
            .await
            .is_err(),
        "the devices' user is for MQTT only"
    );

    // And nothing else: no API tokens, no job stream, no stream management.
    assert!(mine.tokens.get("secret-token").await.is_err());
    assert!(executor.get_stream(names::STREAM).await.is_err());
    assert!(executor.delete_stream("KV_cola-jobs").await.is_err());
    assert!(
        executor
            .publish("cola.c", "{}".into())
            .await
            .unwrap()
            .await
            .is_err()
    );
    assert_eq!(
        services
            .get_stream(names::STREAM)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages,
        0
    );
    server.kill().await.ok();
}

/// The `nats.conf` of the manifest for one local server: no cluster, no monitoring port, a
/// local listen address and store.
fn nats_conf_for_test(
    manifest: &str,
    port: u16,
    mqtt_port: u16,
    store: &std::path::Path,
) -> String {
    let start = manifest
        .find("  nats.conf: |\n")
        .expect("nats.conf in the ConfigMap")
        + 15;
    let conf: Vec<&str> = manifest[start..]
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect();
    let mut out = Vec::new();
    let mut skipping = 0usize;
    for line in conf {
        let trimmed = line.trim_start();
        if skipping > 0 || trimmed.starts_with("cluster {") {
            skipping += line.matches('{').count();
            skipping -= line.matches('}').count();
            continue;
        }
        if trimmed.starts_with("http:") || trimmed.starts_with("pid_file:") {
            continue;
        }
        out.push(match trimmed {
            t if t.starts_with("listen:") && t.ends_with(":1883") => {
                format!("listen: 127.0.0.1:{mqtt_port}")
            }
            t if t.starts_with("listen:") => format!("listen: 127.0.0.1:{port}"),
            t if t.starts_with("store_dir:") => {
                format!("store_dir: {:?}", store.display().to_string())
            }
            _ => line.to_owned(),
        });
    }
    let conf = out.join("\n");
    assert!(
        conf.contains("user: executor") && !conf.contains("routes"),
        "{conf}"
    );
    conf
}

/// The real client (TLS to an API server) builds with the TLS provider this workspace compiles
/// in: no missing or ambiguous rustls crypto provider at start-up.
#[tokio::test]
async fn a_real_tls_client_can_be_built() {
    let mut config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
    config.default_namespace = NS.into();
    let client = Client::try_from(config).expect("a TLS client");
    KubeBackend::new(client, self::config()).expect("a backend over it");
}

#[tokio::test]
async fn reconciliation_repeats_while_the_backend_lives() {
    let mut config = config();
    config.reconcile_every = Some(Duration::from_millis(300));
    let (backend, mut api, _nats) = attached(config).await;
    let orphan = job();
    let started = tokio::time::Instant::now();
    api.list(vec![existing_pod(
        &backend,
        &orphan,
        "1",
        terminated("Succeeded", 0, "Completed"),
    )])
    .await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    api.delete(&orphan, 200).await;
    api.list(vec![]).await;
    // Dropped with the backend: no more reconciliation.
    drop(backend);
    tokio::time::sleep(Duration::from_millis(400)).await;
    api.quiet().await;
}

/// `hostUsers: false` is a field an older API server drops without a word: with user
/// namespaces asked for, the backend checks with a dry-run create that the server keeps it, and
/// refuses to start where it does not.
#[tokio::test]
async fn user_namespaces_are_refused_where_the_api_server_drops_host_users() {
    let nats = TestNats::start().await;
    let mut config = config();
    config.user_namespaces = true;

    let (keeps, mut api) = backend(config.clone());
    let (attached, ()) = tokio::join!(keeps.attach(&nats.topology), async {
        let call = api.next(Method::POST, PODS).await;
        assert_eq!(call.query()["dryRun"], "All");
        let (pod, reply) = call.body().await;
        assert_eq!(pod["spec"]["hostUsers"], false);
        reply.send_response(response(201, &pod));
        api.list(vec![]).await;
    });
    attached.expect("a server that keeps the field");

    let (drops, mut api) = backend(config);
    let (attached, ()) = tokio::join!(drops.attach(&nats.topology), async {
        let (mut pod, reply) = api.next(Method::POST, PODS).await.body().await;
        pod["spec"].as_object_mut().unwrap().remove("hostUsers");
        reply.send_response(response(201, &pod));
    });
    let e = attached.expect_err("a server that drops the field");
    assert!(e.to_string().contains("hostUsers"), "{e}");
    api.quiet().await;
}

/// Pods started ahead of their jobs: the pool makes one per language at attach; a job with its
/// language's default limits is handed to that language's Pod once its executor answers (the
/// Pod written into the job's record as its executor before the executor has the job, the job's
/// labels put on the Pod after), and the pool makes another; a Pod whose executor is not there
/// yet is passed over (and kept), and a job with other limits gets a Pod of its own; a labelled
/// Pod is found again by its job.
#[tokio::test]
async fn jobs_with_default_limits_go_to_pods_started_ahead_of_them() {
    use futures::StreamExt as _;

    let nats = TestNats::start().await;
    let mut config = config();
    config.warm_pods = 1;
    let (backend, mut api) = backend(config);
    let (attached, ()) = tokio::join!(backend.attach(&nats.topology), api.list(vec![]));
    attached.expect("attach");
    let (mut warm, mut pods) = (BTreeMap::new(), BTreeMap::new());
    for _ in 0..3 {
        let (pod, name) = warm_create(&mut api).await;
        let lang = pod["metadata"]["labels"]["cola/language"]
            .as_str()
            .unwrap()
            .to_owned();
        warm.insert(lang.clone(), name);
        pods.insert(lang, pod);
    }
    assert_eq!(warm.keys().collect::<Vec<_>>(), ["c", "go", "javascript"]);
    api.quiet().await;

    // The C Pod's executor: it answers every request, and keeps what it was sent and the
    // executor its job's record named when the job came.
    let executor = async_nats::connect(nats.url()).await.unwrap();
    let mut requests = executor
        .subscribe(names::warm_subject(&warm["c"]))
        .await
        .unwrap();
    executor.flush().await.unwrap();
    let job = self::job();
    let key = running_record(&nats.topology, &job).await;
    let received = tokio::spawn({
        let topology = nats.topology.clone();
        async move {
            let mut payloads = Vec::new();
            while let Some(request) = requests.next().await {
                let done = !request.payload.is_empty();
                payloads.push(request.payload.to_vec());
                if done {
                    let recorded = record(&topology, &key).await.executor;
                    executor
                        .publish(request.reply.unwrap(), "".into())
                        .await
                        .unwrap();
                    executor.flush().await.unwrap();
                    return (payloads, recorded);
                }
                executor
                    .publish(request.reply.unwrap(), "".into())
                    .await
                    .unwrap();
                executor.flush().await.unwrap();
            }
            unreachable!("the subscription ended before the job came")
        }
    });
    let handle = backend.launch(&job).await.expect("handed over");
    assert_eq!(handle.id, format!("{NS}/{}", warm["c"]));
    let (payloads, recorded) = received.await.unwrap();
    assert_eq!(
        recorded,
        Some(handle.clone()),
        "recorded before the hand-over"
    );
    assert_eq!(payloads.len(), 2, "a probe, then the job");
    assert!(payloads[0].is_empty());
    // On NATS, not in a Pod's spec: the job whole, its inputs inline.
    let sent: JobMessage = serde_json::from_slice(&payloads[1]).unwrap();
    assert_eq!(sent, job);
    // Then the job's labels, on the Pod that took it.
    let label = api
        .next(Method::PATCH, &format!("{PODS}/{}", warm["c"]))
        .await;
    let (patch, reply) = label.body().await;
    assert_eq!(
        patch["metadata"]["labels"]["cola/job-id"],
        job.id.to_string()
    );
    assert_eq!(
        patch["metadata"]["annotations"]["cola/job-key"],
        JobKey::new(&job.user, &job.id).to_string()
    );
    let mut claimed = pods["c"].clone();
    claimed["metadata"]["labels"]["cola/job-id"] = json!(job.id.to_string());
    reply.send_response(response(200, &claimed));
    // The pool makes another C Pod.
    let (pod, _) = warm_create(&mut api).await;
    assert_eq!(pod["metadata"]["labels"]["cola/language"], "c");
    api.quiet().await;

    // Nobody listens for the JavaScript Pod yet: the job gets a Pod of its own, the warm one
    // stays for later.
    let mut js = self::job();
    js.language = Language::parse("javascript").unwrap();
    js.limits = language(&js.language).unwrap().default_limits;
    let launch = tokio::spawn({
        let (backend, js) = (backend.clone(), js.clone());
        async move { backend.launch(&js).await }
    });
    api.create(&js, 201, None).await;
    assert_eq!(launch.await.unwrap().unwrap(), handle_of(&js));
    api.quiet().await;

    // Other limits than the default: a Pod of its own.
    let mut bigger = self::job();
    bigger.limits.memory_mb *= 2;
    let launch = tokio::spawn({
        let (backend, bigger) = (backend.clone(), bigger.clone());
        async move { backend.launch(&bigger).await }
    });
    api.create(&bigger, 201, None).await;
    assert_eq!(launch.await.unwrap().unwrap(), handle_of(&bigger));

    // A middleware that takes over finds the claimed Pod by its job.
    let find = tokio::spawn({
        let (backend, job) = (backend.clone(), job.clone());
        async move { backend.find(&job).await }
    });
    let call = api.next(Method::GET, PODS).await;
    assert_eq!(
        call.query()["labelSelector"],
        format!("cola/warm=true,cola/job-id={}", job.id)
    );
    call.respond(
        200,
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [claimed]}),
    );
    assert_eq!(find.await.unwrap().unwrap(), Some(handle));
    api.quiet().await;
}

/// A warm Pod whose job's record already names an executor is not given the job and stays
/// idle; one whose executor does not take its job is deleted and taken out of the record again
/// before the job gets a Pod of its own.
#[tokio::test]
async fn a_warm_pod_is_given_a_job_only_through_its_record() {
    use futures::StreamExt as _;

    let nats = TestNats::start().await;
    let mut config = config();
    config.warm_pods = 1;
    let (backend, mut api) = backend(config);
    let (attached, ()) = tokio::join!(backend.attach(&nats.topology), api.list(vec![]));
    attached.expect("attach");
    let mut warm = BTreeMap::new();
    for _ in 0..3 {
        let (pod, name) = warm_create(&mut api).await;
        let lang = pod["metadata"]["labels"]["cola/language"].as_str().unwrap();
        warm.insert(lang.to_owned(), name);
    }
    let c_pod = warm["c"].clone();
    api.quiet().await;
    // The C Pod's executor answers whether it is there, and never takes a job.
    let executor = async_nats::connect(nats.url()).await.unwrap();
    let mut requests = executor
        .subscribe(names::warm_subject(&c_pod))
        .await
        .unwrap();
    executor.flush().await.unwrap();
    let jobs_sent = tokio::spawn(async move {
        let mut jobs = 0;
        while let Some(request) = requests.next().await {
            if request.payload.is_empty() {
                executor
                    .publish(request.reply.unwrap(), "".into())
                    .await
                    .unwrap();
                executor.flush().await.unwrap();
            } else {
                jobs += 1;
            }
        }
        jobs
    });

    // A record that names an executor already: the job is not handed over.
    let started = self::job();
    let key = running_record(&nats.topology, &started).await;
    let other = handle_of(&self::job());
    nats.topology
        .jobs
        .transition(&key, |r| {
            r.executor = Some(other.clone());
            true
        })
        .await
        .unwrap();
    let launch = tokio::spawn({
        let (backend, job) = (backend.clone(), started.clone());
        async move { backend.launch(&job).await }
    });
    api.create(&started, 201, None).await;
    assert_eq!(launch.await.unwrap().unwrap(), handle_of(&started));
    assert_eq!(record(&nats.topology, &key).await.executor, Some(other));
    // The pool looks again a second after a hand-over (the C Pod is back: nothing to make).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    api.quiet().await;

    // An executor that does not take its job: its Pod is deleted, the record forgets it.
    let job = self::job();
    let key = running_record(&nats.topology, &job).await;
    let launch = tokio::spawn({
        let (backend, job) = (backend.clone(), job.clone());
        async move { backend.launch(&job).await }
    });
    let deleted = api.next(Method::DELETE, &format!("{PODS}/{c_pod}")).await;
    assert_eq!(
        record(&nats.topology, &key).await.executor.map(|h| h.id),
        Some(format!("{NS}/{c_pod}")),
        "recorded while its executor had the job"
    );
    deleted.respond(
        200,
        json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 200}),
    );
    api.create(&job, 201, None).await;
    assert_eq!(launch.await.unwrap().unwrap(), handle_of(&job));
    assert_eq!(record(&nats.topology, &key).await.executor, None);
    drop(backend);
    jobs_sent.abort();
}

/// Takes the create of a warm Pod: checks it waits on its own subject, answers 201; the Pod and
/// its name.
async fn warm_create(api: &mut ApiServer) -> (Value, String) {
    let (pod, reply) = api.next(Method::POST, PODS).await.body().await;
    let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("cola-job-warm-"), "{name}");
    assert_eq!(pod["metadata"]["labels"]["cola/warm"], "true");
    assert!(pod["metadata"]["labels"].get("cola/job-id").is_none());
    let containers = pod["spec"]["containers"].as_array().unwrap();
    let waits = containers[0]["args"].to_string();
    assert!(
        waits.contains(&format!("\"--job-subject\",\"cola-warm.{name}\"")),
        "{waits}"
    );
    assert!(
        containers
            .iter()
            .all(|c| c["env"].to_string().find("COLA_JOB").is_none())
    );
    reply.send_response(response(201, &pod));
    (pod, name)
}

/// The Pod the backend makes for `job`, required on the node `worker-1`, that the scheduler
/// found no room for.
fn required_but_unschedulable(backend: &KubeBackend, job: &JobMessage, version: &str) -> Value {
    let mut pod = existing_pod(
        backend,
        job,
        version,
        json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity."
        }]}),
    );
    pod["spec"]["affinity"] = json!({"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["worker-1"]}]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": {"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["worker-1"]}]}}]
    }});
    pod
}

#[tokio::test]
async fn a_pod_required_on_green_nodes_without_room_is_made_again_preferring_them() {
    let (backend, mut api, nats) = attached(config()).await;
    let job = job();
    running_record(&nats.topology, &job).await;
    let wait = wait_in_background(&backend, handle_of(&job));
    let stuck = required_but_unschedulable(&backend, &job, "4");
    api.get(&job, stuck.clone()).await;
    // Deleted only as it was seen: had it been placed meanwhile, it would stay.
    let call = api
        .next(Method::DELETE, &format!("{PODS}/{}", pod_name(&job)))
        .await;
    let (options, reply) = call.body().await;
    assert_eq!(options["gracePeriodSeconds"], 0);
    assert_eq!(
        options["preconditions"],
        json!({"resourceVersion": "4", "uid": stuck["metadata"]["uid"]})
    );
    reply.send_response(response(
        200,
        &json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 200}),
    ));
    // Made again under the same name (taken for a moment), preferring the green node only.
    let call = api.next(Method::POST, PODS).await;
    call.respond(409, api_status(409, "AlreadyExists", "pods already exists"));
    let again = api.create(&job, 201, None).await;
    let affinity = &again["spec"]["affinity"]["nodeAffinity"];
    assert!(
        affinity
            .get("requiredDuringSchedulingIgnoredDuringExecution")
            .is_none(),
        "{affinity}"
    );
    assert_eq!(
        affinity["preferredDuringSchedulingIgnoredDuringExecution"],
        stuck["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    );
    assert_eq!(again["spec"]["containers"], stuck["spec"]["containers"]);
    assert!(again["metadata"].get("resourceVersion").is_none());
    assert!(again["metadata"].get("uid").is_none());
    // Then followed as any Pod.
    api.get(
        &job,
        with_status(&again, "7", terminated("Succeeded", 0, "Completed")),
    )
    .await;
    let exit = wait.await.unwrap().unwrap();
    assert!(exit.description.contains("exited with code 0"), "{exit:?}");
    api.quiet().await;
}

#[tokio::test]
async fn a_required_pod_placed_meanwhile_is_left_to_run() {
    let (backend, mut api, nats) = attached(config()).await;
    let job = job();
    running_record(&nats.topology, &job).await;
    let wait = wait_in_background(&backend, handle_of(&job));
    api.get(&job, required_but_unschedulable(&backend, &job, "4"))
        .await;
    // Its version moved on: the delete's precondition fails, and the Pod is read again.
    let call = api
        .next(Method::DELETE, &format!("{PODS}/{}", pod_name(&job)))
        .await;
    call.respond(
        409,
        api_status(409, "Conflict", "Precondition failed: ResourceVersion in precondition: 4, ResourceVersion in object meta: 5"),
    );
    let mut placed = required_but_unschedulable(&backend, &job, "5");
    placed["status"] = terminated("Succeeded", 0, "Completed");
    api.get(&job, placed).await;
    let exit = wait.await.unwrap().unwrap();
    assert!(exit.description.contains("exited with code 0"), "{exit:?}");
    api.quiet().await;
}
