//! Runs the steps of a job (compile, run) inside one bubblewrap sandbox, each under its limits.
//!
//! What a sandbox gets:
//! - new user, PID, network, IPC, UTS and cgroup namespaces (`--unshare-all`), and no way to make
//!   more user namespaces (`--disable-userns`); no network at all, not even loopback to the host;
//! - read-only, only the directories of `/usr` the language table names ([`system`]; plus the
//!   merged-usr links `/bin`, `/lib`, ...), nothing of the host's `/etc` (gcc, Go and Node.js
//!   need none of it), a fresh `/proc`, a read-only `/dev` with the usual devices, a size-capped
//!   `/dev/shm`, a read-only root, and the job's `/work` and `/tmp` (its disk allowance, see
//!   [`crate::sandbox::disk`]) as the only writable places;
//! - where this machine gives cola cgroups, a cgroup of its own ([`cgroup`]), which bounds its
//!   memory (shared memory and tmpfs pages included) and processes and measures its CPU time;
//! - on the host, an unprivileged uid and gid of its own, without supplementary groups, when the
//!   executor runs as root (see [`identity`]), so two jobs cannot touch each other's files even
//!   outside their mount namespaces; the job's directories are staged where that uid can reach
//!   them whatever the permissions above them (see `staging`);
//! - no descriptor of the executor's, and death with the executor (`PR_SET_PDEATHSIG` on `bwrap`,
//!   `--die-with-parent` inside);
//! - as PID 1, cola's own init ([`init`]), which runs each step as its child when the executor
//!   asks, and kills everything else in the sandbox when the step ends.
//!
//! What each step gets:
//! - an empty environment but `PATH`, `HOME=/tmp`, `LANG=C.UTF-8` and the language's variables;
//! - its memory and processes limits on the sandbox's cgroup, and its CPU time watched there
//!   (stopped at the limit, whichever of its processes used it);
//! - rlimits on CPU time (a second past the limit when a cgroup measures it), data memory
//!   (`RLIMIT_DATA`, not `RLIMIT_AS`; only without a cgroup), processes, open files, file size,
//!   stack and core dumps, set before it starts and inherited by all it starts (the sandbox as a
//!   whole never goes beyond the largest of its steps' limits);
//! - its own pipes for stdout and stderr, capped together at the output limit;
//! - a wall-clock deadline, on which the sandbox is killed (the PID namespace takes every
//!   sandboxed process with it): a step killed for its wall time or its output ends the job.
//!
//! One sandbox for every step of a job rather than one per step: bubblewrap's set-up (namespaces,
//! mounts) costs a few milliseconds, paid once.
//!
//! In a container ([`SandboxKind::Container`]: the Docker and Kubernetes backends) bubblewrap
//! cannot work (no capabilities, Docker's seccomp profile), and the container is the sandbox:
//! its own namespaces, no network, a read-only root, a size-capped `/work` and `/tmp`, a memory,
//! CPU and pids cgroup, all set from outside by the backend. Steps then run directly as the
//! executor's own (non-root) user, with the same rlimits (but `RLIMIT_NPROC`), environment, wall
//! time and output cap; as PID 1 of the container, the executor holds a step's CPU limit to the
//! CPU time of the whole container and kills everything else once the step's main process
//! ends (`process::run_direct`). The executor makes itself non-dumpable ([`harden_container`]), so user
//! code of the same uid can neither read its `/proc` entries (environment, descriptors, memory)
//! nor trace it.
//!
//! Not bounded by rlimits: shared memory (`MAP_SHARED` mappings, SysV and POSIX shared memory)
//! does not count against `RLIMIT_DATA`; only the memory cgroup caps it, so without one it is
//! not bounded (the middleware says so at start-up).

mod bwrap;
pub mod cgroup;
mod container;
pub(crate) mod disk;
pub mod identity;
pub mod init;
mod process;
mod session;
mod staging;
pub mod system;
pub mod verdict;

use std::{
    io,
    path::{Path, PathBuf},
};

use cola_wire::{Isolation, Limits, Provision};

pub use container::await_memory_limit;
pub use identity::SandboxUser;
pub use session::SandboxPlan;
pub use verdict::{DiskEvidence, Ending, Kill, StepOutcome, Verdict};

use session::Session;

use crate::error::{ExecutorError, IoContext};

/// A host directory a sandbox binds read-only, and where the sandbox sees it.
pub type ReadOnlyBind = (PathBuf, String);

