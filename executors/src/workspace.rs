//! A job's directories on the host, inside the private job directory the backend made:
//!
//! ```text
//! <job_dir>/fs/        the job's disk allowance (a tmpfs of its own, see [`crate::sandbox::disk`])
//! <job_dir>/fs/work/   the sandbox's /work, owned by the sandbox user: sources, out/, binaries
//! <job_dir>/fs/tmp/    the sandbox's /tmp, owned by the sandbox user
//! <job_dir>/logs/      the executor's (0700): stdin, stdout, stderr, compile output
//! ```
//!
//! All are removed when the [`Workspace`] is dropped, however the job ends.
//!
//! Where the sandbox is the executor's container, user code runs as the executor's own uid and
//! can replace anything under the job directory, `logs/` included, with a link. So the executor
//! never goes through a path user code may have changed: it keeps both directories open from
//! the moment it made them, and opens what is in them relative to those descriptors with
//! `O_NOFOLLOW`, taking only regular files ([`Workspace::open_log`], [`Workspace::open_out_dir`]);
//! files it creates are created `O_EXCL | O_NOFOLLOW`. (Under bubblewrap, `logs/` is not even in
//! the sandbox; the same opens serve both.)

use std::{
    ffi::OsStr,
    fs::{self, DirBuilder, File},
    io::{self, Write},
    os::{
        fd::OwnedFd,
        unix::fs::{DirBuilderExt, PermissionsExt},
    },
    path::{Path, PathBuf},
};

use cola_wire::{InputFile, Inputs};
use nix::{
    errno::Errno,
    fcntl::{OFlag, openat},
    sys::stat::{Mode, SFlag, fstat},
};

use crate::{
    error::{ExecutorError, IoContext},
    sandbox::{
        WritableDirs, create_file,
        disk::{self, Allowance},
    },
};

/// The directory `out/` inside the work directory: what the program leaves there is zipped.
pub const OUT_DIR: &str = "out";

/// The executor's files of one step or stream, in `logs/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log {
    Stdin,
    Stdout,
    Stderr,
    Compile,
    /// What bubblewrap says when the sandbox cannot start.
    Sandbox,
    /// The compile step's outcome, left by a compile container for the run step's (Kubernetes:
    /// see [`crate::runner`]'s `split`).
    CompileOutcome,
}

impl Log {
    fn file_name(self) -> &'static str {
        match self {
            Self::Stdin => "stdin",
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
            Self::Sandbox => "sandbox",
            Self::Compile => "compile",
            Self::CompileOutcome => "compile-outcome.json",
        }
    }
}

/// A job's directories, removed on drop.
#[derive(Debug)]
pub struct Workspace {
    fs: PathBuf,
    dirs: WritableDirs,
    logs: PathBuf,
    /// `work/` and `logs/` as made, whatever user code renames or links there later.
    work_fd: OwnedFd,
    logs_fd: OwnedFd,
    /// The sandbox user that owns `work/` and `tmp/`, when the executor is root.
    owner: Option<(u32, u32)>,
    /// The tmpfs mounted at `fs/`, when the job has a disk allowance of its own.
    allowance: Option<Allowance>,
    /// The file systems a container runtime made for the job alone (see
    /// [`DiskAllowance::Container`]).
    container_areas: Vec<PathBuf>,
    /// Left in place when dropped, for the next container of the job ([`Workspace::hand_on`]).
    handed_on: bool,
}

/// How a job's files are held to its disk allowance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskAllowance {
    /// A tmpfs of this many bytes, mounted by the executor for the job's thread.
    Mount(u64),
    /// File systems the container runtime made for the job alone, at its size (a container's
    /// `/work` and `/tmp`): one of them full means the allowance is used up.
    Container(Vec<PathBuf>),
    /// None: the host's disk, under the per-file size limit only.
    None,
}

