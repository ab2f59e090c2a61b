//! Cancellation: one KV watch per middleware process over the job records. A cancel request on
//! a queued job ends it at once (and wakes a task waiting to start it); on a running job it
//! wakes the task that owns the executor.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::jetstream::kv;
use cola_wire::{
    JobKey, Status,
    job::now,
    nats::{JobStore, Transition, decode},
};
use futures::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Jobs this process runs (or waits to start), by KV key, each with the signal that cancels it.
#[derive(Clone, Default)]
pub struct CancelBoard {
    running: Arc<Mutex<HashMap<JobKey, Arc<Notify>>>>,
}

impl CancelBoard {
    /// Registers a job; the returned guard unregisters it when dropped.
    pub fn register(&self, key: &JobKey) -> CancelGuard {
        let notify = Arc::new(Notify::new());
        self.running
            .lock()
            .expect("not poisoned")
            .insert(key.clone(), notify.clone());
        CancelGuard {
            board: self.clone(),
            key: key.clone(),
            notify,
        }
    }

    fn cancel(&self, key: &JobKey) -> bool {
        match self.running.lock().expect("not poisoned").get(key) {
            Some(notify) => {
                notify.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A running job's registration on the [`CancelBoard`].
pub struct CancelGuard {
    board: CancelBoard,
    key: JobKey,
    notify: Arc<Notify>,
}

impl CancelGuard {
    /// Resolves when the owner asked to cancel this job.
    pub async fn requested(&self) {
        self.notify.notified().await
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.board
            .running
            .lock()
            .expect("not poisoned")
            .remove(&self.key);
    }
}

/// Watches every job record for cancel requests until `shutdown`.
pub async fn watch(jobs: JobStore, board: CancelBoard, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        match jobs.kv.watch_all().await {
            Ok(mut updates) => loop {
                let entry = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    entry = updates.next() => entry,
                };
                match entry {
                    Some(Ok(entry)) => on_update(&jobs, &board, entry).await,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "job watch failed; watching again");
                        break;
                    }
                    None => break,
                }
            },
            Err(e) => tracing::warn!(error = %e, "cannot watch job records; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn on_update(jobs: &JobStore, board: &CancelBoard, entry: kv::Entry) {
    // Cheap filter first: almost no update is a cancel request.
    if !matches!(entry.operation, kv::Operation::Put)
        || !contains(&entry.value, b"\"cancel_requested\":true")
    {
        return;
    }
    let (Some(key), Ok(record)) = (JobKey::parse(&entry.key), decode(&entry.key, &entry.value))
    else {
        return;
    };
    match record.status {
        Status::Running => {
            board.cancel(&key);
        }
        Status::Queued => {
            // Any replica may end a queued job; the compare-and-set lets exactly one win.
            let ended = jobs
                .transition(&key, |r| {
                    r.status == Status::Queued && {
                        r.finish(Status::Cancelled, None, now());
                        true
                    }
                })
                .await;
            match ended {
                // A replica started it in between: tell the owner, if it is this process.
                Ok(Transition::Unchanged(r, _)) if r.status == Status::Running => {
                    board.cancel(&key);
                }
                // Ended: a task waiting to start it (a numeric job waiting for a solver thread)
                // stops waiting.
                Ok(Transition::Changed(..)) => {
                    board.cancel(&key);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(key = %entry.key, error = %e, "cannot cancel queued job"),
            }
        }
        _ => {}
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
