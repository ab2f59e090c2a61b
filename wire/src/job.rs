//! The job: the message that asks for it, the record that tracks it, the report that ends it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    JobId, Language, Limits, RequestId, UserId,
    energy::{NodeName, Schedule, Share, Waiting},
};

/// How much of stdout, stderr and compiler output a record and the API show inline.
pub const PREVIEW_BYTES: usize = 64 * 1024;

/// Where a job is in its life. A terminal status never changes again.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl Status {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Why a job failed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    CompileError,
    RuntimeError,
    TimeLimit,
    MemoryLimit,
    OutputLimit,
    DidNotConverge,
    InvalidInput,
    InternalError,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CompileError => "compile_error",
            Self::RuntimeError => "runtime_error",
            Self::TimeLimit => "time_limit",
            Self::MemoryLimit => "memory_limit",
            Self::OutputLimit => "output_limit",
            Self::DidNotConverge => "did_not_converge",
            Self::InvalidInput => "invalid_input",
            Self::InternalError => "internal_error",
        }
    }
}

/// One file of a job's sources or data, as text.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputFile {
    /// Plain: `A-Z a-z 0-9 . _ -`, at most 100 bytes, not starting with `.` or `-`, with an
    /// extension the language allows.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]*$", max_length = 100)
    )]
    pub name: String,
    /// Not empty.
    #[cfg_attr(feature = "openapi", schema(min_length = 1))]
    pub content: String,
}

/// What a program gets to read: its files and its standard input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    pub files: Vec<InputFile>,
    #[serde(default)]
    pub stdin: String,
}

impl Inputs {
    /// Bytes of content, the measure used to decide whether inputs travel inline.
    pub fn content_bytes(&self) -> usize {
        self.stdin.len()
            + self
                .files
                .iter()
                .map(|f| f.name.len() + f.content.len())
                .sum::<usize>()
    }
}

/// The message published on `cola.<language>`: everything needed to run the job.
///
/// On the wire its [`Work`] is one of three optional fields (`inputs`, `input_object`,
/// `problem`); a message with none or more than one of them does not decode.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "MessageOnTheWire")]
pub struct JobMessage {
    pub id: JobId,
    pub user: UserId,
    pub language: Language,
    pub args: Vec<String>,
    pub limits: Limits,
    pub created_at: DateTime<Utc>,
    pub work: Work,
    /// The request that submitted the job (the gateway's `X-Request-Id`), so that one job can
    /// be followed through every process's logs. The gateway sends it in the stream message's
    /// [`crate::names::REQUEST_ID_HEADER`]; the middleware sets it here for the executor.
    pub request_id: Option<RequestId>,
    /// When the job may start, if it may wait for renewable power.
    pub schedule: Option<Schedule>,
}

/// What a job works on: exactly one of these travels in its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// A program's inputs, inline: they fit comfortably in one message.
    Inputs(Inputs),
    /// A program's inputs kept in the object store, in the object of this name
    /// (`<user>/<job-id>-input.zip`), when they do not.
    InputObject(String),
    /// A numeric job's problem statement, as received and validated by the gateway.
    Problem(Value),
}

impl Work {
    /// The inputs, when they travel inline.
    pub fn inputs(&self) -> Option<&Inputs> {
        match self {
            Self::Inputs(inputs) => Some(inputs),
            _ => None,
        }
    }

    /// The object holding the inputs, when they do not travel inline.
    pub fn input_object(&self) -> Option<&str> {
        match self {
            Self::InputObject(name) => Some(name),
            _ => None,
        }
    }

    /// The problem statement of a numeric job.
    pub fn problem(&self) -> Option<&Value> {
        match self {
            Self::Problem(problem) => Some(problem),
            _ => None,
        }
    }
}

/// A [`JobMessage`] as JSON has it, read before its work is checked to be exactly one thing.
#[derive(Deserialize)]
struct MessageOnTheWire {
    id: JobId,
    user: UserId,
    language: Language,
    #[serde(default)]
    args: Vec<String>,
    limits: Limits,
    created_at: DateTime<Utc>,
    inputs: Option<Inputs>,
    input_object: Option<String>,
    problem: Option<Value>,
    #[serde(default)]
    request_id: Option<RequestId>,
    #[serde(default)]
    schedule: Option<Schedule>,
}

