//! [`KubeBackend`]: the [`Backend`] that ties the parts together: launching a job's Pod (or
//! adopting the one an earlier attempt made), following it, deleting it, and reconciling Pods
//! with the job records once attached.

use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
};

use ::kube::{
    Client,
    api::{Api, PostParams},
};
use async_trait::async_trait;
use cola_wire::{
    ExecutorHandle, JobMessage,
    energy::{NodeName, Share},
    input_object::spill_inputs,
    languages::Runtime,
    nats::Topology,
};
use k8s_openapi::api::core::v1::Pod;

use super::{
    config::KubeBackendConfig,
    follow::Follower,
    identity::{NAME, is_job_pod, is_pod_of, pod_name},
    pods::{delete_pod, get_pod},
    reconcile::{ReconcileReport, reconcile, spawn_periodic},
    spec,
    warm::WarmPool,
};
use crate::{
    backend::{Backend, BackendError, ExecutorExit},
    energy::{
        Energy, Placement,
        policy::{node_weights, required_nodes},
    },
};

/// The largest job message (without its inputs) a Pod's environment carries: one environment
/// string may not exceed 128 KiB (`MAX_ARG_STRLEN`).
const MAX_ENV_JOB_BYTES: usize = 96 * 1024;

/// Runs executors as Pods.
pub struct KubeBackend {
    pods: Api<Pod>,
    config: Arc<KubeBackendConfig>,
    /// The job records and object store, once the middleware has opened them.
    topology: OnceLock<Topology>,
    /// The periodic reconciliation, stopped when the backend is dropped.
    sweeper: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
    /// The Pods started ahead of their jobs, when configured.
    warm: Option<Arc<WarmPool>>,
    /// The task that keeps them, stopped when the backend is dropped or detached.
    warm_keeper: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
    /// The middleware's view of the nodes' power, once given: Pods prefer the greenest nodes.
    energy: Arc<OnceLock<Arc<Energy>>>,
}

impl Drop for KubeBackend {
    fn drop(&mut self) {
        for task in [&mut self.sweeper, &mut self.warm_keeper] {
            if let Some(task) = task.get_mut().ok().and_then(Option::take) {
                task.abort();
            }
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
        let pods = Api::namespaced(client, &config.namespace);
        let config = Arc::new(config);
        let energy = Arc::new(OnceLock::new());
        let warm = (config.warm_pods > 0)
            .then(|| Arc::new(WarmPool::new(pods.clone(), config.clone(), energy.clone())));
        Ok(Self {
            pods,
            config,
            topology: OnceLock::new(),
            sweeper: std::sync::Mutex::new(None),
            warm,
            warm_keeper: std::sync::Mutex::new(None),
            energy,
        })
    }

    /// The executor image of a language.
    pub fn image_of(&self, image: &str) -> String {
        self.config.image_of(image)
    }

    /// The Pod that runs `job` (with its message as `job_json`), when the backend places by
    /// energy preferring the greener nodes, and required on the greenest while they have room
    /// (the follower makes it again without the requirement when they have none).
    pub fn pod_for(&self, job: &JobMessage, job_json: String) -> Result<Pod, BackendError> {
        let mut pod = spec::pod_for(&self.config, job, job_json)?;
        let shares = energy_shares(&self.energy);
        spec::prefer_nodes(&mut pod, &node_weights(&shares));
        spec::require_nodes(&mut pod, &required_nodes(&shares));
        Ok(pod)
    }

    /// Reconciles the Pods carrying cola's labels with the job records (see the module docs).
    pub async fn reconcile(&self, topology: &Topology) -> Result<ReconcileReport, BackendError> {
        reconcile(&self.pods, topology).await
    }

    /// The job message as the executor gets it: never with its inputs, which go to the object
    /// store (`<user>/<job-id>-input.zip`) if they came inline, so that no source file or
    /// standard input is ever in a Pod's spec (which the API server stores and the kubelet logs
    /// when a Pod cannot start).
    async fn job_json(&self, job: &JobMessage) -> Result<String, BackendError> {
        let mut slim;
        let job = if job.work.inputs().is_some() {
            let topology = self
                .topology
                .get()
                .ok_or_else(|| BackendError::NotAttached {
                    backend: NAME,
                    message: "a job's inputs go to the object store, which is not attached".into(),
                })?;
            slim = job.clone();
            spill_inputs(&topology.outputs, &mut slim)
                .await
                .map_err(|e| BackendError::nats(NAME, "store the inputs as an input object", e))?;
            &slim
        } else {
            job
        };
        let json = to_json(job)?;
        if json.len() > MAX_ENV_JOB_BYTES {
            return Err(too_large(json.len()));
        }
        Ok(json)
    }

    /// Adopts the Pod `name` that an earlier attempt at `job` created, if it is this job's and
    /// is not being deleted.
    async fn adopt(&self, name: &str, job: &JobMessage) -> Result<ExecutorHandle, BackendError> {
        let conflict = |message| BackendError::Conflict {
            backend: NAME,
            message,
        };
        let existing = get_pod(&self.pods, name)
            .await?
            .ok_or_else(|| conflict(format!("Pod {name} exists but cannot be read")))?;
        if !is_pod_of(&existing, &job.id) {
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
        Ok(self.handle_for(name))
    }

    fn handle_for(&self, pod: &str) -> ExecutorHandle {
        self.config.pod_handle(pod)
    }

    /// The Pod name behind a handle of this backend, cluster and namespace.
    fn pod_of<'h>(&self, handle: &'h ExecutorHandle) -> Option<&'h str> {
        if handle.backend != NAME || handle.node != self.config.cluster {
            return None;
        }
        let (namespace, pod) = handle.id.split_once('/')?;
        (namespace == self.config.namespace && is_job_pod(pod)).then_some(pod)
    }

