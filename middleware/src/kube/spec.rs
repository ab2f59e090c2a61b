//! The Pod of a job, built from small parts: its metadata (name, labels, the job's key), the Pod
//! spec (restart policy, deadline, placement, no ServiceAccount token), the executor containers
//! (image, arguments, environment, resources), the security contexts of all, and the
//! size-limited work areas.
//!
//! A compiled language's Pod has two executor containers, since a Pod's limits are fixed once it
//! exists: `compile` (`cola executor --step compile`) writes the job's files and compiles them
//! with the compile step's memory limit, and `executor` (`--step run --job-from-handoff`),
//! started beside it, runs the program in what it left, held to the program's own limit. Other
//! languages have the one `executor` container doing both. A Pod made for its job finds the job
//! in its environment; a Pod started ahead of its job ([`warm_pod_for`]) waits for it on a NATS
//! subject.

use std::{collections::BTreeMap, time::Duration};

use cola_wire::{
    JobKey, JobMessage, LanguageDef, Limits, energy::NodeName, job::deadline_of, language,
    languages::Runtime,
};
use k8s_openapi::{
    api::core::v1::{
        Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, LocalObjectReference,
        NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSecurityContext, PodSpec,
        PreferredSchedulingTerm, ResourceRequirements, SeccompProfile, SecretKeySelector,
        SecurityContext, TopologySpreadConstraint, Volume, VolumeMount,
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
    },
};

use super::{
    config::KubeBackendConfig,
    identity::{
        ANNOTATION_JOB_KEY, COMPILE_CONTAINER, CONTAINER, EXECUTOR_APP, JOB_ENV, LABEL_LANGUAGE,
        LABEL_NAME, LABEL_WARM, NAME, NATS_URL_ENV, WORK_DIR, base_labels, labels_of, pod_name,
    },
};
use crate::{backend::BackendError, work_areas::WorkAreas};

/// The uid and gid the executor runs as (the executor images' user).
const EXECUTOR_UID: i64 = 10001;
/// The volumes of the work area and of `/tmp`.
const WORK_VOLUME: &str = "work";
const TMP_VOLUME: &str = "tmp";
const TMP_DIR: &str = "/tmp";

/// Where a Pod's executor gets its job.
pub(super) enum JobIn {
    /// The message (without its inputs) in [`JOB_ENV`]: a Pod made for its job.
    Env(String),
    /// A request on this core NATS subject: a Pod started ahead of its job.
    Subject(String),
}

/// The Pod that runs `job` (with its message as `job_json`).
pub(super) fn pod_for(
    config: &KubeBackendConfig,
    job: &JobMessage,
    job_json: String,
) -> Result<Pod, BackendError> {
    let lang = language(&job.language)
        .filter(|l| l.runtime == Runtime::Program)
        .ok_or_else(|| BackendError::Job {
            backend: NAME,
            message: format!("language {} has no executor image", job.language),
        })?;
    let areas = WorkAreas::of(lang, &job.limits, job_json.len());
    Ok(Pod {
        metadata: metadata(config, job),
        spec: Some(PodSpec {
            containers: containers(config, lang, &job.limits, JobIn::Env(job_json), &areas),
            volumes: Some(volumes(&areas)),
            ..pod_spec(config, deadline_seconds(config, job.deadline()))
        }),
        status: None,
    })
}

/// A Pod started ahead of its job (see `warm`) for a job of `lang` with its default limits,
/// whose executor waits on `subject`; it ends by itself `lifetime` after it started if no job
/// came (plus a job's time, as a backstop).
pub(super) fn warm_pod_for(
    config: &KubeBackendConfig,
    lang: &LanguageDef,
    name: &str,
    subject: String,
    lifetime: Duration,
) -> Pod {
    let limits = lang.default_limits;
    let areas = WorkAreas::of(lang, &limits, WARM_MESSAGE_BYTES);
    let mut labels = base_labels();
    labels.insert(LABEL_LANGUAGE.to_owned(), lang.name.to_owned());
    labels.insert(LABEL_WARM.to_owned(), "true".to_owned());
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(config.namespace.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: containers(config, lang, &limits, JobIn::Subject(subject), &areas),
            volumes: Some(volumes(&areas)),
            ..pod_spec(
                config,
                deadline_seconds(config, lifetime + deadline_of(lang, &limits)),
            )
        }),
        status: None,
    }
}

