//! The Kubernetes backend: one executor Pod per job, created, watched and deleted through the
//! Kubernetes API (kube + k8s-openapi).
//!
//! - The Pod is named from the job id (`cola-job-<job-id>`), so a launch is idempotent: a create
//!   that answers 409 Conflict adopts the Pod that exists.
//! - The Pod runs `cola executor --sandbox container` in the language's executor image with the
//!   job in an environment variable and the NATS URL from a Secret; the executor reports to NATS
//!   itself. It is hardened (non-root, read-only root, no capabilities, no privilege escalation,
//!   seccomp `RuntimeDefault`, no service-account token, no service links), bounded
//!   (`restartPolicy: Never`, `activeDeadlineSeconds`, memory/CPU/ephemeral-storage requests and
//!   limits, a size-limited `emptyDir` work area) and spread across nodes.
//! - [`Backend::wait`] follows the Pod (a GET, then a watch from its resource version, again after
//!   every watch ends) until it ends and records what only the cluster knows: `OOMKilled` →
//!   `memory_limit`, `DeadlineExceeded` → `time_limit`, an evicted work area → `output_limit`, a
//!   Pod that does not start within the pending timeout (image pull failure, unschedulable) →
//!   `internal_error` with the reason. Each is a compare-and-set on the job record that loses to
//!   the executor's own report; whatever is left open the middleware ends `internal_error`.
//! - At start-up ([`Backend::attach`]) it reconciles the Pods carrying cola's labels with the job
//!   records: a Pod whose job is terminal or gone is deleted, a finished Pod whose job is open
//!   has its outcome recorded and is deleted, a live Pod of an open job is left to be adopted
//!   when the job's message is redelivered.

use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
    time::Duration,
};

use ::kube::{
    Client,
    api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams},
};
use async_trait::async_trait;
use cola_wire::{
    ExecutorHandle, JobMessage, Reason, Status, input_zip, language,
    languages::Runtime,
    names,
    nats::{Topology, Transition},
};
use futures::StreamExt;
use k8s_openapi::{
    api::core::v1::{
        Capabilities, Container, ContainerState, EmptyDirVolumeSource, EnvVar, EnvVarSource,
        LocalObjectReference, Pod, PodSecurityContext, PodSpec, ResourceRequirements,
        SeccompProfile, SecretKeySelector, SecurityContext, Toleration, TopologySpreadConstraint,
        Volume, VolumeMount,
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
    },
};
use sha2::{Digest as _, Sha256};

use crate::backend::{Backend, BackendError, ExecutorExit};

const NAME: &str = "kubernetes";

/// Label every executor Pod carries: `app.kubernetes.io/name: cola-executor`.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// Value of [`LABEL_NAME`] on executor Pods.
pub const EXECUTOR_APP: &str = "cola-executor";
/// Label naming who manages the Pod (`cola-middleware`): only such Pods are reconciled.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
const MANAGED_BY: &str = "cola-middleware";
/// Label holding the job id.
pub const LABEL_JOB_ID: &str = "cola/job-id";
/// Label holding the language.
pub const LABEL_LANGUAGE: &str = "cola/language";
/// Label holding a hash of the user id (labels are indexed and listed widely; the id is not).
pub const LABEL_USER_HASH: &str = "cola/user-hash";
/// Annotation holding the job's record key `<user>.<job-id>`.
pub const ANNOTATION_JOB_KEY: &str = "cola/job-key";
/// The environment variable that carries the job message (JSON) into the executor.
pub const JOB_ENV: &str = "COLA_JOB";
/// The environment variable that carries the NATS URL (from a Secret) into the executor.
pub const NATS_URL_ENV: &str = "COLA_NATS_URL";
/// The executor's container in the Pod.
pub const CONTAINER: &str = "executor";
/// Where the work area is mounted.
pub const WORK_DIR: &str = "/work";

/// A job message larger than this (its inputs inline) travels with its inputs in the object
/// store instead: one environment string may not exceed 128 KiB (`MAX_ARG_STRLEN`).
const MAX_ENV_JOB_BYTES: usize = 96 * 1024;
/// Longest single watch request; the API server ends watches on its own schedule too.
const WATCH_SECONDS: u32 = 290;
/// Consecutive API failures tolerated while following a Pod, with a doubling pause.
const API_ATTEMPTS: u32 = 5;
const API_FIRST_PAUSE: Duration = Duration::from_millis(200);
/// Lines of a failed executor's log kept (the kubelet's `FallbackToLogsOnError` message).
const DETAIL_BYTES: usize = 1024;

/// A key of a Secret in the executor namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

/// How executor Pods are made.
#[derive(Debug, Clone)]
pub struct KubeBackendConfig {
    /// Namespace the executor Pods run in (e.g. `cola-executors`).
    pub namespace: String,
    /// Name of the cluster, recorded in executor handles (e.g. `kubernetes`).
    pub cluster: String,
    /// Registry and path the language images live under (e.g. `ghcr.io/acme`); empty for none.
    pub image_registry: String,
    /// Tag of the language images (e.g. `0.1.0`).
    pub image_tag: String,
    /// `IfNotPresent`, `Always` or `Never`.
    pub image_pull_policy: String,
    /// Pull secrets for a private registry (in the executor namespace).
    pub image_pull_secrets: Vec<String>,
    /// The Secret key holding the NATS URL (with the executor's credentials).
    pub nats_url_secret: SecretKeyRef,
    /// Arguments after the image's entrypoint (`cola executor`).
    pub executor_args: Vec<String>,
    /// The executor Pods' ServiceAccount (its token is never mounted); `None` for the default.
    pub service_account: Option<String>,
    /// e.g. `gvisor`.
    pub runtime_class: Option<String>,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    /// Run the Pod in a user namespace (`hostUsers: false`; needs node support).
    pub user_namespaces: bool,
    /// Size of the `emptyDir` work area at `/work`, in MiB.
    pub work_area_mb: u64,
    /// Size of the `emptyDir` at `/tmp`, in MiB.
    pub tmp_mb: u64,
    /// CPU request and limit of an executor Pod, in millicores.
    pub cpu_request_millis: u64,
    pub cpu_limit_millis: u64,
    /// Memory for the executor itself, on top of what the job's programs may use, in MiB.
    pub memory_overhead_mb: u64,
    /// How long a Pod may stay pending (scheduling, pulling its image) before the job fails.
    pub pending_timeout: Duration,
    /// How often the executor Pods are reconciled with the job records after the start-up
    /// reconciliation (a safety net for Pods whose deletion failed); `None` for only at start-up.
    pub reconcile_every: Option<Duration>,
}

