//! Interpolation through points (xs, ys): Lagrange (barycentric form), Newton divided
//! differences, natural cubic spline.
//!
//! Result: `{values}`, the interpolant at each point of `at`.

use serde_json::json;

use crate::budget::Budget;
use crate::error::ProblemError;
use crate::method::Method;
use crate::solution::{Convergence, Solution};
use crate::svg::{Plot, Scale, Series, Style};
use crate::table::{TableBuilder, format_number as num};
use crate::validation::Params;

/// Most points for the polynomial methods: beyond this a single interpolating polynomial is
/// numerically meaningless.
pub const MAX_POLYNOMIAL_POINTS: usize = 100;
/// Most points for the cubic spline.
pub const MAX_SPLINE_POINTS: usize = 1_000;
/// Most evaluation points.
pub const MAX_EVALUATION_POINTS: usize = 10_000;
/// Points of the interpolant drawn in the plot.
const PLOT_SAMPLES: usize = 400;
/// Evaluations between two checks of the budget.
const BUDGET_CHECK_EVERY: usize = 256;

/// A validated interpolation problem.
#[derive(Clone, Debug)]
pub(crate) struct InterpolationProblem {
    method: Method,
    xs: Vec<f64>,
    ys: Vec<f64>,
    at: Vec<f64>,
}

impl InterpolationProblem {
    pub fn method(&self) -> Method {
        self.method
    }
}

pub(crate) fn parse(params: &Params) -> Result<InterpolationProblem, ProblemError> {
    let method = params.method;
    let max_points = if method == Method::CubicSpline {
        MAX_SPLINE_POINTS
    } else {
        MAX_POLYNOMIAL_POINTS
    };
    let xs = params.vector("xs", 2..=usize::MAX)?;
    if xs.len() > max_points {
        let hint = if method == Method::CubicSpline {
            ""
        } else {
            "; use cubic_spline for more points"
        };
        return Err(ProblemError::new(
            "xs",
            format!(
                "xs has {} points; {method} takes at most {max_points}{hint}",
                xs.len()
            ),
        ));
    }
    let ys = params.vector("ys", 1..=usize::MAX)?;
    if ys.len() != xs.len() {
        return Err(ProblemError::new(
            "ys",
            format!("ys has {} values but xs has {}", ys.len(), xs.len()),
        ));
    }
    if method == Method::CubicSpline {
        if let Some(i) = (1..xs.len()).find(|&i| xs[i] <= xs[i - 1]) {
            return Err(ProblemError::new(
                "xs",
                format!(
                    "xs must be strictly increasing for cubic_spline, but xs[{}] = {} follows xs[{}] = {}",
                    i,
                    num(xs[i]),
                    i - 1,
                    num(xs[i - 1])
                ),
            ));
        }
    } else {
        let mut sorted: Vec<(f64, usize)> = xs.iter().copied().zip(0..).collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        if let Some(pair) = sorted.windows(2).find(|w| w[0].0 == w[1].0) {
            let (first, second) = (pair[0].1.min(pair[1].1), pair[0].1.max(pair[1].1));
            return Err(ProblemError::new(
                "xs",
                format!(
                    "xs must be distinct, but xs[{first}] = xs[{second}] = {}",
                    num(pair[0].0)
                ),
            ));
        }
    }
    let (at, _) = params.number_or_vector("at", 1..=MAX_EVALUATION_POINTS)?;
    Ok(InterpolationProblem { method, xs, ys, at })
}

/// A constructed interpolant.
enum Interpolant {
    /// p(x) = Σ wⱼyⱼ/(x − xⱼ) / Σ wⱼ/(x − xⱼ).
    Barycentric { weights: Vec<f64> },
    /// p(x) = c₀ + c₁(x − x₀) + c₂(x − x₀)(x − x₁) + …
    Newton { coefficients: Vec<f64> },
    /// Piece i on [xᵢ, xᵢ₊₁]: aᵢ + bᵢ(x − xᵢ) + cᵢ(x − xᵢ)² + dᵢ(x − xᵢ)³.
    Spline { pieces: Vec<[f64; 4]> },
}

impl InterpolationProblem {
    fn build(&self) -> Interpolant {
        let (xs, ys) = (&self.xs, &self.ys);
        let n = xs.len();
        match self.method {
            Method::Lagrange => {
                // Differences scaled by a quarter of the span keep the products in range.
                let (low, high) = xs
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
                        (l.min(*x), h.max(*x))
                    });
                let capacity = (high - low) / 4.0;
                let weights = (0..n)
                    .map(|j| {
                        1.0 / (0..n)
                            .filter(|&k| k != j)
                            .map(|k| (xs[j] - xs[k]) / capacity)
                            .product::<f64>()
                    })
                    .collect();
                Interpolant::Barycentric { weights }
            }
            Method::NewtonDivided => {
                let mut coefficients = ys.clone();
                for level in 1..n {
                    for i in (level..n).rev() {
                        coefficients[i] =
                            (coefficients[i] - coefficients[i - 1]) / (xs[i] - xs[i - level]);
                    }
                }
                Interpolant::Newton { coefficients }
            }
            _ => Interpolant::Spline {
                pieces: natural_spline(xs, ys),
            },
        }
    }
}

