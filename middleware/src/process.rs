//! The process backend: each job's executor is a local `cola executor` process, which runs the
//! user's code in bubblewrap. Executors are detached from the middleware (own process group), so
//! a restarted middleware can adopt the ones still running.
//!
//! A small warm pool keeps executors started ahead of their jobs (`--wait-for-job`): each is
//! already connected to NATS and waits on its standard input for exactly one job message, runs
//! it, and exits, as a cold one would — it is never reused. Taking one saves the process start
//! and the NATS connection from a job's latency; the pool refills as jobs end (and when a job
//! found it empty). A pooled executor whose middleware goes away sees its standard input close,
//! removes its directory and exits; one killed while waiting leaves its directory, which the
//! next middleware to start on the same data directory removes.
//!
//! A job's executor is found by the job's id: a cold one works in the directory named after
//! the job; for a pooled one, that name is a link to the executor's own directory, made before
//! the job is given to it. So `launch` adopts an executor the job was given already (by a
//! middleware that stopped before recording it) rather than start a second one, and
//! [`Backend::find`] finds it.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    path::{Path, PathBuf},
    process::Stdio,
    sync::Mutex,
    time::Duration,
};

use async_trait::async_trait;
use cola_wire::{ExecutorHandle, Isolation, JobMessage, Provision};
use nix::{sys::signal, unistd::Pid};
use tokio::{
    io::AsyncWriteExt,
    process::{Child, ChildStdin, Command},
};

use crate::backend::{Backend, BackendError, ExecutorExit};

const NAME: &str = "process";
const JOB_FILE: &str = "job.json";
const LOG_FILE: &str = "executor.log";
/// How the directory of a pre-started executor is named (then a UUID).
const WARM_PREFIX: &str = "warm-";
/// In a pre-started executor's directory, the id of the job it was given (so that the link
/// named after the job is removed with the directory).
const GIVEN_JOB_FILE: &str = "job-id";

/// Where executors live and how they are started.
#[derive(Debug, Clone)]
pub struct ProcessBackendConfig {
    /// The `cola` binary; executors run as `cola executor ...`.
    pub executor_bin: PathBuf,
    /// One directory per running job is made under this one.
    pub jobs_dir: PathBuf,
    /// The NATS URL the executor reports to (user code never sees it).
    pub nats_url: String,
    /// Extra arguments for `cola executor` (sandbox settings).
    pub executor_args: Vec<String>,
    /// Executors kept started ahead of their jobs (0: every executor starts with its job).
    pub warm_executors: usize,
}

/// Runs executors as local processes.
pub struct ProcessBackend {
    config: ProcessBackendConfig,
    node: String,
    /// Executors this process started, so their exit can be awaited (and reaped) directly.
    children: Mutex<HashMap<String, Child>>,
    /// Executors started ahead of their jobs, oldest first.
    warm: Mutex<VecDeque<WarmExecutor>>,
}

/// An executor waiting for its job on `stdin`.
struct WarmExecutor {
    child: Child,
    stdin: ChildStdin,
    handle: ExecutorHandle,
}

impl ProcessBackend {
    pub fn new(config: ProcessBackendConfig) -> Result<Self, BackendError> {
        std::fs::create_dir_all(&config.jobs_dir).map_err(|e| io(config.jobs_dir.display(), e))?;
        restrict_to_owner(&config.jobs_dir)?;
        let backend = Self {
            config,
            node: hostname(),
            children: Mutex::new(HashMap::new()),
            warm: Mutex::new(VecDeque::new()),
        };
        backend.sweep_abandoned_warm_dirs();
        Ok(backend)
    }

