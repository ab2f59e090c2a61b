//! How executor Pods are made: the backend's settings, with the defaults the manifests in `k8s/`
//! assume, checked before the first job; and the kubectl-style syntax of the flags that set the
//! Pods' placement.

use std::{collections::BTreeMap, time::Duration};

use cola_wire::ExecutorHandle;
use k8s_openapi::api::core::v1::Toleration;

use super::identity::{NAME, WORK_DIR};
use crate::backend::BackendError;

/// A key of a Secret in the executor namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

/// How executor Pods are made.
#[derive(Debug, Clone)]
pub struct KubeBackendConfig {
    /// Namespace the executor Pods run in (e.g. `cola-executors`).
    pub namespace: String,
    /// Name of the cluster, recorded in executor handles (e.g. `kubernetes`).
    pub cluster: String,
    /// Registry and path the language images live under (e.g. `ghcr.io/acme`); empty for none.
    pub image_registry: String,
    /// Tag of the language images (e.g. `0.1.0`).
    pub image_tag: String,
    /// `IfNotPresent`, `Always` or `Never`.
    pub image_pull_policy: String,
    /// Pull secrets for a private registry (in the executor namespace).
    pub image_pull_secrets: Vec<String>,
    /// The Secret key holding the NATS URL (with the executor's credentials).
    pub nats_url_secret: SecretKeyRef,
    /// Arguments after the image's entrypoint (`cola executor`).
    pub executor_args: Vec<String>,
    /// The executor Pods' ServiceAccount (its token is never mounted); `None` for the default.
    pub service_account: Option<String>,
    /// e.g. `gvisor`.
    pub runtime_class: Option<String>,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    /// Run the Pod in a user namespace (`hostUsers: false`; needs node support).
    pub user_namespaces: bool,
    /// CPU request and limit of an executor Pod, in millicores.
    pub cpu_request_millis: u64,
    pub cpu_limit_millis: u64,
    /// Memory for the executor itself, on top of what the job's programs may use, in MiB.
    pub memory_overhead_mb: u64,
    /// How long a Pod may stay pending (scheduling, pulling its image) before the job fails.
    pub pending_timeout: Duration,
    /// How often the executor Pods are reconciled with the job records after the start-up
    /// reconciliation (a safety net for Pods whose deletion failed); `None` for only at start-up.
    pub reconcile_every: Option<Duration>,
    /// Executor Pods kept started ahead of their jobs, per program language (see `warm`).
    pub warm_pods: usize,
}

impl KubeBackendConfig {
    /// Settings with the defaults the manifests in `k8s/` assume.
    pub fn new(namespace: impl Into<String>, nats_url_secret: SecretKeyRef) -> Self {
        Self {
            namespace: namespace.into(),
            cluster: "kubernetes".into(),
            image_registry: String::new(),
            image_tag: "latest".into(),
            image_pull_policy: "IfNotPresent".into(),
            image_pull_secrets: Vec::new(),
            nats_url_secret,
            executor_args: default_executor_args(),
            service_account: None,
            runtime_class: None,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            user_namespaces: false,
            cpu_request_millis: 250,
            cpu_limit_millis: 1000,
            memory_overhead_mb: 128,
            pending_timeout: Duration::from_secs(120),
            reconcile_every: Some(Duration::from_secs(600)),
            warm_pods: 0,
        }
    }

    /// Checks what the API server would otherwise reject only at the first job.
    pub fn validate(&self) -> Result<(), BackendError> {
        if !is_dns_label(&self.namespace) {
            return Err(config(format!(
                "namespace {:?} is not a DNS label",
                self.namespace
            )));
        }
        if self.image_tag.is_empty() || self.image_tag.contains(['/', ':', ' ']) {
            return Err(config(format!("image tag {:?} is invalid", self.image_tag)));
        }
        if !["IfNotPresent", "Always", "Never"].contains(&self.image_pull_policy.as_str()) {
            return Err(config(format!(
                "image pull policy {:?} is not IfNotPresent, Always or Never",
                self.image_pull_policy
            )));
        }
        if self.nats_url_secret.name.is_empty() || self.nats_url_secret.key.is_empty() {
            return Err(config("the NATS URL secret needs a name and a key".into()));
        }
        if self.cpu_request_millis == 0 || self.cpu_limit_millis < self.cpu_request_millis {
            return Err(config(
                "the CPU request must be positive and at most the CPU limit".into(),
            ));
        }
        if self.pending_timeout < Duration::from_secs(1) {
            return Err(config("the pending timeout must be at least 1 s".into()));
        }
        if self.reconcile_every.is_some_and(|d| d.is_zero()) {
            return Err(config("the reconciliation period must be positive".into()));
        }
        Ok(())
    }

