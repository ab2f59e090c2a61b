//! A program job, from delivery to ack: start or adopt its executor, watch it, enforce the
//! deadline, act on cancel requests, record the outcome, and only then acknowledge.

use std::time::Duration;

use async_nats::jetstream::Message;
use cola_wire::{
    Ending, ExecutorHandle, JobKey, JobMessage, JobRecord, Reason, Status, Work,
    frame::ExecutorReport,
    input_object::inputs_of,
    job::{DEADLINE_SLACK, millis_between, now},
    language,
    nats::{NatsError, Reported, Transition, report_outcome},
};

use crate::{
    cancels::CancelGuard,
    context::{Context, Disposition},
    supervise::{Interruption, keeping_alive, supervise},
};

/// Runs one program job to its end (see the module's documentation).
pub(crate) async fn drive(
    ctx: &Context,
    msg: &Message,
    job: &JobMessage,
    key: &JobKey,
) -> Result<Disposition, NatsError> {
    let Some((record, revision)) = ctx.jobs.get(key).await? else {
        tracing::warn!(job_id = %job.id, "job has no record (expired or never created); dropping it");
        return Ok(Disposition::Ack);
    };
    if record.status.is_terminal() {
        // Delivered again after it ended (its ack was lost, or its middleware stopped before it
        // cleaned up): what its executor left goes now, not at the backend's next sweep.
        if let Some(handle) = &record.executor {
            kill(ctx, handle).await;
            clean_up(ctx, job, handle).await;
        }
        return Ok(Disposition::Ack);
    }
    if record.cancel_requested && record.status == Status::Queued {
        ctx.end(key, &Ending::cancelled()).await?;
        return Ok(Disposition::Ack);
    }
    if language(&job.language).is_none() {
        let unknown = format!("unknown language {}", job.language);
        ctx.end(key, &Ending::failed(Reason::InvalidInput, unknown))
            .await?;
        return Ok(Disposition::Ack);
    }
    let guard = ctx.cancels.register(key);
    let (record, revision) = if record.status == Status::Running && record.executor.is_none() {
        match unrecorded_executor(ctx, msg, job, key, record, revision).await? {
            Ok(found) => found,
            Err(disposition) => return Ok(disposition),
        }
    } else {
        (record, revision)
    };
    let (handle, started) = match record.executor.clone() {
        Some(handle) if record.status == Status::Running => {
            let alive = match ctx.backend.is_alive(&handle).await {
                Ok(alive) => alive,
                Err(e) => {
                    // The backend cannot tell (its API is unreachable): failing a job that may
                    // still run would be wrong, so leave the message for a later delivery.
                    tracing::warn!(job_id = %job.id, error = %e, "cannot tell whether the executor lives; retrying later");
                    return Ok(Disposition::Leave);
                }
            };
            if alive {
                tracing::info!(job_id = %job.id, executor = %handle.id, "adopting running executor");
                (handle, Started::Adopted)
            } else {
                // The executor ended while no middleware watched it. A backend that carries
                // outcomes may still hold its report; otherwise the result is lost.
                let until = tokio::time::Instant::now() + DEADLINE_SLACK;
                let why = "its middleware stopped";
                let ended = record_outcome(ctx, msg, job, key, &handle, why, until).await;
                clean_up(ctx, job, &handle).await;
                count_finished(ctx, ended?);
                return Ok(Disposition::Ack);
            }
        }
        // Queued, or running without an executor that was ever launched: start it.
        _ => match start(ctx, job, key, record, revision).await? {
            Ok(handle) => (handle, Started::Here),
            Err(disposition) => return Ok(disposition),
        },
    };
    watch(ctx, msg, job, key, &handle, started, &guard).await
}

/// How long after a job was marked `running` its middleware has to record the executor it
/// launched, before another middleware, given the job again, looks for that executor itself.
const LAUNCH_GRACE: Duration = Duration::from_secs(5);
/// How often the record of a job in its [`LAUNCH_GRACE`] is read.
const LAUNCH_POLL: Duration = Duration::from_millis(200);

