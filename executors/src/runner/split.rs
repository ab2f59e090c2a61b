//! Split: a compiled job's steps in two containers, for a backend that cannot lower a
//! container's memory limit between them (Kubernetes: a Pod's limits are fixed once it exists).
//!
//! The compile container (an init container: `cola executor --step compile`) reads the job,
//! fetches its inputs, writes its files and standard input into the work area, compiles them
//! under the compile step's limits, writes how that went (`logs/compile-outcome.json`: refused,
//! or compiled with its time, usage and failure) and leaves the workspace in place. The run
//! container (`--step run`), held to the run step's own memory limit, checks the job's record
//! as every executor does, reopens the workspace, reads that outcome and runs the program, or
//! reports the compile step's failure. Nothing of the user runs in the compile container: what
//! the run container reads was written by the executor and the compiler only.

use std::path::Path;

use cola_wire::{Inputs, JobMessage, LanguageDef, Work, input_object::inputs_of, language};
use tracing::Instrument;

use super::{
    ExecutorConfig, RunGate, intake,
    intake::{check_files, check_runnable},
    job_span, prepare,
    report::invalid_input,
    steps::{CompileStage, Compiled, Execution, JobSteps, disk_allowance, refused, start_sandbox},
};
use crate::{
    error::{ExecutorError, IoContext},
    sandbox::{SandboxConfig, SandboxKind, SandboxPlan, SandboxUser, system},
    workspace::{DiskAllowance, Log, Workspace},
};

/// The largest compile outcome read back (its failure message is a line or two).
const MAX_OUTCOME_BYTES: u64 = 64 << 10;

/// Which of a job's steps an executor runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Steps {
    /// Every step, in one executor.
    #[default]
    All,
    /// Only the files and the compile step, for the run container after it.
    Compile,
    /// Only the run step, in what the compile container left.
    Run,
}

/// What the compile container hands on to the run container.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum CompileOutcome {
    /// The job cannot run (`invalid_input`): why.
    Refused { message: String },
    /// The files are written; compiled, if the language compiles.
    Ready { compiled: Option<Compiled> },
}

/// Checks that `config` can split a job's steps: only a container sandbox can (its work areas
/// outlive the executor, for the next container of the Pod).
pub(super) fn check_split(config: &ExecutorConfig) -> Result<(), ExecutorError> {
    if config.steps != Steps::All && config.sandbox.kind != SandboxKind::Container {
        return Err(ExecutorError::Config(
            "a job's steps are split between containers only in the container sandbox".into(),
        ));
    }
    Ok(())
}

/// `cola executor --step compile`: the job's files written and compiled for the run container
/// (see the module's documentation). A job that cannot run is handed on as refused, for the run
/// container to report; `Err` only when nothing could be handed on.
pub async fn compile_ahead(config: ExecutorConfig) -> Result<(), ExecutorError> {
    check_split(&config)?;
    prepare(&config.sandbox)?;
    let mut job = intake::read_job(&config.job)?;
    let span = job_span(&job);
    async {
        let inputs = match job.work {
            Work::Inputs(_) => intake::inline_inputs(&mut job),
            _ => {
                let topology = intake::connect(&config.nats_url).await?;
                inputs_of(&topology.outputs, &job).await?
            }
        };
        let (job_dir, sandbox) = (config.job_dir, config.sandbox);
        tokio::task::spawn_blocking(move || {
            compile_ahead_blocking(&job, inputs, &job_dir, &sandbox)
        })
        .await?
    }
    .instrument(span)
    .await
}

