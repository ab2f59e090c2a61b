//! A numeric job from problem to outcome: validate, solve under a time budget, render
//! `result.json`, `table.csv` and `plot.svg` and zip them, and say what that means for the job
//! (status, reason, the messages that are its `stderr`). The middleware runs this in-process
//! (numeric jobs never reach an executor).

use std::{
    io::{Cursor, Write as _},
    time::{Duration, Instant},
};

use cola_wire::{Limits, Reason, Status};
use serde_json::Value;

use crate::{Budget, Convergence, StopFlag};

/// The largest result (as JSON) the job record carries; a larger one is only in `result.json`.
pub const MAX_RECORD_RESULT_BYTES: usize = 64 * 1024;

/// What a solver thread hands back: everything the record needs, and the zip.
#[derive(Debug)]
pub struct Solved {
    pub status: Status,
    pub reason: Option<Reason>,
    /// The result for the record (`None` when too large for it, or invalid input).
    pub result: Option<Value>,
    /// Warnings and error messages, one per line: the job's `stderr`.
    pub stderr: String,
    /// `result.json`, `table.csv` and `plot.svg`; `None` for a problem that did not validate.
    pub zip: Option<Vec<u8>>,
    /// Time spent solving (the `run` timing).
    pub solve: Duration,
}

/// The time budget of a job: its wall-time limit, or its CPU-time limit if lower (a solve runs
/// on one thread).
pub fn budget_of(limits: &Limits) -> Duration {
    Duration::from_millis(limits.wall_time_ms.min(limits.cpu_time_ms))
}

/// Validates, solves and renders one problem: what runs on a solver thread. The budget counts
/// from this call.
pub fn solve(statement: &Value, budget: Duration) -> Solved {
    solve_unless_stopped(statement, budget, &StopFlag::new())
}

/// [`solve`], which also stops (as if out of time) when `stop` is raised: for a caller that
/// may stop wanting the answer (its job was cancelled, or ended otherwise).
pub fn solve_unless_stopped(statement: &Value, budget: Duration, stop: &StopFlag) -> Solved {
    let started = Instant::now();
    let problem = match crate::parse_problem(statement) {
        Ok(problem) => problem,
        Err(error) => return invalid(&error, started),
    };
    let solution = crate::solve(&problem, &Budget::until(started + budget).stopped_by(stop));
    render(statement, &solution, budget, started.elapsed())
}

/// A problem that did not validate (the gateway validates every problem: this is a message
/// from another version).
pub fn invalid(error: &crate::ProblemError, started: Instant) -> Solved {
    Solved {
        status: Status::Failed,
        reason: Some(Reason::InvalidInput),
        result: None,
        stderr: error.to_string(),
        zip: None,
        solve: started.elapsed(),
    }
}

/// The outcome of a solve with its files, zipped.
pub fn render(
    statement: &Value,
    solution: &crate::Solution,
    budget: Duration,
    solve: Duration,
) -> Solved {
    let (status, reason) = match &solution.outcome {
        Convergence::Converged => (Status::Succeeded, None),
        Convergence::DidNotConverge => (Status::Failed, Some(Reason::DidNotConverge)),
        Convergence::OutOfTime => (Status::Failed, Some(Reason::TimeLimit)),
        Convergence::EvaluationError { .. } => (Status::Failed, Some(Reason::RuntimeError)),
    };
    let mut stderr = String::new();
    if let Convergence::EvaluationError { message } = &solution.outcome {
        stderr.push_str(message);
        stderr.push('\n');
    }
    if solution.outcome == Convergence::OutOfTime {
        stderr.push_str(&format!(
            "stopped after its time budget of {} ms\n",
            budget.as_millis()
        ));
    }
    for warning in &solution.warnings {
        stderr.push_str("warning: ");
        stderr.push_str(warning);
        stderr.push('\n');
    }
    let result = match serde_json::to_vec(&solution.result) {
        Ok(json) if json.len() <= MAX_RECORD_RESULT_BYTES => Some(solution.result.clone()),
        _ => {
            stderr.push_str("the result is too large to show here: it is in result.json\n");
            None
        }
    };
    let zip = zip_files(&solution.files(statement));
    Solved {
        status,
        reason,
        result,
        stderr,
        zip: Some(zip),
        solve,
    }
}

/// Files up to this size are stored in the zip as they are: compressing a few kilobytes costs
/// more CPU (mostly setting up the compressor) than it saves in storage.
const STORE_UNCOMPRESSED_BELOW: usize = 32 * 1024;

/// A zip of `files`; the larger ones deflated at the fastest level.
pub fn zip_files(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let capacity = files.iter().map(|(_, c)| c.len() + 128).sum::<usize>() + 256;
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::with_capacity(capacity)));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1));
    for (name, content) in files {
        let options = if content.len() < STORE_UNCOMPRESSED_BELOW {
            stored
        } else {
            deflated
        };
        zip.start_file(*name, options)
            .and_then(|()| zip.write_all(content).map_err(Into::into))
            .expect("writing to memory does not fail");
    }
    zip.finish()
        .expect("writing to memory does not fail")
        .into_inner()
}