/// A [`JobMessage`] as JSON has it, borrowed for writing.
#[derive(Serialize)]
struct MessageToTheWire<'a> {
    id: &'a JobId,
    user: &'a UserId,
    language: &'a Language,
    args: &'a [String],
    limits: &'a Limits,
    created_at: &'a DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inputs: Option<&'a Inputs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_object: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a RequestId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule: Option<&'a Schedule>,
}

impl TryFrom<MessageOnTheWire> for JobMessage {
    type Error = &'static str;

    fn try_from(wire: MessageOnTheWire) -> Result<Self, Self::Error> {
        let work = match (wire.inputs, wire.input_object, wire.problem) {
            (Some(inputs), None, None) => Work::Inputs(inputs),
            (None, Some(name), None) => Work::InputObject(name),
            (None, None, Some(problem)) => Work::Problem(problem),
            _ => return Err("a job message carries exactly one of inputs, input_object, problem"),
        };
        Ok(Self {
            id: wire.id,
            user: wire.user,
            language: wire.language,
            args: wire.args,
            limits: wire.limits,
            created_at: wire.created_at,
            work,
            request_id: wire.request_id,
            schedule: wire.schedule,
        })
    }
}

impl Serialize for JobMessage {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        MessageToTheWire {
            id: &self.id,
            user: &self.user,
            language: &self.language,
            args: &self.args,
            limits: &self.limits,
            created_at: &self.created_at,
            inputs: self.work.inputs(),
            input_object: self.work.input_object(),
            problem: self.work.problem(),
            request_id: self.request_id.as_ref(),
            schedule: self.schedule.as_ref(),
        }
        .serialize(serializer)
    }
}

/// Time a job gets on top of its compile and run limits for preparing, zipping and uploading.
pub const DEADLINE_SLACK: Duration = Duration::from_secs(20);

impl JobMessage {
    /// The longest the job may take from launch to report: the middleware stops it then, and
    /// its executor's retries of the upload end before.
    pub fn deadline(&self) -> Duration {
        match crate::language(&self.language) {
            Some(lang) => deadline_of(lang, &self.limits),
            None => Duration::from_millis(self.limits.wall_time_ms) + DEADLINE_SLACK,
        }
    }
}

/// [`JobMessage::deadline`] of a job of `lang` with `limits`.
pub fn deadline_of(lang: &crate::LanguageDef, limits: &Limits) -> Duration {
    let compile = lang.compile.map_or(0, |_| lang.compile_limits.wall_time_ms);
    Duration::from_millis(compile + limits.wall_time_ms) + DEADLINE_SLACK
}

/// A file of the job as the record summarises it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSummary {
    pub name: String,
    pub bytes: u64,
}

/// Milliseconds spent in each phase; a phase not reached is `None`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    pub queue: Option<u64>,
    pub compile: Option<u64>,
    pub run: Option<u64>,
    pub total: Option<u64>,
    /// CPU time of the compile and run steps together, as the executor measured it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u64>,
}

/// Which executor runs a job, so that another middleware replica can find it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorHandle {
    /// `process`, `docker` or `kubernetes`.
    pub backend: String,
    /// The host (process backend) or cluster the executor lives on.
    pub node: String,
    /// Backend-specific id: a pid with its start time, a container id, a Pod name.
    pub id: String,
}

