//! Runs one step of a job (compile or run) inside bubblewrap, under limits.
//!
//! What a sandboxed step gets:
//! - new user, PID, network, IPC, UTS and cgroup namespaces (`--unshare-all`), and no way to make
//!   more user namespaces (`--disable-userns`); no network at all, not even loopback to the host;
//! - `/usr` read-only (plus the merged-usr links `/bin`, `/lib`, ...), nothing of the host's
//!   `/etc` (gcc, Go and Node.js need none of it), a fresh `/proc`, a read-only `/dev` with the
//!   usual devices, private size-capped `/tmp` and `/dev/shm`, a read-only root, and the job's
//!   work directory at `/work` as the only writable place on disk;
//! - an empty environment but `PATH`, `HOME=/tmp`, `LANG=C.UTF-8` and the language's variables;
//! - on the host, an unprivileged uid and gid of its own, without supplementary groups, when the
//!   executor runs as root (see [`identity`]), so two jobs cannot touch each other's files even
//!   outside their mount namespaces; the job's directories are staged where that uid can reach
//!   them whatever the permissions above them (see `staging`);
//! - rlimits on CPU time, data memory (`RLIMIT_DATA`, not `RLIMIT_AS`), processes, open files,
//!   file size, stack and core dumps, set before `bwrap` starts and inherited by everything in
//!   the sandbox;
//! - no descriptor of the executor's, and death with the executor (`PR_SET_PDEATHSIG` on `bwrap`,
//!   `--die-with-parent` inside);
//! - a wall-clock deadline, on which the whole process group of `bwrap` is killed (the PID
//!   namespace takes every sandboxed process with it), and a cap on stdout plus stderr.
//!
//! Inside, `/bin/sh` is PID 1 and runs the command as its child, so the command keeps the usual
//! signal semantics of a non-init process and its peak memory reaches `wait4` (bubblewrap's own
//! PID-1 reaper exits before it is reaped, which loses the children's resource usage). How the
//! command ended comes from bubblewrap's `--json-status-fd`, whose `exit-code` is written only
//! once the command was started: without it, the sandbox failed to set up.
//!
//! Not bounded by rlimits: shared memory (`MAP_SHARED` mappings, SysV and POSIX shared memory)
//! does not count against `RLIMIT_DATA`; only a memory cgroup can cap it.

mod bwrap;
pub mod identity;
mod process;
mod staging;
pub mod verdict;

use std::{
    io,
    path::{Path, PathBuf},
};

use cola_wire::Limits;

pub use identity::SandboxUser;
pub use verdict::{Ending, Kill, StepOutcome, Verdict};

use crate::error::ExecutorError;

/// The working directory of every step, inside the sandbox.
pub const WORK_DIR: &str = "/work";

/// The environment every step starts from (after `--clearenv`), before the language's own.
pub const BASE_ENV: [(&str, &str); 3] = [
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("HOME", "/tmp"),
    ("LANG", "C.UTF-8"),
];

/// How executors sandbox user code on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// The bubblewrap binary.
    pub bwrap: PathBuf,
    /// First host uid (and gid) given to sandboxes when the executor runs as root.
    pub uid_base: u32,
    /// How many uids from `uid_base` on are reserved for sandboxes.
    pub uid_count: u32,
    /// A warm Go build cache made by [`crate::prepare_go_cache`], shared read-only by Go jobs.
    pub go_cache: Option<PathBuf>,
    /// The most content (bytes, before compression) an output zip holds.
    pub max_zip_bytes: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            bwrap: PathBuf::from("/usr/bin/bwrap"),
            uid_base: 200_000,
            uid_count: 50_000,
            go_cache: None,
            max_zip_bytes: 64 << 20,
        }
    }
}

impl SandboxConfig {
    /// Checks the settings before any job uses them.
    pub fn validate(&self) -> Result<(), ExecutorError> {
        let bad = |m: String| Err(ExecutorError::Config(m));
        if !self.bwrap.is_absolute() {
            return bad(format!(
                "bwrap must be an absolute path, not {}",
                self.bwrap.display()
            ));
        }
        if self.uid_base == 0 || self.uid_count == 0 {
            return bad("the sandbox uid range must be non-empty and must not hold uid 0".into());
        }
        if self
            .uid_base
            .checked_add(self.uid_count)
            .is_none_or(|end| end == u32::MAX)
        {
            return bad("the sandbox uid range ends beyond the largest valid uid".into());
        }
        if self.max_zip_bytes == 0 {
            return bad("max_zip_bytes must be positive".into());
        }
        Ok(())
    }
}

/// Where a step's standard output and error go: files outside the work directory.
#[derive(Debug, Clone)]
pub enum Output {
    /// stdout and stderr each to its own file (the run step).
    Separate { stdout: PathBuf, stderr: PathBuf },
    /// Both interleaved into one file (the compile step's `compile.txt`).
    Merged(PathBuf),
}

/// One command to run in the sandbox.
#[derive(Debug, Clone)]
pub struct Step {
    /// The argument vector, run in [`WORK_DIR`] with `PATH` lookup.
    pub command: Vec<String>,
    /// Variables on top of `PATH`, `HOME` and `LANG`.
    pub env: Vec<(String, String)>,
    pub limits: Limits,
    /// The largest file the step may write (`RLIMIT_FSIZE`).
    pub max_file_bytes: u64,
    /// A file (outside the work directory) to read standard input from; none is `/dev/null`.
    pub stdin: Option<PathBuf>,
    pub output: Output,
    /// Host directories the step may read: host path and where the sandbox sees it.
    pub read_only: Vec<(PathBuf, String)>,
}

/// The sandbox of one job: the host identity its steps run as, and its work directory.
#[derive(Debug)]
pub struct Sandbox<'a> {
    bwrap: &'a Path,
    user: &'a SandboxUser,
    work_dir: &'a Path,
}

impl<'a> Sandbox<'a> {
    /// A sandbox whose steps run as `user` with `work_dir` (which `user` owns) at [`WORK_DIR`].
    /// Borrowing the user keeps its uid reserved for as long as the sandbox can run.
    pub fn new(bwrap: &'a Path, user: &'a SandboxUser, work_dir: &'a Path) -> Self {
        Self {
            bwrap,
            user,
            work_dir,
        }
    }

    /// Runs `step` to its end (blocking) and says how it ended.
    pub fn run(&self, step: &Step) -> Result<StepOutcome, ExecutorError> {
        process::run(self.bwrap, self.work_dir, self.user.host_ids(), step)
    }
}

/// The result of a system call that returns -1 and sets `errno` on failure. Async-signal-safe.
fn check(result: libc::c_int) -> io::Result<()> {
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
