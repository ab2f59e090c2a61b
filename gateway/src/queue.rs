//! Putting an accepted job on the queue: record first, then (large) inputs, then the message,
//! undoing what was done when a later step fails, so a job is either fully queued or not at all.

use async_nats::{HeaderMap, jetstream::object_store::ObjectStore};
use cola_wire::{
    Inputs, JobId, JobKey, JobMessage, JobRecord, RequestId, UserId,
    input_object::{InputError, fetch_inputs, spill_inputs, store_inputs},
    names,
    nats::{JobStore, Topology},
};

use crate::{
    GatewayConfig, GatewayError, config::MAX_INLINE_MESSAGE_BYTES, quota::Quotas, state::AppState,
    submit::ValidJob,
};

/// A job that is on the queue: its record as created and the record's revision.
pub struct Queued {
    pub record: JobRecord,
    pub revision: u64,
    /// The object its inputs travelled through, when they were too large to go inline.
    pub input_object: Option<String>,
}

/// Checks the user's quotas, creates the job's record, stores its inputs in the object store
/// if they are too large to travel inline, and publishes its message on the user's subject
/// with `Nats-Msg-Id` = job id (the record's revision in `Cola-Record-Revision`, the
/// submitting request's id in `Cola-Request-Id`), waiting for the stream's acknowledgement.
pub async fn enqueue(
    topology: &Topology,
    config: &GatewayConfig,
    quotas: &Quotas,
    user: &UserId,
    (id, request_id): (JobId, &RequestId),
    job: ValidJob,
) -> Result<Queued, GatewayError> {
    quotas.admit(topology, user).await?;
    let key = JobKey::new(user, &id);
    let (record, mut message) = job.into_job(id, user, cola_wire::job::now());
    let mut payload = encode(&message);
    if message.work.inputs().is_none() && payload.len() > MAX_INLINE_MESSAGE_BYTES {
        // A problem statement always travels inline (the library bounds its size far below).
        return Err(GatewayError::invalid_field(
            "problem",
            "the problem statement is too large",
        ));
    }
    let revision = match topology.jobs.create(&key, &record).await {
        Ok(revision) => revision,
        Err(error) => {
            // A create whose answer was lost (a timeout while a cluster elects a new leader)
            // may have been written all the same: remove it, so no record is left queued
            // without a message. The key is this job's own (a fresh id).
            Undo::new(topology, &key, None).run().await;
            return Err(error.into());
        }
    };

    let inline_bytes = message.work.inputs().map_or(0, |i| i.content_bytes());
    let mut input_object = None;
    if inline_bytes > config.inline_input_bytes || payload.len() > MAX_INLINE_MESSAGE_BYTES {
        match spill_inputs(&topology.outputs, &mut message).await {
            Ok(name) => input_object = name,
            Err(error) => {
                Undo::new(topology, &key, None).run().await;
                return Err(GatewayError::backend("store input zip", error));
            }
        }
        payload = encode(&message);
    }

    if let Err(error) = publish(topology, &message, (revision, request_id), payload).await {
        Undo::new(topology, &key, input_object).run().await;
        return Err(match error {
            Refused::UserFull => quotas.unfinished_refusal(),
            Refused::StreamFull => GatewayError::QueueFull,
            Refused::Other(error) => error,
        });
    }
    Ok(Queued {
        record,
        revision,
        input_object: message.work.input_object().map(str::to_owned),
    })
}

/// [`enqueue`], run to its end even if the request that asked for it goes away: a client that
/// disconnects while its job is being queued would otherwise drop the work between the record
/// and the message, leaving a record that is neither queued nor rolled back.
pub async fn enqueue_detached(
    app: &AppState,
    user: &UserId,
    (id, request_id): (JobId, &RequestId),
    job: ValidJob,
) -> Result<Queued, GatewayError> {
    let (app, user, request_id) = (app.clone(), user.clone(), request_id.clone());
    let language = job.language.name;
    tokio::spawn(async move {
        let (topology, config, quotas) = (&app.topology, &app.config, &app.quotas);
        let queued = enqueue(topology, config, quotas, &user, (id, &request_id), job).await;
        match &queued {
            Ok(_) => app.metrics.submitted(language),
            Err(error) => app.metrics.refused(error),
        }
        queued
    })
    .await
    .map_err(|e| GatewayError::backend("queue job", e))?
}

/// Keeps a copy of a queued job's inputs as its input object (`<user>/<job-id>-input.zip`)
/// when they travelled inline, so that the web app can offer to edit and resubmit the job.
/// The object expires with the bucket's retention like every output. Failing to keep it only
/// loses that offer.
pub async fn keep_inputs(
    topology: &Topology,
    user: &UserId,
    id: JobId,
    queued: &Queued,
    inputs: &Inputs,
) {
    if queued.input_object.is_some() {
        return;
    }
    let name = names::input_object(user, &id);
    if let Err(error) = store_inputs(&topology.outputs, &name, inputs).await {
        tracing::warn!(%error, job_id = %id, "could not keep the inputs for resubmission");
    }
}

