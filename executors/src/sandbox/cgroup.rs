//! A cgroup per job: the kernel's own bound on what a sandbox may hold in memory (shared memory,
//! tmpfs pages and the page cache included, which rlimits cannot see), on its processes and
//! threads, and its measure of the CPU time of every process in it, also those that left the
//! step's process tree.
//!
//! cola makes its job cgroups under a parent cgroup: `--cgroup-parent` when given (a path
//! inside each hierarchy, as Docker's flag of that name), otherwise the executor's own cgroup.
//! - **cgroup v1** (a hierarchy per controller): `memory`, `pids` and `cpuacct` are required,
//!   `cpu` is used when mounted (each job then weighs the same for the scheduler, whatever its
//!   number of threads). Job cgroups live in `<parent>/cola/` of each.
//! - **cgroup v2** (one hierarchy): the parent must offer `memory`, `pids` and `cpu`, and they
//!   must be enabled for its children (`cgroup.subtree_control`), which Linux refuses for a
//!   cgroup that holds processes itself: there, give cola a delegated cgroup of its own
//!   (systemd's `Delegate=yes`, or any cgroup with no processes) with `--cgroup-parent`.
//!
//! Where neither works (not root and nothing delegated, a read-only `/sys/fs/cgroup` in a
//! container), [`CgroupHost::detect`] says why, and jobs keep their rlimits only.
//!
//! A sandbox's processes join its job cgroup between `fork` and `exec` of bubblewrap
//! ([`CgroupJoin`]: writing `0` to `cgroup.procs` moves the writer), before the
//! switch to the job's uid. The executor sets each step's limits before the step starts, reads
//! the CPU used and the out-of-memory kills after it, and removes the cgroup when the sandbox is
//! gone.

use std::{
    ffi::CString,
    fs, io,
    path::{Path, PathBuf},
    time::Duration,
};

use super::{c_path, check};

/// The controllers a job cgroup needs on cgroup v1, and `cpu`, used when present.
const V1_REQUIRED: [&str; 3] = ["memory", "pids", "cpuacct"];
const V1_OPTIONAL: &str = "cpu";
/// What cgroup v2 must enable for cola's job cgroups.
const V2_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];
/// The directory under a v1 parent that holds cola's job cgroups.
const V1_SUBDIR: &str = "cola";
/// How a sandbox's cgroup is named: then the executor's pid, `-`, a count.
const SANDBOX_PREFIX: &str = "sandbox-";

/// Why this machine gives cola no job cgroups.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no cgroup for jobs: {0}")]
pub struct Unavailable(pub String);

/// Where cola makes job cgroups on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupHost {
    layout: Layout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// The directory holding job cgroups in each hierarchy used.
    V1 {
        memory: PathBuf,
        pids: PathBuf,
        cpuacct: PathBuf,
        cpu: Option<PathBuf>,
    },
    /// The parent of job cgroups.
    V2 { parent: PathBuf },
}

impl CgroupHost {
    /// What this machine offers, for job cgroups under `parent` (a path inside the
    /// hierarchies) or under the executor's own cgroup.
    pub fn detect(parent: Option<&Path>) -> Result<Self, Unavailable> {
        let mountinfo = read("/proc/self/mountinfo")?;
        let own = read("/proc/self/cgroup")?;
        let host = Self::from_tables(&mountinfo, &own, parent)?;
        host.prepare()?;
        Ok(host)
    }

