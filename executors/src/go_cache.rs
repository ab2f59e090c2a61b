//! Go's build cache: warmed once, shared read-only.
//!
//! A cold cache makes every Go job compile the parts of the standard library it uses.
//! [`prepare_go_cache`] builds the whole standard library and a hello program once into a cache
//! directory, with the exact environment of the language table (so that jobs hit the same cache
//! keys), and makes it readable by everyone. The compile step of every Go job sees that
//! directory read-only at `/gocache` with `GOCACHE=/gocache`: the go command treats writes to its
//! cache as best effort, so a job's own packages (cache misses, which no later job could reuse)
//! are compiled without being stored, and no job can change what another reads. A private
//! writable layer on top (bubblewrap 0.8 has no overlay mounts, so a copy or a hard-link farm of
//! the cache's 256 directories per job) measured 40 to 55 ms per job here, for nothing a
//! one-build job could use. Without a prepared cache, each compile step gets an empty writable
//! cache in its private `/tmp`.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Stdio},
};

use cola_wire::{LanguageDef, languages};

use crate::{
    error::{ExecutorError, IoContext},
    sandbox::{ReadOnlyBind, Step},
};

/// Where the compile step sees the shared cache.
const SANDBOX_GO_CACHE: &str = "/gocache";
/// The compile step's cache when there is no shared one (in its private `/tmp`).
const PRIVATE_GO_CACHE: &str = "/tmp/gocache";

const HELLO: &str = "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n";

/// Whether jobs of `lang` use a Go build cache.
pub fn applies_to(lang: &LanguageDef) -> bool {
    lang.name == "go"
}

/// What a sandbox binds for the shared cache `template`: the template read-only at
/// `/gocache`, when the sandbox can bind directories (a container cannot: its image holds the
/// cache in its read-only root, used where it is).
pub fn bind(template: Option<&Path>, binds_directories: bool) -> Option<ReadOnlyBind> {
    let template = template.filter(|_| binds_directories)?;
    Some((template.to_owned(), SANDBOX_GO_CACHE.into()))
}

/// Points a Go compile step at the shared cache `template`, or at a private empty one; what
/// the sandbox must bind for it (see [`bind`]).
pub fn configure(
    step: &mut Step,
    template: Option<&Path>,
    binds_directories: bool,
) -> Option<ReadOnlyBind> {
    let bind = bind(template, binds_directories);
    let cache = match (template, &bind) {
        (Some(_), Some(_)) => SANDBOX_GO_CACHE.to_owned(),
        (Some(template), None) => template.display().to_string(),
        (None, _) => PRIVATE_GO_CACHE.to_owned(),
    };
    step.env.push(("GOCACHE".into(), cache));
    bind
}

/// Builds the standard library and a hello program with `GOCACHE=dir`, then makes the cache
/// readable (not writable) by everyone.
/// Idempotent: a warm cache makes this quick (about a second).
pub fn prepare_go_cache(dir: &Path) -> Result<(), ExecutorError> {
    let go = languages()
        .iter()
        .find(|l| applies_to(l))
        .ok_or_else(|| ExecutorError::GoCache("the language table has no Go".into()))?;
    fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .context(|| format!("resolving {}", dir.display()))?;
    let scratch = tempfile::tempdir().context(|| "creating a scratch directory")?;
    fs::write(scratch.path().join("main.go"), HELLO).context(|| "writing main.go")?;
    let go_command = |args: &[&str]| {
        let mut command = Command::new("go");
        command
            .args(args)
            .current_dir(scratch.path())
            .env_clear()
            .envs(crate::toolchain::host_env(go, scratch.path()))
            .env("GOPATH", scratch.path().join("gopath"))
            .env("GOCACHE", &dir);
        run_quietly(command, args)
    };
    go_command(&["build", "-o", "hello", "main.go"])?;
    go_command(&["build", "std"])?;
    share_read_only(&dir)
}

fn run_quietly(mut command: Command, args: &[&str]) -> Result<(), ExecutorError> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ExecutorError::GoCache(format!("cannot run go: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(ExecutorError::GoCache(format!(
        "go {} failed ({}): {}",
        args.join(" "),
        out.status,
        stderr.chars().take(2000).collect::<String>()
    )))
}

/// Directories 0755, files 0644, down the whole tree (links are left alone).
fn share_read_only(dir: &Path) -> Result<(), ExecutorError> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .context(|| format!("chmod {}", dir.display()))?;
    for entry in fs::read_dir(dir).context(|| format!("reading {}", dir.display()))? {
        let entry = entry.context(|| format!("reading {}", dir.display()))?;
        let kind = entry
            .file_type()
            .context(|| format!("{}", entry.path().display()))?;
        if kind.is_dir() {
            share_read_only(&entry.path())?;
        } else if kind.is_file() {
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o644))
                .context(|| format!("chmod {}", entry.path().display()))?;
        }
    }
    Ok(())
}
