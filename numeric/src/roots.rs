//! Roots of f(x) = 0: bisection, regula falsi (Illinois), Brent, secant, Newton, fixed point.
//!
//! Result: `{root, f_root, iterations, converged}` (for `fixed_point`, `f_root` is g(root) − root).

use serde_json::json;

use crate::budget::Budget;
use crate::error::ProblemError;
use crate::expr::Expression;
use crate::iteration::{Iterated, Step, convergence_plot, iterate};
use crate::method::Method;
use crate::solution::Solution;
use crate::table::{TableBuilder, format_number as num};
use crate::validation::{Params, finite_at};

const X: &[&str] = &["x"];

/// A validated root-finding problem.
#[derive(Clone, Debug)]
pub(crate) enum RootProblem {
    /// bisection, regula_falsi and brent, on a bracket [a, b] with f(a)·f(b) ≤ 0.
    Bracketing {
        method: Method,
        f: Expression,
        a: f64,
        b: f64,
        fa: f64,
        fb: f64,
        tol: f64,
        max_iter: u64,
    },
    Secant {
        f: Expression,
        x0: f64,
        x1: f64,
        tol: f64,
        max_iter: u64,
    },
    Newton {
        f: Expression,
        df: Expression,
        x0: f64,
        tol: f64,
        max_iter: u64,
    },
    FixedPoint {
        g: Expression,
        x0: f64,
        tol: f64,
        max_iter: u64,
    },
}

impl RootProblem {
    pub fn method(&self) -> Method {
        match self {
            RootProblem::Bracketing { method, .. } => *method,
            RootProblem::Secant { .. } => Method::Secant,
            RootProblem::Newton { .. } => Method::Newton,
            RootProblem::FixedPoint { .. } => Method::FixedPoint,
        }
    }
}

pub(crate) fn parse(params: &Params) -> Result<RootProblem, ProblemError> {
    let method = params.method;
    match method {
        Method::Bisection | Method::RegulaFalsi | Method::Brent => {
            let f = params.expression("f", X)?;
            let (a, b) = params.interval()?;
            let tol = params.tolerance()?;
            let max_iter = params.max_iter()?;
            let fa = finite_at(&f, "f", &[a], || {
                format!("x = {} (the end point a)", num(a))
            })?;
            let fb = finite_at(&f, "f", &[b], || {
                format!("x = {} (the end point b)", num(b))
            })?;
            if fa != 0.0 && fb != 0.0 && fa.is_sign_negative() == fb.is_sign_negative() {
                return Err(ProblemError::new(
                    "a",
                    format!(
                        "f(a) and f(b) have the same sign (f({}) = {}, f({}) = {}): {method} needs a bracket where f changes sign",
                        num(a),
                        num(fa),
                        num(b),
                        num(fb)
                    ),
                ));
            }
            Ok(RootProblem::Bracketing {
                method,
                f,
                a,
                b,
                fa,
                fb,
                tol,
                max_iter,
            })
        }
        Method::Secant => {
            let f = params.expression("f", X)?;
            let x0 = params.number("x0")?;
            let x1 = params.number("x1")?;
            if x0 == x1 {
                return Err(ProblemError::new("x1", "x1 must differ from x0"));
            }
            let tol = params.tolerance()?;
            let max_iter = params.max_iter()?;
            let f0 = finite_at(&f, "f", &[x0], || format!("x = {} (x0)", num(x0)))?;
            let f1 = finite_at(&f, "f", &[x1], || format!("x = {} (x1)", num(x1)))?;
            if f0 == f1 && f1 != 0.0 {
                return Err(ProblemError::new(
                    "x1",
                    format!(
                        "f(x0) = f(x1) = {}: the first secant is horizontal; choose other starting points",
                        num(f1)
                    ),
                ));
            }
            Ok(RootProblem::Secant {
                f,
                x0,
                x1,
                tol,
                max_iter,
            })
        }
        Method::Newton => {
            let f = params.expression("f", X)?;
            let df = match params.optional_expression("df", X)? {
                Some(df) => df,
                None => f
                    .derivative(X, 0)
                    .map_err(|reason| ProblemError::new("df", format!("df is needed: {reason}")))?,
            };
            let x0 = params.number("x0")?;
            let tol = params.tolerance()?;
            let max_iter = params.max_iter()?;
            let f0 = finite_at(&f, "f", &[x0], || format!("x = {} (x0)", num(x0)))?;
            let df0 = finite_at(&df, "df", &[x0], || format!("x = {} (x0)", num(x0)))?;
            if df0 == 0.0 && f0 != 0.0 {
                return Err(ProblemError::new(
                    "x0",
                    format!(
                        "f'(x0) = 0 at x0 = {}: Newton's first step is undefined; choose another x0",
                        num(x0)
                    ),
                ));
            }
            Ok(RootProblem::Newton {
                f,
                df,
                x0,
                tol,
                max_iter,
            })
        }
        Method::FixedPoint => {
            let g = params.expression("g", X)?;
            let x0 = params.number("x0")?;
            let tol = params.tolerance()?;
            let max_iter = params.max_iter()?;
            finite_at(&g, "g", &[x0], || format!("x = {} (x0)", num(x0)))?;
            Ok(RootProblem::FixedPoint {
                g,
                x0,
                tol,
                max_iter,
            })
        }
        other => unreachable!("{other} is not a root-finding method"),
    }
}