/// For a record that is `running` without an executor: the middleware that marked it (see
/// [`start`]) has not recorded the executor it launched, because it stopped in between, or
/// has not yet. An executor may run, so launching another could run the job twice. Waits
/// until [`LAUNCH_GRACE`] after the job was marked running for its executor to be recorded;
/// then asks the backend for an executor launched but never recorded, and records it. The
/// record to go on from: with an executor (alive: adopted; ended: the job ends), or still
/// without one when the backend found none (it was never launched, or the backend's launch
/// adopts it: it is started). `Err` with what to do with the message when the job ended.
async fn unrecorded_executor(
    ctx: &Context,
    msg: &Message,
    job: &JobMessage,
    key: &JobKey,
    record: JobRecord,
    revision: u64,
) -> Result<Result<(JobRecord, u64), Disposition>, NatsError> {
    let marked = (record.status, record.attempt);
    let since_marked = record.started_at.map_or(Duration::ZERO, |at| {
        Duration::from_millis(millis_between(at, now()))
    });
    let grace_end = tokio::time::Instant::now() + LAUNCH_GRACE.saturating_sub(since_marked);
    let changed = |r: &JobRecord| (r.status, r.attempt) != marked || r.executor.is_some();
    let waited = keeping_alive(ctx, msg, async {
        while tokio::time::Instant::now() < grace_end {
            tokio::time::sleep(LAUNCH_POLL).await;
            match ctx.jobs.get(key).await? {
                Some((r, _)) if r.status.is_terminal() => return Ok(Err(Disposition::Ack)),
                Some((r, rev)) if changed(&r) => return Ok(Ok(Some((r, rev)))),
                Some(_) => {}
                None => return Ok(Err(Disposition::Ack)),
            }
        }
        Ok::<_, NatsError>(Ok(None))
    })
    .await?;
    let (record, revision) = match waited {
        Err(disposition) => return Ok(Err(disposition)),
        Ok(Some(recorded)) => return Ok(Ok(recorded)),
        Ok(None) => (record, revision),
    };
    let found = match ctx.backend.find(job).await {
        Ok(Some(handle)) => handle,
        Ok(None) => return Ok(Ok((record, revision))),
        Err(e) => {
            tracing::warn!(job_id = %job.id, error = %e, "cannot look for an unrecorded executor; retrying later");
            return Ok(Err(Disposition::Leave));
        }
    };
    tracing::info!(job_id = %job.id, executor = %found.id, "found an executor its middleware did not record");
    let recorded = ctx
        .jobs
        .transition_from(key, record, revision, |r| {
            !changed(r) && {
                r.executor = Some(found.clone());
                true
            }
        })
        .await?;
    Ok(match recorded {
        Transition::Changed(r, rev) => Ok((r, rev)),
        Transition::Unchanged(r, _) if r.status.is_terminal() => Err(Disposition::Ack),
        Transition::Unchanged(r, rev) => Ok((r, rev)),
        Transition::Missing => Err(Disposition::Ack),
    })
}

