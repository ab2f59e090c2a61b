//! The backend trait: how the middleware starts, finds, watches and stops executors.
//! The process backend implements it now; Docker and Kubernetes implement the same trait.

use std::collections::BTreeMap;

use async_trait::async_trait;
use cola_wire::{ExecutorHandle, JobMessage};

/// A failure of a backend, with the backend's own words (kept in the job record for operators).
#[derive(Debug, thiserror::Error)]
#[error("{backend} backend: {message}")]
pub struct BackendError {
    pub backend: &'static str,
    pub message: String,
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

    /// Starts an executor for `job` and returns how to find it again. Must be idempotent for a
    /// job id: launching a job whose executor exists returns (adopts) that executor.
    async fn launch(&self, job: &JobMessage) -> Result<ExecutorHandle, BackendError>;

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
}
