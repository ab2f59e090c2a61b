//! The Docker backend's settings ([`DockerConfig`], checked before anything connects) and the
//! labels its containers carry.

use cola_wire::LanguageDef;

use super::config_error;
use crate::backend::BackendError;

/// Container labels.
pub const LABEL_MANAGED: &str = "cola.managed";
pub const LABEL_JOB_ID: &str = "cola.job-id";
pub const LABEL_USER: &str = "cola.user";
pub const LABEL_LANGUAGE: &str = "cola.language";
/// The deployment a container belongs to (several may share a daemon): the creation time of its
/// job stream, which no other deployment's stream has.
pub const LABEL_SCOPE: &str = "cola.scope";

/// How the backend reaches Docker and sets up containers.
#[derive(Debug, Clone, PartialEq)]
pub struct DockerConfig {
    /// The daemon (`unix:///var/run/docker.sock`, `tcp://host:2375`); `None`: `DOCKER_HOST`, or
    /// the default socket.
    pub host: Option<String>,
    /// Put before every executor image's name (e.g. a registry: `registry.example/`).
    pub image_prefix: String,
    /// The tag of the executor images.
    pub image_tag: String,
    /// The non-root uid and gid containers run as.
    pub user: (u32, u32),
    /// CPUs a job's container may use.
    pub cpus: f64,
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            host: None,
            image_prefix: String::new(),
            image_tag: "latest".into(),
            user: (10001, 10001),
            cpus: 1.0,
        }
    }
}

impl DockerConfig {
    pub fn validate(&self) -> Result<(), BackendError> {
        if self.user.0 == 0 || self.user.1 == 0 {
            return Err(config_error(
                "containers must not run as root (uid or gid 0)".into(),
            ));
        }
        if !(self.cpus.is_finite() && self.cpus >= 0.01 && self.cpus <= 1024.0) {
            return Err(config_error("cpus must be between 0.01 and 1024".into()));
        }
        if self.image_tag.is_empty() || self.image_tag.contains([':', '/', '@', ' ']) {
            return Err(config_error(format!(
                "invalid image tag {:?}",
                self.image_tag
            )));
        }
        Ok(())
    }

    /// The executor image of `lang`.
    pub fn image(&self, lang: &LanguageDef) -> String {
        format!("{}{}:{}", self.image_prefix, lang.image, self.image_tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        assert!(DockerConfig::default().validate().is_ok());
        for bad in [
            DockerConfig {
                user: (0, 10001),
                ..DockerConfig::default()
            },
            DockerConfig {
                cpus: f64::NAN,
                ..DockerConfig::default()
            },
            DockerConfig {
                image_tag: "a:b".into(),
                ..DockerConfig::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let config = DockerConfig {
            image_prefix: "registry.example/".into(),
            image_tag: "1.2".into(),
            ..DockerConfig::default()
        };
        assert_eq!(
            config.image(cola_wire::language(&cola_wire::Language::parse("go").unwrap()).unwrap()),
            "registry.example/cola-executor-go:1.2"
        );
    }
}