/// The inputs of `user`'s job `id`, if they were kept (see [`keep_inputs`]).
pub async fn kept_inputs(topology: &Topology, user: &UserId, id: JobId) -> Option<Inputs> {
    fetch_inputs(&topology.outputs, &names::input_object(user, &id))
        .await
        .inspect_err(|error| match error {
            // Not kept (e.g. expired): nothing to offer, nothing to report.
            InputError::Nats(_) => {}
            InputError::Invalid(error) => {
                tracing::warn!(%error, job_id = %id, "unreadable kept inputs")
            }
        })
        .ok()
}

/// Why the stream did not take a job's message.
enum Refused {
    /// The user's subject holds as many unfinished jobs as one user may have.
    UserFull,
    /// The stream as a whole is full.
    StreamFull,
    Other(GatewayError),
}

impl Refused {
    /// What the stream's answer to a publish says.
    fn from_publish(error: async_nats::jetstream::context::PublishError) -> Self {
        use async_nats::jetstream::{Error, ErrorCode};
        let refusal = std::error::Error::source(&error)
            .and_then(|source| source.downcast_ref::<Error>())
            .filter(|e| e.error_code() == ErrorCode::STREAM_STORE_FAILED)
            .map(ToString::to_string);
        match refusal {
            Some(text) if text.contains("maximum messages per subject") => Self::UserFull,
            Some(text) if text.contains("maximum messages") || text.contains("maximum bytes") => {
                Self::StreamFull
            }
            _ => Self::Other(GatewayError::backend(
                "publish job (acknowledgement)",
                error,
            )),
        }
    }
}

async fn publish(
    topology: &Topology,
    message: &JobMessage,
    (record_revision, request_id): (u64, &RequestId),
    payload: Vec<u8>,
) -> Result<(), Refused> {
    let mut headers = HeaderMap::new();
    headers.insert(names::MSG_ID_HEADER, message.id.to_string().as_str());
    headers.insert(
        names::RECORD_REVISION_HEADER,
        record_revision.to_string().as_str(),
    );
    headers.insert(names::REQUEST_ID_HEADER, request_id.as_str());
    let ack = topology
        .js
        .publish_with_headers(
            names::job_subject(&message.language, &message.user),
            headers,
            payload.into(),
        )
        .await
        .map_err(|e| Refused::Other(GatewayError::backend("publish job", e)))?;
    ack.await.map_err(Refused::from_publish)?;
    Ok(())
}

fn encode(message: &JobMessage) -> Vec<u8> {
    serde_json::to_vec(message).expect("a job message always serializes")
}

/// What to take back when a job cannot be queued.
struct Undo {
    jobs: JobStore,
    outputs: ObjectStore,
    key: JobKey,
    input_object: Option<String>,
}

/// How long a rollback keeps trying to remove a record: longer than a cluster takes to elect a
/// new leader for the bucket after losing a node (a few seconds).
const UNDO_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

impl Undo {
    fn new(topology: &Topology, key: &JobKey, input_object: Option<String>) -> Self {
        Self {
            jobs: topology.jobs.clone(),
            outputs: topology.outputs.clone(),
            key: key.clone(),
            input_object,
        }
    }

    /// Takes back what was written. One attempt is made before the request is answered (it
    /// almost always succeeds, and the client then finds no trace of the job); when it fails,
    /// the rest goes on in the background, so the client hears of the failure at once rather
    /// than after the rollback's patience.
    async fn run(self) {
        if self.jobs.remove(&self.key).await.is_ok() {
            self.remove_input_object().await;
            return;
        }
        tokio::spawn(self.run_patiently());
    }

    /// The failure that brought us here (a node lost, the bucket without a leader for a
    /// moment) often fails the removal too: a record left behind would stay `queued` forever,
    /// with no message to end it. Try again until it goes.
    async fn run_patiently(self) {
        let start = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(100);
        loop {
            tokio::time::sleep(pause).await;
            match self.jobs.remove(&self.key).await {
                Ok(()) => break,
                Err(error) if start.elapsed() < UNDO_PATIENCE => {
                    tracing::warn!(%error, key = %self.key, "cannot roll back the record of a job that was not queued yet; retrying");
                    pause = (pause * 2).min(std::time::Duration::from_secs(2));
                }
                Err(error) => {
                    tracing::error!(%error, key = %self.key, "could not roll back the record of a job that was not queued");
                    break;
                }
            }
        }
        self.remove_input_object().await;
    }

    async fn remove_input_object(&self) {
        if let Some(name) = &self.input_object
            && let Err(error) = self.outputs.delete(name).await
        {
            tracing::error!(%error, object = %name, "could not remove the inputs of a job that was not queued");
        }
    }
}