/// `f(x)`, or an error saying where it is not finite.
fn value(f: &Expression, name: &str, x: f64) -> Result<f64, String> {
    f.eval_finite(name, &[x], || format!("x = {}", num(x)))
}

/// What every root method hands back to [`finish`].
struct RootRun {
    iterated: Iterated,
    root: f64,
    table: TableBuilder,
    error_label: &'static str,
    notes: Vec<String>,
}

pub(crate) fn solve(problem: &RootProblem, budget: &Budget) -> Solution {
    match problem {
        RootProblem::Bracketing {
            method,
            f,
            a,
            b,
            fa,
            fb,
            tol,
            max_iter,
        } => {
            let run = if *fa == 0.0 || *fb == 0.0 {
                end_point_root(*method, *a, *b, *fa)
            } else {
                let bracket = Bracket {
                    f,
                    a: *a,
                    b: *b,
                    fa: *fa,
                    fb: *fb,
                    tol: *tol,
                    max_iter: *max_iter,
                };
                match method {
                    Method::Bisection => bisection(&bracket, budget),
                    Method::RegulaFalsi => regula_falsi(&bracket, budget),
                    _ => brent(&bracket, budget),
                }
            };
            finish(*method, run, |x| f.eval(&[x]))
        }
        RootProblem::Secant {
            f,
            x0,
            x1,
            tol,
            max_iter,
        } => finish(
            Method::Secant,
            secant(f, *x0, *x1, *tol, *max_iter, budget),
            |x| f.eval(&[x]),
        ),
        RootProblem::Newton {
            f,
            df,
            x0,
            tol,
            max_iter,
        } => finish(
            Method::Newton,
            newton(f, df, *x0, *tol, *max_iter, budget),
            |x| f.eval(&[x]),
        ),
        RootProblem::FixedPoint {
            g,
            x0,
            tol,
            max_iter,
        } => finish(
            Method::FixedPoint,
            fixed_point(g, *x0, *tol, *max_iter, budget),
            |x| g.eval(&[x]) - x,
        ),
    }
}

fn finish(method: Method, run: RootRun, residual: impl Fn(f64) -> f64) -> Solution {
    let RootRun {
        iterated,
        root,
        table,
        error_label,
        mut notes,
    } = run;
    let table = table.finish();
    let converged = iterated.outcome.is_converged();
    notes.extend(iterated.warnings);
    notes.extend(table.omission_note());
    Solution {
        method,
        result: json!({
            "root": root,
            "f_root": residual(root),
            "iterations": iterated.iterations,
            "converged": converged,
        }),
        iterations: Some(iterated.iterations),
        outcome: iterated.outcome,
        warnings: notes,
        table,
        plot: convergence_plot(method, error_label, iterated.errors),
    }
}