impl Workspace {
    /// Creates the directories in `job_dir`, giving `work/` and `tmp/` to `owner`, on `disk`.
    /// Call it on the thread that runs the job: an allowance is mounted for that thread only
    /// (see [`crate::sandbox::disk`]).
    pub fn create(
        job_dir: &Path,
        owner: Option<(u32, u32)>,
        disk: DiskAllowance,
    ) -> Result<Self, ExecutorError> {
        let meta = fs::symlink_metadata(job_dir)
            .context(|| format!("job directory {}", job_dir.display()))?;
        if !meta.is_dir() {
            return Err(ExecutorError::Config(format!(
                "job directory {} is not a directory",
                job_dir.display()
            )));
        }
        let (fs, logs) = (job_dir.join("fs"), job_dir.join("logs"));
        // Left by an earlier attempt? Start clean.
        remove_dirs(&[&fs, &logs]);
        make_dir(&logs, 0o700)?;
        make_dir(&fs, 0o711)?;
        let (allowance, container_areas) = match disk {
            DiskAllowance::Mount(bytes) => (mount_allowance(&fs, bytes)?, Vec::new()),
            DiskAllowance::Container(areas) => (None, areas),
            DiskAllowance::None => (None, Vec::new()),
        };
        let dirs = WritableDirs {
            work: fs.join("work"),
            tmp: fs.join("tmp"),
        };
        make_dir(&dirs.work, 0o700)?;
        make_dir(&dirs.tmp, 0o700)?;
        let workspace = Self {
            work_fd: open_dir(&dirs.work)?,
            logs_fd: open_dir(&logs)?,
            fs,
            dirs,
            logs,
            owner,
            allowance,
            container_areas,
            handed_on: false,
        };
        workspace.give_to_sandbox(&workspace.work_fd, &workspace.dirs.work)?;
        workspace.give_to_sandbox(open_dir(&workspace.dirs.tmp)?, &workspace.dirs.tmp)?;
        let out = workspace.out_dir();
        make_dir(&out, 0o755)?;
        workspace.give_to_sandbox(&open_dir(&out)?, &out)?;
        Ok(workspace)
    }

    /// The workspace an earlier container of the job made in `job_dir` and handed on
    /// ([`Workspace::hand_on`]); only in a container, whose work areas (`container_areas`) are
    /// the job's alone. Its directories are opened without following a link, as [`Workspace::create`]
    /// would have made them.
    pub fn reopen(job_dir: &Path, container_areas: Vec<PathBuf>) -> Result<Self, ExecutorError> {
        let (fs, logs) = (job_dir.join("fs"), job_dir.join("logs"));
        let dirs = WritableDirs {
            work: fs.join("work"),
            tmp: fs.join("tmp"),
        };
        Ok(Self {
            work_fd: open_dir(&dirs.work)?,
            logs_fd: open_dir(&logs)?,
            fs,
            dirs,
            logs,
            owner: None,
            allowance: None,
            container_areas,
            handed_on: false,
        })
    }

    /// Leaves the workspace in place for the next container of the job, which
    /// [reopens](Workspace::reopen) it.
    pub fn hand_on(mut self) {
        self.handed_on = true;
    }

    /// Writes `bytes` as the new log `log`.
    pub fn write_log(&self, log: Log, bytes: &[u8]) -> Result<(), ExecutorError> {
        let path = self.log(log);
        create_file(&path, 0o600)?
            .write_all(bytes)
            .context(|| format!("writing {}", path.display()))
    }

    /// Writes `bytes` as the log `log` so that it appears whole: written under another name,
    /// then renamed (before any user code runs).
    pub fn publish_log(&self, log: Log, bytes: &[u8]) -> Result<(), ExecutorError> {
        let path = self.log(log);
        let draft = path.with_extension("draft");
        let mut file = create_file(&draft, 0o600)?;
        file.write_all(bytes)
            .context(|| format!("writing {}", draft.display()))?;
        fs::rename(&draft, &path).context(|| format!("renaming {}", draft.display()))
    }

    /// Where the log `log` of a workspace in `job_dir` is.
    pub fn log_in(job_dir: &Path, log: Log) -> PathBuf {
        job_dir.join("logs").join(log.file_name())
    }

    /// The host directories the sandbox writes.
    pub fn writable(&self) -> &WritableDirs {
        &self.dirs
    }

    /// The program's `out/` directory.
    pub fn out_dir(&self) -> PathBuf {
        self.dirs.work.join(OUT_DIR)
    }

    /// Gives the disk allowance (if the workspace has one) a new size.
    pub fn resize_allowance(&self, bytes: u64) -> Result<(), ExecutorError> {
        match &self.allowance {
            Some(allowance) => allowance
                .resize(bytes)
                .context(|| format!("resizing the disk allowance at {}", self.fs.display())),
            None => Ok(()),
        }
    }

    /// What the job left on disk, measured: a file of at least `max_file_bytes`, and whether
    /// its allowance is used up.
    pub fn disk_evidence(&self, max_file_bytes: u64) -> crate::sandbox::DiskEvidence {
        crate::sandbox::DiskEvidence {
            file_at_limit: disk::has_file_of(&[&self.dirs.work, &self.dirs.tmp], max_file_bytes),
            allowance_full: self
                .allowance
                .as_ref()
                .is_some_and(|a| a.is_full().unwrap_or(false))
                || self
                    .container_areas
                    .iter()
                    .any(|area| disk::is_full(area).unwrap_or(false)),
        }
    }

