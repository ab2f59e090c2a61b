//! What every job task shares ([`Context`]), how a task ends with its message
//! ([`Disposition`]), and the numeric runtime's shared part ([`NumericRuntime`]: its solver
//! threads and its bound on jobs in flight). Program and numeric jobs both use it; it uses
//! neither.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{self, object_store::ObjectStore};
use cola_wire::{
    Ending, JobKey, JobRecord, Reason,
    job::{Timestamp, millis_between},
    nats::{JobStore, NatsError, Topology, Transition},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::{
    backend::Backend, cancels::CancelBoard, energy::Energy, metrics::MiddlewareMetrics,
    solver_pool::SolverPool,
};

/// Stack of a solver thread. In a debug build every method's example solves in 384 KiB and
/// the deepest expressions validation accepts (differentiated symbolically by Newton's method)
/// need under 512 KiB; this is four times that. `every_example_solves_on_a_solver_thread` checks
/// it.
pub const SOLVER_STACK_BYTES: usize = 2 << 20;

/// What every job task shares.
pub struct Context {
    pub jobs: JobStore,
    /// The buckets, for backends whose outcomes the middleware reports (see [`crate::job`]).
    pub topology: Topology,
    pub backend: Arc<dyn Backend>,
    pub cancels: CancelBoard,
    /// Cancelled when the middleware stops; running jobs then have `grace` to end.
    pub shutdown: CancellationToken,
    pub grace: Duration,
    /// How often a running job's message is marked in progress (well inside the ack wait).
    pub progress_every: Duration,
    /// The numeric runtime: its jobs never reach the backend.
    pub numeric: NumericRuntime,
    /// What the numeric runtime stored, not yet counted against its users' storage.
    pub stored: cola_wire::usage::Tally,
    /// What `/metrics` reports: jobs ended here are counted in it.
    pub metrics: Arc<MiddlewareMetrics>,
    /// This middleware's node and what it knows about every node's power.
    pub energy: Arc<Energy>,
}

impl Context {
    /// Ends the job under `key` with `ending` unless it ended already, counting it as finished
    /// here when this ended it.
    pub(crate) async fn end(&self, key: &JobKey, ending: &Ending) -> Result<(), NatsError> {
        if let Transition::Changed(record, _) = self.jobs.end(key, ending).await? {
            self.finished(&record);
        }
        Ok(())
    }

    /// A job this middleware carried to its end, as `record` (terminal) says: one log line
    /// (with the job's span: its id, user, language and request id) and the metrics.
    pub(crate) fn finished(&self, record: &JobRecord) {
        let millis = |from: Option<Timestamp>, to: Option<Timestamp>| {
            from.zip(to).map(|(from, to)| millis_between(from, to))
        };
        tracing::info!(
            status = record.status.as_str(),
            reason = record.reason.map(Reason::as_str),
            exit_code = record.exit_code,
            queue_ms = millis(Some(record.created_at), record.started_at),
            run_ms = millis(record.started_at, record.finished_at),
            total_ms = millis(Some(record.created_at), record.finished_at),
            "job ended"
        );
        self.metrics.finished(record);
    }
}

/// How a job task ended with its message.
pub(crate) enum Disposition {
    /// The job is terminal (or can never run): acknowledge.
    Ack,
    /// The job is terminal: acknowledge without waiting for the server's confirmation (if the
    /// ack is lost, the redelivered message finds the record terminal and is acked then).
    AckNoWait,
    /// The message cannot be decoded: never deliver it again.
    Terminate,
    /// The middleware is stopping with the job unfinished: leave it for redelivery.
    Leave,
    /// The backend has no room for the job now (a cluster's quota is used up): it is queued
    /// again and its message comes back after [`RETRY_LATER`].
    RetryLater,
    /// The job waits (for renewable power): its message comes back after this long.
    WaitFor(Duration),
}

/// How long a job the backend had no room for waits before it is tried again.
pub const RETRY_LATER: Duration = Duration::from_secs(5);

/// The numeric runtime of one middleware process: its solver threads and its bound on jobs
/// in flight.
pub struct NumericRuntime {
    pub(crate) js: jetstream::Context,
    pub(crate) outputs: ObjectStore,
    pub(crate) pool: SolverPool,
    in_flight: Arc<Semaphore>,
}

impl NumericRuntime {
    /// A runtime storing zips in the topology's object store, with `threads` solver threads,
    /// holding at most `in_flight` jobs.
    pub fn new(topology: &Topology, threads: usize, in_flight: usize) -> Self {
        Self {
            js: topology.js.clone(),
            outputs: topology.outputs.clone(),
            pool: SolverPool::new(threads, SOLVER_STACK_BYTES),
            in_flight: Arc::new(Semaphore::new(in_flight)),
        }
    }

    /// Solver threads for this machine: twice the cores, at least 4, so that a few jobs using
    /// up their budget share the cores with the others instead of making them wait. One user
    /// may hold half of them: every core, with the other half kept for other users.
    pub fn default_threads() -> usize {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        (2 * cores).clamp(4, 64)
    }

    /// A slot for one more numeric job; waits while as many as the runtime holds are held.
    /// Numeric jobs take these instead of the slots of executor jobs.
    pub async fn slot(&self) -> OwnedSemaphorePermit {
        self.in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }
}
