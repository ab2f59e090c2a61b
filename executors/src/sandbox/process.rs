//! What starting a sandboxed process takes: rlimits, the switch to the job's uid and the
//! staging of its directories between `fork` and `exec`, the output pipes under their cap, the
//! process group killed at a deadline; and the container mode's steps, run directly.

use std::{
    fs::File,
    io::{self, PipeReader, PipeWriter, Read, Write},
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
        unix::process::CommandExt,
    },
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use cola_wire::Limits;
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};

use super::{
    Output, Step, WritableDirs,
    bwrap::Binds,
    cgroup::CgroupJoin,
    check,
    container::CpuMeter,
    create_file,
    init::StepRlimits,
    staging::Staging,
    verdict::{Ending, Kill, StepOutcome},
};
use crate::error::{ExecutorError, IoContext};

/// Runs `step` directly as the executor's own user, without bubblewrap: the container the
/// executor runs in is the sandbox. The same rlimits (but `RLIMIT_NPROC`, which counts every
/// process of the uid on the host, so containers sharing a uid would share it: the container's
/// pids limit bounds processes instead), the same cleared environment, no inherited descriptor,
/// the process group killed at the wall time.
///
/// When the executor is PID 1 of its container, the step is held as strictly as in the
/// sandbox's init: its CPU limit is the CPU time of everything in the container (read from the
/// container's cgroup), so processes that left the step's process group count too, and when the
/// step's main process ends, every other process of the container is killed and reaped at once,
/// before the step's output is waited for: nothing the step started can hold its output open,
/// keep burning CPU or outlive it.
pub(super) fn run_direct(work_dir: &Path, step: &Step) -> Result<StepOutcome, ExecutorError> {
    let (program, args) = step
        .command
        .split_first()
        .ok_or_else(|| ExecutorError::Config("a step without a command".into()))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(super::BASE_ENV.iter().map(|(k, v)| (*k, *v)))
        .envs(step.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(work_dir)
        .stdin(open_stdin(step.stdin.as_deref())?)
        .process_group(0);
    let mut setup = ChildSetup {
        cgroup: None,
        switch: None,
        rlimits: StepRlimits {
            processes: None,
            ..StepRlimits::for_step(&step.limits, step.max_file_bytes)
        },
        keep: Vec::new(),
        parent: std::process::id(),
    };
    // SAFETY: the closure only makes async-signal-safe system calls and does not allocate.
    unsafe {
        command.pre_exec(move || setup.apply());
    }
    let pid_1 = std::process::id() == 1;
    let meter = CpuMeter::start();
    let budget = Budget {
        wall: Duration::from_millis(step.limits.wall_time_ms),
        cpu: meter
            .as_ref()
            .map(|meter| (meter, Duration::from_millis(step.limits.cpu_time_ms))),
    };
    let group = OnceLock::<Group>::new();
    let overflow = || group.wait().kill(Kill::Output);
    let supervised = supervise_output(&step.output, &step.limits, &overflow, |[stdout, stderr]| {
        command.stdout(stdout).stderr(stderr);
        let started = Instant::now();
        let spawned = command.spawn();
        // Our copies of the pipes' write ends must go, or the readers would never see EOF.
        drop(command);
        let child = spawned.context(|| format!("starting {program}"))?;
        let group = group.get_or_init(|| Group::new(child.id() as i32));
        let waited = wait_with_deadline(group, started, &budget);
        if waited.is_err() {
            // The step cannot be watched any more: stop it, so that the readers end too.
            group.kill(Kill::WallTime);
        }
        if pid_1 {
            // The step ended with its main process: what it left goes now, not once the readers
            // are done (a process that keeps stdout open would keep them, and the job, waiting).
            kill_everything_else();
        }
        waited.context(|| "waiting for the step")
    });
    let (waited, output_bytes) = supervised?;
    let waited = waited?;
    // Every process of the step is gone: the container's count is final.
    let cpu = match &meter {
        Some(meter) => meter
            .used()
            .context(|| "reading the container's CPU time")?
            .max(waited.cpu),
        None => waited.cpu,
    };
    Ok(StepOutcome {
        ending: waited.ending,
        killed: group.get().and_then(Group::killed_for),
        wall: waited.elapsed,
        cpu,
        peak_memory_kb: waited.peak_memory_kb,
        output_bytes,
        // The container's cgroup is the backend's to read.
        oom_killed: None,
    })
}

/// Gives `body` the write ends of the step's output pipes (stdout, stderr: the same pipe when
/// merged) while threads copy what comes out of them into the step's files under its output
/// cap, calling `on_overflow` once output goes beyond it; returns what `body` returned and the
/// bytes kept once every writer is gone.
pub(super) fn supervise_output<T>(
    output: &Output,
    limits: &Limits,
    on_overflow: &(dyn Fn() + Sync),
    body: impl FnOnce([PipeWriter; 2]) -> T,
) -> Result<(T, u64), ExecutorError> {
    let (sinks, writers) = output_pipes(output)?;
    let budget = OutputBudget::new(limits.output_kb * 1024);
    let budget = &budget;
    thread::scope(|scope| {
        // The readers start before the step: a step that uses up every process its container
        // allows (a fork bomb under a pids limit) must not keep them from starting.
        let pumps: Vec<_> = sinks
            .into_iter()
            .map(|(reader, file)| scope.spawn(move || pump(reader, file, budget, on_overflow)))
            .collect();
        let result = body(writers);
        let pumped = pumps
            .into_iter()
            .map(|p| {
                p.join()
                    .unwrap_or_else(|_| Err(io::Error::other("output reader panicked")))
            })
            .try_fold(0u64, |total, bytes| bytes.map(|b| total + b));
        let pumped = pumped.context(|| "copying the step's output")?;
        Ok((result, pumped))
    })
}

/// As PID 1 of a container or a sandbox: SIGKILLs every other process in its PID namespace
/// (`kill(-1)` spares only the caller) and reaps them all.
pub(super) fn kill_everything_else() {
    kill_all_others();
    // SAFETY: plain system calls.
    unsafe {
        let mut status = 0;
        while libc::waitpid(-1, &mut status, 0) > 0
            || io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
        {}
    }
}

/// As PID 1 of a container: SIGKILLs every other process in it, without reaping them.
fn kill_all_others() {
    // SAFETY: a plain system call. The caller is PID 1, so -1 means "this container's
    // processes" (and never the caller itself).
    unsafe {
        libc::kill(-1, libc::SIGKILL);
    }
}

pub(super) fn open_stdin(path: Option<&Path>) -> Result<File, ExecutorError> {
    let path = path.unwrap_or(Path::new("/dev/null"));
    File::open(path).context(|| format!("opening stdin {}", path.display()))
}

/// A pipe's read end and the file what comes out of it is copied to.
type Sink = (PipeReader, File);

/// Fresh pipes for a step's output: each read end with the file it is copied to, and the write
/// ends for stdout and stderr.
fn output_pipes(output: &Output) -> Result<(Vec<Sink>, [PipeWriter; 2]), ExecutorError> {
    let pipe = || io::pipe().context(|| "creating an output pipe");
    let create = |path: &Path| create_file(path, 0o600);
    match output {
        Output::Separate { stdout, stderr } => {
            let (out_reader, out_writer) = pipe()?;
            let (err_reader, err_writer) = pipe()?;
            let sinks = vec![(out_reader, create(stdout)?), (err_reader, create(stderr)?)];
            Ok((sinks, [out_writer, err_writer]))
        }
        Output::Merged(path) => {
            let (reader, writer) = pipe()?;
            let writer2 = writer
                .try_clone()
                .context(|| "duplicating an output pipe")?;
            Ok((vec![(reader, create(path)?)], [writer, writer2]))
        }
    }
}

/// The switch from root to the job's uid and gid, with the job's directories staged where
/// that uid can reach them.
pub(super) struct UserSwitch {
    uid: libc::uid_t,
    gid: libc::gid_t,
    staging: Staging,
}

impl UserSwitch {
    /// Async-signal-safe.
    fn apply(&mut self) -> io::Result<()> {
        self.staging.apply()?;
        // SAFETY: plain system calls; no supplementary group may stay (root's would).
        unsafe {
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setgid(self.gid))?;
            check(libc::setuid(self.uid))?;
        }
        Ok(())
    }
}

