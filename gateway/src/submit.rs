//! The body of `POST /api/v1/jobs` and the checks that turn it into a job, or into a `400`
//! naming the field at fault. Nothing here does I/O: a request that fails these checks never
//! reaches NATS.
//!
//! A program (`c`, `go`, `javascript`) comes as `files` or `source`; a numeric job
//! (`numeric`) comes as a `problem`, validated completely by
//! [`cola_numeric::parse_problem`] (fields such as `problem.f`).

use std::collections::HashSet;

use cola_wire::{
    FileNameError, FileSummary, InputFile, Inputs, JobId, JobMessage, JobRecord, Language,
    LanguageDef, Limits, LimitsRequest, UserId, Work, energy::Schedule, job::Timestamp, language,
    languages,
};
use serde::Deserialize;
use serde_json::Value;

use crate::GatewayError;

/// Most files one job may have.
pub const MAX_FILES: usize = 64;
/// Most command-line arguments one job may have.
pub const MAX_ARGS: usize = 256;
/// Longest command-line argument, in bytes.
pub const MAX_ARG_BYTES: usize = 4096;

/// What a client sends to submit a job. Every field is optional at this level so that a missing
/// one gets a clear error naming it.
///
/// A program (`c`, `go`, `javascript`) has either `files` (which must include the language's
/// `source_file`, each name once, with an extension the language allows) or `source`, and
/// optionally `stdin`, `args` and `limits` (each at most the language's maximum, see
/// `GET /api/v1/languages`). A `numeric` job has a `problem` (see
/// `GET /api/v1/numeric/methods`) and optionally `limits`, and no files, source, stdin or
/// arguments.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(
    json!({"language": "c", "source": "#include <stdio.h>\nint main(void) { puts(\"hello\"); }\n"}),
    json!({"language": "numeric", "problem": {"method": "bisection", "f": "x^3 + 4*x^2 - 10", "a": 1, "b": 2, "tol": 1e-10, "max_iter": 100}})
))]
pub struct SubmitRequest {
    /// A language's `name` from `GET /api/v1/languages`.
    #[schema(required = true, schema_with = language_schema)]
    pub language: Option<String>,
    /// A program's files (or give `source`).
    #[schema(min_items = 1, max_items = 64)]
    pub files: Option<Vec<InputFile>>,
    /// Shorthand for one file named after the language's `source_file`.
    #[schema(min_length = 1)]
    pub source: Option<String>,
    /// The program's standard input.
    pub stdin: Option<String>,
    /// The program's command-line arguments: at most 256, each at most 4096 bytes, without NUL.
    #[schema(max_items = 256)]
    pub args: Option<Vec<String>>,
    /// Limits to run with; each left out is the language's default.
    pub limits: Option<LimitsRequest>,
    /// The problem statement of a `numeric` job, e.g. `{"method": "bisection", "f": ..., ...}`.
    #[schema(value_type = Option<Object>)]
    pub problem: Option<Value>,
    /// For a program that may start later: it may then wait for a node with renewable power,
    /// and always starts by `not_after`.
    pub schedule: Option<ScheduleRequest>,
}

/// When a program may start (see README, "Energy-aware placement").
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// The latest start: an RFC 3339 time from a few seconds to 24 hours ahead, e.g.
    /// `2026-12-07T18:00:00Z`.
    #[schema(required = true, format = DateTime)]
    pub not_after: Option<String>,
}

/// The least time ahead a schedule's `not_after` may be.
pub const MIN_SCHEDULE_AHEAD: chrono::TimeDelta = chrono::TimeDelta::seconds(5);
/// The most time ahead a schedule's `not_after` may be.
pub const MAX_SCHEDULE_AHEAD: chrono::TimeDelta = chrono::TimeDelta::hours(24);

impl ScheduleRequest {
    fn validate_at(self, now: Timestamp) -> Result<Schedule, GatewayError> {
        let invalid = |why: String| GatewayError::invalid_field("schedule.not_after", why);
        let text = self
            .not_after
            .ok_or_else(|| invalid("a schedule needs not_after, an RFC 3339 time".into()))?;
        let not_after = chrono::DateTime::parse_from_rfc3339(&text)
            .map_err(|e| invalid(format!("not an RFC 3339 time ({e}): {text:?}")))?
            .with_timezone(&chrono::Utc);
        if not_after < now + MIN_SCHEDULE_AHEAD {
            return Err(invalid(format!(
                "must be at least {} s ahead; it is {text}",
                MIN_SCHEDULE_AHEAD.num_seconds()
            )));
        }
        if not_after > now + MAX_SCHEDULE_AHEAD {
            return Err(invalid(format!(
                "must be at most {} hours ahead; it is {text}",
                MAX_SCHEDULE_AHEAD.num_hours()
            )));
        }
        Ok(Schedule { not_after })
    }
}