    /// Removes the directories of pre-started executors that are gone without removing them
    /// (killed while waiting), then the links named after jobs that lead nowhere. A directory
    /// some live executor works in — another middleware's on the same data directory, or one
    /// that took its job — stays.
    fn sweep_abandoned_warm_dirs(&self) {
        let entries = || {
            std::fs::read_dir(&self.config.jobs_dir)
                .into_iter()
                .flatten()
                .flatten()
        };
        let in_use = executor_dirs_in_use();
        for entry in entries() {
            let path = entry.path();
            let abandoned = entry.file_name().to_string_lossy().starts_with(WARM_PREFIX)
                && !in_use.contains(&path);
            if abandoned && let Err(e) = std::fs::remove_dir_all(&path) {
                tracing::warn!(dir = %path.display(), error = %e, "cannot remove an abandoned executor directory");
            }
        }
        for entry in entries() {
            let path = entry.path();
            if path.is_symlink()
                && !path.exists()
                && let Err(e) = std::fs::remove_file(&path)
            {
                tracing::warn!(link = %path.display(), error = %e, "cannot remove a link to a removed executor directory");
            }
        }
    }

    /// Fills the warm pool (call from within the Tokio runtime). Executors that cannot be started
    /// are logged and left out: jobs then start theirs cold.
    pub fn prestart(&self) {
        let mut warm = self.warm.lock().expect("not poisoned");
        while warm.len() < self.config.warm_executors {
            match self.start_warm() {
                Ok(executor) => warm.push_back(executor),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot pre-start an executor");
                    return;
                }
            }
        }
    }

    fn start_warm(&self) -> Result<WarmExecutor, BackendError> {
        let dir_name = format!("{WARM_PREFIX}{}", uuid::Uuid::now_v7().simple());
        let dir = self.make_dir(&dir_name)?;
        let mut command = self.executor_command(&dir)?;
        command.arg("--wait-for-job").stdin(Stdio::piped());
        let (mut child, handle) = self.spawn(command, &dir_name)?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| executor("the executor has no standard input"))?;
        Ok(WarmExecutor {
            child,
            stdin,
            handle,
        })
    }

    /// Gives `job` (the message of the job `job_id`) to a pooled executor that is still
    /// waiting, if there is one.
    async fn launch_warm(&self, job_id: &str, job: &[u8]) -> Option<ExecutorHandle> {
        loop {
            let mut warm = self.warm.lock().expect("not poisoned").pop_front()?;
            if !matches!(warm.child.try_wait(), Ok(None)) {
                // It ended while waiting (NATS unreachable when it started, say): its log says why.
                let dir = Self::dir_of(&warm.handle).map(|d| self.job_dir(d));
                let log = dir.as_ref().map(|d| tail(&d.join(LOG_FILE), 512));
                tracing::warn!(executor = %warm.handle.id, log = log.unwrap_or_default(), "a pre-started executor ended before its job");
                let _ = self.remove_dir_of(&warm.handle).await;
                continue;
            }
            let given = async {
                let name = Self::dir_of(&warm.handle)
                    .ok_or_else(|| std::io::Error::other("no directory in the handle"))?;
                tokio::fs::write(self.job_dir(name).join(GIVEN_JOB_FILE), job_id).await?;
                tokio::fs::symlink(name, self.job_dir(job_id)).await?;
                warm.stdin.write_all(job).await?;
                warm.stdin.shutdown().await
            };
            match given.await {
                Ok(()) => {
                    let WarmExecutor { child, handle, .. } = warm;
                    self.children
                        .lock()
                        .expect("not poisoned")
                        .insert(handle.id.clone(), child);
                    return Some(handle);
                }
                Err(e) => {
                    tracing::warn!(executor = %warm.handle.id, error = %e, "cannot give a job to a pre-started executor");
                    let _ = self.kill(&warm.handle).await;
                    let _ = warm.child.wait().await;
                    let _ = self.remove_dir_of(&warm.handle).await;
                }
            }
        }
    }

    /// Removes the executor's directory, and a pooled executor's link named after its job
    /// (gone already is fine).
    async fn remove_dir_of(&self, handle: &ExecutorHandle) -> Result<(), BackendError> {
        let Some(name) = Self::dir_of(handle) else {
            return Ok(());
        };
        let dir = self.job_dir(name);
        if let Ok(job_id) = tokio::fs::read_to_string(dir.join(GIVEN_JOB_FILE)).await
            && Self::dir_given(&self.job_dir(job_id.trim())).as_deref() == Some(name)
        {
            remove_entry(&self.job_dir(job_id.trim())).await?;
        }
        remove_entry(&dir).await
    }

    fn job_dir(&self, name: &str) -> PathBuf {
        self.config.jobs_dir.join(name)
    }

    /// Makes the private directory `name` for one executor.
    fn make_dir(&self, name: &str) -> Result<PathBuf, BackendError> {
        let dir = self.job_dir(name);
        std::fs::create_dir_all(&dir).map_err(|e| io(dir.display(), e))?;
        restrict_to_owner(&dir)?;
        Ok(dir)
    }

    /// `cola executor` working in `dir`, its output going to the directory's log.
    fn executor_command(&self, dir: &Path) -> Result<Command, BackendError> {
        let log = std::fs::File::create(dir.join(LOG_FILE)).map_err(|e| io("executor log", e))?;
        let log2 = log.try_clone().map_err(|e| io("executor log", e))?;
        let mut command = Command::new(&self.config.executor_bin);
        command
            .arg("executor")
            .arg("--job-dir")
            .arg(dir)
            .arg("--nats-url")
            .arg(&self.config.nats_url)
            .args(&self.config.executor_args)
            .env_remove("COLA_NATS_URL")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0);
        Ok(command)
    }

    /// Starts `command`; its handle names the process and its directory `dir_name`.
    fn spawn(
        &self,
        mut command: Command,
        dir_name: &str,
    ) -> Result<(Child, ExecutorHandle), BackendError> {
        let child = command.spawn().map_err(|e| {
            let step = format!("cannot start {}", self.config.executor_bin.display());
            io(step, e)
        })?;
        let pid = child
            .id()
            .ok_or_else(|| executor("executor exited at once"))?;
        let (_, started) =
            process_state(pid as i32).ok_or_else(|| executor("executor exited at once"))?;
        let handle = ExecutorHandle {
            backend: NAME.into(),
            node: self.node.clone(),
            id: format!("{pid}:{started}:{dir_name}"),
        };
        Ok((child, handle))
    }

    /// The pid behind a handle, if the handle names a process of this host that is still the
    /// same process (not a later one that reused the pid).
    fn live_pid(&self, handle: &ExecutorHandle) -> Option<Pid> {
        if handle.backend != NAME || handle.node != self.node {
            return None;
        }
        let mut parts = handle.id.splitn(3, ':');
        let pid: i32 = parts.next()?.parse().ok()?;
        let start = parts.next()?;
        let (state, started) = process_state(pid)?;
        (started.to_string() == start && state != 'Z').then(|| Pid::from_raw(pid))
    }

    /// The name of the directory of the executor given the job whose entry in the jobs
    /// directory is `entry`, if it has one: the entry itself (a cold executor's), or the
    /// pooled executor's directory it links to.
    fn dir_given(entry: &Path) -> Option<String> {
        let name = entry.file_name()?.to_str()?;
        if !std::fs::symlink_metadata(entry).ok()?.is_symlink() {
            return Some(name.to_owned());
        }
        let target = std::fs::read_link(entry).ok()?;
        let target = target.to_str()?;
        (target.starts_with(WARM_PREFIX) && !target.contains('/')).then(|| target.to_owned())
    }

    /// The name of the executor's directory (the job id, or a pooled executor's own name).
    fn dir_of(handle: &ExecutorHandle) -> Option<&str> {
        handle
            .id
            .rsplit_once(':')
            .map(|(_, job)| job)
            .filter(|j| !j.contains('/') && !j.contains(".."))
    }
}

