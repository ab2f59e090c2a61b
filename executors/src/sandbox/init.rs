//! PID 1 of a bubblewrap sandbox, and how the executor talks to it.
//!
//! One sandbox serves every step of a job (compile, then run): bubblewrap starts once, and its
//! PID 1 is this init (the `cola` binary, or any binary that calls [`run_if_requested`] first
//! thing in `main`), reached through a descriptor the executor passes in, so the binary needs no
//! path inside the sandbox. The executor sends one [`StepRequest`] per step over a Unix stream
//! socket, with the step's standard input, output and error as descriptors (`SCM_RIGHTS`); the
//! init starts the command as its child under the step's rlimits, waits for it, then kills and
//! reaps every other process of the sandbox (whatever the step left behind cannot outlive it, nor
//! hold its output pipes open), and answers with a [`StepReply`]: the wait status and the
//! resource usage `wait4` reports. The init is non-dumpable, so user code (the same uid) can
//! neither trace it nor open its descriptors through `/proc/1/fd`; PID 1 of a PID namespace
//! gets no signal it has no handler for from inside it, so user code cannot kill it either.
//!
//! The executor treats every reply as untrusted input: it is bounded in size and only ever fills
//! a step's outcome, which the limits are judged on.
//!
//! Frames on the socket: a 4-byte big-endian length, then that many bytes of JSON. A request's
//! descriptors travel with its first byte.

use std::{
    ffi::OsString,
    io::{self, IoSlice, IoSliceMut, Read, Write},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::{net::UnixStream, process::CommandExt},
    },
    process::{Command, Stdio},
};

use cola_wire::Limits;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::check;

/// The argument that makes a binary that calls [`run_if_requested`] act as a sandbox's init.
pub const INIT_ARG: &str = "sandbox-init";

/// The largest frame either side accepts: room for 256 arguments of 4 KiB, escaped.
const MAX_FRAME_BYTES: u32 = 8 << 20;

/// The descriptors a step request carries: stdin, stdout, stderr.
const STEP_FDS: usize = 3;

/// Processes of the sandbox's own that count against a step's `RLIMIT_NPROC` on top of what
/// the program may have: its init. (The count that limit applies to is kept per user namespace
/// since Linux 5.14: bubblewrap's monitor lives outside the sandbox's.)
const SANDBOX_PROCESSES: u64 = 1;
/// Open files per process.
const MAX_OPEN_FILES: u64 = 256;
/// The largest stack a process may have (less if its memory limit is smaller): Linux's usual
/// 8 MiB. glibc also reserves this much for every thread's stack, and those reservations count
/// against RLIMIT_DATA: with 64 MiB stacks, Node.js cannot start its threads under 128 MB.
const MAX_STACK_BYTES: u64 = 8 << 20;

/// Resource limits of one step, set in its process before `exec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRlimits {
    pub cpu_seconds: u64,
    pub data_bytes: u64,
    /// `RLIMIT_NPROC`, where it can be used.
    pub processes: Option<u64>,
    pub open_files: u64,
    pub file_bytes: u64,
    pub stack_bytes: u64,
}

impl StepRlimits {
    /// The rlimits of a step with `limits` that may write files of `max_file_bytes` at most.
    pub fn for_step(limits: &Limits, max_file_bytes: u64) -> Self {
        let data_bytes = limits.memory_mb << 20;
        Self {
            cpu_seconds: limits.cpu_time_ms.div_ceil(1000),
            // Not RLIMIT_AS: V8 and the Go runtime reserve far more address space than they use.
            data_bytes,
            processes: Some(limits.processes + SANDBOX_PROCESSES),
            open_files: MAX_OPEN_FILES,
            file_bytes: max_file_bytes,
            stack_bytes: data_bytes.min(MAX_STACK_BYTES),
        }
    }

    /// Sets the limits on the calling process. Async-signal-safe.
    pub(super) fn apply(&self) -> nix::Result<()> {
        use nix::sys::resource::{Resource, setrlimit};
        // SIGXCPU at the limit, SIGKILL a second later if the program ignores it.
        setrlimit(Resource::RLIMIT_CPU, self.cpu_seconds, self.cpu_seconds + 1)?;
        setrlimit(Resource::RLIMIT_DATA, self.data_bytes, self.data_bytes)?;
        if let Some(processes) = self.processes {
            setrlimit(Resource::RLIMIT_NPROC, processes, processes)?;
        }
        setrlimit(Resource::RLIMIT_NOFILE, self.open_files, self.open_files)?;
        setrlimit(Resource::RLIMIT_FSIZE, self.file_bytes, self.file_bytes)?;
        setrlimit(Resource::RLIMIT_CORE, 0, 0)?;
        setrlimit(Resource::RLIMIT_STACK, self.stack_bytes, self.stack_bytes)
    }

    /// The larger of each limit: what the sandbox as a whole may never go beyond.
    pub(super) fn max(self, other: Self) -> Self {
        Self {
            cpu_seconds: self.cpu_seconds.max(other.cpu_seconds),
            data_bytes: self.data_bytes.max(other.data_bytes),
            processes: self.processes.max(other.processes),
            open_files: self.open_files.max(other.open_files),
            file_bytes: self.file_bytes.max(other.file_bytes),
            stack_bytes: self.stack_bytes.max(other.stack_bytes),
        }
    }
}

