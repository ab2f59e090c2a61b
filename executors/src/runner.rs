//! What `cola executor` does with one job: inputs in, sandboxed compile and run, zip out, record
//! ended.

use std::{
    collections::{BTreeMap, HashSet},
    ffi::OsString,
    fs::{File, OpenOptions},
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use async_nats::jetstream;
use cola_wire::{
    InputFile, Inputs, JobMessage, JobRecord, LanguageDef, Limits, PREVIEW_BYTES, Reason,
    RunReport, Status, Timings,
    frame::Outcome,
    job::preview,
    language, languages, names,
    nats::{InputError, JobStore, NatsError, Reported, Topology, fetch_inputs, report_outcome},
};
use tracing::Instrument;

pub use crate::sandbox::{SandboxConfig, SandboxKind};
use crate::{
    error::{ExecutorError, IoContext},
    go_cache,
    outputs::{self, StepUsage, Usage, ZipContents},
    sandbox::{
        BASE_ENV, Output, ReadOnlyBind, Sandbox, SandboxPlan, SandboxUser, Step, StepOutcome,
        Verdict, harden_container, init::StepRlimits, system, verdict,
    },
    workspace::{Log, Workspace},
};

/// The largest file a compiler may write (binaries, build cache entries).
const COMPILE_MAX_FILE_BYTES: u64 = 256 << 20;
const NO_INPUTS: &str = "the job has neither inputs nor an input object";
/// Time kept at the end of a job's deadline (which the middleware enforces) for a last attempt
/// to store the zip and for ending the record without it when that fails: retries of the
/// upload stop this long before the deadline.
const REPORT_RESERVE: std::time::Duration = std::time::Duration::from_secs(10);
/// The largest job message `cola executor` reads (inline inputs of up to 64 MiB, escaped).
const MAX_JOB_MESSAGE_BYTES: u64 = 256 << 20;

/// Where the job message comes from.
#[derive(Debug, Clone)]
pub enum JobSource {
    /// A file the backend wrote (the process backend).
    File(PathBuf),
    /// The message itself, as read from standard input or an environment variable.
    Json(Vec<u8>),
    /// Standard input, read only once the executor is connected to NATS: a pre-started executor
    /// (the process backend's warm pool) waits there for its one job. Closed without a message,
    /// it means there is no job: the executor ends without running anything.
    Stdin,
}

/// Everything `cola executor` needs to run one job and report to NATS.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    pub nats_url: String,
    /// The job message, as JSON.
    pub job: JobSource,
    /// A private directory the backend made for this job; the executor works inside it.
    pub job_dir: PathBuf,
    pub sandbox: SandboxConfig,
}

/// What running a job produced.
#[derive(Debug, Clone)]
pub struct Execution {
    pub report: RunReport,
    pub zip: Vec<u8>,
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
    prepare(&config.sandbox)?;
    let (job, connected, standby) = match &config.job {
        JobSource::Stdin => {
            // The sandbox starts while the executor connects and waits: the job finds it ready.
            let standby = (config.sandbox.kind == SandboxKind::Bubblewrap)
                .then(|| StandbyThread::spawn(&config.sandbox, &config.job_dir))
                .flatten();
            let read = async {
                let topology = connect(&config.nats_url).await?;
                let bytes = tokio::task::spawn_blocking(|| read_job_bytes(std::io::stdin().lock()))
                    .await
                    .map_err(|e| ExecutorError::Worker(e.to_string()))??;
                Ok::<_, ExecutorError>((topology, bytes))
            };
            let (topology, bytes) = match read.await {
                Ok((topology, bytes)) if !bytes.is_empty() => (topology, bytes),
                read => {
                    if let Some(standby) = standby {
                        tokio::task::spawn_blocking(move || drop(standby))
                            .await
                            .map_err(|e| ExecutorError::Worker(e.to_string()))?;
                    }
                    return read.map(|_| None);
                }
            };
            let job = serde_json::from_slice(&bytes).map_err(ExecutorError::JobMessage)?;
            (job, Some(topology), standby)
        }
        source => (read_job(source)?, None, None),
    };
    run_job_message(job, connected, standby, config)
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
    let span =
        tracing::info_span!("job", job_id = %job.id, user = %job.user, language = %job.language);
    async {
        let key = names::job_key(&job.user, &job.id);
        let early = match (language(&job.language), &job.inputs) {
            (Some(lang), Some(inputs)) if !lang.is_numeric() => {
                let (go, checked) = tokio::sync::oneshot::channel();
                let gate = Some(after(checked));
                let execution = match standby.take() {
                    Some(standby) => standby.execute(lang, &job, inputs, gate),
                    None => {
                        spawn_execute(lang, &job, inputs, &config.job_dir, &config.sandbox, gate)
                    }
                };
                Some((go, execution))
            }
            _ => None,
        };
        let checked = async {
            let topology = match connected {
                Some(topology) => topology,
                None => connect(&config.nats_url).await?,
            };
            let ended = ended_record(&topology.jobs, &key).await?;
            Ok::<_, ExecutorError>((topology, ended))
        };
        let (topology, ended) = match checked.await {
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
            return Ok(report_of(&ended));
        }
        let (report, zip) = match early {
            Some((go, execution)) => {
                // The run step may start. (One that never comes, after a failed compilation or
                // an error, does not receive this.)
                let _ = go.send(());
                match joined(execution).await {
                    Ok(execution) => (execution.report, Some(execution.zip)),
                    Err(e) => {
                        tracing::error!(error = %e, "job failed in the executor");
                        (
                            failed_report(&job.limits, Reason::InternalError, e.to_string()),
                            None,
                        )
                    }
                }
            }
            None => {
                let inputs = match inline_or_fetched(&topology, &job).await {
                    Ok(inputs) => inputs,
                    Err(e) => {
                        let report =
                            failed_report(&job.limits, Reason::InternalError, e.to_string());
                        return end_record(&topology, &job, report, None, report_until).await;
                    }
                };
                match run_job(
                    &job,
                    inputs,
                    &config.job_dir,
                    &config.sandbox,
                    standby,
                    None,
                )
                .await
                {
                    Ok(done) => done,
                    Err(e) => {
                        tracing::error!(error = %e, "job failed in the executor");
                        (
                            failed_report(&job.limits, Reason::InternalError, e.to_string()),
                            None,
                        )
                    }
                }
            }
        };
        end_record(&topology, &job, report, zip, report_until).await
    }
    .instrument(span)
    .await
}

