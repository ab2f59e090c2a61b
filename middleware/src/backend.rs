//! The backend trait: how the middleware starts, finds, watches and stops executors: local
//! processes, Docker containers or Kubernetes Pods.
//!
//! Most executors report to NATS themselves (store the zip, end the record). An executor that
//! cannot (a Docker container without network) hands its outcome back through its backend:
//! such a backend says so with [`Backend::needs_inline_inputs`] and returns the outcome from
//! [`Backend::outcome`], and the middleware reports it exactly as an executor would.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use cola_wire::{
    ExecutorHandle, Isolation, JobMessage, Provision, frame::ExecutorReport, nats::Topology,
};

/// A failure of a backend, in the backend's own words (kept in the job record for operators).
/// Every message starts with the backend's name; one caused by another error names the step
/// that failed and quotes the cause, which it keeps as its
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A setting the backend cannot work with, found before the first job.
    #[error("{backend} backend: {message}")]
    Config {
        backend: &'static str,
        message: String,
    },
    /// Asked for what needs [`Backend::attach`] first (the job records, the object store).
    #[error("{backend} backend: {message}")]
    NotAttached {
        backend: &'static str,
        message: String,
    },
    /// A job this backend cannot run as it is (no executor image, a message too large).
    #[error("{backend} backend: {message}")]
    Job {
        backend: &'static str,
        message: String,
    },
    /// A handle that names no executor of this backend.
    #[error("{backend} backend: {message}")]
    ForeignHandle {
        backend: &'static str,
        message: String,
    },
    /// Something of the same name exists and cannot be adopted or replaced.
    #[error("{backend} backend: {message}")]
    Conflict {
        backend: &'static str,
        message: String,
    },
    /// The executor did not do what an executor does (exited at once, left no valid result,
    /// asked for an impossible limit), or what it left is gone.
    #[error("{backend} backend: {message}")]
    Executor {
        backend: &'static str,
        message: String,
    },
    /// A file, directory or process operation failed.
    #[error("{backend} backend: {step}: {source}")]
    Io {
        backend: &'static str,
        step: String,
        #[source]
        source: std::io::Error,
    },
    /// JSON that could not be written or read (a job message, an executor's answer).
    #[error("{backend} backend: {step}: {source}")]
    Json {
        backend: &'static str,
        step: String,
        #[source]
        source: serde_json::Error,
    },
    /// NATS failed: a job record, the object store or the stream.
    #[error("{backend} backend: {step}: {source}")]
    Nats {
        backend: &'static str,
        step: String,
        #[source]
        source: async_nats::Error,
    },
    /// The Kubernetes API failed or refused, in the API server's words when it gave any.
    #[cfg(feature = "kubernetes")]
    #[error("kubernetes backend: {step}: {}", kube_words(.source))]
    Kube {
        step: String,
        #[source]
        source: ::kube::Error,
    },
    /// The Docker daemon failed or refused.
    #[cfg(feature = "docker")]
    #[error("docker backend: {step}: {source}")]
    Docker {
        step: String,
        #[source]
        source: bollard::errors::Error,
    },
}

impl BackendError {
    /// The backend that failed: `process`, `docker` or `kubernetes`.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Config { backend, .. }
            | Self::NotAttached { backend, .. }
            | Self::Job { backend, .. }
            | Self::ForeignHandle { backend, .. }
            | Self::Conflict { backend, .. }
            | Self::Executor { backend, .. }
            | Self::Io { backend, .. }
            | Self::Json { backend, .. }
            | Self::Nats { backend, .. } => backend,
            #[cfg(feature = "kubernetes")]
            Self::Kube { .. } => "kubernetes",
            #[cfg(feature = "docker")]
            Self::Docker { .. } => "docker",
        }
    }

    /// Whether the backend refused for lack of room that may come back: a cluster's resource
    /// quota used up (`403` "exceeded quota") or the API server asking to slow down (`429`).
    /// The job can be tried again later; it is not at fault.
    pub fn is_no_room_now(&self) -> bool {
        #[cfg(feature = "kubernetes")]
        if let Self::Kube {
            source: ::kube::Error::Api(status),
            ..
        } = self
        {
            return status.code == 429
                || (status.code == 403 && status.message.contains("exceeded quota"));
        }
        false
    }

    /// A failed file, directory or process operation: `step` says which.
    pub fn io(backend: &'static str, step: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            backend,
            step: step.into(),
            source,
        }
    }

    /// JSON that `step` could not write or read.
    pub fn json(backend: &'static str, step: impl Into<String>, source: serde_json::Error) -> Self {
        Self::Json {
            backend,
            step: step.into(),
            source,
        }
    }

    /// A NATS request of `step` that failed.
    pub fn nats(
        backend: &'static str,
        step: impl Into<String>,
        source: impl Into<async_nats::Error>,
    ) -> Self {
        Self::Nats {
            backend,
            step: step.into(),
            source: source.into(),
        }
    }

    /// A Kubernetes API request of `step` that failed or was refused.
    #[cfg(feature = "kubernetes")]
    pub fn kube(step: impl Into<String>, source: ::kube::Error) -> Self {
        Self::Kube {
            step: step.into(),
            source,
        }
    }

    /// A Docker daemon request of `step` that failed or was refused.
    #[cfg(feature = "docker")]
    pub fn docker(step: impl Into<String>, source: bollard::errors::Error) -> Self {
        Self::Docker {
            step: step.into(),
            source,
        }
    }
}

