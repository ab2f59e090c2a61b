//! The Docker backend: one container per job, through the Docker Engine API (bollard).
//!
//! The container is the sandbox. It is created from the language's executor image
//! (`<prefix><image>:<tag>`, the image named by the language table) with:
//! - no network at all (`network_mode: none`), no capabilities (`cap_drop: ALL`),
//!   `no-new-privileges`, not privileged, no Docker socket, a non-root user;
//! - a read-only root filesystem, and size-capped tmpfs mounts at `/work` (the job's work area,
//!   executable: compiled programs run from it) and `/tmp`, owned by that user;
//! - a memory limit with no swap (tmpfs pages count against it), a CPU quota (`nano_cpus`) and a
//!   pids limit; the memory limit is the compile step's at first, and is lowered to the run
//!   step's own before user code runs (see below);
//! - the json-file log driver with a size cap, set explicitly: the outcome comes back through it.
//!
//! Inputs go in and the outcome comes out through the Engine API, never through a network the
//! user's code could reach: the middleware attaches to the created container's standard input,
//! starts it and writes the job message (every input inline; the middleware fetched an input
//! object beforehand) then closes it; the executor in the container (`cola executor --sandbox
//! container --stdio`, PID 1) runs the job and writes one result frame
//! ([`cola_wire::frame`]) to its standard output. Once the container has exited the middleware
//! reads the frame back from the container's log (which survives a middleware restart), checks
//! it strictly, stores the zip and ends the record by compare-and-set, exactly as an executor
//! that talks to NATS does. User code can at most forge its own job's report.
//!
//! A compiled language's compiler may need more memory than the program is allowed: its
//! container starts with the compile step's limit, and its executor is told the run step's
//! (`--run-memory-limit`). Once the compile step is done, and before anything of the user runs,
//! the executor asks for that limit on its standard output
//! ([`cola_wire::frame::run_memory_request`]); the middleware, which follows the container's
//! log from the start ([`Backend::wait`]), lowers the container's limit with the Engine API,
//! and the executor starts the run step once its cgroup shows the new limit (it gives up after
//! a while and fails the job `internal_error` rather than run the program with the compiler's
//! limit). A middleware that adopts the container after a restart answers the request the same
//! way. The run step's limit is the program's `memory_mb` and the executor's own memory, with
//! no room for the tmpfs mounts: files the program writes count against its limit.
//!
//! Outcomes the container itself shows: `State.OOMKilled` makes a failed job `memory_limit`
//! (and an executor that was killed with it `memory_limit` too); a daemon error, or a result
//! frame that is missing, malformed or too large, is an `internal_error` whose message (in the
//! record, not in the user's output) says what the daemon or the container said.
//!
//! Containers are named `cola-<job-id>` and labelled `cola.managed=true`, `cola.scope` (the
//! deployment: several may share a daemon), `cola.job-id`, `cola.user` and `cola.language`. A
//! redelivered job whose record names its container adopts it (watches it, or reads the outcome
//! it left in its log) and never starts it twice; a container whose launch was never recorded
//! is replaced, since its job message may not have reached it whole. The sweep at start-up
//! ([`DockerBackend::sweep`]) removes containers whose jobs are terminal or unknown, and every
//! job's container is removed with its anonymous volumes however the job ends.
//!
//! Its parts: `config.rs` (the settings and the labels), `spec.rs` (a job's container: its
//! limits, mounts and command), `engine.rs` (the Engine API calls on one container, the run
//! step's memory request among them), `outcome.rs` (what a container's end means for its job),
//! `sweep.rs` (the containers of ended jobs removed at start-up).

mod config;
mod engine;
mod outcome;
mod spec;
mod sweep;

use std::{
    collections::{BTreeMap, HashMap},
    sync::OnceLock,
    time::Duration,
};

use async_trait::async_trait;
use bollard::{
    Docker, errors::Error as DockerError, query_parameters::KillContainerOptionsBuilder,
};
use cola_wire::{
    ExecutorHandle, JobMessage, frame, frame::ExecutorReport, language, languages, names,
    nats::Topology,
};

pub use config::{
    DockerConfig, LABEL_JOB_ID, LABEL_LANGUAGE, LABEL_MANAGED, LABEL_SCOPE, LABEL_USER,
};
use outcome::{out_of_memory, with_oom};
pub use spec::container_name;

use crate::backend::{Backend, BackendError, ExecutorExit};

const NAME: &str = "docker";
/// Requests that wait for a container to exit may take as long as a job does.
const WAIT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Runs each job's executor in a container of its own.
pub struct DockerBackend {
    docker: Docker,
    /// The same client, for requests that last as long as a container runs.
    waiter: Docker,
    config: DockerConfig,
    /// The daemon's name, recorded in handles.
    node: String,
    /// The value of [`LABEL_SCOPE`], known once [`Backend::attach`] has run.
    scope: OnceLock<String>,
}

