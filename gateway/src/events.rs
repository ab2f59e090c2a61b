//! Job state changes, live: ONE KV watch per gateway process over the whole `cola-jobs` bucket,
//! fanned out in memory to whoever waits on a user's jobs (a `?wait` request today, a live
//! stream of a user's jobs tomorrow).
//!
//! Subscriptions are per user (a live page), or per job of a user (a `?wait`), matching the
//! `<user>.<job-id>` keys: a change is decoded and sent only when someone listens to its user or
//! to that job, a subscriber only ever sees its user's jobs, and a `?wait` is woken only by its
//! own job (32 clients of one user waiting at once are not each woken by all 32 jobs).
//! Subscribe first, then read the current record: nothing written after the read can be missed.
//! When the watch ends or the connection comes back after a loss (a restarted server forgets
//! the watch), a new watch resumes after the last revision seen, and every listener gets
//! [`JobEvent::Resync`] to read again what it follows.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use async_nats::jetstream::kv;
use cola_wire::{JobId, JobKey, JobRecord, UserId, nats};
use futures::StreamExt as _;
use tokio::{sync::broadcast, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{GatewayError, connection::Reconnects};

/// Events a slow subscriber may fall behind by before it is told to resync.
const CHANNEL_CAPACITY: usize = 256;
/// The same for a listener to one job (a job changes a few times in its life).
const JOB_CHANNEL_CAPACITY: usize = 16;
/// Longest pause between two attempts to watch again.
const MAX_REWATCH_BACKOFF: Duration = Duration::from_secs(5);

/// A change to one of a user's jobs.
#[derive(Debug, Clone)]
pub enum JobEvent {
    /// The job's record was written; `revision` orders the writes.
    Updated {
        id: JobId,
        revision: u64,
        record: Arc<JobRecord>,
    },
    /// The job's record was deleted or purged.
    Removed { id: JobId, revision: u64 },
    /// Changes may have been missed: read the current state again.
    Resync,
}

/// The fan-out side: who listens to which user's jobs, and who waits for which one job.
#[derive(Clone, Default)]
pub struct JobEvents {
    hub: Arc<Hub>,
}

/// What a listener follows: every job of a user (a live page), or one job (a `?wait`), so
/// that a change wakes only those who follow it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Topic {
    User(UserId),
    Job(UserId, JobId),
}

#[derive(Default)]
struct Hub {
    topics: Mutex<HashMap<Topic, broadcast::Sender<JobEvent>>>,
}

