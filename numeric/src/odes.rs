//! Initial value problems y' = f(t, y): Euler, Heun, classical RK4 with a fixed step, and
//! Dormand–Prince RK45 with adaptive steps. One equation uses the variables `t, y`; a system of
//! n uses `t, y1, …, yn`.
//!
//! Result: `{t, y, y_end}`: the times, the solution at each time (a number per time for one
//! equation, an array per time for a system) and the solution at `t_end`. Runs longer than
//! [`MAX_TRAJECTORY_POINTS`] steps are sampled evenly (every 2nd, 4th, … step, and always the
//! last), in the result, `table.csv` and the plot alike, and a warning says so.

use serde_json::{Value, json};

use crate::budget::Budget;
use crate::error::ProblemError;
use crate::expr::{Expression, MAX_VARIABLES};
use crate::iteration::History;
use crate::method::Method;
use crate::solution::{Convergence, Solution};
use crate::svg::{Plot, Scale, Series, Style};
use crate::table::{TableBuilder, format_number as num};
use crate::validation::{Params, expression_value};

/// Most equations in a system.
pub const MAX_EQUATIONS: usize = MAX_VARIABLES - 1;
/// Most steps from t0 to t_end (fixed steps, or accepted adaptive steps).
pub const MAX_STEPS: u64 = 100_000;
/// Most points of a trajectory kept for the result, the table and the plot.
pub const MAX_TRAJECTORY_POINTS: usize = 2_000;
/// Trajectories with at most this many points are drawn with markers.
const MARKED_POINTS: usize = 60;

/// An explicit Runge–Kutta method as its Butcher tableau.
struct Tableau {
    c: &'static [f64],
    a: &'static [&'static [f64]],
    b: &'static [f64],
    /// b − b̂ of an embedded lower-order method, for the adaptive error estimate.
    error: &'static [f64],
}

const EULER: Tableau = Tableau {
    c: &[0.0],
    a: &[&[]],
    b: &[1.0],
    error: &[],
};

const HEUN: Tableau = Tableau {
    c: &[0.0, 1.0],
    a: &[&[], &[1.0]],
    b: &[0.5, 0.5],
    error: &[],
};

const RK4: Tableau = Tableau {
    c: &[0.0, 0.5, 0.5, 1.0],
    a: &[&[], &[0.5], &[0.0, 0.5], &[0.0, 0.0, 1.0]],
    b: &[1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0],
    error: &[],
};

const DORMAND_PRINCE: Tableau = Tableau {
    c: &[0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0],
    a: &[
        &[],
        &[1.0 / 5.0],
        &[3.0 / 40.0, 9.0 / 40.0],
        &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
        &[
            19372.0 / 6561.0,
            -25360.0 / 2187.0,
            64448.0 / 6561.0,
            -212.0 / 729.0,
        ],
        &[
            9017.0 / 3168.0,
            -355.0 / 33.0,
            46732.0 / 5247.0,
            49.0 / 176.0,
            -5103.0 / 18656.0,
        ],
        &[
            35.0 / 384.0,
            0.0,
            500.0 / 1113.0,
            125.0 / 192.0,
            -2187.0 / 6784.0,
            11.0 / 84.0,
        ],
    ],
    b: &[
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
        0.0,
    ],
    error: &[
        71.0 / 57600.0,
        0.0,
        -71.0 / 16695.0,
        71.0 / 1920.0,
        -17253.0 / 339200.0,
        22.0 / 525.0,
        -1.0 / 40.0,
    ],
};

#[derive(Clone, Debug)]
enum StepControl {
    Fixed { h: f64, steps: u64 },
    Adaptive { tol: f64 },
}

/// A validated initial value problem.
#[derive(Clone, Debug)]
pub(crate) struct OdeProblem {
    method: Method,
    equations: Vec<Expression>,
    /// One equation given as a plain expression (variables t, y), not an array.
    scalar: bool,
    t0: f64,
    y0: Vec<f64>,
    t_end: f64,
    control: StepControl,
}

impl OdeProblem {
    pub fn method(&self) -> Method {
        self.method
    }
}

/// The variable names: `t, y` for one equation, `t, y1, …, yn` for a system.
fn variable_names(scalar: bool, n: usize) -> Vec<String> {
    let mut names = vec!["t".to_string()];
    if scalar {
        names.push("y".into());
    } else {
        names.extend((1..=n).map(|i| format!("y{i}")));
    }
    names
}

