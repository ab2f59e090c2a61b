//! The numeric runtime (`numeric` on `cola.numeric`): jobs that state a problem are
//! solved here, in-process, with the `cola-numeric` library. No compiler, no process, no
//! backend: the [`Backend`](crate::Backend) trait is for executors.
//!
//! One job, from delivery to ack:
//! 1. know its record: on a first delivery, the record is the one the gateway created, at the
//!    revision the message carries (`Cola-Record-Revision`), so it is not read at all; on a
//!    redelivery it is read, while step 2 starts (terminal: ack; cancel requested: end
//!    `cancelled`);
//! 2. validate, solve, render `result.json`, `table.csv` and `plot.svg` and zip them, under
//!    the job's time budget (`min(wall_time_ms, cpu_time_ms)`): inline when that takes at most
//!    [`INLINE_BUDGET`] (most problems take tens of microseconds, less than a thread hand-off),
//!    else from the start on a fixed pool of solver threads (`solver_pool.rs`), so a pathological
//!    problem holds one solver thread for at most its budget and an async worker for at most
//!    [`INLINE_BUDGET`]. The pool is shared fairly between users (one queue per user, no user
//!    holding more than half of the threads), and the budget counts from when a solver thread
//!    takes the job, never while it waits for one;
//! 3. store the zip as `<user>/<job-id>-output.zip`;
//! 4. end the record by compare-and-set from the revision of step 1 (falling back to the usual
//!    read-modify-write loop if somebody wrote in between: a cancel request, say, which then
//!    wins), then the message is acked.
//!
//! A job that solves within [`RUNNING_AFTER`] never writes `running`: it goes from `queued` to
//! its end in one write, which is most of what a numeric job costs. A slower one is registered
//! for cancel requests and kept alive with progress acks; it is marked `running` when a solver
//! thread takes it (until then it is `queued`), and the middleware's backstop deadline (its
//! budget and `BUDGET_SLACK`) starts then too.
//!
//! A job that is over without its answer (cancelled, ended by the backstop, or left at
//! shutdown) drops its `Solving`, which raises the solve's [`StopFlag`]: a solve not started
//! is skipped, a running one stops at its next budget check. No solver thread works for a job
//! whose record is terminal.
//!
//! Outcomes: converged → `succeeded`; did not converge → `failed`/`did_not_converge`; out of
//! time → `failed`/`time_limit`; NaN or infinity → `failed`/`runtime_error`, with the message
//! (and any warnings) in the job's `stderr`. The zip is produced whatever the outcome.
//!
//! Solving is deterministic, so a redelivered job (its middleware died mid-way) is simply
//! solved again; the compare-and-set makes sure it ends once.

use std::{
    io::Cursor,
    task::Poll,
    time::{Duration, Instant},
};

use async_nats::jetstream::{Message, object_store::ObjectStore};
pub use cola_numeric::job::{MAX_RECORD_RESULT_BYTES, Solved, solve, zip_files};
use cola_numeric::{
    Budget, Convergence, StopFlag,
    job::{invalid, render, solve_unless_stopped},
};
use cola_wire::{
    Ending, JobKey, JobMessage, JobRecord, Limits, Reason, Status,
    job::millis_between,
    job::now,
    names,
    nats::{NatsError, Transition, put_new_object, retry_until},
};
use serde_json::Value;

use crate::{
    context::{Context, Disposition},
    solver_pool::Solving,
    supervise::{Interruption, keeping_alive, supervise},
};

/// A job still solving (or waiting for a solver thread) after this long can be cancelled, and
/// is marked `running` once a solver thread has it.
pub const RUNNING_AFTER: Duration = Duration::from_millis(250);
/// Numeric jobs one middleware process holds at once (solving or waiting for a solver), by
/// default (`--numeric-in-flight`).
pub const MAX_IN_FLIGHT: usize = 256;
/// Time allowed past a job's budget (counted from when a solver thread took it) before the
/// middleware gives up on its solver thread.
const BUDGET_SLACK: Duration = Duration::from_secs(5);

