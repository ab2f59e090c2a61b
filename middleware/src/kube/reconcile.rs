//! Pods and job records brought back in line, at start-up and periodically (a safety net for
//! Pods whose deletion failed): a Pod whose job is terminal or gone is deleted, a finished Pod
//! whose job is open has its outcome recorded and is deleted, a live Pod of an open job is left
//! to be adopted when the job's message is redelivered.

use std::time::Duration;

use ::kube::api::{Api, ListParams};
use cola_wire::{Reason, nats::Topology};
use k8s_openapi::api::core::v1::Pod;

use super::{
    classify::{PodState, classify},
    identity::{NAME, is_warm, job_key_of, managed_selector},
    pods::delete_pod,
    record::record_outcome,
};
use crate::backend::BackendError;

/// Pods listed per request.
const PAGE_SIZE: u32 = 500;

/// What a start-up reconciliation found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Live Pods of open jobs, left running to be adopted.
    pub adopted: Vec<String>,
    /// Finished Pods of open jobs whose outcome was recorded.
    pub finished: Vec<String>,
    /// Pods deleted (their job terminal or gone, or finished now).
    pub deleted: Vec<String>,
}

/// Reconciles the Pods carrying cola's labels with the job records (see the module docs).
pub(super) async fn reconcile(
    pods: &Api<Pod>,
    topology: &Topology,
) -> Result<ReconcileReport, BackendError> {
    let mut report = ReconcileReport::default();
    let mut params = ListParams::default()
        .labels(&managed_selector())
        .limit(PAGE_SIZE);
    loop {
        let page = pods
            .list(&params)
            .await
            .map_err(|e| BackendError::kube("list executor Pods", e))?;
        for pod in &page.items {
            reconcile_pod(pods, topology, pod, &mut report).await?;
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    Ok(report)
}

/// Reconciles every `every` until the returned task is aborted (the start-up reconciliation
/// is [`reconcile`]'s, done before).
pub(super) fn spawn_periodic(
    pods: Api<Pod>,
    topology: Topology,
    every: Duration,
) -> tokio::task::AbortHandle {
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            match reconcile(&pods, &topology).await {
                Ok(r) if r.finished.is_empty() && r.deleted.is_empty() => {}
                Ok(r) => tracing::info!(
                    finished = r.finished.len(),
                    deleted = r.deleted.len(),
                    "executor Pods reconciled"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot reconcile executor Pods"),
            }
        }
    });
    task.abort_handle()
}

async fn reconcile_pod(
    pods: &Api<Pod>,
    topology: &Topology,
    pod: &Pod,
    report: &mut ReconcileReport,
) -> Result<(), BackendError> {
    let Some(name) = pod.metadata.name.clone() else {
        return Ok(());
    };
    if pod.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    // A warm Pod nobody claimed is its middleware's until it ends (at the end of its lifetime,
    // if its middleware is gone).
    if is_warm(pod) && job_key_of(pod).is_none() && !matches!(classify(pod), PodState::Ended(_)) {
        return Ok(());
    }
    let record =
        match job_key_of(pod) {
            None => None,
            Some(key) => topology.jobs.get(&key).await.map_err(|e| {
                BackendError::nats(NAME, format!("read the record of Pod {name}"), e)
            })?,
        };
    let open = record.is_some_and(|(r, _)| !r.status.is_terminal());
    if open {
        match classify(pod) {
            PodState::Ended(outcome) => {
                let reason = outcome.reason.unwrap_or(Reason::InternalError);
                let message = match outcome.reason {
                    Some(_) => outcome.description,
                    None => format!(
                        "executor ended without reporting a result ({})",
                        outcome.description
                    ),
                };
                record_outcome(topology, pod, reason, &message).await;
                report.finished.push(name.clone());
            }
            PodState::Running | PodState::Pending(_) => {
                tracing::info!(pod = name, "executor Pod of an open job left to be adopted");
                report.adopted.push(name);
                return Ok(());
            }
        }
    }
    delete_pod(pods, &name).await?;
    tracing::info!(pod = name, "executor Pod deleted by reconciliation");
    report.deleted.push(name);
    Ok(())
}
