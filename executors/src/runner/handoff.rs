//! Handoff: what a compile container leaves for the run container after it (see `split`): the
//! workspace, and in it how the compile step went (`logs/compile-outcome.json`).

use std::io::Read as _;

use crate::{
    error::{ExecutorError, IoContext},
    outputs::StepUsage,
    workspace::{Log, Workspace},
};

/// The largest compile outcome read back (its failure message is a line or two).
const MAX_OUTCOME_BYTES: u64 = 64 << 10;

/// How a compile step went: its time, what it used, and why it failed, if it did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Compiled {
    pub(super) millis: u64,
    pub(super) usage: StepUsage,
    pub(super) failure: Option<String>,
}

/// What the compile container hands on to the run container.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub(super) enum CompileOutcome {
    /// The job cannot run (`invalid_input`): why.
    Refused { message: String },
    /// The files are written; compiled, if the language compiles.
    Ready { compiled: Option<Compiled> },
}

/// Writes `outcome` into `workspace` and leaves the workspace for the run container.
pub(super) fn hand_on(workspace: Workspace, outcome: &CompileOutcome) -> Result<(), ExecutorError> {
    let json = serde_json::to_vec(outcome).map_err(|e| ExecutorError::Worker(e.to_string()))?;
    workspace.write_log(Log::CompileOutcome, &json)?;
    workspace.hand_on();
    Ok(())
}

/// The compile container's outcome, read without following a link.
pub(super) fn read_outcome(workspace: &Workspace) -> Result<CompileOutcome, ExecutorError> {
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