impl KubeBackendConfig {
    /// Settings with the defaults the manifests in `k8s/` assume.
    pub fn new(namespace: impl Into<String>, nats_url_secret: SecretKeyRef) -> Self {
        Self {
            namespace: namespace.into(),
            cluster: "kubernetes".into(),
            image_registry: String::new(),
            image_tag: "latest".into(),
            image_pull_policy: "IfNotPresent".into(),
            image_pull_secrets: Vec::new(),
            nats_url_secret,
            executor_args: default_executor_args(),
            service_account: None,
            runtime_class: None,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            user_namespaces: false,
            work_area_mb: 512,
            tmp_mb: 64,
            cpu_request_millis: 250,
            cpu_limit_millis: 1000,
            memory_overhead_mb: 128,
            pending_timeout: Duration::from_secs(120),
            reconcile_every: Some(Duration::from_secs(600)),
        }
    }

    /// Checks what the API server would otherwise reject only at the first job.
    pub fn validate(&self) -> Result<(), BackendError> {
        let dns_label = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !s.starts_with('-')
                && !s.ends_with('-')
        };
        if !dns_label(&self.namespace) {
            return Err(config(format!(
                "namespace {:?} is not a DNS label",
                self.namespace
            )));
        }
        if self.image_tag.is_empty() || self.image_tag.contains(['/', ':', ' ']) {
            return Err(config(format!("image tag {:?} is invalid", self.image_tag)));
        }
        if !["IfNotPresent", "Always", "Never"].contains(&self.image_pull_policy.as_str()) {
            return Err(config(format!(
                "image pull policy {:?} is not IfNotPresent, Always or Never",
                self.image_pull_policy
            )));
        }
        if self.nats_url_secret.name.is_empty() || self.nats_url_secret.key.is_empty() {
            return Err(config("the NATS URL secret needs a name and a key".into()));
        }
        if self.work_area_mb == 0 || self.tmp_mb == 0 {
            return Err(config("the work area and /tmp need a size".into()));
        }
        if self.cpu_request_millis == 0 || self.cpu_limit_millis < self.cpu_request_millis {
            return Err(config(
                "the CPU request must be positive and at most the CPU limit".into(),
            ));
        }
        if self.pending_timeout < Duration::from_secs(1) {
            return Err(config("the pending timeout must be at least 1 s".into()));
        }
        if self.reconcile_every.is_some_and(|d| d.is_zero()) {
            return Err(config("the reconciliation period must be positive".into()));
        }
        Ok(())
    }
}

/// The arguments `cola executor` runs with in a Pod: container sandbox, job from [`JOB_ENV`],
/// work area at [`WORK_DIR`].
pub fn default_executor_args() -> Vec<String> {
    [
        "--sandbox",
        "container",
        "--job-env",
        JOB_ENV,
        "--job-dir",
        WORK_DIR,
    ]
    .map(String::from)
    .to_vec()
}

/// Parses a toleration written as `key[=value]:Effect[:seconds]` (kubectl's taint syntax; a
/// missing value means operator `Exists`, an empty effect tolerates every effect).
pub fn parse_toleration(s: &str) -> Result<Toleration, String> {
    let mut parts = s.split(':');
    let key_value = parts.next().unwrap_or_default();
    let effect = parts.next().unwrap_or_default();
    let seconds = parts.next();
    if parts.next().is_some() {
        return Err(format!(
            "toleration {s:?}: expected key[=value]:Effect[:seconds]"
        ));
    }
    let (key, value) = match key_value.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (key_value, None),
    };
    if key.is_empty() {
        return Err(format!("toleration {s:?}: the key is empty"));
    }
    if !["", "NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        return Err(format!(
            "toleration {s:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    let toleration_seconds = match seconds {
        None => None,
        Some(_) if effect != "NoExecute" => {
            return Err(format!("toleration {s:?}: seconds only go with NoExecute"));
        }
        Some(n) => Some(
            n.parse::<i64>()
                .map_err(|_| format!("toleration {s:?}: {n:?} is not a number of seconds"))?,
        ),
    };
    Ok(Toleration {
        key: Some(key.into()),
        operator: Some(if value.is_some() { "Equal" } else { "Exists" }.into()),
        value: value.map(String::from),
        effect: (!effect.is_empty()).then(|| effect.into()),
        toleration_seconds,
    })
}

/// Parses a node selector written as `key=value[,key=value...]`.
pub fn parse_node_selector(s: &str) -> Result<BTreeMap<String, String>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| match p.trim().split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(format!("node selector {p:?}: expected key=value")),
        })
        .collect()
}

/// The Pod of a job.
pub fn pod_name(job: &cola_wire::JobId) -> String {
    format!("cola-job-{job}")
}

/// The value of the hashed user label.
pub fn user_hash(user: &cola_wire::UserId) -> String {
    hex::encode(&Sha256::digest(user.as_str().as_bytes())[..16])
}

/// What a start-up reconciliation found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Live Pods of open jobs, left running to be adopted.
    pub adopted: Vec<String>,
    /// Finished Pods of open jobs whose outcome was recorded.
    pub finished: Vec<String>,
    /// Pods deleted (their job terminal or gone, or finished now).
    pub deleted: Vec<String>,
}

