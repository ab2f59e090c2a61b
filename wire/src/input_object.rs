//! The input object (`<user>/<job-id>-input.zip` in the object store): where a program's
//! inputs go when they are too large to travel inline, and are kept for resubmission. Every
//! process writes it through [`store_inputs`] or [`spill_inputs`] and reads it through
//! [`fetch_inputs`] or [`inputs_of`]; the zip format itself is [`crate::input_zip`].
//!
//! Where inputs spill is each medium's own limit: the gateway spills what would make a
//! message too large, the Kubernetes backend what would make an environment variable too
//! large; both write here.

use async_nats::jetstream::object_store::ObjectStore;

use crate::{
    Inputs, JobMessage, Work,
    input_zip::{self, InputZipError},
    names,
    nats::NatsError,
};

/// The most content an input object may unpack to.
pub const MAX_INPUT_BYTES: u64 = 64 << 20;

/// What the owner of a numeric job is told when something asks it for a program's inputs.
pub const NOT_A_PROGRAM: &str = "a numeric job has a problem, not a program's inputs";

/// Why a job's input object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// NATS trouble (the job itself may be fine).
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// The object is not a valid input zip: the job's fault.
    #[error("input object: {0}")]
    Invalid(#[from] InputZipError),
}

/// Stores `inputs` as the input object `name`; returns the zip's size in bytes.
pub async fn store_inputs(
    outputs: &ObjectStore,
    name: &str,
    inputs: &Inputs,
) -> Result<usize, NatsError> {
    let zip = input_zip::encode(inputs);
    outputs
        .put(name, &mut zip.as_slice())
        .await
        .map_err(|e| NatsError::nats("store the input object", e))?;
    Ok(zip.len())
}

/// Moves `job`'s inline inputs to its input object, leaving the object's name in its place.
/// Returns that name, or `None` (and leaves `job` as it is) when the job has no inline inputs;
/// on failure `job` is unchanged.
pub async fn spill_inputs(
    outputs: &ObjectStore,
    job: &mut JobMessage,
) -> Result<Option<String>, NatsError> {
    let Work::Inputs(inputs) = &job.work else {
        return Ok(None);
    };
    let name = names::input_object(&job.user, &job.id);
    let bytes = store_inputs(outputs, &name, inputs).await?;
    tracing::debug!(object = %name, bytes, "inputs stored in the object store");
    job.work = Work::InputObject(name.clone());
    Ok(Some(name))
}

/// The inputs kept in the input object `name` (at most [`MAX_INPUT_BYTES`] of content).
pub async fn fetch_inputs(outputs: &ObjectStore, name: &str) -> Result<Inputs, InputError> {
    use tokio::io::AsyncReadExt as _;

    let object = outputs
        .get(name)
        .await
        .map_err(|e| NatsError::nats("fetch the input object", e))?;
    let mut bytes = Vec::new();
    object
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| NatsError::nats("read the input object", e))?;
    Ok(input_zip::decode(&bytes, MAX_INPUT_BYTES)?)
}

/// `job`'s inputs, inline or from its input object; `Err` inside, with what its owner is told,
/// when it has none usable (its fault), `Err` outside when NATS failed.
pub async fn inputs_of(
    outputs: &ObjectStore,
    job: &JobMessage,
) -> Result<Result<Inputs, String>, NatsError> {
    Ok(match &job.work {
        Work::Inputs(inputs) => Ok(inputs.clone()),
        Work::InputObject(name) => match fetch_inputs(outputs, name).await {
            Ok(inputs) => Ok(inputs),
            Err(InputError::Invalid(e)) => Err(e.to_string()),
            Err(InputError::Nats(e)) => return Err(e),
        },
        Work::Problem(_) => Err(NOT_A_PROGRAM.to_owned()),
    })
}