/// The working directory of every step, inside the sandbox.
pub const WORK_DIR: &str = "/work";
/// The sandbox's temporary directory: on the job's disk allowance, like [`WORK_DIR`].
pub const TMP_DIR: &str = "/tmp";

/// The host directories a sandbox may write, seen inside as [`WORK_DIR`] and [`TMP_DIR`]:
/// owned by the sandbox's user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritableDirs {
    pub work: PathBuf,
    pub tmp: PathBuf,
}

/// The environment every step starts from (after `--clearenv`), before the language's own.
pub const BASE_ENV: [(&str, &str); 3] = [
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("HOME", "/tmp"),
    ("LANG", "C.UTF-8"),
];

/// How user code is isolated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SandboxKind {
    /// bubblewrap on the host (the process backend).
    #[default]
    Bubblewrap,
    /// The container the executor runs in is the sandbox (Docker, Kubernetes).
    Container,
}

impl SandboxKind {
    /// Whether steps can see host directories at other paths ([`SandboxPlan::read_only`]); in
    /// a container they can only use paths as they are.
    pub fn binds_directories(self) -> bool {
        self == Self::Bubblewrap
    }

    /// `bubblewrap` or `container`, as `cola executor --sandbox` takes it.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "bubblewrap" => Some(Self::Bubblewrap),
            "container" => Some(Self::Container),
            _ => None,
        }
    }
}

/// How executors sandbox user code on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    pub kind: SandboxKind,
    /// The bubblewrap binary.
    pub bwrap: PathBuf,
    /// The binary that serves as the sandbox's PID 1 ([`init::run_if_requested`]): by default
    /// the running one (`cola`).
    pub init: PathBuf,
    /// First host uid (and gid) given to sandboxes when the executor runs as root.
    pub uid_base: u32,
    /// How many uids from `uid_base` on are reserved for sandboxes.
    pub uid_count: u32,
    /// A warm Go build cache made by [`crate::prepare_go_cache`], shared read-only by Go jobs.
    pub go_cache: Option<PathBuf>,
    /// The most content (bytes, before compression) an output zip holds.
    pub max_zip_bytes: u64,
    /// Where job cgroups go, inside each cgroup hierarchy (`--cgroup-parent`); `None`: under
    /// the executor's own cgroup (see [`cgroup`]).
    pub cgroup_parent: Option<PathBuf>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            kind: SandboxKind::Bubblewrap,
            bwrap: PathBuf::from("/usr/bin/bwrap"),
            init: PathBuf::from("/proc/self/exe"),
            uid_base: 200_000,
            uid_count: 50_000,
            go_cache: None,
            max_zip_bytes: cola_wire::frame::MAX_ZIP_CONTENT_BYTES,
            cgroup_parent: None,
        }
    }
}