fn bracket_header(method: Method) -> TableBuilder {
    if method == Method::Bisection {
        TableBuilder::new(["iteration", "a", "b", "midpoint", "f_midpoint", "error"])
    } else {
        TableBuilder::new(["iteration", "a", "b", "x", "f_x", "error"])
    }
}

/// f(a) = 0 or f(b) = 0: the end point is the root, found without iterating.
fn end_point_root(method: Method, a: f64, b: f64, fa: f64) -> RootRun {
    let (root, end) = if fa == 0.0 { (a, "a") } else { (b, "b") };
    RootRun {
        iterated: Iterated::at_start(),
        root,
        table: bracket_header(method),
        error_label: "error",
        notes: vec![format!(
            "f({end}) = 0: the end point {end} = {} is the root",
            num(root)
        )],
    }
}

struct Bracket<'a> {
    f: &'a Expression,
    a: f64,
    b: f64,
    fa: f64,
    fb: f64,
    tol: f64,
    max_iter: u64,
}

const PRECISION_NOTE: &str =
    "the bracket cannot be halved further in double precision: tol is below the precision here";

fn bisection(bracket: &Bracket, budget: &Budget) -> RootRun {
    let Bracket {
        f,
        mut a,
        mut b,
        mut fa,
        tol,
        max_iter,
        ..
    } = *bracket;
    let mut table = bracket_header(Method::Bisection);
    let mut root = a + (b - a) / 2.0;
    let mut notes = Vec::new();
    let iterated = iterate(budget, max_iter, |k| {
        let midpoint = a + (b - a) / 2.0;
        let f_midpoint = value(f, "f", midpoint)?;
        let error = (b - a) / 2.0;
        table.push(vec![k as f64, a, b, midpoint, f_midpoint, error]);
        root = midpoint;
        if f_midpoint == 0.0 || error <= tol {
            return Ok(Step::Converged { error });
        }
        if midpoint <= a || midpoint >= b {
            notes.push(PRECISION_NOTE.to_string());
            return Ok(Step::Converged { error });
        }
        if f_midpoint.is_sign_negative() == fa.is_sign_negative() {
            a = midpoint;
            fa = f_midpoint;
        } else {
            b = midpoint;
        }
        Ok(Step::Continue { error })
    });
    RootRun {
        iterated,
        root,
        table,
        error_label: "error bound (b − a)/2",
        notes,
    }
}

fn regula_falsi(bracket: &Bracket, budget: &Budget) -> RootRun {
    let Bracket {
        f,
        mut a,
        mut b,
        mut fa,
        mut fb,
        tol,
        max_iter,
    } = *bracket;
    let mut table = bracket_header(Method::RegulaFalsi);
    let mut previous: Option<f64> = None;
    let mut root = a;
    // Which end the last iterate replaced: the Illinois rule halves the value kept at an end
    // that survives twice in a row, so that end moves too.
    let mut last_replaced: Option<bool> = None;
    let iterated = iterate(budget, max_iter, |k| {
        let x = (b - fb * (b - a) / (fb - fa)).clamp(a, b);
        let fx = value(f, "f", x)?;
        let error = previous.map_or(b - a, |p| (x - p).abs());
        table.push(vec![k as f64, a, b, x, fx, error]);
        previous = Some(x);
        root = x;
        if fx == 0.0 || error <= tol {
            return Ok(Step::Converged { error });
        }
        let replaces_b = fx.is_sign_negative() == fb.is_sign_negative();
        if replaces_b {
            b = x;
            fb = fx;
            if last_replaced == Some(true) {
                fa /= 2.0;
            }
        } else {
            a = x;
            fa = fx;
            if last_replaced == Some(false) {
                fb /= 2.0;
            }
        }
        last_replaced = Some(replaces_b);
        Ok(Step::Continue { error })
    });
    RootRun {
        iterated,
        root,
        table,
        error_label: "|x_k − x_(k−1)|",
        notes: Vec::new(),
    }
}

