//! The solver threads of the numeric runtime, shared fairly between users.
//!
//! Work waits in one queue per user. A free thread takes the next work of the user who holds
//! the fewest threads (round-robin among equals), and no user holds more than half of the
//! threads (at least one), so one user's slow problems never make another user's job wait
//! behind them: it finds a thread free, or is next when one frees up. One user's work starts
//! in the order it was handed in.
//!
//! What is handed in comes back as a [`Solving`]: the answer to await, when a thread
//! [`Started`] it, and a [`StopFlag`] that dropping the `Solving` raises. Work whose `Solving`
//! is gone before a thread reaches it is skipped; work already running sees the flag at its
//! next budget check. So nobody's solver keeps a thread once its job is over.

use std::{
    collections::{HashMap, VecDeque},
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll},
    time::Instant,
};

use cola_numeric::StopFlag;
use cola_wire::JobId;
use tokio::sync::oneshot;

type Task = Box<dyn FnOnce() + Send>;

/// A fixed set of solver threads, fed fairly between users.
pub(crate) struct SolverPool {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<FairQueue>,
    /// Signalled when work is handed in (or the pool closes).
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FairQueue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SolverPool {
    /// `threads` solver threads (at least one), each with a stack of `stack` bytes.
    pub(crate) fn new(threads: usize, stack: usize) -> Self {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            queue: Mutex::new(FairQueue::new(threads)),
            ready: Condvar::new(),
        });
        for i in 0..threads {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("cola-numeric-{i}"))
                .stack_size(stack)
                .spawn(move || work(&shared))
                .expect("a solver thread starts");
        }
        Self { shared }
    }

    /// Runs `work` for `user` on a solver thread, after the work of `user` that comes before it
    /// by `order` (a job id: ids sort by when their jobs were submitted, whichever of them was
    /// handed in first). Dropping the returned [`Solving`] raises `stop`, which `work` should
    /// watch. The answer is `Err` with the message of a panic, or when the pool is gone.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        user: &str,
        order: JobId,
        stop: StopFlag,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Solving<T> {
        let (answer, answered) = oneshot::channel();
        let (start, started) = oneshot::channel();
        let task: Task = Box::new(move || {
            if answer.is_closed() {
                return; // its job is over: nobody waits for the answer
            }
            let _ = start.send(Instant::now());
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(work)).map_err(|panic| {
                panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".to_owned())
            });
            let _ = answer.send(outcome);
        });
        self.shared.lock().push(user, order, task);
        self.shared.ready.notify_one();
        Solving {
            answer: Answer(answered),
            started: Started::waiting(started),
            stop,
        }
    }
}

impl Drop for SolverPool {
    fn drop(&mut self) {
        // Work not started is dropped (its answer is then an error); the threads end.
        self.shared.lock().close();
        self.shared.ready.notify_all();
    }
}

