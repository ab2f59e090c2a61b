//! Starting `bwrap` under limits, feeding and draining it, and waiting for it with a deadline.

use std::{
    fs::File,
    io::{self, PipeReader, PipeWriter, Read, Write},
    os::{
        fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd},
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
    sys::{
        resource::{Resource, setrlimit},
        signal::{Signal, killpg},
    },
    unistd::Pid,
};

use super::check;
use super::{
    Output, Step,
    bwrap::{self, Binds},
    staging::Staging,
    verdict::{Ending, Kill, StepOutcome},
};
use crate::error::{ExecutorError, IoContext};

/// Processes of the sandbox's own (bubblewrap's monitor and the PID-1 shell) that count against
/// `RLIMIT_NPROC` on top of what the program may have.
const SANDBOX_PROCESSES: u64 = 2;
/// Open files per process.
const MAX_OPEN_FILES: u64 = 256;
/// The largest stack a process may have (less if its memory limit is smaller): Linux's usual
/// 8 MiB. glibc also reserves this much for every thread's stack, and those reservations count
/// against RLIMIT_DATA: with 64 MiB stacks, Node.js cannot start its threads under 128 MB.
const MAX_STACK_BYTES: u64 = 8 << 20;

/// Runs `step` in bubblewrap as `host_ids` (or as the current user) and waits for it.
pub(super) fn run(
    bwrap_bin: &Path,
    work_dir: &Path,
    host_ids: Option<(u32, u32)>,
    step: &Step,
) -> Result<StepOutcome, ExecutorError> {
    let (status_reader, status_writer) = io::pipe().context(|| "creating the status pipe")?;
    let (switch, binds) = user_switch(host_ids, work_dir, &step.read_only)?;
    let mut command = Command::new(bwrap_bin);
    command
        .args(bwrap::arguments(&binds, step, status_writer.as_raw_fd()))
        .env_clear()
        .stdin(open_stdin(step.stdin.as_deref())?)
        .process_group(0);
    let setup = ChildSetup {
        switch,
        rlimits: Rlimits::for_step(&step.limits, step.max_file_bytes),
        status_fd: Some(status_writer.as_raw_fd()),
        parent: std::process::id(),
    };
    let name = bwrap_bin.display().to_string();
    let (waited, killed, output_bytes) = spawn_and_supervise(command, setup, step, &name, || {
        // Our copy of the status pipe's write end must go, or its reader would never see EOF.
        drop(status_writer)
    })?;
    let ending = match command_status(status_reader)? {
        Some(status) => Ending::from_shell_status(status),
        None if killed.is_some() => waited.ending,
        None => return Err(setup_failure(&step.output)),
    };
    Ok(StepOutcome {
        ending,
        killed,
        wall: waited.elapsed,
        cpu: waited.cpu,
        peak_memory_kb: waited.peak_memory_kb,
        output_bytes,
    })
}

/// Runs `step` directly as the executor's own user, without bubblewrap: the container the
/// executor runs in is the sandbox. The same rlimits (but `RLIMIT_NPROC`, which counts every
/// process of the uid on the host, so containers sharing a uid would share it: the container's
/// pids limit bounds processes instead), the same cleared environment, no inherited descriptor,
/// the process group killed at the wall time. When the executor is PID 1 of its container, every
/// process the step left behind (also those that left the process group) is killed and reaped
/// once the step ends.
pub(super) fn run_direct(work_dir: &Path, step: &Step) -> Result<StepOutcome, ExecutorError> {
    if !step.read_only.is_empty() {
        return Err(ExecutorError::Config(
            "the container sandbox cannot bind directories into a step".into(),
        ));
    }
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
    let setup = ChildSetup {
        switch: None,
        rlimits: Rlimits {
            processes: None,
            ..Rlimits::for_step(&step.limits, step.max_file_bytes)
        },
        status_fd: None,
        parent: std::process::id(),
    };
    let spawned = spawn_and_supervise(command, setup, step, program, || {});
    if std::process::id() == 1 {
        kill_everything_else();
    }
    let (waited, killed, output_bytes) = spawned?;
    Ok(StepOutcome {
        ending: waited.ending,
        killed,
        wall: waited.elapsed,
        cpu: waited.cpu,
        peak_memory_kb: waited.peak_memory_kb,
        output_bytes,
    })
}

