//! Where a Pod is in its life, and how it ended: a Pod's status turned into an outcome with the
//! reason only the cluster can tell (`OOMKilled`, `DeadlineExceeded`, an evicted work area), or
//! none when the executor should have reported itself. Pure, so every mapping is tested without
//! an API server.

use std::time::Duration;

use cola_wire::Reason;
use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, Pod, PodCondition, PodStatus};

use super::identity::{COMPILE_CONTAINER, CONTAINER};

/// Bytes of a message or of a failed executor's log kept (the kubelet's `FallbackToLogsOnError`
/// message).
const DETAIL_BYTES: usize = 1024;

/// How a job ended, as the cluster saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEnd {
    /// The failure only the cluster can see; `None` for an exit the executor should have reported.
    pub reason: Option<Reason>,
    pub description: String,
}

/// Where a Pod is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    /// Not started: being scheduled or pulling its image; with what blocks it, if known.
    Pending(Option<String>),
    Running,
    Ended(PodEnd),
}

/// Reads a Pod's status.
pub fn classify(pod: &Pod) -> PodState {
    let Some(status) = &pod.status else {
        return PodState::Pending(None);
    };
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let states = Containers {
        compile: state_of(status, COMPILE_CONTAINER),
        executor: state_of(status, CONTAINER),
    };
    let phase = status.phase.as_deref().unwrap_or("Pending");
    let ended = deadline_exceeded(pod, name, &states)
        .or_else(|| out_of_memory(pod, name, &states))
        .or_else(|| evicted(name, status))
        .or_else(|| executor_failed(name, phase, &states));
    if let Some(outcome) = ended {
        return PodState::Ended(outcome);
    }
    match phase {
        "Succeeded" => PodState::Ended(PodEnd {
            reason: None,
            description: format!("executor Pod {name} exited with code 0"),
        }),
        "Failed" => PodState::Ended(PodEnd {
            reason: None,
            description: format!(
                "executor Pod {name} failed: {} {}",
                status.reason.as_deref().unwrap_or_default(),
                clip(status.message.as_deref().unwrap_or_default(), DETAIL_BYTES)
            )
            .trim_end()
            .to_owned(),
        }),
        "Running" => PodState::Running,
        _ => PodState::Pending(what_blocks(status, &states)),
    }
}

/// The states of a Pod's executor containers: the compile container (a compiled language's) and
/// the executor.
struct Containers<'a> {
    compile: Option<&'a ContainerState>,
    executor: Option<&'a ContainerState>,
}

impl Containers<'_> {
    /// The states in the order the containers run, with what each is called in a description.
    fn in_order(&self) -> impl Iterator<Item = (&'static str, &ContainerState)> {
        [
            ("compile container", self.compile),
            ("executor", self.executor),
        ]
        .into_iter()
        .filter_map(|(what, state)| Some((what, state?)))
    }
}

/// The state of the container `name` (an init container, as the compile container once was, or
/// a regular one).
fn state_of<'a>(status: &'a PodStatus, name: &str) -> Option<&'a ContainerState> {
    let all = [&status.init_container_statuses, &status.container_statuses];
    all.into_iter()
        .flatten()
        .flatten()
        .find(|c: &&ContainerStatus| c.name == name)
        .and_then(|c| c.state.as_ref())
}

/// A Pod stopped at its `activeDeadlineSeconds`: the job's time if one of its containers ran; if
/// none ever did, it ran out of time pulling or scheduling, which is not the job's time.
fn deadline_exceeded(pod: &Pod, name: &str, states: &Containers) -> Option<PodEnd> {
    let status = pod.status.as_ref()?;
    if status.reason.as_deref() != Some("DeadlineExceeded") {
        return None;
    }
    let seconds = pod
        .spec
        .as_ref()
        .and_then(|s| s.active_deadline_seconds)
        .map_or_else(String::new, |s| format!(" of {s} s"));
    let started = states.in_order().any(|(_, s)| {
        s.running.is_some()
            || s.terminated
                .as_ref()
                .is_some_and(|t| t.started_at.is_some())
    });
    Some(if started {
        PodEnd {
            reason: Some(Reason::TimeLimit),
            description: format!(
                "executor Pod {name} exceeded its active deadline{seconds}; stopped by Kubernetes"
            ),
        }
    } else {
        PodEnd {
            reason: Some(Reason::InternalError),
            description: format!(
                "executor Pod {name} reached its active deadline{seconds} before its container started"
            ),
        }
    })
}

