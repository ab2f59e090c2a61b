//! The NATS side of the wire (feature `nats`): the stream and buckets with their settings, and
//! compare-and-set updates of job records.

use std::time::Duration;

use async_nats::jetstream::{
    self, kv,
    object_store::{self, ObjectStore},
    stream::{self, DiscardPolicy, RetentionPolicy, StorageType},
};
use bytes::Bytes;

pub use crate::nats_error::NatsError;
use crate::{
    Ending, JobId, JobKey, JobRecord, RunReport, Status, UserId, names, usage::UsageStore,
};

/// The first pause of [`retry_until`]; each later one doubles, up to [`RETRY_MAX_PAUSE`].
const RETRY_FIRST_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause of [`retry_until`] (a client reconnects within 4 s).
const RETRY_MAX_PAUSE: Duration = Duration::from_secs(2);

/// Runs `attempt` until it succeeds or the server refuses it ([`NatsError::is_refused`]),
/// pausing between attempts with a backoff (100 ms, doubling, at most 2 s), as long as another
/// attempt can start before `until`; then the last error. The first attempt always runs, and
/// each ends at NATS's own timeouts, so this returns at most one attempt's time after `until`.
///
/// For steps that are safe to repeat: a compare-and-set transition, a put of a whole object.
pub async fn retry_until<T, F>(
    until: tokio::time::Instant,
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> Result<T, NatsError>
where
    F: Future<Output = Result<T, NatsError>>,
{
    let mut pause = RETRY_FIRST_PAUSE;
    loop {
        let error = match attempt().await {
            Ok(done) => return Ok(done),
            Err(error) => error,
        };
        let next = tokio::time::Instant::now() + pause;
        if error.is_refused() || next >= until {
            return Err(error);
        }
        tracing::warn!(error = %error, retry_in_ms = pause.as_millis() as u64, "{what} failed; retrying");
        tokio::time::sleep_until(next).await;
        pause = (pause * 2).min(RETRY_MAX_PAUSE);
    }
}

/// How the stream and buckets are created: retention and size limits, replicas.
#[derive(Debug, Clone)]
pub struct TopologyConfig {
    /// Replicas of the stream and every bucket: 1 on one machine, 3 on a cluster.
    pub replicas: usize,
    /// How long job records and outputs are kept.
    pub retention: Duration,
    /// Size limit of the job stream and of the job records bucket, in bytes.
    pub jobs_max_bytes: i64,
    /// Size limit of the object store, in bytes.
    pub outputs_max_bytes: i64,
    /// How long a browser session lives without use.
    pub session_ttl: Duration,
    /// The most unfinished jobs the stream holds on one subject, `cola.<language>.<user>`:
    /// the stream refuses more by itself (the gateway's per-user quota, enforced by the
    /// server in each language).
    pub max_unfinished_per_user: i64,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        Self {
            replicas: 1,
            retention: Duration::from_secs(7 * 24 * 3600),
            jobs_max_bytes: 1 << 30,
            outputs_max_bytes: 8 << 30,
            session_ttl: Duration::from_secs(24 * 3600),
            max_unfinished_per_user: 50,
        }
    }
}

/// Handles on the stream and buckets every service uses.
#[derive(Clone)]
pub struct Topology {
    pub js: jetstream::Context,
    pub jobs: JobStore,
    pub outputs: ObjectStore,
    pub tokens: kv::Store,
    pub meta: kv::Store,
    /// What each user stored (see [`crate::usage`]).
    pub usage: UsageStore,
}