/// Starts `command` (its process group led by the child, `setup` applied between `fork` and
/// `exec`), copies its output under the step's cap and waits for it under the wall-time limit.
/// `after_spawn` drops what the parent must not keep open once the child has it.
fn spawn_and_supervise(
    mut command: Command,
    mut setup: ChildSetup,
    step: &Step,
    name: &str,
    after_spawn: impl FnOnce(),
) -> Result<(Waited, Option<Kill>, u64), ExecutorError> {
    let sinks = connect_output(&mut command, &step.output)?;
    // SAFETY: the closure only makes async-signal-safe system calls and does not allocate.
    unsafe {
        command.pre_exec(move || setup.apply());
    }
    let budget = OutputBudget::new(step.limits.output_kb * 1024);
    let group = OnceLock::new();
    let (budget, group) = (&budget, &group);
    thread::scope(|scope| {
        // The output readers start before the step: a step that uses up every process its
        // container allows (a fork bomb under a pids limit) must not keep them from starting.
        let pumps: Vec<_> = sinks
            .into_iter()
            .map(|(reader, file)| scope.spawn(move || pump(reader, file, budget, group)))
            .collect();
        let started = Instant::now();
        let spawned = command.spawn();
        // Our copies of the pipes' write ends must go, or the readers would never see EOF.
        drop(command);
        after_spawn();
        let waited = spawned.map(|child| {
            let group = group.get_or_init(|| Group::new(child.id() as i32));
            let waited = wait_with_deadline(group, started, wall_limit(&step.limits));
            if waited.is_err() {
                // The step cannot be watched any more: stop it, so that the readers end too.
                group.kill(Kill::WallTime);
            }
            waited
        });
        let pumped = pumps
            .into_iter()
            .map(|p| {
                p.join()
                    .unwrap_or_else(|_| Err(io::Error::other("output reader panicked")))
            })
            .try_fold(0u64, |total, bytes| bytes.map(|b| total + b));
        let waited = waited
            .context(|| format!("starting {name}"))?
            .context(|| "waiting for the sandbox")?;
        let pumped = pumped.context(|| "waiting for the sandbox")?;
        Ok((waited, group.get().and_then(Group::killed_for), pumped))
    })
}

/// As PID 1 of a container: SIGKILLs every other process of the container (`kill(-1)` spares
/// only the caller) and reaps them all.
fn kill_everything_else() {
    // SAFETY: plain system calls. The caller is PID 1, so -1 means "this container's processes".
    unsafe {
        libc::kill(-1, libc::SIGKILL);
        let mut status = 0;
        while libc::waitpid(-1, &mut status, 0) > 0
            || io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
        {}
    }
}

fn wall_limit(limits: &Limits) -> Duration {
    Duration::from_millis(limits.wall_time_ms)
}

fn open_stdin(path: Option<&Path>) -> Result<File, ExecutorError> {
    let path = path.unwrap_or(Path::new("/dev/null"));
    File::open(path).context(|| format!("opening stdin {}", path.display()))
}

/// Gives the child the write ends of fresh pipes for its output; returns each read end with
/// the file it is copied to.
fn connect_output(
    command: &mut Command,
    output: &Output,
) -> Result<Vec<(PipeReader, File)>, ExecutorError> {
    let pipe = || io::pipe().context(|| "creating an output pipe");
    let create =
        |path: &Path| File::create(path).context(|| format!("creating {}", path.display()));
    match output {
        Output::Separate { stdout, stderr } => {
            let (out_reader, out_writer) = pipe()?;
            let (err_reader, err_writer) = pipe()?;
            command.stdout(out_writer).stderr(err_writer);
            Ok(vec![
                (out_reader, create(stdout)?),
                (err_reader, create(stderr)?),
            ])
        }
        Output::Merged(path) => {
            let (reader, writer) = pipe()?;
            let writer2: PipeWriter = writer
                .try_clone()
                .context(|| "duplicating an output pipe")?;
            command.stdout(writer).stderr(writer2);
            Ok(vec![(reader, create(path)?)])
        }
    }
}