/// Marks the job running (from `record`, as read at `revision`) and launches its executor;
/// the executor's handle. Nobody else may have started the job meanwhile: the mark is a
/// compare-and-set from the status and attempt of `record`, with no executor, so two
/// middlewares given the same job never both launch it. `Err` with what to do with the
/// message when the job ended instead, or another middleware started it first.
async fn start(
    ctx: &Context,
    job: &JobMessage,
    key: &JobKey,
    record: JobRecord,
    revision: u64,
) -> Result<Result<ExecutorHandle, Disposition>, NatsError> {
    let started = now();
    let expected = (record.status, record.attempt);
    // Where it runs, when its executor runs beside this middleware (a Pod's node is the
    // cluster's choice).
    let here = ctx.backend.runs_executors_here().then(|| {
        (
            ctx.energy.config.node.clone(),
            ctx.energy.share_here(started),
        )
    });
    // From the record just read: one write, and no read unless someone wrote meanwhile.
    let moved = ctx
        .jobs
        .transition_from(key, record, revision, |r| {
            if (r.status, r.attempt) != expected || r.executor.is_some() {
                return false;
            }
            r.waiting = None;
            if r.cancel_requested {
                r.finish(Status::Cancelled, None, started);
            } else {
                r.status = Status::Running;
                r.started_at = Some(started);
                r.timings_ms.queue = Some(millis_between(r.created_at, started));
                r.attempt += 1;
                if let Some((node, share)) = &here {
                    r.node = Some(node.clone());
                    r.renewable_share = *share;
                }
            }
            true
        })
        .await?;
    let (running, revision) = match moved {
        Transition::Changed(r, revision) if r.status == Status::Running => (r, revision),
        // Started by another middleware: its executor is adopted once recorded.
        Transition::Unchanged(r, _) if !r.status.is_terminal() => {
            return Ok(Err(Disposition::Leave));
        }
        _ => return Ok(Err(Disposition::Ack)),
    };
    let inlined;
    let job = if ctx.backend.needs_inline_inputs() && job.work.inputs().is_none() {
        match inline_inputs(ctx, job).await? {
            Ok(job) => {
                inlined = job;
                &inlined
            }
            Err(message) => {
                let ending = Ending::failed(Reason::InvalidInput, message);
                ctx.end(key, &ending).await?;
                return Ok(Err(Disposition::Ack));
            }
        }
    } else {
        job
    };
    let handle = match ctx.backend.launch(job).await {
        Ok(handle) => handle,
        Err(e) if e.is_no_room_now() => {
            tracing::info!(job_id = %job.id, error = %e, "no room for the job's executor now; queued again");
            requeue(ctx, key, running.attempt).await?;
            return Ok(Err(Disposition::RetryLater));
        }
        Err(e) => {
            tracing::error!(job_id = %job.id, error = %e, "cannot launch executor");
            ctx.end(key, &Ending::failed(Reason::InternalError, e.to_string()))
                .await?;
            return Ok(Err(Disposition::Ack));
        }
    };
    // Usually nobody wrote since the job was marked running: one write, no read. A middleware
    // that started the job again meanwhile (this launch outlasted its grace, see
    // [`unrecorded_executor`]) records the same executor: `launch` adopts a job's existing one.
    let attempt = running.attempt;
    let recorded = ctx
        .jobs
        .transition_from(key, running, revision, |r| {
            (r.status, r.attempt) == (Status::Running, attempt) && r.executor.is_none() && {
                r.executor = Some(handle.clone());
                true
            }
        })
        .await?;
    if let Transition::Unchanged(r, _) = &recorded
        && r.status.is_terminal()
    {
        // Ended meanwhile (cancelled, or the executor already reported): nothing more to run.
        tracing::debug!(job_id = %job.id, "job ended while its executor started");
    }
    Ok(Ok(handle))
}

/// Puts back in the queue a job that was marked `running` (at `attempt`) but got no executor,
/// unless something else happened to it meanwhile (it was cancelled, or another middleware
/// recorded one).
async fn requeue(ctx: &Context, key: &JobKey, attempt: u32) -> Result<(), NatsError> {
    ctx.jobs
        .transition(key, |r| {
            (r.status, r.attempt) == (Status::Running, attempt) && r.executor.is_none() && {
                r.status = Status::Queued;
                r.started_at = None;
                r.timings_ms.queue = None;
                true
            }
        })
        .await?;
    Ok(())
}

/// How the executor a job is watched in came to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Started {
    /// Launched by this task: a cancel request written before `cancel` was registered made the
    /// compare-and-set that started the job fail (and the job end cancelled).
    Here,
    /// Found running: a cancel request written after its record was read, before `cancel` was
    /// registered, reached no one.
    Adopted,
}

/// Waits for the executor, enforcing the deadline and cancel requests, and keeps the message
/// alive with progress acks. Returns once the job is terminal or the middleware is stopping.
async fn watch(
    ctx: &Context,
    msg: &Message,
    job: &JobMessage,
    key: &JobKey,
    handle: &ExecutorHandle,
    started: Started,
    cancel: &CancelGuard,
) -> Result<Disposition, NatsError> {
    let deadline = tokio::time::Instant::now() + job.deadline() + ctx.backend.start_allowance();
    // Every later cancel request comes through `cancel` (see [`Started`]).
    let cancelled_early = started == Started::Adopted
        && matches!(ctx.jobs.get(key).await?, Some((r, _)) if r.cancel_requested);
    let supervised = if cancelled_early {
        Err(Interruption::CancelRequested)
    } else {
        supervise(ctx, msg, cancel, Some(deadline), ctx.backend.wait(handle)).await
    };
    // Every way out ends the record (an end that finds it ended already leaves it).
    let ended = match supervised {
        Ok(Err(e)) => internal_error(ctx, key, e.to_string()).await?,
        Ok(Ok(exit)) => {
            let why = &exit.description;
            record_outcome(ctx, msg, job, key, handle, why, deadline).await?
        }
        Err(Interruption::DeadlinePassed) => {
            kill(ctx, handle).await;
            let detail = "wall-time deadline exceeded; stopped by the middleware";
            let ending = Ending::failed(Reason::TimeLimit, detail);
            ctx.jobs.end(key, &ending).await?.into_current()
        }
        Err(Interruption::CancelRequested) => {
            kill(ctx, handle).await;
            ctx.jobs
                .end(key, &Ending::cancelled())
                .await?
                .into_current()
        }
        Err(Interruption::Stopping) => return Ok(Disposition::Leave),
    };
    count_finished(ctx, ended);
    clean_up(ctx, job, handle).await;
    // The record is terminal: a lost ack only brings the message back to be acked again.
    Ok(Disposition::AckNoWait)
}