impl Topology {
    /// Creates (or brings up to date) the stream and every bucket. Idempotent.
    pub async fn ensure(js: &jetstream::Context, cfg: &TopologyConfig) -> Result<Self, NatsError> {
        js.create_or_update_stream(stream::Config {
            name: names::STREAM.into(),
            subjects: vec![names::STREAM_SUBJECTS.into()],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            num_replicas: cfg.replicas,
            duplicate_window: Duration::from_secs(120),
            max_bytes: cfg.jobs_max_bytes,
            max_message_size: 1 << 20,
            discard: DiscardPolicy::New,
            max_messages_per_subject: cfg.max_unfinished_per_user,
            discard_new_per_subject: true,
            ..Default::default()
        })
        .await
        .map_err(|e| NatsError::nats("create stream COLA", e))?;
        let kv_config = |bucket: &str, max_age: Duration, max_bytes: i64| kv::Config {
            bucket: bucket.into(),
            history: 1,
            max_age,
            max_bytes,
            max_value_size: 1 << 20,
            storage: StorageType::File,
            num_replicas: cfg.replicas,
            ..Default::default()
        };
        let jobs = js
            .create_or_update_key_value(kv_config(
                names::JOBS_BUCKET,
                cfg.retention,
                cfg.jobs_max_bytes,
            ))
            .await
            .map_err(|e| NatsError::nats("create bucket cola-jobs", e))?;
        js.create_or_update_key_value(kv_config(
            names::SESSIONS_BUCKET,
            cfg.session_ttl,
            256 << 20,
        ))
        .await
        .map_err(|e| NatsError::nats("create bucket cola-sessions", e))?;
        let tokens = js
            .create_or_update_key_value(kv_config(names::TOKENS_BUCKET, Duration::ZERO, 64 << 20))
            .await
            .map_err(|e| NatsError::nats("create bucket cola-tokens", e))?;
        let meta = js
            .create_or_update_key_value(kv_config(names::META_BUCKET, Duration::ZERO, 16 << 20))
            .await
            .map_err(|e| NatsError::nats("create bucket cola-meta", e))?;
        let usage = js
            .create_or_update_key_value(kv_config(
                names::USAGE_BUCKET,
                cfg.retention + Duration::from_secs(24 * 3600),
                64 << 20,
            ))
            .await
            .map_err(|e| NatsError::nats("create bucket cola-usage", e))?;
        let outputs = match js.get_object_store(names::OUTPUTS_BUCKET).await {
            Ok(store) => store,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: names::OUTPUTS_BUCKET.into(),
                    description: Some("cola job inputs and outputs".into()),
                    max_age: cfg.retention,
                    max_bytes: cfg.outputs_max_bytes,
                    storage: StorageType::File,
                    num_replicas: cfg.replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| NatsError::nats("create object store cola-outputs", e))?,
        };
        Ok(Self {
            js: js.clone(),
            jobs: JobStore { kv: jobs },
            outputs,
            tokens,
            meta,
            usage: UsageStore { kv: usage },
        })
    }

    /// Opens the stream and buckets, failing if any is missing (what `/readyz` checks).
    pub async fn open(js: &jetstream::Context) -> Result<Self, NatsError> {
        js.get_stream_no_info(names::STREAM)
            .await
            .map_err(|e| NatsError::nats("open stream COLA", e))?;
        js.get_key_value(names::SESSIONS_BUCKET)
            .await
            .map_err(|e| NatsError::nats("open bucket", e))?;
        Self::open_buckets(js).await
    }

    /// Opens the buckets of [`Topology`] all at once (one round trip rather than one each),
    /// without looking at the stream: what an executor, whose NATS user may not see the stream,
    /// needs.
    pub async fn open_buckets(js: &jetstream::Context) -> Result<Self, NatsError> {
        let kv = |e| NatsError::nats("open bucket", e);
        let (jobs, tokens, meta, usage, outputs) = tokio::try_join!(
            async { js.get_key_value(names::JOBS_BUCKET).await.map_err(kv) },
            async { js.get_key_value(names::TOKENS_BUCKET).await.map_err(kv) },
            async { js.get_key_value(names::META_BUCKET).await.map_err(kv) },
            async { js.get_key_value(names::USAGE_BUCKET).await.map_err(kv) },
            async {
                js.get_object_store(names::OUTPUTS_BUCKET)
                    .await
                    .map_err(|e| NatsError::nats("open object store cola-outputs", e))
            },
        )?;
        Ok(Self {
            js: js.clone(),
            jobs: JobStore { kv: jobs },
            outputs,
            tokens,
            meta,
            usage: UsageStore { kv: usage },
        })
    }
}