/// `language`: one of the language table's names.
fn language_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(languages().iter().map(|l| l.name)))
        .description(Some("A language's `name` from `GET /api/v1/languages`."))
        .build()
}

/// A submission that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidJob {
    pub language: &'static LanguageDef,
    /// A program's inputs, or the validated problem statement of a numeric job.
    pub work: Work,
    pub args: Vec<String>,
    pub limits: Limits,
    pub schedule: Option<Schedule>,
}

impl SubmitRequest {
    /// Checks everything about the request, in the order a person would fix it.
    pub fn validate(self) -> Result<ValidJob, GatewayError> {
        self.validate_at(cola_wire::job::now())
    }

    /// [`validate`](Self::validate), with a schedule checked against `now`.
    pub fn validate_at(mut self, now: Timestamp) -> Result<ValidJob, GatewayError> {
        let language = known_language(self.language.as_deref())?;
        if language.is_numeric() {
            if self.schedule.is_some() {
                return Err(GatewayError::invalid_field(
                    "schedule",
                    "a numeric job starts at once; only programs take a schedule",
                ));
            }
            return self.validate_problem(language);
        }
        let schedule = self
            .schedule
            .take()
            .map(|s| s.validate_at(now))
            .transpose()?;
        if self.problem.is_some() {
            return Err(GatewayError::invalid_field(
                "problem",
                format!(
                    "only numeric jobs state a problem; a {} job sends files or source",
                    language.name
                ),
            ));
        }
        let files = files_of(language, self.files, self.source)?;
        let args = self.args.unwrap_or_default();
        check_args(&args)?;
        let limits = self
            .limits
            .unwrap_or_default()
            .resolve(&language.default_limits, &language.max_limits)
            .map_err(|e| {
                GatewayError::invalid_field(format!("limits.{}", e.field), e.to_string())
            })?;
        Ok(ValidJob {
            language,
            work: Work::Inputs(Inputs {
                files,
                stdin: self.stdin.unwrap_or_default(),
            }),
            args,
            limits,
            schedule,
        })
    }

    /// A numeric job: a problem, and nothing a program would have.
    fn validate_problem(self, language: &'static LanguageDef) -> Result<ValidJob, GatewayError> {
        let not_here = |field: &str| {
            GatewayError::invalid_field(
                field,
                format!(
                    "a {} job states a problem; it takes no {field}",
                    language.name
                ),
            )
        };
        if self.files.is_some() {
            return Err(not_here("files"));
        }
        if self.source.is_some() {
            return Err(not_here("source"));
        }
        if self.stdin.is_some_and(|s| !s.is_empty()) {
            return Err(not_here("stdin"));
        }
        if self.args.is_some_and(|a| !a.is_empty()) {
            return Err(not_here("args"));
        }
        let problem = self.problem.ok_or_else(|| {
            GatewayError::invalid_field(
                "problem",
                format!(
                    "a {} job needs a problem, e.g. {}",
                    language.name,
                    cola_numeric::example(cola_numeric::Method::Bisection)
                ),
            )
        })?;
        cola_numeric::parse_problem(&problem)
            .map_err(|e| GatewayError::invalid_field(e.field, e.error))?;
        let limits = self
            .limits
            .unwrap_or_default()
            .resolve(&language.default_limits, &language.max_limits)
            .map_err(|e| {
                GatewayError::invalid_field(format!("limits.{}", e.field), e.to_string())
            })?;
        Ok(ValidJob {
            language,
            work: Work::Problem(problem),
            args: Vec::new(),
            limits,
            schedule: None,
        })
    }
}

impl ValidJob {
    /// The record of the job just accepted and the message that asks for it, with the inputs
    /// inline (the caller moves them to the object store when they are too large).
    pub fn into_job(
        self,
        id: JobId,
        user: &UserId,
        created_at: Timestamp,
    ) -> (JobRecord, JobMessage) {
        let (files, stdin_bytes) = match &self.work {
            Work::Inputs(inputs) => (
                inputs
                    .files
                    .iter()
                    .map(|f| FileSummary {
                        name: f.name.clone(),
                        bytes: f.content.len() as u64,
                    })
                    .collect(),
                inputs.stdin.len() as u64,
            ),
            _ => (Vec::new(), 0),
        };
        let message = JobMessage {
            request_id: None,
            schedule: self.schedule,
            id,
            user: user.clone(),
            language: self.language.id(),
            args: self.args,
            limits: self.limits,
            created_at,
            work: self.work,
        };
        (JobRecord::queued(&message, files, stdin_bytes), message)
    }
}

