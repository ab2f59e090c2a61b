//! The bubblewrap command line of a job's sandbox (its PID 1 comes after it).

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use super::{TMP_DIR, WORK_DIR};

/// Top-level paths that merged-usr systems make links into `/usr` (and older systems keep as
/// directories); each is recreated in the sandbox as the host has it.
const ROOT_LINKS: [&str; 6] = ["/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"];

/// The host directories a step binds, by the paths bubblewrap reaches them at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Binds {
    /// Seen as [`WORK_DIR`], writable.
    pub work: PathBuf,
    /// Seen as [`TMP_DIR`], writable.
    pub tmp: PathBuf,
    /// Source and where the sandbox sees it, read-only.
    pub read_only: Vec<(PathBuf, String)>,
}

impl Binds {
    /// The writable directories come first in `sources` (work, tmp); the others go with the
    /// step's `read_only`, in order.
    pub(super) fn new(sources: &[&Path], read_only: &[(PathBuf, String)]) -> Self {
        Self {
            work: sources[0].to_owned(),
            tmp: sources[1].to_owned(),
            read_only: sources[2..]
                .iter()
                .zip(read_only)
                .map(|(source, (_, inside))| (source.to_path_buf(), inside.clone()))
                .collect(),
        }
    }
}

/// What a sandbox is made of.
#[derive(Debug)]
pub(super) struct SandboxShape<'a> {
    pub binds: &'a Binds,
    /// The size of `/dev/shm`.
    pub shm_bytes: u64,
    /// Host directories (readable by anyone) bound read-only at the same paths.
    pub system: &'a [PathBuf],
}

/// The `bwrap` arguments for a sandbox of `shape`, up to and including `--`: its PID 1's command
/// line follows. Its environment is empty: each step brings its own.
pub(super) fn arguments(shape: &SandboxShape) -> Vec<OsString> {
    let binds = shape.binds;
    let mut args = Args::default();
    args.push_all([
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--hostname",
        "cola",
    ]);
    for dir in shape.system {
        args.push("--ro-bind");
        args.push(dir);
        args.push(dir);
    }
    for link in root_links() {
        args.push_all(link.iter());
    }
    args.push_all(["--proc", "/proc", "--dev", "/dev"]);
    // tmpfs memory is not data memory: it is capped.
    args.push_all([
        "--size",
        &shape.shm_bytes.to_string(),
        "--tmpfs",
        "/dev/shm",
    ]);
    for (host, inside) in [(&binds.work, WORK_DIR), (&binds.tmp, TMP_DIR)] {
        args.push("--bind");
        args.push(host);
        args.push(inside);
    }
    for (host, inside) in &binds.read_only {
        args.push("--ro-bind");
        args.push(host);
        args.push(inside);
    }
    // bubblewrap's root and /dev are tmpfs mounts of their own, writable and without a size.
    args.push_all(["--remount-ro", "/dev", "--remount-ro", "/"]);
    args.push_all(["--chdir", WORK_DIR, "--clearenv", "--"]);
    args.0
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push(&mut self, arg: impl Into<OsString>) {
        self.0.push(arg.into());
    }

    fn push_all<A: Into<OsString>>(&mut self, args: impl IntoIterator<Item = A>) {
        self.0.extend(args.into_iter().map(Into::into));
    }
}

/// How the sandbox recreates the host's top-level links: `--symlink usr/bin /bin` for a link,
/// `--ro-bind /bin /bin` for a directory, nothing for what the host lacks.
fn root_links() -> &'static [[OsString; 3]] {
    static LINKS: OnceLock<Vec<[OsString; 3]>> = OnceLock::new();
    LINKS.get_or_init(|| {
        ROOT_LINKS
            .iter()
            .filter_map(|path| {
                let meta = std::fs::symlink_metadata(path).ok()?;
                if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(path).ok()?;
                    Some(["--symlink".into(), target.into(), (*path).into()])
                } else if meta.is_dir() {
                    Some(["--ro-bind".into(), (*path).into(), (*path).into()])
                } else {
                    None
                }
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_sandbox_binds_the_work_directory_and_nothing_of_etc() {
        let read_only = vec![(PathBuf::from("/cache/go"), "/gocache".to_owned())];
        let hosts = [
            Path::new("/jobs/1/fs/work"),
            Path::new("/jobs/1/fs/tmp"),
            Path::new("/cache/go"),
        ];
        let binds = Binds::new(&hosts, &read_only);
        let system = [PathBuf::from("/usr/bin"), PathBuf::from("/usr/lib")];
        let args = text(&arguments(&SandboxShape {
            binds: &binds,
            shm_bytes: 64 << 20,
            system: &system,
        }));
        assert_eq!(args.last().map(String::as_str), Some("--"));
        let joined = args.join(" ");
        for expected in [
            "--unshare-all --unshare-user --disable-userns --die-with-parent --new-session --as-pid-1",
            "--ro-bind /usr/bin /usr/bin --ro-bind /usr/lib /usr/lib",
            "--size 67108864 --tmpfs /dev/shm --bind /jobs/1/fs/work /work --bind /jobs/1/fs/tmp /tmp --ro-bind /cache/go /gocache --remount-ro /dev --remount-ro / --chdir /work --clearenv --",
        ] {
            assert!(joined.contains(expected), "{expected:?} not in {joined}");
        }
        assert!(
            !joined.contains("--ro-bind /usr /usr"),
            "not the whole of /usr: {joined}"
        );
        assert!(
            !joined.contains("/etc"),
            "nothing of the host's /etc: {joined}"
        );
    }
}