/// Runs executors as Pods.
pub struct KubeBackend {
    pods: Api<Pod>,
    config: Arc<KubeBackendConfig>,
    /// The job records and object store, once the middleware has opened them.
    topology: OnceLock<Topology>,
    /// The periodic reconciliation, stopped when the backend is dropped.
    sweeper: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for KubeBackend {
    fn drop(&mut self) {
        if let Some(sweeper) = self.sweeper.get_mut().ok().and_then(Option::take) {
            sweeper.abort();
        }
    }
}

impl KubeBackend {
    /// Connects with the ambient configuration (in-cluster ServiceAccount or kubeconfig).
    pub async fn connect(config: KubeBackendConfig) -> Result<Self, BackendError> {
        let client = Client::try_default()
            .await
            .map_err(|e| BackendError::kube("cannot configure a Kubernetes client", e))?;
        Self::new(client, config)
    }

    /// A backend over `client` (tests pass one over a mocked API server).
    pub fn new(client: Client, config: KubeBackendConfig) -> Result<Self, BackendError> {
        config.validate()?;
        Ok(Self {
            pods: Api::namespaced(client, &config.namespace),
            config: Arc::new(config),
            topology: OnceLock::new(),
            sweeper: std::sync::Mutex::new(None),
        })
    }

    /// The executor image of a language.
    pub fn image_of(&self, image: &str) -> String {
        let registry = self.config.image_registry.trim_end_matches('/');
        if registry.is_empty() {
            format!("{image}:{}", self.config.image_tag)
        } else {
            format!("{registry}/{image}:{}", self.config.image_tag)
        }
    }