/// An execution started before the record was checked, and the sender that lets its run step
/// start.
type EarlyExecution = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<Execution, ExecutorError>>,
);

/// Stops an execution started early before its run step (its user code never runs), and waits
/// until it has cleaned up after itself.
async fn halt(early: Option<EarlyExecution>) {
    if let Some((go, execution)) = early {
        drop(go);
        let _ = execution.await;
    }
}

/// Runs the job message `message` (JSON, every input inline) without NATS, for a backend that
/// carries the outcome itself (`cola executor --stdio`, Docker), its run step once `before_run`
/// (if any) lets it. A job that fails, even internally, is still `Ok`: its report says why.
pub async fn run_offline(
    message: Vec<u8>,
    job_dir: &Path,
    sandbox: &SandboxConfig,
    before_run: Option<RunGate>,
) -> Result<Outcome, ExecutorError> {
    prepare(sandbox)?;
    // Memory in a container is the job's: the message goes once read, its inputs are moved.
    let mut job: JobMessage =
        serde_json::from_slice(&message).map_err(ExecutorError::JobMessage)?;
    drop(message);
    let span =
        tracing::info_span!("job", job_id = %job.id, user = %job.user, language = %job.language);
    async {
        let inputs = match (job.inputs.take(), &job.input_object) {
            (Some(inputs), _) => Ok(inputs),
            (None, Some(_)) => Err(
                "the job's inputs are in the object store, which this executor cannot reach"
                    .to_owned(),
            ),
            (None, None) => Err(NO_INPUTS.to_owned()),
        };
        let (report, zip) = match run_job(&job, inputs, job_dir, sandbox, None, before_run).await {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "job failed in the executor");
                (
                    failed_report(&job.limits, Reason::InternalError, e.to_string()),
                    None,
                )
            }
        };
        Ok(Outcome { report, zip })
    }
    .instrument(span)
    .await
}

/// Checks the sandbox settings, and hardens an executor whose sandbox is its container.
fn prepare(sandbox: &SandboxConfig) -> Result<(), ExecutorError> {
    sandbox.validate()?;
    if sandbox.kind == SandboxKind::Container {
        harden_container()?;
    }
    Ok(())
}

/// Reads a job message from `source`.
pub fn read_job(source: &JobSource) -> Result<JobMessage, ExecutorError> {
    match source {
        JobSource::File(path) => {
            let bytes = std::fs::File::open(path)
                .and_then(|f| {
                    let mut bytes = Vec::new();
                    f.take(MAX_JOB_MESSAGE_BYTES).read_to_end(&mut bytes)?;
                    Ok(bytes)
                })
                .context(|| format!("reading job file {}", path.display()))?;
            serde_json::from_slice(&bytes).map_err(|source| ExecutorError::JobFile {
                path: path.to_owned(),
                source,
            })
        }
        JobSource::Json(bytes) => serde_json::from_slice(bytes).map_err(ExecutorError::JobMessage),
        JobSource::Stdin => serde_json::from_slice(&read_job_bytes(std::io::stdin().lock())?)
            .map_err(ExecutorError::JobMessage),
    }
}

/// Reads a job message (at most 256 MiB) from `reader`, e.g. standard input.
pub fn read_job_bytes(reader: impl Read) -> Result<Vec<u8>, ExecutorError> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_JOB_MESSAGE_BYTES + 1)
        .read_to_end(&mut bytes)
        .context(|| "reading the job message")?;
    if bytes.len() as u64 > MAX_JOB_MESSAGE_BYTES {
        return Err(ExecutorError::Config(format!(
            "the job message is larger than {MAX_JOB_MESSAGE_BYTES} bytes"
        )));
    }
    Ok(bytes)
}

/// Connects to NATS and opens the buckets an executor uses, all at once (one round trip rather
/// than one each).
async fn connect(url: &str) -> Result<Topology, ExecutorError> {
    let client = async_nats::connect(cola_wire::nats::server_urls(url))
        .await
        .map_err(|source| ExecutorError::Connect {
            url: url.to_owned(),
            source,
        })?;
    Ok(Topology::open_buckets(&jetstream::new(client)).await?)
}

/// The record under `key` when it is already terminal; an error if there is none.
async fn ended_record(jobs: &JobStore, key: &str) -> Result<Option<JobRecord>, ExecutorError> {
    match jobs.get(key).await? {
        None => Err(ExecutorError::NoRecord(key.to_owned())),
        Some((record, _)) => Ok(record.status.is_terminal().then_some(record)),
    }
}

