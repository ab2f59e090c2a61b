//! Fair share between users: which delivered job starts next.
//!
//! The job stream delivers in the order jobs were submitted, so a user who queues hundreds of
//! jobs would make everybody behind them wait. The middleware therefore takes up to
//! `lookahead` messages ahead of its free slots and holds them in a queue per user (and per
//! kind: programs, which take an executor slot, and numeric problems, which have their own
//! bound), keeping each held message alive with progress acks. When a slot frees, the next
//! job is the oldest held one of the user who has the fewest jobs of that kind running here,
//! and among equals the one served longest ago: a user alone gets every slot, two users get
//! half each, and a newcomer's job is next whatever others have queued within the window.
//! A user's own jobs start in the order they were submitted.
//!
//! What fair share cannot see is beyond the window: jobs still in the stream behind
//! `lookahead` held ones. The per-user quota of unfinished jobs (the gateway's, enforced by
//! the stream) keeps one user from filling it: with the defaults (50 per user, 1000 held),
//! twenty users at their quota still leave room for everybody else.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

use async_nats::jetstream::{AckKind, Message};
use cola_wire::{JobMessage, UserId};
use tokio::sync::Notify;

/// The kinds of jobs that take different slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A program, run by an executor: takes one of the middleware's slots.
    Program,
    /// A numeric problem, solved in-process: takes a numeric slot.
    Numeric,
}

impl Kind {
    pub fn of(job: &JobMessage) -> Self {
        if cola_wire::language(&job.language).is_some_and(|def| def.is_numeric()) {
            Self::Numeric
        } else {
            Self::Program
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Program => 0,
            Self::Numeric => 1,
        }
    }
}

/// A delivered job waiting for a slot, with its message (`M`: a JetStream message).
pub struct Held<M = Message> {
    pub msg: M,
    pub job: JobMessage,
}

/// The jobs held by one middleware, per kind and user, and who runs what.
pub struct FairQueue<M = Message> {
    state: Mutex<State<M>>,
    /// Woken when a job of that kind is held.
    arrived: [Notify; 2],
    /// Woken when a held job is taken (there is room to pull more).
    taken: Notify,
}

struct State<M> {
    kinds: [KindState<M>; 2],
    held: usize,
    /// Counts dispatches, to tell who was served longest ago.
    clock: u64,
    closed: bool,
}

struct KindState<M> {
    users: HashMap<UserId, UserState<M>>,
}

struct UserState<M> {
    /// In the order they came, each with when (by the clock).
    waiting: VecDeque<(u64, Held<M>)>,
    running: usize,
    served_at: u64,
}

impl<M> Default for UserState<M> {
    fn default() -> Self {
        Self {
            waiting: VecDeque::new(),
            running: 0,
            served_at: 0,
        }
    }
}

impl<M> Default for FairQueue<M> {
    fn default() -> Self {
        let kind = || KindState {
            users: HashMap::new(),
        };
        Self {
            state: Mutex::new(State {
                kinds: [kind(), kind()],
                held: 0,
                clock: 0,
                closed: false,
            }),
            arrived: [Notify::new(), Notify::new()],
            taken: Notify::new(),
        }
    }
}

impl<M> FairQueue<M> {
    /// Holds a delivered job until a slot of its kind takes it.
    pub fn hold(&self, held: Held<M>) {
        let kind = Kind::of(&held.job);
        let mut state = self.lock();
        state.held += 1;
        state.clock += 1;
        let came = state.clock;
        let users = &mut state.kinds[kind.index()].users;
        users
            .entry(held.job.user.clone())
            .or_default()
            .waiting
            .push_back((came, held));
        drop(state);
        self.arrived[kind.index()].notify_one();
    }

    /// How many jobs are held (delivered, not started).
    pub fn held(&self) -> usize {
        self.lock().held
    }

    /// Waits until fewer than `most` jobs are held.
    pub async fn wait_for_room(&self, most: usize) {
        loop {
            let taken = self.taken.notified();
            if self.held() < most {
                return;
            }
            taken.await;
        }
    }

    /// The next job of `kind` to start (see the module's documentation), waiting for one; the
    /// caller has a slot for it, and calls [`FairQueue::finished`] when it is done. `None` once
    /// the queue is closed.
    pub async fn next(&self, kind: Kind) -> Option<Held<M>> {
        loop {
            let arrived = self.arrived[kind.index()].notified();
            if let Some(next) = self.take(kind) {
                return next;
            }
            arrived.await;
        }
    }