/// A solver thread: starts the next work due until the pool closes.
fn work(shared: &Shared) {
    let mut queue = shared.lock();
    loop {
        if let Some((user, task)) = queue.next() {
            drop(queue);
            task();
            queue = shared.lock();
            queue.finished(&user);
        } else if queue.closed {
            return;
        } else {
            queue = shared
                .ready
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The work waiting for a solver thread, one queue per user, and what each user runs.
struct FairQueue {
    /// Users with work waiting, in the order they are served.
    turns: VecDeque<String>,
    users: HashMap<String, UserWork>,
    /// Most threads one user may hold.
    per_user: usize,
    closed: bool,
}

#[derive(Default)]
struct UserWork {
    /// By job id: in the order the jobs were submitted.
    waiting: VecDeque<(JobId, Task)>,
    running: usize,
}

impl FairQueue {
    fn new(threads: usize) -> Self {
        Self {
            turns: VecDeque::new(),
            users: HashMap::new(),
            per_user: (threads / 2).max(1),
            closed: false,
        }
    }

    fn push(&mut self, user: &str, order: JobId, task: Task) {
        if self.closed {
            return;
        }
        let work = self.users.entry(user.to_owned()).or_default();
        if work.waiting.is_empty() {
            self.turns.push_back(user.to_owned());
        }
        let at = work
            .waiting
            .partition_point(|(earlier, _)| *earlier < order);
        work.waiting.insert(at, (order, task));
    }

    /// The next work to start: the oldest of the user who holds the fewest threads (below
    /// `per_user`), the first in turn among equals. That user then goes to the back of the line.
    fn next(&mut self) -> Option<(String, Task)> {
        let per_user = self.per_user;
        let (_, position) = self
            .turns
            .iter()
            .enumerate()
            .filter_map(|(position, user)| {
                let running = self.users.get(user)?.running;
                (running < per_user).then_some((running, position))
            })
            .min()?;
        let user = self.turns.remove(position)?;
        let work = self.users.get_mut(&user)?;
        let (_, task) = work.waiting.pop_front()?;
        work.running += 1;
        if !work.waiting.is_empty() {
            self.turns.push_back(user.clone());
        }
        Some((user, task))
    }

    fn finished(&mut self, user: &str) {
        if let Some(work) = self.users.get_mut(user) {
            work.running -= 1;
            if work.running == 0 && work.waiting.is_empty() {
                self.users.remove(user);
            }
        }
    }

    fn close(&mut self) {
        self.closed = true;
        self.turns.clear();
        for work in self.users.values_mut() {
            work.waiting.clear();
        }
    }
}

/// Work handed to the pool (or already done inline). Dropping it raises its stop flag: the
/// work is skipped if it has not started, and stops at its next budget check if it has.
pub(crate) struct Solving<T> {
    pub(crate) answer: Answer<T>,
    pub(crate) started: Started,
    stop: StopFlag,
}

impl<T> Solving<T> {
    /// An answer already there (solved inline, from `started`).
    pub(crate) fn ready(value: T, started: Instant) -> Self {
        let (answer, answered) = oneshot::channel();
        let _ = answer.send(Ok(value));
        Self {
            answer: Answer(answered),
            started: Started::at(started),
            stop: StopFlag::new(),
        }
    }
}

impl<T> Drop for Solving<T> {
    fn drop(&mut self) {
        self.stop.stop();
    }
}

impl<T> Future for Solving<T> {
    type Output = Result<T, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.answer).poll(cx)
    }
}

/// The answer of a solver thread, to await.
pub(crate) struct Answer<T>(oneshot::Receiver<Result<T, String>>);

impl<T> Future for Answer<T> {
    type Output = Result<T, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or_else(|_| Err("the solver threads are gone".to_owned())))
    }
}

/// When a solver thread started the work: a future that resolves then (and never, if the work
/// is dropped unstarted: its answer says so).
pub(crate) struct Started {
    signal: Option<oneshot::Receiver<Instant>>,
    at: Option<Instant>,
}

impl Started {
    fn waiting(signal: oneshot::Receiver<Instant>) -> Self {
        Self {
            signal: Some(signal),
            at: None,
        }
    }

    fn at(at: Instant) -> Self {
        Self {
            signal: None,
            at: Some(at),
        }
    }

    /// When the work started, if it has.
    pub(crate) fn instant(&mut self) -> Option<Instant> {
        if let Some(at) = self.signal.as_mut().and_then(|s| s.try_recv().ok()) {
            (self.at, self.signal) = (Some(at), None);
        }
        self.at
    }
}

