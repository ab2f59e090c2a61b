//! How an executor Pod is named, labelled and tied back to its job: the names every other part
//! of the Kubernetes backend (and the manifests in `k8s/`) agree on.

use std::collections::BTreeMap;

use cola_wire::{JobId, JobKey, JobMessage, UserId};
use k8s_openapi::api::core::v1::Pod;
use sha2::{Digest as _, Sha256};

/// The backend's name, in executor handles and error messages.
pub(super) const NAME: &str = "kubernetes";

/// Label every executor Pod carries: `app.kubernetes.io/name: cola-executor`.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// Value of [`LABEL_NAME`] on executor Pods.
pub const EXECUTOR_APP: &str = "cola-executor";
/// Label naming who manages the Pod (`cola-middleware`): only such Pods are reconciled.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
const MANAGED_BY: &str = "cola-middleware";
/// Label holding the job id.
pub const LABEL_JOB_ID: &str = "cola/job-id";
/// Label holding the language.
pub const LABEL_LANGUAGE: &str = "cola/language";
/// Label holding a hash of the user id (labels are indexed and listed widely; the id is not).
pub const LABEL_USER_HASH: &str = "cola/user-hash";
/// Label of a Pod started ahead of its job (`"true"`): see `warm`.
pub const LABEL_WARM: &str = "cola/warm";
/// Annotation holding the job's record key `<user>.<job-id>`.
pub const ANNOTATION_JOB_KEY: &str = "cola/job-key";
/// The environment variable that carries the job message (JSON) into the executor.
pub const JOB_ENV: &str = "COLA_JOB";
/// The environment variable that carries the NATS URL (from a Secret) into the executor.
pub const NATS_URL_ENV: &str = "COLA_NATS_URL";
/// The executor's container in the Pod (for a compiled language, the one that runs the program).
pub const CONTAINER: &str = "executor";
/// The init container that compiles a compiled language's job, before [`CONTAINER`].
pub const COMPILE_CONTAINER: &str = "compile";
/// Where the work area is mounted.
pub const WORK_DIR: &str = "/work";

/// The Pod of a job.
pub fn pod_name(job: &JobId) -> String {
    format!("cola-job-{job}")
}

/// Whether `name` is the name of a job's Pod.
pub(super) fn is_job_pod(name: &str) -> bool {
    name.starts_with("cola-job-")
}

/// The value of the hashed user label.
pub fn user_hash(user: &UserId) -> String {
    hex::encode(&Sha256::digest(user.as_str().as_bytes())[..16])
}

/// The labels of every executor Pod.
pub(super) fn base_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), EXECUTOR_APP.to_owned()),
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        ("app.kubernetes.io/part-of".to_owned(), "cola".to_owned()),
    ])
}

/// The labels of a job's Pod.
pub(super) fn labels_of(job: &JobMessage) -> BTreeMap<String, String> {
    let mut labels = base_labels();
    labels.extend([
        (LABEL_JOB_ID.to_owned(), job.id.to_string()),
        (LABEL_LANGUAGE.to_owned(), job.language.to_string()),
        (LABEL_USER_HASH.to_owned(), user_hash(&job.user)),
    ]);
    labels
}

/// Whether `pod` was started ahead of its job.
pub(super) fn is_warm(pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    labels.and_then(|l| l.get(LABEL_WARM)).map(String::as_str) == Some("true")
}

/// The label selector of every executor Pod this middleware manages.
pub(super) fn managed_selector() -> String {
    format!("{LABEL_NAME}={EXECUTOR_APP},{LABEL_MANAGED_BY}={MANAGED_BY}")
}

/// Whether `pod` carries the label of `job`'s executor.
pub(super) fn is_pod_of(pod: &Pod, job: &JobId) -> bool {
    let labels = pod.metadata.labels.as_ref();
    labels.and_then(|l| l.get(LABEL_JOB_ID)) == Some(&job.to_string())
}

/// The job record key a Pod was made for, if it is a well-formed one.
pub(super) fn job_key_of(pod: &Pod) -> Option<JobKey> {
    let key = pod.metadata.annotations.as_ref()?.get(ANNOTATION_JOB_KEY)?;
    let key = JobKey::parse(key)?;
    let label = pod.metadata.labels.as_ref()?.get(LABEL_JOB_ID)?;
    (*label == key.id().to_string()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_key_is_taken_only_from_a_pod_whose_labels_agree() {
        let id = JobId::new();
        let user = UserId::parse("u1").unwrap();
        let mut pod = Pod::default();
        pod.metadata.annotations = Some(BTreeMap::from([(
            ANNOTATION_JOB_KEY.to_owned(),
            JobKey::new(&user, &id).to_string(),
        )]));
        pod.metadata.labels = Some(BTreeMap::from([(LABEL_JOB_ID.to_owned(), id.to_string())]));
        assert_eq!(job_key_of(&pod), Some(JobKey::new(&user, &id)));
        pod.metadata.labels = Some(BTreeMap::from([(
            LABEL_JOB_ID.to_owned(),
            JobId::new().to_string(),
        )]));
        assert_eq!(job_key_of(&pod), None);
    }
}
