//! What the API shows of a job: the record, minus what is for operators only.

use cola_wire::{
    JobId, JobRecord, Reason, Status, Timings,
    energy::{NodeName, Schedule, Share, Waiting},
    job::{Timestamp, millis_between},
};
use serde::Serialize;
use serde_json::Value;

/// A job as the API shows it to its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: JobId,
    /// The language's name, as in `GET /api/v1/languages`.
    pub language: String,
    pub status: Status,
    /// Why the job failed (`failed` only).
    #[schema(required = true)]
    pub reason: Option<Reason>,
    /// The program's exit status, once it has exited by itself.
    #[schema(required = true)]
    pub exit_code: Option<i32>,
    /// The signal that ended the program, if one did.
    #[schema(required = true)]
    pub signal: Option<i32>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub started_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub finished_at: Option<Timestamp>,
    pub timings_ms: Timings,
    /// First 64 KiB of each; the output zip has everything.
    pub stdout: String,
    pub stderr: String,
    pub compile_output: String,
    /// Whether the owner asked to cancel the job (the job ends `cancelled` once it is stopped).
    pub cancel_requested: bool,
    /// Where the output zip is, once there is one.
    #[schema(required = true)]
    pub output_url: Option<String>,
    /// A `numeric` job's problem statement (`null` for programs).
    #[schema(value_type = Option<Object>, required = true)]
    pub problem: Option<Value>,
    /// A `numeric` job's result once it has one, in its method family's shape (e.g. roots
    /// `{root, f_root, iterations, converged}`); the zip's `result.json` has it with the
    /// convergence and warnings.
    #[schema(value_type = Option<Object>, required = true)]
    pub result: Option<Value>,
    /// When the job may start, if it was submitted with a schedule.
    #[schema(required = true)]
    pub schedule: Option<Schedule>,
    /// Why the queued job is held on purpose (`renewable_power`: a time-shiftable job waits
    /// for a node with renewable power, or its deadline).
    #[schema(required = true)]
    pub waiting: Option<Waiting>,
    /// The node the job ran on (known once it started, where cola places jobs itself).
    #[schema(value_type = Option<String>, required = true)]
    pub node: Option<NodeName>,
    /// The renewable share (0 to 1) of that node's power when the job started; `null` when not
    /// known (no fresh telemetry: grid power).
    #[schema(value_type = Option<f64>, required = true)]
    pub renewable_share: Option<Share>,
}

/// The path of a job in the API.
pub fn job_path(id: &JobId) -> String {
    format!("/api/v1/jobs/{id}")
}

/// The path of a job's output zip in the API.
pub fn output_path(id: &JobId) -> String {
    format!("/api/v1/jobs/{id}/output.zip")
}

impl From<&JobRecord> for JobView {
    fn from(record: &JobRecord) -> Self {
        let mut timings = record.timings_ms;
        if timings.queue.is_none()
            && let Some(started_at) = record.started_at
        {
            timings.queue = Some(millis_between(record.created_at, started_at));
        }
        Self {
            id: record.id,
            language: record.language.to_string(),
            status: record.status,
            reason: record.reason,
            exit_code: record.exit_code,
            signal: record.signal,
            created_at: record.created_at,
            started_at: record.started_at,
            finished_at: record.finished_at,
            timings_ms: timings,
            stdout: record.stdout.clone(),
            stderr: record.stderr.clone(),
            compile_output: record.compile_output.clone(),
            cancel_requested: record.cancel_requested,
            output_url: record
                .output_object
                .as_ref()
                .map(|_| output_path(&record.id)),
            problem: record.problem.clone(),
            result: record.result.clone(),
            schedule: record.schedule,
            waiting: record.waiting,
            node: record.node.clone(),
            renewable_share: record.renewable_share,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cola_wire::{JobMessage, Language, UserId, languages};

    fn record() -> JobRecord {
        let msg = JobMessage {
            schedule: None,
            request_id: None,
            id: JobId::new(),
            user: UserId::parse("alice").unwrap(),
            language: Language::parse("c").unwrap(),
            args: vec![],
            limits: languages()[0].default_limits,
            created_at: cola_wire::job::now(),
            work: cola_wire::Work::Inputs(Default::default()),
        };
        JobRecord::queued(&msg, vec![], 0)
    }

    #[test]
    fn a_queued_job_has_no_timings_and_no_output() {
        let view = JobView::from(&record());
        assert_eq!(view.timings_ms, Timings::default());
        assert_eq!(view.output_url, None);
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["status"], "queued");
        for key in [
            "id",
            "language",
            "status",
            "reason",
            "exit_code",
            "signal",
            "created_at",
            "started_at",
            "finished_at",
            "timings_ms",
            "stdout",
            "stderr",
            "compile_output",
            "output_url",
            "problem",
            "result",
        ] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
        assert!(
            json.get("message").is_none(),
            "operator detail must not show"
        );
    }

    #[test]
    fn queue_time_is_derived_and_the_output_linked() {
        let mut r = record();
        r.started_at = Some(r.created_at + chrono::Duration::milliseconds(42));
        r.output_object = Some(cola_wire::names::output_object(&r.user, &r.id));
        r.message = Some("executor pid 123".into());
        let view = JobView::from(&r);
        assert_eq!(view.timings_ms.queue, Some(42));
        assert_eq!(
            view.output_url,
            Some(format!("/api/v1/jobs/{}/output.zip", r.id))
        );
        r.timings_ms.queue = Some(7);
        assert_eq!(JobView::from(&r).timings_ms.queue, Some(7));
    }
}
