//! Wire types shared by every cola process.
//!
//! This crate is the only place that defines what crosses a process boundary: the names of the
//! NATS stream, subjects and buckets, the job message published by the gateway, the job record
//! kept in the KV store, the job lifecycle (status and reason) and the language table.
//! Without features it has no I/O and no async code, so every other crate can depend on it
//! cheaply; the `nats` feature adds the typed access to the stream and buckets (`nats.rs`) that
//! every process shares. It starts no process (`cola-localnats` does).

#![forbid(unsafe_code)]

pub mod energy;
pub mod ids;
pub mod isolation;
pub mod job;
pub mod languages;
pub mod limits;
pub mod names;

pub use ids::{IdError, JobId, Language, RequestId, UserId};
pub use isolation::{Isolation, Provision};
pub use job::{
    Ending, ExecutorHandle, FileSummary, InputFile, Inputs, JobMessage, JobRecord, PREVIEW_BYTES,
    Reason, RunReport, Status, Timings, Work,
};
pub use languages::{FileNameError, LanguageDef, Runtime, language, languages};
pub use limits::{LimitError, Limits, LimitsRequest};
pub use names::JobKey;

#[cfg(feature = "nats")]
pub mod energy_store;
#[cfg(feature = "nats")]
pub mod frame;
#[cfg(feature = "nats")]
pub mod input_object;
#[cfg(feature = "nats")]
pub mod input_zip;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "nats")]
pub mod nats_connect;
#[cfg(feature = "nats")]
pub mod nats_error;
#[cfg(feature = "nats")]
pub mod usage;
