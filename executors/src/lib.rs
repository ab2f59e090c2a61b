//! The executor: the runner that lives next to user code.
//!
//! `cola executor` runs exactly one job. [`run`] reads the job message, fetches the inputs (inline
//! or from the object store), and hands them to [`execute`], which checks the file names again,
//! writes the files into the job's work directory, compiles (for compiled languages) and runs the
//! program in a bubblewrap [`sandbox`] under the job's limits, and packs stdout, stderr, the
//! compiler's output, `result.json` and the program's `out/` directory into a zip ([`outputs`]).
//! [`run`] then stores the zip as `<user>/<job-id>-output.zip` and ends the job's record with a
//! compare-and-set — unless the record already ended (cancelled, or timed out by the middleware),
//! which stays as it is. A pre-started executor (the process backend's warm pool,
//! [`JobSource::Stdin`]) connects first and then waits on its standard input for its one job;
//! closed without one, it ends having run nothing.
//!
//! In a container (Docker, Kubernetes) the container is the sandbox ([`SandboxKind::Container`]).
//! An executor that cannot reach NATS (Docker: no network) runs [`run_offline`] instead of
//! [`run`]: the job message, every input inline, comes from its standard input, and the outcome
//! goes to its standard output as one result frame ([`cola_wire::frame`]), which the middleware
//! reads back, stores and records exactly as [`run`] would.
//!
//! Invariants:
//! - user code never runs as root on the host, never has a network, never sees the executor's
//!   environment (NATS address, credentials), descriptors or any host file outside the
//!   toolchain, and can write only its own work directory (and private, size-capped tmpfs);
//! - every limit of the job is enforced, and each ends the job with its own reason;
//! - the trusted side never follows a link out of a directory user code could write;
//! - the job's directories are removed however the job ends (a crash of the executor itself
//!   leaves them to the backend, which owns the job directory);
//! - a terminal job record is never changed;
//! - languages are data ([`cola_wire::languages()`]): nothing here names a language, except the Go
//!   build cache ([`prepare_go_cache`]), which is a property of Go's toolchain;
//! - numeric jobs never come here: the middleware solves them in-process. Given one anyway,
//!   [`run`] and [`run_offline`] refuse it (`invalid_input`).

mod error;
mod go_cache;
pub mod outputs;
pub mod runner;
pub mod sandbox;
mod toolchain;
mod workspace;

pub use error::ExecutorError;
pub use go_cache::prepare_go_cache;
pub use runner::{
    Execution, ExecutorConfig, JobSource, RunGate, Steps, compile_ahead, execute, read_job,
    read_job_bytes, run, run_offline,
};
pub use sandbox::{SandboxConfig, SandboxKind, await_memory_limit};
pub use toolchain::toolchain_versions;