/// The `cola-jobs` bucket, typed: every change is a compare-and-set on the revision.
#[derive(Clone)]
pub struct JobStore {
    pub kv: kv::Store,
}

/// What a compare-and-set transition did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The record was changed; this is the new value and its revision.
    Changed(JobRecord, u64),
    /// The change function declined (e.g. the job was already terminal); the current record.
    Unchanged(JobRecord, u64),
    /// There is no record under the key.
    Missing,
}

impl Transition {
    /// The record as it is after the transition, changed or not; `None` when there is none.
    pub fn into_current(self) -> Option<JobRecord> {
        match self {
            Self::Changed(record, _) | Self::Unchanged(record, _) => Some(record),
            Self::Missing => None,
        }
    }
}

impl JobStore {
    /// The record under `key` with its revision.
    pub async fn get(&self, key: &JobKey) -> Result<Option<(JobRecord, u64)>, NatsError> {
        let Some(entry) = self
            .kv
            .entry(key.as_str())
            .await
            .map_err(|e| NatsError::nats("read job record", e))?
        else {
            return Ok(None);
        };
        if !matches!(entry.operation, kv::Operation::Put) {
            return Ok(None);
        }
        let record = decode(key.as_str(), &entry.value)?;
        Ok(Some((record, entry.revision)))
    }

    /// Stores a new record; fails if the key exists.
    pub async fn create(&self, key: &JobKey, record: &JobRecord) -> Result<u64, NatsError> {
        self.kv
            .create(key.as_str(), encode(record))
            .await
            .map_err(|e| NatsError::nats("create job record", e))
    }

    /// Removes a record (used only to roll back a job that could not be queued).
    pub async fn remove(&self, key: &JobKey) -> Result<(), NatsError> {
        self.kv
            .purge(key.as_str())
            .await
            .map_err(|e| NatsError::nats("remove job record", e))
    }

    /// Reads the record, lets `change` modify it, and writes it back only if nobody wrote in
    /// between; on a conflict, reads again and retries. `change` returns `false` to leave the
    /// record as it is. A terminal record is never passed to `change`: it never changes again.
    pub async fn transition(
        &self,
        key: &JobKey,
        mut change: impl FnMut(&mut JobRecord) -> bool,
    ) -> Result<Transition, NatsError> {
        loop {
            let Some((mut record, revision)) = self.get(key).await? else {
                return Ok(Transition::Missing);
            };
            if record.status.is_terminal() || !change(&mut record) {
                return Ok(Transition::Unchanged(record, revision));
            }
            match self
                .kv
                .update(key.as_str(), encode(&record), revision)
                .await
            {
                Ok(revision) => return Ok(Transition::Changed(record, revision)),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(NatsError::nats("update job record", e)),
            }
        }
    }

    /// Ends the job under `key` as `ending` says, unless it has ended already (a terminal
    /// record never changes again).
    pub async fn end(&self, key: &JobKey, ending: &Ending) -> Result<Transition, NatsError> {
        self.transition(key, |r| {
            r.end(ending, crate::job::now());
            true
        })
        .await
    }

    /// [`end`](Self::end), starting from `record` as read at `revision` (see
    /// [`transition_from`](Self::transition_from)).
    pub async fn end_from(
        &self,
        key: &JobKey,
        record: JobRecord,
        revision: u64,
        ending: &Ending,
    ) -> Result<Transition, NatsError> {
        self.transition_from(key, record, revision, |r| {
            r.end(ending, crate::job::now());
            true
        })
        .await
    }

