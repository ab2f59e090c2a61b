//! Handoff: what a compile container leaves for the run container beside it (see `split`): the
//! workspace, and in it the job message and how the compile step went
//! (`logs/compile-outcome.json`, which appears whole: written aside, then renamed). The run
//! container waits for it ([`wait_for_job`]).

use std::{io::Read as _, path::Path, time::Duration};

use cola_wire::JobMessage;

use crate::{
    error::{ExecutorError, IoContext},
    outputs::StepUsage,
    workspace::{Log, Workspace},
};

/// The largest handoff read back: a job message without its inputs (which a Pod's environment
/// would hold too) and a compile outcome (its failure message is a line or two).
const MAX_HANDOFF_BYTES: u64 = 1 << 20;
/// How often the run container looks for the handoff.
const HANDOFF_POLL: Duration = Duration::from_millis(2);

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

/// What the run container finds: the job, and how its compile step went.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Handoff {
    job: JobMessage,
    outcome: CompileOutcome,
}

/// Writes the handoff of `job` into `workspace` and leaves the workspace for the run container.
pub(super) fn hand_on(
    workspace: Workspace,
    job: &JobMessage,
    outcome: CompileOutcome,
) -> Result<(), ExecutorError> {
    let handoff = Handoff {
        job: job.clone(),
        outcome,
    };
    let json = serde_json::to_vec(&handoff).map_err(|e| ExecutorError::Worker(e.to_string()))?;
    workspace.publish_log(Log::CompileOutcome, &json)?;
    workspace.hand_on();
    Ok(())
}

/// The job message of the handoff in `job_dir`, once the compile container beside this one
/// left it (looked for every few milliseconds, as long as it takes: a pre-started Pod's
/// compile container waits for its job first).
pub(super) async fn wait_for_job(job_dir: &Path) -> Result<JobMessage, ExecutorError> {
    let path = Workspace::log_in(job_dir, Log::CompileOutcome);
    loop {
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => break,
            Ok(_) => {
                return Err(ExecutorError::Worker(format!(
                    "{} is not a file",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tokio::time::sleep(HANDOFF_POLL).await;
            }
            Err(e) => {
                return Err(ExecutorError::io(
                    format!("looking for {}", path.display()),
                    e,
                ));
            }
        }
    }
    let file = std::fs::File::open(&path).context(|| format!("opening {}", path.display()))?;
    Ok(read_handoff(file)?.job)
}

/// The compile container's outcome, read without following a link.
pub(super) fn read_outcome(workspace: &Workspace) -> Result<CompileOutcome, ExecutorError> {
    let Some(file) = workspace.open_log(Log::CompileOutcome)? else {
        return Err(ExecutorError::Worker(
            "the compile container left no outcome".into(),
        ));
    };
    Ok(read_handoff(file)?.outcome)
}

fn read_handoff(file: std::fs::File) -> Result<Handoff, ExecutorError> {
    let mut json = Vec::new();
    file.take(MAX_HANDOFF_BYTES)
        .read_to_end(&mut json)
        .context(|| "reading the compile container's handoff")?;
    serde_json::from_slice(&json).map_err(|e| {
        ExecutorError::Worker(format!("the compile container's handoff is not valid: {e}"))
    })
}