pub(crate) fn parse(params: &Params) -> Result<OdeProblem, ProblemError> {
    let method = params.method;
    let f = params.get("f").expect("f is required");
    let count = match f {
        Value::String(_) => None,
        Value::Array(items) if (1..=MAX_EQUATIONS).contains(&items.len()) => Some(items.len()),
        Value::Array(items) => {
            return Err(ProblemError::new(
                "f",
                format!(
                    "f has {} equations; a system must have 1 to {MAX_EQUATIONS}",
                    items.len()
                ),
            ));
        }
        _ => {
            return Err(ProblemError::new(
                "f",
                "f must be an expression or an array of expressions",
            ));
        }
    };
    let scalar = count.is_none();
    let n = count.unwrap_or(1);
    let names = variable_names(scalar, n);
    let variables: Vec<&str> = names.iter().map(String::as_str).collect();
    let equations = match f {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| expression_value(item, &format!("f[{i}]"), &variables))
            .collect::<Result<Vec<_>, _>>()?,
        single => vec![expression_value(single, "f", &variables)?],
    };
    let t0 = params.number("t0")?;
    let (y0, y0_is_number) = params.number_or_vector("y0", 1..=MAX_EQUATIONS)?;
    if scalar && !y0_is_number {
        return Err(ProblemError::new(
            "y0",
            "y0 must be a number when f is a single expression",
        ));
    }
    if !scalar && y0.len() != n {
        return Err(ProblemError::new(
            "y0",
            format!("y0 must be an array of {n} numbers, one per equation of f"),
        ));
    }
    let t_end = params.number("t_end")?;
    if t_end <= t0 {
        return Err(ProblemError::new(
            "t_end",
            format!(
                "t_end must be greater than t0 (t0 = {}, t_end = {})",
                num(t0),
                num(t_end)
            ),
        ));
    }
    let control = match method {
        Method::Rk45 => StepControl::Adaptive {
            tol: params.tolerance()?,
        },
        _ => {
            let h = params.positive("h")?;
            let steps = step_count(t_end - t0, h);
            if steps > MAX_STEPS as f64 {
                return Err(ProblemError::new(
                    "h",
                    format!(
                        "h = {} needs {} steps from t0 to t_end; at most {MAX_STEPS} are allowed",
                        num(h),
                        num(steps)
                    ),
                ));
            }
            StepControl::Fixed {
                h,
                steps: steps as u64,
            }
        }
    };
    let problem = OdeProblem {
        method,
        equations,
        scalar,
        t0,
        y0,
        t_end,
        control,
    };
    let mut slope = vec![0.0; n];
    problem
        .derivative(t0, &problem.y0, &mut slope)
        .map_err(|message| ProblemError::new("f", message))?;
    Ok(problem)
}

/// Steps of size h over `span`, the last one shorter when h does not divide it (a quotient
/// within rounding of a whole number counts as whole).
fn step_count(span: f64, h: f64) -> f64 {
    let quotient = span / h;
    let whole = quotient.round();
    if (quotient - whole).abs() <= 1e-9 * whole.max(1.0) {
        whole.max(1.0)
    } else {
        quotient.ceil()
    }
}

impl OdeProblem {
    fn equation_name(&self, i: usize) -> String {
        if self.scalar {
            "f".into()
        } else {
            format!("f[{i}]")
        }
    }

    fn describe_state(&self, t: f64, y: &[f64]) -> String {
        if self.scalar {
            format!("t = {}, y = {}", num(t), num(y[0]))
        } else {
            let values: Vec<String> = y.iter().map(|v| num(*v)).collect();
            format!("t = {}, y = [{}]", num(t), values.join(", "))
        }
    }

    /// f(t, y) into `slope`, or an error saying which equation is not finite where.
    fn derivative(&self, t: f64, y: &[f64], slope: &mut [f64]) -> Result<(), String> {
        let mut values = [0.0; MAX_VARIABLES];
        values[0] = t;
        values[1..=y.len()].copy_from_slice(y);
        for (i, (equation, out)) in self.equations.iter().zip(slope.iter_mut()).enumerate() {
            *out = equation.eval_finite(&self.equation_name(i), &values[..=y.len()], || {
                self.describe_state(t, y)
            })?;
        }
        Ok(())
    }
}