    /// [`transition`](Self::transition), starting from `record` as read at `revision`: when
    /// nobody wrote since, the change costs one write and no read. On a conflict it goes on as
    /// `transition` does, from a fresh read.
    pub async fn transition_from(
        &self,
        key: &JobKey,
        mut record: JobRecord,
        revision: u64,
        mut change: impl FnMut(&mut JobRecord) -> bool,
    ) -> Result<Transition, NatsError> {
        if record.status.is_terminal() || !change(&mut record) {
            return Ok(Transition::Unchanged(record, revision));
        }
        match self
            .kv
            .update(key.as_str(), encode(&record), revision)
            .await
        {
            Ok(revision) => Ok(Transition::Changed(record, revision)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                self.transition(key, change).await
            }
            Err(e) => Err(NatsError::nats("update job record", e)),
        }
    }
}

/// Size of the chunks of an object (as `ObjectStore::put` cuts them).
pub const OBJECT_CHUNK_BYTES: usize = 128 * 1024;

/// Stores `data` as the object `name` of the object store `bucket` in one round trip: its
/// chunks and its metadata are published back to back and their acknowledgements awaited
/// together. The layout is exactly `ObjectStore::put`'s (chunks on `$O.<bucket>.C.<nuid>`,
/// metadata on `$O.<bucket>.M.<base64url(name)>` with a subject rollup), so
/// `ObjectStore::get` reads the object as usual; `put` costs three round trips (it first looks
/// up an earlier version).
///
/// For a name that has no object yet: a new version would replace an earlier one's metadata
/// but leave its chunks behind until they expire, so use `ObjectStore::put` to replace an
/// object. Until this returns `Ok`, the object may be incomplete: nobody must be told its name.
pub async fn put_new_object(
    js: &jetstream::Context,
    bucket: &str,
    name: &str,
    data: &[u8],
) -> Result<(), NatsError> {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE};
    use sha2::{Digest as _, Sha256};

    let nuid = uuid::Uuid::now_v7().simple().to_string();
    let chunk_subject = format!("$O.{bucket}.C.{nuid}");
    let mut acks = Vec::with_capacity(data.len() / OBJECT_CHUNK_BYTES + 2);
    let mut chunks = 0;
    for chunk in data.chunks(OBJECT_CHUNK_BYTES) {
        let ack = js
            .publish(chunk_subject.clone(), Bytes::copy_from_slice(chunk))
            .await
            .map_err(|e| NatsError::nats("publish object chunk", e))?;
        acks.push(ack);
        chunks += 1;
    }
    let info = serde_json::json!({
        "name": name,
        "description": null,
        "headers": null,
        "options": {"max_chunk_size": OBJECT_CHUNK_BYTES},
        "bucket": bucket,
        "nuid": nuid,
        "size": data.len(),
        "chunks": chunks,
        "mtime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "digest": format!("SHA-256={}", URL_SAFE.encode(Sha256::digest(data))),
    });
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Rollup", "sub");
    let meta = js
        .publish_with_headers(
            format!("$O.{bucket}.M.{}", URL_SAFE.encode(name)),
            headers,
            Bytes::from(serde_json::to_vec(&info).expect("object info serializes")),
        )
        .await
        .map_err(|e| NatsError::nats("publish object metadata", e))?;
    acks.push(meta);
    for ack in acks {
        ack.await
            .map_err(|e| NatsError::nats("store object (acknowledgement)", e))?;
    }
    Ok(())
}

/// What [`report_outcome`] did with a job's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// The record ended with the report (which names the stored zip, if any).
    Recorded(RunReport),
    /// The record had already ended (cancelled, timed out by the middleware): it stays.
    EndedElsewhere(JobRecord),
    /// The record is neither running nor terminal: nobody started this job.
    NotRunning(JobRecord),
    /// There is no record.
    Missing,
}

