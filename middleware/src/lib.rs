//! The cola middleware: consumes jobs from the JetStream stream `COLA` through the durable pull
//! consumer `middleware` (shared by every replica), records each job's progress in the KV bucket
//! `cola-jobs` by compare-and-set, launches an executor per job through a [`Backend`], watches
//! it, enforces deadlines and cancel requests, and acknowledges a message only once its job is
//! terminal. It is the only component that talks to a backend.
//!
//! The Docker and Kubernetes backends are behind the cargo features `docker` and `kubernetes`
//! (both on by default): a build without one does not compile its client (bollard, kube).

#![forbid(unsafe_code)]

pub mod backend;
mod cancels;
mod context;
mod delivery;
#[cfg(feature = "docker")]
pub mod docker;
pub mod energy;
mod error;
pub mod health;
mod job;
#[cfg(feature = "kubernetes")]
pub mod kube;
pub mod metrics;
pub mod numeric;
pub mod process;
pub mod scheduler;
mod solver_pool;
mod supervise;
mod work_areas;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::{self, consumer::pull};
use cola_wire::{
    JobMessage, RequestId,
    energy_store::EnergyStore,
    names,
    nats::{NatsError, Topology, TopologyConfig},
};
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use backend::{Backend, BackendError, ExecutorExit};
use context::{Context, NumericRuntime};
use energy::{Energy, EnergyConfig, Shift};
pub use error::MiddlewareError;
use scheduler::{FairQueue, Held, Kind};

/// How long one pull request waits for messages.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// The most messages one pull request asks for.
const MAX_PULL_BATCH: usize = 256;
/// How long the pull request of a middleware that held back waits: it takes what is waiting,
/// and does not stand in line for the next job (a greener node's middleware should get it).
const HELD_BACK_PULL_EXPIRES: Duration = Duration::from_millis(20);

/// The middleware's settings.
#[derive(Debug, Clone)]
pub struct MiddlewareConfig {
    pub nats_url: String,
    /// Jobs run at once by this replica.
    pub concurrency: usize,
    /// Jobs this replica takes from the stream ahead of its free slots, to choose fairly
    /// between users which starts next (see [`scheduler`]).
    pub lookahead: usize,
    /// Numeric jobs this replica holds at once (solving or waiting for a solver thread): they
    /// take none of the `concurrency` slots.
    pub numeric_in_flight: usize,
    /// On shutdown, how long running jobs may go on before they are left to redelivery.
    pub grace: Duration,
    /// How long the consumer waits for an ack before redelivering a job whose middleware went
    /// silent (running jobs send progress acks well within it).
    pub ack_wait: Duration,
    /// Stream and bucket settings (created if missing).
    pub topology: TopologyConfig,
    /// At start-up, how long to keep trying to reach NATS and make or open the stream and
    /// buckets before giving up; none: the first failure stops the start.
    pub start_patience: Duration,
    /// The node this middleware runs on and how it places work (see [`energy`]).
    pub energy: EnergyConfig,
}

impl MiddlewareConfig {
    pub fn validate(&self) -> Result<(), MiddlewareError> {
        if self.concurrency == 0 || self.concurrency > 10_000 {
            return Err(MiddlewareError::Config(
                "concurrency must be between 1 and 10000".into(),
            ));
        }
        if self.numeric_in_flight == 0 || self.numeric_in_flight > 100_000 {
            return Err(MiddlewareError::Config(
                "numeric jobs in flight must be between 1 and 100000".into(),
            ));
        }
        if self.lookahead == 0 || self.lookahead > 50_000 {
            return Err(MiddlewareError::Config(
                "lookahead must be between 1 and 50000".into(),
            ));
        }
        if self.ack_wait < Duration::from_secs(1) || self.ack_wait > Duration::from_secs(3600) {
            return Err(MiddlewareError::Config(
                "ack wait must be between 1 s and 1 h".into(),
            ));
        }
        if self.nats_url.trim().is_empty() {
            return Err(MiddlewareError::Config("a NATS URL is required".into()));
        }
        self.energy.validate()
    }
}