impl DockerBackend {
    /// Connects to the daemon (negotiating the API version) and checks the settings.
    pub async fn connect(config: DockerConfig) -> Result<Self, BackendError> {
        config.validate()?;
        let docker = match &config.host {
            Some(host) => Docker::connect_with_host(host),
            None => Docker::connect_with_defaults(),
        }
        .map_err(|e| daemon("connecting to the Docker daemon", e))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| daemon("the Docker daemon does not answer", e))?;
        let info = docker
            .info()
            .await
            .map_err(|e| daemon("the Docker daemon does not answer", e))?;
        Ok(Self {
            waiter: docker.clone().with_timeout(WAIT_TIMEOUT),
            docker,
            config,
            node: info.name.unwrap_or_else(|| "docker".into()),
            scope: OnceLock::new(),
        })
    }

    /// The Docker client, for tools and tests.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// The labels every container of this deployment carries.
    fn labels(&self) -> Result<HashMap<String, String>, BackendError> {
        let scope = self.scope.get().ok_or_else(|| BackendError::NotAttached {
            backend: NAME,
            message: "the backend is not attached to NATS yet".into(),
        })?;
        Ok(HashMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_SCOPE.to_owned(), scope.clone()),
        ]))
    }

    fn handle(&self, name: String) -> ExecutorHandle {
        ExecutorHandle {
            backend: NAME.into(),
            node: self.node.clone(),
            id: name,
        }
    }

    /// The container of `handle`, if the handle is one of this backend's.
    fn container<'h>(&self, handle: &'h ExecutorHandle) -> Option<&'h str> {
        (handle.backend == NAME && handle.node == self.node && handle.id.starts_with("cola-"))
            .then_some(handle.id.as_str())
    }
}