/// [`compile_ahead`] once the inputs are at hand (or why there are none).
fn compile_ahead_blocking(
    job: &JobMessage,
    inputs: Result<Inputs, String>,
    job_dir: &Path,
    config: &SandboxConfig,
) -> Result<(), ExecutorError> {
    let user = SandboxUser::for_job(&job.id, config.uid_base, config.uid_count)?;
    let allowance = disk_allowance(config, job_dir, &job.limits);
    let workspace = Workspace::create(job_dir, user.host_ids(), allowance)?;
    let outcome = match runnable(job, inputs) {
        Err(message) => CompileOutcome::Refused { message },
        Ok((lang, inputs)) => {
            workspace.write_files(&inputs.files)?;
            let stdin = workspace.write_stdin(&inputs.stdin)?;
            let steps = JobSteps {
                lang,
                job,
                files: &inputs.files,
                workspace: &workspace,
                config,
            };
            let compiled = match steps.compile_step() {
                None => None,
                Some((step, read_only)) => {
                    let plan = SandboxPlan::for_steps(
                        &steps.run_step(stdin),
                        std::slice::from_ref(&step),
                        read_only.into_iter().collect(),
                        system::dirs_of(lang),
                    );
                    let sandbox = start_sandbox(config, &user, &workspace, &plan)?;
                    Some(steps.compile(&sandbox, &step)?)
                }
            };
            CompileOutcome::Ready { compiled }
        }
    };
    let json = serde_json::to_vec(&outcome).map_err(|e| ExecutorError::Worker(e.to_string()))?;
    workspace.write_log(Log::CompileOutcome, &json)?;
    workspace.hand_on();
    Ok(())
}

/// The job's language and inputs, if they can run; otherwise why not.
fn runnable(
    job: &JobMessage,
    inputs: Result<Inputs, String>,
) -> Result<(&'static LanguageDef, Inputs), String> {
    let lang =
        language(&job.language).ok_or_else(|| format!("unknown language {}", job.language))?;
    check_runnable(lang)?;
    let inputs = inputs?;
    check_files(lang, &inputs.files)?;
    Ok((lang, inputs))
}

/// The run step of `job` in the workspace its compile container left in `job_dir`, once `gate`
/// (if any) lets it; the compile container's refusal or failure reported as such.
pub(super) fn run_compiled(
    lang: &LanguageDef,
    job: &JobMessage,
    job_dir: &Path,
    config: &SandboxConfig,
    gate: Option<RunGate>,
) -> Result<Execution, ExecutorError> {
    let DiskAllowance::Container(areas) = disk_allowance(config, job_dir, &job.limits) else {
        return Err(ExecutorError::Config(
            "only a container sandbox runs what a compile container left".into(),
        ));
    };
    let user = SandboxUser::for_job(&job.id, config.uid_base, config.uid_count)?;
    let workspace = Workspace::reopen(job_dir, areas)?;
    let compiled = match read_outcome(&workspace)? {
        CompileOutcome::Refused { message } => {
            return refused(invalid_input(&job.limits, message), config);
        }
        CompileOutcome::Ready { compiled } => compiled,
    };
    let compile = match (lang.compile, compiled) {
        (None, _) => None,
        (Some(_), Some(compiled)) => Some(CompileStage::Done(compiled)),
        (Some(_), None) => {
            return Err(ExecutorError::Worker(
                "the compile container did not compile the job".into(),
            ));
        }
    };
    let steps = JobSteps {
        lang,
        job,
        files: &[],
        workspace: &workspace,
        config,
    };
    let run = steps.run_step(workspace.log(Log::Stdin));
    steps.execute(compile, Vec::new(), run, None, &user, gate)
}

/// The compile container's outcome, read without following a link.
fn read_outcome(workspace: &Workspace) -> Result<CompileOutcome, ExecutorError> {
    use std::io::Read as _;

    let Some(file) = workspace.open_log(Log::CompileOutcome)? else {
        return Err(ExecutorError::Worker(
            "the compile container left no outcome".into(),
        ));
    };
    let mut json = Vec::new();
    file.take(MAX_OUTCOME_BYTES)
        .read_to_end(&mut json)
        .context(|| "reading the compile container's outcome")?;
    serde_json::from_slice(&json).map_err(|e| {
        ExecutorError::Worker(format!("the compile container's outcome is not valid: {e}"))
    })
}