/// Runs the middleware until `shutdown`, then drains within the grace period.
pub async fn run(
    config: MiddlewareConfig,
    backend: Arc<dyn Backend>,
    shutdown: CancellationToken,
) -> Result<(), MiddlewareError> {
    run_with_probes(config, backend, shutdown, health::Probes::new()).await
}

/// [`run`], reporting readiness to `probes` (served by [`health::serve`]): ready from the first
/// pull while connected to NATS, not ready once stopping.
pub async fn run_with_probes(
    config: MiddlewareConfig,
    backend: Arc<dyn Backend>,
    shutdown: CancellationToken,
    probes: health::Probes,
) -> Result<(), MiddlewareError> {
    config.validate()?;
    let what = "connecting to NATS and making cola's stream and buckets";
    let (client, topology) =
        cola_wire::nats_connect::patiently(what, config.start_patience, || async {
            let options = probes
                .metrics()
                .nats
                .connect_options("cola-middleware", || {});
            let client = cola_wire::nats_connect::connect(&config.nats_url, options)
                .await
                .map_err(|e| NatsError::nats("connect to NATS", e))?;
            let topology =
                Topology::ensure(&jetstream::new(client.clone()), &config.topology).await?;
            Ok::<_, NatsError>((client, topology))
        })
        .await?;
    probes.connected(&client);
    let js = jetstream::new(client);
    let energy_store = EnergyStore::ensure(&js, config.topology.replicas).await?;
    let energy = Arc::new(Energy::new(config.energy.clone(), energy_store.clone()));
    backend.place_with(energy.clone());
    backend.attach(&topology).await?;
    publish_versions(&topology, backend.as_ref()).await;
    publish_isolation(&topology, backend.as_ref()).await;

    let consumer = consumer(&js, config.ack_wait).await?;
    probes.observe(metrics::Observed {
        client: js.client(),
        consumer: consumer.clone(),
        backend: backend.clone(),
    });
    let ctx = Arc::new(Context {
        jobs: topology.jobs.clone(),
        topology: topology.clone(),
        backend,
        cancels: cancels::CancelBoard::default(),
        shutdown: shutdown.clone(),
        grace: config.grace,
        progress_every: config.ack_wait / 3,
        numeric: NumericRuntime::new(
            &topology,
            NumericRuntime::default_threads(),
            config.numeric_in_flight,
        ),
        stored: Default::default(),
        metrics: probes.metrics().clone(),
        energy: energy.clone(),
    });
    let tasks = TaskTracker::new();
    let watcher_stop = CancellationToken::new();
    let watcher = tokio::spawn(cancels::watch(
        topology.jobs.clone(),
        ctx.cancels.clone(),
        watcher_stop.clone(),
    ));

    let queue = Arc::new(FairQueue::default());
    let slots = Arc::new(Semaphore::new(config.concurrency));
    let running = Arc::new(AtomicUsize::new(0));
    // Program slots neither running nor promised to a job already pulled.
    let free_slots = {
        let (queue, running, concurrency) = (queue.clone(), running.clone(), config.concurrency);
        move || concurrency.saturating_sub(running.load(Ordering::Relaxed) + queue.held())
    };
    let dispatchers = [Kind::Program, Kind::Numeric].map(|kind| {
        tokio::spawn(dispatch(
            kind,
            queue.clone(),
            slots.clone(),
            running.clone(),
            ctx.clone(),
            tasks.clone(),
        ))
    });
    let keeper = tokio::spawn(keep_held_alive(
        queue.clone(),
        ctx.progress_every,
        watcher_stop.clone(),
    ));
    let counter = tokio::spawn(count_stored(ctx.clone(), watcher_stop.clone()));
    let energy_tasks = [
        tokio::spawn(
            energy
                .view
                .clone()
                .follow(energy_store.clone(), watcher_stop.clone()),
        ),
        tokio::spawn(energy::intake::take_in(
            js.client(),
            energy_store,
            ctx.metrics.clone(),
            watcher_stop.clone(),
        )),
        tokio::spawn({
            let (energy, stop, free) = (energy.clone(), watcher_stop.clone(), free_slots.clone());
            let concurrency = config.concurrency;
            async move { energy.keep_present(concurrency, free, stop).await }
        }),
    ];
    tracing::info!(
        concurrency = config.concurrency,
        lookahead = config.lookahead,
        backend = ctx.backend.name(),
        node = %energy.config.node,
        placement = ?energy.config.placement,
        "middleware pulling jobs"
    );
    probes.set_pulling(true);
    let room = || energy::Room {
        free: u32::try_from(free_slots()).unwrap_or(u32::MAX),
        slots: u32::try_from(config.concurrency).unwrap_or(u32::MAX),
    };
    pull(
        &consumer,
        &queue,
        config.lookahead,
        room,
        &ctx,
        &tasks,
        &shutdown,
    )
    .await;
    probes.set_pulling(false);
    tracing::info!(
        grace_s = config.grace.as_secs(),
        "middleware stopping: draining running jobs"
    );
    // Jobs not started yet go back to the stream at once, for another replica.
    for held in queue.close() {
        tasks.spawn(delivery::give_back(held.msg));
    }
    for dispatcher in dispatchers {
        dispatcher.await.ok();
    }
    tasks.close();
    // Running jobs watch `shutdown` themselves and leave after the grace period.
    tasks.wait().await;
    ctx.backend.detach().await;
    watcher_stop.cancel();
    watcher.await.ok();
    keeper.await.ok();
    counter.await.ok();
    for task in energy_tasks {
        task.await.ok();
    }
    Ok(())
}

