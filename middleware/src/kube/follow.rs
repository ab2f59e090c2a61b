//! Following a Pod to its end: a GET, then a watch from its resource version, again after every
//! watch ends, until the Pod has ended or is gone. On the way, what only the cluster saw is
//! recorded, and a Pod that does not start within the pending timeout is ended and deleted.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use ::kube::api::{Api, DeleteParams, PostParams, Preconditions, WatchEvent, WatchParams};
use cola_wire::{Reason, Status, energy::NodeName, nats::Topology};
use futures::{Stream, StreamExt as _};
use k8s_openapi::api::core::v1::Pod;

use super::{
    classify::{PodState, classify, is_unschedulable, pending_for},
    identity::{NAME, job_key_of},
    pods::{delete_pod, get_pod},
    record::record_if_attached,
    spec,
};
use crate::{
    backend::{BackendError, ExecutorExit},
    energy::Energy,
};

/// Longest single watch request; the API server ends watches on its own schedule too.
const WATCH_SECONDS: u32 = 290;
/// Consecutive API failures tolerated while following a Pod, with a doubling pause.
const API_ATTEMPTS: u32 = 5;
const API_FIRST_PAUSE: Duration = Duration::from_millis(200);
/// How often, and how far apart, a Pod made again without its node requirement is created
/// while its name is still taken.
const RECREATE_ATTEMPTS: u32 = 40;
const RECREATE_PAUSE: Duration = Duration::from_millis(50);

/// Follows the Pods of one namespace to their end.
pub(super) struct Follower<'a> {
    pub pods: &'a Api<Pod>,
    /// How long a Pod may stay pending before its job fails.
    pub pending_timeout: Duration,
    /// The job records, once the backend is attached.
    pub topology: Option<&'a Topology>,
    /// The middleware's view of the nodes' power, once given.
    pub energy: Option<&'a Energy>,
    /// Whether the job's record names the Pod's node yet.
    pub node_noted: AtomicBool,
}