    /// The Pod that runs `job` (with its message as `job_json`).
    pub fn pod_for(&self, job: &JobMessage, job_json: String) -> Result<Pod, BackendError> {
        let c = &self.config;
        let lang = language(&job.language)
            .filter(|l| l.runtime == Runtime::Program)
            .ok_or_else(|| job_error(format!("language {} has no executor image", job.language)))?;
        let run_mb = job.limits.memory_mb;
        let peak_mb = if lang.compile.is_some() {
            run_mb.max(lang.compile_limits.memory_mb)
        } else {
            run_mb
        };
        let storage_mb = c.work_area_mb + c.tmp_mb + 64;
        let quantities = |cpu: u64, mem: u64| {
            BTreeMap::from([
                ("cpu".to_owned(), Quantity(format!("{cpu}m"))),
                ("memory".to_owned(), Quantity(format!("{mem}Mi"))),
                (
                    "ephemeral-storage".to_owned(),
                    Quantity(format!("{storage_mb}Mi")),
                ),
            ])
        };
        let labels = BTreeMap::from([
            (LABEL_NAME.to_owned(), EXECUTOR_APP.to_owned()),
            (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
            ("app.kubernetes.io/part-of".to_owned(), "cola".to_owned()),
            (LABEL_JOB_ID.to_owned(), job.id.to_string()),
            (LABEL_LANGUAGE.to_owned(), job.language.to_string()),
            (LABEL_USER_HASH.to_owned(), user_hash(&job.user)),
        ]);
        // The middleware's own deadline runs from the launch; the Pod's from its start on a
        // node, before its image is pulled: it is a backstop for a Pod whose middleware is
        // gone, so it allows for the pending time too and never fires first.
        let deadline = (job.deadline() + c.pending_timeout).as_secs_f64().ceil() as i64;
        let empty_dir = |mb: u64| EmptyDirVolumeSource {
            medium: None,
            size_limit: Some(Quantity(format!("{mb}Mi"))),
        };
        Ok(Pod {
            metadata: ObjectMeta {
                name: Some(pod_name(&job.id)),
                namespace: Some(c.namespace.clone()),
                labels: Some(labels),
                annotations: Some(BTreeMap::from([(
                    ANNOTATION_JOB_KEY.to_owned(),
                    names::job_key(&job.user, &job.id),
                )])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                restart_policy: Some("Never".into()),
                active_deadline_seconds: Some(deadline),
                termination_grace_period_seconds: Some(5),
                automount_service_account_token: Some(false),
                service_account_name: c.service_account.clone(),
                enable_service_links: Some(false),
                host_network: Some(false),
                host_pid: Some(false),
                host_ipc: Some(false),
                host_users: c.user_namespaces.then_some(false),
                share_process_namespace: Some(false),
                runtime_class_name: c.runtime_class.clone(),
                node_selector: (!c.node_selector.is_empty()).then(|| c.node_selector.clone()),
                tolerations: (!c.tolerations.is_empty()).then(|| c.tolerations.clone()),
                image_pull_secrets: (!c.image_pull_secrets.is_empty()).then(|| {
                    c.image_pull_secrets
                        .iter()
                        .map(|name| LocalObjectReference { name: name.clone() })
                        .collect()
                }),
                security_context: Some(PodSecurityContext {
                    run_as_non_root: Some(true),
                    run_as_user: Some(10001),
                    run_as_group: Some(10001),
                    fs_group: Some(10001),
                    seccomp_profile: Some(runtime_default()),
                    ..Default::default()
                }),
                topology_spread_constraints: Some(vec![TopologySpreadConstraint {
                    max_skew: 1,
                    topology_key: "kubernetes.io/hostname".into(),
                    when_unsatisfiable: "ScheduleAnyway".into(),
                    label_selector: Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([(
                            LABEL_NAME.to_owned(),
                            EXECUTOR_APP.to_owned(),
                        )])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                containers: vec![Container {
                    name: CONTAINER.into(),
                    image: Some(self.image_of(lang.image)),
                    image_pull_policy: Some(c.image_pull_policy.clone()),
                    args: Some(c.executor_args.clone()),
                    working_dir: Some(WORK_DIR.into()),
                    env: Some(vec![
                        EnvVar {
                            name: JOB_ENV.into(),
                            value: Some(job_json),
                            value_from: None,
                        },
                        EnvVar {
                            name: NATS_URL_ENV.into(),
                            value: None,
                            value_from: Some(EnvVarSource {
                                secret_key_ref: Some(SecretKeySelector {
                                    name: c.nats_url_secret.name.clone(),
                                    key: c.nats_url_secret.key.clone(),
                                    optional: Some(false),
                                }),
                                ..Default::default()
                            }),
                        },
                        EnvVar {
                            name: "TMPDIR".into(),
                            value: Some("/tmp".into()),
                            value_from: None,
                        },
                    ]),
                    resources: Some(ResourceRequirements {
                        requests: Some(quantities(
                            c.cpu_request_millis,
                            run_mb + c.memory_overhead_mb,
                        )),
                        limits: Some(quantities(
                            c.cpu_limit_millis,
                            peak_mb + c.memory_overhead_mb,
                        )),
                        ..Default::default()
                    }),
                    security_context: Some(SecurityContext {
                        run_as_non_root: Some(true),
                        read_only_root_filesystem: Some(true),
                        allow_privilege_escalation: Some(false),
                        privileged: Some(false),
                        capabilities: Some(Capabilities {
                            drop: Some(vec!["ALL".into()]),
                            add: None,
                        }),
                        seccomp_profile: Some(runtime_default()),
                        ..Default::default()
                    }),
                    volume_mounts: Some(vec![
                        VolumeMount {
                            name: "work".into(),
                            mount_path: WORK_DIR.into(),
                            ..Default::default()
                        },
                        VolumeMount {
                            name: "tmp".into(),
                            mount_path: "/tmp".into(),
                            ..Default::default()
                        },
                    ]),
                    termination_message_policy: Some("FallbackToLogsOnError".into()),
                    ..Default::default()
                }],
                volumes: Some(vec![
                    Volume {
                        name: "work".into(),
                        empty_dir: Some(empty_dir(c.work_area_mb)),
                        ..Default::default()
                    },
                    Volume {
                        name: "tmp".into(),
                        empty_dir: Some(empty_dir(c.tmp_mb)),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            status: None,
        })
    }

    /// The job message as the executor gets it: inputs too large for an environment variable
    /// are moved to the object store (`<user>/<job-id>-input.zip`), as the gateway does for
    /// inputs too large for a message.
    async fn job_json(&self, job: &JobMessage) -> Result<String, BackendError> {
        let json =
            serde_json::to_string(job).map_err(|e| BackendError::json(NAME, "job message", e))?;
        if json.len() <= MAX_ENV_JOB_BYTES {
            return Ok(json);
        }
        let Some(inputs) = &job.inputs else {
            return Err(job_error(format!(
                "the job message is {} bytes, too large for a Pod",
                json.len()
            )));
        };
        let topology = self
            .topology
            .get()
            .ok_or_else(|| BackendError::NotAttached {
                backend: NAME,
                message: "large inputs need the object store, which is not attached".into(),
            })?;
        let object = names::input_object(&job.user, &job.id);
        let zip = input_zip::encode(inputs);
        topology
            .outputs
            .put(object.as_str(), &mut zip.as_slice())
            .await
            .map_err(|e| BackendError::nats(NAME, format!("store the inputs as {object}"), e))?;
        let mut slim = job.clone();
        slim.inputs = None;
        slim.input_object = Some(object);
        let json =
            serde_json::to_string(&slim).map_err(|e| BackendError::json(NAME, "job message", e))?;
        if json.len() > MAX_ENV_JOB_BYTES {
            return Err(job_error(format!(
                "the job message is {} bytes without its inputs, too large for a Pod",
                json.len()
            )));
        }
        Ok(json)
    }

    fn handle_for(&self, pod: &str) -> ExecutorHandle {
        ExecutorHandle {
            backend: NAME.into(),
            node: self.config.cluster.clone(),
            id: format!("{}/{pod}", self.config.namespace),
        }
    }

    /// The Pod name behind a handle of this backend, cluster and namespace.
    fn pod_of<'h>(&self, handle: &'h ExecutorHandle) -> Option<&'h str> {
        if handle.backend != NAME || handle.node != self.config.cluster {
            return None;
        }
        let (namespace, pod) = handle.id.split_once('/')?;
        (namespace == self.config.namespace && pod.starts_with("cola-job-")).then_some(pod)
    }

    async fn get_pod(&self, name: &str) -> Result<Option<Pod>, BackendError> {
        self.pods
            .get_opt(name)
            .await
            .map_err(|e| api_error(&format!("get Pod {name}"), e))
    }

    async fn delete_pod(&self, name: &str) -> Result<(), BackendError> {
        delete_pod(&self.pods, name).await
    }

    /// Records a failure only the cluster saw, unless the job already ended.
    async fn record(&self, pod: &Pod, reason: Reason, message: &str) {
        match self.topology.get() {
            Some(topology) => record_outcome(topology, pod, reason, message).await,
            None => {
                tracing::warn!(pod = ?pod.metadata.name, "job records not attached; outcome not recorded");
            }
        }
    }

    /// Acts on a Pod's state: `Some` once the executor has ended (after recording a failure the
    /// cluster saw, or killing a Pod that never started in time).
    async fn settle(&self, pod: &Pod) -> Result<Option<ExecutorExit>, BackendError> {
        match classify(pod) {
            PodState::Running => Ok(None),
            PodState::Ended(outcome) => {
                if let Some(reason) = outcome.reason {
                    self.record(pod, reason, &outcome.description).await;
                }
                Ok(Some(ExecutorExit {
                    description: outcome.description,
                }))
            }
            PodState::Pending(why) => {
                if pending_for(pod) < self.config.pending_timeout {
                    return Ok(None);
                }
                let description = format!(
                    "executor Pod did not start within {} s: {}",
                    self.config.pending_timeout.as_secs(),
                    why.as_deref().unwrap_or("still pending")
                );
                // Recorded first: should the Pod start after all, its executor finds the job
                // ended and does nothing.
                self.record(pod, Reason::InternalError, &description).await;
                let name = pod.metadata.name.clone().unwrap_or_default();
                if let Err(e) = self.delete_pod(&name).await {
                    // The middleware's cleanup after the job deletes it again.
                    tracing::warn!(pod = name, error = %e, "cannot delete a Pod that never started");
                }
                Ok(Some(ExecutorExit { description }))
            }
        }
    }

    /// Follows a Pod until it ends or is gone.
    async fn follow(&self, name: &str) -> Result<ExecutorExit, BackendError> {
        let gone = || ExecutorExit {
            description: format!("executor Pod {name} is gone"),
        };
        let mut failures = 0;
        let mut pause = API_FIRST_PAUSE;
        loop {
            let pod = match self.get_pod(name).await {
                Ok(Some(pod)) => pod,
                Ok(None) => return Ok(gone()),
                Err(e) => {
                    failures += 1;
                    if failures >= API_ATTEMPTS {
                        return Err(e);
                    }
                    tracing::warn!(pod = name, error = %e, "cannot read the executor Pod; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    continue;
                }
            };
            failures = 0;
            pause = API_FIRST_PAUSE;
            if let Some(exit) = self.settle(&pod).await? {
                return Ok(exit);
            }
            // Wake up when a pending Pod's time is up even if nothing changes.
            let mut until = self.pending_deadline(&pod);
            let version = pod.metadata.resource_version.clone().unwrap_or_default();
            let params = WatchParams::default()
                .fields(&format!("metadata.name={name}"))
                .timeout(WATCH_SECONDS);
            let events = match self.pods.watch(&params, &version).await {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(pod = name, error = %e, "cannot watch the executor Pod; reading it again");
                    failures += 1;
                    if failures >= API_ATTEMPTS {
                        return Err(api_error(&format!("watch Pod {name}"), e));
                    }
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    continue;
                }
            };
            let mut events = std::pin::pin!(events);
            loop {
                let next = match until {
                    Some(at) => match tokio::time::timeout_at(at, events.next()).await {
                        Ok(next) => next,
                        Err(_) => break, // read again: settles a Pod pending too long
                    },
                    None => events.next().await,
                };
                match next {
                    Some(Ok(WatchEvent::Added(pod) | WatchEvent::Modified(pod))) => {
                        if let Some(exit) = self.settle(&pod).await? {
                            return Ok(exit);
                        }
                        until = self.pending_deadline(&pod);
                    }
                    Some(Ok(WatchEvent::Deleted(pod))) => {
                        // Deleted while running: its last state may still say how it ended.
                        return Ok(match classify(&pod) {
                            PodState::Ended(_) => self.settle(&pod).await?.unwrap_or_else(gone),
                            _ => gone(),
                        });
                    }
                    Some(Ok(WatchEvent::Bookmark(_))) => {}
                    // `410 Gone` (the version is too old) and the like: read again.
                    Some(Ok(WatchEvent::Error(status))) => {
                        tracing::debug!(
                            pod = name,
                            code = status.code,
                            "watch ended with an error event"
                        );
                        break;
                    }
                    Some(Err(e)) => {
                        tracing::debug!(pod = name, error = %e, "watch stream failed");
                        break;
                    }
                    None => break,
                }
            }
        }
    }

    /// When a Pod that has not started yet runs out of time (`None` once it runs).
    fn pending_deadline(&self, pod: &Pod) -> Option<tokio::time::Instant> {
        matches!(classify(pod), PodState::Pending(_)).then(|| {
            let left = self.config.pending_timeout.saturating_sub(pending_for(pod));
            tokio::time::Instant::now() + left
        })
    }

    /// Reconciles the Pods carrying cola's labels with the job records (see the module docs).
    pub async fn reconcile(&self, topology: &Topology) -> Result<ReconcileReport, BackendError> {
        reconcile(&self.pods, topology).await
    }
}

#[async_trait]
impl Backend for KubeBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn attach(&self, topology: &Topology) -> Result<(), BackendError> {
        // A second attach (a restarted run in the same process) keeps the first topology.
        let topology = self.topology.get_or_init(|| topology.clone());
        match self.reconcile(topology).await {
            Ok(report) => tracing::info!(
                adopted = report.adopted.len(),
                finished = report.finished.len(),
                deleted = report.deleted.len(),
                "executor Pods reconciled"
            ),
            // Not fatal: Pods left behind end at their deadline and are deleted next time.
            Err(e) => tracing::error!(error = %e, "cannot reconcile executor Pods"),
        }
        let mut sweeper = self.sweeper.lock().expect("not poisoned");
        if let (Some(every), None) = (self.config.reconcile_every, sweeper.as_ref()) {
            let (pods, topology) = (self.pods.clone(), topology.clone());
            let task = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match reconcile(&pods, &topology).await {
                        Ok(r) if r.finished.is_empty() && r.deleted.is_empty() => {}
                        Ok(r) => tracing::info!(
                            finished = r.finished.len(),
                            deleted = r.deleted.len(),
                            "executor Pods reconciled"
                        ),
                        Err(e) => tracing::warn!(error = %e, "cannot reconcile executor Pods"),
                    }
                }
            });
            *sweeper = Some(task.abort_handle());
        }
        Ok(())
    }

    async fn launch(&self, job: &JobMessage) -> Result<ExecutorHandle, BackendError> {
        let name = pod_name(&job.id);
        let json = self.job_json(job).await?;
        let pod = self.pod_for(job, json)?;
        match self.pods.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                tracing::debug!(pod = name, "executor Pod created");
                Ok(self.handle_for(&name))
            }
            Err(::kube::Error::Api(s)) if s.code == 409 || s.is_already_exists() => {
                // An earlier attempt created it: adopt it if it is this job's.
                let existing = self
                    .get_pod(&name)
                    .await?
                    .ok_or_else(|| conflict(format!("Pod {name} exists but cannot be read")))?;
                let labels = existing.metadata.labels.as_ref();
                let ours = labels.and_then(|l| l.get(LABEL_JOB_ID)) == Some(&job.id.to_string());
                if !ours {
                    return Err(conflict(format!(
                        "Pod {name} exists and is not this job's executor"
                    )));
                }
                if existing.metadata.deletion_timestamp.is_some() {
                    return Err(conflict(format!(
                        "an earlier executor Pod {name} is being deleted"
                    )));
                }
                tracing::info!(pod = name, "executor Pod exists; adopting it");
                Ok(self.handle_for(&name))
            }
            Err(e) => Err(api_error(&format!("create Pod {name}"), e)),
        }
    }

    /// A Pod that exists and is not being deleted counts as alive even when it has ended:
    /// [`wait`](Backend::wait) then returns at once with how it ended (and records it).
    async fn is_alive(&self, handle: &ExecutorHandle) -> Result<bool, BackendError> {
        let Some(name) = self.pod_of(handle) else {
            return Ok(false);
        };
        Ok(self
            .get_pod(name)
            .await?
            .is_some_and(|p| p.metadata.deletion_timestamp.is_none()))
    }

    async fn wait(&self, handle: &ExecutorHandle) -> Result<ExecutorExit, BackendError> {
        let name = self
            .pod_of(handle)
            .ok_or_else(|| BackendError::ForeignHandle {
                backend: NAME,
                message: format!(
                    "handle {}:{}:{} is not a Pod of this backend",
                    handle.backend, handle.node, handle.id
                ),
            })?;
        self.follow(name).await
    }

    async fn kill(&self, handle: &ExecutorHandle) -> Result<(), BackendError> {
        match self.pod_of(handle) {
            Some(name) => self.delete_pod(name).await,
            None => Ok(()),
        }
    }

    async fn cleanup(&self, handle: &ExecutorHandle) -> Result<(), BackendError> {
        self.kill(handle).await
    }

    /// The image each language runs in (a Pod per version check would cost a Pod start).
    async fn versions(&self) -> BTreeMap<String, String> {
        cola_wire::languages()
            .iter()
            .filter(|l| l.runtime == Runtime::Program)
            .map(|l| (l.name.to_owned(), self.image_of(l.image)))
            .collect()
    }
}

/// How a job ended, as the cluster saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The failure only the cluster can see; `None` for an exit the executor should have reported.
    pub reason: Option<Reason>,
    pub description: String,
}

/// Where a Pod is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    /// Not started: being scheduled or pulling its image; with what blocks it, if known.
    Pending(Option<String>),
    Running,
    Ended(Outcome),
}