/// The natural cubic spline's pieces: second derivatives from the tridiagonal system (Thomas
/// algorithm) with zero second derivative at both ends.
fn natural_spline(xs: &[f64], ys: &[f64]) -> Vec<[f64; 4]> {
    let n = xs.len();
    let h: Vec<f64> = xs.windows(2).map(|w| w[1] - w[0]).collect();
    let mut second = vec![0.0; n];
    if n > 2 {
        let interior = n - 2;
        let mut diagonal = vec![0.0; interior];
        let mut rhs = vec![0.0; interior];
        for i in 0..interior {
            diagonal[i] = 2.0 * (h[i] + h[i + 1]);
            rhs[i] = 6.0 * ((ys[i + 2] - ys[i + 1]) / h[i + 1] - (ys[i + 1] - ys[i]) / h[i]);
        }
        for i in 1..interior {
            let factor = h[i] / diagonal[i - 1];
            diagonal[i] -= factor * h[i];
            rhs[i] -= factor * rhs[i - 1];
        }
        for i in (0..interior).rev() {
            let above = if i + 1 < interior {
                h[i + 1] * second[i + 2]
            } else {
                0.0
            };
            second[i + 1] = (rhs[i] - above) / diagonal[i];
        }
    }
    (0..n - 1)
        .map(|i| {
            let slope = (ys[i + 1] - ys[i]) / h[i] - h[i] * (2.0 * second[i] + second[i + 1]) / 6.0;
            [
                ys[i],
                slope,
                second[i] / 2.0,
                (second[i + 1] - second[i]) / (6.0 * h[i]),
            ]
        })
        .collect()
}

impl Interpolant {
    fn eval(&self, xs: &[f64], ys: &[f64], x: f64) -> f64 {
        match self {
            Interpolant::Barycentric { weights } => {
                let (mut numerator, mut denominator) = (0.0, 0.0);
                for ((xj, yj), wj) in xs.iter().zip(ys).zip(weights) {
                    if x == *xj {
                        return *yj;
                    }
                    let term = wj / (x - xj);
                    numerator += term * yj;
                    denominator += term;
                }
                numerator / denominator
            }
            Interpolant::Newton { coefficients } => coefficients
                .iter()
                .zip(xs)
                .rev()
                .fold(0.0, |acc, (c, xi)| acc * (x - xi) + c),
            Interpolant::Spline { pieces } => {
                // The piece whose interval holds x; the end pieces extend beyond the data.
                let i = xs[1..xs.len() - 1].partition_point(|xi| *xi <= x);
                let [a, b, c, d] = pieces[i];
                let dx = x - xs[i];
                a + dx * (b + dx * (c + dx * d))
            }
        }
    }
}

pub(crate) fn solve(problem: &InterpolationProblem, budget: &Budget) -> Solution {
    let InterpolationProblem { method, xs, ys, at } = problem;
    let interpolant = problem.build();
    let mut values = Vec::with_capacity(at.len());
    let mut outcome = Convergence::Converged;
    for (i, x) in at.iter().enumerate() {
        if i % BUDGET_CHECK_EVERY == 0 && budget.is_exhausted() {
            outcome = Convergence::OutOfTime;
            break;
        }
        values.push(interpolant.eval(xs, ys, *x));
    }
    let (low, high) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
            (l.min(*x), h.max(*x))
        });
    let mut warnings = Vec::new();
    let outside: Vec<String> = at
        .iter()
        .filter(|x| **x < low || **x > high)
        .map(|x| num(*x))
        .collect();
    if !outside.is_empty() {
        warnings.push(format!(
            "extrapolating outside [{}, {}] at x = {}: the interpolant is unreliable there",
            num(low),
            num(high),
            outside
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
                + if outside.len() > 5 { ", …" } else { "" }
        ));
    }
    let table = match &interpolant {
        Interpolant::Barycentric { weights } => {
            let mut table = TableBuilder::new(["i", "x", "y", "barycentric_weight"]);
            for (i, ((x, y), w)) in xs.iter().zip(ys).zip(weights).enumerate() {
                table.push(vec![i as f64, *x, *y, *w]);
            }
            table
        }
        Interpolant::Newton { coefficients } => {
            let mut table = TableBuilder::new(["i", "x", "y", "coefficient"]);
            for (i, ((x, y), c)) in xs.iter().zip(ys).zip(coefficients).enumerate() {
                table.push(vec![i as f64, *x, *y, *c]);
            }
            table
        }
        Interpolant::Spline { pieces } => {
            let mut table =
                TableBuilder::new(["interval", "x_left", "x_right", "a", "b", "c", "d"]);
            for (i, [a, b, c, d]) in pieces.iter().enumerate() {
                table.push(vec![i as f64, xs[i], xs[i + 1], *a, *b, *c, *d]);
            }
            table
        }
    };
    let table = table.finish();
    // The plot spans the data and the evaluation points.
    let (plot_low, plot_high) = at
        .iter()
        .fold((low, high), |(l, h), x| (l.min(*x), h.max(*x)));
    let curve = (0..=PLOT_SAMPLES)
        .map(|i| {
            let x = plot_low + (plot_high - plot_low) * i as f64 / PLOT_SAMPLES as f64;
            (x, interpolant.eval(xs, ys, x))
        })
        .collect();
    let plot = Plot {
        title: format!("{method}: interpolant through {} points", xs.len()),
        x_label: "x".into(),
        y_label: "y".into(),
        y_scale: Scale::Linear,
        series: vec![
            Series::new("interpolant", Style::Line, curve),
            Series::new(
                "data points",
                Style::Markers,
                xs.iter().copied().zip(ys.iter().copied()).collect(),
            ),
            Series::new(
                "evaluated",
                Style::Markers,
                at.iter().copied().zip(values.iter().copied()).collect(),
            ),
        ],
    };
    Solution {
        method: *method,
        outcome,
        result: json!({ "values": values }),
        iterations: None,
        warnings,
        table,
        plot,
    }
}
