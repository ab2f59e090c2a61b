//! A job's disk allowance: a tmpfs of its own, capped at the job's `disk_mb`, that holds what
//! its sandbox sees as `/work` and `/tmp`. Nothing a job writes reaches the host's disks (the
//! one the NATS store is on, say), and a job cannot keep more than its allowance on disk.
//! Its pages are memory, charged to the job's cgroup, so they also count against `memory_mb`.
//!
//! The tmpfs is mounted in a mount namespace private to the thread that runs the job:
//! `unshare(CLONE_NEWNS)` moves only the calling thread (with the threads and processes it
//! starts later, such as the sandbox). No other process sees the mount, and it goes with the
//! thread however the executor ends, so everything that touches the job's files (writing its
//! inputs, its sandbox, reading its outputs, removing them) runs on that one thread
//! ([`crate::runner`]). Mounting needs `CAP_SYS_ADMIN` (an executor running as root); without
//! it the job's directories are plain directories on the host's disk, bounded by the per-file
//! size limit and time only, and the middleware says so at start-up.

use std::{
    cell::Cell,
    ffi::CString,
    io,
    path::{Path, PathBuf},
    ptr,
};

use super::{c_path, check, private_mount_namespace};

/// Files (and directories) a job may have on its allowance at once: also what walking them
/// after a step may cost.
const MAX_FILES: u64 = 16_384;

thread_local! {
    /// Whether this thread has a mount namespace of its own.
    static PRIVATE_MOUNTS: Cell<bool> = const { Cell::new(false) };
}

/// Whether this executor can give jobs a disk allowance: `Err` says why not.
pub fn available() -> Result<(), String> {
    let probe = || -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let allowance = Allowance::mount(dir.path(), 1 << 20)?;
        drop(allowance);
        Ok(())
    };
    // On a thread of its own, which ends with its mount namespace.
    std::thread::spawn(probe)
        .join()
        .map_err(|_| "the probe panicked".to_owned())?
        .map_err(|e| format!("cannot mount a tmpfs per job ({e}): the executor is not root"))
}

/// A mounted allowance, unmounted when dropped (on the thread that mounted it).
#[derive(Debug)]
pub struct Allowance {
    root: PathBuf,
    c_root: CString,
    /// Its size now.
    bytes: Cell<u64>,
}

impl Allowance {
    /// Mounts a tmpfs of `bytes` at `root` (an empty directory), in this thread's own mount
    /// namespace; only root may use its top directory.
    pub fn mount(root: &Path, bytes: u64) -> io::Result<Self> {
        private_mounts()?;
        let c_root = c_path(root)?;
        let options = CString::new(format!(
            "size={},nr_inodes={MAX_FILES},mode=0711",
            bytes.max(4096)
        ))
        .map_err(io::Error::other)?;
        // SAFETY: valid NUL-terminated strings.
        check(unsafe {
            libc::mount(
                c"cola-job".as_ptr(),
                c_root.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                options.as_ptr().cast(),
            )
        })?;
        Ok(Self {
            root: root.to_owned(),
            c_root,
            bytes: Cell::new(bytes),
        })
    }

    /// Gives the allowance a new size (files already there stay; a size below what they take
    /// is refused).
    pub fn resize(&self, bytes: u64) -> io::Result<()> {
        if bytes == self.bytes.get() {
            return Ok(());
        }
        let options =
            CString::new(format!("size={}", bytes.max(4096))).map_err(io::Error::other)?;
        // SAFETY: valid NUL-terminated strings.
        check(unsafe {
            libc::mount(
                ptr::null(),
                self.c_root.as_ptr(),
                ptr::null(),
                libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV,
                options.as_ptr().cast(),
            )
        })?;
        self.bytes.set(bytes);
        Ok(())
    }

    /// Whether the allowance is used up (see [`is_full`]).
    pub fn is_full(&self) -> io::Result<bool> {
        is_full(&self.root)
    }
}

/// Whether the file system at `path` is used up: less than two pages left.
pub fn is_full(path: &Path) -> io::Result<bool> {
    let stats = nix::sys::statvfs::statvfs(path)?;
    let free = stats.blocks_available() * stats.fragment_size();
    Ok(free < 8192)
}

impl Drop for Allowance {
    fn drop(&mut self) {
        // SAFETY: a valid NUL-terminated path.
        if let Err(e) = check(unsafe { libc::umount2(self.c_root.as_ptr(), libc::MNT_DETACH) }) {
            tracing::warn!(dir = %self.root.display(), error = %e, "cannot unmount a job's disk allowance");
        }
    }
}

/// Whether any regular file under `dirs` (links not followed, at most [`MAX_FILES`] looked
/// at) has at least `bytes`.
pub fn has_file_of(dirs: &[&Path], bytes: u64) -> bool {
    let mut pending: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    let mut seen = 0;
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_FILES {
                return false;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() && meta.len() >= bytes {
                return true;
            }
        }
    }
    false
}

/// Gives this thread a mount namespace of its own (once), in which nothing propagates to or
/// from the host's.
fn private_mounts() -> io::Result<()> {
    if PRIVATE_MOUNTS.get() {
        return Ok(());
    }
    private_mount_namespace()?;
    PRIVATE_MOUNTS.set(true);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread of its own (its mount namespace ends with it).
    fn on_own_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f).join().unwrap()
    }

    #[test]
    fn an_allowance_caps_what_fits_and_is_seen_by_its_thread_only() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: mounting needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let outside = root.clone();
        on_own_thread(move || {
            let allowance = Allowance::mount(&root, 1 << 20).unwrap();
            let file = root.join("big");
            let written = std::fs::write(&file, vec![1u8; 2 << 20]);
            assert_eq!(
                written.unwrap_err().raw_os_error(),
                Some(libc::ENOSPC),
                "a 2 MiB file on a 1 MiB allowance"
            );
            assert!(allowance.is_full().unwrap());
            assert!(has_file_of(&[&root], 512 << 10));
            assert!(!has_file_of(&[&root], 2 << 20));
            // Another thread sees the plain directory underneath.
            let elsewhere = std::thread::scope(|s| {
                s.spawn(|| {
                    // (Threads started here share this thread's namespace.)
                    root.join("big").exists()
                })
                .join()
                .unwrap()
            });
            assert!(elsewhere, "a thread started here sees the allowance");
            allowance.resize(4 << 20).unwrap();
            std::fs::write(&file, vec![1u8; 2 << 20]).unwrap();
            assert!(!allowance.is_full().unwrap());
        });
        assert!(
            std::fs::read_dir(&outside).unwrap().next().is_none(),
            "nothing of it on the host's disk"
        );
    }
}
