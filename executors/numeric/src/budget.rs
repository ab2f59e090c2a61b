//! The time a job may spend solving, checked inside every iteration and step loop.

use std::time::{Duration, Instant};

/// A deadline for one solve. Solvers stop with [`Outcome::OutOfTime`](crate::Outcome::OutOfTime)
/// at the first check after it has passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    deadline: Option<Instant>,
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
        }
    }

    /// No deadline: only the problem's own limits (`max_iter`, step counts) end a solve.
    pub fn unlimited() -> Budget {
        Budget { deadline: None }
    }

    /// The deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the deadline has passed.
    #[inline]
    pub fn is_exhausted(&self) -> bool {
        self.deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
    }
}
