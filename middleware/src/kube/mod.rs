//! The Kubernetes backend: one executor Pod per job, created, watched and deleted through the
//! Kubernetes API (kube + k8s-openapi).
//!
//! - The Pod is named from the job id (`cola-job-<job-id>`), so a launch is idempotent: a create
//!   that answers 409 Conflict adopts the Pod that exists.
//! - The Pod runs `cola executor --sandbox container` in the language's executor image with the
//!   job (without its inputs, which go to the object store) in an environment variable and the
//!   NATS URL from a Secret; the executor reports to NATS itself. A compiled language's Pod
//!   compiles in a container of its own (the compiler's memory limit) beside the one that runs
//!   the program (the program's). With `warm_pods`, Pods started ahead of their jobs take jobs
//!   with default limits, handed over on NATS (see `warm`). It is hardened (non-root, read-only root, no capabilities, no privilege escalation,
//!   seccomp `RuntimeDefault`, no service-account token, no service links), bounded
//!   (`restartPolicy: Never`, `activeDeadlineSeconds`, memory/CPU/ephemeral-storage requests and
//!   limits, a size-limited `emptyDir` work area) and spread across nodes.
//! - [`Backend::wait`](crate::Backend::wait) follows the Pod (a GET, then a watch from its
//!   resource version, again after every watch ends) until it ends and records what only the
//!   cluster knows: `OOMKilled` → `memory_limit`, `DeadlineExceeded` → `time_limit`, an evicted
//!   work area → `output_limit`, a Pod that does not start within the pending timeout (image
//!   pull failure, unschedulable) → `internal_error` with the reason. Each is a compare-and-set
//!   on the job record that loses to the executor's own report; whatever is left open the
//!   middleware ends `internal_error`.
//! - At start-up ([`Backend::attach`](crate::Backend::attach)) it reconciles the Pods carrying
//!   cola's labels with the job records: a Pod whose job is terminal or gone is deleted, a
//!   finished Pod whose job is open has its outcome recorded and is deleted, a live Pod of an
//!   open job is left to be adopted when the job's message is redelivered.
//!
//! The modules, each using only those listed before it:
//! - `identity`: the names and labels a Pod is found by, and the job a Pod was made for;
//! - `config`: the backend's settings, their defaults and validation;
//! - `spec`: the Pod of a job (labels, container, security contexts, volumes);
//! - `classify`: where a Pod is in its life, and how it ended (status → outcome and reason);
//! - `pods`: the Pod API calls every part makes (get, delete);
//! - `record`: ending a job with what only the cluster saw;
//! - `follow`: following a Pod to its end;
//! - `reconcile`: Pods and job records brought back in line, at start-up and periodically;
//! - `warm`: executor Pods started ahead of their jobs, each handed one job;
//! - `backend`: [`KubeBackend`], which ties them together.

mod backend;
mod classify;
mod config;
mod follow;
mod identity;
mod pods;
mod reconcile;
mod record;
mod spec;
mod warm;

pub use backend::KubeBackend;
pub use classify::{PodEnd, PodState, classify};
pub use config::{
    KubeBackendConfig, SecretKeyRef, default_executor_args, parse_node_selector, parse_toleration,
};
pub use identity::{
    ANNOTATION_JOB_KEY, COMPILE_CONTAINER, CONTAINER, EXECUTOR_APP, JOB_ENV, LABEL_JOB_ID,
    LABEL_LANGUAGE, LABEL_MANAGED_BY, LABEL_NAME, LABEL_USER_HASH, LABEL_WARM, NATS_URL_ENV,
    WORK_DIR, pod_name, user_hash,
};
pub use reconcile::ReconcileReport;
pub use warm::WARM_LIFETIME;