/// The state of Brent's method (after SciPy's `brentq`): `current` is the best estimate, the
/// root lies between `current` and `counterpoint`, `previous` is the prior estimate.
struct Brent {
    previous: f64,
    f_previous: f64,
    current: f64,
    f_current: f64,
    counterpoint: f64,
    f_counterpoint: f64,
    step_before_last: f64,
    last_step: f64,
    /// Half the tolerance at `current`.
    delta: f64,
    /// Half the bracket, signed towards the counterpoint.
    half_bracket: f64,
    tol: f64,
}

impl Brent {
    /// Relative tolerance added to `tol`, as SciPy's default: 4 machine epsilons.
    const RELATIVE_TOLERANCE: f64 = 4.0 * f64::EPSILON;

    fn new(bracket: &Bracket) -> Brent {
        let mut state = Brent {
            previous: bracket.a,
            f_previous: bracket.fa,
            current: bracket.b,
            f_current: bracket.fb,
            counterpoint: 0.0,
            f_counterpoint: 0.0,
            step_before_last: 0.0,
            last_step: 0.0,
            delta: 0.0,
            half_bracket: 0.0,
            tol: bracket.tol,
        };
        state.settle();
        state
    }

    /// Restores the invariants after a new estimate: the counterpoint brackets the root with
    /// `current`, and `current` has the smaller |f|.
    fn settle(&mut self) {
        if self.f_previous != 0.0
            && self.f_current != 0.0
            && self.f_previous.is_sign_negative() != self.f_current.is_sign_negative()
        {
            self.counterpoint = self.previous;
            self.f_counterpoint = self.f_previous;
            self.last_step = self.current - self.previous;
            self.step_before_last = self.last_step;
        }
        if self.f_counterpoint.abs() < self.f_current.abs() {
            self.previous = self.current;
            self.current = self.counterpoint;
            self.counterpoint = self.previous;
            self.f_previous = self.f_current;
            self.f_current = self.f_counterpoint;
            self.f_counterpoint = self.f_previous;
        }
        self.delta = (self.tol + Self::RELATIVE_TOLERANCE * self.current.abs()) / 2.0;
        self.half_bracket = (self.counterpoint - self.current) / 2.0;
    }

    fn converged(&self) -> bool {
        self.f_current == 0.0 || self.half_bracket.abs() < self.delta
    }

    /// The next point: an interpolation step when it is short enough, else a bisection step.
    fn next_point(&mut self) -> f64 {
        let bisect = self.half_bracket;
        if self.step_before_last.abs() > self.delta && self.f_current.abs() < self.f_previous.abs()
        {
            let trial = if self.previous == self.counterpoint {
                // Secant (linear interpolation).
                -self.f_current * (self.current - self.previous)
                    / (self.f_current - self.f_previous)
            } else {
                // Inverse quadratic interpolation.
                let slope_previous =
                    (self.f_previous - self.f_current) / (self.previous - self.current);
                let slope_counter =
                    (self.f_counterpoint - self.f_current) / (self.counterpoint - self.current);
                -self.f_current
                    * (self.f_counterpoint * slope_counter - self.f_previous * slope_previous)
                    / (slope_counter * slope_previous * (self.f_counterpoint - self.f_previous))
            };
            if 2.0 * trial.abs()
                < self
                    .step_before_last
                    .abs()
                    .min(3.0 * bisect.abs() - self.delta)
            {
                self.step_before_last = self.last_step;
                self.last_step = trial;
            } else {
                self.step_before_last = bisect;
                self.last_step = bisect;
            }
        } else {
            self.step_before_last = bisect;
            self.last_step = bisect;
        }
        self.previous = self.current;
        self.f_previous = self.f_current;
        if self.last_step.abs() > self.delta {
            self.current + self.last_step
        } else {
            self.current + self.delta.copysign(bisect)
        }
    }
}