impl Future for Started {
    type Output = Instant;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Instant> {
        if let Some(at) = self.at {
            return Poll::Ready(at);
        }
        let Some(signal) = self.signal.as_mut() else {
            return Poll::Pending;
        };
        match Pin::new(signal).poll(cx) {
            Poll::Ready(Ok(at)) => {
                (self.at, self.signal) = (Some(at), None);
                Poll::Ready(at)
            }
            Poll::Ready(Err(_)) => {
                self.signal = None;
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{sync::mpsc, time::Duration};

    /// Work that holds its thread until `release` is dropped or sent to, reporting
    /// `(user, n)` to `log` when it starts.
    fn held(
        log: &mpsc::Sender<(&'static str, u32)>,
        user: &'static str,
        n: u32,
        release: &Arc<Mutex<mpsc::Receiver<()>>>,
    ) -> impl FnOnce() + Send + 'static {
        let (log, release) = (log.clone(), release.clone());
        move || {
            log.send((user, n)).unwrap();
            let _ = release.lock().unwrap().recv();
        }
    }

    fn started(log: &mpsc::Receiver<(&'static str, u32)>) -> (&'static str, u32) {
        log.recv_timeout(Duration::from_secs(10))
            .expect("work started")
    }

    #[test]
    fn a_user_holds_at_most_half_the_threads_and_others_start_at_once_in_turn() {
        let pool = SolverPool::new(4, 1 << 20);
        let (log, starts) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let released = Arc::new(Mutex::new(released));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // One user hands in 6 slow pieces of work: two start, in order; four wait.
        let a: Vec<_> = (0..6)
            .map(|n| {
                pool.run(
                    "a",
                    JobId::new(),
                    StopFlag::new(),
                    held(&log, "a", n, &released),
                )
            })
            .collect();
        assert_eq!([started(&starts), started(&starts)], [("a", 0), ("a", 1)]);
        assert!(starts.recv_timeout(Duration::from_millis(200)).is_err());
        // Two other users each find a thread at once (the fourth waits for the next one).
        let b = pool.run(
            "b",
            JobId::new(),
            StopFlag::new(),
            held(&log, "b", 0, &released),
        );
        assert_eq!(started(&starts), ("b", 0));
        let c = pool.run(
            "c",
            JobId::new(),
            StopFlag::new(),
            held(&log, "c", 0, &released),
        );
        assert_eq!(started(&starts), ("c", 0));
        let d = pool.run(
            "d",
            JobId::new(),
            StopFlag::new(),
            held(&log, "d", 0, &released),
        );
        assert!(starts.recv_timeout(Duration::from_millis(200)).is_err());
        // A thread frees up: d, who holds none, goes before a, who still holds one or two;
        // then a's work goes on in order.
        release.send(()).unwrap();
        let next = started(&starts);
        assert_eq!(next, ("d", 0));
        drop(release);
        let mut rest: Vec<_> = (0..4).map(|_| started(&starts)).collect();
        rest.sort_unstable();
        assert_eq!(rest, [("a", 2), ("a", 3), ("a", 4), ("a", 5)]);
        for solving in a.into_iter().chain([b, c, d]) {
            runtime.block_on(solving).unwrap();
        }
    }

    #[test]
    fn a_users_work_starts_in_the_order_its_jobs_were_submitted() {
        let pool = SolverPool::new(2, 1 << 20);
        let (log, starts) = mpsc::channel();
        // Ids as the gateway made them; handed in as racing tasks might, the last two swapped
        // (while the first job holds the user's one thread).
        let ids: Vec<JobId> = (0..20).map(|_| JobId::new()).collect();
        let mut handed = (0..20).collect::<Vec<usize>>();
        handed.swap(18, 19);
        let order: Vec<_> = handed
            .into_iter()
            .map(|n| {
                let log = log.clone();
                pool.run("a", ids[n], StopFlag::new(), move || {
                    if n == 0 {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    log.send(n as u32).unwrap()
                })
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for solving in order {
            runtime.block_on(solving).unwrap();
        }
        // One thread for one user (half of two): strictly in order.
        let seen: Vec<u32> = starts.try_iter().collect();
        assert_eq!(seen, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn dropped_work_is_skipped_and_running_work_is_told_to_stop() {
        let pool = SolverPool::new(2, 1 << 20);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // Work that runs until its flag is raised.
        let spin = |stop: &StopFlag| {
            let stop = stop.clone();
            move || {
                let started = Instant::now();
                while !stop.is_raised() {
                    std::thread::yield_now();
                }
                started.elapsed()
            }
        };
        let flag = StopFlag::new();
        let mut running = pool.run("a", JobId::new(), flag.clone(), spin(&flag));
        runtime.block_on(&mut running.started);
        let (ran, skipped) = (Arc::new(Mutex::new(false)), StopFlag::new());
        let ran_too = ran.clone();
        let waiting = pool.run("a", JobId::new(), skipped, move || {
            *ran_too.lock().unwrap() = true
        });
        drop(waiting);
        drop(running); // raises the flag: the thread is free again
        // The next work of the same user starts at once, and the dropped one never ran.
        let next = pool.run("a", JobId::new(), StopFlag::new(), || 7);
        assert_eq!(runtime.block_on(next).unwrap(), 7);
        assert!(!*ran.lock().unwrap());
    }
}