impl Follower<'_> {
    /// Follows the Pod `name` until it ends or is gone.
    pub async fn follow(&self, name: &str) -> Result<ExecutorExit, BackendError> {
        let mut failures = Failures::default();
        loop {
            let pod = match get_pod(self.pods, name).await {
                Ok(Some(pod)) => pod,
                Ok(None) => return Ok(gone(name)),
                Err(e) => {
                    let retrying = "cannot read the executor Pod; retrying";
                    failures.pause_or_give_up(name, e, retrying).await?;
                    continue;
                }
            };
            failures = Failures::default();
            if self.relax_if_stuck(&pod).await? {
                continue;
            }
            if let Some(exit) = self.settle(&pod).await? {
                return Ok(exit);
            }
            let version = pod.metadata.resource_version.clone().unwrap_or_default();
            let params = WatchParams::default()
                .fields(&format!("metadata.name={name}"))
                .timeout(WATCH_SECONDS);
            match self.pods.watch(&params, &version).await {
                Ok(events) => {
                    if let Some(exit) = self.watch_to_end(name, &pod, events).await? {
                        return Ok(exit);
                    }
                }
                Err(e) => {
                    let e = BackendError::kube(format!("watch Pod {name}"), e);
                    let retrying = "cannot watch the executor Pod; reading it again";
                    failures.pause_or_give_up(name, e, retrying).await?;
                }
            }
        }
    }

    /// Follows the watch `events` of the Pod `name` (last seen as `pod`): `Some` once the Pod
    /// has ended or is gone, `None` when it is time to read it again (the watch ended, or a
    /// pending Pod ran out of time).
    async fn watch_to_end(
        &self,
        name: &str,
        pod: &Pod,
        events: impl Stream<Item = ::kube::Result<WatchEvent<Pod>>>,
    ) -> Result<Option<ExecutorExit>, BackendError> {
        let mut events = std::pin::pin!(events);
        // Wake up when a pending Pod's time is up even if nothing changes.
        let mut until = self.pending_deadline(pod);
        loop {
            let next = match until {
                Some(at) => match tokio::time::timeout_at(at, events.next()).await {
                    Ok(next) => next,
                    Err(_) => return Ok(None), // read again: settles a Pod pending too long
                },
                None => events.next().await,
            };
            match next {
                Some(Ok(WatchEvent::Added(pod) | WatchEvent::Modified(pod))) => {
                    if self.relax_if_stuck(&pod).await? {
                        return Ok(None);
                    }
                    if let Some(exit) = self.settle(&pod).await? {
                        return Ok(Some(exit));
                    }
                    until = self.pending_deadline(&pod);
                }
                Some(Ok(WatchEvent::Deleted(pod))) => {
                    // Deleted while running: its last state may still say how it ended.
                    return Ok(Some(match classify(&pod) {
                        PodState::Ended(_) => {
                            self.settle(&pod).await?.unwrap_or_else(|| gone(name))
                        }
                        _ => gone(name),
                    }));
                }
                Some(Ok(WatchEvent::Bookmark(_))) => {}
                // `410 Gone` (the version is too old) and the like: read again.
                Some(Ok(WatchEvent::Error(status))) => {
                    tracing::debug!(
                        pod = name,
                        code = status.code,
                        "watch ended with an error event"
                    );
                    return Ok(None);
                }
                Some(Err(e)) => {
                    tracing::debug!(pod = name, error = %e, "watch stream failed");
                    return Ok(None);
                }
                None => return Ok(None),
            }
        }
    }

    /// Acts on a Pod's state: `Some` once the executor has ended (after recording a failure the
    /// cluster saw, or killing a Pod that never started in time).
    async fn settle(&self, pod: &Pod) -> Result<Option<ExecutorExit>, BackendError> {
        self.note_node(pod).await;
        match classify(pod) {
            PodState::Running => Ok(None),
            PodState::Ended(outcome) => {
                if let Some(reason) = outcome.reason {
                    record_if_attached(self.topology, pod, reason, &outcome.description).await;
                }
                Ok(Some(ExecutorExit {
                    description: outcome.description,
                }))
            }
            PodState::Pending(_) if pending_for(pod) < self.pending_timeout => Ok(None),
            PodState::Pending(why) => Ok(Some(self.end_never_started(pod, why).await)),
        }
    }

    /// Writes the node the Pod was placed on, and its renewable share now, into the job's
    /// record while the job runs (once; a Pod started ahead of its job is labelled with it a
    /// moment after it took the job, and noted then).
    async fn note_node(&self, pod: &Pod) {
        if self.node_noted.load(Ordering::Relaxed) {
            return;
        }
        let (Some(topology), Some(key)) = (self.topology, job_key_of(pod)) else {
            return;
        };
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
            return;
        };
        let Ok(node) = NodeName::of_kubernetes_node(node) else {
            return;
        };
        let share = self.energy.and_then(|e| {
            e.view
                .share(&node, cola_wire::job::now(), e.config.fresh_for)
        });
        let noted = topology
            .jobs
            .transition(&key, |r| {
                r.status == Status::Running && r.node.is_none() && {
                    r.node = Some(node.clone());
                    r.renewable_share = share;
                    true
                }
            })
            .await;
        match noted {
            Ok(_) => self.node_noted.store(true, Ordering::Relaxed),
            Err(e) => tracing::warn!(%key, error = %e, "cannot note the Pod's node in its record"),
        }
    }

    /// Ends the job of a Pod that did not start within the pending timeout, and deletes it.
    async fn end_never_started(&self, pod: &Pod, why: Option<String>) -> ExecutorExit {
        let description = format!(
            "executor Pod did not start within {} s: {}",
            self.pending_timeout.as_secs(),
            why.as_deref().unwrap_or("still pending")
        );
        // Recorded first: should the Pod start after all, its executor finds the job ended and
        // does nothing.
        record_if_attached(self.topology, pod, Reason::InternalError, &description).await;
        let name = pod.metadata.name.clone().unwrap_or_default();
        if let Err(e) = delete_pod(self.pods, &name).await {
            // The middleware's cleanup after the job deletes it again.
            tracing::warn!(pod = name, error = %e, "cannot delete a Pod that never started");
        }
        ExecutorExit { description }
    }

    /// Makes a Pod required on the greenest nodes (see [`spec::require_nodes`]) again without
    /// the requirement when the scheduler finds no room on them: deleted only as it was seen
    /// (a precondition on its version: one placed meanwhile stays, and runs), then created
    /// again under the same name, preferring them only. `true` when the Pod is to be read
    /// again (made again, or changed or gone meanwhile).
    async fn relax_if_stuck(&self, pod: &Pod) -> Result<bool, BackendError> {
        if !spec::requires_nodes(pod) || !is_unschedulable(pod) {
            return Ok(false);
        }
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let only_as_seen = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                resource_version: pod.metadata.resource_version.clone(),
                uid: pod.metadata.uid.clone(),
            }),
            ..DeleteParams::background()
        };
        match self.pods.delete(name, &only_as_seen).await {
            Ok(_) => {}
            Err(::kube::Error::Api(s)) if s.code == 409 || s.is_not_found() => return Ok(true),
            Err(e) => return Err(BackendError::kube(format!("delete Pod {name}"), e)),
        }
        let again = spec::relaxed(pod);
        for _ in 0..RECREATE_ATTEMPTS {
            match self.pods.create(&PostParams::default(), &again).await {
                Ok(_) => {
                    tracing::info!(
                        pod = name,
                        "no room on the greenest nodes: executor Pod made again, preferring them"
                    );
                    return Ok(true);
                }
                // The name is still taken for a moment.
                Err(::kube::Error::Api(s)) if s.code == 409 => {
                    tokio::time::sleep(RECREATE_PAUSE).await;
                }
                Err(e) => return Err(BackendError::kube(format!("create Pod {name} again"), e)),
            }
        }
        Err(BackendError::Conflict {
            backend: NAME,
            message: format!(
                "Pod {name}, deleted to be made again without its node requirement, kept its name"
            ),
        })
    }

    /// When a Pod that has not started yet runs out of time (`None` once it runs).
    fn pending_deadline(&self, pod: &Pod) -> Option<tokio::time::Instant> {
        matches!(classify(pod), PodState::Pending(_)).then(|| {
            let left = self.pending_timeout.saturating_sub(pending_for(pod));
            tokio::time::Instant::now() + left
        })
    }
}

/// How a Pod that is gone ended, as far as anyone can tell.
fn gone(name: &str) -> ExecutorExit {
    ExecutorExit {
        description: format!("executor Pod {name} is gone"),
    }
}

/// Consecutive API failures while following a Pod, and the pause before the next attempt.
struct Failures {
    count: u32,
    pause: Duration,
}

impl Default for Failures {
    fn default() -> Self {
        Self {
            count: 0,
            pause: API_FIRST_PAUSE,
        }
    }
}

impl Failures {
    /// Counts the failure `e` while following the Pod `name`: `e` itself once [`API_ATTEMPTS`]
    /// came in a row, else the warning `retrying` and a pause, twice as long as the last.
    async fn pause_or_give_up(
        &mut self,
        name: &str,
        e: BackendError,
        retrying: &str,
    ) -> Result<(), BackendError> {
        self.count += 1;
        if self.count >= API_ATTEMPTS {
            return Err(e);
        }
        tracing::warn!(pod = name, error = %e, "{retrying}");
        tokio::time::sleep(self.pause).await;
        self.pause *= 2;
        Ok(())
    }
}