    /// The layout the mount table and `/proc/self/cgroup` describe (nothing created yet).
    fn from_tables(mountinfo: &str, own: &str, parent: Option<&Path>) -> Result<Self, Unavailable> {
        let mounts = CgroupMount::parse_all(mountinfo);
        let place = |mount: &CgroupMount, own_path: Option<&str>| -> Result<PathBuf, Unavailable> {
            let inside = match parent {
                Some(parent) => parent.to_string_lossy().into_owned(),
                None => own_path
                    .map(|p| mount.relative(p))
                    .ok_or_else(|| Unavailable("cannot tell this process's cgroup".into()))?,
            };
            Ok(mount.point.join(inside.trim_start_matches('/')))
        };
        if let Some(unified) = mounts.iter().find(|m| m.version2) {
            let has_v1 = V1_REQUIRED
                .iter()
                .all(|c| mounts.iter().any(|m| m.controls(c)));
            if !has_v1 {
                let own_path = own
                    .lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .map(str::trim);
                return Ok(Self {
                    layout: Layout::V2 {
                        parent: place(unified, own_path)?,
                    },
                });
            }
        }
        let dir = |controller: &str| -> Result<Option<PathBuf>, Unavailable> {
            let Some(mount) = mounts.iter().find(|m| m.controls(controller)) else {
                return Ok(None);
            };
            let own_path = own.lines().find_map(|line| {
                let mut fields = line.splitn(3, ':');
                let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
                controllers
                    .split(',')
                    .any(|c| c == controller)
                    .then(|| path.trim())
            });
            Ok(Some(place(mount, own_path)?.join(V1_SUBDIR)))
        };
        let required = |controller: &str| {
            dir(controller)?.ok_or_else(|| {
                Unavailable(format!(
                    "the {controller} controller is not mounted (no cgroup v1 hierarchy has it and there is no cgroup v2)"
                ))
            })
        };
        Ok(Self {
            layout: Layout::V1 {
                memory: required("memory")?,
                pids: required("pids")?,
                cpuacct: required("cpuacct")?,
                cpu: dir(V1_OPTIONAL)?,
            },
        })
    }

    /// Makes sure job cgroups can be made: the directories exist and are ours to write, and on
    /// v2 the controllers are enabled for children.
    fn prepare(&self) -> Result<(), Unavailable> {
        match &self.layout {
            Layout::V1 {
                memory,
                pids,
                cpuacct,
                cpu,
            } => {
                for dir in [memory, pids, cpuacct].into_iter().chain(cpu) {
                    fs::create_dir_all(dir).map_err(|e| {
                        Unavailable(format!("cannot create {}: {e}", dir.display()))
                    })?;
                    sweep(dir);
                }
                Ok(())
            }
            Layout::V2 { parent } => {
                let offered = fs::read_to_string(parent.join("cgroup.controllers"))
                    .map_err(|e| Unavailable(format!("cannot read {}: {e}", parent.display())))?;
                let offered: Vec<&str> = offered.split_whitespace().collect();
                if let Some(missing) = V2_CONTROLLERS.iter().find(|c| !offered.contains(c)) {
                    return Err(Unavailable(format!(
                        "cgroup v2: {} does not offer the {missing} controller",
                        parent.display()
                    )));
                }
                let enable: Vec<String> = V2_CONTROLLERS.iter().map(|c| format!("+{c}")).collect();
                sweep(parent);
                fs::write(parent.join("cgroup.subtree_control"), enable.join(" ")).map_err(|e| {
                    Unavailable(format!(
                        "cgroup v2: cannot enable {} for the children of {} ({e}); a cgroup \
                             that holds processes cannot: give cola a delegated cgroup with \
                             --cgroup-parent",
                        V2_CONTROLLERS.join(", "),
                        parent.display()
                    ))
                })
            }
        }
    }

    /// In a sentence, for logs and `GET /api/v1/languages`.
    pub fn describe(&self) -> String {
        match &self.layout {
            Layout::V1 { memory, cpu, .. } => format!(
                "cgroup v1: a cgroup per job (memory, pids, cpuacct{}) under {}",
                if cpu.is_some() { ", cpu" } else { "" },
                memory.display()
            ),
            Layout::V2 { parent } => format!(
                "cgroup v2: a cgroup per job (memory, pids, cpu) under {}",
                parent.display()
            ),
        }
    }

    /// Makes the job cgroup of a sandbox of this process, empty and unlimited until a step sets
    /// its limits.
    pub fn create_for_sandbox(&self) -> io::Result<JobCgroup> {
        static SANDBOXES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SANDBOXES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.create(&format!("{SANDBOX_PREFIX}{}-{n}", std::process::id()))
    }

