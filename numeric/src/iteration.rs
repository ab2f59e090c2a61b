//! The loop every iterative method runs: the time budget, `max_iter`, and the error history for
//! the convergence plot.

use crate::budget::Budget;
use crate::method::Method;
use crate::solution::Convergence;
use crate::svg::{Plot, Scale, Series, Style};

/// Points kept of a long error history (it is thinned as it grows).
const MAX_HISTORY_POINTS: usize = 4_096;

/// What one iteration found.
pub(crate) enum Step {
    /// Not there yet; `error` is this iteration's error measure.
    Continue { error: f64 },
    /// The tolerance is met.
    Converged { error: f64 },
    /// The method cannot go on (a zero derivative, a diverging iteration); the reason becomes a
    /// warning and the outcome is [`Convergence::DidNotConverge`].
    BrokeDown { reason: String },
    /// The budget ran out inside a long step (one that checks it as it goes).
    OutOfTime,
}

impl Step {
    /// The step after an iteration whose error measure is `error`: converged when `met`.
    pub(crate) fn after(error: f64, met: bool) -> Self {
        if met {
            Self::Converged { error }
        } else {
            Self::Continue { error }
        }
    }
}

/// How an iteration loop ended.
pub(crate) struct Iterated {
    pub outcome: Convergence,
    pub iterations: u64,
    pub warnings: Vec<String>,
    /// (iteration, error), thinned evenly when long.
    pub errors: Vec<(f64, f64)>,
}

impl Iterated {
    /// Converged before any iteration (the start already solves the problem).
    pub fn at_start() -> Iterated {
        Iterated {
            outcome: Convergence::Converged,
            iterations: 0,
            warnings: Vec::new(),
            errors: Vec::new(),
        }
    }
}

/// Runs `step(k)` for k = 1, 2, … until it converges or breaks down, `max_iter` is reached, or
/// the budget runs out (checked before every iteration). A step returns `Err(message)` when a
/// value could not be computed; the outcome is then [`Convergence::EvaluationError`].
pub(crate) fn iterate(
    budget: &Budget,
    max_iter: u64,
    mut step: impl FnMut(u64) -> Result<Step, String>,
) -> Iterated {
    let mut history = History::new(MAX_HISTORY_POINTS);
    let mut warnings = Vec::new();
    let mut finish = |outcome, iterations, history: History<(f64, f64)>| Iterated {
        outcome,
        iterations,
        warnings: std::mem::take(&mut warnings),
        errors: history.finish(),
    };
    for k in 1..=max_iter {
        if budget.is_exhausted() {
            return finish(Convergence::OutOfTime, k - 1, history);
        }
        match step(k) {
            Ok(Step::Continue { error }) => history.push((k as f64, error)),
            Ok(Step::Converged { error }) => {
                history.push((k as f64, error));
                return finish(Convergence::Converged, k, history);
            }
            Ok(Step::BrokeDown { reason }) => {
                let mut iterated = finish(Convergence::DidNotConverge, k, history);
                iterated.warnings.push(reason);
                return iterated;
            }
            Ok(Step::OutOfTime) => return finish(Convergence::OutOfTime, k - 1, history),
            Err(message) => return finish(Convergence::EvaluationError { message }, k, history),
        }
    }
    let mut iterated = finish(Convergence::DidNotConverge, max_iter, history);
    iterated.warnings.push(format!(
        "the tolerance was not met within max_iter = {max_iter} iterations"
    ));
    iterated
}

/// A sample of a long sequence with bounded memory: when full, every other kept item is
/// dropped and from then on only every other new item is kept, so the sample stays evenly
/// spaced. The last item is always kept.
pub(crate) struct History<T> {
    items: Vec<T>,
    capacity: usize,
    stride: u64,
    seen: u64,
    /// The latest item when it was not kept by the stride.
    latest: Option<T>,
}