/// The user switch for `host_ids` (none when the executor is not root), and the directories
/// bubblewrap binds, by the paths bubblewrap can reach them at.
pub(super) fn user_switch(
    host_ids: Option<(u32, u32)>,
    dirs: &WritableDirs,
    read_only: &[(PathBuf, String)],
) -> Result<(Option<UserSwitch>, Binds), ExecutorError> {
    let hosts: Vec<&Path> = [dirs.work.as_path(), dirs.tmp.as_path()]
        .into_iter()
        .chain(read_only.iter().map(|(host, _)| host.as_path()))
        .collect();
    let Some((uid, gid)) = host_ids else {
        return Ok((None, Binds::new(&hosts, read_only)));
    };
    let (staging, staged) = Staging::new(&hosts).context(|| "staging the job's directories")?;
    let staged: Vec<&Path> = staged.iter().map(PathBuf::as_path).collect();
    let switch = UserSwitch { uid, gid, staging };
    Ok((Some(switch), Binds::new(&staged, read_only)))
}

/// Everything the child does between `fork` and `exec`.
pub(super) struct ChildSetup {
    /// The job's cgroup, joined while still root.
    pub cgroup: Option<CgroupJoin>,
    pub switch: Option<UserSwitch>,
    pub rlimits: StepRlimits,
    /// The descriptors beyond stdio the child keeps.
    pub keep: Vec<RawFd>,
    pub parent: u32,
}