/// The value stored under `<user>.<job-id>` in the `cola-jobs` bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    pub user: UserId,
    pub language: Language,
    pub status: Status,
    #[serde(default)]
    pub reason: Option<Reason>,
    /// Detail for operators (e.g. why an executor could not start); never the user's output.
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub signal: Option<i32>,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub timings_ms: Timings,
    pub limits: Limits,
    #[serde(default)]
    pub files: Vec<FileSummary>,
    #[serde(default)]
    pub stdin_bytes: u64,
    #[serde(default)]
    pub arg_count: u64,
    #[serde(default)]
    pub output_object: Option<String>,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
    #[serde(default)]
    pub compile_output: String,
    /// Set by the gateway when the owner asks to cancel; the middleware acts on it.
    #[serde(default)]
    pub cancel_requested: bool,
    /// How many times a middleware has started this job.
    #[serde(default)]
    pub attempt: u32,
    #[serde(default)]
    pub executor: Option<ExecutorHandle>,
    /// The problem statement of a numeric job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<Value>,
    /// The result of a numeric job, in its method family's shape (e.g. roots
    /// `{root, f_root, iterations, converged}`), once it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// When the job may start, if it may wait for renewable power.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Why the queued job is held on purpose, while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// The node the job ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeName>,
    /// The renewable share of that node's power when the job started (none: not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewable_share: Option<Share>,
}

/// How a job ends when the middleware (not its executor or solver) ends it: cancelled, or
/// failed for a reason only the middleware (or the cluster) saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub status: Status,
    pub reason: Option<Reason>,
    /// What the owner is told; `None` leaves the record's message as it is.
    pub message: Option<String>,
}

impl Ending {
    /// Ended at its owner's request.
    pub fn cancelled() -> Self {
        Self {
            status: Status::Cancelled,
            reason: None,
            message: None,
        }
    }

    /// Failed for `reason`, with `message` for its owner.
    pub fn failed(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            status: Status::Failed,
            reason: Some(reason),
            message: Some(message.into()),
        }
    }
}

impl JobRecord {
    /// The record of a job that has just been accepted.
    pub fn queued(msg: &JobMessage, files: Vec<FileSummary>, stdin_bytes: u64) -> Self {
        Self {
            id: msg.id,
            user: msg.user.clone(),
            language: msg.language.clone(),
            status: Status::Queued,
            reason: None,
            message: None,
            exit_code: None,
            signal: None,
            created_at: msg.created_at,
            started_at: None,
            finished_at: None,
            timings_ms: Timings::default(),
            limits: msg.limits,
            files,
            stdin_bytes,
            arg_count: msg.args.len() as u64,
            output_object: None,
            stdout: String::new(),
            stderr: String::new(),
            compile_output: String::new(),
            cancel_requested: false,
            attempt: 0,
            executor: None,
            problem: msg.work.problem().cloned(),
            result: None,
            schedule: msg.schedule,
            waiting: None,
            node: None,
            renewable_share: None,
        }
    }

    /// Ends the job as `ending` says, with its message (a cancelled job keeps the one it has).
    pub fn end(&mut self, ending: &Ending, now: DateTime<Utc>) {
        if let Some(message) = &ending.message {
            self.message = Some(message.clone());
        }
        self.finish(ending.status, ending.reason, now);
    }

    /// Ends the job with `status`/`reason`, stamping the finish time and total duration.
    pub fn finish(&mut self, status: Status, reason: Option<Reason>, now: DateTime<Utc>) {
        debug_assert!(status.is_terminal());
        self.status = status;
        self.reason = reason;
        self.finished_at = Some(now);
        self.timings_ms.total = Some(millis_between(self.created_at, now));
    }

    /// Copies what an executor reported into this record and ends the job.
    pub fn apply_report(&mut self, report: &RunReport, now: DateTime<Utc>) {
        self.exit_code = report.exit_code;
        self.signal = report.signal;
        self.timings_ms.compile = report.timings_ms.compile;
        self.timings_ms.run = report.timings_ms.run;
        self.timings_ms.cpu = report.timings_ms.cpu;
        self.stdout = preview(&report.stdout);
        self.stderr = preview(&report.stderr);
        self.compile_output = preview(&report.compile_output);
        self.output_object = report.output_object.clone();
        if report.message.is_some() {
            self.message = report.message.clone();
        }
        self.finish(report.status, report.reason, now);
    }
}

/// What an executor found out about one run: also the `result.json` in the output zip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    pub status: Status,
    pub reason: Option<Reason>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timings_ms: Timings,
    pub limits: Limits,
    /// Operator-facing detail, e.g. the cause of an internal error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Previews of the program's output (not part of `result.json`).
    #[serde(skip)]
    pub stdout: String,
    #[serde(skip)]
    pub stderr: String,
    #[serde(skip)]
    pub compile_output: String,
    #[serde(skip)]
    pub output_object: Option<String>,
}