fn known_language(name: Option<&str>) -> Result<&'static LanguageDef, GatewayError> {
    let name =
        name.ok_or_else(|| GatewayError::invalid_field("language", "language is required"))?;
    Language::parse(name)
        .ok()
        .and_then(|l| language(&l))
        .ok_or_else(|| {
            let known: Vec<_> = languages().iter().map(|l| l.name).collect();
            GatewayError::invalid_field(
                "language",
                format!("unknown language {name:?} (known: {})", known.join(", ")),
            )
        })
}

fn files_of(
    language: &LanguageDef,
    files: Option<Vec<InputFile>>,
    source: Option<String>,
) -> Result<Vec<InputFile>, GatewayError> {
    let files = match (files, source) {
        (Some(_), Some(_)) => {
            return Err(GatewayError::invalid_field(
                "source",
                "give either files or source, not both",
            ));
        }
        (None, None) => {
            return Err(GatewayError::invalid_field(
                "files",
                format!(
                    "no source: give files, or source for a single {}",
                    language.source_file
                ),
            ));
        }
        (None, Some(source)) => {
            if source.is_empty() {
                return Err(GatewayError::invalid_field("source", "source is empty"));
            }
            return Ok(vec![InputFile {
                name: language.source_file.to_owned(),
                content: source,
            }]);
        }
        (Some(files), None) => files,
    };
    if files.is_empty() {
        return Err(GatewayError::invalid_field("files", "files is empty"));
    }
    if files.len() > MAX_FILES {
        return Err(GatewayError::invalid_field(
            "files",
            format!("at most {MAX_FILES} files, got {}", files.len()),
        ));
    }
    let mut seen = HashSet::new();
    for (i, file) in files.iter().enumerate() {
        let name_field = || format!("files[{i}].name");
        language.check_file_name(&file.name).map_err(|e| {
            GatewayError::invalid_field(name_field(), file_name_message(&file.name, e))
        })?;
        if !seen.insert(file.name.as_str()) {
            return Err(GatewayError::invalid_field(
                name_field(),
                format!("duplicate file name {:?}", file.name),
            ));
        }
        if file.content.is_empty() {
            return Err(GatewayError::invalid_field(
                format!("files[{i}].content"),
                format!("file {:?} is empty", file.name),
            ));
        }
    }
    if !seen.contains(language.source_file) {
        return Err(GatewayError::invalid_field(
            "files",
            format!(
                "a {} job needs a file named {}",
                language.name, language.source_file
            ),
        ));
    }
    Ok(files)
}

fn file_name_message(name: &str, error: FileNameError) -> String {
    format!("file name {name:?} is not allowed: {error}")
}