/// The largest job message (without its inputs) a pre-started Pod's work area is sized for.
pub(super) const WARM_MESSAGE_BYTES: usize = 64 << 10;

/// The executor containers of a Pod for a job of `lang` with `limits`. A compiled language gets
/// two, started together: `compile` (the job's files written and compiled with the compiler's
/// memory limit) and `executor` (the program run with its own, once the compile container's
/// handoff is there); any other language, the one `executor`. Both request the program's memory;
/// only the run container requests CPU.
fn containers(
    config: &KubeBackendConfig,
    lang: &LanguageDef,
    limits: &Limits,
    job_in: JobIn,
    areas: &WorkAreas,
) -> Vec<Container> {
    let storage_mb = areas.work_mb + areas.tmp_mb + LOGS_MB;
    let run = run_share(config, limits);
    let executor = |name: &str, args: Vec<String>, job_json: Option<String>, share| Container {
        name: name.into(),
        ..container(config, lang, args, job_json, share, storage_mb)
    };
    let (mut source, job_json) = match job_in {
        JobIn::Env(json) => (vec!["--job-env".to_owned(), JOB_ENV.to_owned()], Some(json)),
        JobIn::Subject(subject) => (vec!["--job-subject".to_owned(), subject], None),
    };
    match lang.compile {
        Some(_) => {
            let compile = compile_share(config, lang, limits, areas);
            source.extend(["--step".to_owned(), "compile".to_owned()]);
            let handoff = ["--step", "run", "--job-from-handoff"]
                .map(String::from)
                .to_vec();
            vec![
                executor(COMPILE_CONTAINER, source, job_json, compile),
                executor(CONTAINER, handoff, None, run),
            ]
        }
        None => vec![executor(CONTAINER, source, job_json, run)],
    }
}

/// Ephemeral storage a container may use besides the work areas: its logs.
const LOGS_MB: u64 = 64;

/// The CPU the compile container requests: it runs before the program, never beside it, so the
/// Pod's CPU request is the run container's; with the run container waiting, the compile
/// container has the Pod's whole CPU share anyway.
const COMPILE_CPU_REQUEST_MILLIS: u64 = 10;

/// What an executor container asks of its node: CPU requested (millicores; the limit is the
/// configured one), memory requested for what the job's program may use and limited to what
/// its step may (MiB, each with the executor's own on top).
struct Share {
    cpu_request_millis: u64,
    memory_request_mb: u64,
    memory_limit_mb: u64,
}

/// The share of the container that runs the program (or does every step): the program's, files
/// it writes to the work areas (in memory) included.
fn run_share(config: &KubeBackendConfig, limits: &Limits) -> Share {
    Share {
        cpu_request_millis: config.cpu_request_millis,
        memory_request_mb: limits.memory_mb + config.memory_overhead_mb,
        memory_limit_mb: limits.memory_mb + config.memory_overhead_mb,
    }
}

/// The compile container's share: the compiler's memory limit with room for the work areas
/// (in memory) it may fill, and next to no CPU requested (see [`COMPILE_CPU_REQUEST_MILLIS`]).
fn compile_share(
    config: &KubeBackendConfig,
    lang: &LanguageDef,
    limits: &Limits,
    areas: &WorkAreas,
) -> Share {
    let areas_mb = areas.work_mb + areas.tmp_mb;
    Share {
        cpu_request_millis: COMPILE_CPU_REQUEST_MILLIS,
        memory_limit_mb: lang.compile_limits.memory_mb + config.memory_overhead_mb + areas_mb,
        ..run_share(config, limits)
    }
}

