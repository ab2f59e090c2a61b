//! The toolchain environment: a language's environment variables for its steps in the sandbox,
//! the environment of a toolchain command run on the host (the Go cache's preparation, the
//! version commands), and each toolchain's version as the middleware publishes it.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    path::Path,
    process::{Command, Stdio},
};

use cola_wire::{LanguageDef, languages};

use crate::sandbox::BASE_ENV;

/// The language's own environment of its steps, on top of the sandbox's base environment.
pub(super) fn language_env(lang: &LanguageDef) -> Vec<(String, String)> {
    lang.env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The environment of a toolchain command run on the host (not in the sandbox): the sandbox's
/// base environment and the language's, with `HOME` in a private directory.
pub(crate) fn host_env(lang: &LanguageDef, home: &Path) -> Vec<(String, OsString)> {
    BASE_ENV
        .iter()
        .map(|(k, v)| (*k, *v))
        .chain(lang.env.iter().copied())
        .filter(|(k, _)| *k != "HOME")
        .map(|(k, v)| (k.to_owned(), OsString::from(v)))
        .chain([("HOME".to_owned(), home.as_os_str().to_owned())])
        .collect()
}

/// Each program language's toolchain version (its `version` command's first line); a language
/// whose command fails is left out, and so is the numeric runtime (it has no toolchain).
pub fn toolchain_versions() -> BTreeMap<String, String> {
    let Ok(home) = tempfile::tempdir() else {
        tracing::warn!("no scratch directory for toolchain commands");
        return BTreeMap::new();
    };
    languages()
        .iter()
        .filter(|lang| !lang.is_numeric())
        .filter_map(|lang| Some((lang.name.to_owned(), toolchain_version(lang, home.path())?)))
        .collect()
}

fn toolchain_version(lang: &LanguageDef, home: &Path) -> Option<String> {
    let (program, args) = lang.version.split_first()?;
    let out = Command::new(program)
        .args(args)
        .env_clear()
        .envs(host_env(lang, home))
        .current_dir(home)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_owned),
        Ok(out) => {
            tracing::warn!(language = lang.name, status = %out.status, "toolchain version command failed");
            None
        }
        Err(e) => {
            tracing::warn!(language = lang.name, error = %e, "cannot run the toolchain version command");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_commands_get_a_private_home() {
        let go = languages().iter().find(|l| l.name == "go").unwrap();
        let env = host_env(go, Path::new("/private/home"));
        let get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        assert_eq!(get("HOME"), Some("/private/home".into()));
        assert_eq!(get("GO111MODULE"), Some("off".into()));
        assert_eq!(get("PATH"), Some("/usr/local/bin:/usr/bin:/bin".into()));
        assert_eq!(env.iter().filter(|(k, _)| k == "HOME").count(), 1);
    }

    #[test]
    fn every_language_reports_a_toolchain_version() {
        let versions = toolchain_versions();
        for lang in languages().iter().filter(|l| !l.is_numeric()) {
            let version = versions
                .get(lang.name)
                .unwrap_or_else(|| panic!("{} has no version", lang.name));
            assert!(
                version.chars().any(|c| c.is_ascii_digit()),
                "{}: {version}",
                lang.name
            );
        }
    }
}
