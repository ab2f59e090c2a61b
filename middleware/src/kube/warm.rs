//! Warm: executor Pods started ahead of their jobs, so that a job does not wait for a Pod to be
//! scheduled, its containers to start and its executor to connect to NATS.
//!
//! Each middleware keeps `warm_pods` of them per program language (`--kube-warm-pods`), made for
//! a job with the language's default limits; a job with other limits, or whose message is
//! larger than a warm Pod's work area is sized for, gets a Pod of its own. Each takes exactly
//! one job and is never reused. A job is handed over in two steps: the Pod is written into the
//! job's record as its executor first (a compare-and-set on NATS, ≈ 1 ms, from `running`
//! without an executor), so that a middleware that takes over finds it there; then the job
//! message goes to the Pod's executor as a request on its subject
//! ([`cola_wire::names::warm_subject`]), answered once the executor took it. Only then are the
//! job's labels put on the Pod (a `PATCH`, off the job's path), for the reconciliation and
//! [`WarmPool::find`], as on a Pod made for the job. A Pod that nobody answers for (its executor
//! not connected yet) is kept for a later job while it is young, and deleted once it is not; a
//! Pod whose executor does not take the job is deleted, and taken out of the record again,
//! before the job goes to a Pod of its own, so the job never runs twice. An idle Pod is replaced
//! before its lifetime ends; one whose middleware is gone ends at its `activeDeadlineSeconds`,
//! and the reconciliation deletes ended warm Pods.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use ::kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use cola_wire::{
    ExecutorHandle, JobKey, JobMessage, LanguageDef, Status, language, names,
    nats::{Topology, Transition},
};
use k8s_openapi::api::core::v1::Pod;
use tokio::{sync::Notify, time::Instant};

use super::{
    backend::energy_shares,
    config::KubeBackendConfig,
    identity::{ANNOTATION_JOB_KEY, LABEL_JOB_ID, LABEL_USER_HASH, LABEL_WARM, user_hash},
    pods::delete_pod,
    spec::{WARM_MESSAGE_BYTES, prefer_nodes, warm_pod_for},
};
use crate::{
    backend::BackendError,
    energy::{Energy, policy::node_weights},
};

/// How long a warm Pod waits for a job before it is replaced.
pub const WARM_LIFETIME: Duration = Duration::from_secs(600);
/// How long before the end of its lifetime an idle warm Pod is replaced.
const REPLACE_BEFORE: Duration = Duration::from_secs(60);
/// How long a new warm Pod may take to start and connect before one that nobody answers for
/// is given up.
const STARTUP_GRACE: Duration = Duration::from_secs(60);
/// How long the executor of a claimed Pod has to answer the hand-over.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the pool waits before it tries again to make a Pod the cluster refused.
const RETRY_CREATE: Duration = Duration::from_secs(5);
/// How often the pool looks for idle Pods near the end of their lifetime.
const LOOK_EVERY: Duration = Duration::from_secs(30);
/// How long after a Pod was taken the pool makes its replacement: starting a Pod (the
/// scheduler, the kubelet, the container runtime, the new executor connecting) takes a node's
/// CPU for a moment, which the job just handed over needs for its compiler (measured on the
/// local cluster: a refill at once made the compile step ≈ 40 ms slower).
const REFILL_AFTER_TAKE: Duration = Duration::from_secs(1);

/// The warm Pods of one middleware.
pub(super) struct WarmPool {
    pods: Api<Pod>,
    config: Arc<KubeBackendConfig>,
    /// Once attached: the job records a hand-over is written into, and the NATS connection job
    /// messages are handed over on.
    nats: OnceLock<(Topology, async_nats::Client)>,
    /// Idle Pods by language, oldest first.
    idle: Mutex<HashMap<&'static str, VecDeque<WarmPod>>>,
    /// Wakes the refill task after a Pod was taken.
    taken: Notify,
    /// The middleware's view of the nodes' power, once given: new Pods prefer the greenest.
    energy: Arc<OnceLock<Arc<Energy>>>,
}

#[derive(Debug)]
struct WarmPod {
    name: String,
    created: Instant,
}

/// What handing a job to one warm Pod came to.
enum HandOver {
    Taken,
    /// Nobody answers on its subject: not started yet, or gone.
    NoExecutor,
    /// The job's record would not take it as the job's executor (the job has one, or ended, or
    /// NATS did not answer): the Pod stays idle.
    NotWanted,
    /// Its executor did not take the job: deleted.
    Failed,
}

impl WarmPool {
    pub(super) fn new(
        pods: Api<Pod>,
        config: Arc<KubeBackendConfig>,
        energy: Arc<OnceLock<Arc<Energy>>>,
    ) -> Self {
        Self {
            energy,
            pods,
            config,
            nats: OnceLock::new(),
            idle: Mutex::new(HashMap::new()),
            taken: Notify::new(),
        }
    }

    /// Starts keeping the pool full, handing jobs over through `topology`; stopped when the
    /// returned task is aborted.
    pub(super) fn start(self: &Arc<Self>, topology: Topology) -> tokio::task::AbortHandle {
        let client = topology.js.client();
        let _ = self.nats.set((topology, client));
        let pool = self.clone();
        tokio::spawn(async move { pool.keep_full().await }).abort_handle()
    }