/// The resource limits of one step, applied in the child before `bwrap` starts.
#[derive(Debug, Clone, Copy)]
struct Rlimits {
    cpu_seconds: u64,
    data_bytes: u64,
    /// `RLIMIT_NPROC`, where it can be used (see [`run_direct`]).
    processes: Option<u64>,
    file_bytes: u64,
    stack_bytes: u64,
}

impl Rlimits {
    fn for_step(limits: &Limits, max_file_bytes: u64) -> Self {
        let data_bytes = limits.memory_mb << 20;
        Self {
            cpu_seconds: limits.cpu_time_ms.div_ceil(1000),
            // Not RLIMIT_AS: V8 and the Go runtime reserve far more address space than they use.
            data_bytes,
            processes: Some(limits.processes + SANDBOX_PROCESSES),
            file_bytes: max_file_bytes,
            stack_bytes: data_bytes.min(MAX_STACK_BYTES),
        }
    }

    /// Sets the limits on the calling process. Async-signal-safe.
    fn apply(&self) -> nix::Result<()> {
        // SIGXCPU at the limit, SIGKILL a second later if the program ignores it.
        setrlimit(Resource::RLIMIT_CPU, self.cpu_seconds, self.cpu_seconds + 1)?;
        setrlimit(Resource::RLIMIT_DATA, self.data_bytes, self.data_bytes)?;
        if let Some(processes) = self.processes {
            setrlimit(Resource::RLIMIT_NPROC, processes, processes)?;
        }
        setrlimit(Resource::RLIMIT_NOFILE, MAX_OPEN_FILES, MAX_OPEN_FILES)?;
        setrlimit(Resource::RLIMIT_FSIZE, self.file_bytes, self.file_bytes)?;
        setrlimit(Resource::RLIMIT_CORE, 0, 0)?;
        setrlimit(Resource::RLIMIT_STACK, self.stack_bytes, self.stack_bytes)
    }
}