    /// With user namespaces asked for: whether the API server keeps a Pod's `hostUsers: false`,
    /// which one that does not know the field (before Kubernetes 1.25, or with user namespaces
    /// turned off) drops silently, running the Pod in the node's user namespace. Asks with a
    /// dry-run create of a job's Pod; refuses to go on when the field was dropped. A create
    /// refused now (a quota used up, say) leaves the question open, with a warning.
    async fn check_user_namespaces(&self) -> Result<(), BackendError> {
        let probe = probe_job();
        let pod = self.pod_for(&probe, to_json(&probe)?)?;
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        match self.pods.create(&dry_run, &pod).await {
            Ok(created) if created.spec.as_ref().and_then(|s| s.host_users) == Some(false) => {
                Ok(())
            }
            Ok(_) => Err(BackendError::Config {
                backend: NAME,
                message: "the API server drops `hostUsers: false` from Pods (it does not know \
                          the field: Kubernetes before 1.25, or user namespaces turned off), so \
                          executor Pods would run in their node's user namespace; run without \
                          --kube-user-namespaces, or on a cluster that supports them"
                    .into(),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check that the API server keeps hostUsers: false; going on");
                Ok(())
            }
        }
    }

    fn follower(&self) -> Follower<'_> {
        Follower {
            pods: &self.pods,
            pending_timeout: self.config.pending_timeout,
            topology: self.topology.get(),
            energy: self.energy.get().map(Arc::as_ref),
            node_noted: Default::default(),
        }
    }
}

