//! Standby: a pre-started executor (the process backend's warm pool) starts its sandbox and
//! connects to NATS before its job comes, then waits on its standard input for exactly that
//! one job, which finds the sandbox ready (unless its limits need a sandbox of their own).

use std::path::Path;

use cola_wire::{JobMessage, languages, nats::Topology};

use super::{
    intake::{connect, decode, read_job_bytes},
    steps::{
        COMPILE_MAX_FILE_BYTES, Execution, JobRun, PreparedSandbox, disk_allowance,
        execute_blocking, run_file_bytes, start_sandbox,
    },
};
use crate::{
    error::ExecutorError,
    go_cache,
    sandbox::{SandboxConfig, SandboxKind, SandboxPlan, SandboxUser, init::StepRlimits, system},
    workspace::Workspace,
};

/// A job that came to a pre-started executor: its message, the connection made while it
/// waited, and the sandbox started meanwhile (when one could be).
pub(super) struct Arrival {
    pub(super) job: JobMessage,
    pub(super) topology: Topology,
    pub(super) standby: Option<StandbyThread>,
}

/// Starts a standby sandbox (in bubblewrap) and connects to NATS while waiting on standard
/// input for the job; `None` when standard input closes without one (the standby sandbox and
/// its workspace are then gone before this returns).
pub(super) async fn wait_for_job(
    nats_url: &str,
    sandbox: &SandboxConfig,
    job_dir: &Path,
) -> Result<Option<Arrival>, ExecutorError> {
    let standby = (sandbox.kind == SandboxKind::Bubblewrap)
        .then(|| StandbyThread::spawn(sandbox, job_dir))
        .flatten();
    let read = async {
        let topology = connect(nats_url).await?;
        let bytes =
            tokio::task::spawn_blocking(|| read_job_bytes(std::io::stdin().lock())).await??;
        Ok::<_, ExecutorError>((topology, bytes))
    };
    let (topology, bytes) = match read.await {
        Ok((topology, bytes)) if !bytes.is_empty() => (topology, bytes),
        read => {
            if let Some(standby) = standby {
                tokio::task::spawn_blocking(move || drop(standby)).await?;
            }
            return read.map(|_| None);
        }
    };
    let job = decode(&bytes)?;
    Ok(Some(Arrival {
        job,
        topology,
        standby,
    }))
}

/// A sandbox in `job_dir` for a job with the default limits of any language: the largest of
/// their limits as its ceiling, their default memory limit for its `/tmp`, and the shared Go
/// build cache bound whatever the language. A job with other limits gets a sandbox of its own
/// instead (see [`crate::sandbox::Sandbox::serves`]).
fn start_standby(config: &SandboxConfig, job_dir: &Path) -> Result<PreparedSandbox, ExecutorError> {
    let programs = || languages().iter().filter(|l| !l.is_numeric());
    let default = programs()
        .map(|l| l.default_limits)
        .max_by_key(|limits| limits.memory_mb)
        .ok_or_else(|| ExecutorError::Config("the language table has no programs".into()))?;
    let others = programs().flat_map(|l| {
        [
            StepRlimits::for_step(&l.compile_limits, COMPILE_MAX_FILE_BYTES),
            StepRlimits::for_step(&l.max_limits, run_file_bytes(&l.max_limits)),
        ]
    });
    let go_cache = go_cache::bind(config.go_cache.as_deref(), config.kind.binds_directories());
    let plan = SandboxPlan::new(
        default.memory_mb,
        StepRlimits::for_step(&default, run_file_bytes(&default)),
        others,
        go_cache.into_iter().collect(),
        system::dirs_for(programs()),
    );
    let user = SandboxUser::for_job(&cola_wire::JobId::new(), config.uid_base, config.uid_count)?;
    let disk = disk_allowance(config, job_dir, &default);
    let workspace = Workspace::create(job_dir, user.host_ids(), disk)?;
    let sandbox = start_sandbox(config, &user, &workspace, &plan)?;
    Ok(PreparedSandbox {
        sandbox,
        workspace,
        user,
    })
}