impl SandboxConfig {
    /// Checks the settings before any job uses them.
    pub fn validate(&self) -> Result<(), ExecutorError> {
        let bad = |m: String| Err(ExecutorError::Config(m));
        if self.max_zip_bytes == 0 || self.max_zip_bytes > cola_wire::frame::MAX_ZIP_CONTENT_BYTES {
            return bad(format!(
                "max_zip_bytes must be between 1 and {}",
                cola_wire::frame::MAX_ZIP_CONTENT_BYTES
            ));
        }
        if self.kind == SandboxKind::Container {
            // User code runs as the executor's own user: never root.
            if nix::unistd::geteuid().is_root() {
                return bad("the container sandbox runs user code as the executor's own user, which must not be root".into());
            }
            return Ok(());
        }
        for (name, path) in [("bwrap", &self.bwrap), ("init", &self.init)] {
            if !path.is_absolute() {
                return bad(format!(
                    "{name} must be an absolute path, not {}",
                    path.display()
                ));
            }
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
}

/// The sandbox of one job: how its steps are isolated, and its work directory. Whoever starts
/// one keeps the uid it runs as reserved, and the work directory in place, until it is dropped.
#[derive(Debug)]
pub struct Sandbox {
    mode: Mode,
    work_dir: PathBuf,
    plan: SandboxPlan,
}

#[derive(Debug)]
enum Mode {
    /// A running bubblewrap sandbox.
    Bubblewrap(Session),
    /// Directly, as the executor's own user, inside the container that is the sandbox.
    Container,
}

impl Sandbox {
    /// Starts the sandbox `config` asks for, ready for steps within `plan`: bubblewrap as
    /// `host_ids` (none: as the executor's own user) with `dirs` (which that user owns) at
    /// [`WORK_DIR`] and [`TMP_DIR`], in a cgroup of its own where this machine has one, what
    /// bubblewrap says when it cannot start written to `log`; or the container.
    pub fn start(
        config: &SandboxConfig,
        host_ids: Option<(u32, u32)>,
        dirs: &WritableDirs,
        plan: &SandboxPlan,
        log: &Path,
    ) -> Result<Self, ExecutorError> {
        let mode = match config.kind {
            SandboxKind::Bubblewrap => Mode::Bubblewrap(Session::start(
                &config.bwrap,
                &config.init,
                dirs,
                host_ids,
                plan,
                log,
                job_cgroup(config)?,
            )?),
            SandboxKind::Container if !plan.read_only.is_empty() => {
                return Err(ExecutorError::Config(
                    "the container sandbox cannot bind directories into a step".into(),
                ));
            }
            SandboxKind::Container => Mode::Container,
        };
        Ok(Self {
            mode,
            work_dir: dirs.work.clone(),
            plan: plan.clone(),
        })
    }

    /// Whether this sandbox can run the steps `plan` is for.
    pub fn serves(&self, plan: &SandboxPlan) -> bool {
        self.plan.covers(plan)
    }

    /// Runs `step` to its end (blocking) and says how it ended.
    pub fn run(&self, step: &Step) -> Result<StepOutcome, ExecutorError> {
        match &self.mode {
            Mode::Bubblewrap(session) => session.run(step),
            Mode::Container => process::run_direct(&self.work_dir, step),
        }
    }
}

/// A new cgroup for a sandbox, where this machine gives cola cgroups (see [`cgroup`]); `None`
/// where it does not (the middleware says why at start-up).
fn job_cgroup(config: &SandboxConfig) -> Result<Option<cgroup::JobCgroup>, ExecutorError> {
    let host = match cgroup::CgroupHost::detect(config.cgroup_parent.as_deref()) {
        Ok(host) => host,
        Err(why) => {
            tracing::debug!(%why, "the sandbox has no cgroup");
            return Ok(None);
        }
    };
    host.create_for_sandbox()
        .map(Some)
        .context(|| "creating the sandbox's cgroup")
}

/// What this machine gives the sandboxes of `config`: how memory, processes and CPU are
/// bounded, and the disk (or why not), for the middleware to say at start-up.
pub fn isolation(config: &SandboxConfig) -> Isolation {
    match config.kind {
        SandboxKind::Container => Isolation {
            cgroup: Provision::from_result(Ok("the container's cgroup, set by the backend".into())),
            disk: Provision::from_result(Ok("the container's size-capped tmpfs".into())),
        },
        SandboxKind::Bubblewrap => Isolation {
            cgroup: Provision::from_result(
                cgroup::CgroupHost::detect(config.cgroup_parent.as_deref())
                    .map(|host| host.describe())
                    .map_err(|why| why.to_string()),
            ),
            disk: Provision::from_result(crate::sandbox::disk::available().map(|()| {
                "a size-capped tmpfs per job for /work and /tmp, apart from the host's disks"
                    .to_owned()
            })),
        },
    }
}

/// Makes this process non-dumpable, for an executor whose sandbox is its container: user code
/// runs as the same uid, and a dumpable process's `/proc` entries (environment, descriptors,
/// memory) are open to its uid, as is tracing it. (A step's program is dumpable again once it
/// executes: that changes nothing for the executor.)
pub fn harden_container() -> Result<(), ExecutorError> {
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) })
        .map_err(|e| ExecutorError::io("making the executor non-dumpable", e))
}

/// The result of a system call that returns -1 and sets `errno` on failure. Async-signal-safe.
pub(crate) fn check(result: libc::c_int) -> io::Result<()> {
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Moves the calling thread (or child) into a mount namespace of its own, in which nothing
/// mounted propagates to or from the one it leaves. Async-signal-safe.
pub(crate) fn private_mount_namespace() -> io::Result<()> {
    // SAFETY: plain system calls with static strings; CLONE_NEWNS (with the CLONE_FS it
    // implies) applies to the calling thread only.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS))?;
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))
    }
}

/// `path` as a C string, for a system call (made before `fork` where the child needs it).
pub(crate) fn c_path(path: &Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path holds a NUL byte"))
}

/// Creates a new file at `path` for writing: never one that exists, never through a link.
pub(crate) fn create_file(path: &Path, mode: u32) -> Result<std::fs::File, ExecutorError> {
    use std::os::unix::fs::OpenOptionsExt as _;

    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .context(|| format!("creating {}", path.display()))
}