    /// Where a log is created, before any user code runs (see [`create_file`]); read it back
    /// with [`Workspace::open_log`], never through this path.
    pub fn log(&self, log: Log) -> PathBuf {
        self.logs.join(log.file_name())
    }

    /// The log as the executor made it, for reading: `None` when it is missing or is no longer
    /// a regular file (user code sharing the executor's uid replaced it with a link, a FIFO or a
    /// directory: its own output is lost, nothing else is read).
    pub fn open_log(&self, log: Log) -> Result<Option<File>, ExecutorError> {
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
        Ok(
            open_in(&self.logs_fd, log.file_name(), flags, SFlag::S_IFREG)
                .context(|| format!("opening {}", self.log(log).display()))?
                .map(File::from),
        )
    }

    /// The program's `out/` directory, opened without following a link; `None` when there is
    /// no such directory any more.
    pub fn open_out_dir(&self) -> Result<Option<OwnedFd>, ExecutorError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
        open_in(&self.work_fd, OUT_DIR, flags, SFlag::S_IFDIR)
            .context(|| format!("opening {}", self.out_dir().display()))
    }

    /// Writes the job's files into the work directory, owned by the sandbox user.
    pub fn write_files(&self, files: &[InputFile]) -> Result<(), ExecutorError> {
        for file in files {
            let path = self.dirs.work.join(&file.name);
            let mut out = create_file(&path, 0o644)?;
            out.write_all(file.content.as_bytes())
                .context(|| format!("writing {}", path.display()))?;
            self.give_to_sandbox(&out, &path)?;
        }
        Ok(())
    }

    /// Writes the job's files and its standard input; where the standard input is.
    pub fn write_inputs(&self, inputs: &Inputs) -> Result<PathBuf, ExecutorError> {
        self.write_files(&inputs.files)?;
        self.write_stdin(&inputs.stdin)
    }

    /// Writes what the program reads on stdin into the executor's logs.
    pub fn write_stdin(&self, stdin: &str) -> Result<PathBuf, ExecutorError> {
        self.write_log(Log::Stdin, stdin.as_bytes())?;
        Ok(self.log(Log::Stdin))
    }

    /// Hands a file or directory the executor created to the sandbox user.
    fn give_to_sandbox(
        &self,
        file: impl std::os::fd::AsFd,
        path: &Path,
    ) -> Result<(), ExecutorError> {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::fchown(file, Some(uid), Some(gid))
                .context(|| format!("giving {} to uid {uid}", path.display()))?;
        }
        Ok(())
    }
}

impl Drop for Workspace {
    /// Removes everything (unless handed on): the allowance's files go with its tmpfs.
    fn drop(&mut self) {
        if self.handed_on {
            return;
        }
        if self.allowance.take().is_none() {
            remove_dirs(&[&self.dirs.work, &self.dirs.tmp]);
        }
        remove_dirs(&[&self.fs, &self.logs]);
    }
}

/// Mounts a disk allowance of `bytes` at `fs`; `None` (and a warning) where this executor may
/// not mount, although root (a container's root).
fn mount_allowance(fs: &Path, bytes: u64) -> Result<Option<Allowance>, ExecutorError> {
    match Allowance::mount(fs, bytes) {
        Ok(allowance) => Ok(Some(allowance)),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            tracing::warn!(error = %e, "no disk allowance: the job's files go to the host's disk");
            Ok(None)
        }
        Err(e) => Err(ExecutorError::io(
            format!("mounting the disk allowance at {}", fs.display()),
            e,
        )),
    }
}

fn remove_dirs(dirs: &[&Path]) {
    for dir in dirs {
        if let Err(e) = remove_tree(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a job's directory");
        }
    }
}

/// The directory the executor just made at `path`.
fn open_dir(path: &Path) -> Result<OwnedFd, ExecutorError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    nix::fcntl::open(path, flags, Mode::empty())
        .map_err(io::Error::from)
        .context(|| format!("opening {}", path.display()))
}