fn check_args(args: &[String]) -> Result<(), GatewayError> {
    if args.len() > MAX_ARGS {
        return Err(GatewayError::invalid_field(
            "args",
            format!("at most {MAX_ARGS} arguments, got {}", args.len()),
        ));
    }
    for (i, arg) in args.iter().enumerate() {
        if arg.len() > MAX_ARG_BYTES {
            return Err(GatewayError::invalid_field(
                format!("args[{i}]"),
                format!("an argument may be at most {MAX_ARG_BYTES} bytes"),
            ));
        }
        if arg.contains('\0') {
            return Err(GatewayError::invalid_field(
                format!("args[{i}]"),
                "an argument may not contain a NUL character",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> SubmitRequest {
        serde_json::from_value(json).unwrap()
    }

    fn field_of(json: serde_json::Value) -> String {
        match request(json).validate().unwrap_err() {
            GatewayError::Invalid { field, .. } => field.expect("a field is blamed"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn source_is_shorthand_for_the_source_file() {
        let job = request(serde_json::json!({"language": "go", "source": "package main"}))
            .validate()
            .unwrap();
        assert_eq!(job.work.inputs().unwrap().files[0].name, "main.go");
        assert_eq!(job.limits, job.language.default_limits);
    }

    #[test]
    fn files_stdin_args_and_limits_are_kept() {
        let job = request(serde_json::json!({
            "language": "c",
            "files": [{"name": "main.c", "content": "int main;"}, {"name": "data.txt", "content": "1"}],
            "stdin": "in",
            "args": ["-v"],
            "limits": {"memory_mb": 64}
        }))
        .validate()
        .unwrap();
        let inputs = job.work.inputs().unwrap().clone();
        assert_eq!(inputs.files.len(), 2);
        assert_eq!(inputs.stdin, "in");
        assert_eq!(job.args, ["-v"]);
        assert_eq!(job.limits.memory_mb, 64);
        let id = JobId::new();
        let user = UserId::parse("alice").unwrap();
        let (record, msg) = job.into_job(id, &user, cola_wire::job::now());
        assert_eq!((msg.id, msg.language.as_str()), (id, "c"));
        assert_eq!(msg.work, Work::Inputs(inputs));
        assert_eq!((record.id, record.status), (id, cola_wire::Status::Queued));
        assert_eq!(
            (record.files[0].bytes, record.stdin_bytes, record.arg_count),
            (9, 2, 1)
        );
    }

    #[test]
    fn each_mistake_blames_its_field() {
        use serde_json::json;
        let file = |name: &str, content: &str| json!({"name": name, "content": content});
        let cases = [
            (json!({"source": "x"}), "language"),
            (json!({"language": "cobol", "source": "x"}), "language"),
            (json!({"language": "C", "source": "x"}), "language"),
            (json!({"language": "c"}), "files"),
            (json!({"language": "c", "source": ""}), "source"),
            (json!({"language": "c", "files": []}), "files"),
            (
                json!({"language": "c", "source": "x", "files": [file("main.c", "x")]}),
                "source",
            ),
            (
                json!({"language": "c", "files": [file("main.c", "")]}),
                "files[0].content",
            ),
            (
                json!({"language": "c", "files": [file("main.c", "x"), file("/etc/passwd", "x")]}),
                "files[1].name",
            ),
            (
                json!({"language": "c", "files": [file("../main.c", "x")]}),
                "files[0].name",
            ),
            (
                json!({"language": "c", "files": [file("main.py", "x")]}),
                "files[0].name",
            ),
            (
                json!({"language": "c", "files": [file("main.c", "x"), file("main.c", "y")]}),
                "files[1].name",
            ),
            (
                json!({"language": "c", "files": [file("util.c", "x")]}),
                "files",
            ),
            (
                json!({"language": "c", "source": "x", "limits": {"memory_mb": 999999}}),
                "limits.memory_mb",
            ),
            (
                json!({"language": "c", "source": "x", "limits": {"wall_time_ms": 0}}),
                "limits.wall_time_ms",
            ),
            (
                json!({"language": "c", "source": "x", "args": vec!["a"; MAX_ARGS + 1]}),
                "args",
            ),
            (
                json!({"language": "c", "source": "x", "args": ["ok", "x".repeat(MAX_ARG_BYTES + 1)]}),
                "args[1]",
            ),
            (
                json!({"language": "c", "source": "x", "args": ["a\u{0}b"]}),
                "args[0]",
            ),
        ];
        for (json, expected) in cases {
            assert_eq!(field_of(json.clone()), expected, "{json}");
        }
        let bisection = json!({"method": "bisection", "f": "x^3 + 4*x^2 - 10", "a": 1, "b": 2, "tol": 1e-10, "max_iter": 100});
        let numeric_cases = [
            (json!({"language": "numeric"}), "problem"),
            (
                json!({"language": "numeric", "problem": bisection, "source": "x"}),
                "source",
            ),
            (
                json!({"language": "numeric", "problem": bisection, "args": ["a"]}),
                "args",
            ),
            (
                json!({"language": "numeric", "problem": {"method": "bisection"}}),
                "problem.f",
            ),
            (
                json!({"language": "c", "source": "x", "problem": bisection}),
                "problem",
            ),
        ];
        for (json, expected) in numeric_cases {
            assert_eq!(field_of(json.clone()), expected, "{json}");
        }
        let job = request(json!({"language": "numeric", "problem": bisection, "stdin": ""}))
            .validate()
            .unwrap();
        assert!(job.language.is_numeric());
        let (record, message) = job.into_job(
            JobId::new(),
            &UserId::parse("alice").unwrap(),
            cola_wire::job::now(),
        );
        assert_eq!(message.work, Work::Problem(bisection.clone()));
        assert_eq!(record.problem, Some(bisection));

        let many: Vec<_> = (0..=MAX_FILES)
            .map(|i| file(&format!("f{i}.c"), "x"))
            .collect();
        assert_eq!(field_of(json!({"language": "c", "files": many})), "files");
    }
}