impl<T> History<T> {
    pub fn new(capacity: usize) -> History<T> {
        History {
            items: Vec::new(),
            capacity: capacity.max(2),
            stride: 1,
            seen: 0,
            latest: None,
        }
    }

    pub fn push(&mut self, item: T) {
        if self.seen.is_multiple_of(self.stride) {
            self.items.push(item);
            self.latest = None;
            if self.items.len() >= self.capacity {
                let mut index = 0;
                self.items.retain(|_| {
                    index += 1;
                    index % 2 == 1
                });
                self.stride *= 2;
            }
        } else {
            self.latest = Some(item);
        }
        self.seen += 1;
    }

    /// How many items were pushed.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Keeps one item in `stride()` (a power of two).
    pub fn stride(&self) -> u64 {
        self.stride
    }

    pub fn finish(mut self) -> Vec<T> {
        self.items.extend(self.latest);
        self.items
    }
}

/// The plot of an iterative method: its error per iteration on a log scale.
pub(crate) fn convergence_plot(method: Method, error_label: &str, errors: Vec<(f64, f64)>) -> Plot {
    Plot {
        title: format!("{method}: convergence"),
        x_label: "iteration".into(),
        y_label: error_label.into(),
        y_scale: Scale::Log,
        series: vec![Series::new(error_label, Style::LineWithMarkers, errors)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn history_stays_bounded_and_keeps_the_last_point() {
        let mut history = History::new(100);
        for k in 0..100_001 {
            history.push((k as f64, 1.0));
        }
        assert_eq!(history.seen(), 100_001);
        assert_eq!(history.stride(), 1024);
        let points = history.finish();
        assert!(points.len() <= 101);
        assert_eq!(points[0].0, 0.0);
        assert_eq!(points.last().unwrap().0, 100_000.0);
        let strides: Vec<f64> = points
            .windows(2)
            .take(10)
            .map(|w| w[1].0 - w[0].0)
            .collect();
        assert!(
            strides.iter().all(|&s| s == strides[0]),
            "evenly spaced: {strides:?}"
        );
    }

    #[test]
    fn loop_ends_on_convergence_limit_or_budget() {
        let converged = iterate(&Budget::unlimited(), 100, |k| {
            Ok(if k == 7 {
                Step::Converged { error: 1e-12 }
            } else {
                Step::Continue {
                    error: 1.0 / k as f64,
                }
            })
        });
        assert_eq!(
            (
                converged.outcome,
                converged.iterations,
                converged.errors.len()
            ),
            (Convergence::Converged, 7, 7)
        );

        let exhausted = iterate(&Budget::unlimited(), 5, |_| {
            Ok(Step::Continue { error: 1.0 })
        });
        assert_eq!(
            (exhausted.outcome, exhausted.iterations),
            (Convergence::DidNotConverge, 5)
        );
        assert!(exhausted.warnings[0].contains("max_iter = 5"));

        let started = Instant::now();
        let expired = Budget::until(Instant::now() - Duration::from_millis(1));
        let out_of_time = iterate(&expired, 1_000_000_000, |_| {
            Ok(Step::Continue { error: 1.0 })
        });
        assert_eq!(
            (out_of_time.outcome, out_of_time.iterations),
            (Convergence::OutOfTime, 0)
        );
        assert!(started.elapsed() < Duration::from_millis(50));

        let broke = iterate(&Budget::unlimited(), 10, |_| {
            Ok(Step::BrokeDown {
                reason: "zero derivative".into(),
            })
        });
        assert_eq!(broke.outcome, Convergence::DidNotConverge);
        assert_eq!(broke.warnings, ["zero derivative"]);

        let failed = iterate(&Budget::unlimited(), 10, |k| {
            if k < 3 {
                Ok(Step::Continue { error: 1.0 })
            } else {
                Err("f is NaN".into())
            }
        });
        assert_eq!(
            (failed.outcome, failed.iterations),
            (
                Convergence::EvaluationError {
                    message: "f is NaN".into()
                },
                3
            )
        );
    }
}