/// Runs a tableau's steps, reusing its stage buffers.
struct Stepper<'a> {
    problem: &'a OdeProblem,
    tableau: &'static Tableau,
    stages: Vec<Vec<f64>>,
    stage_y: Vec<f64>,
}

impl<'a> Stepper<'a> {
    fn new(problem: &'a OdeProblem, tableau: &'static Tableau) -> Stepper<'a> {
        let n = problem.y0.len();
        Stepper {
            problem,
            tableau,
            stages: vec![vec![0.0; n]; tableau.b.len()],
            stage_y: vec![0.0; n],
        }
    }

    /// One step of size h from (t, y) into `y_next`.
    fn step(&mut self, t: f64, y: &[f64], h: f64, y_next: &mut [f64]) -> Result<(), String> {
        let Tableau { c, a, b, .. } = self.tableau;
        for s in 0..b.len() {
            for (i, value) in self.stage_y.iter_mut().enumerate() {
                *value = y[i]
                    + h * a[s]
                        .iter()
                        .zip(&self.stages)
                        .map(|(a, k)| a * k[i])
                        .sum::<f64>();
            }
            let (stage_y, stages) = (&self.stage_y, &mut self.stages);
            self.problem
                .derivative(t + c[s] * h, stage_y, &mut stages[s])?;
        }
        for (i, value) in y_next.iter_mut().enumerate() {
            *value = y[i]
                + h * b
                    .iter()
                    .zip(&self.stages)
                    .map(|(b, k)| b * k[i])
                    .sum::<f64>();
        }
        if let Some(bad) = y_next.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "the solution overflowed: y{} is {} at t = {}",
                if self.problem.scalar {
                    String::new()
                } else {
                    (bad + 1).to_string()
                },
                y_next[bad],
                num(t + h)
            ));
        }
        Ok(())
    }

    /// The embedded error estimate of the last step, as an RMS norm scaled by
    /// tol·(1 + max(|y|, |y_next|)) (absolute and relative tolerance both `tol`).
    fn error_norm(&self, y: &[f64], y_next: &[f64], h: f64, tol: f64) -> f64 {
        let sum: f64 = (0..y.len())
            .map(|i| {
                let error = h * self
                    .tableau
                    .error
                    .iter()
                    .zip(&self.stages)
                    .map(|(e, k)| e * k[i])
                    .sum::<f64>();
                let scale = tol + tol * y[i].abs().max(y_next[i].abs());
                (error / scale).powi(2)
            })
            .sum();
        (sum / y.len() as f64).sqrt()
    }
}

/// The states computed so far, as table rows `step, t, [h,] y…[, error_estimate]`, sampled
/// evenly when long.
struct Trajectory {
    rows: History<Vec<f64>>,
    header: Vec<String>,
    /// Column of y₁ in a row.
    first_y: usize,
}

impl Trajectory {
    fn new(problem: &OdeProblem, adaptive: bool) -> Trajectory {
        let names = variable_names(problem.scalar, problem.y0.len());
        let mut header = vec!["step".to_string(), "t".to_string()];
        if adaptive {
            header.push("h".into());
        }
        let first_y = header.len();
        header.extend(names.into_iter().skip(1));
        if adaptive {
            header.push("error_estimate".into());
        }
        Trajectory {
            rows: History::new(MAX_TRAJECTORY_POINTS),
            header,
            first_y,
        }
    }

    /// Records the state after `step` steps; `adaptive` carries (h, error estimate).
    fn record(&mut self, step: u64, t: f64, y: &[f64], adaptive: Option<(f64, f64)>) {
        let mut row = Vec::with_capacity(y.len() + 4);
        row.push(step as f64);
        row.push(t);
        if let Some((h, _)) = adaptive {
            row.push(h);
        }
        row.extend_from_slice(y);
        if let Some((_, error)) = adaptive {
            row.push(error);
        }
        self.rows.push(row);
    }

    fn steps(&self) -> u64 {
        self.rows.seen().saturating_sub(1)
    }
}

pub(crate) fn solve(problem: &OdeProblem, budget: &Budget) -> Solution {
    let (outcome, trajectory, warnings) = match problem.control {
        StepControl::Fixed { h, steps } => {
            let tableau = match problem.method {
                Method::Euler => &EULER,
                Method::Heun => &HEUN,
                _ => &RK4,
            };
            let (outcome, trajectory) = fixed_steps(problem, tableau, h, steps, budget);
            (outcome, trajectory, Vec::new())
        }
        StepControl::Adaptive { tol } => adaptive_steps(problem, tol, budget),
    };
    finish(problem, outcome, trajectory, warnings)
}