/// Ends the record with what the executor behind `handle`, which ended (`why`), left: the
/// outcome its backend carried back, reported until `until`; else nothing more when the
/// executor ended the record itself, as it normally does, and `internal_error` when it did
/// not. The record as it is then.
async fn record_outcome(
    ctx: &Context,
    msg: &Message,
    job: &JobMessage,
    key: &JobKey,
    handle: &ExecutorHandle,
    why: &str,
    until: tokio::time::Instant,
) -> Result<Option<JobRecord>, NatsError> {
    match ctx.backend.outcome(job, handle).await {
        Ok(Some(outcome)) => match keeping_alive(ctx, msg, report(ctx, job, outcome, until)).await?
        {
            Reported::Recorded(_) => Ok(ctx.jobs.get(key).await?.map(|(r, _)| r)),
            Reported::EndedElsewhere(record) => Ok(Some(record)),
            Reported::NotRunning(_) | Reported::Missing => Ok(None),
        },
        Ok(None) => {
            let detail = format!("executor ended without reporting a result ({why})");
            internal_error(ctx, key, detail).await
        }
        // The backend's error says how the executor ended.
        Err(e) => internal_error(ctx, key, e.to_string()).await,
    }
}

/// Counts a job this middleware carried to its end, once `ended` is its terminal record.
fn count_finished(ctx: &Context, ended: Option<JobRecord>) {
    if let Some(record) = ended.filter(|r| r.status.is_terminal()) {
        ctx.finished(&record);
    }
}

async fn kill(ctx: &Context, handle: &ExecutorHandle) {
    if let Err(e) = ctx.backend.kill(handle).await {
        tracing::warn!(executor = %handle.id, error = %e, "cannot kill executor");
    }
}

/// Removes what the executor of `job` left (a failure is only logged: the backend's sweep
/// removes it later).
async fn clean_up(ctx: &Context, job: &JobMessage, handle: &ExecutorHandle) {
    if let Err(e) = ctx.backend.cleanup(handle).await {
        tracing::warn!(job_id = %job.id, error = %e, "cleanup after job failed");
    }
}

/// The job with the inputs of its input object inline; `Err` inside with the reason when the
/// object is not a valid input zip (the job's fault), outside when NATS failed.
async fn inline_inputs(
    ctx: &Context,
    job: &JobMessage,
) -> Result<Result<JobMessage, String>, NatsError> {
    Ok(inputs_of(&ctx.topology.outputs, job)
        .await?
        .map(|inputs| JobMessage {
            work: Work::Inputs(inputs),
            ..job.clone()
        }))
}

/// Reports an outcome its backend carried back, as an executor that talks to NATS would: the
/// zip stored, the record ended by compare-and-set (unless it ended meanwhile), retried while
/// NATS does not answer until `until`.
async fn report(
    ctx: &Context,
    job: &JobMessage,
    outcome: ExecutorReport,
    until: tokio::time::Instant,
) -> Result<Reported, NatsError> {
    let reported = report_outcome(
        &ctx.topology,
        &job.user,
        &job.id,
        outcome.report,
        outcome.zip.as_deref(),
        until,
    )
    .await?;
    match &reported {
        // Logged with the record, once the middleware reads it back (`Context::finished`).
        Reported::Recorded(_) => {}
        Reported::EndedElsewhere(record) => tracing::debug!(
            job_id = %job.id,
            status = record.status.as_str(),
            "job had ended already; its outcome is dropped"
        ),
        Reported::NotRunning(_) | Reported::Missing => {
            tracing::warn!(job_id = %job.id, "job record is not running; its outcome is dropped")
        }
    }
    Ok(reported)
}

/// Ends the job `internal_error` unless it ended already: the record as it is then.
async fn internal_error(
    ctx: &Context,
    key: &JobKey,
    detail: String,
) -> Result<Option<JobRecord>, NatsError> {
    let ending = Ending::failed(Reason::InternalError, detail);
    Ok(ctx.jobs.end(key, &ending).await?.into_current())
}
