//! The process backend: each job's executor is a local `cola executor` process, which runs the
//! user's code in bubblewrap. Executors are detached from the middleware (own process group), so
//! a restarted middleware can adopt the ones still running.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::Stdio,
    sync::Mutex,
    time::Duration,
};

use async_trait::async_trait;
use cola_wire::{ExecutorHandle, JobMessage};
use nix::{sys::signal, unistd::Pid};
use tokio::process::{Child, Command};

use crate::backend::{Backend, BackendError, ExecutorExit};

const NAME: &str = "process";
const JOB_FILE: &str = "job.json";
const LOG_FILE: &str = "executor.log";

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
}

/// Runs executors as local processes.
pub struct ProcessBackend {
    config: ProcessBackendConfig,
    node: String,
    /// Executors this process started, so their exit can be awaited (and reaped) directly.
    children: Mutex<HashMap<String, Child>>,
}

impl ProcessBackend {
    pub fn new(config: ProcessBackendConfig) -> Result<Self, BackendError> {
        std::fs::create_dir_all(&config.jobs_dir)
            .map_err(|e| error(format!("{}: {e}", config.jobs_dir.display())))?;
        restrict_to_owner(&config.jobs_dir)?;
        Ok(Self {
            config,
            node: hostname(),
            children: Mutex::new(HashMap::new()),
        })
    }

    fn job_dir(&self, job: &str) -> PathBuf {
        self.config.jobs_dir.join(job)
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

    fn job_of(handle: &ExecutorHandle) -> Option<&str> {
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

    async fn launch(&self, job: &JobMessage) -> Result<ExecutorHandle, BackendError> {
        let job_id = job.id.to_string();
        let dir = self.job_dir(&job_id);
        if dir.exists() {
            // Left by an earlier attempt whose executor is gone (the caller checked): start clean.
            tokio::fs::remove_dir_all(&dir)
                .await
                .map_err(|e| error(format!("{}: {e}", dir.display())))?;
        }
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| error(format!("{}: {e}", dir.display())))?;
        restrict_to_owner(&dir)?;
        let job_file = dir.join(JOB_FILE);
        let body = serde_json::to_vec(job).map_err(|e| error(e.to_string()))?;
        tokio::fs::write(&job_file, body)
            .await
            .map_err(|e| error(format!("{}: {e}", job_file.display())))?;
        let log = std::fs::File::create(dir.join(LOG_FILE))
            .map_err(|e| error(format!("executor log: {e}")))?;
        let log2 = log
            .try_clone()
            .map_err(|e| error(format!("executor log: {e}")))?;
        let child = Command::new(&self.config.executor_bin)
            .arg("executor")
            .arg("--job-file")
            .arg(&job_file)
            .arg("--job-dir")
            .arg(&dir)
            .arg("--nats-url")
            .arg(&self.config.nats_url)
            .args(&self.config.executor_args)
            .env_remove("COLA_NATS_URL")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                error(format!(
                    "cannot start {}: {e}",
                    self.config.executor_bin.display()
                ))
            })?;
        let pid = child
            .id()
            .ok_or_else(|| error("executor exited at once".into()))?;
        let (_, started) =
            process_state(pid as i32).ok_or_else(|| error("executor exited at once".into()))?;
        let handle = ExecutorHandle {
            backend: NAME.into(),
            node: self.node.clone(),
            id: format!("{pid}:{started}:{job_id}"),
        };
        self.children
            .lock()
            .expect("not poisoned")
            .insert(handle.id.clone(), child);
        Ok(handle)
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
                Err(e) => return Err(error(format!("waiting for the executor: {e}"))),
            },
            None => {
                // Adopted: not our child, so watch its /proc entry.
                while self.live_pid(handle).is_some() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                "exited (adopted executor)".to_owned()
            }
        };
        let log_tail = Self::job_of(handle)
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
                Err(e) => return Err(error(format!("kill executor {pid}: {e}"))),
            }
        }
        Ok(())
    }

    async fn cleanup(&self, handle: &ExecutorHandle) -> Result<(), BackendError> {
        let Some(job) = Self::job_of(handle) else {
            return Ok(());
        };
        let dir = self.job_dir(job);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(error(format!("remove {}: {e}", dir.display()))),
        }
    }

    async fn versions(&self) -> BTreeMap<String, String> {
        let out = Command::new(&self.config.executor_bin)
            .args(["executor", "--versions"])
            .output()
            .await;
        match out {
            Ok(out) if out.status.success() => {
                serde_json::from_slice(&out.stdout).unwrap_or_default()
            }
            Ok(out) => {
                tracing::warn!(status = %out.status, "cola executor --versions failed");
                BTreeMap::new()
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot run cola executor --versions");
                BTreeMap::new()
            }
        }
    }
}

fn error(message: String) -> BackendError {
    BackendError {
        backend: NAME,
        message,
    }
}

fn restrict_to_owner(dir: &Path) -> Result<(), BackendError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| error(format!("{}: {e}", dir.display())))
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
}