impl Hub {
    fn topics(&self) -> MutexGuard<'_, HashMap<Topic, broadcast::Sender<JobEvent>>> {
        // The map stays consistent even if a holder panicked: every update is one insert/remove.
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl JobEvents {
    /// Starts listening to `user`'s jobs. Events flow from this call on.
    pub fn subscribe(&self, user: &UserId) -> UserEvents {
        self.listen(Topic::User(user.clone()), CHANNEL_CAPACITY)
    }

    /// Starts listening to `user`'s job `id` only. Events flow from this call on.
    pub fn subscribe_job(&self, user: &UserId, id: JobId) -> UserEvents {
        self.listen(Topic::Job(user.clone(), id), JOB_CHANNEL_CAPACITY)
    }

    fn listen(&self, topic: Topic, capacity: usize) -> UserEvents {
        let receiver = self
            .hub
            .topics()
            .entry(topic.clone())
            .or_insert_with(|| broadcast::channel(capacity).0)
            .subscribe();
        UserEvents {
            topic,
            receiver,
            hub: self.hub.clone(),
        }
    }

    /// How many users or jobs someone listens to (for tests and metrics).
    pub fn watched_users(&self) -> usize {
        self.hub.topics().len()
    }

    /// The senders of whoever follows `user` or its job `id`, and whether somebody follows
    /// the user (and so every change, not only a job's end).
    fn senders(&self, user: UserId, id: JobId) -> (Vec<broadcast::Sender<JobEvent>>, bool) {
        let topics = self.hub.topics();
        if topics.is_empty() {
            return (Vec::new(), false);
        }
        let mut senders = Vec::new();
        let job = Topic::Job(user, id);
        senders.extend(topics.get(&job).cloned());
        let Topic::Job(user, _) = job else {
            unreachable!("just built as a job topic")
        };
        let user = topics.get(&Topic::User(user)).cloned();
        let follows_user = user.is_some();
        senders.extend(user);
        (senders, follows_user)
    }

    /// Hands one watched KV entry to its listeners, if there are any.
    fn dispatch(&self, entry: kv::Entry) {
        let Some(key) = JobKey::parse(&entry.key) else {
            tracing::warn!(key = %entry.key, "ignoring a job record under a malformed key");
            return;
        };
        let id = key.id();
        let (senders, follows_user) = self.senders(key.user().clone(), id);
        if senders.is_empty() {
            return;
        }
        // Who waits for one job waits for its end (and reads it again if the wait elapses):
        // the other changes need not be decoded nor wake it.
        if !follows_user && entry.operation == kv::Operation::Put && is_open(&entry.value) {
            return;
        }
        let event = match entry.operation {
            kv::Operation::Put => match nats::decode(&entry.key, &entry.value) {
                Ok(record) => JobEvent::Updated {
                    id,
                    revision: entry.revision,
                    record: Arc::new(record),
                },
                Err(error) => {
                    tracing::error!(%error, job_id = %id, key = %entry.key, "undecodable job record");
                    return;
                }
            },
            kv::Operation::Delete | kv::Operation::Purge => JobEvent::Removed {
                id,
                revision: entry.revision,
            },
        };
        // No receiver left is fine: the last one is about to remove the channel.
        for sender in senders {
            let _ = sender.send(event.clone());
        }
    }

    /// Tells every listener that changes may have been missed.
    fn resync_all(&self) {
        for sender in self.hub.topics().values() {
            let _ = sender.send(JobEvent::Resync);
        }
    }
}

/// Whether a stored record is certainly not terminal (`queued` or `running`), read without
/// decoding it: a record serializes `id`, `user`, `language` (none of which can contain a
/// quote) and then `status`, so the first `"status":"` is the record's own.
fn is_open(value: &[u8]) -> bool {
    const FIELD: &[u8] = b"\"status\":\"";
    let Some(at) = value.windows(FIELD.len()).position(|w| w == FIELD) else {
        return false;
    };
    let rest = &value[at + FIELD.len()..];
    rest.starts_with(b"queued\"") || rest.starts_with(b"running\"")
}

/// One listener's view of one user's job changes (or of one job's). Dropping it stops the
/// listening.
pub struct UserEvents {
    topic: Topic,
    receiver: broadcast::Receiver<JobEvent>,
    hub: Arc<Hub>,
}

impl UserEvents {
    /// The next change. A listener that fell behind gets [`JobEvent::Resync`] once and then the
    /// newest changes.
    pub async fn next(&mut self) -> JobEvent {
        match self.receiver.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(topic = ?self.topic, missed, "job event listener fell behind");
                JobEvent::Resync
            }
            // Every channel's sender lives in the hub as long as a receiver does.
            Err(broadcast::error::RecvError::Closed) => {
                unreachable!("the hub keeps the sender while a listener exists")
            }
        }
    }
}

impl Drop for UserEvents {
    fn drop(&mut self) {
        let mut topics = self.hub.topics();
        // Under the lock nobody can subscribe in between: if ours is the last receiver, the
        // channel goes.
        if topics
            .get(&self.topic)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            topics.remove(&self.topic);
        }
    }
}

/// Watches the whole `cola-jobs` bucket and feeds [`JobEvents`]. The first watch is set up
/// before this returns, so no change after it is missed; the task then keeps watching until
/// `shutdown`, and watches again whenever the watch ends or the NATS connection comes back.
pub async fn start_watch(
    jobs: kv::Store,
    reconnects: Reconnects,
    shutdown: CancellationToken,
) -> Result<(JobEvents, JoinHandle<()>), GatewayError> {
    let watch = jobs
        .watch_all()
        .await
        .map_err(|e| GatewayError::backend("watch job records", e))?;
    let events = JobEvents::default();
    let watcher = Watcher {
        jobs,
        events: events.clone(),
        reconnects: Some(reconnects),
        last_revision: None,
    };
    Ok((events, tokio::spawn(watcher.run(watch, shutdown))))
}

struct Watcher {
    jobs: kv::Store,
    events: JobEvents,
    /// `None` once the client is gone (no more reconnects will come).
    reconnects: Option<Reconnects>,
    /// The revision of the last change seen: a new watch resumes after it.
    last_revision: Option<u64>,
}

