//! What the container mode reads of its own container's cgroup (mounted read-only in a Docker
//! container or a Pod, cgroup v1 or v2): the CPU time of everything in the container, so that a
//! step's CPU limit also holds for the processes that left its process group; and the
//! container's memory limit, which the Docker backend lowers from what the compile step needs to
//! the run step's own before user code runs ([`await_memory_limit`]).

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::error::{ExecutorError, IoContext};

/// Where cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// How often the container's memory limit is read while the executor waits for it to change.
const MEMORY_LIMIT_POLL: Duration = Duration::from_millis(2);
/// How long the executor waits for its memory limit to be lowered before the run step.
const MEMORY_LIMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The CPU time used in the executor's container since the meter started, but the executor's
/// own.
#[derive(Debug)]
pub(super) struct CpuMeter {
    usage: CpuUsage,
    container_at_start: Duration,
    own_at_start: Duration,
}

impl CpuMeter {
    /// A meter from now on; `None` when this process is not PID 1 (its cgroup may hold more
    /// than its container) or its cgroup's CPU usage cannot be read.
    pub fn start() -> Option<Self> {
        if std::process::id() != 1 {
            return None;
        }
        let usage = CpuUsage::find()?;
        Some(Self {
            container_at_start: usage.read().ok()?,
            own_at_start: own_cpu(),
            usage,
        })
    }

    /// CPU time used since [`CpuMeter::start`] by every process of the container but the
    /// executor, also by those that left their step's process group or already ended.
    pub fn used(&self) -> io::Result<Duration> {
        let container = self.usage.read()?.saturating_sub(self.container_at_start);
        Ok(container.saturating_sub(own_cpu().saturating_sub(self.own_at_start)))
    }
}

/// The file holding the CPU usage of this process's cgroup.
#[derive(Debug)]
enum CpuUsage {
    /// cgroup v2 `cpu.stat`, whose `usage_usec` line counts microseconds.
    Unified(PathBuf),
    /// cgroup v1 `cpuacct.usage`: nanoseconds.
    Cpuacct(PathBuf),
}

impl CpuUsage {
    fn find() -> Option<Self> {
        match own_cgroup_file("cpu.stat", "cpuacct", "cpuacct.usage")? {
            Cgroup::Unified(path) => Some(Self::Unified(path)),
            Cgroup::V1(path) => Some(Self::Cpuacct(path)),
        }
    }

    fn read(&self) -> io::Result<Duration> {
        let invalid = |path: &Path| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} holds no CPU usage", path.display()),
            )
        };
        match self {
            Self::Unified(path) => fs::read_to_string(path)?
                .lines()
                .find_map(|line| line.strip_prefix("usage_usec ")?.trim().parse().ok())
                .map(Duration::from_micros)
                .ok_or_else(|| invalid(path)),
            Self::Cpuacct(path) => fs::read_to_string(path)?
                .trim()
                .parse()
                .map(Duration::from_nanos)
                .map_err(|_| invalid(path)),
        }
    }
}

/// Asks for the container's memory limit to be lowered to `bytes` before the run step (one
/// line on standard output: [`cola_wire::frame::run_memory_request`]) and waits until the
/// container's cgroup says it is. The Docker backend's middleware reads the line from the
/// container's log and updates the container. An error when that does not happen in time, or
/// the limit cannot be read: the run step must not start with the compile step's limit.
pub fn await_memory_limit(bytes: u64) -> Result<(), ExecutorError> {
    let file = match own_cgroup_file("memory.max", "memory", "memory.limit_in_bytes") {
        Some(Cgroup::Unified(path) | Cgroup::V1(path)) => path,
        None => {
            return Err(ExecutorError::Sandbox(
                "the container's memory limit cannot be read from its cgroup".into(),
            ));
        }
    };
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(cola_wire::frame::run_memory_request(bytes).as_bytes())
        .and_then(|()| stdout.flush())
        .context(|| "asking for the run step's memory limit")?;
    let deadline = Instant::now() + MEMORY_LIMIT_TIMEOUT;
    loop {
        let limit = read_memory_limit(&file)
            .context(|| format!("reading the memory limit in {}", file.display()))?;
        if limit.is_some_and(|limit| limit <= bytes) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ExecutorError::Sandbox(format!(
                "the container's memory limit was not lowered to {bytes} bytes for the run step \
                 within {} s (it is {})",
                MEMORY_LIMIT_TIMEOUT.as_secs(),
                limit.map_or("unlimited".into(), |l| format!("{l} bytes"))
            )));
        }
        std::thread::sleep(MEMORY_LIMIT_POLL);
    }
}

