//! Energy-aware placement: each middleware knows its node (`--node-name`), takes in the
//! telemetry devices publish about every node ([`intake`]), keeps a live view of every node's
//! renewable share and of the middlewares that have room ([`view`]), tells the others it is
//! there ([`Energy::keep_present`]), and places work with one pure policy ([`policy`]):
//! a middleware on a browner node holds back its pulls while the queue is short, a
//! time-shiftable job waits for a green node until shortly before its deadline (for no more sun
//! than the same hours brought a day before, and not at all when they held nothing better than
//! their start: [`forecast`]), and an executor Pod prefers the
//! greenest nodes. With `--placement blind` nothing is held back and nothing
//! waits; the telemetry is still taken in, and the accounting still done.

pub mod forecast;
pub mod intake;
pub mod policy;
pub mod view;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use cola_wire::{
    energy::{NodeName, NodePresence, Share},
    energy_store::EnergyStore,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use policy::{NodeState, Policy, Room, Shift};
pub use view::NodesView;

use crate::MiddlewareError;

/// How often a middleware tells the others it is there (and how much room it has), besides
/// each time its room runs out or comes back.
const PRESENT_EVERY: Duration = Duration::from_secs(2);
/// The least time between two presence updates.
const PRESENT_AT_MOST_EVERY: Duration = Duration::from_millis(10);

/// Whether placement follows the energy telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Browner nodes hold back, shiftable jobs wait for green power.
    Energy,
    /// Every node pulls at once, every job starts at once.
    Blind,
}

/// A middleware's energy settings.
#[derive(Debug, Clone)]
pub struct EnergyConfig {
    /// The node this middleware (and, outside Kubernetes, its executors) runs on.
    pub node: NodeName,
    pub placement: Placement,
    /// How long a reading counts (an older one is stale: grid power).
    pub fresh_for: Duration,
    pub policy: Policy,
    /// After how long each node's renewable share is expected to come again (a day), for the
    /// forecast; `None`: no forecast (shiftable jobs wait for `green_share` alone).
    pub forecast_period: Option<Duration>,
}

impl EnergyConfig {
    /// The defaults: energy-aware, on `node`, readings fresh for 5 minutes, at most 200 ms of
    /// placement delay, shiftable jobs waiting for a 50% renewable node (or less, when the same
    /// hours a day before had less) and looked at every 30 s.
    pub fn on(node: NodeName) -> Self {
        Self {
            node,
            placement: Placement::Energy,
            fresh_for: Duration::from_secs(300),
            policy: Policy {
                max_delay: Duration::from_millis(200),
                green_share: Share::new(0.5).expect("a share"),
                recheck: Duration::from_secs(30),
            },
            forecast_period: Some(Duration::from_secs(86_400)),
        }
    }

    pub fn validate(&self) -> Result<(), MiddlewareError> {
        let bad = |m: &str| Err(MiddlewareError::Config(m.into()));
        if self.fresh_for < Duration::from_millis(100)
            || self.fresh_for > Duration::from_secs(86_400)
        {
            return bad("--energy-fresh-for must be between 100ms and 24h");
        }
        if self.policy.max_delay > Duration::from_secs(10) {
            return bad("--placement-max-delay must be at most 10s");
        }
        if self.policy.recheck < Duration::from_millis(100)
            || self.policy.recheck > Duration::from_secs(3600)
        {
            return bad("--shift-recheck must be between 100ms and 1h");
        }
        if self.forecast_period.is_some_and(|p| {
            p < Duration::from_secs(10) || p > cola_wire::energy_store::HISTORY_AGE
        }) {
            return bad("--forecast-period must be 0 (no forecast) or between 10s and 24h");
        }
        Ok(())
    }
}

/// A middleware's energy side, once connected.
pub struct Energy {
    pub config: EnergyConfig,
    pub store: EnergyStore,
    pub view: Arc<NodesView>,
    /// Rung when this middleware's room may have changed.
    room_changed: Notify,
    /// Whether a cluster places the executors (Kubernetes): then any node with a reading can
    /// run a job, not only those with a middleware.
    cluster_places: AtomicBool,
}

impl Energy {
    pub fn new(config: EnergyConfig, store: EnergyStore) -> Self {
        Self {
            store,
            view: Arc::new(NodesView::new(config.forecast_period)),
            room_changed: Notify::new(),
            cluster_places: AtomicBool::new(false),
            config,
        }
    }

    /// A cluster places this middleware's executors (see [`Energy::shift`]).
    pub fn placed_by_cluster(&self) {
        self.cluster_places.store(true, Ordering::Relaxed);
    }

