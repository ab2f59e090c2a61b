//! The time a job may spend solving, checked inside every iteration and step loop (and every
//! few hundred evaluations inside a long step), and the flag that stops a solve early.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// A deadline for one solve, and optionally a [`StopFlag`]. Solvers stop with
/// [`Convergence::OutOfTime`](crate::Convergence::OutOfTime) at the first check after the deadline has
/// passed or the flag was raised.
#[derive(Clone, Debug)]
pub struct Budget {
    deadline: Option<Instant>,
    stop: Option<StopFlag>,
}

impl Budget {
    /// A budget that ends `limit` from now.
    pub fn new(limit: Duration) -> Budget {
        Budget::until(Instant::now() + limit)
    }

    /// A budget that ends at `deadline`.
    pub fn until(deadline: Instant) -> Budget {
        Budget {
            deadline: Some(deadline),
            stop: None,
        }
    }

    /// No deadline: only the problem's own limits (`max_iter`, step counts) end a solve.
    pub fn unlimited() -> Budget {
        Budget {
            deadline: None,
            stop: None,
        }
    }

    /// This budget, also ended when `stop` is raised (by whoever no longer wants the answer).
    pub fn stopped_by(mut self, stop: &StopFlag) -> Budget {
        self.stop = Some(stop.clone());
        self
    }

    /// The deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the deadline has passed or the stop flag was raised.
    #[inline]
    pub fn is_exhausted(&self) -> bool {
        self.stop.as_ref().is_some_and(StopFlag::is_raised)
            || self
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
    }
}

/// A flag shared between a solve (through its [`Budget`]) and whoever waits for its answer:
/// raising it ends the solve at its next budget check, as if its time were up.
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// A flag not raised yet.
    pub fn new() -> StopFlag {
        StopFlag::default()
    }

    /// Raises the flag: every solve whose budget holds it stops.
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the flag was raised.
    #[inline]
    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