    /// Makes the job cgroup `name` (letters, digits, `-`), empty and unlimited until a step
    /// sets its limits.
    fn create(&self, name: &str) -> io::Result<JobCgroup> {
        let dirs: Vec<PathBuf> = match &self.layout {
            Layout::V1 {
                memory,
                pids,
                cpuacct,
                cpu,
            } => [memory, pids, cpuacct]
                .into_iter()
                .chain(cpu)
                .map(|d| d.join(name))
                .collect(),
            Layout::V2 { parent } => vec![parent.join(name)],
        };
        let mut cgroup = JobCgroup {
            version2: matches!(self.layout, Layout::V2 { .. }),
            procs: Vec::with_capacity(dirs.len()),
            dirs: Vec::with_capacity(dirs.len()),
        };
        for dir in dirs {
            // (cpu and cpuacct often share a hierarchy.)
            if cgroup.dirs.contains(&dir) {
                continue;
            }
            match fs::create_dir(&dir) {
                Ok(()) => {}
                // Left by an executor that died: nothing can be in it any more but its own.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            cgroup.procs.push(c_path(&dir.join("cgroup.procs"))?);
            cgroup.dirs.push(dir);
        }
        Ok(cgroup)
    }
}

/// One job's cgroup (a directory in each hierarchy), removed when dropped.
#[derive(Debug)]
pub struct JobCgroup {
    version2: bool,
    /// Memory first, then pids, cpuacct and cpu on v1; the one directory on v2.
    dirs: Vec<PathBuf>,
    /// Each directory's `cgroup.procs`, made before `fork`: the child may not allocate.
    procs: Vec<CString>,
}

/// What a child does to join a job cgroup between `fork` and `exec`, made before `fork`.
#[derive(Debug)]
pub struct CgroupJoin {
    procs: Vec<CString>,
}

impl CgroupJoin {
    /// Moves the calling process into the cgroup. Async-signal-safe: for the child between
    /// `fork` and `exec`, before it gives up root.
    pub fn apply(&self) -> io::Result<()> {
        for procs in &self.procs {
            // SAFETY: a valid NUL-terminated path; a two-byte buffer.
            unsafe {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                check(fd)?;
                let written = libc::write(fd, c"0".as_ptr().cast(), 1);
                libc::close(fd);
                if written != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }
}

impl JobCgroup {
    /// How a child joins this cgroup.
    pub fn joiner(&self) -> CgroupJoin {
        CgroupJoin {
            procs: self.procs.clone(),
        }
    }

    /// Bounds what the cgroup's processes may hold in memory (no swap) and how many processes
    /// and threads it may have, from now on.
    pub fn limit(&self, memory_bytes: u64, tasks: u64) -> io::Result<()> {
        if self.version2 {
            let dir = &self.dirs[0];
            write_value(dir, "memory.max", memory_bytes)?;
            write_if_present(dir, "memory.swap.max", 0)?;
            return write_value(dir, "pids.max", tasks);
        }
        let (memory, pids) = (&self.dirs[0], &self.dirs[1]);
        // memory.memsw (memory plus swap) may never be below memory.limit_in_bytes: lower the
        // latter first, raise the former first.
        let current = read_value(memory, "memory.limit_in_bytes")?;
        let swap = memory.join("memory.memsw.limit_in_bytes").exists();
        if swap && memory_bytes > current {
            write_value(memory, "memory.memsw.limit_in_bytes", memory_bytes)?;
        }
        write_value(memory, "memory.limit_in_bytes", memory_bytes)?;
        if swap && memory_bytes <= current {
            write_value(memory, "memory.memsw.limit_in_bytes", memory_bytes)?;
        }
        write_value(pids, "pids.max", tasks)
    }

    /// The CPU time every process of the cgroup has used (those that already ended included).
    pub fn cpu_used(&self) -> io::Result<Duration> {
        if self.version2 {
            let stat = fs::read_to_string(self.dirs[0].join("cpu.stat"))?;
            let micros = keyed_value(&stat, "usage_usec").ok_or_else(|| missing("usage_usec"))?;
            return Ok(Duration::from_micros(micros));
        }
        Ok(Duration::from_nanos(read_value(
            &self.dirs[2],
            "cpuacct.usage",
        )?))
    }

    /// How many processes of the cgroup the kernel has killed for its memory limit so far.
    pub fn oom_kills(&self) -> io::Result<u64> {
        let (file, key) = if self.version2 {
            ("memory.events", "oom_kill")
        } else {
            ("memory.oom_control", "oom_kill")
        };
        let text = fs::read_to_string(self.dirs[0].join(file))?;
        keyed_value(&text, key).ok_or_else(|| missing(key))
    }
}

impl Drop for JobCgroup {
    /// Removes the cgroup. Its sandbox was killed, but its last processes may still be on their
    /// way out (PID 1 of the sandbox dies with bubblewrap, a moment later): the removal is
    /// tried again every millisecond, for up to a second.
    fn drop(&mut self) {
        for _ in 0..1000 {
            match self.remove() {
                Ok(()) => return,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot remove a job cgroup");
                    return;
                }
            }
        }
        tracing::warn!(dirs = ?self.dirs, "a job cgroup still holds processes; left in place");
    }
}

impl JobCgroup {
    /// Removes the cgroup's directories that are still there.
    fn remove(&self) -> io::Result<()> {
        for dir in &self.dirs {
            match fs::remove_dir(dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Removes the job cgroups in `dir` of executors that are gone (a killed executor leaves its
/// cgroup behind; once empty it is removed here, by the next executor to start).
fn sweep(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let executor = name
            .to_str()
            .and_then(|n| n.strip_prefix(SANDBOX_PREFIX))
            .and_then(|n| n.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<libc::pid_t>().ok());
        // SAFETY: kill with signal 0 only asks whether the process exists.
        let gone = executor.is_some_and(|pid| {
            let asked = unsafe { libc::kill(pid, 0) };
            asked == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
        });
        if gone {
            // A cgroup that still holds processes refuses (EBUSY): it stays.
            let _ = fs::remove_dir(entry.path());
        }
    }
}

/// Job cgroups whose sandboxes are gone, waiting to be removed: removing one waits for its
/// last processes to leave, which need not delay a job's report.
static LEFT: std::sync::Mutex<Vec<JobCgroup>> = std::sync::Mutex::new(Vec::new());

/// Removes `cgroup` at the next [`remove_left`] rather than now.
pub fn remove_later(cgroup: JobCgroup) {
    LEFT.lock().unwrap_or_else(|e| e.into_inner()).push(cgroup);
}

/// Removes the job cgroups [`remove_later`] was given (blocking: a millisecond or two each).
pub fn remove_left() {
    let left = std::mem::take(&mut *LEFT.lock().unwrap_or_else(|e| e.into_inner()));
    drop(left);
}

/// A cgroup file system in the mount table.
#[derive(Debug)]
struct CgroupMount {
    /// The path inside the hierarchy that is mounted (not `/` in a cgroup namespace's view).
    root: String,
    point: PathBuf,
    version2: bool,
    /// The v1 controllers of the hierarchy.
    controllers: Vec<String>,
}

impl CgroupMount {
    /// The cgroup mounts of `/proc/self/mountinfo`.
    fn parse_all(mountinfo: &str) -> Vec<Self> {
        mountinfo.lines().filter_map(Self::parse).collect()
    }

    /// `36 25 0:31 / /sys/fs/cgroup/memory rw,relatime shared:15 - cgroup cgroup rw,memory`
    fn parse(line: &str) -> Option<Self> {
        let (before, after) = line.split_once(" - ")?;
        let fields: Vec<&str> = before.split(' ').collect();
        let (root, point) = (fields.get(3)?, fields.get(4)?);
        let mut after = after.split(' ');
        let fstype = after.next()?;
        let options = after.nth(1).unwrap_or("");
        let version2 = match fstype {
            "cgroup2" => true,
            "cgroup" => false,
            _ => return None,
        };
        Some(Self {
            root: unescape(root),
            point: PathBuf::from(unescape(point)),
            version2,
            controllers: options.split(',').map(str::to_owned).collect(),
        })
    }

    fn controls(&self, controller: &str) -> bool {
        !self.version2 && self.controllers.iter().any(|c| c == controller)
    }

    /// `path` (from `/proc/self/cgroup`) relative to what this mount shows.
    fn relative(&self, path: &str) -> String {
        match path.strip_prefix(self.root.trim_end_matches('/')) {
            Some(rest) if self.root != "/" => rest.to_owned(),
            _ => path.to_owned(),
        }
    }
}

/// The octal escapes (`\040` for a space) of mountinfo undone.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn read(path: &str) -> Result<String, Unavailable> {
    fs::read_to_string(path).map_err(|e| Unavailable(format!("cannot read {path}: {e}")))
}

fn read_value(dir: &Path, file: &str) -> io::Result<u64> {
    let text = fs::read_to_string(dir.join(file))?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{file}: {text:?}")))
}

fn write_value(dir: &Path, file: &str, value: u64) -> io::Result<()> {
    fs::write(dir.join(file), value.to_string())
        .map_err(|e| io::Error::new(e.kind(), format!("writing {value} to {file}: {e}")))
}

fn write_if_present(dir: &Path, file: &str, value: u64) -> io::Result<()> {
    match write_value(dir, file, value) {
        Err(e) if !dir.join(file).exists() => {
            tracing::debug!(error = %e, "{file} is not there");
            Ok(())
        }
        other => other,
    }
}

/// The number after `key ` on a line of a flat-keyed cgroup file.
fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn missing(key: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("no {key} in the cgroup"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd";
    const V1_OWN: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/5e7e
1:cpu,cpuacct:/user.slice
0::/";

    #[test]
    fn v1_job_cgroups_go_under_each_controllers_own_cgroup() {
        let host = CgroupHost::from_tables(V1_MOUNTS, V1_OWN, None).unwrap();
        assert_eq!(
            host.layout,
            Layout::V1 {
                memory: "/sys/fs/cgroup/memory/process_api/5e7e/cola".into(),
                pids: "/sys/fs/cgroup/pids/cola".into(),
                cpuacct: "/sys/fs/cgroup/cpu,cpuacct/user.slice/cola".into(),
                cpu: Some("/sys/fs/cgroup/cpu,cpuacct/user.slice/cola".into()),
            }
        );
        let given = CgroupHost::from_tables(V1_MOUNTS, V1_OWN, Some(Path::new("/jobs"))).unwrap();
        assert!(
            matches!(given.layout, Layout::V1 { ref pids, .. } if pids == Path::new("/sys/fs/cgroup/pids/jobs/cola"))
        );
        let no_pids = V1_MOUNTS.replace("rw,pids", "rw,freezer");
        let err = CgroupHost::from_tables(&no_pids, V1_OWN, None).unwrap_err();
        assert!(err.0.contains("pids"), "{err}");
    }

    #[test]
    fn v2_job_cgroups_go_under_the_parent_seen_through_the_mount() {
        let mounts = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate";
        let host =
            CgroupHost::from_tables(mounts, "0::/system.slice/cola.service\n", None).unwrap();
        assert_eq!(
            host.layout,
            Layout::V2 {
                parent: "/sys/fs/cgroup/system.slice/cola.service".into()
            }
        );
        // In a cgroup namespace the mount shows a subtree: its root is not repeated.
        let mounts = "30 23 0:26 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw";
        let host = CgroupHost::from_tables(mounts, "0::/kubepods/pod1/jobs\n", None).unwrap();
        assert_eq!(
            host.layout,
            Layout::V2 {
                parent: "/sys/fs/cgroup/jobs".into()
            }
        );
    }

    #[test]
    fn the_sweep_removes_the_cgroups_of_executors_that_are_gone_only() {
        let dir = tempfile::tempdir().unwrap();
        let gone = std::process::Command::new("true").spawn().unwrap();
        let gone_pid = gone.id();
        let mut gone = gone;
        gone.wait().unwrap();
        let names = [
            format!("{SANDBOX_PREFIX}{gone_pid}-0"),
            format!("{SANDBOX_PREFIX}{}-3", std::process::id()),
            "other".to_owned(),
        ];
        for name in &names {
            fs::create_dir(dir.path().join(name)).unwrap();
        }
        sweep(dir.path());
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [names[2].clone(), names[1].clone()]);
    }

    #[test]
    fn flat_keyed_files_and_escaped_paths_are_read() {
        let oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed_value(oom, "oom_kill"), Some(3));
        assert_eq!(keyed_value(oom, "oom"), None);
        assert_eq!(unescape(r"/sys/fs/my\040cgroup"), "/sys/fs/my cgroup");
        assert_eq!(unescape(r"a\\b"), r"a\\b");
    }
}