    /// Hands `job` to a warm Pod of its language, its inputs inline (over NATS, never in a Pod's
    /// spec): the Pod's name, or `None` when no warm Pod took it (the job then gets a Pod of its
    /// own).
    pub(super) async fn hand_over(&self, job: &JobMessage) -> Option<String> {
        let lang = language(&job.language)?;
        if job.limits != lang.default_limits {
            return None;
        }
        let nats = self.nats.get()?;
        let json = serde_json::to_string(job).ok()?;
        if json.len() > WARM_MESSAGE_BYTES {
            return None;
        }
        let job_json = json.as_str();
        let mut not_ready = Vec::new();
        let mut taker = None;
        while let Some(pod) = self.take(lang.name) {
            match self.try_hand_over(nats, &pod, job, job_json).await {
                HandOver::Taken => {
                    taker = Some(pod.name);
                    break;
                }
                HandOver::NotWanted => {
                    not_ready.push(pod);
                    break;
                }
                HandOver::NoExecutor if pod.created.elapsed() < STARTUP_GRACE => {
                    not_ready.push(pod)
                }
                HandOver::NoExecutor => self.discard(&pod.name).await,
                HandOver::Failed => break,
            }
        }
        self.put_back(lang.name, not_ready);
        self.taken.notify_one();
        taker
    }