/// An executor container killed for memory (possibly before the phase says so): the run step's
/// limit, or, in the compile container, the compiler's.
fn out_of_memory(pod: &Pod, name: &str, states: &Containers) -> Option<PodEnd> {
    let killed = |state: Option<&ContainerState>| {
        state
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"))
    };
    let limit =
        |container| memory_limit_of(pod, container).map_or_else(String::new, |m| format!(" ({m})"));
    if killed(states.compile) {
        return Some(PodEnd {
            reason: Some(Reason::CompileError),
            description: format!(
                "compilation stopped: the compile container of Pod {name} was killed for exceeding the compiler's memory limit{}",
                limit(COMPILE_CONTAINER)
            ),
        });
    }
    killed(states.executor).then(|| PodEnd {
        reason: Some(Reason::MemoryLimit),
        description: format!(
            "executor Pod {name} was killed for exceeding its memory limit{}",
            limit(CONTAINER)
        ),
    })
}

/// An evicted Pod: for outgrowing its work area (`output_limit`), or for the node's sake.
fn evicted(name: &str, status: &PodStatus) -> Option<PodEnd> {
    if status.reason.as_deref() != Some("Evicted") {
        return None;
    }
    let message = status.message.as_deref().unwrap_or_default();
    let storage = ["ephemeral", "EmptyDir", "emptyDir"]
        .iter()
        .any(|w| message.contains(w));
    Some(PodEnd {
        reason: Some(if storage {
            Reason::OutputLimit
        } else {
            Reason::InternalError
        }),
        description: format!(
            "executor Pod {name} was evicted: {}",
            clip(message, DETAIL_BYTES)
        ),
    })
}

/// An executor container that exited on its own, unsuccessfully: the executor's to report (or,
/// when the compile container failed, nobody's: the run step never ran), so no reason here.
fn executor_failed(name: &str, phase: &str, states: &Containers) -> Option<PodEnd> {
    if phase == "Succeeded" {
        return None;
    }
    let (what, t) = states.in_order().find_map(|(what, state)| {
        let t = state.terminated.as_ref()?;
        (t.exit_code != 0 || what == "executor").then_some((what, t))
    })?;
    let mut description = format!(
        "executor Pod {name} failed: {what} exit code {}",
        t.exit_code
    );
    if let Some(signal) = t.signal {
        description.push_str(&format!(", signal {signal}"));
    }
    if let Some(reason) = &t.reason {
        description.push_str(&format!(" ({reason})"));
    }
    if let Some(message) = t.message.as_deref().filter(|m| !m.trim().is_empty()) {
        description.push_str(": ");
        description.push_str(&clip(message.trim(), DETAIL_BYTES));
    }
    Some(PodEnd {
        reason: None,
        description,
    })
}

/// Whether the scheduler found no node for `pod` (yet).
pub(super) fn is_unschedulable(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(unschedulable).is_some()
}

fn unschedulable(status: &PodStatus) -> Option<&PodCondition> {
    status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    })
}

/// What keeps a pending Pod from starting, if anything but the usual start-up: unschedulable,
/// or its container waiting for a reason such as `ErrImagePull`.
fn what_blocks(status: &PodStatus, states: &Containers) -> Option<String> {
    if let Some(c) = unschedulable(status) {
        return Some(format!(
            "unschedulable: {}",
            clip(c.message.as_deref().unwrap_or_default(), DETAIL_BYTES)
        ));
    }
    let (reason, waiting) = states.in_order().find_map(|(_, state)| {
        let waiting = state.waiting.as_ref()?;
        let reason = waiting
            .reason
            .as_deref()
            .filter(|r| *r != "ContainerCreating" && *r != "PodInitializing")?;
        Some((reason, waiting))
    })?;
    let message = waiting.message.as_deref().unwrap_or_default();
    Some(
        format!("{reason}: {}", clip(message, DETAIL_BYTES))
            .trim_end_matches([' ', ':'])
            .to_owned(),
    )
}

/// How long a Pod has existed (zero without a creation time).
pub(super) fn pending_for(pod: &Pod) -> Duration {
    let Some(created) = &pod.metadata.creation_timestamp else {
        return Duration::ZERO;
    };
    let age_ms = chrono::Utc::now().timestamp_millis() - created.0.as_millisecond();
    Duration::from_millis(age_ms.max(0) as u64)
}