/// How the outcome of a job ends its record, whoever produced it (an executor that talks to
/// NATS, or the middleware for an executor that cannot): stores `zip`, if any, as the job's
/// output object `<user>/<job-id>-output.zip`, then ends the record with `report` by
/// compare-and-set if it is still running. A record that ended meanwhile stays as it is, and
/// the zip just stored is removed again, unless the record names it.
///
/// Both steps are retried with a backoff ([`retry_until`]) while NATS does not answer (a
/// restart, a lost connection), as long as another attempt can start before `until`, the
/// end of the job's time: a run that completed is not lost to a short outage. A refusal (the
/// object store full) is not retried: the error comes back at once.
///
/// The zip is stored in one round trip ([`put_new_object`]). An outcome reported twice (a
/// backend's outcome read again after a middleware restart), or an attempt whose
/// acknowledgement was lost, stores a second version whose metadata replaces the first; the
/// first version's chunks stay until the bucket's retention removes them.
pub async fn report_outcome(
    topology: &Topology,
    user: &UserId,
    id: &JobId,
    mut report: RunReport,
    zip: Option<&[u8]>,
    until: tokio::time::Instant,
) -> Result<Reported, NatsError> {
    let key = JobKey::new(user, id);
    report.output_object = None;
    if let Some(zip) = zip {
        let name = names::output_object(user, id);
        retry_until(until, "storing the output zip", || {
            put_new_object(&topology.js, names::OUTPUTS_BUCKET, &name, zip)
        })
        .await?;
        count_stored(topology, user, zip.len()).await;
        report.output_object = Some(name);
    }
    let reported = &report;
    let transition = retry_until(until, "ending the job record", || {
        topology.jobs.transition(&key, |r| {
            r.status == Status::Running && {
                r.apply_report(reported, crate::job::now());
                true
            }
        })
    })
    .await?;
    let record = match transition {
        Transition::Changed(..) => return Ok(Reported::Recorded(report)),
        Transition::Unchanged(record, _) => record,
        Transition::Missing => {
            discard_output(topology, &report, None).await;
            return Ok(Reported::Missing);
        }
    };
    discard_output(topology, &report, Some(&record)).await;
    Ok(if record.status.is_terminal() {
        Reported::EndedElsewhere(record)
    } else {
        Reported::NotRunning(record)
    })
}

/// Adds a stored zip to its user's storage (see [`crate::usage`]). A count that cannot be
/// written is only logged: the zip is stored, and the job goes on.
pub async fn count_stored(topology: &Topology, user: &UserId, bytes: usize) {
    if let Err(e) = topology.usage.add(user, bytes as u64).await {
        tracing::warn!(%user, error = %e, "cannot count a stored zip against its user's storage");
    }
}

/// Removes the zip named by `report` unless `record` names it too: nobody would read it.
async fn discard_output(topology: &Topology, report: &RunReport, record: Option<&JobRecord>) {
    let Some(name) = &report.output_object else {
        return;
    };
    if record.and_then(|r| r.output_object.as_ref()) == Some(name) {
        return;
    }
    if let Err(e) = topology.outputs.delete(name).await {
        tracing::warn!(object = %name, error = %e, "cannot remove an output nobody will read");
    }
}

/// A job record as stored.
pub fn encode(record: &JobRecord) -> Bytes {
    Bytes::from(serde_json::to_vec(record).expect("a job record always serializes"))
}

/// A stored job record.
pub fn decode(key: &str, value: &[u8]) -> Result<JobRecord, NatsError> {
    serde_json::from_slice(value).map_err(|source| NatsError::Corrupt {
        key: key.into(),
        source,
    })
}

/// The servers named by a NATS URL option: one URL, or a cluster as a comma-separated list of
/// its nodes' URLs (`nats://a:4222,nats://b:4222`), for `async_nats::connect`.
pub fn server_urls(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}