#[async_trait]
impl Backend for DockerBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn launch(&self, job: &JobMessage) -> Result<ExecutorHandle, BackendError> {
        let lang = language(&job.language)
            .filter(|l| !l.image.is_empty())
            .ok_or_else(|| BackendError::Job {
                backend: NAME,
                message: format!("language {} has no executor image", job.language),
            })?;
        let name = container_name(job);
        let body =
            serde_json::to_vec(job).map_err(|e| BackendError::json(NAME, "job message", e))?;
        if !self.create(job, lang, body.len()).await? {
            // Left by a launch that never completed (its middleware died before recording it):
            // whether the job message reached it whole is unknown, so it starts afresh. (A
            // recorded container is adopted through its handle instead.)
            tracing::info!(job_id = %job.id, container = %name, "replacing the container of an unfinished launch");
            self.remove(&name).await?;
            if !self.create(job, lang, body.len()).await? {
                return Err(BackendError::Conflict {
                    backend: NAME,
                    message: format!("container {name} exists and cannot be replaced"),
                });
            }
        }
        if let Err(e) = self.start_with_input(&name, &body).await {
            if let Err(removal) = self.remove(&name).await {
                tracing::warn!(container = %name, error = %removal, "cannot remove a container that did not start");
            }
            return Err(e);
        }
        Ok(self.handle(name))
    }

    async fn is_alive(&self, handle: &ExecutorHandle) -> Result<bool, BackendError> {
        let Some(name) = self.container(handle) else {
            return Ok(false);
        };
        Ok(self
            .inspect(name)
            .await?
            .and_then(|c| c.state)
            .and_then(|s| s.running)
            .unwrap_or(false))
    }

    async fn wait(&self, handle: &ExecutorHandle) -> Result<ExecutorExit, BackendError> {
        let name = self
            .container(handle)
            .ok_or_else(|| BackendError::ForeignHandle {
                backend: NAME,
                message: format!("{} is not a container of this daemon", handle.id),
            })?;
        let (code, ()) = tokio::join!(self.wait_exit(name), self.answer_memory_request(name));
        let code = code?;
        let oom = self
            .inspect(name)
            .await?
            .and_then(|c| c.state)
            .and_then(|s| s.oom_killed)
            .unwrap_or(false);
        Ok(ExecutorExit {
            description: format!(
                "container exited with code {code}{}",
                if oom { ", out of memory" } else { "" }
            ),
        })
    }

    async fn kill(&self, handle: &ExecutorHandle) -> Result<(), BackendError> {
        let Some(name) = self.container(handle) else {
            return Ok(());
        };
        let options = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
        match self.docker.kill_container(name, Some(options)).await {
            // 404: gone; 409: not running.
            Err(e) if !matches!(status_of(&e), Some(404 | 409)) => {
                Err(daemon("kill the container", e))
            }
            _ => Ok(()),
        }
    }

    async fn cleanup(&self, handle: &ExecutorHandle) -> Result<(), BackendError> {
        match self.container(handle) {
            Some(name) => self.remove(name).await,
            None => Ok(()),
        }
    }

    async fn versions(&self) -> BTreeMap<String, String> {
        let programs = languages()
            .iter()
            .filter(|l| !l.image.is_empty() && !l.is_numeric());
        let found = futures::future::join_all(programs.map(|lang| async move {
            match self.image_version(lang).await {
                Ok(version) => version.map(|v| (lang.name.to_owned(), v)),
                Err(e) => {
                    tracing::warn!(language = lang.name, image = %self.config.image(lang), error = %e, "no toolchain version from the executor image");
                    None
                }
            }
        }))
        .await;
        found.into_iter().flatten().collect()
    }

    fn needs_inline_inputs(&self) -> bool {
        true
    }

    async fn outcome(
        &self,
        job: &JobMessage,
        handle: &ExecutorHandle,
    ) -> Result<Option<ExecutorReport>, BackendError> {
        let Some(name) = self.container(handle) else {
            return Ok(None);
        };
        let state = self
            .inspect(name)
            .await?
            .and_then(|c| c.state)
            .ok_or_else(|| executor(format!("container {name} is gone: its outcome is lost")))?;
        let oom_killed = state.oom_killed.unwrap_or(false);
        let exit_code = state.exit_code.unwrap_or(-1);
        let longest = frame::max_frame_bytes(frame::MAX_ZIP_BYTES)
            + frame::run_memory_request(u64::MAX).len() as u64;
        let frame = match self.stdout(name, longest).await {
            Ok(bytes) => {
                let (_, frame) = frame::split_run_memory_request(&bytes);
                frame::decode(frame, frame::MAX_ZIP_BYTES).map_err(|e| e.to_string())
            }
            Err(problem) => Err(problem),
        };
        match frame {
            Ok(outcome) => Ok(Some(with_oom(outcome, oom_killed))),
            Err(_) if oom_killed => Ok(Some(ExecutorReport {
                report: out_of_memory(&job.limits),
                zip: None,
            })),
            Err(problem) => {
                let stderr = self.stderr_tail(name).await;
                Err(executor(format!(
                    "container exited with code {exit_code} without a valid result: {problem}{}",
                    if stderr.is_empty() {
                        String::new()
                    } else {
                        format!("; executor log: {stderr}")
                    }
                )))
            }
        }
    }

    /// Sweeps away the containers of ended or unknown jobs (see [`DockerBackend::sweep`]).
    async fn attach(&self, topology: &Topology) -> Result<(), BackendError> {
        let stream = topology
            .js
            .get_stream(names::STREAM)
            .await
            .map_err(|e| BackendError::nats(NAME, "open the job stream", e))?;
        let scope = format!("{:x}", stream.cached_info().created.unix_timestamp_nanos());
        if self.scope.get_or_init(|| scope.clone()) != &scope {
            return Err(BackendError::Conflict {
                backend: NAME,
                message: "the backend is attached to another deployment already".into(),
            });
        }
        if let Err(e) = self.sweep(&topology.jobs).await {
            tracing::warn!(error = %e, "cannot sweep the containers of ended jobs");
        }
        Ok(())
    }
}

fn uuid_suffix() -> String {
    cola_wire::JobId::new().to_string()
}

fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn daemon(step: &str, e: DockerError) -> BackendError {
    BackendError::docker(step, e)
}

fn config_error(message: String) -> BackendError {
    BackendError::Config {
        backend: NAME,
        message,
    }
}

/// An executor (or its container) that did not do what an executor does.
fn executor(message: String) -> BackendError {
    BackendError::Executor {
        backend: NAME,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_daemon_out_of_reach_is_named_with_the_client_s_error_as_source() {
        let dir = tempfile::tempdir().unwrap();
        let config = DockerConfig {
            host: Some(format!("unix://{}/docker.sock", dir.path().display())),
            ..DockerConfig::default()
        };
        let Err(e) = DockerBackend::connect(config).await else {
            panic!("connected to a socket that does not exist");
        };
        assert_eq!(e.backend(), "docker");
        assert!(
            e.to_string()
                .starts_with("docker backend: connecting to the Docker daemon: "),
            "{e}"
        );
        let source = std::error::Error::source(&e).expect("a source");
        assert!(source.downcast_ref::<DockerError>().is_some(), "{source:?}");
    }
}