/// Name, namespace, labels, and the job's record key as an annotation.
fn metadata(config: &KubeBackendConfig, job: &JobMessage) -> ObjectMeta {
    ObjectMeta {
        name: Some(pod_name(&job.id)),
        namespace: Some(config.namespace.clone()),
        labels: Some(labels_of(job)),
        annotations: Some(BTreeMap::from([(
            ANNOTATION_JOB_KEY.to_owned(),
            JobKey::new(&job.user, &job.id).to_string(),
        )])),
        ..Default::default()
    }
}

/// Everything of the Pod spec but its containers and volumes: run once, within
/// `deadline_seconds`, with nothing of the host or the cluster's API, placed as configured and
/// spread across nodes.
fn pod_spec(config: &KubeBackendConfig, deadline_seconds: i64) -> PodSpec {
    let c = config;
    PodSpec {
        restart_policy: Some("Never".into()),
        active_deadline_seconds: Some(deadline_seconds),
        termination_grace_period_seconds: Some(5),
        automount_service_account_token: Some(false),
        service_account_name: c.service_account.clone(),
        enable_service_links: Some(false),
        host_network: Some(false),
        host_pid: Some(false),
        host_ipc: Some(false),
        host_users: c.user_namespaces.then_some(false),
        share_process_namespace: Some(false),
        runtime_class_name: c.runtime_class.clone(),
        node_selector: (!c.node_selector.is_empty()).then(|| c.node_selector.clone()),
        tolerations: (!c.tolerations.is_empty()).then(|| c.tolerations.clone()),
        image_pull_secrets: (!c.image_pull_secrets.is_empty()).then(|| {
            c.image_pull_secrets
                .iter()
                .map(|name| LocalObjectReference { name: name.clone() })
                .collect()
        }),
        security_context: Some(pod_security_context()),
        topology_spread_constraints: Some(vec![spread_across_nodes()]),
        ..Default::default()
    }
}

/// Makes `pod` prefer the nodes of `weights` (node names and weights 1 to 100, greener
/// higher; see [`crate::energy::policy::node_weights`]): preferred node affinity, so a Pod
/// still goes wherever there is room when no preferred node has any. Terms set by the operator
/// stay; these come after them. The Pod then no longer spreads across nodes (the scheduler
/// scores that spread above node affinity: measured on the local cluster, executor Pods
/// alternated between a sunny and a dark node); placement decides where it goes.
pub(super) fn prefer_nodes(pod: &mut Pod, weights: &[(NodeName, i32)]) {
    if weights.is_empty() {
        return;
    }
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    if let Some(constraints) = spec.topology_spread_constraints.as_mut() {
        constraints.retain(|c| c != &spread_across_nodes());
        if constraints.is_empty() {
            spec.topology_spread_constraints = None;
        }
    }
    let affinity = spec.affinity.get_or_insert_with(Default::default);
    let nodes = affinity.node_affinity.get_or_insert_with(Default::default);
    let preferred = nodes
        .preferred_during_scheduling_ignored_during_execution
        .get_or_insert_with(Vec::new);
    preferred.extend(
        weights
            .iter()
            .map(|(node, weight)| PreferredSchedulingTerm {
                weight: *weight,
                preference: NodeSelectorTerm {
                    match_fields: Some(vec![NodeSelectorRequirement {
                        key: "metadata.name".into(),
                        operator: "In".into(),
                        values: Some(vec![node.kubernetes_node()]),
                    }]),
                    match_expressions: None,
                },
            }),
    );
}

/// Makes `pod` run only on `nodes` (see [`crate::energy::policy::required_nodes`]): a
/// required node affinity term, which the operator's node selector still narrows. For while
/// those nodes have room: one that the scheduler finds none on is made again by [`relaxed`],
/// with its preferences only.
pub(super) fn require_nodes(pod: &mut Pod, nodes: &[NodeName]) {
    let Some(spec) = pod.spec.as_mut().filter(|_| !nodes.is_empty()) else {
        return;
    };
    let affinity = spec.affinity.get_or_insert_with(Default::default);
    let node_affinity = affinity.node_affinity.get_or_insert_with(Default::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(nodes.iter().map(NodeName::kubernetes_node).collect()),
            }]),
            match_expressions: None,
        }],
    });
}