/// Runs one numeric job to its end (see the module's documentation).
pub(crate) async fn drive(
    ctx: &Context,
    msg: &Message,
    job: &JobMessage,
    key: &JobKey,
) -> Result<Disposition, NatsError> {
    let received = Instant::now();
    let budget = budget_limit(&job.limits);
    let first_delivery = msg.info().is_ok_and(|info| info.delivered <= 1);
    let (mut record, mut revision, mut solving) =
        match record_and_solve(ctx, msg, job, key, budget, first_delivery).await? {
            Ok(started) => started,
            Err(disposition) => return Ok(disposition),
        };
    let read = received.elapsed();
    let solved = tokio::select! {
        biased;
        solved = &mut solving => solved,
        () = tokio::time::sleep(RUNNING_AFTER) => {
            match follow_slow_solve(ctx, msg, job, key, &mut solving, (&mut record, &mut revision)).await? {
                Followed::Solved(solved) => solved,
                Followed::Over(disposition) => return Ok(disposition),
            }
        }
    };
    // When a solver thread started it (the job's queue time ends there).
    let started_at = solving
        .started
        .instant()
        .map_or_else(|| timestamp_of(received), timestamp_of);
    let solved = match solved {
        Ok(solved) => solved,
        Err(panic) => {
            tracing::error!(job_id = %job.id, panic = %panic, "numeric solver panicked");
            let detail = format!("the numeric solver failed: {panic}");
            ctx.end(key, &Ending::failed(Reason::InternalError, detail))
                .await?;
            return Ok(Disposition::Ack);
        }
    };
    let solved_after = received.elapsed();
    let until = tokio::time::Instant::from_std(received) + budget + BUDGET_SLACK;
    let output_object = match store_zip(ctx, msg, job, &solved, first_delivery, until).await {
        Ok(stored) => stored,
        Err(e) => {
            tracing::error!(job_id = %job.id, error = %e, "cannot store a numeric output zip");
            let detail = format!("the output zip could not be stored: {e}");
            ctx.end(key, &Ending::failed(Reason::InternalError, detail))
                .await?;
            return Ok(Disposition::Ack);
        }
    };
    let stored_after = received.elapsed();
    let ended = ctx
        .jobs
        .transition_from(key, record, revision, |r| {
            if r.cancel_requested {
                // Asked before the answer was recorded: the owner's word wins.
                r.end(&Ending::cancelled(), now());
            } else {
                apply(&solved, r, started_at, output_object.clone());
            }
            true
        })
        .await?;
    if let Transition::Changed(r, _) = &ended {
        ctx.finished(r);
        tracing::debug!(
            job_id = %job.id,
            status = r.status.as_str(),
            reason = r.reason.map(Reason::as_str),
            solve_us = solved.solve.as_micros() as u64,
            read_us = read.as_micros() as u64,
            solved_us = solved_after.as_micros() as u64,
            stored_us = stored_after.as_micros() as u64,
            ended_us = received.elapsed().as_micros() as u64,
            "numeric job ended"
        );
    }
    // Solving again is harmless: a lost ack needs no confirmation round trip.
    Ok(Disposition::AckNoWait)
}