/// Reads a Pod's status (pure, so every mapping is tested without an API server).
pub fn classify(pod: &Pod) -> PodState {
    let Some(status) = &pod.status else {
        return PodState::Pending(None);
    };
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let executor = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == CONTAINER);
    let state = executor.and_then(|c| c.state.as_ref());
    let terminated = state.and_then(|s| s.terminated.as_ref());
    let phase = status.phase.as_deref().unwrap_or("Pending");
    let pod_reason = status.reason.as_deref().unwrap_or_default();
    let pod_message = status.message.as_deref().unwrap_or_default();

    if pod_reason == "DeadlineExceeded" {
        let seconds = pod
            .spec
            .as_ref()
            .and_then(|s| s.active_deadline_seconds)
            .map_or_else(String::new, |s| format!(" of {s} s"));
        // A Pod that never got its container running ran out of time pulling or scheduling:
        // that is not the job's time.
        let started = state.is_some_and(|s| {
            s.running.is_some()
                || s.terminated
                    .as_ref()
                    .is_some_and(|t| t.started_at.is_some())
        });
        return PodState::Ended(if started {
            Outcome {
                reason: Some(Reason::TimeLimit),
                description: format!(
                    "executor Pod {name} exceeded its active deadline{seconds}; stopped by Kubernetes"
                ),
            }
        } else {
            Outcome {
                reason: Some(Reason::InternalError),
                description: format!(
                    "executor Pod {name} reached its active deadline{seconds} before its container started"
                ),
            }
        });
    }
    if let Some(t) = terminated
        && t.reason.as_deref() == Some("OOMKilled")
    {
        return PodState::Ended(Outcome {
            reason: Some(Reason::MemoryLimit),
            description: format!(
                "executor Pod {name} was killed for exceeding its memory limit{}",
                memory_limit_of(pod).map_or_else(String::new, |m| format!(" ({m})"))
            ),
        });
    }
    if pod_reason == "Evicted" {
        let storage = ["ephemeral", "EmptyDir", "emptyDir"]
            .iter()
            .any(|w| pod_message.contains(w));
        return PodState::Ended(Outcome {
            reason: Some(if storage {
                Reason::OutputLimit
            } else {
                Reason::InternalError
            }),
            description: format!(
                "executor Pod {name} was evicted: {}",
                clip(pod_message, DETAIL_BYTES)
            ),
        });
    }
    if let Some(t) = terminated.filter(|_| phase != "Succeeded") {
        let mut description = format!("executor Pod {name} failed: exit code {}", t.exit_code);
        if let Some(signal) = t.signal {
            description.push_str(&format!(", signal {signal}"));
        }
        if let Some(reason) = &t.reason {
            description.push_str(&format!(" ({reason})"));
        }
        if let Some(message) = t.message.as_deref().filter(|m| !m.trim().is_empty()) {
            description.push_str(": ");
            description.push_str(&clip(message.trim(), DETAIL_BYTES));
        }
        return PodState::Ended(Outcome {
            reason: None,
            description,
        });
    }
    match phase {
        "Succeeded" => PodState::Ended(Outcome {
            reason: None,
            description: format!("executor Pod {name} exited with code 0"),
        }),
        "Failed" => PodState::Ended(Outcome {
            reason: None,
            description: format!(
                "executor Pod {name} failed: {} {}",
                pod_reason,
                clip(pod_message, DETAIL_BYTES)
            )
            .trim_end()
            .to_owned(),
        }),
        "Running" => PodState::Running,
        _ => {
            let unschedulable = status.conditions.iter().flatten().find(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            });
            if let Some(c) = unschedulable {
                return PodState::Pending(Some(format!(
                    "unschedulable: {}",
                    clip(c.message.as_deref().unwrap_or_default(), DETAIL_BYTES)
                )));
            }
            let waiting = state.and_then(|s: &ContainerState| s.waiting.as_ref());
            PodState::Pending(
                waiting
                    .and_then(|w| w.reason.as_deref())
                    .filter(|r| *r != "ContainerCreating" && *r != "PodInitializing")
                    .map(|reason| {
                        let message = waiting
                            .and_then(|w| w.message.as_deref())
                            .unwrap_or_default();
                        format!("{reason}: {}", clip(message, DETAIL_BYTES))
                            .trim_end_matches([' ', ':'])
                            .to_owned()
                    }),
            )
        }
    }
}