/// What the init says once it is up, before any request.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Ready {
    pub ready: bool,
}

/// One step to run: the command (looked up in the step's `PATH`), in the working directory the
/// sandbox started in.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StepRequest {
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub rlimits: StepRlimits,
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum StepReply {
    /// The command ran: its wait status and what `wait4` reported of it (and of the processes
    /// it waited for).
    Ended {
        wait_status: i32,
        cpu_micros: u64,
        peak_memory_kb: u64,
    },
    /// The command could not be started (not found, not executable): the error, also written
    /// to the step's standard error.
    NotStarted { error: String },
}

/// Writes one frame, with `fds` attached to its first byte.
pub(super) fn send_frame<T: Serialize>(
    socket: &UnixStream,
    message: &T,
    fds: &[RawFd],
) -> io::Result<()> {
    let body = serde_json::to_vec(message).map_err(io::Error::other)?;
    let length = u32::try_from(body.len())
        .ok()
        .filter(|n| *n <= MAX_FRAME_BYTES)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?
        .to_be_bytes();
    let mut first = 0;
    if !fds.is_empty() {
        // The descriptors ride on the first byte; the rest follows as plain bytes.
        let rights = [ControlMessage::ScmRights(fds)];
        first = loop {
            match sendmsg::<()>(
                socket.as_raw_fd(),
                &[IoSlice::new(&length[..1])],
                &rights,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(n) => break n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
    }
    let mut writer = socket;
    writer.write_all(&length[first..])?;
    writer.write_all(&body)
}

/// Reads one frame and the descriptors that came with it; `None` at the end of the stream
/// before a frame starts.
pub(super) fn recv_frame<T: DeserializeOwned>(
    socket: &UnixStream,
) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
    let mut length = [0u8; 4];
    let mut fds = Vec::new();
    let mut space = nix::cmsg_space!([RawFd; STEP_FDS]);
    let got = loop {
        let mut iov = [IoSliceMut::new(&mut length[..1])];
        match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(message) => {
                for cmsg in message.cmsgs().map_err(io::Error::from)? {
                    if let ControlMessageOwned::ScmRights(received) = cmsg {
                        // SAFETY: the kernel just installed these descriptors for us.
                        fds.extend(
                            received
                                .into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
                if message.flags.contains(MsgFlags::MSG_CTRUNC) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "too many descriptors in a frame",
                    ));
                }
                break message.bytes;
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if got == 0 {
        return Ok(None);
    }
    let mut reader = socket;
    reader.read_exact(&mut length[1..])?;
    let length = u32::from_be_bytes(length);
    if length > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {length} bytes"),
        ));
    }
    let mut body = vec![0u8; length as usize];
    reader.read_exact(&mut body)?;
    let message =
        serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(Some((message, fds)))
}

/// If this process was started as a sandbox's init (`<binary> sandbox-init <control-fd>`),
/// serves the executor until it hangs up, then exits; otherwise returns at once. Call it first
/// thing in `main`, before any thread starts.
pub fn run_if_requested() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(INIT_ARG.as_ref()) {
        return;
    }
    let code = match args.next().as_ref().and_then(control_fd) {
        Some(fd) => match serve(fd) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("cola sandbox init: {e}");
                1
            }
        },
        None => {
            eprintln!("cola sandbox init: usage: {INIT_ARG} <control-fd>");
            2
        }
    };
    std::process::exit(code);
}

/// The stand-alone init (`cola-sandbox-init`, built with this crate) in the directory of the
/// running binary or the one above it: where cargo puts it for this crate's tests and examples,
/// which are not `cola`.
pub fn standalone() -> io::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("cola-sandbox-init"))
        .find(|path| path.is_file())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "cola-sandbox-init is not built"))
}

fn control_fd(arg: &OsString) -> Option<RawFd> {
    arg.to_str()?.parse().ok().filter(|fd| *fd > 2)
}

/// The init's loop: ready, then one step per request until the executor hangs up.
fn serve(control: RawFd) -> io::Result<()> {
    // SAFETY: plain system calls. Nothing the init holds may reach a step (every descriptor but
    // the standard ones closes on exec), and user code of the same uid may not look inside it.
    unsafe {
        libc::close_range(
            3,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
        );
        check(libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0))?;
    }
    // SAFETY: the executor handed this descriptor to us; nothing else in this process owns it.
    let socket = UnixStream::from(unsafe { OwnedFd::from_raw_fd(control) });
    send_frame(&socket, &Ready { ready: true }, &[])?;
    while let Some((request, fds)) = recv_frame::<StepRequest>(&socket)? {
        let reply = run_step(request, fds)?;
        send_frame(&socket, &reply, &[])?;
    }
    Ok(())
}