/// The job's inputs: inline, or from its input object; `Err` inside when the job has none
/// usable (its fault), `Err` outside when NATS failed.
async fn inline_or_fetched(
    topology: &Topology,
    job: &JobMessage,
) -> Result<Result<Inputs, String>, NatsError> {
    Ok(match (&job.inputs, &job.input_object) {
        (Some(inputs), _) => Ok(inputs.clone()),
        (None, Some(object)) => match fetch_inputs(&topology.outputs, object).await {
            Ok(inputs) => Ok(inputs),
            Err(InputError::Invalid(e)) => Err(e.to_string()),
            Err(InputError::Nats(e)) => return Err(e),
        },
        (None, None) => Err(NO_INPUTS.to_owned()),
    })
}

/// Runs `job` on `inputs` (or refuses it with `invalid_input` and the message of `inputs`), its
/// run step once `gate` (if any) lets it: its report, and its zip when it ran.
async fn run_job(
    job: &JobMessage,
    inputs: Result<Inputs, String>,
    job_dir: &Path,
    sandbox: &SandboxConfig,
    standby: Option<StandbyThread>,
    gate: Option<RunGate>,
) -> Result<(RunReport, Option<Vec<u8>>), ExecutorError> {
    let refuse = |message: String| Ok((invalid_input(&job.limits, message), None));
    let Some(lang) = language(&job.language) else {
        return refuse(format!("unknown language {}", job.language));
    };
    if let Err(message) = check_runnable(lang) {
        return refuse(message);
    }
    let inputs = match inputs {
        Ok(inputs) => inputs,
        Err(message) => return refuse(message),
    };
    let execution = match standby {
        Some(standby) => joined(standby.execute(lang, job, &inputs, gate)).await?,
        None => joined(spawn_execute(lang, job, &inputs, job_dir, sandbox, gate)).await?,
    };
    Ok((execution.report, Some(execution.zip)))
}

/// Stores the zip and ends the record with `report` if it is still running (see
/// [`report_outcome`]), retrying while NATS does not answer until `until`. A zip that cannot be
/// stored (the object store full, or NATS unreachable until then) ends the job
/// `internal_error` without it, in the [`REPORT_RESERVE`] kept for that. A record that ended
/// meanwhile stays as it is; its outcome is returned.
async fn end_record(
    topology: &Topology,
    job: &JobMessage,
    report: RunReport,
    zip: Option<Vec<u8>>,
    until: tokio::time::Instant,
) -> Result<RunReport, ExecutorError> {
    let key = names::job_key(&job.user, &job.id);
    let reported = match report_outcome(
        topology,
        &job.user,
        &job.id,
        report.clone(),
        zip.as_deref(),
        until,
    )
    .await
    {
        Err(e) if zip.is_some() => {
            // The zip could not be stored: the job still ends, without it.
            tracing::error!(error = %e, "cannot store the output zip");
            let message = format!("the output zip could not be stored: {e}");
            let report = failed_report(&job.limits, Reason::InternalError, message);
            let until = until.max(tokio::time::Instant::now()) + REPORT_RESERVE / 2;
            report_outcome(topology, &job.user, &job.id, report, None, until).await?
        }
        reported => reported?,
    };
    match reported {
        Reported::Recorded(report) => Ok(report),
        Reported::EndedElsewhere(record) => {
            tracing::info!(
                status = record.status.as_str(),
                "job ended elsewhere; its record stays"
            );
            Ok(report_of(&record))
        }
        Reported::NotRunning(record) => Err(ExecutorError::NotRunning {
            key,
            status: record.status.as_str(),
        }),
        Reported::Missing => Err(ExecutorError::NoRecord(key)),
    }
}

/// A record's outcome as a report.
fn report_of(record: &JobRecord) -> RunReport {
    RunReport {
        status: record.status,
        reason: record.reason,
        exit_code: record.exit_code,
        signal: record.signal,
        timings_ms: record.timings_ms,
        limits: record.limits,
        message: record.message.clone(),
        stdout: record.stdout.clone(),
        stderr: record.stderr.clone(),
        compile_output: record.compile_output.clone(),
        output_object: record.output_object.clone(),
    }
}

fn failed_report(limits: &Limits, reason: Reason, message: String) -> RunReport {
    RunReport {
        status: Status::Failed,
        reason: Some(reason),
        exit_code: None,
        signal: None,
        timings_ms: Timings::default(),
        limits: *limits,
        message: Some(message),
        stdout: String::new(),
        stderr: String::new(),
        compile_output: String::new(),
        output_object: None,
    }
}

fn invalid_input(limits: &Limits, message: String) -> RunReport {
    failed_report(limits, Reason::InvalidInput, message)
}

/// Runs one job in the sandbox — file checks, compile, run — and builds its zip. No NATS.
pub async fn execute(
    lang: &LanguageDef,
    job: &JobMessage,
    inputs: &Inputs,
    job_dir: &Path,
    sandbox: &SandboxConfig,
) -> Result<Execution, ExecutorError> {
    let execution = joined(spawn_execute(lang, job, inputs, job_dir, sandbox, None)).await;
    remove_left_cgroups().await?;
    execution
}

/// Removes the cgroups of the sandboxes this executor ran, once their jobs are reported (see
/// [`crate::sandbox::cgroup::remove_later`]).
async fn remove_left_cgroups() -> Result<(), ExecutorError> {
    tokio::task::spawn_blocking(crate::sandbox::cgroup::remove_left)
        .await
        .map_err(|e| ExecutorError::Worker(e.to_string()))
}