/// Whether `pod` is required on the greenest nodes (see [`require_nodes`]).
pub(super) fn requires_nodes(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .is_some_and(|n| {
            n.required_during_scheduling_ignored_during_execution
                .is_some()
        })
}

/// `pod` as it was asked for, without the requirement of [`require_nodes`] (its preferences
/// stay): what is created again in its place when no node it was required on has room.
pub(super) fn relaxed(pod: &Pod) -> Pod {
    let mut spec = pod.spec.clone();
    if let Some(node_affinity) = spec
        .as_mut()
        .and_then(|s| s.affinity.as_mut())
        .and_then(|a| a.node_affinity.as_mut())
    {
        node_affinity.required_during_scheduling_ignored_during_execution = None;
    }
    Pod {
        metadata: ObjectMeta {
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            labels: pod.metadata.labels.clone(),
            annotations: pod.metadata.annotations.clone(),
            owner_references: pod.metadata.owner_references.clone(),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// The Pod's `activeDeadlineSeconds` for a job's `deadline`. The middleware's own deadline runs
/// from the launch and allows for the pending time
/// ([`KubeBackend::start_allowance`](crate::Backend::start_allowance)); the Pod's from its start
/// on a node, later: it is a backstop for a Pod whose middleware is gone, and never fires first.
fn deadline_seconds(config: &KubeBackendConfig, deadline: Duration) -> i64 {
    (deadline + config.pending_timeout).as_secs_f64().ceil() as i64
}

fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(EXECUTOR_UID),
        run_as_group: Some(EXECUTOR_UID),
        fs_group: Some(EXECUTOR_UID),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

/// At most one executor Pod more on a node than on any other, when the cluster allows it.
fn spread_across_nodes() -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew: 1,
        topology_key: "kubernetes.io/hostname".into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                LABEL_NAME.to_owned(),
                EXECUTOR_APP.to_owned(),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An executor container: `cola executor` in the language's image with the configured
/// arguments and `args`, working in the work area, given `job_json` in its environment if any.
fn container(
    config: &KubeBackendConfig,
    lang: &LanguageDef,
    args: Vec<String>,
    job_json: Option<String>,
    share: Share,
    storage_mb: u64,
) -> Container {
    Container {
        name: CONTAINER.into(),
        image: Some(config.image_of(lang.image)),
        image_pull_policy: Some(config.image_pull_policy.clone()),
        args: Some([config.executor_args.clone(), args].concat()),
        working_dir: Some(WORK_DIR.into()),
        env: Some(environment(config, job_json)),
        resources: Some(resources(config, share, storage_mb)),
        security_context: Some(container_security_context()),
        volume_mounts: Some(volume_mounts()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    }
}

/// The job message (if given), the NATS URL from its Secret, and `TMPDIR`.
fn environment(config: &KubeBackendConfig, job_json: Option<String>) -> Vec<EnvVar> {
    let secret = &config.nats_url_secret;
    let job = job_json.map(|json| EnvVar {
        name: JOB_ENV.into(),
        value: Some(json),
        value_from: None,
    });
    job.into_iter()
        .chain([
            EnvVar {
                name: NATS_URL_ENV.into(),
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: secret.name.clone(),
                        key: secret.key.clone(),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
            },
            EnvVar {
                name: "TMPDIR".into(),
                value: Some(TMP_DIR.into()),
                value_from: None,
            },
        ])
        .collect()
}

/// `share`, the configured CPU limit, and ephemeral storage for both work areas and the
/// container's logs.
fn resources(config: &KubeBackendConfig, share: Share, storage_mb: u64) -> ResourceRequirements {
    let quantities = |cpu: u64, mem: u64| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(format!("{cpu}m"))),
            ("memory".to_owned(), Quantity(format!("{mem}Mi"))),
            (
                "ephemeral-storage".to_owned(),
                Quantity(format!("{storage_mb}Mi")),
            ),
        ])
    };
    ResourceRequirements {
        requests: Some(quantities(
            share.cpu_request_millis,
            share.memory_request_mb,
        )),
        limits: Some(quantities(config.cpu_limit_millis, share.memory_limit_mb)),
        ..Default::default()
    }
}

