//! What a container's end means for its job: a failure in a container killed for memory is
//! `memory_limit`, and an executor killed for memory before its frame gets a report saying so.

use cola_wire::{Limits, Reason, RunReport, Status, Timings, frame::ExecutorReport};

/// A failed job in a container that was killed for memory says so.
pub(super) fn with_oom(mut outcome: ExecutorReport, oom_killed: bool) -> ExecutorReport {
    let report = &mut outcome.report;
    if oom_killed && report.status == Status::Failed && report.reason == Some(Reason::RuntimeError)
    {
        report.reason = Some(Reason::MemoryLimit);
        report.message = Some(format!(
            "the program ran out of memory (limit {} MB): the container was killed for memory",
            report.limits.memory_mb
        ));
    }
    outcome
}

/// The report of a container whose executor was killed for memory.
pub(super) fn out_of_memory(limits: &Limits) -> RunReport {
    RunReport {
        status: Status::Failed,
        reason: Some(Reason::MemoryLimit),
        exit_code: None,
        signal: Some(9),
        timings_ms: Timings::default(),
        limits: *limits,
        message: Some(format!(
            "the job ran out of memory (limit {} MB): its container was killed",
            limits.memory_mb
        )),
        stdout: String::new(),
        stderr: String::new(),
        compile_output: String::new(),
        output_object: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_in_a_container_killed_for_memory_is_a_memory_limit() {
        let limits = cola_wire::language(&cola_wire::Language::parse("c").unwrap())
            .unwrap()
            .default_limits;
        let failed = ExecutorReport {
            report: RunReport {
                reason: Some(Reason::RuntimeError),
                signal: Some(9),
                ..out_of_memory(&limits)
            },
            zip: Some(vec![1, 2, 3]),
        };
        let judged = with_oom(failed.clone(), true);
        assert_eq!(judged.report.reason, Some(Reason::MemoryLimit));
        assert_eq!(judged.zip, failed.zip);
        assert_eq!(with_oom(failed.clone(), false), failed);
        let compile_error = ExecutorReport {
            report: RunReport {
                reason: Some(Reason::CompileError),
                ..failed.report.clone()
            },
            zip: None,
        };
        assert_eq!(with_oom(compile_error.clone(), true), compile_error);
    }
}