/// What an execution task returned; a worker that failed is an [`ExecutorError::Worker`].
async fn joined(
    task: tokio::task::JoinHandle<Result<Execution, ExecutorError>>,
) -> Result<Execution, ExecutorError> {
    task.await
        .map_err(|e| ExecutorError::Worker(e.to_string()))?
}

/// What must happen before a job's run step starts, and its user code with it; an error means
/// the step never runs. [`run`]'s gate is the record check ([`after`]); the Docker backend's,
/// the container's memory limit lowered to the run step's own.
pub type RunGate = Box<dyn FnOnce() -> Result<(), ExecutorError> + Send>;

/// A gate that opens once `signal` gets a value; if its sender is dropped instead, the step is
/// not run.
fn after(signal: tokio::sync::oneshot::Receiver<()>) -> RunGate {
    Box::new(move || signal.blocking_recv().map_err(|_| ExecutorError::Halted))
}

/// [`execute`] on a thread of its own, whose run step waits for `gate` if there is one. A
/// thread per job, never a pooled one: the job's disk allowance is mounted for that thread
/// only (see [`crate::disk`]).
fn spawn_execute(
    lang: &LanguageDef,
    job: &JobMessage,
    inputs: &Inputs,
    job_dir: &Path,
    sandbox: &SandboxConfig,
    gate: Option<RunGate>,
) -> tokio::task::JoinHandle<Result<Execution, ExecutorError>> {
    let (lang, job, inputs) = (*lang, job.clone(), inputs.clone());
    let (job_dir, sandbox) = (job_dir.to_owned(), sandbox.clone());
    let (done, executed) = tokio::sync::oneshot::channel();
    // Blocking work (processes, files): off the async threads. A panic in there still drops
    // the workspace, which removes the job's directories.
    let thread = std::thread::Builder::new()
        .name("job".into())
        .spawn(move || {
            let _ = done.send(execute_blocking(
                &lang, &job, &inputs, &job_dir, &sandbox, gate, None,
            ));
        });
    tokio::spawn(async move {
        thread.map_err(|e| ExecutorError::Worker(format!("cannot start the job's thread: {e}")))?;
        executed.await.unwrap_or_else(|_| {
            Err(ExecutorError::Worker(
                "the job's thread ended without an outcome".into(),
            ))
        })
    })
}

/// Runs `job` in `standby` if given (and it can serve the job), or in a sandbox of its own.
fn execute_blocking(
    lang: &LanguageDef,
    job: &JobMessage,
    inputs: &Inputs,
    job_dir: &Path,
    config: &SandboxConfig,
    gate: Option<RunGate>,
    standby: Option<Standby>,
) -> Result<Execution, ExecutorError> {
    config.validate()?;
    if let Err(message) = check_runnable(lang).and_then(|()| check_files(lang, &inputs.files)) {
        let report = invalid_input(&job.limits, message);
        let zip = outputs::build_zip(&ZipContents {
            report: &report,
            usage: Usage::default(),
            logs: &[],
            out_dir: None,
            max_bytes: config.max_zip_bytes,
        })?;
        return Ok(Execution { report, zip });
    }
    // Dropped in the reverse order: the sandbox's processes are gone before the workspace is,
    // and the uid stays reserved until the workspace is gone.
    let (user, workspace, standing) = match standby {
        Some(Standby {
            sandbox,
            workspace,
            user,
        }) => (user, workspace, Some(sandbox)),
        None => {
            let user = SandboxUser::for_job(&job.id, config.uid_base, config.uid_count)?;
            let workspace = Workspace::create(
                job_dir,
                user.host_ids(),
                disk_allowance(config, &job.limits),
            )?;
            (user, workspace, None)
        }
    };
    if standing.is_some()
        && let Some(bytes) = disk_allowance(config, &job.limits)
    {
        workspace.resize_allowance(bytes)?;
    }
    workspace.write_files(&inputs.files)?;
    let stdin = workspace.write_stdin(&inputs.stdin)?;
    let steps = JobSteps {
        lang,
        job,
        files: &inputs.files,
        workspace: &workspace,
        config,
    };
    let (compile, read_only) = steps.compile_step().unzip();
    let run = steps.run_step(stdin);
    let plan = SandboxPlan::for_steps(
        &run,
        compile.as_slice(),
        read_only.flatten().into_iter().collect(),
        system::dirs_of(lang),
    );
    let sandbox = match standing {
        Some(sandbox) if sandbox.serves(&plan) => sandbox,
        standing => {
            if standing.is_some() {
                tracing::info!(
                    "the pre-started sandbox does not fit the job's limits; starting one"
                );
            }
            // (A pre-started sandbox that does not fit is stopped here, before the new one.)
            drop(standing);
            Sandbox::start(
                config,
                user.host_ids(),
                workspace.writable(),
                &plan,
                &workspace.log(Log::Sandbox),
            )?
        }
    };
    let (report, usage) = steps.compile_and_run(&sandbox, compile, run, gate)?;
    drop(sandbox);
    let zip = steps.package(&report, usage)?;
    Ok(Execution { report, zip })
}

/// A sandbox started before its job, with its workspace and its uid (a pre-started executor's:
/// see [`StandbyThread`]). Dropped in field order: the sandbox, its workspace, then its uid.
#[derive(Debug)]
struct Standby {
    sandbox: Sandbox,
    workspace: Workspace,
    user: SandboxUser,
}