    /// The warm Pod that took `job` (labelled with it), if any.
    pub(super) async fn find(&self, job: &JobMessage) -> Result<Option<String>, BackendError> {
        let selector = format!("{LABEL_WARM}=true,{LABEL_JOB_ID}={}", job.id);
        let claimed = self
            .pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| BackendError::kube("list claimed warm Pods", e))?;
        Ok(claimed.items.into_iter().find_map(|p| p.metadata.name))
    }

    fn take(&self, lang: &str) -> Option<WarmPod> {
        let mut idle = self.idle.lock().expect("not poisoned");
        idle.get_mut(lang)?.pop_front()
    }

    fn put_back(&self, lang: &'static str, pods: Vec<WarmPod>) {
        let mut idle = self.idle.lock().expect("not poisoned");
        let queue = idle.entry(lang).or_default();
        for pod in pods.into_iter().rev() {
            queue.push_front(pod);
        }
    }

    /// Writes `pod` into `job`'s record as its executor, then hands the job message to it.
    async fn try_hand_over(
        &self,
        (topology, client): &(Topology, async_nats::Client),
        pod: &WarmPod,
        job: &JobMessage,
        job_json: &str,
    ) -> HandOver {
        let subject = names::warm_subject(&pod.name);
        let began = Instant::now();
        // Asked first, with an empty request, whether its executor listens: a Pod not started
        // yet is neither recorded nor given anything.
        match client.request(subject.clone(), "".into()).await {
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                return HandOver::NoExecutor;
            }
            _ => {}
        }
        let probed = began.elapsed();
        let key = JobKey::new(&job.user, &job.id);
        let handle = self.config.pod_handle(&pod.name);
        match record_executor(topology, &key, &handle).await {
            Ok(true) => {}
            Ok(false) => return HandOver::NotWanted,
            Err(e) => {
                tracing::warn!(pod = pod.name, error = %e, "cannot record a warm Pod as the job's executor");
                return HandOver::NotWanted;
            }
        }
        let recorded = began.elapsed();
        let request = client.request(subject, job_json.to_owned().into());
        match tokio::time::timeout(HANDOVER_TIMEOUT, request).await {
            Ok(Ok(_)) => {
                // Where a hand-over's time goes (`RUST_LOG=cola_middleware::kube::warm=debug`).
                tracing::debug!(
                    pod = pod.name,
                    probed_us = probed.as_micros() as u64,
                    recorded_us = recorded.as_micros() as u64,
                    taken_us = began.elapsed().as_micros() as u64,
                    "a warm Pod took its job"
                );
                self.label_in_background(&pod.name, job);
                HandOver::Taken
            }
            answer => {
                let why = match answer {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no answer".to_owned(),
                };
                tracing::warn!(
                    pod = pod.name,
                    why,
                    "a warm Pod's executor did not take its job"
                );
                self.discard(&pod.name).await;
                forget_executor(topology, &key, &handle).await;
                HandOver::Failed
            }
        }
    }

    /// Puts `job`'s labels on the warm Pod `name` that took it, as a Pod made for the job has
    /// them, without waiting for the API server.
    fn label_in_background(&self, name: &str, job: &JobMessage) {
        let patch = serde_json::json!({"metadata": {
            "labels": {LABEL_JOB_ID: job.id.to_string(), LABEL_USER_HASH: user_hash(&job.user)},
            "annotations": {ANNOTATION_JOB_KEY: JobKey::new(&job.user, &job.id).to_string()},
        }});
        let (pods, name) = (self.pods.clone(), name.to_owned());
        tokio::spawn(async move {
            if let Err(e) = pods
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(pod = name, error = %e, "cannot label a warm Pod with its job");
            }
        });
    }

    async fn discard(&self, name: &str) {
        if let Err(e) = delete_pod(&self.pods, name).await {
            tracing::warn!(pod = name, error = %e, "cannot delete a warm Pod");
        }
    }

    /// Makes Pods until each language has its share, replaces idle ones near the end of their
    /// lifetime, and does it again [`REFILL_AFTER_TAKE`] after a Pod is taken (or every
    /// [`LOOK_EVERY`]).
    async fn keep_full(&self) {
        loop {
            self.replace_old().await;
            let refused = self.fill().await;
            let wait = if refused { RETRY_CREATE } else { LOOK_EVERY };
            if tokio::time::timeout(wait, self.taken.notified())
                .await
                .is_ok()
            {
                tokio::time::sleep(REFILL_AFTER_TAKE).await;
            }
        }
    }

    /// Makes the Pods missing from the pool; `true` when the cluster refused one.
    async fn fill(&self) -> bool {
        for lang in warm_languages() {
            while self.idle_count(lang.name) < self.config.warm_pods {
                match self.create(lang).await {
                    Ok(pod) => {
                        let mut idle = self.idle.lock().expect("not poisoned");
                        idle.entry(lang.name).or_default().push_back(pod);
                    }
                    Err(e) => {
                        tracing::warn!(language = lang.name, error = %e, "cannot start a warm Pod");
                        return true;
                    }
                }
            }
        }
        false
    }

    /// How many Pods wait for a job, all languages together.
    pub(super) fn idle(&self) -> usize {
        let idle = self.idle.lock().expect("not poisoned");
        idle.values().map(VecDeque::len).sum()
    }

    fn idle_count(&self, lang: &str) -> usize {
        let idle = self.idle.lock().expect("not poisoned");
        idle.get(lang).map_or(0, VecDeque::len)
    }

    async fn create(&self, lang: &LanguageDef) -> Result<WarmPod, BackendError> {
        let name = format!(
            "cola-job-warm-{}-{}",
            lang.name.replace('_', "-"),
            // The random end of a UUIDv7.
            &uuid::Uuid::now_v7().simple().to_string()[20..]
        );
        let subject = names::warm_subject(&name);
        let mut pod = warm_pod_for(&self.config, lang, &name, subject, WARM_LIFETIME);
        prefer_nodes(&mut pod, &node_weights(&energy_shares(&self.energy)));
        self.pods
            .create(&PostParams::default(), &pod)
            .await
            .map_err(|e| BackendError::kube(format!("create warm Pod {name}"), e))?;
        tracing::debug!(pod = name, "warm Pod created");
        Ok(WarmPod {
            name,
            created: Instant::now(),
        })
    }

    /// Deletes idle Pods near the end of their lifetime (the next [`WarmPool::fill`] replaces
    /// them).
    async fn replace_old(&self) {
        let old: Vec<String> = {
            let mut idle = self.idle.lock().expect("not poisoned");
            let mut old = Vec::new();
            for queue in idle.values_mut() {
                while queue
                    .front()
                    .is_some_and(|p| p.created.elapsed() + REPLACE_BEFORE >= WARM_LIFETIME)
                {
                    old.extend(queue.pop_front().map(|p| p.name));
                }
            }
            old
        };
        for name in old {
            self.discard(&name).await;
        }
    }

    /// Deletes every idle Pod (the middleware stops).
    pub(super) async fn drain(&self) {
        let names: Vec<String> = {
            let mut idle = self.idle.lock().expect("not poisoned");
            idle.drain().flat_map(|(_, q)| q).map(|p| p.name).collect()
        };
        for name in names {
            self.discard(&name).await;
        }
    }
}

/// Writes `handle` into the record under `key` as the job's executor, if the job runs without
/// one: whether it did.
async fn record_executor(
    topology: &Topology,
    key: &JobKey,
    handle: &ExecutorHandle,
) -> Result<bool, cola_wire::nats::NatsError> {
    let written = topology
        .jobs
        .transition(key, |r| {
            r.status == Status::Running && r.executor.is_none() && {
                r.executor = Some(handle.clone());
                true
            }
        })
        .await?;
    Ok(matches!(written, Transition::Changed(..)))
}

/// Takes `handle` out of the record under `key` again (its Pod did not take the job), so that
/// the job's own Pod can be recorded.
async fn forget_executor(topology: &Topology, key: &JobKey, handle: &ExecutorHandle) {
    let forgotten = topology
        .jobs
        .transition(key, |r| {
            r.executor.as_ref() == Some(handle) && {
                r.executor = None;
                true
            }
        })
        .await;
    if let Err(e) = forgotten {
        tracing::error!(executor = %handle.id, error = %e, "cannot take a deleted warm Pod out of its job's record");
    }
}

/// The languages that get warm Pods: those that run in an executor.
fn warm_languages() -> impl Iterator<Item = &'static LanguageDef> {
    cola_wire::languages()
        .iter()
        .filter(|l| l.runtime == cola_wire::languages::Runtime::Program)
}
