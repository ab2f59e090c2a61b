//! Where the gateway is and which token to send: `--url`/`COLA_URL` and `--token`/`COLA_TOKEN`
//! first, then the config file (`--config`/`COLA_CONFIG`, by default
//! `$XDG_CONFIG_HOME/cola/config.toml` or `~/.config/cola/config.toml`):
//!
//! ```toml
//! url = "https://cola.example.edu"
//! token = "…"
//! ```
//!
//! A config file that holds a token must be readable by its owner only (`chmod 600`), as an
//! SSH key must.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::cli::ClientArgs;

/// The gateway when nothing says otherwise: `cola up`'s.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// What the config file may say.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    url: Option<String>,
    token: Option<String>,
}

/// The gateway and the token to use.
#[derive(Debug)]
pub struct Target {
    pub url: String,
    pub token: String,
}

/// The gateway and token from `args`, the environment and the config file, in that order.
pub fn resolve(args: &ClientArgs) -> anyhow::Result<Target> {
    let path = match &args.config {
        Some(path) => Some(path.clone()),
        None => default_path(),
    };
    // A config file named explicitly must exist; the default one may not.
    let file = match &path {
        Some(path) if args.config.is_some() || path.exists() => read(path)?,
        _ => ConfigFile::default(),
    };
    let url = first_set([args.url.as_deref(), file.url.as_deref()]).unwrap_or(DEFAULT_URL);
    let Some(token) = first_set([args.token.as_deref(), file.token.as_deref()]) else {
        bail!(
            "an API token is required: --token, COLA_TOKEN, or `token` in {} (with `cola up \
             --dev`, the token is in .cola/dev-token)",
            path.map_or_else(|| "the config file".into(), |p| p.display().to_string())
        );
    };
    Ok(Target {
        url: url.trim_end_matches('/').to_owned(),
        token: token.to_owned(),
    })
}

fn first_set<const N: usize>(values: [Option<&str>; N]) -> Option<&str> {
    values
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|v| !v.is_empty())
}

/// `$XDG_CONFIG_HOME/cola/config.toml`, else `$HOME/.config/cola/config.toml`.
fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("cola").join("config.toml"))
}

fn read(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    let file: ConfigFile =
        toml::from_str(&text).with_context(|| format!("the config file {}", path.display()))?;
    if file.token.is_some() {
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            bail!(
                "the config file {} holds a token and others may read it (mode {:o}): \
                 `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::cli::OutputFormat;

    fn args(config: &Path, url: Option<&str>, token: Option<&str>) -> ClientArgs {
        ClientArgs {
            url: url.map(str::to_owned),
            token: token.map(str::to_owned),
            config: Some(config.to_owned()),
            output: OutputFormat::Table,
        }
    }

    fn write(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("config.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn flags_win_over_the_config_file_which_wins_over_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "url = \"https://cola.example.edu/\"\ntoken = \"t1\"\n",
            0o600,
        );
        let target = resolve(&args(&path, None, None)).unwrap();
        assert_eq!(target.url, "https://cola.example.edu");
        assert_eq!(target.token, "t1");
        let target = resolve(&args(&path, Some("http://other:1"), Some("t2"))).unwrap();
        assert_eq!(
            (target.url.as_str(), target.token.as_str()),
            ("http://other:1", "t2")
        );
        let path = write(dir.path(), "token = \"t1\"\n", 0o600);
        assert_eq!(resolve(&args(&path, None, None)).unwrap().url, DEFAULT_URL);
    }

    #[test]
    fn a_token_others_may_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "token = \"t1\"\n", 0o644);
        let error = resolve(&args(&path, None, None)).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
        // Without a token in it, the file may be shared.
        let path = write(dir.path(), "url = \"http://x:1\"\n", 0o644);
        let target = resolve(&args(&path, None, Some("t"))).unwrap();
        assert_eq!(target.url, "http://x:1");
    }

    #[test]
    fn no_token_anywhere_and_unknown_keys_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "url = \"http://x:1\"\n", 0o600);
        let error = resolve(&args(&path, None, None)).unwrap_err().to_string();
        assert!(error.contains("COLA_TOKEN"), "{error}");
        let path = write(dir.path(), "tokn = \"t\"\n", 0o600);
        let error = format!("{:#}", resolve(&args(&path, None, None)).unwrap_err());
        assert!(error.contains("tokn"), "{error}");
        let missing = dir.path().join("missing.toml");
        assert!(resolve(&args(&missing, None, Some("t"))).is_err());
    }
}