#[async_trait]
impl Backend for ProcessBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn executors_waiting(&self) -> usize {
        self.warm.lock().expect("not poisoned").len()
    }

    async fn launch(&self, job: &JobMessage) -> Result<ExecutorHandle, BackendError> {
        let job_id = job.id.to_string();
        if let Some(found) = self.find(job).await? {
            if self.live_pid(&found).is_some() {
                // Given the job already, by a middleware that did not record it: adopted.
                return Ok(found);
            }
            // Left by an earlier attempt whose executor is gone: start clean.
            self.remove_dir_of(&found).await?;
            remove_entry(&self.job_dir(&job_id)).await?;
        }
        let body =
            serde_json::to_vec(job).map_err(|e| BackendError::json(NAME, "job message", e))?;
        if let Some(handle) = self.launch_warm(&job_id, &body).await {
            // The pool refills when a job ends (see `cleanup`), not now: a new executor's start
            // would take CPU from this job's.
            return Ok(handle);
        }
        let dir = self.make_dir(&job_id)?;
        let job_file = dir.join(JOB_FILE);
        tokio::fs::write(&job_file, body)
            .await
            .map_err(|e| io(job_file.display(), e))?;
        let mut command = self.executor_command(&dir)?;
        command.arg("--job-file").arg(&job_file);
        let (child, handle) = self.spawn(command, &job_id)?;
        self.children
            .lock()
            .expect("not poisoned")
            .insert(handle.id.clone(), child);
        self.prestart();
        Ok(handle)
    }

    /// The executor in the job's own directory (started cold), or in the pooled executor's
    /// directory the job's name links to; its handle names process 0 when it has ended.
    async fn find(&self, job: &JobMessage) -> Result<Option<ExecutorHandle>, BackendError> {
        let Some(dir_name) = Self::dir_given(&self.job_dir(&job.id.to_string())) else {
            return Ok(None);
        };
        let dir = self.job_dir(&dir_name);
        let (pid, started) = executors_on_host()
            .into_iter()
            .find(|(_, executor_dir)| *executor_dir == dir)
            .and_then(|(pid, _)| Some((pid, process_state(pid)?.1)))
            .unwrap_or((0, 0));
        Ok(Some(ExecutorHandle {
            backend: NAME.into(),
            node: self.node.clone(),
            id: format!("{pid}:{started}:{dir_name}"),
        }))
    }

    async fn is_alive(&self, handle: &ExecutorHandle) -> Result<bool, BackendError> {
        Ok(self.live_pid(handle).is_some())
    }

    async fn wait(&self, handle: &ExecutorHandle) -> Result<ExecutorExit, BackendError> {
        let child = self
            .children
            .lock()
            .expect("not poisoned")
            .remove(&handle.id);
        let description = match child {
            Some(mut child) => match child.wait().await {
                Ok(status) => status.to_string(),
                Err(e) => return Err(io("waiting for the executor", e)),
            },
            None => {
                // Adopted: not our child, so watch its /proc entry.
                while self.live_pid(handle).is_some() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                "exited (adopted executor)".to_owned()
            }
        };
        let log_tail = Self::dir_of(handle)
            .map(|job| tail(&self.job_dir(job).join(LOG_FILE), 2048))
            .unwrap_or_default();
        Ok(ExecutorExit {
            description: if log_tail.is_empty() {
                description
            } else {
                format!("{description}; log: {log_tail}")
            },
        })
    }

    async fn kill(&self, handle: &ExecutorHandle) -> Result<(), BackendError> {
        if let Some(pid) = self.live_pid(handle) {
            // The executor leads its own process group; bubblewrap dies with its parent and takes
            // the sandbox's PID namespace with it.
            match signal::killpg(pid, signal::Signal::SIGKILL) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => return Err(io(format!("kill executor {pid}"), e.into())),
            }
        }
        Ok(())
    }

    async fn cleanup(&self, handle: &ExecutorHandle) -> Result<(), BackendError> {
        self.prestart();
        self.remove_dir_of(handle).await
    }

    async fn versions(&self) -> BTreeMap<String, String> {
        self.ask_executor("--versions").await.unwrap_or_default()
    }

    async fn isolation(&self) -> Isolation {
        self.ask_executor("--isolation-report")
            .await
            .unwrap_or_else(|| Isolation {
                cgroup: Provision::from_result(Err("cola executor could not tell".into())),
                disk: Provision::from_result(Err("cola executor could not tell".into())),
            })
    }
}