impl Standby {
    /// A sandbox in `job_dir` for a job with the default limits of any language: the largest
    /// of their limits as its ceiling, their default memory limit for its `/tmp`, and the shared
    /// Go build cache bound whatever the language. A job with other limits gets a sandbox of
    /// its own instead (see [`Sandbox::serves`]).
    fn start(config: &SandboxConfig, job_dir: &Path) -> Result<Self, ExecutorError> {
        let programs = || languages().iter().filter(|l| !l.is_numeric());
        let default = programs()
            .map(|l| l.default_limits)
            .max_by_key(|limits| limits.memory_mb)
            .ok_or_else(|| ExecutorError::Config("the language table has no programs".into()))?;
        let others = programs().flat_map(|l| {
            [
                StepRlimits::for_step(&l.compile_limits, COMPILE_MAX_FILE_BYTES),
                StepRlimits::for_step(&l.max_limits, run_file_bytes(&l.max_limits)),
            ]
        });
        let go_cache = go_cache::bind(config.go_cache.as_deref(), config.kind.binds_directories());
        let plan = SandboxPlan::new(
            default.memory_mb,
            StepRlimits::for_step(&default, run_file_bytes(&default)),
            others,
            go_cache.into_iter().collect(),
            system::dirs_for(programs()),
        );
        let user =
            SandboxUser::for_job(&cola_wire::JobId::new(), config.uid_base, config.uid_count)?;
        let workspace =
            Workspace::create(job_dir, user.host_ids(), disk_allowance(config, &default))?;
        let sandbox = Sandbox::start(
            config,
            user.host_ids(),
            workspace.writable(),
            &plan,
            &workspace.log(Log::Sandbox),
        )?;
        Ok(Self {
            sandbox,
            workspace,
            user,
        })
    }
}

/// A thread that starts a [`Standby`] sandbox at once, then runs the job it is given in it (or,
/// when the standby cannot serve it, in a sandbox of the job's own). bubblewrap dies with the
/// thread that started it (`PR_SET_PDEATHSIG`), so this thread lives until its job is done.
/// Dropped without a job, it stops the sandbox and removes its workspace before it returns.
#[derive(Debug)]
struct StandbyThread {
    work: Option<std::sync::mpsc::Sender<StandbyWork>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A job for a [`StandbyThread`], and where its execution goes.
struct StandbyWork {
    lang: LanguageDef,
    job: JobMessage,
    inputs: Inputs,
    gate: Option<RunGate>,
    done: tokio::sync::oneshot::Sender<Result<Execution, ExecutorError>>,
}

impl StandbyThread {
    /// Starts the thread; `None` (and a warning) when no thread can be started.
    fn spawn(config: &SandboxConfig, job_dir: &Path) -> Option<Self> {
        let (work, jobs) = std::sync::mpsc::channel::<StandbyWork>();
        let (config, job_dir) = (config.clone(), job_dir.to_owned());
        let thread = std::thread::Builder::new()
            .name("standby-sandbox".into())
            .spawn(move || {
                let standby = Standby::start(&config, &job_dir)
                    .inspect_err(|e| {
                        tracing::warn!(error = %e, "cannot pre-start a sandbox; the job will start its own")
                    })
                    .ok();
                let Ok(work) = jobs.recv() else {
                    return;
                };
                let executed = execute_blocking(
                    &work.lang,
                    &work.job,
                    &work.inputs,
                    &job_dir,
                    &config,
                    work.gate,
                    standby,
                );
                let _ = work.done.send(executed);
            });
        match thread {
            Ok(thread) => Some(Self {
                work: Some(work),
                thread: Some(thread),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a thread to pre-start a sandbox");
                None
            }
        }
    }

    /// [`spawn_execute`], on this thread.
    fn execute(
        mut self,
        lang: &LanguageDef,
        job: &JobMessage,
        inputs: &Inputs,
        gate: Option<RunGate>,
    ) -> tokio::task::JoinHandle<Result<Execution, ExecutorError>> {
        let (done, executed) = tokio::sync::oneshot::channel();
        if let Some(work) = self.work.take() {
            let _ = work.send(StandbyWork {
                lang: *lang,
                job: job.clone(),
                inputs: inputs.clone(),
                gate,
                done,
            });
        }
        // The thread ends by itself once the job is done: nobody waits for it here.
        self.thread.take();
        tokio::spawn(async move {
            executed.await.unwrap_or_else(|_| {
                Err(ExecutorError::Worker(
                    "the sandbox thread ended without an outcome".into(),
                ))
            })
        })
    }
}

impl Drop for StandbyThread {
    /// Without a job: stops the standby sandbox, waiting until it and its workspace are gone.
    fn drop(&mut self) {
        self.work.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The disk allowance of a job with `limits` (see [`crate::disk`]): in bubblewrap, when the
/// executor runs as root (which may mount); a container has its own size-capped `/work`.
fn disk_allowance(config: &SandboxConfig, limits: &Limits) -> Option<u64> {
    (config.kind == SandboxKind::Bubblewrap && nix::unistd::geteuid().is_root())
        .then_some(limits.disk_mb << 20)
}

/// The largest file a program with `limits` may write: its output limit.
fn run_file_bytes(limits: &Limits) -> u64 {
    limits.output_kb * 1024
}

/// Only programs run in a sandbox: numeric jobs are solved by the middleware, in-process.
fn check_runnable(lang: &LanguageDef) -> Result<(), String> {
    if lang.is_numeric() {
        return Err(format!(
            "{} jobs are solved in the middleware by cola's built-in runtime, not in an executor",
            lang.name
        ));
    }
    Ok(())
}

/// Every file name is safe and allowed for the language, and none comes twice.
fn check_files(lang: &LanguageDef, files: &[InputFile]) -> Result<(), String> {
    if files.is_empty() {
        return Err("the job has no files".into());
    }
    let mut seen = HashSet::new();
    for file in files {
        lang.check_file_name(&file.name)
            .map_err(|e| format!("file {:?}: {e}", file.name))?;
        if !seen.insert(file.name.as_str()) {
            return Err(format!("file {:?} is given twice", file.name));
        }
    }
    Ok(())
}

/// One job's steps in its sandbox.
struct JobSteps<'a> {
    lang: &'a LanguageDef,
    job: &'a JobMessage,
    files: &'a [InputFile],
    workspace: &'a Workspace,
    config: &'a SandboxConfig,
}

impl JobSteps<'_> {
    /// Runs `compile` (if the language has it), then `run` once `gate` (if any) lets it, in
    /// `sandbox`; the report and what the steps used.
    fn compile_and_run(
        &self,
        sandbox: &Sandbox,
        compile: Option<Step>,
        run: Step,
        gate: Option<RunGate>,
    ) -> Result<(RunReport, Usage), ExecutorError> {
        let mut usage = Usage::default();
        let mut timings = Timings::default();
        if let Some(compile) = compile {
            let outcome = sandbox.run(&compile)?;
            timings.compile = Some(millis(&outcome));
            usage.compile = Some(step_usage(&outcome));
            if let Err(message) = verdict::judge_compile(&outcome, &self.lang.compile_limits) {
                self.note_in_compile_log(&message)?;
                let report = RunReport {
                    timings_ms: timings,
                    ..self.report(failed_verdict(Reason::CompileError, message))
                };
                return Ok((report, usage));
            }
        }
        if let Some(gate) = gate {
            gate()?;
        }
        let outcome = sandbox.run(&run)?;
        timings.run = Some(millis(&outcome));
        usage.run = Some(step_usage(&outcome));
        let verdict = self.judge_run(&outcome)?;
        let report = RunReport {
            exit_code: outcome.ending.exit_code(),
            signal: outcome.ending.signal(),
            timings_ms: timings,
            ..self.report(verdict)
        };
        Ok((report, usage))
    }

