//! The bubblewrap command line of one step.

use std::{
    ffi::OsString,
    os::fd::RawFd,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use super::{BASE_ENV, Step, WORK_DIR};

/// PID 1 of the sandbox: runs the command as its child and exits with its status (128 + n for
/// a death by signal n). Not `exec`: the command must not be PID 1, which ignores default-action
/// signals and would have to reap orphans.
const INIT_SCRIPT: &str = "\"$@\"; exit $?";

/// Top-level paths that merged-usr systems make links into `/usr` (and older systems keep as
/// directories); each is recreated in the sandbox as the host has it.
const ROOT_LINKS: [&str; 6] = ["/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"];

/// The host directories a step binds, by the paths bubblewrap reaches them at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Binds {
    /// Seen as [`WORK_DIR`], writable.
    pub work: PathBuf,
    /// Source and where the sandbox sees it, read-only.
    pub read_only: Vec<(PathBuf, String)>,
}

impl Binds {
    /// `sources[0]` is the work directory; the others go with the step's `read_only`, in order.
    pub(super) fn new(sources: &[&Path], read_only: &[(PathBuf, String)]) -> Self {
        Self {
            work: sources[0].to_owned(),
            read_only: sources[1..]
                .iter()
                .zip(read_only)
                .map(|(source, (_, inside))| (source.to_path_buf(), inside.clone()))
                .collect(),
        }
    }
}

/// The full `bwrap` argument vector for `step` with `binds`, bubblewrap's JSON status written
/// to `status_fd`.
pub(super) fn arguments(binds: &Binds, step: &Step, status_fd: RawFd) -> Vec<OsString> {
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
    args.push_all(["--ro-bind", "/usr", "/usr"]);
    for link in root_links() {
        args.push_all(link.iter());
    }
    args.push_all(["--proc", "/proc", "--dev", "/dev"]);
    // tmpfs memory is not data memory: the writable ones are capped.
    let memory = step.limits.memory_mb << 20;
    args.push_all(["--size", &memory.to_string(), "--tmpfs", "/tmp"]);
    args.push_all(["--size", &(memory / 4).to_string(), "--tmpfs", "/dev/shm"]);
    args.push("--bind");
    args.push(&binds.work);
    args.push(WORK_DIR);
    for (host, inside) in &binds.read_only {
        args.push("--ro-bind");
        args.push(host);
        args.push(inside);
    }
    // bubblewrap's root and /dev are tmpfs mounts of their own, writable and without a size.
    args.push_all(["--remount-ro", "/dev", "--remount-ro", "/"]);
    args.push_all(["--chdir", WORK_DIR, "--clearenv"]);
    let env = BASE_ENV
        .iter()
        .map(|(k, v)| (*k, *v))
        .chain(step.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    for (key, value) in env {
        args.push_all(["--setenv", key, value]);
    }
    args.push_all(["--json-status-fd", &status_fd.to_string()]);
    args.push_all(["--", "/bin/sh", "-c", INIT_SCRIPT, "sh"]);
    args.push_all(step.command.iter());
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
    use crate::sandbox::Output;
    use cola_wire::languages;

    fn step() -> Step {
        Step {
            command: vec!["./main".into(), "a b".into()],
            env: vec![("GOCACHE".into(), "/gocache".into())],
            limits: languages()[0].default_limits,
            max_file_bytes: 1 << 20,
            stdin: None,
            output: Output::Merged("/x/compile".into()),
            read_only: vec![("/cache/go".into(), "/gocache".into())],
        }
    }

    fn text(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_command_runs_under_sh_as_pid_1_with_only_the_given_environment() {
        let step = step();
        let hosts = [Path::new("/jobs/1/work"), Path::new("/cache/go")];
        let args = text(&arguments(&Binds::new(&hosts, &step.read_only), &step, 9));
        let tail: Vec<&str> = args[args.len() - 7..].iter().map(String::as_str).collect();
        assert_eq!(
            tail,
            ["--", "/bin/sh", "-c", INIT_SCRIPT, "sh", "./main", "a b"]
        );
        let joined = args.join(" ");
        for expected in [
            "--unshare-all --unshare-user --disable-userns --die-with-parent --new-session --as-pid-1",
            "--ro-bind /usr /usr",
            "--bind /jobs/1/work /work --ro-bind /cache/go /gocache --remount-ro /dev --remount-ro / --chdir /work --clearenv",
            "--setenv PATH /usr/local/bin:/usr/bin:/bin --setenv HOME /tmp --setenv LANG C.UTF-8 --setenv GOCACHE /gocache",
            "--json-status-fd 9",
            "--size 268435456 --tmpfs /tmp --size 67108864 --tmpfs /dev/shm",
        ] {
            assert!(joined.contains(expected), "{expected:?} not in {joined}");
        }
        assert!(
            !joined.contains("/etc"),
            "nothing of the host's /etc: {joined}"
        );
    }
}