/// A preview of `text`: at most [`PREVIEW_BYTES`], cut at a character boundary.
pub fn preview(text: &str) -> String {
    if text.len() <= PREVIEW_BYTES {
        return text.to_owned();
    }
    let mut end = PREVIEW_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Whole milliseconds from `from` to `to`, zero if `to` is earlier.
pub fn millis_between(from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    u64::try_from((to - from).num_milliseconds()).unwrap_or(0)
}

/// A point in time on the wire (UTC, RFC 3339).
pub type Timestamp = DateTime<Utc>;

/// The current time.
pub fn now() -> Timestamp {
    Utc::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_reasons_use_the_documented_names() {
        assert_eq!(
            serde_json::to_string(&Status::Cancelled).unwrap(),
            "\"cancelled\""
        );
        assert_eq!(
            serde_json::to_string(&Reason::MemoryLimit).unwrap(),
            "\"memory_limit\""
        );
        assert_eq!(Reason::DidNotConverge.as_str(), "did_not_converge");
        assert!(Status::Failed.is_terminal() && !Status::Running.is_terminal());
    }

    #[test]
    fn problem_and_result_are_optional_on_the_wire() {
        let msg = JobMessage {
            schedule: None,
            request_id: None,
            id: JobId::new(),
            user: UserId::parse("alice").unwrap(),
            language: Language::parse("c").unwrap(),
            args: vec![],
            limits: crate::languages()[0].default_limits,
            created_at: now(),
            work: Work::Inputs(Inputs::default()),
        };
        let json = serde_json::to_value(&msg).unwrap();
        assert!(json.get("problem").is_none(), "{json}");
        let record = JobRecord::queued(&msg, vec![], 0);
        let json = serde_json::to_value(&record).unwrap();
        assert!(json.get("problem").is_none() && json.get("result").is_none());
        // Records and messages written before these fields existed still read.
        let old: JobRecord = serde_json::from_value(json).unwrap();
        assert_eq!((old.problem, old.result), (None, None));

        let problem = serde_json::json!({"method": "bisection", "f": "x", "a": -1, "b": 1});
        let numeric = JobMessage {
            schedule: None,
            language: Language::parse("numeric").unwrap(),
            work: Work::Problem(problem.clone()),
            ..msg
        };
        let back: JobMessage =
            serde_json::from_slice(&serde_json::to_vec(&numeric).unwrap()).unwrap();
        assert_eq!(back.work.problem(), Some(&problem));
        assert_eq!(JobRecord::queued(&back, vec![], 0).problem, Some(problem));
    }

    #[test]
    fn a_message_carries_exactly_one_kind_of_work_under_its_own_name() {
        let msg = JobMessage {
            schedule: None,
            request_id: None,
            id: JobId::new(),
            user: UserId::parse("alice").unwrap(),
            language: Language::parse("c").unwrap(),
            args: vec![],
            limits: crate::languages()[0].default_limits,
            created_at: now(),
            work: Work::InputObject("alice/x-input.zip".into()),
        };
        let json = serde_json::to_value(&msg).unwrap();
        assert_eq!(json["input_object"], "alice/x-input.zip");
        assert!(json.get("inputs").is_none() && json.get("problem").is_none());
        assert_eq!(
            serde_json::from_value::<JobMessage>(json.clone()).unwrap(),
            msg
        );

        let mut both = json.clone();
        both["inputs"] = serde_json::json!({"files": []});
        let mut none = json;
        none.as_object_mut().unwrap().remove("input_object");
        for bad in [both, none] {
            let error = serde_json::from_value::<JobMessage>(bad).unwrap_err();
            assert!(error.to_string().contains("exactly one of"), "{error}");
        }
    }

    #[test]
    fn previews_cut_at_a_character_boundary() {
        let long = "é".repeat(PREVIEW_BYTES);
        let p = preview(&long);
        assert!(p.len() <= PREVIEW_BYTES && p.len() >= PREVIEW_BYTES - 1);
        assert_eq!(preview("hi"), "hi");
    }
}