/// A thread that starts a standby sandbox at once, then runs the job it is given in it (or,
/// when the standby cannot serve it, in a sandbox of the job's own). bubblewrap dies with the
/// thread that started it (`PR_SET_PDEATHSIG`), so this thread lives until its job is done.
/// Dropped without a job, it stops the sandbox and removes its workspace before it returns.
#[derive(Debug)]
pub(super) struct StandbyThread {
    work: Option<std::sync::mpsc::Sender<StandbyWork>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A job for a [`StandbyThread`], and where its execution goes.
struct StandbyWork {
    run: JobRun,
    done: tokio::sync::oneshot::Sender<Result<Execution, ExecutorError>>,
}

impl StandbyThread {
    /// Starts the thread; `None` (and a warning) when no thread can be started.
    pub(super) fn spawn(config: &SandboxConfig, job_dir: &Path) -> Option<Self> {
        let (work, jobs) = std::sync::mpsc::channel::<StandbyWork>();
        let (config, job_dir) = (config.clone(), job_dir.to_owned());
        let thread = std::thread::Builder::new()
            .name("standby-sandbox".into())
            .spawn(move || {
                let standby = start_standby(&config, &job_dir)
                    .inspect_err(|e| {
                        tracing::warn!(error = %e, "cannot pre-start a sandbox; the job will start its own")
                    })
                    .ok();
                let Ok(work) = jobs.recv() else {
                    return;
                };
                let executed = execute_blocking(work.run, &job_dir, &config, standby);
                let _ = work.done.send(executed);
            });
        match thread {
            Ok(thread) => Some(Self {
                work: Some(work),
                thread: Some(thread),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a thread to pre-start a sandbox");
                None
            }
        }
    }

    /// [`super::steps::spawn_execute`], on this thread.
    pub(super) fn execute(
        mut self,
        run: JobRun,
    ) -> tokio::task::JoinHandle<Result<Execution, ExecutorError>> {
        let (done, executed) = tokio::sync::oneshot::channel();
        if let Some(work) = self.work.take() {
            let _ = work.send(StandbyWork { run, done });
        }
        // The thread ends by itself once the job is done: nobody waits for it here.
        self.thread.take();
        tokio::spawn(async move {
            executed.await.unwrap_or_else(|_| {
                Err(ExecutorError::Worker(
                    "the sandbox thread ended without an outcome".into(),
                ))
            })
        })
    }
}

impl Drop for StandbyThread {
    /// Without a job: stops the standby sandbox, waiting until it and its workspace are gone.
    fn drop(&mut self) {
        self.work.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cola_wire::Status;

    use super::*;
    use crate::runner::{
        steps::joined,
        test_support::{c_inputs, c_job, test_config},
    };

    /// Prints when the sandbox's PID 1 started, in clock ticks since boot.
    const INIT_STARTED: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
    char buf[1024];
    FILE *f = fopen("/proc/1/stat", "r");
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    int field = 2;
    for (char *t = strtok(strrchr(buf, ')') + 2, " "); t; t = strtok(NULL, " "))
        if (++field == 22) printf("%s\n", t);
    return 0;
}
"#;

    /// Clock ticks since boot, now.
    fn ticks_since_boot() -> u64 {
        let uptime = std::fs::read_to_string("/proc/uptime").unwrap();
        let seconds: f64 = uptime.split_whitespace().next().unwrap().parse().unwrap();
        let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .unwrap()
            .unwrap();
        (seconds * tick as f64) as u64
    }

    #[tokio::test]
    async fn a_pre_started_sandbox_runs_a_job_that_fits_and_leaves_nothing_behind() {
        let c = &languages()[0];
        let config = test_config();
        let inputs = c_inputs(INIT_STARTED);
        let init_started = |done: &Execution| -> u64 {
            assert_eq!(done.report.status, Status::Succeeded, "{:?}", done.report);
            done.report.stdout.trim().parse().unwrap()
        };

        // A job with the default limits runs in the sandbox started before it came.
        let dir = tempfile::tempdir().unwrap();
        let standby = StandbyThread::spawn(&config, dir.path()).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let came = ticks_since_boot();
        let done = joined(standby.execute(JobRun::new(c, &c_job(), inputs.clone(), None)))
            .await
            .unwrap();
        assert!(init_started(&done) < came, "{came}: {:?}", done.report);
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "the workspace is gone"
        );

        // One with other limits gets a sandbox of its own.
        let dir = tempfile::tempdir().unwrap();
        let standby = StandbyThread::spawn(&config, dir.path()).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut job = c_job();
        job.limits.memory_mb /= 2;
        let came = ticks_since_boot();
        let done = joined(standby.execute(JobRun::new(c, &job, inputs.clone(), None)))
            .await
            .unwrap();
        // (`/proc/uptime` and a start time may round a tick apart.)
        assert!(init_started(&done) + 1 >= came, "{came}: {:?}", done.report);

        // Dropped without a job, it stops its sandbox and removes its workspace.
        let dir = tempfile::tempdir().unwrap();
        let standby = StandbyThread::spawn(&config, dir.path()).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(dir.path().join("fs").is_dir(), "the standby's workspace");
        drop(standby);
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "the workspace is gone"
        );
    }
}
