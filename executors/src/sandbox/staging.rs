//! Where bubblewrap finds the host directories it binds into the sandbox.
//!
//! bubblewrap resolves the paths it binds as the user it runs as. When the executor is root,
//! that is the job's unprivileged uid, which may not pass through the directories above the job
//! directory (the backend keeps its jobs directory private, and a data directory under `/root`
//! is unreachable for anyone else). So, between `fork` and `exec`, still root, the child enters
//! a mount namespace of its own, clones each host directory into a detached mount
//! (`open_tree`), mounts a small tmpfs over `/tmp` there (hiding whatever the host has in `/tmp`,
//! where a job directory may well be: hence the clones first), and attaches each clone at
//! `/tmp/cola-<n>` (`move_mount`); bubblewrap is then told those paths. Nothing of this is
//! visible outside the child, and it ends with the child. (Linux 5.2 or newer.)
//!
//! An executor that is not root runs bubblewrap as itself, so it can reach whatever it can
//! reach: the host paths are used as they are.

use std::{
    ffi::CString,
    io,
    os::fd::RawFd,
    path::{Path, PathBuf},
};

use super::{c_path, check};

/// The directory staged binds appear under, in the child's own mount namespace.
const STAGE: &str = "/tmp";

// From <linux/mount.h>.
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

/// Host directories and the paths bubblewrap is given for them.
#[derive(Debug)]
pub(super) struct Staging {
    /// C strings made before `fork`: the child may not allocate.
    stage: CString,
    /// A host directory and its staged path.
    binds: Vec<(CString, CString)>,
    /// The child's clones of the directories, one per bind (capacity reserved before `fork`).
    clones: Vec<RawFd>,
}

impl Staging {
    /// Stages `dirs` (host paths) for a child that will switch users; returns what bubblewrap
    /// should bind instead of each.
    pub(super) fn new(dirs: &[&Path]) -> io::Result<(Self, Vec<PathBuf>)> {
        let mut binds = Vec::with_capacity(dirs.len());
        let mut staged_paths = Vec::with_capacity(dirs.len());
        for (i, dir) in dirs.iter().enumerate() {
            let staged = Path::new(STAGE).join(format!("cola-{i}"));
            binds.push((c_path(dir)?, c_path(&staged)?));
            staged_paths.push(staged);
        }
        let staging = Self {
            stage: c_path(Path::new(STAGE))?,
            clones: Vec::with_capacity(binds.len()),
            binds,
        };
        Ok((staging, staged_paths))
    }

    /// In the child, as root: a private mount namespace with every directory attached at its
    /// staged path. Async-signal-safe (no allocation: `clones` has its capacity).
    pub(super) fn apply(&mut self) -> io::Result<()> {
        // Nothing mounted here may reach the host's mount namespace.
        super::private_mount_namespace()?;
        // SAFETY: system calls with valid NUL-terminated strings made before fork.
        unsafe {
            self.clones.clear();
            for (host, _) in &self.binds {
                let clone = libc::syscall(
                    libc::SYS_open_tree,
                    libc::AT_FDCWD,
                    host.as_ptr(),
                    OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
                );
                if clone < 0 {
                    return Err(io::Error::last_os_error());
                }
                self.clones.push(clone as RawFd);
            }
            check(libc::mount(
                c"cola-stage".as_ptr(),
                self.stage.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                c"mode=0711,size=64k".as_ptr().cast(),
            ))?;
            for ((_, staged), clone) in self.binds.iter().zip(&self.clones) {
                check(libc::mkdir(staged.as_ptr(), 0o700))?;
                let moved = libc::syscall(
                    libc::SYS_move_mount,
                    *clone,
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    staged.as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH,
                );
                if moved < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_directory_gets_its_own_staged_path() {
        let (staging, paths) =
            Staging::new(&[Path::new("/jobs/1/work"), Path::new("/cache/go")]).unwrap();
        assert_eq!(
            paths,
            [PathBuf::from("/tmp/cola-0"), PathBuf::from("/tmp/cola-1")]
        );
        assert_eq!(staging.binds[1].0.as_bytes(), b"/cache/go");
        assert!(staging.clones.capacity() >= 2);
        assert!(Staging::new(&[Path::new("/a\0b")]).is_err());
    }
}