/// How often the zips this middleware stored are counted against their users' storage.
const COUNT_STORED_EVERY: Duration = Duration::from_secs(1);

/// Writes what this middleware stored to each user's storage count, every second and once
/// more at `stop`.
async fn count_stored(ctx: Arc<Context>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(COUNT_STORED_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => ctx.stored.flush(&ctx.topology.usage).await,
        }
    }
    ctx.stored.flush(&ctx.topology.usage).await;
}

/// Takes messages from the stream into `queue` while it holds fewer than `lookahead`, until
/// `shutdown`. A message that is not a job message is terminated at once; a time-shiftable job
/// that waits for renewable power goes back to the stream for a while (see [`energy`]). On a
/// browner node than others with room, or without a free slot (`room_here`) while another
/// node has room, each pull waits a little first, and then takes only what is waiting, unless
/// work was seen waiting in the stream (a backlog).
async fn pull(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    queue: &FairQueue,
    lookahead: usize,
    room_here: impl Fn() -> energy::Room + Copy,
    ctx: &Arc<Context>,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let mut backlog = false;
    while !shutdown.is_cancelled() {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            () = queue.wait_for_room(lookahead) => {}
        }
        let held_back = tokio::select! {
            _ = shutdown.cancelled() => return,
            held_back = ctx.energy.wait_before_pull(|| room_here().free, backlog) => held_back,
        };
        let room = lookahead
            .saturating_sub(queue.held())
            .clamp(1, MAX_PULL_BATCH);
        let expires = if held_back {
            HELD_BACK_PULL_EXPIRES
        } else {
            PULL_EXPIRES
        };
        let batch = consumer
            .fetch()
            .max_messages(room)
            .expires(expires)
            .messages()
            .await;
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "pull failed; retrying");
                pause(shutdown).await;
                continue;
            }
        };
        backlog = false;
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = batch.next() => next,
            };
            match next {
                Some(Ok(msg)) => {
                    backlog = msg.info().is_ok_and(|info| info.pending > 0);
                    take(msg, queue, room_here(), ctx, tasks);
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "pull batch ended with an error");
                    break;
                }
                None => break,
            }
        }
    }
}

/// A message just pulled: a job into `queue`, unless it waits for renewable power.
fn take(
    msg: jetstream::Message,
    queue: &FairQueue,
    room: energy::Room,
    ctx: &Arc<Context>,
    tasks: &TaskTracker,
) {
    match serde_json::from_slice::<JobMessage>(&msg.payload) {
        Ok(mut job) => {
            job.request_id = request_id_of(&msg);
            if let Some(schedule) = job.schedule
                && let Shift::Wait(wait) = ctx.energy.shift(schedule.not_after, room)
            {
                tasks.spawn(delivery::wait_for_power(ctx.clone(), msg, job, wait));
                return;
            }
            queue.hold(Held { msg, job });
            ctx.energy.room_changed();
        }
        Err(e) => {
            tasks.spawn(delivery::terminate_undecodable(msg, e));
        }
    }
}

