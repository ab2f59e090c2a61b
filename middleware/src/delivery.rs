//! One delivered job message, from its dispatch to its settlement: a numeric job to
//! [`crate::numeric`], a program to [`crate::job`], and the stream told what became of it.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{AckKind, Message};
use cola_wire::{Ending, JobKey, JobMessage, RequestId, Status, energy::Waiting, nats::Transition};
use tracing::Instrument;

use crate::{
    context::{Context, Disposition, RETRY_LATER},
    scheduler::Kind,
};

/// Handles one delivered message, decoded as `job` of `kind` (see [`Kind::of`]), to the end.
pub async fn handle(ctx: Arc<Context>, msg: Message, job: JobMessage, kind: Kind) {
    let key = JobKey::new(&job.user, &job.id);
    let _in_flight = ctx.metrics.in_flight(&job.language);
    let request_id = job.request_id.as_ref().map(RequestId::as_str);
    let span = tracing::info_span!(
        "job",
        job_id = %job.id,
        user = %job.user,
        language = %job.language,
        request_id,
    );
    let driven = match kind {
        Kind::Numeric => {
            crate::numeric::drive(&ctx, &msg, &job, &key)
                .instrument(span)
                .await
        }
        Kind::Program => {
            crate::job::drive(&ctx, &msg, &job, &key)
                .instrument(span)
                .await
        }
    };
    let disposition = match driven {
        Ok(d) => d,
        Err(e) => {
            // NATS trouble: leave the message; it comes back after the ack wait.
            tracing::warn!(job_id = %job.id, error = %e, "job left for redelivery");
            Disposition::Leave
        }
    };
    settle(&msg, disposition).await;
}

/// A message that is not a job message: it can never run, so it is never delivered again.
pub async fn terminate_undecodable(msg: Message, error: serde_json::Error) {
    tracing::error!(subject = %msg.subject, %error, "undecodable job message; terminating it");
    settle(&msg, Disposition::Terminate).await;
}

/// A time-shiftable job that waits for renewable power: its record says so (once), and its
/// message goes back to the stream, to come again after `wait`. A job whose owner asked to
/// cancel it meanwhile ends cancelled; one that ended or has no record is acknowledged.
pub async fn wait_for_power(ctx: Arc<Context>, msg: Message, job: JobMessage, wait: Duration) {
    let key = JobKey::new(&job.user, &job.id);
    let marked = ctx
        .jobs
        .transition(&key, |r| {
            r.status == Status::Queued && (r.cancel_requested || r.waiting.is_none()) && {
                if r.cancel_requested {
                    r.end(&Ending::cancelled(), cola_wire::job::now());
                } else {
                    r.waiting = Some(Waiting::RenewablePower);
                }
                true
            }
        })
        .await;
    let disposition = match marked {
        Ok(Transition::Changed(r, _)) if r.status.is_terminal() => {
            ctx.finished(&r);
            Disposition::Ack
        }
        Ok(Transition::Changed(..)) => {
            tracing::info!(job_id = %job.id, wait_ms = wait.as_millis() as u64, "job waits for renewable power");
            Disposition::WaitFor(wait)
        }
        Ok(Transition::Unchanged(r, _)) if r.status.is_terminal() => Disposition::Ack,
        Ok(Transition::Unchanged(..)) => Disposition::WaitFor(wait),
        Ok(Transition::Missing) => Disposition::Ack,
        Err(e) => {
            tracing::warn!(job_id = %job.id, error = %e, "job left for redelivery");
            Disposition::Leave
        }
    };
    settle(&msg, disposition).await;
}

/// A message whose job was not started because the middleware is stopping: back to the
/// stream at once, for another replica.
pub async fn give_back(msg: Message) {
    settle(&msg, Disposition::Leave).await;
}

/// Tells the stream what became of `msg`.
async fn settle(msg: &Message, disposition: Disposition) {
    let acked = match disposition {
        Disposition::Ack => msg.double_ack().await,
        Disposition::AckNoWait => msg.ack().await,
        Disposition::Terminate => msg.ack_with(AckKind::Term).await,
        Disposition::Leave => {
            msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await
        }
        Disposition::RetryLater => msg.ack_with(AckKind::Nak(Some(RETRY_LATER))).await,
        Disposition::WaitFor(wait) => msg.ack_with(AckKind::Nak(Some(wait))).await,
    };
    if let Err(e) = acked {
        tracing::warn!(error = %e, "acknowledging a job message failed; it will be redelivered");
    }
}