impl Watcher {
    async fn run(mut self, mut watch: kv::Watch, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.follow(&mut watch) => {}
            }
            watch = tokio::select! {
                () = shutdown.cancelled() => return,
                watch = self.watch_again() => watch,
            };
            if let Some(reconnects) = self.reconnects.as_mut() {
                // This watch already follows the latest connection.
                reconnects.borrow_and_update();
            }
            // Whatever happened while not watching may be unknown to listeners.
            self.events.resync_all();
        }
    }

    /// Dispatches changes until the watch ends or NATS reconnects.
    async fn follow(&mut self, watch: &mut kv::Watch) {
        loop {
            let reconnected = async {
                match self.reconnects.as_mut() {
                    Some(reconnects) => reconnects.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                next = watch.next() => match next {
                    Some(Ok(entry)) => {
                        self.last_revision = Some(entry.revision);
                        self.events.dispatch(entry);
                    }
                    Some(Err(error)) => {
                        tracing::warn!(%error, "job watch failed, watching again");
                        return;
                    }
                    None => {
                        tracing::warn!("job watch ended, watching again");
                        return;
                    }
                },
                still_connected = reconnected => {
                    if still_connected {
                        tracing::info!("NATS reconnected, watching job records again");
                        return;
                    }
                    self.reconnects = None;
                }
            }
        }
    }

    /// A new watch, resuming after the last change seen; retried until it works.
    async fn watch_again(&self) -> kv::Watch {
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = match self.last_revision {
                Some(revision) => self.jobs.watch_all_from_revision(revision + 1).await,
                None => self.jobs.watch_all().await,
            };
            match attempt {
                Ok(watch) => {
                    tracing::info!(last_revision = ?self.last_revision, "watching job records again");
                    return watch;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "cannot watch job records");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_REWATCH_BACKOFF);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_live_exactly_as_long_as_their_listeners() {
        let events = JobEvents::default();
        let alice = UserId::parse("alice").unwrap();
        let first = events.subscribe(&alice);
        let second = events.subscribe(&alice);
        let _bob = events.subscribe(&UserId::parse("bob").unwrap());
        assert_eq!(events.watched_users(), 2);
        drop(first);
        assert_eq!(events.watched_users(), 2);
        drop(second);
        assert_eq!(events.watched_users(), 1);
    }

    #[test]
    fn a_job_listener_hears_only_its_job_and_a_user_listener_all_the_users_jobs() {
        let events = JobEvents::default();
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        let (mine, other) = (JobId::new(), JobId::new());
        let count = |user: &UserId, id| events.senders(user.clone(), id).0.len();
        let waiter = events.subscribe_job(&alice, mine);
        assert_eq!(count(&alice, mine), 1);
        assert!(
            !events.senders(alice.clone(), mine).1,
            "nobody follows every change"
        );
        assert_eq!(count(&alice, other), 0);
        assert_eq!(count(&bob, mine), 0, "keys are per user");
        let page = events.subscribe(&alice);
        assert_eq!(count(&alice, mine), 2);
        assert_eq!(count(&alice, other), 1);
        assert!(events.senders(alice.clone(), other).1);
        drop(waiter);
        assert_eq!(count(&alice, mine), 1);
        drop(page);
        assert_eq!(events.watched_users(), 0);
    }

    #[test]
    fn open_records_are_told_without_decoding() {
        use cola_wire::{JobMessage, JobRecord, Language, Status, languages};
        let msg = JobMessage {
            schedule: None,
            request_id: None,
            id: JobId::new(),
            user: UserId::parse("alice").unwrap(),
            language: Language::parse("numeric").unwrap(),
            args: vec![],
            limits: languages()[0].default_limits,
            created_at: cola_wire::job::now(),
            work: cola_wire::Work::Problem(serde_json::json!({"note": "\"status\":\"queued\""})),
        };
        let mut record = JobRecord::queued(&msg, vec![], 0);
        for (status, open) in [
            (Status::Queued, true),
            (Status::Running, true),
            (Status::Succeeded, false),
            (Status::Failed, false),
            (Status::Cancelled, false),
        ] {
            record.status = status;
            assert_eq!(is_open(&nats::encode(&record)), open, "{status:?}");
        }
        assert!(!is_open(b"not a record"));
    }

    #[tokio::test]
    async fn a_listener_that_falls_behind_is_told_to_resync() {
        let events = JobEvents::default();
        let alice = UserId::parse("alice").unwrap();
        let mut listener = events.subscribe(&alice);
        for revision in 0..(CHANNEL_CAPACITY as u64 + 10) {
            let sender = events.senders(alice.clone(), JobId::new()).0.pop().unwrap();
            sender
                .send(JobEvent::Removed {
                    id: JobId::new(),
                    revision,
                })
                .unwrap();
        }
        assert!(matches!(listener.next().await, JobEvent::Resync));
        assert!(matches!(listener.next().await, JobEvent::Removed { .. }));
    }
}
