//! The one supervision loop every job goes through while something runs for it (an executor,
//! or a numeric solve on a solver thread): wait for the work, a deadline, the owner's cancel
//! request or the middleware's shutdown, whichever comes first, keeping the job's message
//! alive with progress acks meanwhile.
//!
//! It decides nothing about the record: the caller ends the job as the [`Interruption`] says.

use std::{future::Future, time::Duration};

use async_nats::jetstream::{AckKind, Message};
use tokio::time::Instant;

use crate::{cancels::CancelGuard, context::Context};

/// What ended a supervised wait before its work completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interruption {
    /// The deadline passed first.
    DeadlinePassed,
    /// The job's owner asked to cancel it.
    CancelRequested,
    /// The middleware is stopping and its grace is over: the job is left for redelivery.
    Stopping,
}

/// Waits for `work` until `deadline` (none: no limit), a cancel request through `cancel`, or
/// the end of the middleware's grace after shutdown; acks `msg` in progress meanwhile. The work
/// wins a tie: a result that is there is never thrown away. `Err` with what came first.
pub(crate) async fn supervise<T>(
    ctx: &Context,
    msg: &Message,
    cancel: &CancelGuard,
    deadline: Option<Instant>,
    work: impl Future<Output = T>,
) -> Result<T, Interruption> {
    let mut progress = progress_ticks(ctx.progress_every);
    let stopping = async {
        ctx.shutdown.cancelled().await;
        tokio::time::sleep(ctx.grace).await;
    };
    tokio::pin!(stopping, work);
    loop {
        tokio::select! {
            biased;
            done = &mut work => return Ok(done),
            () = cancel.requested() => return Err(Interruption::CancelRequested),
            () = sleep_until_some(deadline) => return Err(Interruption::DeadlinePassed),
            () = &mut stopping => return Err(Interruption::Stopping),
            _ = progress.tick() => mark_in_progress(msg).await,
        }
    }
}

/// Runs `work` to its end whatever else happens, acking `msg` in progress meanwhile (work that
/// retries while NATS does not answer may take longer than the ack wait).
pub(crate) async fn keeping_alive<T>(
    ctx: &Context,
    msg: &Message,
    work: impl Future<Output = T>,
) -> T {
    let mut progress = progress_ticks(ctx.progress_every);
    tokio::pin!(work);
    loop {
        tokio::select! {
            biased;
            done = &mut work => return done,
            _ = progress.tick() => mark_in_progress(msg).await,
        }
    }
}

/// Ticks every `period`, the first one `period` from now. (Not `interval`, whose first tick
/// is due at once: awaiting it goes through the timer, whose millisecond wheel made every
/// supervised job, numeric ones included, about a millisecond slower.)
fn progress_ticks(period: Duration) -> tokio::time::Interval {
    tokio::time::interval_at(Instant::now() + period, period)
}

/// Tells the stream the message's job is still being worked on (resets its ack wait).
async fn mark_in_progress(msg: &Message) {
    if let Err(e) = msg.ack_with(AckKind::Progress).await {
        tracing::warn!(subject = %msg.subject, error = %e, "progress ack failed");
    }
}

/// Sleeps until `deadline`; forever when there is none.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
