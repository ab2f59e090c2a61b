//! One bubblewrap sandbox for every step of a job: started once, with the init of [`super::init`]
//! as its PID 1, given one step at a time, killed and reaped when dropped.

use std::{
    fs::File,
    os::{
        fd::{AsFd, AsRawFd},
        unix::{net::UnixStream, process::CommandExt},
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::{
    BASE_ENV, ReadOnlyBind, Step, WORK_DIR, WritableDirs,
    bwrap::{self, SandboxShape},
    cgroup::JobCgroup,
    init::{INIT_ARG, Ready, StepReply, StepRequest, StepRlimits, recv_frame, send_frame},
    process::{self, ChildSetup, Group, supervise_output, wait4},
    verdict::{Ending, Kill, StepOutcome},
};
use crate::error::{ExecutorError, IoContext};

/// How long bubblewrap may take to set the sandbox up and start its init.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the CPU time of a step with a cgroup is checked against its limit.
const CPU_CHECK_EVERY: Duration = Duration::from_millis(25);
/// Memory a sandbox's own processes hold beside the program's (bubblewrap, the init, page
/// cache), on top of the step's memory limit in its cgroup.
const SANDBOX_MEMORY_BYTES: u64 = 16 << 20;
/// Processes of the sandbox's own in its cgroup: bubblewrap outside and the init inside.
const SANDBOX_TASKS: u64 = 2;

/// What a sandbox must allow for all the steps it will run.
#[derive(Debug, Clone)]
pub struct SandboxPlan {
    /// Host directories every step may read.
    pub read_only: Vec<ReadOnlyBind>,
    /// The size of the sandbox's `/dev/shm`: a quarter of the program's memory limit (its pages
    /// are not data memory: without a cgroup, nothing else would bound them).
    pub shm_bytes: u64,
    /// The limits no process of the sandbox may go beyond: each step lowers them to its own.
    pub ceiling: StepRlimits,
    /// The host's system directories the sandbox shows, read-only (see [`super::system`]).
    pub system: Vec<PathBuf>,
}

impl SandboxPlan {
    /// The plan for steps with the rlimits `rlimits` and `more`, whose program may use
    /// `program_memory_mb`, all of which read `read_only` and the `system` directories.
    pub fn new(
        program_memory_mb: u64,
        rlimits: StepRlimits,
        more: impl IntoIterator<Item = StepRlimits>,
        read_only: Vec<ReadOnlyBind>,
        system: Vec<PathBuf>,
    ) -> Self {
        Self {
            read_only,
            system,
            shm_bytes: (program_memory_mb << 20) / 4,
            ceiling: more.into_iter().fold(rlimits, StepRlimits::max),
        }
    }

    /// The plan for a job whose program runs as `run`, after the steps `before` (its compile),
    /// all of which read `read_only` and the `system` directories.
    pub fn for_steps(
        run: &Step,
        before: &[Step],
        read_only: Vec<ReadOnlyBind>,
        system: Vec<PathBuf>,
    ) -> Self {
        let rlimits = |step: &Step| StepRlimits::for_step(&step.limits, step.max_file_bytes);
        Self::new(
            run.limits.memory_mb,
            rlimits(run),
            before.iter().map(rlimits),
            read_only,
            system,
        )
    }

    /// Whether a sandbox made for this plan can run the steps `other` is for: the same `/dev/shm`,
    /// every directory they read, and limits at least as high as theirs.
    pub fn covers(&self, other: &SandboxPlan) -> bool {
        self.shm_bytes == other.shm_bytes
            && other.system.iter().all(|dir| self.system.contains(dir))
            && other
                .read_only
                .iter()
                .all(|bind| self.read_only.contains(bind))
            && self.ceiling.max(other.ceiling) == self.ceiling
    }
}

/// A running sandbox, waiting for steps.
#[derive(Debug)]
pub(super) struct Session {
    control: UnixStream,
    /// bubblewrap's process group.
    group: Group,
    /// bubblewrap's standard output and error: what it says when it cannot set up.
    log: PathBuf,
    /// The job's cgroup, which every process of the sandbox is in; removed (after the
    /// sandbox) when the session is dropped.
    cgroup: Option<JobCgroup>,
}

impl Session {
    /// Starts bubblewrap with `init` as its PID 1, as `host_ids` when the executor is root, in
    /// `cgroup` if there is one, and waits until the init is up.
    pub(super) fn start(
        bwrap_bin: &Path,
        init: &Path,
        dirs: &WritableDirs,
        host_ids: Option<(u32, u32)>,
        plan: &SandboxPlan,
        log: &Path,
        cgroup: Option<JobCgroup>,
    ) -> Result<Self, ExecutorError> {
        let (control, theirs) = UnixStream::pair().context(|| "creating the control socket")?;
        // Reached through a descriptor, the init needs no path inside the sandbox (nor may the
        // sandbox's uid be able to reach the directory it is in).
        let init_file = File::open(init).context(|| format!("opening {}", init.display()))?;
        let (switch, binds) = process::user_switch(host_ids, dirs, &plan.read_only)?;
        let shape = SandboxShape {
            binds: &binds,
            shm_bytes: plan.shm_bytes,
            system: &plan.system,
        };
        let mut args = bwrap::arguments(&shape);
        args.push(format!("/proc/self/fd/{}", init_file.as_raw_fd()).into());
        args.push(INIT_ARG.into());
        args.push(theirs.as_raw_fd().to_string().into());
        let log_file = File::create(log).context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(bwrap_bin);
        command
            .args(args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(
                log_file
                    .try_clone()
                    .context(|| format!("duplicating {}", log.display()))?,
            )
            .stderr(log_file)
            .process_group(0);
        let mut rlimits = plan.ceiling;
        if cgroup.is_some() {
            leave_to_cgroup(&mut rlimits);
        }
        let mut setup = ChildSetup {
            cgroup: cgroup.as_ref().map(JobCgroup::joiner),
            switch,
            rlimits,
            keep: vec![init_file.as_raw_fd(), theirs.as_raw_fd()],
            parent: std::process::id(),
        };
        // SAFETY: the closure only makes async-signal-safe system calls and does not allocate.
        unsafe {
            command.pre_exec(move || setup.apply());
        }
        let child = command
            .spawn()
            .context(|| format!("starting {}", bwrap_bin.display()))?;
        // The init's end of the socket must live only in the sandbox, or we would never see it
        // hang up.
        drop((command, theirs, init_file));
        let session = Self {
            control,
            group: Group::new(child.id() as i32),
            log: log.to_owned(),
            cgroup,
        };
        session.wait_until_ready()?;
        Ok(session)
    }

    fn wait_until_ready(&self) -> Result<(), ExecutorError> {
        let ready = self.readable_within(START_TIMEOUT)?
            && matches!(
                recv_frame::<Ready>(&self.control),
                Ok(Some((Ready { ready: true }, _)))
            );
        if ready {
            Ok(())
        } else {
            self.group.kill(Kill::WallTime);
            Err(self.setup_failure())
        }
    }

    /// Whether the init said something (or hung up) within `timeout`.
    fn readable_within(&self, timeout: Duration) -> Result<bool, ExecutorError> {
        process::readable_within(self.control.as_fd(), Some(timeout))
            .context(|| "waiting for the sandbox's init")
    }

    /// Runs `step` in the sandbox to its end and says how it ended. A step killed for its wall
    /// time, its output or its CPU time ends the sandbox: no step can run after it.
    pub(super) fn run(&self, step: &Step) -> Result<StepOutcome, ExecutorError> {
        if self.group.killed_for().is_some() {
            return Err(ExecutorError::Sandbox(
                "the sandbox was stopped by an earlier step".into(),
            ));
        }
        let stdin = process::open_stdin(step.stdin.as_deref())?;
        let mut rlimits = StepRlimits::for_step(&step.limits, step.max_file_bytes);
        let meter = match &self.cgroup {
            Some(cgroup) => {
                leave_to_cgroup(&mut rlimits);
                Some(Meter::start(cgroup, step)?)
            }
            None => None,
        };
        let request = StepRequest {
            command: step.command.clone(),
            env: BASE_ENV
                .iter()
                .chain([&("PWD", WORK_DIR)])
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .chain(step.env.iter().cloned())
                .collect(),
            rlimits,
        };
        let wall = Duration::from_millis(step.limits.wall_time_ms);
        let overflow = || self.group.kill(Kill::Output);
        let ((reply, wall_used), output_bytes) =
            supervise_output(&step.output, &step.limits, &overflow, |writers| {
                let started = Instant::now();
                let [stdout, stderr] = writers;
                let sent = send_frame(
                    &self.control,
                    &request,
                    &[stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()],
                );
                // Our copies go: the step's output ends when its processes do.
                drop((stdin, stdout, stderr));
                let reply = sent
                    .context(|| "handing the step to the sandbox")
                    .and_then(|()| self.reply_within(started + wall, meter.as_ref()));
                if reply.is_err() {
                    self.group.kill(Kill::WallTime);
                }
                (reply, started.elapsed())
            })?;
        let killed = self.group.killed_for();
        let measured = meter.map(|m| m.finish()).transpose()?;
        let oom_killed = measured.map(|m| m.oom_killed);
        let (ending, cpu, peak_memory_kb) = match reply? {
            Some(StepReply::Ended {
                wait_status,
                cpu_micros,
                peak_memory_kb,
            }) => (
                process::ending_of(wait_status),
                Duration::from_micros(cpu_micros),
                peak_memory_kb,
            ),
            // As a shell says of a command it cannot find.
            Some(StepReply::NotStarted { .. }) => (Ending::Exited(127), Duration::ZERO, 0),
            // The kernel's out-of-memory killer may pick the init or bubblewrap.
            None if killed.is_some() || oom_killed == Some(true) => {
                (Ending::Signaled(libc::SIGKILL), Duration::ZERO, 0)
            }
            None => return Err(self.setup_failure()),
        };
        Ok(StepOutcome {
            ending,
            killed,
            wall: wall_used,
            // The cgroup saw every process, also those that left the step's process tree.
            cpu: measured.map_or(cpu, |m| m.cpu.max(cpu)),
            peak_memory_kb,
            output_bytes,
            oom_killed,
        })
    }

    /// The init's reply, waiting until `deadline` at most (and, with a `meter`, while the
    /// step's CPU time lasts); `None` when the sandbox ended (or was killed) first.
    fn reply_within(
        &self,
        deadline: Instant,
        meter: Option<&Meter<'_>>,
    ) -> Result<Option<StepReply>, ExecutorError> {
        while self.group.killed_for().is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = match meter {
                Some(_) => left.min(CPU_CHECK_EVERY),
                None => left,
            };
            if self.readable_within(wait)? {
                return match recv_frame::<StepReply>(&self.control) {
                    Ok(reply) => Ok(reply.map(|(reply, _)| reply)),
                    // A sandbox that cannot speak the protocol any more has ended for us.
                    Err(_) => Ok(None),
                };
            }
            if Instant::now() >= deadline {
                self.group.kill(Kill::WallTime);
            } else if let Some(meter) = meter
                && meter.out_of_cpu()?
            {
                self.group.kill(Kill::CpuTime);
            }
        }
        Ok(None)
    }

    /// The error for a sandbox that could not be set up or died, with what bubblewrap said.
    fn setup_failure(&self) -> ExecutorError {
        let said = std::fs::read(&self.log).unwrap_or_default();
        let said = String::from_utf8_lossy(&said[..said.len().min(4096)]);
        let said = said.trim();
        ExecutorError::Sandbox(if said.is_empty() {
            "bubblewrap ended without a word".into()
        } else {
            said.to_owned()
        })
    }
}

/// What a sandbox with a cgroup leaves to it: memory (which it bounds, shared memory included:
/// no `RLIMIT_DATA`), and CPU time, which the executor measures on it across every process
/// and stops at the limit; `RLIMIT_CPU` stays a second later, a backstop whose signal always
/// comes after the limit as the cgroup measures it (the kernel's per-process count may run
/// ahead of it by a tenth).
fn leave_to_cgroup(rlimits: &mut StepRlimits) {
    rlimits.data_bytes = libc::RLIM_INFINITY;
    rlimits.cpu_seconds += 1;
}

/// A step's use of its cgroup: its limits set as it starts, then what it used.
struct Meter<'a> {
    cgroup: &'a JobCgroup,
    cpu_before: Duration,
    cpu_limit: Duration,
    oom_kills_before: u64,
}

/// What a step's cgroup measured of it.
#[derive(Debug, Clone, Copy)]
struct Measured {
    cpu: Duration,
    oom_killed: bool,
}

impl<'a> Meter<'a> {
    /// Sets `step`'s limits on `cgroup` and notes where its counters stand.
    fn start(cgroup: &'a JobCgroup, step: &Step) -> Result<Self, ExecutorError> {
        let memory = (step.limits.memory_mb << 20) + SANDBOX_MEMORY_BYTES;
        let tasks = step.limits.processes + SANDBOX_TASKS;
        cgroup
            .limit(memory, tasks)
            .context(|| "setting the step's limits on its cgroup")?;
        Ok(Self {
            cgroup,
            cpu_before: cgroup
                .cpu_used()
                .context(|| "reading the cgroup's CPU time")?,
            cpu_limit: Duration::from_millis(step.limits.cpu_time_ms),
            oom_kills_before: cgroup
                .oom_kills()
                .context(|| "reading the cgroup's out-of-memory kills")?,
        })
    }

    fn cpu_used(&self) -> Result<Duration, ExecutorError> {
        let now = self
            .cgroup
            .cpu_used()
            .context(|| "reading the cgroup's CPU time")?;
        Ok(now.saturating_sub(self.cpu_before))
    }

    fn out_of_cpu(&self) -> Result<bool, ExecutorError> {
        Ok(self.cpu_used()? >= self.cpu_limit)
    }

    fn finish(self) -> Result<Measured, ExecutorError> {
        let oom_kills = self
            .cgroup
            .oom_kills()
            .context(|| "reading the cgroup's out-of-memory kills")?;
        Ok(Measured {
            cpu: self.cpu_used()?,
            oom_killed: oom_kills > self.oom_kills_before,
        })
    }
}

impl Drop for Session {
    /// Kills whatever is left of the sandbox and reaps bubblewrap; its cgroup is removed later
    /// ([`super::cgroup::remove_left`]), once the job is reported.
    fn drop(&mut self) {
        self.group.kill(Kill::WallTime);
        self.group.mark_reaped();
        if let Err(e) = wait4(self.group.leader()) {
            tracing::warn!(error = %e, "cannot reap bubblewrap");
        }
        if let Some(cgroup) = self.cgroup.take() {
            super::cgroup::remove_later(cgroup);
        }
    }
}