fn memory_limit_of(pod: &Pod, name: &str) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let container = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .find(|c| c.name == name)?;
    let limits = container.resources.as_ref()?.limits.as_ref()?;
    limits.get("memory").map(|q| q.0.clone())
}

fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cola-job-x"},
            "spec": {"activeDeadlineSeconds": 55, "containers": [{
                "name": "executor", "resources": {"limits": {"memory": "2176Mi"}}
            }]},
            "status": status,
        }))
        .unwrap()
    }

    fn executor(state: serde_json::Value) -> serde_json::Value {
        serde_json::json!([{"name": "executor", "image": "i", "imageID": "", "ready": false,
                            "restartCount": 0, "state": state}])
    }

    fn ended(status: serde_json::Value) -> PodEnd {
        match classify(&pod(status)) {
            PodState::Ended(outcome) => outcome,
            other => panic!("not ended: {other:?}"),
        }
    }

    #[test]
    fn the_cluster_s_failures_map_to_reasons() {
        let oom = ended(serde_json::json!({"phase": "Failed",
            "containerStatuses": executor(serde_json::json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}))}));
        assert_eq!(oom.reason, Some(Reason::MemoryLimit));
        assert!(oom.description.contains("(2176Mi)"));
        // The container may be OOM-killed before the phase says so.
        let early = ended(serde_json::json!({"phase": "Running",
            "containerStatuses": executor(serde_json::json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}))}));
        assert_eq!(early.reason, Some(Reason::MemoryLimit));

        let deadline = ended(
            serde_json::json!({"phase": "Failed", "reason": "DeadlineExceeded",
            "containerStatuses": executor(serde_json::json!({"terminated": {
                "exitCode": 137, "reason": "Error", "startedAt": "2026-01-01T00:00:00Z"}}))}),
        );
        assert_eq!(deadline.reason, Some(Reason::TimeLimit));
        assert!(deadline.description.contains("of 55 s"));
        // Out of time before the container ever ran (a pull that took forever).
        for never in [
            serde_json::json!({"phase": "Failed", "reason": "DeadlineExceeded"}),
            serde_json::json!({"phase": "Failed", "reason": "DeadlineExceeded",
                "containerStatuses": executor(serde_json::json!({"waiting": {"reason": "ImagePullBackOff"}}))}),
        ] {
            let outcome = ended(never);
            assert_eq!(outcome.reason, Some(Reason::InternalError));
            assert!(outcome.description.contains("before its container started"));
        }

        let full = ended(serde_json::json!({"phase": "Failed", "reason": "Evicted",
            "message": "Usage of EmptyDir volume \"work\" exceeds the limit \"512Mi\"."}));
        assert_eq!(full.reason, Some(Reason::OutputLimit));
        let pressure = ended(serde_json::json!({"phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: memory."}));
        assert_eq!(pressure.reason, Some(Reason::InternalError));

        // An executor that exits on its own is its own to report: no reason from the cluster.
        let crashed = ended(serde_json::json!({"phase": "Failed",
            "containerStatuses": executor(serde_json::json!({"terminated": {
                "exitCode": 1, "reason": "Error", "message": "cannot connect to NATS"}}))}));
        assert_eq!(crashed.reason, None);
        assert!(
            crashed
                .description
                .contains("exit code 1 (Error): cannot connect to NATS")
        );
        let ok = ended(serde_json::json!({"phase": "Succeeded",
            "containerStatuses": executor(serde_json::json!({"terminated": {"exitCode": 0, "reason": "Completed"}}))}));
        assert_eq!(ok.reason, None);
    }

    fn compile(state: serde_json::Value) -> serde_json::Value {
        serde_json::json!([{"name": "compile", "image": "i", "imageID": "", "ready": false,
                            "restartCount": 0, "state": state}])
    }

    /// The statuses of both containers, started together.
    fn both(compile: serde_json::Value, executor: serde_json::Value) -> serde_json::Value {
        let mut statuses = self::compile(compile);
        statuses
            .as_array_mut()
            .unwrap()
            .extend(self::executor(executor).as_array().unwrap().iter().cloned());
        statuses
    }

    #[test]
    fn the_compile_container_beside_the_executor_is_read_too() {
        let waiting = serde_json::json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}});
        let oom = ended(serde_json::json!({"phase": "Running",
            "containerStatuses": both(serde_json::json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}), waiting.clone())}));
        assert_eq!(oom.reason, Some(Reason::CompileError));
        // The compile container failed while the executor waits for its handoff: over.
        let failed = ended(serde_json::json!({"phase": "Running",
            "containerStatuses": both(serde_json::json!({"terminated": {"exitCode": 1, "reason": "Error"}}), waiting.clone())}));
        assert_eq!(failed.reason, None);
        assert!(
            failed.description.contains("compile container exit code 1"),
            "{failed:?}"
        );
        // Compiled and handed on: the executor runs.
        let running = pod(serde_json::json!({"phase": "Running",
            "containerStatuses": both(serde_json::json!({"terminated": {"exitCode": 0, "reason": "Completed"}}), waiting)}));
        assert_eq!(classify(&running), PodState::Running);
    }

    #[test]
    fn the_compile_container_s_end_is_told_apart_from_the_executor_s() {
        let initializing = serde_json::json!({"waiting": {"reason": "PodInitializing"}});
        let oom = ended(serde_json::json!({"phase": "Failed",
            "initContainerStatuses": compile(serde_json::json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}})),
            "containerStatuses": executor(initializing.clone())}));
        assert_eq!(oom.reason, Some(Reason::CompileError));
        assert!(
            oom.description.contains("compiler's memory limit"),
            "{oom:?}"
        );
        // Its own failure is nobody's to report but the middleware's.
        let failed = ended(serde_json::json!({"phase": "Failed",
            "initContainerStatuses": compile(serde_json::json!({"terminated": {
                "exitCode": 1, "reason": "Error", "message": "cannot connect to NATS"}})),
            "containerStatuses": executor(initializing.clone())}));
        assert_eq!(failed.reason, None);
        assert!(
            failed
                .description
                .contains("compile container exit code 1 (Error): cannot connect to NATS"),
            "{failed:?}"
        );
        // Out of time while compiling: the job's time.
        let deadline = ended(
            serde_json::json!({"phase": "Failed", "reason": "DeadlineExceeded",
            "initContainerStatuses": compile(serde_json::json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}})),
            "containerStatuses": executor(initializing.clone())}),
        );
        assert_eq!(deadline.reason, Some(Reason::TimeLimit));
        // Compiled, then the program killed for memory: the run step's limit.
        let run_oom = ended(serde_json::json!({"phase": "Failed",
            "initContainerStatuses": compile(serde_json::json!({"terminated": {"exitCode": 0, "reason": "Completed"}})),
            "containerStatuses": executor(serde_json::json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}))}));
        assert_eq!(run_oom.reason, Some(Reason::MemoryLimit));
        // Compiling: running; the compile container's image missing: what blocks.
        let compiling = pod(serde_json::json!({"phase": "Pending",
            "initContainerStatuses": compile(serde_json::json!({"running": {}})),
            "containerStatuses": executor(initializing.clone())}));
        assert_eq!(classify(&compiling), PodState::Pending(None));
        let pull = pod(serde_json::json!({"phase": "Pending",
            "initContainerStatuses": compile(serde_json::json!({"waiting": {"reason": "ErrImagePull", "message": "not found"}})),
            "containerStatuses": executor(initializing)}));
        assert_eq!(
            classify(&pull),
            PodState::Pending(Some("ErrImagePull: not found".into()))
        );
    }

    #[test]
    fn a_pod_that_has_not_started_says_what_blocks_it() {
        assert_eq!(
            classify(&pod(serde_json::json!({"phase": "Pending"}))),
            PodState::Pending(None)
        );
        let creating = pod(serde_json::json!({"phase": "Pending",
            "containerStatuses": executor(serde_json::json!({"waiting": {"reason": "ContainerCreating"}}))}));
        assert_eq!(classify(&creating), PodState::Pending(None));
        let pull = pod(serde_json::json!({"phase": "Pending",
            "containerStatuses": executor(serde_json::json!({"waiting": {"reason": "ErrImagePull", "message": "not found"}}))}));
        assert_eq!(
            classify(&pull),
            PodState::Pending(Some("ErrImagePull: not found".into()))
        );
        let unschedulable = pod(serde_json::json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}]}));
        assert_eq!(
            classify(&unschedulable),
            PodState::Pending(Some("unschedulable: 0/3 nodes".into()))
        );
        let running = pod(serde_json::json!({"phase": "Running",
            "containerStatuses": executor(serde_json::json!({"running": {}}))}));
        assert_eq!(classify(&running), PodState::Running);
    }
}