    /// The nodes with a middleware as they are now.
    pub fn nodes(&self, now: DateTime<Utc>) -> Vec<NodeState> {
        self.view.nodes(now, self.config.fresh_for)
    }

    /// This node's renewable share now, if known.
    pub fn share_here(&self, now: DateTime<Utc>) -> Option<Share> {
        self.view
            .share(&self.config.node, now, self.config.fresh_for)
    }

    /// Every node's fresh share now.
    pub fn fresh_shares(&self, now: DateTime<Utc>) -> Vec<(NodeName, Share)> {
        self.view.fresh_shares(now, self.config.fresh_for)
    }

    /// How long to wait before pulling with `free_here` slots free (see
    /// [`Policy::hold_back`]); zero when blind, and when a cluster places the executors (which
    /// middleware takes a job does not decide where it runs: its Pod prefers the greenest nodes
    /// wherever it comes from).
    pub fn hold_back(&self, free_here: u32, backlog: bool) -> Duration {
        if self.cluster_places.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        match self.config.placement {
            Placement::Blind => Duration::ZERO,
            Placement::Energy => {
                let nodes = self.nodes(cola_wire::job::now());
                self.config
                    .policy
                    .hold_back(&self.config.node, free_here, &nodes, backlog)
            }
        }
    }

    /// Waits before a pull for as long as [`Energy::hold_back`] says, counted from the call,
    /// looking again each time the view of the nodes or this node's room (`free_here`)
    /// changes: a busy greener node frees the pull at once. Returns whether it waited at all.
    pub async fn wait_before_pull(&self, free_here: impl Fn() -> u32, backlog: bool) -> bool {
        let start = tokio::time::Instant::now();
        let mut waited = false;
        loop {
            let changed = self.view.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let until = start + self.hold_back(free_here(), backlog);
            if until <= tokio::time::Instant::now() {
                return waited;
            }
            waited = true;
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(until) => return waited,
            }
        }
    }

    /// Whether a job that may start as late as `not_after` starts here, with this
    /// middleware's `room`, now (see [`Policy::shift`]): with the nodes that have a
    /// middleware, or every node with a reading when a cluster places the executors, and what
    /// those nodes' shares did over the same stretch a period before; always when blind.
    pub fn shift(&self, not_after: DateTime<Utc>, room: Room) -> Shift {
        if self.config.placement == Placement::Blind {
            return Shift::Start;
        }
        let now = cola_wire::job::now();
        let cluster_places = self.cluster_places.load(Ordering::Relaxed);
        let nodes: Vec<_> = match cluster_places {
            true => self
                .fresh_shares(now)
                .into_iter()
                .map(|(node, share)| NodeState {
                    node,
                    share: Some(share),
                    free: 1,
                    slots: 1,
                })
                .collect(),
            false => self.nodes(now),
        };
        let latest_start = not_after - policy::START_MARGIN;
        let forecast = self.view.forecast(now, latest_start, |node| {
            cluster_places || nodes.iter().any(|n| &n.node == node)
        });
        let here = (!cluster_places).then_some((&self.config.node, room));
        self.config
            .policy
            .shift(now, not_after, here, &nodes, forecast)
    }

    /// This middleware's room may have changed (a job started or ended).
    pub fn room_changed(&self) {
        self.room_changed.notify_one();
        self.view.changed.notify_waiters();
    }

    /// Tells the other middlewares this one is there, with `slots` jobs at once and the
    /// room `free()` says it has, every [`PRESENT_EVERY`] and when the room runs out or comes
    /// back, until `stop` (then says it is gone).
    pub async fn keep_present(
        &self,
        slots: usize,
        free: impl Fn() -> usize,
        stop: CancellationToken,
    ) {
        let mut had_room = None;
        let mut last_told = tokio::time::Instant::now() - PRESENT_EVERY;
        loop {
            let room = free();
            if had_room != Some(room > 0) || last_told.elapsed() >= PRESENT_EVERY {
                let presence = NodePresence {
                    node: self.config.node.clone(),
                    slots: u32::try_from(slots).unwrap_or(u32::MAX),
                    free: u32::try_from(room).unwrap_or(u32::MAX),
                    updated_at: cola_wire::job::now(),
                };
                match self.store.put_presence(&presence).await {
                    Ok(()) => had_room = Some(room > 0),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot tell the other middlewares this one is there")
                    }
                }
                last_told = tokio::time::Instant::now();
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.room_changed.notified() => tokio::time::sleep(PRESENT_AT_MOST_EVERY).await,
                _ = tokio::time::sleep(PRESENT_EVERY) => {}
            }
        }
        if let Err(e) = self.store.remove_presence(&self.config.node).await {
            tracing::warn!(error = %e, "cannot tell the other middlewares this one is gone");
        }
    }
}
