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

use std::{
    collections::{BTreeMap, HashMap},
    sync::OnceLock,
    time::Duration,
};

use async_trait::async_trait;
use bollard::{
    Docker,
    container::LogOutput,
    errors::Error as DockerError,
    models::ContainerUpdateBody,
    models::{ContainerCreateBody, ContainerInspectResponse, HostConfig, HostConfigLogConfig},
    query_parameters::{
        AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
        ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
        WaitContainerOptionsBuilder,
    },
};
use cola_wire::{
    ExecutorHandle, JobKey, JobMessage, LanguageDef, Limits, Reason, RunReport, Status, Timings,
    frame::{self, ExecutorReport},
    language, languages, names,
    nats::{JobStore, Topology},
};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::backend::{Backend, BackendError, ExecutorExit};

const NAME: &str = "docker";
/// Where the executor works in the container (a tmpfs of the backend's).
const WORK_DIR: &str = "/work";
/// Memory for the executor itself on top of what the job's steps may use, beside its copies of
/// the job's inputs ([`INPUT_COPIES`]). (It writes the output zip's frame as it encodes it, and
/// the zip takes the place of the files it holds.)
const EXECUTOR_MEMORY_MB: u64 = 32;
/// How many times the job message's size the executor keeps while the job runs: its inputs in
/// memory, the copy its blocking worker gets, and the files written to the tmpfs work area.
const INPUT_COPIES: u64 = 3;
/// Processes and threads for the executor and the toolchains' helpers on top of the job's.
const EXECUTOR_TASKS: u64 = 64;
/// Requests that wait for a container to exit may take as long as a job does.
const WAIT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Container labels.
pub const LABEL_MANAGED: &str = "cola.managed";
pub const LABEL_JOB_ID: &str = "cola.job-id";
pub const LABEL_USER: &str = "cola.user";
pub const LABEL_LANGUAGE: &str = "cola.language";
/// The deployment a container belongs to (several may share a daemon): the creation time of its
/// job stream, which no other deployment's stream has.
pub const LABEL_SCOPE: &str = "cola.scope";

/// How the backend reaches Docker and sets up containers.
#[derive(Debug, Clone, PartialEq)]
pub struct DockerConfig {
    /// The daemon (`unix:///var/run/docker.sock`, `tcp://host:2375`); `None`: `DOCKER_HOST`, or
    /// the default socket.
    pub host: Option<String>,
    /// Put before every executor image's name (e.g. a registry: `registry.example/`).
    pub image_prefix: String,
    /// The tag of the executor images.
    pub image_tag: String,
    /// The non-root uid and gid containers run as.
    pub user: (u32, u32),
    /// Size of the work area `/work`, and of `/tmp`, in MiB each.
    pub work_mb: u64,
    /// CPUs a job's container may use.
    pub cpus: f64,
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            host: None,
            image_prefix: String::new(),
            image_tag: "latest".into(),
            user: (10001, 10001),
            work_mb: 256,
            cpus: 1.0,
        }
    }
}

impl DockerConfig {
    pub fn validate(&self) -> Result<(), BackendError> {
        if self.user.0 == 0 || self.user.1 == 0 {
            return Err(config(
                "containers must not run as root (uid or gid 0)".into(),
            ));
        }
        if !(1..=65_536).contains(&self.work_mb) {
            return Err(config(
                "the work area must be between 1 and 65536 MiB".into(),
            ));
        }
        if !(self.cpus.is_finite() && self.cpus >= 0.01 && self.cpus <= 1024.0) {
            return Err(config("cpus must be between 0.01 and 1024".into()));
        }
        if self.image_tag.is_empty() || self.image_tag.contains([':', '/', '@', ' ']) {
            return Err(config(format!("invalid image tag {:?}", self.image_tag)));
        }
        Ok(())
    }

