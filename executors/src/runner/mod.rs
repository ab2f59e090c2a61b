//! What `cola executor` does with one job: inputs in, sandboxed compile and run, zip out, record
//! ended. [`run`] is all of `cola executor`, [`run_offline`] the same without NATS (the Docker
//! backend carries the outcome), and [`execute`] the sandboxed part alone.
//!
//! A job goes through, in this order:
//! - `intake`: its message read and decoded, its record checked, its inputs inline or fetched
//!   and checked again;
//! - `standby`: for a pre-started executor, the sandbox started before the job came;
//! - `steps`: its files written, compiled and run in its sandbox, judged and zipped, on a
//!   thread of its own;
//! - `report`: its zip stored and its record ended;
//! - `split` and `handoff`: where a backend runs the compile and run steps in containers of
//!   their own (Kubernetes), the compile container's side, and what it leaves for the run
//!   container's `steps`.
//!
//! They depend on each other in one direction only: `standby` → `steps`, `split` → `steps` →
//! `handoff`, `intake`, `report` (and the crate's `toolchain`). This module drives them, and
//! none of them uses it.

mod handoff;
mod intake;
mod report;
mod split;
mod standby;
mod steps;
#[cfg(test)]
mod test_support;

use std::path::{Path, PathBuf};

use cola_wire::{
    Inputs, JobMessage, LanguageDef, Reason, RunReport, Work, frame::ExecutorReport,
    input_object::inputs_of, language, nats::Topology,
};
use tracing::Instrument;

pub use self::{
    intake::{JobSource, read_job, read_job_bytes},
    split::Steps,
    steps::{Execution, RunGate},
};
use self::{
    intake::{check_record, check_runnable},
    report::{REPORT_RESERVE, Ran, end_record, failed_report, invalid_input, or_internal_error},
    split::check_split,
    standby::StandbyThread,
    steps::{JobRun, Sources, after, joined, spawn_execute},
};
pub use crate::sandbox::{SandboxConfig, SandboxKind};
use crate::{ExecutorError, sandbox::harden_container};

/// Everything `cola executor` needs to run one job and report to NATS.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    pub nats_url: String,
    /// The job message, as JSON.
    pub job: JobSource,
    /// A private directory the backend made for this job; the executor works inside it.
    pub job_dir: PathBuf,
    pub sandbox: SandboxConfig,
    /// Which of the job's steps this executor runs ([`Steps::Run`]: after [`compile_ahead`] in
    /// the job's compile container).
    pub steps: Steps,
}

/// Runs the job of `config.job` and ends its record with the outcome.
///
/// Returns the job's final report: the executor's, or — when the record was already terminal
/// (cancelled, timed out by the middleware) — the record's, which is left as it is. A job that
/// fails (including with `internal_error`) is still `Ok`: its outcome is recorded. `Err` means
/// the outcome could not be recorded. `None`: a pre-started executor ([`JobSource::Stdin`])
/// was given no job.
///
/// A program whose inputs are inline is prepared and compiled while the executor connects to
/// NATS (unless it connected before its job came) and reads the record; its run step, the first
/// to execute user code, waits for that check, so the code of a job that has already ended (or
/// has no record) never runs.
pub async fn run(config: ExecutorConfig) -> Result<Option<RunReport>, ExecutorError> {
    let ran = run_job_of(&config).await;
    remove_left_cgroups().await?;
    ran
}