/// The job's record (at its revision) and its solve, started (steps 1 and 2 of the module's
/// documentation). On a first delivery the record is the one the gateway created, at the
/// revision the message carries, and is not read; on a redelivery it is read while the solve
/// starts. `Err` with what to do with the message when the job must not be solved: it has no
/// record, has ended, or was cancelled (then it is ended here).
async fn record_and_solve(
    ctx: &Context,
    msg: &Message,
    job: &JobMessage,
    key: &JobKey,
    budget: Duration,
    first_delivery: bool,
) -> Result<Result<(JobRecord, u64, Solving<Solved>), Disposition>, NatsError> {
    let statement = job.work.problem().unwrap_or(&Value::Null);
    if let Some(revision) = first_delivery.then(|| created_revision(msg)).flatten() {
        let solving = solve_now(ctx, job, statement, budget);
        return Ok(Ok((
            JobRecord::queued(job, Vec::new(), 0),
            revision,
            solving,
        )));
    }
    // The record is asked for first, and arrives while the problem is solved.
    let reading = ctx.jobs.get(key);
    tokio::pin!(reading);
    let early = futures::poll!(&mut reading);
    let solving = solve_now(ctx, job, statement, budget);
    let read = match early {
        Poll::Ready(read) => read,
        Poll::Pending => reading.await,
    };
    let Some((record, revision)) = read? else {
        tracing::warn!(job_id = %job.id, "job has no record (expired or never created); dropping it");
        return Ok(Err(Disposition::Ack));
    };
    if record.status.is_terminal() {
        return Ok(Err(Disposition::Ack));
    }
    if record.cancel_requested {
        let ending = Ending::cancelled();
        if let Transition::Changed(r, _) = ctx.jobs.end_from(key, record, revision, &ending).await?
        {
            ctx.finished(&r);
        }
        return Ok(Err(Disposition::Ack));
    }
    Ok(Ok((record, revision, solving)))
}

/// The revision of the record the gateway created for the message's job, as the message says.
fn created_revision(msg: &Message) -> Option<u64> {
    msg.headers
        .as_ref()?
        .get(names::RECORD_REVISION_HEADER)?
        .as_str()
        .parse()
        .ok()
}

/// Stores the solution's zip, if it has one, as the job's output object; its name. Retried
/// while NATS does not answer, until `until`; a store that refuses the zip (full) is an error,
/// which ends the job rather than have it delivered again and again.
async fn store_zip(
    ctx: &Context,
    msg: &Message,
    job: &JobMessage,
    solved: &Solved,
    first_delivery: bool,
    until: tokio::time::Instant,
) -> Result<Option<String>, NatsError> {
    let Some(zip) = &solved.zip else {
        return Ok(None);
    };
    let name = names::output_object(&job.user, &job.id);
    let name = &name;
    let store = retry_until(until, "storing a numeric output zip", || async move {
        // A first delivery has no earlier zip to replace: one round trip stores it.
        if first_delivery {
            put_new_object(&ctx.numeric.js, names::OUTPUTS_BUCKET, name, zip).await
        } else {
            put_zip(&ctx.numeric.outputs, name, zip).await
        }
    });
    keeping_alive(ctx, msg, store).await?;
    ctx.stored.add(&job.user, zip.len() as u64);
    Ok(Some(name.clone()))
}

/// How a solve still going after [`RUNNING_AFTER`] ended.
enum Followed {
    /// It was solved.
    Solved(Result<Solved, String>),
    /// The job is over without its answer (cancelled, ended by the backstop, or the middleware
    /// is stopping): dropping its [`Solving`] stops the solver.
    Over(Disposition),
}

/// What a slow solve did first.
enum FirstOf<T> {
    /// It was solved (it never waited for a solver thread, or finished at once).
    Answered(T),
    /// A solver thread started it at this instant.
    Started(Instant),
}

