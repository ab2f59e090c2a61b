//! What a sandbox shows of the host: the directories of `/usr` the language table names
//! ([`cola_wire::languages::SYSTEM_DIRS`] and each language's `toolchain_dirs`), read-only,
//! and nothing else of it.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use cola_wire::{LanguageDef, languages::SYSTEM_DIRS};

/// The host directories the sandbox of a job of `lang` binds (see [`dirs_for`]), looked up
/// once per process: every job's sandbox needs them.
pub fn dirs_of(lang: &LanguageDef) -> Vec<PathBuf> {
    static DIRS: OnceLock<Vec<(&'static str, Vec<PathBuf>)>> = OnceLock::new();
    let known = DIRS.get_or_init(|| {
        cola_wire::languages()
            .iter()
            .map(|l| (l.name, dirs_for([l])))
            .collect()
    });
    match known.iter().find(|(name, _)| *name == lang.name) {
        Some((_, dirs)) => dirs.clone(),
        None => dirs_for([lang]),
    }
}

/// The host directories the sandbox of a job of any of `langs` binds read-only at the same
/// paths: those that exist, sorted, each once.
pub fn dirs_for<'a>(langs: impl IntoIterator<Item = &'a LanguageDef>) -> Vec<PathBuf> {
    let wanted = SYSTEM_DIRS.iter().copied().chain(
        langs
            .into_iter()
            .flat_map(|l| l.toolchain_dirs.iter().copied()),
    );
    let mut dirs: Vec<PathBuf> = wanted.flat_map(expand).collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// The existing directories `pattern` names: itself, or with a trailing `*` every directory
/// whose path starts with the rest.
fn expand(pattern: &str) -> Vec<PathBuf> {
    let Some(prefix) = pattern.strip_suffix('*') else {
        return is_dir(Path::new(pattern))
            .then(|| PathBuf::from(pattern))
            .into_iter()
            .collect();
    };
    let prefix = Path::new(prefix);
    let (Some(parent), Some(start)) = (prefix.parent(), prefix.file_name()) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name().is_some_and(|name| {
                name.as_encoded_bytes()
                    .starts_with(start.as_encoded_bytes())
            }) && is_dir(path)
        })
        .collect()
}

/// A real directory (not a link to one: the sandbox sees it at this path).
fn is_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_name_existing_directories_only() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["go-1.19", "go-1.22", "gopher", "other"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        std::os::unix::fs::symlink("go-1.19", dir.path().join("go-link")).unwrap();
        let base = dir.path().display();
        let mut got = expand(&format!("{base}/go-*"));
        got.sort();
        assert_eq!(
            got,
            [dir.path().join("go-1.19"), dir.path().join("go-1.22")]
        );
        assert_eq!(expand(&format!("{base}/other")), [dir.path().join("other")]);
        assert!(expand(&format!("{base}/missing")).is_empty());
        assert!(expand(&format!("{base}/go-link")).is_empty());
    }

    #[test]
    fn a_languages_dirs_are_looked_up_once_and_the_same() {
        for lang in cola_wire::languages() {
            assert_eq!(dirs_of(lang), dirs_for([lang]), "{}", lang.name);
        }
    }

    #[test]
    fn a_sandbox_never_sees_usr_local() {
        let dirs = dirs_for(cola_wire::languages());
        assert!(dirs.contains(&PathBuf::from("/usr/bin")), "{dirs:?}");
        assert!(
            dirs.iter()
                .all(|d| !d.starts_with("/usr/local") && !d.starts_with("/usr/etc")),
            "{dirs:?}"
        );
    }
}