    /// The next job of `kind` if one is held: `Some(None)` when closed, `None` when empty.
    fn take(&self, kind: Kind) -> Option<Option<Held<M>>> {
        let mut state = self.lock();
        if state.closed {
            return Some(None);
        }
        state.clock += 1;
        let clock = state.clock;
        let users = &mut state.kinds[kind.index()].users;
        // Fewest running, then served longest ago, then waiting longest.
        let user = users
            .iter()
            .filter_map(|(user, u)| Some((user, (u.running, u.served_at, u.waiting.front()?.0))))
            .min_by_key(|(_, rank)| *rank)
            .map(|(user, _)| user.clone())?;
        let chosen = users.get_mut(&user).expect("just found");
        let (_, held) = chosen.waiting.pop_front().expect("not empty");
        chosen.running += 1;
        chosen.served_at = clock;
        state.held -= 1;
        drop(state);
        self.taken.notify_one();
        Some(Some(held))
    }

    /// A job of `kind` that [`FairQueue::next`] gave has ended.
    pub fn finished(&self, kind: Kind, user: &UserId) {
        let mut state = self.lock();
        let users = &mut state.kinds[kind.index()].users;
        if let Some(u) = users.get_mut(user) {
            u.running = u.running.saturating_sub(1);
            if u.running == 0 && u.waiting.is_empty() {
                users.remove(user);
            }
        }
    }

    /// Stops handing out jobs; returns those still held, to give back to the stream.
    pub fn close(&self) -> Vec<Held<M>> {
        let mut state = self.lock();
        state.closed = true;
        state.held = 0;
        let held = state
            .kinds
            .iter_mut()
            .flat_map(|k| k.users.values_mut())
            .flat_map(|u| u.waiting.drain(..).map(|(_, held)| held))
            .collect();
        drop(state);
        for arrived in &self.arrived {
            arrived.notify_waiters();
        }
        self.taken.notify_waiters();
        held
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<M>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<M: Clone> FairQueue<M> {
    /// Copies of every held message, to keep them alive ([`keep_alive`]).
    fn held_messages(&self) -> Vec<M> {
        let state = self.lock();
        state
            .kinds
            .iter()
            .flat_map(|k| k.users.values())
            .flat_map(|u| u.waiting.iter().map(|(_, h)| h.msg.clone()))
            .collect()
    }
}

/// Marks every held message in progress, so the stream does not deliver it again while it
/// waits here; call it well within the consumer's ack wait.
pub async fn keep_alive(queue: &FairQueue<Message>) {
    for msg in queue.held_messages() {
        if let Err(e) = msg.ack_with(AckKind::Progress).await {
            tracing::warn!(error = %e, "progress ack of a held job failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The jobs `queue` hands out for `kind`, by their first argument.
    fn order(queue: &FairQueue<()>, kind: Kind, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                let held = queue.take(kind).unwrap().unwrap();
                held.job.args[0].clone()
            })
            .collect()
    }

    fn job(user: &str, n: usize, language: &str) -> JobMessage {
        let lang = cola_wire::language(&cola_wire::Language::parse(language).unwrap()).unwrap();
        JobMessage {
            schedule: None,
            request_id: None,
            id: cola_wire::JobId::new(),
            user: UserId::parse(user).unwrap(),
            language: lang.id(),
            args: vec![format!("{user}{n}")],
            limits: lang.default_limits,
            created_at: cola_wire::job::now(),
            work: cola_wire::Work::Inputs(Default::default()),
        }
    }

    fn hold(queue: &FairQueue<()>, job: JobMessage) {
        queue.hold(Held { msg: (), job });
    }

    #[test]
    fn a_newcomer_goes_before_a_flood_and_each_users_order_holds() {
        let queue = FairQueue::default();
        for n in 0..5 {
            hold(&queue, job("ada", n, "c"));
        }
        hold(&queue, job("bob", 0, "c"));
        // ada's first, then bob's (nobody of his runs), then ada's in order.
        assert_eq!(order(&queue, Kind::Program, 3), ["ada0", "bob0", "ada1"]);
        assert_eq!(queue.held(), 3);
    }

    #[test]
    fn slots_go_to_who_runs_least_and_kinds_do_not_wait_for_each_other() {
        let queue = FairQueue::default();
        for n in 0..3 {
            hold(&queue, job("ada", n, "c"));
            hold(&queue, job("bob", n, "c"));
            hold(&queue, job("cyd", n, "numeric"));
        }
        let first = order(&queue, Kind::Program, 2);
        assert_eq!(first, ["ada0", "bob0"]);
        // ada's job ends: she runs nothing now, bob one: hers is next.
        queue.finished(Kind::Program, &UserId::parse("ada").unwrap());
        assert_eq!(order(&queue, Kind::Program, 1), ["ada1"]);
        // Numeric jobs were never behind the programs.
        assert_eq!(order(&queue, Kind::Numeric, 3), ["cyd0", "cyd1", "cyd2"]);
        assert!(queue.take(Kind::Numeric).is_none());
        let left = queue.close();
        assert_eq!(left.len(), 3);
        assert!(matches!(queue.take(Kind::Program), Some(None)));
    }
}