/// Follows a slow solve: registers the job for cancel requests and keeps its message alive
/// while it waits for a solver thread (the record stays `queued`) and while it solves (marked
/// `running` when a thread starts it). The backstop deadline counts from that start, as the
/// solve's own budget does. `record`, at `revision`, is kept up to date.
async fn follow_slow_solve(
    ctx: &Context,
    msg: &Message,
    job: &JobMessage,
    key: &JobKey,
    solving: &mut Solving<Solved>,
    (record, revision): (&mut JobRecord, &mut u64),
) -> Result<Followed, NatsError> {
    let cancel = ctx.cancels.register(key);
    let first = supervise(ctx, msg, &cancel, None, async {
        tokio::select! {
            biased;
            solved = &mut solving.answer => FirstOf::Answered(solved),
            started = &mut solving.started => FirstOf::Started(started),
        }
    })
    .await;
    let started = match first {
        Ok(FirstOf::Answered(solved)) => return Ok(Followed::Solved(solved)),
        Ok(FirstOf::Started(started)) => started,
        Err(interruption) => return over(ctx, job, key, interruption).await,
    };
    let marked = ctx
        .jobs
        .transition_from(key, record.clone(), *revision, |r| {
            r.status = Status::Running;
            r.started_at = Some(timestamp_of(started));
            true
        })
        .await?;
    match marked {
        Transition::Changed(r, rev) => (*record, *revision) = (r, rev),
        Transition::Unchanged(..) | Transition::Missing => {
            return Ok(Followed::Over(Disposition::Ack));
        }
    }
    if record.cancel_requested {
        return over(ctx, job, key, Interruption::CancelRequested).await;
    }
    let deadline =
        tokio::time::Instant::from_std(started) + budget_limit(&job.limits) + BUDGET_SLACK;
    match supervise(ctx, msg, &cancel, Some(deadline), &mut solving.answer).await {
        Ok(solved) => Ok(Followed::Solved(solved)),
        Err(interruption) => over(ctx, job, key, interruption).await,
    }
}

/// Ends a job whose solve is over without its answer, as `interruption` says.
async fn over(
    ctx: &Context,
    job: &JobMessage,
    key: &JobKey,
    interruption: Interruption,
) -> Result<Followed, NatsError> {
    let ending = match interruption {
        Interruption::Stopping => return Ok(Followed::Over(Disposition::Leave)),
        // Cancelled while running, or ended cancelled while waiting for a thread.
        Interruption::CancelRequested => Ending::cancelled(),
        Interruption::DeadlinePassed => {
            tracing::error!(job_id = %job.id, "solver did not stop at its time budget");
            let detail = "the solver did not stop at its time budget";
            Ending::failed(Reason::TimeLimit, detail)
        }
    };
    ctx.end(key, &ending).await?;
    Ok(Followed::Over(Disposition::Ack))
}

/// The wall-clock time of `instant` (a moment in the past).
fn timestamp_of(instant: Instant) -> cola_wire::job::Timestamp {
    now() - chrono::TimeDelta::from_std(instant.elapsed()).unwrap_or_default()
}

/// Solves inline if that is quick, else hands the solve to the solver pool, in its user's
/// queue. Dropping the returned [`Solving`] stops the solve.
fn solve_now(
    ctx: &Context,
    job: &JobMessage,
    statement: &Value,
    budget: Duration,
) -> Solving<Solved> {
    let started = Instant::now();
    match solve_inline(statement, budget) {
        Some(solved) => Solving::ready(solved, started),
        None => {
            let statement = statement.clone();
            let stop = StopFlag::new();
            let stopped = stop.clone();
            ctx.numeric
                .pool
                .run(job.user.as_str(), job.id, stop, move || {
                    solve_unless_stopped(&statement, budget, &stopped)
                })
        }
    }
}

fn budget_limit(limits: &Limits) -> Duration {
    cola_numeric::job::budget_of(limits)
}

async fn put_zip(outputs: &ObjectStore, name: &str, zip: &[u8]) -> Result<(), NatsError> {
    outputs
        .put(name, &mut Cursor::new(zip))
        .await
        .map(drop)
        .map_err(|e| NatsError::nats("store numeric output zip", e))
}

/// Ends `record` with the outcome `solved`.
fn apply(
    solved: &Solved,
    record: &mut JobRecord,
    started_at: cola_wire::job::Timestamp,
    output: Option<String>,
) {
    let started_at = record.started_at.unwrap_or(started_at);
    record.started_at = Some(started_at);
    record.timings_ms.queue = Some(millis_between(record.created_at, started_at));
    record.timings_ms.run = Some(solved.solve.as_millis() as u64);
    record.attempt += 1;
    record.result = solved.result.clone();
    record.stderr = cola_wire::job::preview(&solved.stderr);
    record.output_object = output;
    record.finish(solved.status, solved.reason, now());
}