impl ProcessBackend {
    /// What `cola executor <flag>` prints (JSON), as an executor of this backend sees things;
    /// `None` (and a warning) when it cannot say.
    async fn ask_executor<T: serde::de::DeserializeOwned>(&self, flag: &str) -> Option<T> {
        let out = Command::new(&self.config.executor_bin)
            .arg("executor")
            .arg(flag)
            .args(&self.config.executor_args)
            .output()
            .await;
        match out {
            Ok(out) if out.status.success() => serde_json::from_slice(&out.stdout)
                .inspect_err(|e| tracing::warn!(error = %e, "cola executor {flag} printed no JSON"))
                .ok(),
            Ok(out) => {
                tracing::warn!(status = %out.status, "cola executor {flag} failed");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot run cola executor {flag}");
                None
            }
        }
    }
}

/// A file or process operation of this backend that failed; `step` says which (often a path).
fn io(step: impl std::fmt::Display, e: std::io::Error) -> BackendError {
    BackendError::io(NAME, step.to_string(), e)
}

/// An executor that did not start as one should.
fn executor(message: &str) -> BackendError {
    BackendError::Executor {
        backend: NAME,
        message: message.to_owned(),
    }
}

/// Removes a directory with its contents, or a link (gone already is fine).
async fn remove_entry(path: &Path) -> Result<(), BackendError> {
    let removed = match tokio::fs::symlink_metadata(path).await {
        Ok(meta) if meta.is_dir() => tokio::fs::remove_dir_all(path).await,
        Ok(_) => tokio::fs::remove_file(path).await,
        Err(e) => Err(e),
    };
    match removed {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("remove {}", path.display()), e)),
    }
}