/// [`run`], but for removing the job's cgroup once its outcome is recorded.
async fn run_job_of(config: &ExecutorConfig) -> Result<Option<RunReport>, ExecutorError> {
    check_split(config.steps, config.sandbox.kind)?;
    prepare(&config.sandbox)?;
    let (job, connected, standby) = match &config.job {
        JobSource::Stdin => {
            match standby::wait_for_job(&config.nats_url, &config.sandbox, &config.job_dir).await? {
                Some(arrival) => (arrival.job, Some(arrival.topology), arrival.standby),
                None => return Ok(None),
            }
        }
        JobSource::Subject(subject) => {
            let (job, topology) = intake::wait_on_subject(&config.nats_url, subject).await?;
            (job, Some(topology), None)
        }
        JobSource::Handoff => {
            // Connected while the compile container beside this one works.
            let (topology, job) = tokio::try_join!(
                intake::connect(&config.nats_url),
                handoff::wait_for_job(&config.job_dir)
            )?;
            (job, Some(topology), None)
        }
        source => (read_job(source)?, None, None),
    };
    let span = job_span(&job);
    run_job_message(job, connected, standby, config)
        .instrument(span)
        .await
        .map(Some)
}

/// [`run`] once the job message is read; `connected` when the executor connected before, and
/// `standby` when it started a sandbox before.
async fn run_job_message(
    job: JobMessage,
    connected: Option<Topology>,
    mut standby: Option<StandbyThread>,
    config: &ExecutorConfig,
) -> Result<RunReport, ExecutorError> {
    let report_until = tokio::time::Instant::now() + job.deadline().saturating_sub(REPORT_RESERVE);
    let early = match config.steps {
        Steps::All => EarlyExecution::start(&job, &mut standby, config),
        Steps::Compile | Steps::Run => None,
    };
    let (topology, ended) = match check_record(connected, &config.nats_url, &job).await {
        Ok(checked) => checked,
        Err(e) => {
            halt(early).await;
            return Err(e);
        }
    };
    if let Some(ended) = ended {
        halt(early).await;
        tracing::info!(
            status = ended.status.as_str(),
            "job already ended; not running it"
        );
        return Ok(report::report_of(&ended));
    }
    let (job_dir, sandbox) = (&config.job_dir, &config.sandbox);
    let ran = match early {
        Some(early) => early.finish().await,
        None if config.steps == Steps::Run => {
            run_job(
                &job,
                Ok(Sources::CompiledAhead),
                job_dir,
                sandbox,
                None,
                None,
            )
            .await
        }
        None => match inputs_of(&topology.outputs, &job).await {
            Ok(inputs) => {
                let sources = inputs.map(Sources::Inputs);
                run_job(&job, sources, job_dir, sandbox, standby, None).await
            }
            Err(e) => Ok((
                failed_report(&job.limits, Reason::InternalError, e.to_string()),
                None,
            )),
        },
    };
    let ran = or_internal_error(&job.limits, ran);
    end_record(&topology, &job, ran, report_until).await
}

/// An execution started before the record was checked, and the sender that lets its run step
/// start.
struct EarlyExecution {
    go: tokio::sync::oneshot::Sender<()>,
    execution: tokio::task::JoinHandle<Result<Execution, ExecutorError>>,
}

impl EarlyExecution {
    /// A program whose inputs are inline, started at once (in `standby` if there is one), its run
    /// step waiting for [`EarlyExecution::finish`]; `None` for any other job.
    fn start(
        job: &JobMessage,
        standby: &mut Option<StandbyThread>,
        config: &ExecutorConfig,
    ) -> Option<Self> {
        let lang = language(&job.language).filter(|lang| !lang.is_numeric())?;
        let inputs = job.work.inputs()?;
        let (go, checked) = tokio::sync::oneshot::channel();
        let gate = Some(after(checked));
        let run = JobRun::new(lang, job, inputs.clone(), gate);
        let execution = spawn_in(standby.take(), run, &config.job_dir, &config.sandbox);
        Some(Self { go, execution })
    }

    /// Lets the run step start, and waits for the outcome.
    async fn finish(self) -> Result<Ran, ExecutorError> {
        // (A run step that never comes, after a failed compilation or an error, does not
        // receive this.)
        let _ = self.go.send(());
        let execution = joined(self.execution).await?;
        Ok((execution.report, Some(execution.zip)))
    }
}