/// A Kubernetes API failure as the API server put it (`403 Forbidden (pods is forbidden: …)`),
/// or as the client saw it.
#[cfg(feature = "kubernetes")]
fn kube_words(e: &::kube::Error) -> String {
    match e {
        ::kube::Error::Api(s) => format!(
            "{} {} ({})",
            s.code,
            if s.reason.is_empty() {
                "Error"
            } else {
                &s.reason
            },
            s.message
        ),
        e => e.to_string(),
    }
}

/// How an executor ended, as far as the backend can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorExit {
    /// A human-readable description, e.g. `exit status: 0` or `killed by signal 9`.
    pub description: String,
}

/// Runs executors somewhere: local sandboxed processes, containers or Pods.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// `process`, `docker` or `kubernetes`: recorded in the executor handle.
    fn name(&self) -> &'static str;

    /// Called once the middleware has opened the stream and buckets, before it takes jobs: a
    /// backend that records what only it can see (the Kubernetes backend: OOM kills, deadlines,
    /// Pods that never start) keeps `topology`, and reconciles what an earlier run left behind.
    async fn attach(&self, topology: &Topology) -> Result<(), BackendError> {
        let _ = topology;
        Ok(())
    }

    /// Called once the middleware stops taking jobs and its running jobs are done or left: a
    /// backend that keeps executors started ahead of their jobs removes them.
    async fn detach(&self) {}

    /// Starts an executor for `job` and returns how to find it again. Must be idempotent for a
    /// job id: launching a job whose executor exists returns (adopts) that executor.
    /// Gives the backend the middleware's view of the nodes' power, for a backend that places
    /// executors itself (Kubernetes: each Pod prefers the greenest nodes). The default ignores
    /// it: executors run beside their middleware, which holds back its pulls instead.
    fn place_with(&self, _energy: Arc<crate::energy::Energy>) {}

    /// Whether executors run on the middleware's own node (a process or a container beside
    /// it), so that a job's record names that node; not so for Pods, placed by their cluster.
    fn runs_executors_here(&self) -> bool {
        true
    }

    async fn launch(&self, job: &JobMessage) -> Result<ExecutorHandle, BackendError>;

    /// The executor launched for `job` by a middleware that stopped before recording it, if
    /// this backend can find one: alive (to adopt), or ended (its handle still names what to
    /// clean up). `None`, the default, when there is none, or when `launch` adopts a job's
    /// existing executor by itself (a container or Pod named after the job): launching again
    /// is then safe.
    async fn find(&self, job: &JobMessage) -> Result<Option<ExecutorHandle>, BackendError> {
        let _ = job;
        Ok(None)
    }

    /// Whether the executor behind `handle` is still alive (used to adopt after a redelivery).
    async fn is_alive(&self, handle: &ExecutorHandle) -> Result<bool, BackendError>;

    /// Resolves when the executor has ended, however it ended.
    async fn wait(&self, handle: &ExecutorHandle) -> Result<ExecutorExit, BackendError>;

    /// Kills the executor and everything it started. Killing one that is gone is not an error.
    async fn kill(&self, handle: &ExecutorHandle) -> Result<(), BackendError>;

    /// Removes what the executor left behind (directories, containers, Pods).
    async fn cleanup(&self, handle: &ExecutorHandle) -> Result<(), BackendError>;

    /// The version of each language's toolchain, as this backend runs it.
    async fn versions(&self) -> BTreeMap<String, String>;

    /// How this backend isolates jobs from each other beyond the sandbox itself. By default,
    /// a container per job: its cgroup and its size-capped work area, both set by the backend.
    async fn isolation(&self) -> Isolation {
        Isolation {
            cgroup: Provision::from_result(Ok(format!(
                "the {} backend's container per job (memory, processes and CPU)",
                self.name()
            ))),
            disk: Provision::from_result(Ok(format!(
                "the {} backend's size-capped work area per job",
                self.name()
            ))),
        }
    }

    /// How long an executor may take to start (be scheduled and get its image) before its
    /// job's own time counts: the middleware's deadline allows for it, so a job that waited for
    /// room on a node is not ended `time_limit` for the wait. A start that takes longer is the
    /// backend's to end (the Kubernetes backend's pending timeout).
    fn start_allowance(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// How many executors started ahead of their jobs wait for one now (a metric); none by
    /// default.
    fn executors_waiting(&self) -> usize {
        0
    }

    /// Whether this backend's executors need every input inline in the job message (they
    /// cannot reach the object store): the middleware then fetches an input object itself and
    /// launches the job with its inputs inline.
    fn needs_inline_inputs(&self) -> bool {
        false
    }

    /// What the ended executor behind `handle` reported, for a backend whose executors cannot
    /// report to NATS themselves: the middleware then stores the zip and ends the record with
    /// it. `Ok(None)`, the default, when executors report on their own. An executor that ended
    /// without a valid outcome is an `Err` saying what happened. Called before
    /// [`cleanup`](Self::cleanup), which may destroy the outcome.
    async fn outcome(
        &self,
        _job: &JobMessage,
        _handle: &ExecutorHandle,
    ) -> Result<Option<ExecutorReport>, BackendError> {
        Ok(None)
    }
}