impl ChildSetup {
    /// Join the job's cgroup, stage and switch user (as root), limits, no inherited
    /// descriptors but the status pipe, and death when the executor dies. Async-signal-safe:
    /// no allocation.
    pub fn apply(&mut self) -> io::Result<()> {
        if let Some(cgroup) = &self.cgroup {
            cgroup.apply()?;
        }
        if let Some(switch) = &mut self.switch {
            switch.apply()?;
        }
        self.rlimits.apply()?;
        // Nothing the executor holds (NATS sockets, files) may leak into the sandbox, even a
        // descriptor someone opened without O_CLOEXEC. Kernels without close_range keep relying
        // on O_CLOEXEC, which Rust sets everywhere.
        // SAFETY: plain system calls on integers.
        unsafe {
            libc::close_range(
                3,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
            );
            for fd in &self.keep {
                check(libc::fcntl(*fd, libc::F_SETFD, 0))?;
            }
            // bubblewrap dies with the executor's thread that started it (and takes the sandbox
            // with it, through --die-with-parent). Set after the user switch, which clears it.
            check(libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
            ))?;
            if libc::getppid() as u32 != self.parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
        Ok(())
    }
}

/// bubblewrap's process group, killed as a whole; never signalled after it has been reaped
/// (its id could belong to someone else by then).
#[derive(Debug)]
pub(super) struct Group {
    leader: Pid,
    state: Mutex<GroupState>,
}

#[derive(Debug, Default)]
struct GroupState {
    reaped: bool,
    killed_for: Option<Kill>,
}

impl Group {
    pub fn leader(&self) -> Pid {
        self.leader
    }

    pub fn new(leader: i32) -> Self {
        Self {
            leader: Pid::from_raw(leader),
            state: Mutex::new(GroupState::default()),
        }
    }

    /// SIGKILLs the group, remembering the first reason.
    pub fn kill(&self, why: Kill) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.reaped {
            return;
        }
        state.killed_for.get_or_insert(why);
        let _ = killpg(self.leader, Signal::SIGKILL);
    }

    /// SIGKILLs what is left of the group once its leader has exited, before the leader is
    /// reaped (until then, the group's id cannot belong to anyone else).
    fn kill_rest(&self) {
        let _ = killpg(self.leader, Signal::SIGKILL);
    }

    pub fn killed_for(&self) -> Option<Kill> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .killed_for
    }

    pub fn mark_reaped(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).reaped = true;
    }
}

/// How many more bytes of output the step may write, shared by stdout and stderr.
struct OutputBudget(AtomicU64);

impl OutputBudget {
    fn new(bytes: u64) -> Self {
        Self(AtomicU64::new(bytes))
    }

    /// Takes up to `wanted` bytes from the budget; returns how many were granted.
    fn take(&self, wanted: u64) -> u64 {
        let before = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                Some(left.saturating_sub(wanted))
            })
            .unwrap_or(0);
        before.min(wanted)
    }
}