/// The id of the request that submitted a job, from its message's header, when it has a valid
/// one (it is only ever logged).
fn request_id_of(msg: &jetstream::Message) -> Option<RequestId> {
    let value = msg.headers.as_ref()?.get(names::REQUEST_ID_HEADER)?;
    RequestId::parse(value.as_str()).ok()
}

/// Starts the jobs of `kind` that `queue` hands out, each once it has a slot: one of `slots`
/// for a program, a numeric slot for a numeric problem; counts the programs `running`. Ends
/// when the queue is closed.
async fn dispatch(
    kind: Kind,
    queue: Arc<FairQueue>,
    slots: Arc<Semaphore>,
    running: Arc<AtomicUsize>,
    ctx: Arc<Context>,
    tasks: TaskTracker,
) {
    loop {
        let permit = match kind {
            Kind::Program => slots
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed"),
            Kind::Numeric => ctx.numeric.slot().await,
        };
        let Some(held) = queue.next(kind).await else {
            return;
        };
        let (ctx, queue, running) = (ctx.clone(), queue.clone(), running.clone());
        let program = kind == Kind::Program;
        if program {
            running.fetch_add(1, Ordering::Relaxed);
        }
        tasks.spawn(async move {
            let user = held.job.user.clone();
            delivery::handle(ctx.clone(), held.msg, held.job, kind).await;
            queue.finished(kind, &user);
            drop(permit);
            if program {
                running.fetch_sub(1, Ordering::Relaxed);
                ctx.energy.room_changed();
            }
        });
    }
}

/// Keeps the messages held in `queue` from being delivered again, until `stop`.
async fn keep_held_alive(queue: Arc<FairQueue>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => scheduler::keep_alive(&queue).await,
        }
    }
}

async fn pause(shutdown: &CancellationToken) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
    }
}

/// The durable consumer shared by every replica (created if missing).
async fn consumer(
    js: &jetstream::Context,
    ack_wait: Duration,
) -> Result<jetstream::consumer::Consumer<pull::Config>, NatsError> {
    let stream = js
        .get_stream(names::STREAM)
        .await
        .map_err(|e| NatsError::nats("open stream COLA", e))?;
    stream
        .get_or_create_consumer(
            names::CONSUMER,
            pull::Config {
                durable_name: Some(names::CONSUMER.into()),
                description: Some("cola middleware replicas".into()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait,
                filter_subject: names::STREAM_SUBJECTS.into(),
                max_ack_pending: 100_000,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| NatsError::nats("create consumer middleware", e))
}

/// Says once how this backend isolates jobs (a warning for what it cannot), and tells the
/// gateways, which show it in `GET /api/v1/languages`.
async fn publish_isolation(topology: &Topology, backend: &dyn Backend) {
    let isolation = backend.isolation().await;
    for (what, provision) in [("cgroup", &isolation.cgroup), ("disk", &isolation.disk)] {
        if provision.enforced {
            tracing::info!(detail = %provision.detail, "isolation: a {what} per job");
        } else {
            tracing::warn!(
                why = %provision.detail,
                "isolation: no {what} per job; jobs keep their rlimits only"
            );
        }
    }
    let body = serde_json::to_vec(&isolation).expect("isolation serializes");
    if let Err(e) = topology.meta.put(names::META_ISOLATION, body.into()).await {
        tracing::warn!(error = %e, "cannot publish how jobs are isolated");
    }
}

/// Tells the gateways which toolchain versions this backend runs.
async fn publish_versions(topology: &Topology, backend: &dyn Backend) {
    let versions = backend.versions().await;
    if versions.is_empty() {
        return;
    }
    let body = serde_json::to_vec(&versions).expect("a map of strings serializes");
    if let Err(e) = topology
        .meta
        .put(names::META_LANGUAGE_VERSIONS, body.into())
        .await
    {
        tracing::warn!(error = %e, "cannot publish toolchain versions");
    }
}
