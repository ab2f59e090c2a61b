//! The crate's one error type.

use std::{io, path::PathBuf};

use cola_wire::nats::NatsError;

/// Why an executor could not do its work. Problems of the job itself (a compile error, a limit
/// hit, a bad file name) are not errors: they end the job with a reason in its report.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("job file {path} is not a job message: {source}")]
    JobFile {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the job message is not valid: {0}")]
    JobMessage(#[source] serde_json::Error),
    #[error("connecting to NATS at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error("building the output zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("invalid sandbox configuration: {0}")]
    Config(String),
    #[error("no free sandbox uid in {base}..{end}", end = u64::from(*.base) + u64::from(*.count))]
    NoFreeUid { base: u32, count: u32 },
    #[error("the sandbox could not start: {0}")]
    Sandbox(String),
    #[error("preparing the Go build cache: {0}")]
    GoCache(String),
    #[error("job record {0} does not exist")]
    NoRecord(cola_wire::JobKey),
    #[error("job record {key} is {status}, not running: the executor has nothing to report to")]
    NotRunning {
        key: cola_wire::JobKey,
        status: &'static str,
    },
    #[error("the executor's worker failed: {0}")]
    Worker(String),
    /// The job ended (or its record could not be read) before its program was run: it is not.
    #[error("the job was stopped before its program ran")]
    Halted,
}

impl ExecutorError {
    /// An I/O error with what was being done when it happened.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// A worker task or thread that panicked or was cancelled.
impl From<tokio::task::JoinError> for ExecutorError {
    fn from(error: tokio::task::JoinError) -> Self {
        Self::Worker(error.to_string())
    }
}

/// Adds context to I/O results: `fs::read(p).context(|| format!("reading {}", p.display()))`.
pub(crate) trait IoContext<T> {
    fn context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T, ExecutorError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T, ExecutorError> {
        self.map_err(|source| ExecutorError::io(context(), source))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T, ExecutorError> {
        self.map_err(|errno| ExecutorError::io(context(), io::Error::from(errno)))
    }
}