    /// The compile step, if the language has one, and what the sandbox must bind for it.
    fn compile_step(&self) -> Option<(Step, Option<ReadOnlyBind>)> {
        let template = self.lang.compile?;
        let mut step = Step {
            command: expand_sources(template, &self.sources()),
            env: language_env(self.lang),
            limits: self.lang.compile_limits,
            max_file_bytes: COMPILE_MAX_FILE_BYTES,
            stdin: None,
            output: Output::Merged(self.workspace.log(Log::Compile)),
        };
        let bind = if go_cache::applies_to(self.lang) {
            go_cache::configure(
                &mut step,
                self.config.go_cache.as_deref(),
                self.config.kind.binds_directories(),
            )
        } else {
            None
        };
        Some((step, bind))
    }

    /// The job's source files (those handed to the compiler), sorted.
    fn sources(&self) -> Vec<String> {
        let mut sources: Vec<String> = self
            .files
            .iter()
            .filter(|f| self.lang.is_source(&f.name))
            .map(|f| f.name.clone())
            .collect();
        sources.sort();
        sources
    }

    fn run_step(&self, stdin: PathBuf) -> Step {
        let limits = self.job.limits;
        let mut command: Vec<String> = self.lang.run.iter().map(|a| (*a).to_owned()).collect();
        command.extend(self.job.args.iter().cloned());
        Step {
            command,
            env: language_env(self.lang),
            limits,
            max_file_bytes: run_file_bytes(&limits),
            stdin: Some(stdin),
            output: Output::Separate {
                stdout: self.workspace.log(Log::Stdout),
                stderr: self.workspace.log(Log::Stderr),
            },
        }
    }

    fn judge_run(&self, outcome: &StepOutcome) -> Result<Verdict, ExecutorError> {
        let failed = outcome.ending != verdict::Ending::Exited(0);
        // Only a step without a cgroup, whose memory cannot be measured, is judged on this.
        let stderr = match failed && outcome.oom_killed.is_none() {
            true => self.workspace.open_log(Log::Stderr)?,
            false => None,
        };
        let oom_reported = match stderr {
            Some(stderr) => verdict::reports_out_of_memory(stderr)
                .context(|| format!("reading {}", self.workspace.log(Log::Stderr).display()))?,
            None => false,
        };
        let disk = self
            .workspace
            .disk_evidence(run_file_bytes(&self.job.limits));
        Ok(verdict::judge_run(
            outcome,
            &self.job.limits,
            disk,
            oom_reported,
        ))
    }

    /// Appends the executor's word on a failed compilation to the compiler's output.
    fn note_in_compile_log(&self, message: &str) -> Result<(), ExecutorError> {
        let path = self.workspace.log(Log::Compile);
        let mut log = OpenOptions::new()
            .append(true)
            .open(&path)
            .context(|| format!("opening {}", path.display()))?;
        writeln!(log, "\n[cola] {message}").context(|| format!("writing {}", path.display()))
    }

    /// The report for `verdict`, with the previews of the logs.
    fn report(&self, verdict: Verdict) -> RunReport {
        RunReport {
            status: verdict.status,
            reason: verdict.reason,
            exit_code: None,
            signal: None,
            timings_ms: Timings::default(),
            limits: self.job.limits,
            message: verdict.message,
            stdout: self.preview(Log::Stdout),
            stderr: self.preview(Log::Stderr),
            compile_output: self.preview(Log::Compile),
            output_object: None,
        }
    }