/// Stops an execution started early before its run step (its user code never runs), and waits
/// until it has cleaned up after itself.
async fn halt(early: Option<EarlyExecution>) {
    if let Some(EarlyExecution { go, execution }) = early {
        drop(go);
        let _ = execution.await;
    }
}

/// `cola executor --step compile`: the job's files written and compiled for the run container
/// after this one (Kubernetes; see `split`). A job that cannot run is handed on as refused, for
/// the run container to report; `Err` only when nothing could be handed on.
pub async fn compile_ahead(config: ExecutorConfig) -> Result<(), ExecutorError> {
    check_split(Steps::Compile, config.sandbox.kind)?;
    prepare(&config.sandbox)?;
    let (mut job, connected) = match &config.job {
        JobSource::Subject(subject) => {
            let (job, topology) = intake::wait_on_subject(&config.nats_url, subject).await?;
            (job, Some(topology))
        }
        source => (read_job(source)?, None),
    };
    let span = job_span(&job);
    async {
        let inputs = match job.work {
            Work::Inputs(_) => intake::inline_inputs(&mut job),
            _ => {
                let topology = match connected {
                    Some(topology) => topology,
                    None => intake::connect(&config.nats_url).await?,
                };
                inputs_of(&topology.outputs, &job).await?
            }
        };
        let (job_dir, sandbox) = (config.job_dir, config.sandbox);
        tokio::task::spawn_blocking(move || split::compile_ahead(&job, inputs, &job_dir, &sandbox))
            .await?
    }
    .instrument(span)
    .await
}

/// Runs the job message `message` (JSON, every input inline) without NATS, for a backend that
/// carries the outcome itself (`cola executor --stdio`, Docker), its run step once `before_run`
/// (if any) lets it. A job that fails, even internally, is still `Ok`: its report says why.
pub async fn run_offline(
    message: Vec<u8>,
    job_dir: &Path,
    sandbox: &SandboxConfig,
    before_run: Option<RunGate>,
) -> Result<ExecutorReport, ExecutorError> {
    prepare(sandbox)?;
    // Memory in a container is the job's: the message goes once read, its inputs are moved.
    let mut job = intake::decode(&message)?;
    drop(message);
    let span = job_span(&job);
    async {
        let inputs = intake::inline_inputs(&mut job);
        let sources = inputs.map(Sources::Inputs);
        let ran = run_job(&job, sources, job_dir, sandbox, None, before_run).await;
        let (report, zip) = or_internal_error(&job.limits, ran);
        Ok(ExecutorReport { report, zip })
    }
    .instrument(span)
    .await
}

/// The span of everything done for `job`.
fn job_span(job: &JobMessage) -> tracing::Span {
    let request_id = job.request_id.as_ref().map(cola_wire::RequestId::as_str);
    tracing::info_span!(
        "job",
        job_id = %job.id,
        user = %job.user,
        language = %job.language,
        request_id,
    )
}

/// Checks the sandbox settings, and hardens an executor whose sandbox is its container.
fn prepare(sandbox: &SandboxConfig) -> Result<(), ExecutorError> {
    sandbox.validate()?;
    if sandbox.kind == SandboxKind::Container {
        harden_container()?;
    }
    Ok(())
}

/// Runs `job` from `sources` (or refuses it with `invalid_input` and the message of `sources`),
/// its run step once `gate` (if any) lets it: its report, and its zip when it ran.
async fn run_job(
    job: &JobMessage,
    sources: Result<Sources, String>,
    job_dir: &Path,
    sandbox: &SandboxConfig,
    standby: Option<StandbyThread>,
    gate: Option<RunGate>,
) -> Result<Ran, ExecutorError> {
    let refuse = |message: String| Ok((invalid_input(&job.limits, message), None));
    let Some(lang) = language(&job.language) else {
        return refuse(format!("unknown language {}", job.language));
    };
    if let Err(message) = check_runnable(lang) {
        return refuse(message);
    }
    let sources = match sources {
        Ok(sources) => sources,
        Err(message) => return refuse(message),
    };
    let run = JobRun::of(lang, job, sources, gate);
    let execution = joined(spawn_in(standby, run, job_dir, sandbox)).await?;
    Ok((execution.report, Some(execution.zip)))
}