/// A memory limit file's value; `None`: no limit (`max`, or v1's largest page-aligned number).
fn read_memory_limit(file: &Path) -> io::Result<Option<u64>> {
    let text = fs::read_to_string(file)?;
    match text.trim() {
        "max" => Ok(None),
        number => number
            .parse::<u64>()
            .map(|limit| (limit < i64::MAX as u64 / 2).then_some(limit))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
    }
}

/// A file of this process's own cgroup, and in which hierarchy it was found.
enum Cgroup {
    Unified(PathBuf),
    V1(PathBuf),
}

/// The file `unified` of this process's cgroup in the unified hierarchy (v2), or else the file
/// `v1_file` in its cgroup of the v1 hierarchy that holds `v1_controller`. In a container the
/// mount shows the container's own cgroup at its root (a cgroup namespace, or the runtime's bind
/// mount); elsewhere the cgroup is below the mount, at the path `/proc/self/cgroup` names.
fn own_cgroup_file(unified: &str, v1_controller: &str, v1_file: &str) -> Option<Cgroup> {
    let membership = fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut v1 = None;
    for line in membership.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let relative = path.trim_start_matches('/');
        if controllers.is_empty() {
            let mount = Path::new(CGROUP_ROOT);
            if let Some(file) = first_file(mount, relative, unified) {
                return Some(Cgroup::Unified(file));
            }
        } else if controllers.split(',').any(|c| c == v1_controller) {
            let mount = Path::new(CGROUP_ROOT).join(controllers);
            v1 = v1.or_else(|| first_file(&mount, relative, v1_file).map(Cgroup::V1));
        }
    }
    v1
}

/// `mount/relative/file` if it exists, else `mount/file`.
fn first_file(mount: &Path, relative: &str, file: &str) -> Option<PathBuf> {
    [mount.join(relative).join(file), mount.join(file)]
        .into_iter()
        .find(|path| path.is_file())
}

/// The user plus system CPU time of this process (all its threads).
fn own_cpu() -> Duration {
    // SAFETY: rusage is plain old data; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    super::process::timeval(usage.ru_utime) + super::process::timeval(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits_read_as_cgroups_write_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("limit");
        for (text, limit) in [
            ("max\n", None),
            ("9223372036854771712\n", None),
            ("268435456\n", Some(256 << 20)),
        ] {
            fs::write(&file, text).unwrap();
            assert_eq!(read_memory_limit(&file).unwrap(), limit, "{text}");
        }
        fs::write(&file, "lots\n").unwrap();
        assert!(read_memory_limit(&file).is_err());
    }

    #[test]
    fn cpu_usage_reads_both_hierarchies() {
        let dir = tempfile::tempdir().unwrap();
        let stat = dir.path().join("cpu.stat");
        fs::write(&stat, "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n").unwrap();
        assert_eq!(
            CpuUsage::Unified(stat).read().unwrap(),
            Duration::from_micros(1500)
        );
        let usage = dir.path().join("cpuacct.usage");
        fs::write(&usage, "2000000\n").unwrap();
        assert_eq!(
            CpuUsage::Cpuacct(usage).read().unwrap(),
            Duration::from_millis(2)
        );
    }

    #[test]
    fn this_process_finds_its_cgroup() {
        // Whatever this machine runs (v1 or v2), a test process has a CPU usage to read.
        let usage = CpuUsage::find().expect("a cgroup CPU usage file");
        usage.read().unwrap();
        assert!(
            CpuMeter::start().is_none(),
            "only PID 1 meters its container"
        );
    }
}