/// The switch from root to the job's uid and gid, with the job's directories staged where
/// that uid can reach them.
struct UserSwitch {
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
fn user_switch(
    host_ids: Option<(u32, u32)>,
    work_dir: &Path,
    read_only: &[(PathBuf, String)],
) -> Result<(Option<UserSwitch>, Binds), ExecutorError> {
    let hosts: Vec<&Path> = std::iter::once(work_dir)
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
struct ChildSetup {
    switch: Option<UserSwitch>,
    rlimits: Rlimits,
    /// bubblewrap's status pipe, the one descriptor beyond stdio the child keeps.
    status_fd: Option<RawFd>,
    parent: u32,
}

impl ChildSetup {
    /// Stage and switch user (as root), limits, no inherited descriptors but the status pipe,
    /// and death when the executor dies. Async-signal-safe: no allocation.
    fn apply(&mut self) -> io::Result<()> {
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
            if let Some(fd) = self.status_fd {
                check(libc::fcntl(fd, libc::F_SETFD, 0))?;
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
struct Group {
    leader: Pid,
    state: Mutex<GroupState>,
}

#[derive(Default)]
struct GroupState {
    reaped: bool,
    killed_for: Option<Kill>,
}

impl Group {
    fn new(leader: i32) -> Self {
        Self {
            leader: Pid::from_raw(leader),
            state: Mutex::new(GroupState::default()),
        }
    }

    /// SIGKILLs the group, remembering the first reason.
    fn kill(&self, why: Kill) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.reaped {
            return;
        }
        state.killed_for.get_or_insert(why);
        let _ = killpg(self.leader, Signal::SIGKILL);
    }

    fn killed_for(&self) -> Option<Kill> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .killed_for
    }

    fn mark_reaped(&self) {
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

/// Copies `source` into `sink` while the budget lasts; kills the group when output goes beyond
/// it, then drains the pipe until the sandbox is gone. Returns the bytes kept.
/// Copies `source` into `sink` within `budget`; past it, kills the step's process group (which
/// is set once the step started: output comes only after that).
fn pump(
    mut source: PipeReader,
    mut sink: File,
    budget: &OutputBudget,
    group: &OnceLock<Group>,
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
            group.wait().kill(Kill::Output);
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

/// Waits for bubblewrap to exit, killing its group when `wall` has passed since `started`; then
/// reaps it, with the resource usage of everything it (and the sandbox) waited for.
fn wait_with_deadline(group: &Group, started: Instant, wall: Duration) -> io::Result<Waited> {
    let pidfd = pidfd_open(group.leader)?;
    let deadline = started + wall;
    loop {
        let timeout = match group.killed_for() {
            Some(_) => None,
            None => Some(deadline.saturating_duration_since(Instant::now())),
        };
        if has_exited(&pidfd, timeout)? {
            break;
        }
        if Instant::now() >= deadline {
            group.kill(Kill::WallTime);
        }
    }
    let elapsed = started.elapsed();
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
    let timeout_ms = timeout.map_or(-1, |t| {
        libc::c_int::try_from(t.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX)
    });
    let mut poll = libc::pollfd {
        fd: pidfd.as_fd().as_raw_fd(),
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

fn wait4(pid: Pid) -> io::Result<(libc::c_int, libc::rusage)> {
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

fn ending_of(status: libc::c_int) -> Ending {
    if libc::WIFSIGNALED(status) {
        Ending::Signaled(libc::WTERMSIG(status))
    } else {
        Ending::Exited(libc::WEXITSTATUS(status))
    }
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

/// The command's exit status from bubblewrap's JSON status; `None` when the command never
/// started (bubblewrap writes `exit-code` only once the sandbox was set up).
fn command_status(mut status: PipeReader) -> Result<Option<i32>, ExecutorError> {
    let mut json = Vec::new();
    status
        .read_to_end(&mut json)
        .context(|| "reading bubblewrap's status")?;
    Ok(serde_json::Deserializer::from_slice(&json)
        .into_iter::<serde_json::Value>()
        .filter_map(Result::ok)
        .find_map(|doc| doc.get("exit-code")?.as_i64())
        .and_then(|code| i32::try_from(code).ok()))
}

/// The error for a sandbox that could not be set up, with what bubblewrap said about it.
fn setup_failure(output: &Output) -> ExecutorError {
    let stderr = match output {
        Output::Separate { stderr, .. } => stderr,
        Output::Merged(path) => path,
    };
    let said = std::fs::read(stderr).unwrap_or_default();
    let said = String::from_utf8_lossy(&said[..said.len().min(4096)]);
    ExecutorError::Sandbox(said.trim().to_owned())
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

    #[test]
    fn rlimits_follow_the_limits() {
        let limits = Limits {
            wall_time_ms: 2_000,
            cpu_time_ms: 1_001,
            memory_mb: 32,
            processes: 10,
            output_kb: 64,
        };
        let r = Rlimits::for_step(&limits, 4096);
        assert_eq!(r.cpu_seconds, 2);
        assert_eq!(r.data_bytes, 32 << 20);
        assert_eq!(r.processes, Some(12));
        assert_eq!(r.file_bytes, 4096);
        assert_eq!(r.stack_bytes, 8 << 20);
        let tiny = Rlimits::for_step(
            &Limits {
                memory_mb: 4,
                ..limits
            },
            4096,
        );
        assert_eq!(tiny.stack_bytes, 4 << 20);
    }

    #[test]
    fn the_status_pipe_tells_whether_the_command_ran() {
        let (reader, mut writer) = io::pipe().unwrap();
        writer
            .write_all(b"{ \"child-pid\": 12 }\n{ \"exit-code\": 139 }\n")
            .unwrap();
        drop(writer);
        assert_eq!(command_status(reader).unwrap(), Some(139));
        let (reader, mut writer) = io::pipe().unwrap();
        writer.write_all(b"{ \"child-pid\": 12 }\n").unwrap();
        drop(writer);
        assert_eq!(command_status(reader).unwrap(), None);
    }
}