/// Non-root, read-only root, no capabilities, no privilege escalation, seccomp.
fn container_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

/// The work area at [`WORK_DIR`] and `/tmp`: the only places the executor can write.
fn volume_mounts() -> Vec<VolumeMount> {
    [(WORK_VOLUME, WORK_DIR), (TMP_VOLUME, TMP_DIR)]
        .map(|(name, path)| VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            ..Default::default()
        })
        .to_vec()
}

/// `emptyDir`s behind [`volume_mounts`], sized for the job (see [`WorkAreas`]), in memory (a
/// tmpfs: nothing a job writes reaches the node's disk, and its pages count against the memory
/// limit of the container that wrote them, as in the Docker backend): a Pod that outgrows one
/// is evicted, and its job ends `output_limit`.
fn volumes(areas: &WorkAreas) -> Vec<Volume> {
    [(WORK_VOLUME, areas.work_mb), (TMP_VOLUME, areas.tmp_mb)]
        .map(|(name, mb)| Volume {
            name: name.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(Quantity(format!("{mb}Mi"))),
            }),
            ..Default::default()
        })
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::SecretKeyRef;

    #[test]
    fn a_pod_prefers_the_greener_nodes_by_their_kubernetes_names() {
        let mut pod = Pod {
            spec: Some(pod_spec(
                &KubeBackendConfig::new(
                    "cola-executors",
                    SecretKeyRef {
                        name: "cola-executor-nats".into(),
                        key: "url".into(),
                    },
                ),
                60,
            )),
            ..Pod::default()
        };
        prefer_nodes(&mut pod, &[]);
        let spec = pod.spec.as_ref().unwrap();
        assert!(spec.affinity.is_none(), "no readings: as before");
        assert_eq!(
            spec.topology_spread_constraints,
            Some(vec![spread_across_nodes()]),
            "no readings: spread across nodes"
        );
        let node = |n: &str| NodeName::of_kubernetes_node(n).unwrap();
        prefer_nodes(
            &mut pod,
            &[(node("worker-1.lan"), 100), (node("worker-2"), 26)],
        );
        let json = serde_json::to_value(&pod).unwrap();
        let terms = &json["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"];
        assert_eq!(terms[0]["weight"], 100);
        assert_eq!(
            terms[0]["preference"]["matchFields"][0],
            serde_json::json!({"key": "metadata.name", "operator": "In", "values": ["worker-1.lan"]})
        );
        assert_eq!(terms[1]["weight"], 26);
        // Placement, not the spread, decides where it goes.
        assert!(
            json["spec"].get("topologySpreadConstraints").is_none(),
            "{json}"
        );
        assert!(!requires_nodes(&pod));
        // Required on the greenest, for as long as they have room.
        require_nodes(&mut pod, &[node("worker-1.lan"), node("worker-2")]);
        assert!(requires_nodes(&pod));
        let json = serde_json::to_value(&pod).unwrap();
        assert_eq!(
            json["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
            serde_json::json!({"nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": ["worker-1.lan", "worker-2"]}]}]})
        );
        // When they have none: the same Pod, asked for again, preferring them only.
        pod.metadata.name = Some("cola-job-x".into());
        pod.metadata.resource_version = Some("42".into());
        pod.metadata.uid = Some("u".into());
        pod.status = Some(Default::default());
        let again = relaxed(&pod);
        assert!(!requires_nodes(&again));
        assert_eq!(again.metadata.name.as_deref(), Some("cola-job-x"));
        assert_eq!(again.metadata.labels, pod.metadata.labels);
        assert!(again.metadata.resource_version.is_none() && again.metadata.uid.is_none());
        assert!(again.status.is_none());
        let again = serde_json::to_value(&again).unwrap();
        assert_eq!(
            again["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"],
            json["spec"]["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        );
        // Nothing to require: nothing changes.
        let mut plain = relaxed(&pod);
        require_nodes(&mut plain, &[]);
        assert!(!requires_nodes(&plain));
    }
}
