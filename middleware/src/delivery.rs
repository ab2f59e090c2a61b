//! One delivered job message, from its dispatch to its settlement: a numeric job to
//! [`crate::numeric`], a program to [`crate::job`], and the stream told what became of it.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{AckKind, Message};
use cola_wire::{JobKey, JobMessage, RequestId};
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
    };
    if let Err(e) = acked {
        tracing::warn!(error = %e, "acknowledging a job message failed; it will be redelivered");
    }
}