    /// The start of a log as text, for a record's preview; empty if there is none.
    fn preview(&self, log: Log) -> String {
        match self.workspace.open_log(log) {
            Ok(Some(file)) => read_preview(file),
            Ok(None) => String::new(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a log for its preview");
                String::new()
            }
        }
    }

    fn package(&self, report: &RunReport, usage: Usage) -> Result<Vec<u8>, ExecutorError> {
        let mut logs = vec![
            ("stdout.txt", self.workspace.open_log(Log::Stdout)?),
            ("stderr.txt", self.workspace.open_log(Log::Stderr)?),
        ];
        if self.lang.compile.is_some() {
            logs.push(("compile.txt", self.workspace.open_log(Log::Compile)?));
        }
        outputs::build_zip(&ZipContents {
            report,
            usage,
            logs: &logs,
            out_dir: self.workspace.open_out_dir()?.as_ref(),
            max_bytes: self.config.max_zip_bytes,
        })
    }
}

fn failed_verdict(reason: Reason, message: String) -> Verdict {
    Verdict {
        status: Status::Failed,
        reason: Some(reason),
        message: Some(message),
    }
}

fn millis(outcome: &StepOutcome) -> u64 {
    u64::try_from(outcome.wall.as_millis()).unwrap_or(u64::MAX)
}

fn step_usage(outcome: &StepOutcome) -> StepUsage {
    StepUsage {
        cpu_time_ms: u64::try_from(outcome.cpu.as_millis()).unwrap_or(u64::MAX),
        peak_memory_kb: outcome.peak_memory_kb,
    }
}

/// A command of the language table with `{sources}` replaced by the source files.
fn expand_sources(template: &[&str], sources: &[String]) -> Vec<String> {
    template
        .iter()
        .flat_map(|arg| match *arg {
            "{sources}" => sources.to_vec(),
            arg => vec![arg.to_owned()],
        })
        .collect()
}

fn language_env(lang: &LanguageDef) -> Vec<(String, String)> {
    lang.env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The start of a log file as text, for a record's preview.
fn read_preview(file: File) -> String {
    let mut bytes = Vec::new();
    // A few bytes more than the preview so that a character cut by the limit is not lost.
    let _ = file.take(PREVIEW_BYTES as u64 + 4).read_to_end(&mut bytes);
    preview(&String::from_utf8_lossy(&bytes))
}

/// The environment of a toolchain command run on the host (not in the sandbox): the sandbox's
/// base environment and the language's, with `HOME` in a private directory.
pub(crate) fn host_env(lang: &LanguageDef, home: &Path) -> Vec<(String, OsString)> {
    BASE_ENV
        .iter()
        .map(|(k, v)| (*k, *v))
        .chain(lang.env.iter().copied())
        .filter(|(k, _)| *k != "HOME")
        .map(|(k, v)| (k.to_owned(), OsString::from(v)))
        .chain([("HOME".to_owned(), home.as_os_str().to_owned())])
        .collect()
}

/// Each program language's toolchain version (its `version` command's first line); a language
/// whose command fails is left out, and so is the numeric runtime (it has no toolchain).
pub fn toolchain_versions() -> BTreeMap<String, String> {
    let Ok(home) = tempfile::tempdir() else {
        tracing::warn!("no scratch directory for toolchain commands");
        return BTreeMap::new();
    };
    languages()
        .iter()
        .filter(|lang| !lang.is_numeric())
        .filter_map(|lang| Some((lang.name.to_owned(), toolchain_version(lang, home.path())?)))
        .collect()
}

fn toolchain_version(lang: &LanguageDef, home: &Path) -> Option<String> {
    let (program, args) = lang.version.split_first()?;
    let out = Command::new(program)
        .args(args)
        .env_clear()
        .envs(host_env(lang, home))
        .current_dir(home)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_owned),
        Ok(out) => {
            tracing::warn!(language = lang.name, status = %out.status, "toolchain version command failed");
            None
        }
        Err(e) => {
            tracing::warn!(language = lang.name, error = %e, "cannot run the toolchain version command");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sources_expand_in_place() {
        let sources = vec!["a.c".to_owned(), "b.c".to_owned()];
        assert_eq!(
            expand_sources(&["gcc", "-o", "main", "{sources}", "-lm"], &sources),
            ["gcc", "-o", "main", "a.c", "b.c", "-lm"]
        );
        assert_eq!(
            expand_sources(&["go", "build", "{sources}"], &[]),
            ["go", "build"]
        );
    }

    #[test]
    fn file_names_are_checked_again() {
        let c = &languages()[0];
        let file = |name: &str| InputFile {
            name: name.into(),
            content: String::new(),
        };
        assert!(check_files(c, &[file("main.c"), file("util.h")]).is_ok());
        assert!(
            check_files(c, &[file("../main.c")])
                .unwrap_err()
                .contains("../main.c")
        );
        assert!(check_files(c, &[file("main.py")]).is_err());
        assert!(
            check_files(c, &[file("main.c"), file("-o.c")])
                .unwrap_err()
                .contains("-o.c")
        );
        assert!(
            check_files(c, &[file("main.c"), file("main.c")])
                .unwrap_err()
                .contains("twice")
        );
        assert!(check_files(c, &[]).is_err());
        let numeric = languages().iter().find(|l| l.is_numeric()).unwrap();
        assert!(
            check_runnable(numeric)
                .unwrap_err()
                .contains("built-in runtime")
        );
        assert!(check_runnable(c).is_ok());
    }

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

    /// A C job with the language's default limits.
    fn c_job() -> JobMessage {
        let c = &languages()[0];
        JobMessage {
            id: cola_wire::JobId::new(),
            user: cola_wire::UserId::parse("tester").unwrap(),
            language: c.id(),
            args: Vec::new(),
            limits: c.default_limits,
            created_at: cola_wire::job::now(),
            inputs: None,
            input_object: None,
            problem: None,
        }
    }

    fn c_inputs(source: &str) -> Inputs {
        Inputs {
            files: vec![InputFile {
                name: languages()[0].source_file.into(),
                content: source.into(),
            }],
            stdin: String::new(),
        }
    }

    /// Sandboxes run as root need an init: the executors' own, built beside this test binary.
    fn test_config() -> SandboxConfig {
        SandboxConfig {
            init: crate::sandbox::init::standalone().unwrap(),
            ..SandboxConfig::default()
        }
    }

    #[tokio::test]
    async fn a_run_step_waits_for_its_gate_and_never_starts_without_it() {
        let c = &languages()[0];
        let job = c_job;
        let inputs =
            c_inputs("#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n");
        let config = test_config();

        let dir = tempfile::tempdir().unwrap();
        let (go, gate) = tokio::sync::oneshot::channel::<()>();
        let task = spawn_execute(c, &job(), &inputs, dir.path(), &config, Some(after(gate)));
        drop(go);
        let stopped = joined(task).await;
        assert!(matches!(stopped, Err(ExecutorError::Halted)), "{stopped:?}");

        let dir = tempfile::tempdir().unwrap();
        let (go, gate) = tokio::sync::oneshot::channel();
        let task = spawn_execute(c, &job(), &inputs, dir.path(), &config, Some(after(gate)));
        go.send(()).unwrap();
        let done = joined(task).await.unwrap();
        assert_eq!(
            (done.report.status, done.report.stdout.as_str()),
            (Status::Succeeded, "hello\n"),
            "{:?}",
            done.report
        );
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

    /// Prints when the sandbox's PID 1 started, in clock ticks since boot.
    const INIT_STARTED: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void) {
    char buf[1024];
    FILE *f = fopen("/proc/1/stat", "r");
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    int field = 2;
    for (char *t = strtok(strrchr(buf, ')') + 2, " "); t; t = strtok(NULL, " "))
        if (++field == 22) printf("%s\n", t);
    return 0;
}
"#;

    /// Clock ticks since boot, now.
    fn ticks_since_boot() -> u64 {
        let uptime = std::fs::read_to_string("/proc/uptime").unwrap();
        let seconds: f64 = uptime.split_whitespace().next().unwrap().parse().unwrap();
        let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .unwrap()
            .unwrap();
        (seconds * tick as f64) as u64
    }

    #[tokio::test]
    async fn a_pre_started_sandbox_runs_a_job_that_fits_and_leaves_nothing_behind() {
        let c = &languages()[0];
        let config = test_config();
        let inputs = c_inputs(INIT_STARTED);
        let init_started = |done: &Execution| -> u64 {
            assert_eq!(done.report.status, Status::Succeeded, "{:?}", done.report);
            done.report.stdout.trim().parse().unwrap()
        };

        // A job with the default limits runs in the sandbox started before it came.
        let dir = tempfile::tempdir().unwrap();
        let standby = StandbyThread::spawn(&config, dir.path()).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let came = ticks_since_boot();
        let done = joined(standby.execute(c, &c_job(), &inputs, None))
            .await
            .unwrap();
        assert!(init_started(&done) < came, "{came}: {:?}", done.report);
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "the workspace is gone"
        );

        // One with other limits gets a sandbox of its own.
        let dir = tempfile::tempdir().unwrap();
        let standby = StandbyThread::spawn(&config, dir.path()).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut job = c_job();
        job.limits.memory_mb /= 2;
        let came = ticks_since_boot();
        let done = joined(standby.execute(c, &job, &inputs, None))
            .await
            .unwrap();
        // (`/proc/uptime` and a start time may round a tick apart.)
        assert!(init_started(&done) + 1 >= came, "{came}: {:?}", done.report);

        // Dropped without a job, it stops its sandbox and removes its workspace.
        let dir = tempfile::tempdir().unwrap();
        let standby = StandbyThread::spawn(&config, dir.path()).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(dir.path().join("fs").is_dir(), "the standby's workspace");
        drop(standby);
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "the workspace is gone"
        );
    }

    #[test]
    fn host_commands_get_a_private_home() {
        let go = languages().iter().find(|l| l.name == "go").unwrap();
        let env = host_env(go, Path::new("/private/home"));
        let get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        assert_eq!(get("HOME"), Some("/private/home".into()));
        assert_eq!(get("GO111MODULE"), Some("off".into()));
        assert_eq!(get("PATH"), Some("/usr/local/bin:/usr/bin:/bin".into()));
        assert_eq!(env.iter().filter(|(k, _)| k == "HOME").count(), 1);
    }

    #[test]
    fn every_language_reports_a_toolchain_version() {
        let versions = toolchain_versions();
        for lang in languages().iter().filter(|l| !l.is_numeric()) {
            let version = versions
                .get(lang.name)
                .unwrap_or_else(|| panic!("{} has no version", lang.name));
            assert!(
                version.chars().any(|c| c.is_ascii_digit()),
                "{}: {version}",
                lang.name
            );
        }
    }
}