/// Reconciles the Pods carrying cola's labels with the job records (see the module docs).
async fn reconcile(pods: &Api<Pod>, topology: &Topology) -> Result<ReconcileReport, BackendError> {
    let mut report = ReconcileReport::default();
    let mut params = ListParams::default()
        .labels(&format!(
            "{LABEL_NAME}={EXECUTOR_APP},{LABEL_MANAGED_BY}={MANAGED_BY}"
        ))
        .limit(500);
    loop {
        let page = pods
            .list(&params)
            .await
            .map_err(|e| api_error("list executor Pods", e))?;
        for pod in &page.items {
            reconcile_pod(pods, topology, pod, &mut report).await?;
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    Ok(report)
}

async fn reconcile_pod(
    pods: &Api<Pod>,
    topology: &Topology,
    pod: &Pod,
    report: &mut ReconcileReport,
) -> Result<(), BackendError> {
    let Some(name) = pod.metadata.name.clone() else {
        return Ok(());
    };
    if pod.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let record =
        match job_key_of(pod) {
            None => None,
            Some(key) => topology.jobs.get(&key).await.map_err(|e| {
                BackendError::nats(NAME, format!("read the record of Pod {name}"), e)
            })?,
        };
    let open = record.is_some_and(|(r, _)| !r.status.is_terminal());
    if open {
        match classify(pod) {
            PodState::Ended(outcome) => {
                let reason = outcome.reason.unwrap_or(Reason::InternalError);
                let message = match outcome.reason {
                    Some(_) => outcome.description,
                    None => format!(
                        "executor ended without reporting a result ({})",
                        outcome.description
                    ),
                };
                record_outcome(topology, pod, reason, &message).await;
                report.finished.push(name.clone());
            }
            PodState::Running | PodState::Pending(_) => {
                tracing::info!(pod = name, "executor Pod of an open job left to be adopted");
                report.adopted.push(name);
                return Ok(());
            }
        }
    }
    delete_pod(pods, &name).await?;
    tracing::info!(pod = name, "executor Pod deleted by reconciliation");
    report.deleted.push(name);
    Ok(())
}

/// Deletes a Pod (a running one after a 1 s grace); one that is gone already is fine.
async fn delete_pod(pods: &Api<Pod>, name: &str) -> Result<(), BackendError> {
    let params = DeleteParams {
        grace_period_seconds: Some(1),
        ..DeleteParams::background()
    };
    match pods.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(::kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(api_error(&format!("delete Pod {name}"), e)),
    }
}

/// Ends the job a Pod was made for with a failure only the cluster saw, unless it already ended.
async fn record_outcome(topology: &Topology, pod: &Pod, reason: Reason, message: &str) {
    let Some(key) = job_key_of(pod) else {
        tracing::warn!(pod = ?pod.metadata.name, "Pod without a valid job key; outcome not recorded");
        return;
    };
    let now = cola_wire::job::now();
    let recorded = topology
        .jobs
        .transition(&key, |r| {
            r.message = Some(message.to_owned());
            r.finish(Status::Failed, Some(reason), now);
            true
        })
        .await;
    match recorded {
        Ok(Transition::Changed(..)) => {
            tracing::info!(
                key,
                reason = reason.as_str(),
                message,
                "recorded the Pod's outcome"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(key, error = %e, "cannot record the Pod's outcome"),
    }
}

/// How long a Pod has existed (zero without a creation time).
fn pending_for(pod: &Pod) -> Duration {
    let Some(created) = &pod.metadata.creation_timestamp else {
        return Duration::ZERO;
    };
    let age_ms = chrono::Utc::now().timestamp_millis() - created.0.as_millisecond();
    Duration::from_millis(age_ms.max(0) as u64)
}

fn memory_limit_of(pod: &Pod) -> Option<String> {
    let container = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == CONTAINER)?;
    let limits = container.resources.as_ref()?.limits.as_ref()?;
    limits.get("memory").map(|q| q.0.clone())
}

/// The job record key a Pod was made for, if it is a well-formed one.
fn job_key_of(pod: &Pod) -> Option<String> {
    let key = pod.metadata.annotations.as_ref()?.get(ANNOTATION_JOB_KEY)?;
    let (user, id) = names::parse_job_key(key)?;
    let label = pod.metadata.labels.as_ref()?.get(LABEL_JOB_ID)?;
    (*label == id.to_string()).then(|| names::job_key(&user, &id))
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn config(message: String) -> BackendError {
    BackendError::Config {
        backend: NAME,
        message,
    }
}

fn job_error(message: String) -> BackendError {
    BackendError::Job {
        backend: NAME,
        message,
    }
}

fn conflict(message: String) -> BackendError {
    BackendError::Conflict {
        backend: NAME,
        message,
    }
}

fn api_error(step: &str, e: ::kube::Error) -> BackendError {
    BackendError::kube(step, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cola-job-x"},
            "spec": {"activeDeadlineSeconds": 55, "containers": [{
                "name": "executor", "resources": {"limits": {"memory": "2176Mi"}}
            }]},
            "status": status,
        }))
        .unwrap()
    }

    fn executor(state: serde_json::Value) -> serde_json::Value {
        serde_json::json!([{"name": "executor", "image": "i", "imageID": "", "ready": false,
                            "restartCount": 0, "state": state}])
    }

    fn ended(status: serde_json::Value) -> Outcome {
        match classify(&pod(status)) {
            PodState::Ended(outcome) => outcome,
            other => panic!("not ended: {other:?}"),
        }
    }

    #[test]
    fn the_cluster_s_failures_map_to_reasons() {
        let oom = ended(serde_json::json!({"phase": "Failed",
            "containerStatuses": executor(serde_json::json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}))}));
        assert_eq!(oom.reason, Some(Reason::MemoryLimit));
        assert!(oom.description.contains("(2176Mi)"));
        // The container may be OOM-killed before the phase says so.
        let early = ended(serde_json::json!({"phase": "Running",
            "containerStatuses": executor(serde_json::json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}))}));
        assert_eq!(early.reason, Some(Reason::MemoryLimit));

        let deadline = ended(
            serde_json::json!({"phase": "Failed", "reason": "DeadlineExceeded",
            "containerStatuses": executor(serde_json::json!({"terminated": {
                "exitCode": 137, "reason": "Error", "startedAt": "2026-01-01T00:00:00Z"}}))}),
        );
        assert_eq!(deadline.reason, Some(Reason::TimeLimit));
        assert!(deadline.description.contains("of 55 s"));
        // Out of time before the container ever ran (a pull that took forever).
        for never in [
            serde_json::json!({"phase": "Failed", "reason": "DeadlineExceeded"}),
            serde_json::json!({"phase": "Failed", "reason": "DeadlineExceeded",
                "containerStatuses": executor(serde_json::json!({"waiting": {"reason": "ImagePullBackOff"}}))}),
        ] {
            let outcome = ended(never);
            assert_eq!(outcome.reason, Some(Reason::InternalError));
            assert!(outcome.description.contains("before its container started"));
        }

        let full = ended(serde_json::json!({"phase": "Failed", "reason": "Evicted",
            "message": "Usage of EmptyDir volume \"work\" exceeds the limit \"512Mi\"."}));
        assert_eq!(full.reason, Some(Reason::OutputLimit));
        let pressure = ended(serde_json::json!({"phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: memory."}));
        assert_eq!(pressure.reason, Some(Reason::InternalError));

        // An executor that exits on its own is its own to report: no reason from the cluster.
        let crashed = ended(serde_json::json!({"phase": "Failed",
            "containerStatuses": executor(serde_json::json!({"terminated": {
                "exitCode": 1, "reason": "Error", "message": "cannot connect to NATS"}}))}));
        assert_eq!(crashed.reason, None);
        assert!(
            crashed
                .description
                .contains("exit code 1 (Error): cannot connect to NATS")
        );
        let ok = ended(serde_json::json!({"phase": "Succeeded",
            "containerStatuses": executor(serde_json::json!({"terminated": {"exitCode": 0, "reason": "Completed"}}))}));
        assert_eq!(ok.reason, None);
    }

    #[test]
    fn a_pod_that_has_not_started_says_what_blocks_it() {
        assert_eq!(
            classify(&pod(serde_json::json!({"phase": "Pending"}))),
            PodState::Pending(None)
        );
        let creating = pod(serde_json::json!({"phase": "Pending",
            "containerStatuses": executor(serde_json::json!({"waiting": {"reason": "ContainerCreating"}}))}));
        assert_eq!(classify(&creating), PodState::Pending(None));
        let pull = pod(serde_json::json!({"phase": "Pending",
            "containerStatuses": executor(serde_json::json!({"waiting": {"reason": "ErrImagePull", "message": "not found"}}))}));
        assert_eq!(
            classify(&pull),
            PodState::Pending(Some("ErrImagePull: not found".into()))
        );
        let unschedulable = pod(serde_json::json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}]}));
        assert_eq!(
            classify(&unschedulable),
            PodState::Pending(Some("unschedulable: 0/3 nodes".into()))
        );
        let running = pod(serde_json::json!({"phase": "Running",
            "containerStatuses": executor(serde_json::json!({"running": {}}))}));
        assert_eq!(classify(&running), PodState::Running);
    }

    #[test]
    fn tolerations_and_node_selectors_parse_kubectl_syntax() {
        let t = parse_toleration("dedicated=cola:NoSchedule").unwrap();
        assert_eq!(t.key.as_deref(), Some("dedicated"));
        assert_eq!(t.operator.as_deref(), Some("Equal"));
        assert_eq!(t.value.as_deref(), Some("cola"));
        assert_eq!(t.effect.as_deref(), Some("NoSchedule"));
        let t = parse_toleration("sandbox:NoExecute:30").unwrap();
        assert_eq!(t.operator.as_deref(), Some("Exists"));
        assert_eq!(t.toleration_seconds, Some(30));
        let t = parse_toleration("gpu").unwrap();
        assert_eq!(t.effect, None);
        for bad in [
            "",
            "=x:NoSchedule",
            "k:Sometimes",
            "k:NoSchedule:30",
            "k:NoExecute:soon",
            "a:b:c:d",
        ] {
            assert!(parse_toleration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_node_selector("a=1, b=2").unwrap(),
            BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())])
        );
        assert!(parse_node_selector("a").is_err());
        assert!(parse_node_selector("").unwrap().is_empty());
    }

    #[test]
    fn configuration_mistakes_are_caught_before_the_first_job() {
        let secret = SecretKeyRef {
            name: "n".into(),
            key: "url".into(),
        };
        assert!(
            KubeBackendConfig::new("cola-executors", secret.clone())
                .validate()
                .is_ok()
        );
        let bad: [fn(&mut KubeBackendConfig); 6] = [
            |c| c.namespace = "Cola".into(),
            |c| c.image_tag = "a:b".into(),
            |c| c.image_pull_policy = "Sometimes".into(),
            |c| c.nats_url_secret.key.clear(),
            |c| c.work_area_mb = 0,
            |c| c.cpu_limit_millis = 100,
        ];
        for change in bad {
            let mut config = KubeBackendConfig::new("cola-executors", secret.clone());
            change(&mut config);
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn a_job_key_is_taken_only_from_a_pod_whose_labels_agree() {
        let id = cola_wire::JobId::new();
        let user = cola_wire::UserId::parse("u1").unwrap();
        let mut pod = Pod::default();
        pod.metadata.annotations = Some(BTreeMap::from([(
            ANNOTATION_JOB_KEY.to_owned(),
            names::job_key(&user, &id),
        )]));
        pod.metadata.labels = Some(BTreeMap::from([(LABEL_JOB_ID.to_owned(), id.to_string())]));
        assert_eq!(job_key_of(&pod), Some(names::job_key(&user, &id)));
        pod.metadata.labels = Some(BTreeMap::from([(
            LABEL_JOB_ID.to_owned(),
            cola_wire::JobId::new().to_string(),
        )]));
        assert_eq!(job_key_of(&pod), None);
    }
}
