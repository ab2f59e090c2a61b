//! A job's directories on the host, inside the private job directory the backend made:
//!
//! ```text
//! <job_dir>/fs/        the job's disk allowance (a tmpfs of its own, see [`crate::disk`])
//! <job_dir>/fs/work/   the sandbox's /work, owned by the sandbox user: sources, out/, binaries
//! <job_dir>/fs/tmp/    the sandbox's /tmp, owned by the sandbox user
//! <job_dir>/logs/      the executor's (0700): stdin, stdout, stderr, compile output
//! ```
//!
//! All are removed when the [`Workspace`] is dropped, however the job ends.

use std::{
    fs::{self, DirBuilder, File, OpenOptions},
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use cola_wire::InputFile;

use crate::{
    disk::{self, Allowance},
    error::{ExecutorError, IoContext},
    sandbox::WritableDirs,
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
}

impl Log {
    fn file_name(self) -> &'static str {
        match self {
            Self::Stdin => "stdin",
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
            Self::Sandbox => "sandbox",
            Self::Compile => "compile",
        }
    }
}

/// A job's directories, removed on drop.
#[derive(Debug)]
pub struct Workspace {
    fs: PathBuf,
    dirs: WritableDirs,
    logs: PathBuf,
    /// The sandbox user that owns `work/` and `tmp/`, when the executor is root.
    owner: Option<(u32, u32)>,
    /// The tmpfs mounted at `fs/`, when the job has a disk allowance.
    allowance: Option<Allowance>,
}

impl Workspace {
    /// Creates the directories in `job_dir`, giving `work/` and `tmp/` to `owner`, on a disk
    /// allowance of `disk_bytes` when given. Call it on the thread that runs the job: the
    /// allowance is mounted for that thread only (see [`crate::disk`]).
    pub fn create(
        job_dir: &Path,
        owner: Option<(u32, u32)>,
        disk_bytes: Option<u64>,
    ) -> Result<Self, ExecutorError> {
        let meta = fs::symlink_metadata(job_dir)
            .context(|| format!("job directory {}", job_dir.display()))?;
        if !meta.is_dir() {
            return Err(ExecutorError::Config(format!(
                "job directory {} is not a directory",
                job_dir.display()
            )));
        }
        let fs = job_dir.join("fs");
        let mut workspace = Self {
            dirs: WritableDirs {
                work: fs.join("work"),
                tmp: fs.join("tmp"),
            },
            fs,
            logs: job_dir.join("logs"),
            owner,
            allowance: None,
        };
        // Left by an earlier attempt? Start clean.
        workspace.remove();
        make_dir(&workspace.logs, 0o700)?;
        make_dir(&workspace.fs, 0o711)?;
        if let Some(bytes) = disk_bytes {
            match Allowance::mount(&workspace.fs, bytes) {
                Ok(allowance) => workspace.allowance = Some(allowance),
                // Root without the right to mount (a container's): as without root.
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    tracing::warn!(error = %e, "no disk allowance: the job's files go to the host's disk");
                }
                Err(e) => {
                    return Err(ExecutorError::io(
                        format!("mounting the disk allowance at {}", workspace.fs.display()),
                        e,
                    ));
                }
            }
        }
        workspace.make_sandbox_dir(&workspace.dirs.work, 0o700)?;
        workspace.make_sandbox_dir(&workspace.dirs.tmp, 0o700)?;
        workspace.make_sandbox_dir(&workspace.dirs.work.join(OUT_DIR), 0o755)?;
        Ok(workspace)
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
                .is_some_and(|a| a.is_full().unwrap_or(false)),
        }
    }

    pub fn log(&self, log: Log) -> PathBuf {
        self.logs.join(log.file_name())
    }

    /// Writes the job's files into the work directory, owned by the sandbox user.
    pub fn write_files(&self, files: &[InputFile]) -> Result<(), ExecutorError> {
        for file in files {
            let path = self.dirs.work.join(&file.name);
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .context(|| format!("creating {}", path.display()))?;
            out.write_all(file.content.as_bytes())
                .context(|| format!("writing {}", path.display()))?;
            self.give_to_sandbox(&out, &path)?;
        }
        Ok(())
    }

    /// Writes what the program reads on stdin into the executor's logs.
    pub fn write_stdin(&self, stdin: &str) -> Result<PathBuf, ExecutorError> {
        let path = self.log(Log::Stdin);
        fs::write(&path, stdin).context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Creates a directory owned by the sandbox user.
    fn make_sandbox_dir(&self, path: &Path, mode: u32) -> Result<(), ExecutorError> {
        make_dir(path, mode)?;
        let dir = File::open(path).context(|| format!("opening {}", path.display()))?;
        self.give_to_sandbox(&dir, path)
    }

    /// Hands a file or directory the executor created to the sandbox user.
    fn give_to_sandbox(&self, file: &File, path: &Path) -> Result<(), ExecutorError> {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::fchown(file, Some(uid), Some(gid))
                .context(|| format!("giving {} to uid {uid}", path.display()))?;
        }
        Ok(())
    }

    /// Removes everything: the allowance's files go with its tmpfs.
    fn remove(&mut self) {
        let warn = |dir: &Path, e: std::io::Error| {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a job's directory");
        };
        if self.allowance.take().is_none() {
            for dir in [&self.dirs.work, &self.dirs.tmp] {
                if let Err(e) = remove_tree(dir) {
                    warn(dir, e);
                }
            }
        }
        for dir in [&self.fs, &self.logs] {
            if let Err(e) = remove_tree(dir) {
                warn(dir, e);
            }
        }
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        self.remove();
    }
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
        let ws = Workspace::create(dir.path(), None, None).unwrap();
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

    #[test]
    fn a_job_dir_that_is_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("job")).unwrap();
        assert!(matches!(
            Workspace::create(&dir.path().join("job"), None, None),
            Err(ExecutorError::Config(_))
        ));
    }
}