    /// The executor image of `lang`.
    pub fn image(&self, lang: &LanguageDef) -> String {
        format!("{}{}:{}", self.image_prefix, lang.image, self.image_tag)
    }
}

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

    /// Creates the job's container, for a job message of `message_bytes`; `Ok(false)` if one of
    /// that name exists already.
    async fn create(
        &self,
        job: &JobMessage,
        lang: &LanguageDef,
        message_bytes: usize,
    ) -> Result<bool, BackendError> {
        let options = CreateContainerOptionsBuilder::new()
            .name(&container_name(job))
            .build();
        let mut labels = self.labels()?;
        labels.extend([
            (LABEL_JOB_ID.to_owned(), job.id.to_string()),
            (LABEL_USER.to_owned(), job.user.as_str().to_owned()),
            (LABEL_LANGUAGE.to_owned(), lang.name.to_owned()),
        ]);
        match self
            .docker
            .create_container(
                Some(options),
                self.container_spec(job, lang, message_bytes, labels),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(409) => Ok(false),
            Err(e) => Err(daemon("create the container", e)),
        }
    }

    /// The container of one job: see the module's documentation.
    fn container_spec(
        &self,
        job: &JobMessage,
        lang: &LanguageDef,
        message_bytes: usize,
        labels: HashMap<String, String>,
    ) -> ContainerCreateBody {
        let (uid, gid) = self.config.user;
        let work_mb = self.config.work_mb;
        let tmpfs_options =
            format!("rw,exec,nosuid,nodev,size={work_mb}m,uid={uid},gid={gid},mode=0700");
        let executor_mb = executor_mb(message_bytes);
        let memory = memory_bytes(lang, &job.limits, executor_mb, work_mb);
        let mut cmd: Vec<String> = ["--sandbox", "container", "--stdio", "--job-dir", WORK_DIR]
            .map(String::from)
            .to_vec();
        if lang.compile.is_some() {
            let run = run_memory_bytes(&job.limits, executor_mb);
            cmd.extend(["--run-memory-limit".into(), run.to_string()]);
        }
        ContainerCreateBody {
            image: Some(self.config.image(lang)),
            cmd: Some(cmd),
            user: Some(format!("{uid}:{gid}")),
            working_dir: Some(WORK_DIR.into()),
            labels: Some(labels),
            open_stdin: Some(true),
            stdin_once: Some(true),
            attach_stdin: Some(true),
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            tty: Some(false),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                memory: Some(memory),
                memory_swap: Some(memory),
                nano_cpus: Some((self.config.cpus * 1e9) as i64),
                pids_limit: Some(pids_limit(lang, &job.limits)),
                readonly_rootfs: Some(true),
                tmpfs: Some(HashMap::from([
                    (WORK_DIR.to_owned(), tmpfs_options.clone()),
                    ("/tmp".to_owned(), tmpfs_options),
                ])),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                privileged: Some(false),
                network_mode: Some("none".into()),
                init: Some(false),
                log_config: Some(HostConfigLogConfig {
                    typ: Some("json-file".into()),
                    config: Some(HashMap::from([
                        ("max-size".to_owned(), format!("{}m", log_max_mb())),
                        ("max-file".to_owned(), "1".to_owned()),
                    ])),
                }),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        }
    }

    /// Attaches to the created container's stdin, starts it and hands it the job message `body`.
    async fn start_with_input(&self, name: &str, body: &[u8]) -> Result<(), BackendError> {
        let options = AttachContainerOptionsBuilder::new()
            .stdin(true)
            .stream(true)
            .build();
        let mut attached = self
            .docker
            .attach_container(name, Some(options))
            .await
            .map_err(|e| daemon("attach to the container", e))?;
        self.docker
            .start_container(name, None)
            .await
            .map_err(|e| daemon("start the container", e))?;
        let input = async {
            attached.input.write_all(body).await?;
            attached.input.flush().await?;
            // Closing our side closes the container's stdin (stdin_once): the executor reads EOF.
            attached.input.shutdown().await
        };
        input
            .await
            .map_err(|e| BackendError::io(NAME, "writing the job message to the container", e))
    }

    async fn inspect(&self, name: &str) -> Result<Option<ContainerInspectResponse>, BackendError> {
        match self.docker.inspect_container(name, None).await {
            Ok(inspected) => Ok(Some(inspected)),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(daemon("inspect the container", e)),
        }
    }

    async fn remove(&self, name: &str) -> Result<(), BackendError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(name, Some(options)).await {
            // 409: a removal is already in progress.
            Err(e) if !matches!(status_of(&e), Some(404 | 409)) => {
                Err(daemon("remove the container", e))
            }
            _ => Ok(()),
        }
    }

    /// The container's standard output (the result frame), at most `limit` bytes; `Err` says
    /// why it cannot be had (more than `limit` bytes, or the log not read), for the message of
    /// a job without a valid result.
    async fn stdout(&self, name: &str, limit: u64) -> Result<Vec<u8>, String> {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(false)
            .follow(false)
            .build();
        let mut logs = self.waiter.logs(name, Some(options));
        let mut out = Vec::new();
        while let Some(chunk) = logs.next().await {
            match chunk.map_err(|e| format!("read the container's log: {e}"))? {
                LogOutput::StdOut { message } => {
                    if (out.len() + message.len()) as u64 > limit {
                        return Err(format!(
                            "the container wrote more than {limit} bytes of result frame"
                        ));
                    }
                    out.extend_from_slice(&message);
                }
                _ => continue,
            }
        }
        Ok(out)
    }

    /// The end of the container's standard error (the executor's log), for error messages.
    async fn stderr_tail(&self, name: &str) -> String {
        let options = LogsOptionsBuilder::new()
            .stdout(false)
            .stderr(true)
            .tail("20")
            .build();
        let mut logs = self.docker.logs(name, Some(options));
        let mut text = Vec::new();
        while let Some(Ok(chunk)) = logs.next().await {
            if let LogOutput::StdErr { message } = chunk {
                text.extend_from_slice(&message);
            }
        }
        // The last 2 KiB (a character cut in two becomes U+FFFD).
        let start = text.len().saturating_sub(2048);
        String::from_utf8_lossy(&text[start..]).trim().to_owned()
    }

    /// The toolchain version of `lang`, from `cola executor --versions` in its image. The probe
    /// container removes itself when it exits (`auto_remove`), even if this middleware dies
    /// meanwhile; its output is read through an attachment made before it starts.
    async fn image_version(&self, lang: &LanguageDef) -> Result<Option<String>, BackendError> {
        let name = format!("cola-versions-{}-{}", lang.name, uuid_suffix());
        let spec = ContainerCreateBody {
            image: Some(self.config.image(lang)),
            cmd: Some(vec!["--versions".into()]),
            user: Some(format!("{}:{}", self.config.user.0, self.config.user.1)),
            labels: Some(self.labels()?),
            attach_stdout: Some(true),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                auto_remove: Some(true),
                network_mode: Some("none".into()),
                readonly_rootfs: Some(true),
                tmpfs: Some(HashMap::from([(
                    "/tmp".to_owned(),
                    "rw,nosuid,nodev,size=64m".to_owned(),
                )])),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        self.docker
            .create_container(Some(options), spec)
            .await
            .map_err(|e| daemon("create the container", e))?;
        let attach = AttachContainerOptionsBuilder::new()
            .stdout(true)
            .stream(true)
            .build();
        let started = async {
            let attached = self
                .waiter
                .attach_container(&name, Some(attach))
                .await
                .map_err(|e| daemon("attach to the container", e))?;
            self.docker
                .start_container(&name, None)
                .await
                .map_err(|e| daemon("start the container", e))?;
            Ok(attached)
        }
        .await;
        let mut attached = match started {
            Ok(attached) => attached,
            Err(e) => {
                // Never started, so never removed by the daemon.
                self.remove(&name).await?;
                return Err(e);
            }
        };
        let mut out = Vec::new();
        while let Some(chunk) = attached.output.next().await {
            if let LogOutput::StdOut { message } =
                chunk.map_err(|e| daemon("read the output", e))?
            {
                out.extend_from_slice(&message);
                if out.len() > 1 << 20 {
                    return Err(executor("--versions printed more than 1 MiB".into()));
                }
            }
        }
        let versions: BTreeMap<String, String> = serde_json::from_slice(&out)
            .map_err(|e| BackendError::json(NAME, "--versions printed no JSON", e))?;
        Ok(versions.get(lang.name).cloned())
    }

    /// Answers the executor's request for its run step's memory limit, if the first line of its
    /// standard output is one, by lowering the container's limit to it. Done once that line is
    /// read, or the container has ended without one. A failure is only logged: the executor,
    /// which waits for the new limit, then fails the job without running it.
    async fn answer_memory_request(&self, name: &str) {
        // The container's limit is read while the executor compiles, not once it asks.
        let (line, current) = tokio::join!(self.first_stdout_line(name), self.inspect(name));
        let lowered = match (line, current) {
            (Ok(line), Ok(Some(current))) => match frame::parse_run_memory_request(&line) {
                // (A container adopted after it ended has nothing left to run.)
                Some(bytes) if current.state.and_then(|s| s.running) == Some(true) => {
                    let current = current.host_config.and_then(|h| h.memory);
                    self.set_memory(name, bytes, current.unwrap_or(0)).await
                }
                _ => Ok(()),
            },
            (Ok(_), Ok(None)) => Ok(()),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        if let Err(e) = lowered {
            tracing::warn!(container = %name, error = %e, "cannot set the run step's memory limit");
        }
    }

    /// The first line of the container's standard output (without its newline, at most a few
    /// bytes), read from its log as it comes; empty when the container ends without one.
    async fn first_stdout_line(&self, name: &str) -> Result<Vec<u8>, BackendError> {
        const LONGEST: usize = 64;
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(false)
            .follow(true)
            .build();
        let mut logs = self.waiter.logs(name, Some(options));
        let mut line = Vec::new();
        while let Some(chunk) = logs.next().await {
            if let LogOutput::StdOut { message } =
                chunk.map_err(|e| daemon("follow the container's log", e))?
            {
                let end = message.iter().position(|b| *b == b'\n');
                line.extend_from_slice(&message[..end.unwrap_or(message.len())]);
                if end.is_some() || line.len() > LONGEST {
                    line.truncate(LONGEST);
                    return Ok(line);
                }
            }
        }
        Ok(Vec::new())
    }

    /// Sets the container's memory limit, with no swap, to `bytes`; only ever lower than the
    /// `current` one (0: none).
    async fn set_memory(&self, name: &str, bytes: u64, current: i64) -> Result<(), BackendError> {
        let bytes =
            i64::try_from(bytes).map_err(|_| executor(format!("{bytes} bytes of memory")))?;
        if current > 0 && bytes > current {
            return Err(executor(format!(
                "the executor asked for {bytes} bytes of memory, more than the container's {current}"
            )));
        }
        let update = ContainerUpdateBody {
            memory: Some(bytes),
            memory_swap: Some(bytes),
            ..ContainerUpdateBody::default()
        };
        self.docker
            .update_container(name, update)
            .await
            .map_err(|e| daemon("lower the container's memory limit", e))
    }

    /// Waits for the container to stop; its exit code.
    async fn wait_exit(&self, name: &str) -> Result<i64, BackendError> {
        let options = WaitContainerOptionsBuilder::new()
            .condition("not-running")
            .build();
        let mut waiting = self.waiter.wait_container(name, Some(options));
        match waiting.next().await {
            Some(Ok(response)) => Ok(response.status_code),
            // bollard reports a non-zero exit code as an error.
            Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(daemon("wait for the container", e)),
            None => Err(executor(
                "the daemon ended the wait without an answer".into(),
            )),
        }
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

impl DockerBackend {
    /// Removes the containers labelled as cola's whose jobs are terminal or unknown (their
    /// middleware crashed before it could); containers of running jobs stay, for their
    /// redelivered jobs to adopt. Returns how many were removed.
    pub async fn sweep(&self, jobs: &JobStore) -> Result<usize, BackendError> {
        let scope = self.labels()?.remove(LABEL_SCOPE).unwrap_or_default();
        let filters = HashMap::from([("label", vec![format!("{LABEL_SCOPE}={scope}")])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| daemon("list cola's containers", e))?;
        let mut removed = 0;
        for container in containers {
            let labels = container.labels.unwrap_or_default();
            let Some(name) = container
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_owned())
            else {
                continue;
            };
            let key = labels
                .get(LABEL_USER)
                .zip(labels.get(LABEL_JOB_ID))
                .and_then(|(user, id)| JobKey::parse(&format!("{user}.{id}")));
            let orphan = match key {
                // Not a job's container (e.g. a --versions probe): never needed later.
                None => true,
                Some(key) => match jobs.get(&key).await {
                    Ok(Some((record, _))) => record.status.is_terminal(),
                    Ok(None) => true,
                    Err(e) => {
                        tracing::warn!(container = %name, error = %e, "cannot read the job of a container; leaving it");
                        false
                    }
                },
            };
            if orphan {
                self.remove(&name).await?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed containers of ended or unknown jobs");
        }
        Ok(removed)
    }
}

/// `cola-<job-id>`.
pub fn container_name(job: &JobMessage) -> String {
    format!("cola-{}", job.id)
}

/// The executor's own memory, in MiB, for a job message of `message_bytes`.
fn executor_mb(message_bytes: usize) -> u64 {
    EXECUTOR_MEMORY_MB + (INPUT_COPIES * message_bytes as u64).div_ceil(1 << 20)
}

/// The container's memory limit when it starts: the run step's ([`run_memory_bytes`]); for a
/// compiled language, the compile step's until the run step (what the compiler may use, the
/// executor's own, and the two tmpfs mounts it may fill, whose pages count against it).
fn memory_bytes(lang: &LanguageDef, limits: &Limits, executor_mb: u64, work_mb: u64) -> i64 {
    let run = run_memory_bytes(limits, executor_mb);
    if lang.compile.is_none() {
        return run;
    }
    let mb = lang.compile_limits.memory_mb + executor_mb + 2 * work_mb;
    i64::try_from(mb << 20).unwrap_or(i64::MAX).max(run)
}

/// The container's memory limit during the run step: the program's and the executor's own.
/// Whatever the program puts in memory counts against it, shared memory and tmpfs files
/// (`/work`, `/tmp`, `/dev/shm`) included.
fn run_memory_bytes(limits: &Limits, executor_mb: u64) -> i64 {
    let mb = limits.memory_mb + executor_mb;
    i64::try_from(mb << 20).unwrap_or(i64::MAX)
}

/// The container's pids limit: the job's processes (or the compiler's, if more) and the
/// executor's. Inside, `RLIMIT_NPROC` cannot be used (it counts the uid across containers).
fn pids_limit(lang: &LanguageDef, limits: &Limits) -> i64 {
    let steps = match lang.compile {
        Some(_) => limits.processes.max(lang.compile_limits.processes),
        None => limits.processes,
    };
    i64::try_from(steps + EXECUTOR_TASKS).unwrap_or(i64::MAX)
}

/// The log cap: the largest result frame, plus the json-file driver's overhead (a JSON object
/// of about 100 bytes per 16 KiB line) and room for the executor's own log.
fn log_max_mb() -> u64 {
    let frame = frame::max_frame_bytes(frame::MAX_ZIP_BYTES);
    (frame + frame / 64).div_ceil(1 << 20) + 16
}

/// A failed job in a container that was killed for memory says so.
fn with_oom(mut outcome: ExecutorReport, oom_killed: bool) -> ExecutorReport {
    let report = &mut outcome.report;
    if oom_killed && report.status == Status::Failed && report.reason == Some(Reason::RuntimeError)
    {
        report.reason = Some(Reason::MemoryLimit);
        report.message = Some(format!(
            "the program ran out of memory (limit {} MB): the container was killed for memory",
            report.limits.memory_mb
        ));
    }
    outcome
}

/// The report of a container whose executor was killed for memory.
fn out_of_memory(limits: &Limits) -> RunReport {
    RunReport {
        status: Status::Failed,
        reason: Some(Reason::MemoryLimit),
        exit_code: None,
        signal: Some(9),
        timings_ms: Timings::default(),
        limits: *limits,
        message: Some(format!(
            "the job ran out of memory (limit {} MB): its container was killed",
            limits.memory_mb
        )),
        stdout: String::new(),
        stderr: String::new(),
        compile_output: String::new(),
        output_object: None,
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

fn config(message: String) -> BackendError {
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
    use cola_wire::Language;

    fn lang(name: &str) -> &'static LanguageDef {
        language(&Language::parse(name).unwrap()).unwrap()
    }

    #[test]
    fn limits_cover_the_steps_the_executor_and_the_work_area() {
        let js = lang("javascript");
        let c = lang("c");
        let limits = js.default_limits;
        // The program's, with its files; no room for the tmpfs mounts beside it.
        assert_eq!(executor_mb(1000), 32 + 1);
        assert_eq!(executor_mb(10 << 20), 32 + 30);
        assert_eq!(memory_bytes(js, &limits, 40, 100), (256 + 40_i64) << 20);
        assert_eq!(run_memory_bytes(&limits, 40), (256 + 40_i64) << 20);
        // Compiling may take more than the program may, until the run step.
        assert_eq!(
            memory_bytes(c, &limits, 40, 100),
            (2048 + 40 + 200_i64) << 20
        );
        assert_eq!(pids_limit(js, &limits), (64 + EXECUTOR_TASKS) as i64);
        let many = Limits {
            processes: 200,
            ..limits
        };
        assert_eq!(pids_limit(c, &many), (200 + EXECUTOR_TASKS) as i64);
    }

    #[test]
    fn the_log_holds_the_largest_frame() {
        assert!(log_max_mb() << 20 > frame::max_frame_bytes(frame::MAX_ZIP_BYTES));
    }

    #[test]
    fn settings_are_checked() {
        assert!(DockerConfig::default().validate().is_ok());
        for bad in [
            DockerConfig {
                user: (0, 10001),
                ..DockerConfig::default()
            },
            DockerConfig {
                work_mb: 0,
                ..DockerConfig::default()
            },
            DockerConfig {
                cpus: f64::NAN,
                ..DockerConfig::default()
            },
            DockerConfig {
                image_tag: "a:b".into(),
                ..DockerConfig::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let config = DockerConfig {
            image_prefix: "registry.example/".into(),
            image_tag: "1.2".into(),
            ..DockerConfig::default()
        };
        assert_eq!(
            config.image(lang("go")),
            "registry.example/cola-executor-go:1.2"
        );
    }

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

    #[test]
    fn a_failure_in_a_container_killed_for_memory_is_a_memory_limit() {
        let limits = lang("c").default_limits;
        let failed = ExecutorReport {
            report: RunReport {
                reason: Some(Reason::RuntimeError),
                signal: Some(9),
                ..out_of_memory(&limits)
            },
            zip: Some(vec![1, 2, 3]),
        };
        let judged = with_oom(failed.clone(), true);
        assert_eq!(judged.report.reason, Some(Reason::MemoryLimit));
        assert_eq!(judged.zip, failed.zip);
        assert_eq!(with_oom(failed.clone(), false), failed);
        let compile_error = ExecutorReport {
            report: RunReport {
                reason: Some(Reason::CompileError),
                ..failed.report.clone()
            },
            zip: None,
        };
        assert_eq!(with_oom(compile_error.clone(), true), compile_error);
    }
}