fn restrict_to_owner(dir: &Path) -> Result<(), BackendError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io(dir.display(), e))
}

/// The state letter and start time (clock ticks since boot) of a process, from /proc.
fn process_state(pid: i32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The `--job-dir` of every live `cola executor` process on this host.
fn executor_dirs_in_use() -> std::collections::HashSet<PathBuf> {
    executors_on_host()
        .into_iter()
        .map(|(_, dir)| dir)
        .collect()
}

/// Every `cola executor` process on this host, with its `--job-dir`.
fn executors_on_host() -> Vec<(i32, PathBuf)> {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    processes
        .flatten()
        .filter_map(|p| p.file_name().to_string_lossy().parse::<i32>().ok())
        .filter_map(|pid| Some((pid, std::fs::read(format!("/proc/{pid}/cmdline")).ok()?)))
        .filter_map(|(pid, cmdline)| {
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            let flag = args.iter().position(|a| *a == b"--job-dir")?;
            let dir = args.get(flag + 1)?;
            args.contains(&&b"executor"[..]).then(|| {
                let dir = PathBuf::from(String::from_utf8_lossy(dir).into_owned());
                (pid, dir)
            })
        })
        .collect()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

fn tail(path: &Path, max: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_recognised_by_pid_and_start_time() {
        let me = std::process::id() as i32;
        let (state, start) = process_state(me).unwrap();
        assert_ne!(state, 'Z');
        assert!(start > 0);
        assert!(process_state(i32::MAX).is_none());
    }

    #[test]
    fn a_jobs_directory_that_cannot_be_made_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let Err(e) = ProcessBackend::new(ProcessBackendConfig {
            executor_bin: PathBuf::from("/nonexistent/cola"),
            jobs_dir: file.join("jobs"),
            nats_url: "nats://127.0.0.1:1".into(),
            executor_args: Vec::new(),
            warm_executors: 0,
        }) else {
            panic!("made a directory inside a file");
        };
        assert_eq!(e.backend(), "process");
        assert!(
            e.to_string()
                .contains(&format!("{}: ", file.join("jobs").display())),
            "{e}"
        );
        let source = std::error::Error::source(&e).expect("a source");
        assert!(
            source.downcast_ref::<std::io::Error>().is_some(),
            "{source:?}"
        );
    }
}