fn fixed_steps(
    problem: &OdeProblem,
    tableau: &'static Tableau,
    h: f64,
    steps: u64,
    budget: &Budget,
) -> (Convergence, Trajectory) {
    let mut trajectory = Trajectory::new(problem, false);
    let mut stepper = Stepper::new(problem, tableau);
    let mut y = problem.y0.clone();
    let mut y_next = y.clone();
    let mut t = problem.t0;
    trajectory.record(0, t, &y, None);
    for i in 1..=steps {
        if budget.is_exhausted() {
            return (Convergence::OutOfTime, trajectory);
        }
        let t_next = if i == steps {
            problem.t_end
        } else {
            problem.t0 + i as f64 * h
        };
        if let Err(message) = stepper.step(t, &y, t_next - t, &mut y_next) {
            return (Convergence::EvaluationError { message }, trajectory);
        }
        std::mem::swap(&mut y, &mut y_next);
        t = t_next;
        trajectory.record(i, t, &y, None);
    }
    (Convergence::Converged, trajectory)
}

/// Error-per-step exponent of the embedded 4th-order estimate: 1/(4 + 1).
const ERROR_EXPONENT: f64 = -0.2;
const SAFETY: f64 = 0.9;
const MIN_FACTOR: f64 = 0.2;
const MAX_FACTOR: f64 = 10.0;

/// Hairer's choice of the first step (as in SciPy's `solve_ivp`).
fn initial_step(problem: &OdeProblem, tol: f64, slope: &[f64]) -> Result<f64, String> {
    let (t0, y0) = (problem.t0, &problem.y0);
    let span = problem.t_end - t0;
    let rms = |v: &mut dyn Iterator<Item = f64>| {
        let (sum, count) = v.fold((0.0, 0.0), |(s, c), x| (s + x * x, c + 1.0));
        (sum / count).sqrt()
    };
    let scale: Vec<f64> = y0.iter().map(|y| tol + tol * y.abs()).collect();
    let d0 = rms(&mut y0.iter().zip(&scale).map(|(y, s)| y / s));
    let d1 = rms(&mut slope.iter().zip(&scale).map(|(f, s)| f / s));
    let h0 = if d0 < 1e-5 || d1 < 1e-5 {
        1e-6
    } else {
        0.01 * d0 / d1
    }
    .min(span);
    let y1: Vec<f64> = y0.iter().zip(slope).map(|(y, f)| y + h0 * f).collect();
    let mut slope1 = vec![0.0; y0.len()];
    problem.derivative(t0 + h0, &y1, &mut slope1)?;
    let d2 = rms(&mut slope1
        .iter()
        .zip(slope)
        .zip(&scale)
        .map(|((f1, f0), s)| (f1 - f0) / s))
        / h0;
    let h1 = if d1 <= 1e-15 && d2 <= 1e-15 {
        (h0 * 1e-3).max(1e-6)
    } else {
        (0.01 / d1.max(d2)).powf(-ERROR_EXPONENT)
    };
    Ok((100.0 * h0).min(h1).min(span))
}