/// [`spawn_execute`], in `standby`'s sandbox when there is one.
fn spawn_in(
    standby: Option<StandbyThread>,
    run: JobRun,
    job_dir: &Path,
    sandbox: &SandboxConfig,
) -> tokio::task::JoinHandle<Result<Execution, ExecutorError>> {
    match standby {
        Some(standby) => standby.execute(run),
        None => spawn_execute(run, job_dir, sandbox),
    }
}

/// Runs one job in the sandbox — file checks, compile, run — and builds its zip. No NATS.
pub async fn execute(
    lang: &LanguageDef,
    job: &JobMessage,
    inputs: &Inputs,
    job_dir: &Path,
    sandbox: &SandboxConfig,
) -> Result<Execution, ExecutorError> {
    let run = JobRun::new(lang, job, inputs.clone(), None);
    let execution = joined(spawn_execute(run, job_dir, sandbox)).await;
    remove_left_cgroups().await?;
    execution
}

/// Removes the cgroups of the sandboxes this executor ran, once their jobs are reported (see
/// [`crate::sandbox::cgroup::remove_later`]).
async fn remove_left_cgroups() -> Result<(), ExecutorError> {
    Ok(tokio::task::spawn_blocking(crate::sandbox::cgroup::remove_left).await?)
}

#[cfg(test)]
mod tests {
    use cola_wire::{InputFile, Status, languages};

    use super::*;
    use crate::runner::test_support::{c_inputs, c_job, test_config};

    #[tokio::test]
    async fn a_numeric_job_is_refused_by_the_executor() {
        // The middleware solves numeric jobs in-process; an executor never does.
        let numeric = languages().iter().find(|l| l.is_numeric()).unwrap();
        let job = serde_json::json!({
            "id": cola_wire::JobId::new(),
            "user": "alice",
            "language": numeric.name,
            "limits": numeric.default_limits,
            "created_at": cola_wire::job::now(),
            "problem": {"method": "bisection", "f": "x^2 - 2", "a": 0, "b": 2, "tol": 1e-10, "max_iter": 200},
        });
        let dir = tempfile::tempdir().unwrap();
        let outcome = run_offline(
            serde_json::to_vec(&job).unwrap(),
            dir.path(),
            &SandboxConfig::default(),
            None,
        )
        .await
        .unwrap();
        assert_eq!(
            (outcome.report.status, outcome.report.reason),
            (Status::Failed, Some(Reason::InvalidInput)),
            "{:?}",
            outcome.report
        );
        assert!(
            outcome
                .report
                .message
                .as_deref()
                .is_some_and(|m| m.contains("not in an executor")),
            "{:?}",
            outcome.report
        );
        assert!(outcome.zip.is_none());
    }

    #[tokio::test]
    async fn a_file_name_a_compiler_would_take_for_an_option_never_reaches_it() {
        // `gcc ... main.c -o.c` would write the binary to `.c` and the job would fail at run.
        let c = &languages()[0];
        let mut inputs =
            c_inputs("#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n");
        inputs.files.push(InputFile {
            name: "-o.c".into(),
            content: "int helper(void) { return 1; }\n".into(),
        });
        let dir = tempfile::tempdir().unwrap();
        let done = execute(c, &c_job(), &inputs, dir.path(), &test_config())
            .await
            .unwrap();
        assert_eq!(
            (done.report.status, done.report.reason),
            (Status::Failed, Some(Reason::InvalidInput)),
            "{:?}",
            done.report
        );
        assert!(
            done.report
                .message
                .as_deref()
                .is_some_and(|m| m.contains("-o.c")),
            "{:?}",
            done.report
        );
    }
}