#[async_trait]
impl Backend for KubeBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn runs_executors_here(&self) -> bool {
        false
    }

    fn place_with(&self, energy: Arc<Energy>) {
        energy.placed_by_cluster();
        let _ = self.energy.set(energy);
    }

    fn executors_waiting(&self) -> usize {
        self.warm.as_ref().map_or(0, |pool| pool.idle())
    }

    /// A Pod may wait for a node with room, and for its image, up to the pending timeout.
    fn start_allowance(&self) -> std::time::Duration {
        self.config.pending_timeout
    }

    async fn attach(&self, topology: &Topology) -> Result<(), BackendError> {
        if self.config.user_namespaces {
            self.check_user_namespaces().await?;
        }
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
            *sweeper = Some(spawn_periodic(self.pods.clone(), topology.clone(), every));
        }
        let mut keeper = self.warm_keeper.lock().expect("not poisoned");
        if let (Some(warm), None) = (&self.warm, keeper.as_ref()) {
            *keeper = Some(warm.start(topology.clone()));
        }
        Ok(())
    }

    async fn detach(&self) {
        let keeper = self.warm_keeper.lock().expect("not poisoned").take();
        if let (Some(keeper), Some(warm)) = (keeper, &self.warm) {
            keeper.abort();
            warm.drain().await;
        }
    }

    async fn launch(&self, job: &JobMessage) -> Result<ExecutorHandle, BackendError> {
        let name = pod_name(&job.id);
        if let Some(warm) = &self.warm
            && let Some(pod) = warm.hand_over(job).await
        {
            tracing::debug!(pod, "job handed to a warm Pod");
            return Ok(self.handle_for(&pod));
        }
        let json = self.job_json(job).await?;
        let pod = self.pod_for(job, json)?;
        match self.pods.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                tracing::debug!(pod = name, "executor Pod created");
                Ok(self.handle_for(&name))
            }
            // An earlier attempt created it: adopt it if it is this job's.
            Err(::kube::Error::Api(s)) if s.code == 409 || s.is_already_exists() => {
                self.adopt(&name, job).await
            }
            Err(e) => Err(BackendError::kube(format!("create Pod {name}"), e)),
        }
    }

    /// A warm Pod labelled with `job` (a Pod made for it is adopted by [`Backend::launch`]).
    async fn find(&self, job: &JobMessage) -> Result<Option<ExecutorHandle>, BackendError> {
        match &self.warm {
            Some(warm) => Ok(warm.find(job).await?.map(|pod| self.handle_for(&pod))),
            None => Ok(None),
        }
    }

    /// A Pod that exists and is not being deleted counts as alive even when it has ended:
    /// [`wait`](Backend::wait) then returns at once with how it ended (and records it).
    async fn is_alive(&self, handle: &ExecutorHandle) -> Result<bool, BackendError> {
        let Some(name) = self.pod_of(handle) else {
            return Ok(false);
        };
        Ok(get_pod(&self.pods, name)
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
        self.follower().follow(name).await
    }

    async fn kill(&self, handle: &ExecutorHandle) -> Result<(), BackendError> {
        match self.pod_of(handle) {
            Some(name) => delete_pod(&self.pods, name).await,
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

/// Every node's fresh renewable share, when the middleware places by energy (otherwise none):
/// what the Pods made now prefer ([`node_weights`]) and, made for their job, are required on
/// ([`required_nodes`]).
pub(super) fn energy_shares(energy: &OnceLock<Arc<Energy>>) -> Vec<(NodeName, Share)> {
    match energy.get() {
        Some(energy) if energy.config.placement == Placement::Energy => {
            energy.fresh_shares(cola_wire::job::now())
        }
        _ => Vec::new(),
    }
}

fn to_json(job: &JobMessage) -> Result<String, BackendError> {
    serde_json::to_string(job).map_err(|e| BackendError::json(NAME, "job message", e))
}

/// A job of the first compiled language (whose Pod has every kind of container), to ask the API
/// server about a Pod without creating one.
fn probe_job() -> JobMessage {
    let lang = cola_wire::languages()
        .iter()
        .find(|l| l.runtime == Runtime::Program && l.compile.is_some())
        .expect("the language table has a compiled language");
    let language = cola_wire::Language::parse(lang.name).expect("a valid language name");
    JobMessage {
        request_id: None,
        schedule: None,
        id: cola_wire::JobId::new(),
        user: cola_wire::UserId::parse("cola-check").expect("a valid user id"),
        limits: lang.default_limits,
        language,
        args: Vec::new(),
        created_at: cola_wire::job::now(),
        work: cola_wire::Work::InputObject(String::new()),
    }
}

/// A job message of `bytes` (without its inputs) that no Pod can carry.
fn too_large(bytes: usize) -> BackendError {
    BackendError::Job {
        backend: NAME,
        message: format!(
            "the job message is {bytes} bytes without its inputs, too large for a Pod"
        ),
    }
}