/// Copies `source` into `sink` while the budget lasts; calls `on_overflow` when output goes
/// beyond it, then drains the pipe until its writers are gone. Returns the bytes kept.
fn pump(
    mut source: PipeReader,
    mut sink: File,
    budget: &OutputBudget,
    on_overflow: &(dyn Fn() + Sync),
) -> io::Result<u64> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut kept = 0u64;
    loop {
        let n = match source.read(&mut buffer) {
            Ok(0) => return Ok(kept),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let granted = budget.take(n as u64);
        sink.write_all(&buffer[..granted as usize])?;
        kept += granted;
        if granted < n as u64 {
            on_overflow();
        }
    }
}

/// What `wait4` said about bubblewrap.
struct Waited {
    ending: Ending,
    elapsed: Duration,
    cpu: Duration,
    peak_memory_kb: u64,
}

/// What a directly run step may use: wall time, and CPU time of its whole container when the
/// container can be metered.
struct Budget<'a> {
    wall: Duration,
    cpu: Option<(&'a CpuMeter, Duration)>,
}

/// How often the container's CPU time is read while a step runs.
const CPU_POLL: Duration = Duration::from_millis(50);

/// Waits for the step's main process to exit, killing its group when the wall time has passed
/// since `started`, or everything in the container when the container's CPU time goes beyond
/// the budget; then kills what is left of the group and reaps the main process, with the
/// resource usage of everything it waited for.
fn wait_with_deadline(group: &Group, started: Instant, budget: &Budget) -> io::Result<Waited> {
    let pidfd = pidfd_open(group.leader)?;
    let deadline = started + budget.wall;
    let mut over_cpu = false;
    loop {
        let timeout = match group.killed_for() {
            Some(_) => None,
            None => {
                let left = deadline.saturating_duration_since(Instant::now());
                Some(match budget.cpu {
                    Some(_) if !over_cpu => left.min(CPU_POLL),
                    _ => left,
                })
            }
        };
        if has_exited(&pidfd, timeout)? {
            break;
        }
        if Instant::now() >= deadline {
            group.kill(Kill::WallTime);
        } else if let Some((meter, cpu)) = budget.cpu
            && !over_cpu
            && meter.used()? > cpu
        {
            // Whatever process used it (also one outside the group): the CPU time is the
            // step's, and the verdict reads it from the meter.
            over_cpu = true;
            kill_all_others();
        }
    }
    let elapsed = started.elapsed();
    group.kill_rest();
    group.mark_reaped();
    let (status, usage) = wait4(group.leader)?;
    Ok(Waited {
        ending: ending_of(status),
        elapsed,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        peak_memory_kb: u64::try_from(usage.ru_maxrss).unwrap_or(0),
    })
}

fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether the process behind `pidfd` exits within `timeout` (`None`: wait as long as it takes).
fn has_exited(pidfd: &OwnedFd, timeout: Option<Duration>) -> io::Result<bool> {
    readable_within(pidfd.as_fd(), timeout)
}

/// Whether `fd` becomes readable within `timeout` (`None`: wait as long as it takes).
pub(super) fn readable_within(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let timeout_ms = timeout.map_or(-1, |t| {
        libc::c_int::try_from(t.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX)
    });
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    match unsafe { libc::poll(&mut poll, 1, timeout_ms) } {
        -1 => match io::Error::last_os_error() {
            e if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            e => Err(e),
        },
        0 => Ok(false),
        _ => Ok(true),
    }
}

pub(super) fn wait4(pid: Pid) -> io::Result<(libc::c_int, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain old data; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to a status and a rusage.
        match unsafe { libc::wait4(pid.as_raw(), &mut status, 0, &mut usage) } {
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            -1 => return Err(io::Error::last_os_error()),
            _ => return Ok((status, usage)),
        }
    }
}

pub(super) fn ending_of(status: libc::c_int) -> Ending {
    if libc::WIFSIGNALED(status) {
        Ending::Signaled(libc::WTERMSIG(status))
    } else {
        Ending::Exited(libc::WEXITSTATUS(status))
    }
}

pub(super) fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_budget_is_shared_and_exact() {
        let budget = OutputBudget::new(10);
        assert_eq!(budget.take(4), 4);
        assert_eq!(budget.take(4), 4);
        assert_eq!(budget.take(4), 2);
        assert_eq!(budget.take(1), 0);
    }
}
