//! Intake: the job message read and decoded (from a file, the environment or standard input),
//! its record checked before any of its code runs, and its inputs, inline or fetched from the
//! object store, checked again (a file name the gateway let through never reaches a compiler).

use std::{collections::HashSet, io::Read, path::PathBuf};

use async_nats::jetstream;
use cola_wire::{
    InputFile, Inputs, JobKey, JobMessage, JobRecord, LanguageDef, Work,
    input_object::NOT_A_PROGRAM,
    nats::{NatsError, Topology},
};

use crate::error::{ExecutorError, IoContext};

/// The largest job message `cola executor` reads (inline inputs of up to 64 MiB, escaped).
const MAX_JOB_MESSAGE_BYTES: u64 = 256 << 20;

/// Where the job message comes from.
#[derive(Debug, Clone)]
pub enum JobSource {
    /// A file the backend wrote (the process backend).
    File(PathBuf),
    /// The message itself, as read from standard input or an environment variable.
    Json(Vec<u8>),
    /// Standard input, read only once the executor is connected to NATS: a pre-started executor
    /// (the process backend's warm pool) waits there for its one job. Closed without a message,
    /// it means there is no job: the executor ends without running anything.
    Stdin,
    /// A core NATS subject ([`cola_wire::names::warm_subject`]) a pre-started executor Pod waits
    /// on, once connected, for its one job: a request it answers once it took the job.
    Subject(String),
    /// The handoff of the compile container beside this one (a compiled job's run container:
    /// see `split`), waited for.
    Handoff,
}

/// Reads a job message from `source`.
pub fn read_job(source: &JobSource) -> Result<JobMessage, ExecutorError> {
    match source {
        JobSource::File(path) => {
            let bytes = std::fs::File::open(path)
                .and_then(|f| {
                    let mut bytes = Vec::new();
                    f.take(MAX_JOB_MESSAGE_BYTES).read_to_end(&mut bytes)?;
                    Ok(bytes)
                })
                .context(|| format!("reading job file {}", path.display()))?;
            serde_json::from_slice(&bytes).map_err(|source| ExecutorError::JobFile {
                path: path.to_owned(),
                source,
            })
        }
        JobSource::Json(bytes) => decode(bytes),
        JobSource::Stdin => decode(&read_job_bytes(std::io::stdin().lock())?),
        JobSource::Subject(_) | JobSource::Handoff => Err(ExecutorError::Config(
            "a job from a NATS subject or a handoff is waited for, not read".into(),
        )),
    }
}

/// Connects to NATS, waits on `subject` for one job message and answers the request that
/// brought it (the middleware then knows the job was taken). An empty request asks whether the
/// executor is there: it is answered, and the wait goes on. A message that is no job is not
/// answered: its sender gives up waiting and runs the job elsewhere.
pub(super) async fn wait_on_subject(
    url: &str,
    subject: &str,
) -> Result<(JobMessage, Topology), ExecutorError> {
    use futures::StreamExt as _;

    let topology = connect(url).await?;
    let client = topology.js.client();
    let mut requests = client
        .subscribe(subject.to_owned())
        .await
        .map_err(|e| NatsError::nats("subscribe to the job's subject", e))?;
    loop {
        let request = requests.next().await.ok_or_else(|| {
            ExecutorError::Config(format!("the subscription to {subject} ended without a job"))
        })?;
        let job = match request.payload.is_empty() {
            true => None,
            false => Some(decode(&request.payload)?),
        };
        if let Some(reply) = request.reply {
            client
                .publish(reply, "".into())
                .await
                .map_err(|e| NatsError::nats("answer the job's request", e))?;
            client
                .flush()
                .await
                .map_err(|e| NatsError::nats("answer the job's request", e))?;
        }
        if let Some(job) = job {
            let _ = requests.unsubscribe().await;
            return Ok((job, topology));
        }
    }
}