    /// The executor image of a language.
    pub fn image_of(&self, image: &str) -> String {
        let registry = self.image_registry.trim_end_matches('/');
        if registry.is_empty() {
            format!("{image}:{}", self.image_tag)
        } else {
            format!("{registry}/{image}:{}", self.image_tag)
        }
    }

    /// The handle of the executor Pod `pod` (in this cluster and namespace), as job records
    /// name it.
    pub(super) fn pod_handle(&self, pod: &str) -> ExecutorHandle {
        ExecutorHandle {
            backend: NAME.into(),
            node: self.cluster.clone(),
            id: format!("{}/{pod}", self.namespace),
        }
    }
}

/// Whether `s` is a DNS label (RFC 1123), as namespace names must be.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The arguments `cola executor` runs with in a Pod: container sandbox, work area at
/// [`WORK_DIR`] (where the job comes from and which steps it runs, the Pod's spec adds).
pub fn default_executor_args() -> Vec<String> {
    ["--sandbox", "container", "--job-dir", WORK_DIR]
        .map(String::from)
        .to_vec()
}

/// Parses a toleration written as `key[=value]:Effect[:seconds]` (kubectl's taint syntax; a
/// missing value means operator `Exists`, an empty effect tolerates every effect).
pub fn parse_toleration(s: &str) -> Result<Toleration, String> {
    let mut parts = s.split(':');
    let key_value = parts.next().unwrap_or_default();
    let effect = parts.next().unwrap_or_default();
    let seconds = parts.next();
    if parts.next().is_some() {
        return Err(format!(
            "toleration {s:?}: expected key[=value]:Effect[:seconds]"
        ));
    }
    let (key, value) = match key_value.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (key_value, None),
    };
    if key.is_empty() {
        return Err(format!("toleration {s:?}: the key is empty"));
    }
    if !["", "NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        return Err(format!(
            "toleration {s:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    let toleration_seconds = match seconds {
        None => None,
        Some(_) if effect != "NoExecute" => {
            return Err(format!("toleration {s:?}: seconds only go with NoExecute"));
        }
        Some(n) => Some(
            n.parse::<i64>()
                .map_err(|_| format!("toleration {s:?}: {n:?} is not a number of seconds"))?,
        ),
    };
    Ok(Toleration {
        key: Some(key.into()),
        operator: Some(if value.is_some() { "Equal" } else { "Exists" }.into()),
        value: value.map(String::from),
        effect: (!effect.is_empty()).then(|| effect.into()),
        toleration_seconds,
    })
}

/// Parses a node selector written as `key=value[,key=value...]`.
pub fn parse_node_selector(s: &str) -> Result<BTreeMap<String, String>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| match p.trim().split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(format!("node selector {p:?}: expected key=value")),
        })
        .collect()
}

fn config(message: String) -> BackendError {
    BackendError::Config {
        backend: NAME,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerations_and_node_selectors_parse_kubectl_syntax() {
        let t = parse_toleration("dedicated=cola:NoSchedule").unwrap();
        assert_eq!(t.key.as_deref(), Some("dedicated"));
        assert_eq!(t.operator.as_deref(), Some("Equal"));
        assert_eq!(t.value.as_deref(), Some("cola"));
        assert_eq!(t.effect.as_deref(), Some("NoSchedule"));
        let t = parse_toleration("sandbox:NoExecute:30").unwrap();
        assert_eq!(t.operator.as_deref(), Some("Exists"));
        assert_eq!(t.toleration_seconds, Some(30));
        let t = parse_toleration("gpu").unwrap();
        assert_eq!(t.effect, None);
        for bad in [
            "",
            "=x:NoSchedule",
            "k:Sometimes",
            "k:NoSchedule:30",
            "k:NoExecute:soon",
            "a:b:c:d",
        ] {
            assert!(parse_toleration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_node_selector("a=1, b=2").unwrap(),
            BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())])
        );
        assert!(parse_node_selector("a").is_err());
        assert!(parse_node_selector("").unwrap().is_empty());
    }

    #[test]
    fn configuration_mistakes_are_caught_before_the_first_job() {
        let secret = SecretKeyRef {
            name: "n".into(),
            key: "url".into(),
        };
        assert!(
            KubeBackendConfig::new("cola-executors", secret.clone())
                .validate()
                .is_ok()
        );
        let bad: [fn(&mut KubeBackendConfig); 5] = [
            |c| c.namespace = "Cola".into(),
            |c| c.image_tag = "a:b".into(),
            |c| c.image_pull_policy = "Sometimes".into(),
            |c| c.nats_url_secret.key.clear(),
            |c| c.cpu_limit_millis = 100,
        ];
        for change in bad {
            let mut config = KubeBackendConfig::new("cola-executors", secret.clone());
            change(&mut config);
            assert!(config.validate().is_err(), "{config:?}");
        }
    }
}