fn adaptive_steps(
    problem: &OdeProblem,
    tol: f64,
    budget: &Budget,
) -> (Convergence, Trajectory, Vec<String>) {
    let mut trajectory = Trajectory::new(problem, true);
    let mut stepper = Stepper::new(problem, &DORMAND_PRINCE);
    let mut y = problem.y0.clone();
    let mut y_next = y.clone();
    let mut t = problem.t0;
    let mut warnings = Vec::new();
    let mut rejected = 0u64;
    trajectory.record(0, t, &y, Some((0.0, 0.0)));
    let mut slope = vec![0.0; y.len()];
    let first = problem
        .derivative(t, &y, &mut slope)
        .and_then(|()| initial_step(problem, tol, &slope));
    let mut h = match first {
        Ok(h) => h,
        Err(message) => {
            return (
                Convergence::EvaluationError { message },
                trajectory,
                warnings,
            );
        }
    };
    let outcome = loop {
        if t >= problem.t_end {
            break Convergence::Converged;
        }
        if budget.is_exhausted() {
            break Convergence::OutOfTime;
        }
        if trajectory.steps() >= MAX_STEPS {
            warnings.push(format!(
                "rk45 stopped after {MAX_STEPS} steps at t = {}: the problem is stiff or tol is too small",
                num(t)
            ));
            break Convergence::DidNotConverge;
        }
        let min_step = 10.0 * f64::EPSILON * t.abs().max(f64::MIN_POSITIVE);
        if h < min_step {
            warnings.push(format!(
                "the step size fell below {min_step:.1e} at t = {}: the solution may have a singularity there",
                num(t)
            ));
            break Convergence::DidNotConverge;
        }
        let last = t + h >= problem.t_end;
        let step = if last { problem.t_end - t } else { h };
        if let Err(message) = stepper.step(t, &y, step, &mut y_next) {
            break Convergence::EvaluationError { message };
        }
        let error = stepper.error_norm(&y, &y_next, step, tol);
        if error <= 1.0 {
            t = if last { problem.t_end } else { t + step };
            std::mem::swap(&mut y, &mut y_next);
            let steps = trajectory.steps() + 1;
            trajectory.record(steps, t, &y, Some((step, error)));
            let factor = if error == 0.0 {
                MAX_FACTOR
            } else {
                (SAFETY * error.powf(ERROR_EXPONENT)).min(MAX_FACTOR)
            };
            h = step * factor;
        } else {
            rejected += 1;
            h = step * (SAFETY * error.powf(ERROR_EXPONENT)).max(MIN_FACTOR);
        }
    };
    if rejected > 0 {
        warnings.push(format!(
            "{rejected} steps were rejected and retried with a smaller h"
        ));
    }
    (outcome, trajectory, warnings)
}

fn finish(
    problem: &OdeProblem,
    outcome: Convergence,
    trajectory: Trajectory,
    mut warnings: Vec<String>,
) -> Solution {
    let steps = trajectory.steps();
    let stride = trajectory.rows.stride();
    if stride > 1 {
        warnings.push(format!(
            "the result, table.csv and the plot list every {stride}th of the {steps} steps, and the last one"
        ));
    }
    let Trajectory {
        rows,
        header,
        first_y,
    } = trajectory;
    let rows = rows.finish();
    let n = problem.y0.len();
    let times: Vec<f64> = rows.iter().map(|row| row[1]).collect();
    let states: Vec<&[f64]> = rows.iter().map(|row| &row[first_y..first_y + n]).collect();
    let (y, y_end) = if problem.scalar {
        let values: Vec<f64> = states.iter().map(|state| state[0]).collect();
        (json!(values), json!(values.last()))
    } else {
        (json!(states), json!(states.last()))
    };
    let names = variable_names(problem.scalar, n);
    let style = if times.len() <= MARKED_POINTS {
        Style::LineWithMarkers
    } else {
        Style::Line
    };
    let series = (0..n)
        .map(|i| {
            let points = times.iter().zip(&states).map(|(t, y)| (*t, y[i])).collect();
            Series::new(names[i + 1].clone(), style, points)
        })
        .collect();
    let mut table = TableBuilder::new(header);
    for row in rows.iter().cloned() {
        table.push(row);
    }
    Solution {
        method: problem.method,
        outcome,
        result: json!({ "t": times, "y": y, "y_end": y_end }),
        iterations: Some(steps),
        warnings,
        table: table.finish(),
        plot: Plot {
            title: format!(
                "{}: solution from t = {} to {}",
                problem.method,
                num(problem.t0),
                num(problem.t_end)
            ),
            x_label: "t".into(),
            y_label: if problem.scalar {
                "y".into()
            } else {
                "y_i".into()
            },
            y_scale: Scale::Linear,
            series,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tableaus_are_consistent() {
        for tableau in [&EULER, &HEUN, &RK4, &DORMAND_PRINCE] {
            assert!((tableau.b.iter().sum::<f64>() - 1.0).abs() < 1e-15);
            for (row, c) in tableau.a.iter().zip(tableau.c) {
                assert!((row.iter().sum::<f64>() - c).abs() < 1e-14);
            }
        }
        assert!(DORMAND_PRINCE.error.iter().sum::<f64>().abs() < 1e-15);
    }

    #[test]
    fn step_counts_tolerate_rounding() {
        assert_eq!(step_count(2.0, 0.1), 20.0);
        assert_eq!(step_count(1.0, 0.3), 4.0);
        assert_eq!(step_count(0.5, 1.0), 1.0);
    }
}