fn brent(bracket: &Bracket, budget: &Budget) -> RootRun {
    let f = bracket.f;
    let mut table = bracket_header(Method::Brent);
    let mut state = Brent::new(bracket);
    let iterated = if state.converged() {
        Iterated::at_start()
    } else {
        iterate(budget, bracket.max_iter, |k| {
            let x = state.next_point();
            state.current = x;
            state.f_current = value(f, "f", x)?;
            state.settle();
            let error = state.half_bracket.abs();
            let (low, high) = if state.current < state.counterpoint {
                (state.current, state.counterpoint)
            } else {
                (state.counterpoint, state.current)
            };
            table.push(vec![
                k as f64,
                low,
                high,
                state.current,
                state.f_current,
                error,
            ]);
            Ok(Step::after(error, state.converged()))
        })
    };
    RootRun {
        iterated,
        root: state.current,
        table,
        error_label: "half bracket width",
        notes: Vec::new(),
    }
}

fn secant(f: &Expression, x0: f64, x1: f64, tol: f64, max_iter: u64, budget: &Budget) -> RootRun {
    let mut table = TableBuilder::new([
        "iteration",
        "x_previous",
        "x",
        "x_next",
        "f_x_next",
        "error",
    ]);
    let (mut x_previous, mut x) = (x0, x1);
    let (mut f_previous, mut fx) = (f.eval(&[x0]), f.eval(&[x1]));
    let iterated = iterate(budget, max_iter, |k| {
        if fx == 0.0 {
            return Ok(Step::Converged { error: 0.0 });
        }
        if fx == f_previous {
            return Ok(Step::BrokeDown {
                reason: format!(
                    "f(x) = {} at both x = {} and x = {}: the secant is horizontal",
                    num(fx),
                    num(x_previous),
                    num(x)
                ),
            });
        }
        let x_next = x - fx * (x - x_previous) / (fx - f_previous);
        let f_next = value(f, "f", x_next)?;
        let error = (x_next - x).abs();
        table.push(vec![k as f64, x_previous, x, x_next, f_next, error]);
        (x_previous, f_previous, x, fx) = (x, fx, x_next, f_next);
        Ok(Step::after(error, error <= tol || f_next == 0.0))
    });
    RootRun {
        iterated,
        root: x,
        table,
        error_label: "|x_(k+1) − x_k|",
        notes: Vec::new(),
    }
}

fn newton(
    f: &Expression,
    df: &Expression,
    x0: f64,
    tol: f64,
    max_iter: u64,
    budget: &Budget,
) -> RootRun {
    let mut table = TableBuilder::new(["iteration", "x", "f_x", "df_x", "x_next", "error"]);
    let mut x = x0;
    let iterated = iterate(budget, max_iter, |k| {
        let fx = value(f, "f", x)?;
        if fx == 0.0 {
            table.push(vec![k as f64, x, fx, df.eval(&[x]), x, 0.0]);
            return Ok(Step::Converged { error: 0.0 });
        }
        let dfx = value(df, "df", x)?;
        if dfx == 0.0 {
            return Ok(Step::BrokeDown {
                reason: format!(
                    "f'(x) = 0 at x = {}: Newton's step is undefined there",
                    num(x)
                ),
            });
        }
        let x_next = x - fx / dfx;
        if !x_next.is_finite() {
            return Err(format!("the Newton step from x = {} is not finite", num(x)));
        }
        let error = (x_next - x).abs();
        table.push(vec![k as f64, x, fx, dfx, x_next, error]);
        x = x_next;
        Ok(Step::after(error, error <= tol))
    });
    RootRun {
        iterated,
        root: x,
        table,
        error_label: "|x_(k+1) − x_k|",
        notes: Vec::new(),
    }
}

fn fixed_point(g: &Expression, x0: f64, tol: f64, max_iter: u64, budget: &Budget) -> RootRun {
    let mut table = TableBuilder::new(["iteration", "x", "g_x", "error"]);
    let mut x = x0;
    let iterated = iterate(budget, max_iter, |k| {
        let gx = value(g, "g", x)?;
        let error = (gx - x).abs();
        table.push(vec![k as f64, x, gx, error]);
        x = gx;
        Ok(Step::after(error, error <= tol))
    });
    RootRun {
        iterated,
        root: x,
        table,
        error_label: "|g(x) − x|",
        notes: Vec::new(),
    }
}
