//! Report: a job's outcome as its record shows it, and publishing it: the zip stored and the
//! record ended by compare-and-set, unless the job ended elsewhere first (cancelled, timed out
//! by the middleware), whose record then stays as it is.

use cola_wire::{
    JobKey, JobMessage, JobRecord, Limits, Reason, RunReport, Status, Timings,
    nats::{Reported, Topology, report_outcome},
};
use tokio::time::{Duration, Instant};

use crate::error::ExecutorError;

/// Time kept at the end of a job's deadline (which the middleware enforces) for a last attempt
/// to store the zip and for ending the record without it when that fails: retries of the
/// upload stop this long before the deadline.
pub(super) const REPORT_RESERVE: Duration = Duration::from_secs(10);

/// What running a job ended with: its report, and its zip when it ran.
pub(super) type Ran = (RunReport, Option<Vec<u8>>);

/// Stores the zip and ends the record with `report` if it is still running (see
/// [`report_outcome`]), retrying while NATS does not answer until `until`. A zip that cannot be
/// stored (the object store full, or NATS unreachable until then) ends the job
/// `internal_error` without it, in the [`REPORT_RESERVE`] kept for that. A record that ended
/// meanwhile stays as it is; its outcome is returned.
pub(super) async fn end_record(
    topology: &Topology,
    job: &JobMessage,
    (report, zip): Ran,
    until: Instant,
) -> Result<RunReport, ExecutorError> {
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
            let until = until.max(Instant::now()) + REPORT_RESERVE / 2;
            report_outcome(topology, &job.user, &job.id, report, None, until).await?
        }
        reported => reported?,
    };
    outcome_of(reported, job)
}

/// The job's outcome once reported: the report recorded, or the record's when the job ended
/// elsewhere; an error when there was no running record to end.
fn outcome_of(reported: Reported, job: &JobMessage) -> Result<RunReport, ExecutorError> {
    let key = || JobKey::new(&job.user, &job.id);
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
            key: key(),
            status: record.status.as_str(),
        }),
        Reported::Missing => Err(ExecutorError::NoRecord(key())),
    }
}

/// A record's outcome as a report.
pub(super) fn report_of(record: &JobRecord) -> RunReport {
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

pub(super) fn failed_report(limits: &Limits, reason: Reason, message: String) -> RunReport {
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

pub(super) fn invalid_input(limits: &Limits, message: String) -> RunReport {
    failed_report(limits, Reason::InvalidInput, message)
}

/// What a job with `limits` ended with: what it ran to, or, when the executor failed it,
/// `internal_error` saying why (and logged).
pub(super) fn or_internal_error(limits: &Limits, ran: Result<Ran, ExecutorError>) -> Ran {
    ran.unwrap_or_else(|e| {
        tracing::error!(error = %e, "job failed in the executor");
        (
            failed_report(limits, Reason::InternalError, e.to_string()),
            None,
        )
    })
}