/// Opens `name` in `dir` with `flags`, never following a link, if it is of type `kind`;
/// `None` when it is missing, a link or of another type.
pub(crate) fn open_in(
    dir: &OwnedFd,
    name: impl AsRef<OsStr>,
    flags: OFlag,
    kind: SFlag,
) -> io::Result<Option<OwnedFd>> {
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = match openat(dir, name.as_ref(), flags, Mode::empty()) {
        Ok(fd) => fd,
        // ELOOP: a link; ENOTDIR: not the directory asked for; ENXIO: a socket.
        Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR | Errno::ENXIO) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let stat = fstat(&fd)?;
    Ok((SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == kind).then_some(fd))
}

fn make_dir(path: &Path, mode: u32) -> Result<(), ExecutorError> {
    DirBuilder::new()
        .mode(mode)
        .create(path)
        .context(|| format!("creating {}", path.display()))?;
    // The umask may have taken bits away.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .context(|| format!("chmod {}", path.display()))
}

/// Removes a directory tree without following links. If the sandbox user took permissions
/// away from its own directories (which stops an executor that is not root), gives them back
/// and tries again.
pub(crate) fn remove_tree(path: &Path) -> std::io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            restore_dir_permissions(path);
            fs::remove_dir_all(path)
        }
        other => other,
    }
}

fn restore_dir_permissions(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            restore_dir_permissions(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_land_in_work_and_everything_goes_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::create(dir.path(), None, DiskAllowance::None).unwrap();
        ws.write_files(&[InputFile {
            name: "main.c".into(),
            content: "int main(){}".into(),
        }])
        .unwrap();
        let stdin = ws.write_stdin("42\n").unwrap();
        assert_eq!(
            fs::read_to_string(ws.writable().work.join("main.c")).unwrap(),
            "int main(){}"
        );
        assert!(ws.out_dir().is_dir());
        assert_eq!(fs::read_to_string(&stdin).unwrap(), "42\n");
        assert!(
            !stdin.starts_with(&ws.writable().work),
            "stdin stays outside the sandbox"
        );
        // A second file of the same name is refused rather than overwritten.
        assert!(
            ws.write_files(&[InputFile {
                name: "main.c".into(),
                content: String::new()
            }])
            .is_err()
        );
        std::fs::create_dir_all(ws.writable().work.join("locked/inner")).unwrap();
        drop(ws);
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    /// What user code sharing the executor's uid could leave in `logs/` and `work/`: links to
    /// files it must not read, a FIFO that would block a reader, the directories themselves
    /// moved away and replaced by links.
    #[test]
    fn logs_and_out_replaced_by_links_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        fs::write(&secret, "host file").unwrap();
        let job = dir.path().join("job");
        fs::create_dir(&job).unwrap();
        let ws = Workspace::create(&job, None, DiskAllowance::None).unwrap();
        fs::write(ws.log(Log::Compile), "compiled").unwrap();
        let read = |log| {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut ws.open_log(log).unwrap()?, &mut text).unwrap();
            Some(text)
        };
        assert_eq!(read(Log::Compile).as_deref(), Some("compiled"));
        assert_eq!(read(Log::Stdout), None, "missing");
        std::os::unix::fs::symlink(&secret, ws.log(Log::Stdout)).unwrap();
        std::os::unix::fs::symlink("/proc/self/maps", ws.log(Log::Stderr)).unwrap();
        nix::unistd::mkfifo(&ws.log(Log::Stdin), Mode::from_bits_truncate(0o600)).unwrap();
        for log in [Log::Stdout, Log::Stderr, Log::Stdin] {
            assert_eq!(read(log), None, "{log:?}");
        }
        // A file of the executor's is never overwritten, nor created through a link.
        assert!(create_file(&ws.log(Log::Stdout), 0o600).is_err());
        assert_eq!(fs::read_to_string(&secret).unwrap(), "host file");

        // The directories moved away and replaced by links: still the executor's own.
        fs::rename(job.join("logs"), job.join("moved-logs")).unwrap();
        fs::create_dir(dir.path().join("fake")).unwrap();
        fs::write(dir.path().join("fake/compile"), "fake").unwrap();
        std::os::unix::fs::symlink(dir.path().join("fake"), job.join("logs")).unwrap();
        assert_eq!(read(Log::Compile).as_deref(), Some("compiled"));
        fs::rename(ws.out_dir(), job.join("moved-out")).unwrap();
        std::os::unix::fs::symlink(dir.path(), ws.out_dir()).unwrap();
        assert!(ws.open_out_dir().unwrap().is_none());
    }

    #[test]
    fn a_job_dir_that_is_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("job")).unwrap();
        assert!(matches!(
            Workspace::create(&dir.path().join("job"), None, DiskAllowance::None),
            Err(ExecutorError::Config(_))
        ));
    }
}