/// Solves taking at most this long run inline, on the task that handles the job: most
/// problems take tens of microseconds, less than handing them to a solver thread costs.
pub const INLINE_BUDGET: Duration = Duration::from_micros(200);
/// Most table cells a solution rendered inline may have (rendering costs about a tenth of a
/// microsecond per cell and per plotted point).
pub const INLINE_RENDER_CELLS: usize = 4_000;

/// [`solve`] within [`INLINE_BUDGET`], for the async task itself; `None` (having spent at most
/// that) when the problem needs longer or its outputs are large: then it goes to a solver
/// thread, from the start, with its whole budget.
pub fn solve_inline(statement: &Value, budget: Duration) -> Option<Solved> {
    let started = Instant::now();
    let problem = match cola_numeric::parse_problem(statement) {
        Ok(problem) => problem,
        Err(error) => return Some(invalid(&error, started)),
    };
    let inline = budget.min(INLINE_BUDGET);
    let solution = cola_numeric::solve(&problem, &Budget::until(started + inline));
    let cells = solution.table.rows.len() * solution.table.header.len().max(1);
    if (solution.outcome == Convergence::OutOfTime && budget > inline)
        || cells > INLINE_RENDER_CELLS
    {
        return None;
    }
    Some(render(statement, &solution, budget, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{context::SOLVER_STACK_BYTES, solver_pool::SolverPool};
    use std::io::Read as _;

    fn files_of(zip: &[u8]) -> Vec<(String, String)> {
        let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
        (0..archive.len())
            .map(|i| {
                let mut entry = archive.by_index(i).unwrap();
                let mut text = String::new();
                entry.read_to_string(&mut text).unwrap();
                (entry.name().to_owned(), text)
            })
            .collect()
    }

    #[test]
    fn outcomes_map_to_status_and_reason() {
        let budget = Duration::from_secs(10);
        let converged = solve(
            &cola_numeric::example(cola_numeric::Method::Bisection),
            budget,
        );
        assert_eq!(
            (converged.status, converged.reason),
            (Status::Succeeded, None)
        );
        let root = converged.result.as_ref().unwrap()["root"].as_f64().unwrap();
        assert!((root - 1.365_230_013_414_096_8).abs() < 1e-9, "{root}");
        let names: Vec<_> = files_of(converged.zip.as_ref().unwrap())
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["result.json", "table.csv", "plot.svg"]);

        let stuck = serde_json::json!({"method": "bisection", "f": "x^3 + 4*x^2 - 10", "a": 1, "b": 2, "tol": 1e-12, "max_iter": 3});
        let stuck = solve(&stuck, budget);
        assert_eq!(
            (stuck.status, stuck.reason),
            (Status::Failed, Some(Reason::DidNotConverge))
        );
        let files = files_of(stuck.zip.as_ref().unwrap());
        assert!(
            files[1]
                .1
                .starts_with("iteration,a,b,midpoint,f_midpoint,error\n"),
            "{}",
            files[1].1
        );
        assert_eq!(files[1].1.lines().count(), 4);

        let invalid = solve(&serde_json::json!({"method": "bisection"}), budget);
        assert_eq!(
            (invalid.status, invalid.reason),
            (Status::Failed, Some(Reason::InvalidInput))
        );
        assert!(
            invalid.zip.is_none() && invalid.stderr.contains("problem."),
            "{}",
            invalid.stderr
        );
    }

    #[test]
    fn quick_problems_solve_inline_and_the_others_go_to_a_solver_thread() {
        let budget = Duration::from_secs(10);
        // (A tiny one: a debug build is ten times slower than the benchmarked release build.)
        let tiny = serde_json::json!({"method": "gauss", "A": [[2]], "b": [4]});
        // Whether a solve fits the inline budget is a matter of time: a try the scheduler
        // preempts may overrun it, so the tiny problem must solve inline in one of 20 tries.
        let quick = (0..20)
            .find_map(|_| solve_inline(&tiny, budget))
            .expect("a tiny problem solves inline");
        assert_eq!(quick.status, Status::Succeeded);
        let invalid = solve_inline(&serde_json::json!({"method": "nope"}), budget).unwrap();
        assert_eq!(invalid.reason, Some(Reason::InvalidInput));
        let huge = serde_json::json!({"method": "romberg", "f": "sin(x)*exp(cos(x))", "a": 0, "b": 1000, "tol": 1e-15, "max_iter": 25});
        let started = Instant::now();
        assert!(solve_inline(&huge, budget).is_none());
        // It gave up at the inline budget, not at the job's (10 s); the bound is loose, for
        // a loaded machine.
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        // With a budget no longer than the inline one, running out is the answer.
        let spent = solve_inline(&huge, Duration::from_micros(100)).unwrap();
        assert_eq!(spent.reason, Some(Reason::TimeLimit));
        // Large outputs are rendered on a solver thread.
        let long = serde_json::json!({"method": "euler", "f": "y", "t0": 0, "y0": 1, "t_end": 1, "h": 0.0001});
        assert!(solve_inline(&long, budget).is_none());
    }

    #[test]
    fn a_spent_budget_is_a_time_limit() {
        let huge = serde_json::json!({"method": "euler", "f": "sin(t*y) + cos(y)^2", "t0": 0, "y0": 1, "t_end": 100000, "h": 1});
        let solved = solve(&huge, Duration::ZERO);
        assert_eq!(
            (solved.status, solved.reason),
            (Status::Failed, Some(Reason::TimeLimit)),
            "{}",
            solved.stderr
        );
        assert!(solved.zip.is_some() && solved.stderr.contains("time budget"));
    }

    #[test]
    fn every_example_solves_on_a_solver_thread() {
        // The stack size is part of the contract with the library: check it in a debug build.
        let pool = SolverPool::new(1, SOLVER_STACK_BYTES);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for method in cola_numeric::methods() {
            let example = method.example.clone();
            let solved = runtime
                .block_on(
                    pool.run("u", cola_wire::JobId::new(), StopFlag::new(), move || {
                        solve(&example, Duration::from_secs(30))
                    }),
                )
                .unwrap();
            assert_eq!(
                solved.status,
                Status::Succeeded,
                "{}: {}",
                method.name,
                solved.stderr
            );
        }
        // The deepest expressions validation accepts, differentiated symbolically, and the
        // largest linear system.
        let deep = |depth: usize| format!("{}x{}", "sin(1+".repeat(depth), ")".repeat(depth));
        let n = cola_numeric::limits::MAX_DIMENSION;
        let matrix: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| {
                        if i == j {
                            4.0 * n as f64
                        } else {
                            1.0 / (1 + i + j) as f64
                        }
                    })
                    .collect()
            })
            .collect();
        let mut hard = vec![
            serde_json::json!({"method": "gauss", "A": matrix, "b": vec![1.0; n]}),
            serde_json::json!({"method": "lu", "A": matrix, "b": vec![1.0; n]}),
        ];
        for depth in (8..=64).step_by(8) {
            let statement = serde_json::json!({"method": "newton", "f": deep(depth), "x0": 0.5, "tol": 1e-10, "max_iter": 50});
            if cola_numeric::parse_problem(&statement).is_ok() {
                hard.push(statement);
            }
        }
        assert!(hard.len() > 3, "some deep expressions validate");
        for statement in hard {
            let solved = runtime
                .block_on(
                    pool.run("u", cola_wire::JobId::new(), StopFlag::new(), move || {
                        solve(&statement, Duration::from_secs(30))
                    }),
                )
                .unwrap();
            assert_ne!(
                solved.reason,
                Some(Reason::InvalidInput),
                "{}",
                solved.stderr
            );
        }
        let panicked = runtime.block_on(pool.run(
            "u",
            cola_wire::JobId::new(),
            StopFlag::new(),
            || -> () { panic!("boom") },
        ));
        assert_eq!(panicked.unwrap_err(), "boom");
        // The thread survives a panic.
        assert_eq!(
            runtime
                .block_on(pool.run("u", cola_wire::JobId::new(), StopFlag::new(), || 7))
                .unwrap(),
            7
        );
    }
}