/// Reads a job message (at most 256 MiB) from `reader`, e.g. standard input.
pub fn read_job_bytes(reader: impl Read) -> Result<Vec<u8>, ExecutorError> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_JOB_MESSAGE_BYTES + 1)
        .read_to_end(&mut bytes)
        .context(|| "reading the job message")?;
    if bytes.len() as u64 > MAX_JOB_MESSAGE_BYTES {
        return Err(ExecutorError::Config(format!(
            "the job message is larger than {MAX_JOB_MESSAGE_BYTES} bytes"
        )));
    }
    Ok(bytes)
}

/// A job message from its JSON.
pub(super) fn decode(bytes: &[u8]) -> Result<JobMessage, ExecutorError> {
    serde_json::from_slice(bytes).map_err(ExecutorError::JobMessage)
}

/// Connects to NATS and opens the buckets an executor uses, all at once (one round trip rather
/// than one each).
pub(super) async fn connect(url: &str) -> Result<Topology, ExecutorError> {
    let client = cola_wire::nats_connect::connect(url, async_nats::ConnectOptions::new())
        .await
        .map_err(|source| ExecutorError::Connect {
            url: cola_wire::nats_connect::redacted(url),
            source,
        })?;
    Ok(Topology::open_buckets(&jetstream::new(client)).await?)
}

/// The connection to NATS (`connected`, or made now to `url`) and `job`'s record when it has
/// already ended; an error if there is no record.
pub(super) async fn check_record(
    connected: Option<Topology>,
    url: &str,
    job: &JobMessage,
) -> Result<(Topology, Option<JobRecord>), ExecutorError> {
    let topology = match connected {
        Some(topology) => topology,
        None => connect(url).await?,
    };
    let key = JobKey::new(&job.user, &job.id);
    match topology.jobs.get(&key).await? {
        None => Err(ExecutorError::NoRecord(key)),
        Some((record, _)) => Ok((topology, record.status.is_terminal().then_some(record))),
    }
}

/// The job's inputs, moved out of it, for an executor without NATS: only inline ones will do.
pub(super) fn inline_inputs(job: &mut JobMessage) -> Result<Inputs, String> {
    match &mut job.work {
        Work::Inputs(inputs) => Ok(std::mem::take(inputs)),
        Work::InputObject(_) => Err(
            "the job's inputs are in the object store, which this executor cannot reach".to_owned(),
        ),
        Work::Problem(_) => Err(NOT_A_PROGRAM.to_owned()),
    }
}

/// Only programs run in a sandbox: numeric jobs are solved by the middleware, in-process.
pub(super) fn check_runnable(lang: &LanguageDef) -> Result<(), String> {
    if lang.is_numeric() {
        return Err(format!(
            "{} jobs are solved in the middleware by cola's built-in runtime, not in an executor",
            lang.name
        ));
    }
    Ok(())
}

/// Every file name is safe and allowed for the language, and none comes twice.
pub(super) fn check_files(lang: &LanguageDef, files: &[InputFile]) -> Result<(), String> {
    if files.is_empty() {
        return Err("the job has no files".into());
    }
    let mut seen = HashSet::new();
    for file in files {
        lang.check_file_name(&file.name)
            .map_err(|e| format!("file {:?}: {e}", file.name))?;
        if !seen.insert(file.name.as_str()) {
            return Err(format!("file {:?} is given twice", file.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cola_wire::languages;

    #[test]
    fn file_names_are_checked_again() {
        let c = &languages()[0];
        let file = |name: &str| InputFile {
            name: name.into(),
            content: String::new(),
        };
        assert!(check_files(c, &[file("main.c"), file("util.h")]).is_ok());
        assert!(
            check_files(c, &[file("../main.c")])
                .unwrap_err()
                .contains("../main.c")
        );
        assert!(check_files(c, &[file("main.py")]).is_err());
        assert!(
            check_files(c, &[file("main.c"), file("-o.c")])
                .unwrap_err()
                .contains("-o.c")
        );
        assert!(
            check_files(c, &[file("main.c"), file("main.c")])
                .unwrap_err()
                .contains("twice")
        );
        assert!(check_files(c, &[]).is_err());
        let numeric = languages().iter().find(|l| l.is_numeric()).unwrap();
        assert!(
            check_runnable(numeric)
                .unwrap_err()
                .contains("built-in runtime")
        );
        assert!(check_runnable(c).is_ok());
    }
}
