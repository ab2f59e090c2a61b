//! Split: a compiled job's steps in two containers, for a backend that cannot lower a
//! container's memory limit between them (Kubernetes: a Pod's limits are fixed once it exists).
//!
//! The compile container (an init container: `cola executor --step compile`) reads the job,
//! fetches its inputs, writes its files and standard input into the work area, compiles them
//! under the compile step's limits, writes how that went (`logs/compile-outcome.json`: refused,
//! or compiled with its time, usage and failure) and leaves the workspace in place. The run
//! container (`--step run`), held to the run step's own memory limit, checks the job's record
//! as every executor does, reopens the workspace, reads that outcome and runs the program, or
//! reports the compile step's failure (`steps::run_compiled`). Nothing of the user runs in the
//! compile container: what the run container reads was written by the executor and the
//! compiler only (`handoff`).

use std::path::Path;

use cola_wire::{Inputs, JobMessage, LanguageDef, language};

use super::{
    handoff::{self, CompileOutcome},
    intake::{check_files, check_runnable},
    steps::{JobSteps, new_workspace, start_sandbox},
};
use crate::{
    error::ExecutorError,
    sandbox::{SandboxConfig, SandboxKind, SandboxPlan, system},
};

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

/// Checks that a sandbox of `kind` can split a job's steps as `steps` asks: only a container
/// sandbox can (its work areas outlive the executor, for the next container of the Pod).
pub(super) fn check_split(steps: Steps, kind: SandboxKind) -> Result<(), ExecutorError> {
    if steps != Steps::All && kind != SandboxKind::Container {
        return Err(ExecutorError::Config(
            "a job's steps are split between containers only in the container sandbox".into(),
        ));
    }
    Ok(())
}

/// The compile container's part of a job whose inputs are at hand (or why there are none): see
/// the module's documentation. A job that cannot run is handed on as refused, for the run
/// container to report; `Err` only when nothing could be handed on.
pub(super) fn compile_ahead(
    job: &JobMessage,
    inputs: Result<Inputs, String>,
    job_dir: &Path,
    config: &SandboxConfig,
) -> Result<(), ExecutorError> {
    let (user, workspace) = new_workspace(job, job_dir, config)?;
    let outcome = match runnable(job, inputs) {
        Err(message) => CompileOutcome::Refused { message },
        Ok((lang, inputs)) => {
            let stdin = workspace.write_inputs(&inputs)?;
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
    handoff::hand_on(workspace, job, outcome)
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
