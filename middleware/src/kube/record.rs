//! Ending a job with a failure only the cluster saw (an OOM kill, a deadline, an eviction, a Pod
//! that never started), unless it has ended already: the executor's own report, or whoever
//! ended it first, wins.

use cola_wire::{
    Ending, Reason,
    nats::{Topology, Transition},
};
use k8s_openapi::api::core::v1::Pod;

use super::identity::job_key_of;

/// Records a failure only the cluster saw on the job `pod` was made for, when the job records
/// are at hand (`None` before the backend is attached).
pub(super) async fn record_if_attached(
    topology: Option<&Topology>,
    pod: &Pod,
    reason: Reason,
    message: &str,
) {
    match topology {
        Some(topology) => record_outcome(topology, pod, reason, message).await,
        None => {
            tracing::warn!(pod = ?pod.metadata.name, "job records not attached; outcome not recorded");
        }
    }
}

/// Ends the job a Pod was made for with a failure only the cluster saw, unless it already ended.
pub(super) async fn record_outcome(topology: &Topology, pod: &Pod, reason: Reason, message: &str) {
    let Some(key) = job_key_of(pod) else {
        tracing::warn!(pod = ?pod.metadata.name, "Pod without a valid job key; outcome not recorded");
        return;
    };
    match topology
        .jobs
        .end(&key, &Ending::failed(reason, message))
        .await
    {
        Ok(Transition::Changed(..)) => {
            tracing::info!(
                %key,
                reason = reason.as_str(),
                message,
                "recorded the Pod's outcome"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(%key, error = %e, "cannot record the Pod's outcome"),
    }
}