/// Runs one step to its end, then clears the sandbox of everything else.
fn run_step(request: StepRequest, fds: Vec<OwnedFd>) -> io::Result<StepReply> {
    let [stdin, stdout, stderr]: [OwnedFd; STEP_FDS] = fds.try_into().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "a step request without stdin, stdout and stderr",
        )
    })?;
    let (program, args) = request
        .command
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a step without a command"))?;
    let mut error_copy = std::fs::File::from(stderr.try_clone()?);
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(request.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr));
    let rlimits = request.rlimits;
    // SAFETY: only async-signal-safe system calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            first_for_oom_kill();
            rlimits.apply().map_err(io::Error::from)
        });
    }
    let spawned = command.spawn();
    // Our copies of the step's descriptors go now: its output ends when its processes do.
    drop(command);
    let child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let error = format!("cannot run {program}: {e}");
            let _ = writeln!(error_copy, "{error}");
            return Ok(StepReply::NotStarted { error });
        }
    };
    drop(error_copy);
    let (wait_status, usage) = reap_until(child.id() as libc::pid_t)?;
    super::process::kill_everything_else();
    Ok(StepReply::Ended {
        wait_status,
        cpu_micros: micros(usage.ru_utime) + micros(usage.ru_stime),
        peak_memory_kb: u64::try_from(usage.ru_maxrss).unwrap_or(0),
    })
}

/// Makes the calling process (and what it starts) the first the kernel kills when its cgroup
/// runs out of memory, before the init or bubblewrap, whose death would end the sandbox.
/// Raising one's own score needs no privilege; where `/proc` cannot tell, nothing changes.
/// Async-signal-safe.
fn first_for_oom_kill() {
    // SAFETY: a valid NUL-terminated path and buffer.
    unsafe {
        let fd = libc::open(
            c"/proc/self/oom_score_adj".as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        );
        if fd >= 0 {
            libc::write(fd, c"1000".as_ptr().cast(), 4);
            libc::close(fd);
        }
    }
}

/// Reaps children (orphans of earlier steps' processes included) until `pid` ends; its status
/// and resource usage.
fn reap_until(pid: libc::pid_t) -> io::Result<(i32, libc::rusage)> {
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain old data that wait4 fills.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to a status and a rusage.
        match unsafe { libc::wait4(-1, &mut status, 0, &mut usage) } {
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            -1 => return Err(io::Error::last_os_error()),
            reaped if reaped == pid => return Ok((status, usage)),
            _ => {}
        }
    }
}

fn micros(t: libc::timeval) -> u64 {
    (t.tv_sec as u64) * 1_000_000 + t.tv_usec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_messages_and_descriptors() {
        let (a, b) = UnixStream::pair().unwrap();
        let (reader, _writer) = io::pipe().unwrap();
        let reply = StepReply::Ended {
            wait_status: 9,
            cpu_micros: 1_500,
            peak_memory_kb: 2_048,
        };
        send_frame(&a, &reply, &[reader.as_raw_fd(); 3]).unwrap();
        send_frame(&a, &Ready { ready: true }, &[]).unwrap();
        drop(a);
        let (got, fds) = recv_frame::<StepReply>(&b).unwrap().unwrap();
        assert_eq!(got, reply);
        assert_eq!(fds.len(), 3);
        let (ready, fds) = recv_frame::<Ready>(&b).unwrap().unwrap();
        assert!(ready.ready && fds.is_empty());
        assert!(recv_frame::<Ready>(&b).unwrap().is_none());
    }

    #[test]
    fn a_frame_beyond_the_limit_is_refused() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut writer = &a;
        writer
            .write_all(&(MAX_FRAME_BYTES + 1).to_be_bytes())
            .unwrap();
        let err = recv_frame::<Ready>(&b).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn rlimits_follow_the_limits() {
        let limits = Limits {
            wall_time_ms: 2_000,
            cpu_time_ms: 1_001,
            memory_mb: 32,
            processes: 10,
            output_kb: 64,
            disk_mb: 64,
        };
        let r = StepRlimits::for_step(&limits, 4096);
        assert_eq!(r.cpu_seconds, 2);
        assert_eq!(r.data_bytes, 32 << 20);
        assert_eq!(r.processes, Some(11));
        assert_eq!(r.file_bytes, 4096);
        assert_eq!(r.stack_bytes, 8 << 20);
        let tiny = StepRlimits::for_step(
            &Limits {
                memory_mb: 4,
                ..limits
            },
            4096,
        );
        assert_eq!(tiny.stack_bytes, 4 << 20);
    }

    #[test]
    fn the_ceiling_of_two_steps_is_the_larger_limit_of_each() {
        let compile = StepRlimits {
            cpu_seconds: 10,
            data_bytes: 512,
            processes: Some(66),
            open_files: 256,
            file_bytes: 64,
            stack_bytes: 8,
        };
        let run = StepRlimits {
            cpu_seconds: 2,
            data_bytes: 1024,
            processes: Some(34),
            open_files: 256,
            file_bytes: 128,
            stack_bytes: 8,
        };
        let ceiling = compile.max(run);
        assert_eq!(
            ceiling,
            StepRlimits {
                cpu_seconds: 10,
                data_bytes: 1024,
                processes: Some(66),
                open_files: 256,
                file_bytes: 128,
                stack_bytes: 8,
            }
        );
    }
}
