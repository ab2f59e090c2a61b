//! Definite integrals ∫ₐᵇ f(x) dx: composite trapezoid and Simpson rules, Romberg,
//! Gauss–Legendre.
//!
//! Result: `{value, error_estimate?}`. The composite rules estimate their error by Richardson
//! extrapolation against the rule with half the subintervals (trapezoid: n even; Simpson: n a
//! multiple of 4); Romberg reports the last difference of successive extrapolations.

use serde_json::json;

use crate::budget::Budget;
use crate::error::ProblemError;
use crate::expr::Expression;
use crate::iteration::{Step, iterate};
use crate::method::Method;
use crate::solution::{Convergence, Solution};
use crate::svg::{Plot, Scale, Series, Style};
use crate::table::{TableBuilder, format_number as num};
use crate::validation::{Params, finite_at};

const X: &[&str] = &["x"];
/// Most subintervals for the composite rules.
pub const MAX_SUBINTERVALS: u64 = 1_000_000;
/// Most Gauss–Legendre points.
pub const MAX_GAUSS_POINTS: u64 = 100;
/// Most Romberg levels (halvings): 2^25 subintervals.
pub const MAX_ROMBERG_LEVELS: u64 = 25;
/// Romberg accepts convergence from this level on (at least 9 points), which guards against
/// integrands that happen to vanish at the first few points.
const MIN_ROMBERG_LEVELS: u64 = 3;
/// Evaluations between two checks of the budget in long loops: a check (reading the clock)
/// costs about as much as evaluating `x^2`, and 256 evaluations of the longest expression
/// validation accepts take about 1 ms (10 ms in a debug build), so a solve stops that soon
/// after its budget.
const BUDGET_CHECK_EVERY: u64 = 256;
/// Points of the integrand drawn in the plot.
const PLOT_SAMPLES: usize = 400;
/// Nodes are marked in the plot when there are at most this many.
const MAX_MARKED_NODES: usize = 200;

#[derive(Clone, Debug)]
enum Rule {
    /// trapezoid and simpson, with n subintervals.
    Composite {
        n: u64,
    },
    Romberg {
        tol: f64,
        max_iter: u64,
    },
    GaussLegendre {
        points: usize,
    },
}

/// A validated integral.
#[derive(Clone, Debug)]
pub(crate) struct IntegralProblem {
    method: Method,
    f: Expression,
    a: f64,
    b: f64,
    rule: Rule,
}

impl IntegralProblem {
    pub fn method(&self) -> Method {
        self.method
    }
}

pub(crate) fn parse(params: &Params) -> Result<IntegralProblem, ProblemError> {
    let method = params.method;
    let f = params.expression("f", X)?;
    let (a, b) = params.interval()?;
    let rule = match method {
        Method::Trapezoid => Rule::Composite {
            n: params.integer("n", 1..=MAX_SUBINTERVALS)?,
        },
        Method::Simpson => {
            let n = params.integer("n", 2..=MAX_SUBINTERVALS)?;
            if n % 2 != 0 {
                return Err(ProblemError::new(
                    "n",
                    format!("n must be even for simpson, not {n}"),
                ));
            }
            Rule::Composite { n }
        }
        Method::Romberg => Rule::Romberg {
            tol: params.tolerance()?,
            max_iter: params.integer("max_iter", 1..=MAX_ROMBERG_LEVELS)?,
        },
        Method::GaussLegendre => Rule::GaussLegendre {
            points: params.integer("n", 1..=MAX_GAUSS_POINTS)? as usize,
        },
        other => unreachable!("{other} is not an integration method"),
    };
    // Evaluate where the method will: the end points (not for Gauss–Legendre, whose nodes are
    // interior, so integrable singularities at the ends are fine) and the middle.
    if !matches!(rule, Rule::GaussLegendre { .. }) {
        finite_at(&f, "f", &[a], || {
            format!("x = {} (the end point a)", num(a))
        })?;
        finite_at(&f, "f", &[b], || {
            format!("x = {} (the end point b)", num(b))
        })?;
    }
    let middle = a + (b - a) / 2.0;
    finite_at(&f, "f", &[middle], || {
        format!("x = {} (the middle of [a, b])", num(middle))
    })?;
    Ok(IntegralProblem {
        method,
        f,
        a,
        b,
        rule,
    })
}

fn value(f: &Expression, x: f64) -> Result<f64, String> {
    f.eval_finite("f", &[x], || format!("x = {}", num(x)))
}

pub(crate) fn solve(problem: &IntegralProblem, budget: &Budget) -> Solution {
    match problem.rule {
        Rule::Composite { n } => composite(problem, n, budget),
        Rule::Romberg { tol, max_iter } => romberg(problem, tol, max_iter, budget),
        Rule::GaussLegendre { points } => gauss_legendre(problem, points, budget),
    }
}

/// The weights of a composite rule on n subintervals of width h, for node i.
fn composite_weight(method: Method, i: u64, n: u64, h: f64) -> f64 {
    let end = i == 0 || i == n;
    match method {
        Method::Trapezoid if end => h / 2.0,
        Method::Trapezoid => h,
        _ if end => h / 3.0,
        _ if i % 2 == 1 => 4.0 * h / 3.0,
        _ => 2.0 * h / 3.0,
    }
}

fn composite(problem: &IntegralProblem, n: u64, budget: &Budget) -> Solution {
    let IntegralProblem {
        method, f, a, b, ..
    } = problem;
    let (method, a, b) = (*method, *a, *b);
    let h = (b - a) / n as f64;
    // The same rule on n/2 subintervals uses the even nodes: Richardson's error estimate.
    let halves = match method {
        Method::Trapezoid => n.is_multiple_of(2),
        _ => n.is_multiple_of(4),
    };
    let richardson = if method == Method::Trapezoid {
        3.0
    } else {
        15.0
    };
    let mut table = TableBuilder::new(["i", "x", "f_x", "weight"]);
    let mut nodes = Vec::new();
    let (mut fine, mut coarse) = (0.0, 0.0);
    let mut outcome = Convergence::Converged;
    for i in 0..=n {
        if i % BUDGET_CHECK_EVERY == 0 && budget.is_exhausted() {
            outcome = Convergence::OutOfTime;
            break;
        }
        let x = if i == n { b } else { a + i as f64 * h };
        let fx = match value(f, x) {
            Ok(fx) => fx,
            Err(message) => {
                outcome = Convergence::EvaluationError { message };
                break;
            }
        };
        let weight = composite_weight(method, i, n, h);
        fine += weight * fx;
        if halves && i % 2 == 0 {
            coarse += composite_weight(method, i / 2, n / 2, 2.0 * h) * fx;
        }
        table.push(vec![i as f64, x, fx, weight]);
        if n as usize <= MAX_MARKED_NODES {
            nodes.push((x, fx));
        }
    }
    let mut result = json!({ "value": fine });
    if halves && outcome.is_converged() {
        result["error_estimate"] = json!((fine - coarse).abs() / richardson);
    }
    finish(
        problem,
        Quadrature {
            outcome,
            result,
            value: fine,
            iterations: None,
            table,
            nodes,
            warnings: Vec::new(),
        },
    )
}

fn romberg(problem: &IntegralProblem, tol: f64, max_iter: u64, budget: &Budget) -> Solution {
    let IntegralProblem { f, a, b, .. } = problem;
    let (a, b) = (*a, *b);
    let mut table = TableBuilder::new(["level", "intervals", "trapezoid", "extrapolated", "error"]);
    // The Romberg tableau's last row: previous[j] = R(k−1, j).
    let mut previous = vec![(b - a) / 2.0 * (f.eval(&[a]) + f.eval(&[b]))];
    let mut last_error = None;
    let mut h = b - a;
    let iterated = iterate(budget, max_iter, |k| {
        h /= 2.0;
        let intervals = 1u64 << k;
        let mut sum = 0.0;
        for (count, i) in (1..intervals).step_by(2).enumerate() {
            if count as u64 % BUDGET_CHECK_EVERY == BUDGET_CHECK_EVERY - 1 && budget.is_exhausted()
            {
                return Ok(Step::OutOfTime);
            }
            sum += value(f, a + i as f64 * h)?;
        }
        let mut row = Vec::with_capacity(k as usize + 1);
        row.push(previous[0] / 2.0 + h * sum);
        let mut factor = 1.0;
        for j in 1..=k as usize {
            factor *= 4.0;
            row.push(row[j - 1] + (row[j - 1] - previous[j - 1]) / (factor - 1.0));
        }
        let (estimate, before) = (row[k as usize], previous[k as usize - 1]);
        let error = (estimate - before).abs();
        table.push(vec![k as f64, intervals as f64, row[0], estimate, error]);
        previous = row;
        last_error = Some(error);
        let met = error <= tol.max(8.0 * f64::EPSILON * estimate.abs());
        Ok(Step::after(
            error,
            met && k >= MIN_ROMBERG_LEVELS.min(max_iter),
        ))
    });
    let value = *previous.last().expect("the tableau row is never empty");
    let mut result = json!({ "value": value });
    if let Some(error) = last_error {
        result["error_estimate"] = json!(error);
    }
    finish(
        problem,
        Quadrature {
            outcome: iterated.outcome,
            result,
            value,
            iterations: Some(iterated.iterations),
            table,
            nodes: Vec::new(),
            warnings: iterated.warnings,
        },
    )
}

/// The nodes and weights of the n-point Gauss–Legendre rule on [−1, 1], by Newton's method on
/// the Legendre polynomial Pₙ (accurate to a few ulps for n ≤ 100).
pub(crate) fn gauss_legendre_rule(n: usize) -> Vec<(f64, f64)> {
    let mut rule = vec![(0.0, 0.0); n];
    for i in 0..n.div_ceil(2) {
        let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut derivative = 0.0;
        for _ in 0..100 {
            // Pₙ(z) and Pₙ₋₁(z) by the three-term recurrence.
            let (mut p, mut p_before) = (1.0, 0.0);
            for j in 1..=n {
                let j = j as f64;
                (p, p_before) = (((2.0 * j - 1.0) * z * p - (j - 1.0) * p_before) / j, p);
            }
            derivative = n as f64 * (z * p - p_before) / (z * z - 1.0);
            let step = p / derivative;
            z -= step;
            if step.abs() <= 1e-16 {
                break;
            }
        }
        let weight = 2.0 / ((1.0 - z * z) * derivative * derivative);
        rule[i] = (-z, weight);
        rule[n - 1 - i] = (z, weight);
    }
    rule
}

fn gauss_legendre(problem: &IntegralProblem, points: usize, budget: &Budget) -> Solution {
    let IntegralProblem { f, a, b, .. } = problem;
    let (half, middle) = ((b - a) / 2.0, (a + b) / 2.0);
    let mut table = TableBuilder::new(["i", "node", "weight", "f_node"]);
    let mut nodes = Vec::with_capacity(points);
    let mut sum = 0.0;
    let mut outcome = Convergence::Converged;
    if budget.is_exhausted() {
        outcome = Convergence::OutOfTime;
    } else {
        for (i, (node, weight)) in gauss_legendre_rule(points).into_iter().enumerate() {
            let (x, w) = (middle + half * node, half * weight);
            match value(f, x) {
                Ok(fx) => {
                    sum += w * fx;
                    table.push(vec![(i + 1) as f64, x, w, fx]);
                    nodes.push((x, fx));
                }
                Err(message) => {
                    outcome = Convergence::EvaluationError { message };
                    break;
                }
            }
        }
    }
    finish(
        problem,
        Quadrature {
            outcome,
            result: json!({ "value": sum }),
            value: sum,
            iterations: None,
            table,
            nodes,
            warnings: Vec::new(),
        },
    )
}

/// What a rule computed, for [`finish`].
struct Quadrature {
    outcome: Convergence,
    result: serde_json::Value,
    value: f64,
    iterations: Option<u64>,
    table: TableBuilder,
    /// The nodes and values to mark in the plot (when few).
    nodes: Vec<(f64, f64)>,
    warnings: Vec<String>,
}

fn finish(problem: &IntegralProblem, quadrature: Quadrature) -> Solution {
    let Quadrature {
        outcome,
        result,
        value,
        iterations,
        table,
        nodes,
        mut warnings,
    } = quadrature;
    let table = table.finish();
    warnings.extend(table.omission_note());
    Solution {
        method: problem.method,
        outcome,
        result,
        iterations,
        warnings,
        table,
        plot: integral_plot(problem, nodes, value),
    }
}

/// The integrand over [a, b] with the area under it shaded, and the nodes used when few.
fn integral_plot(problem: &IntegralProblem, nodes: Vec<(f64, f64)>, value: f64) -> Plot {
    let IntegralProblem {
        method, f, a, b, ..
    } = problem;
    let curve: Vec<(f64, f64)> = (0..=PLOT_SAMPLES)
        .map(|i| {
            let x = if i == PLOT_SAMPLES {
                *b
            } else {
                a + (b - a) * i as f64 / PLOT_SAMPLES as f64
            };
            (x, f.eval(&[x]))
        })
        .collect();
    let mut series = vec![
        Series::new("", Style::Area, curve.clone()),
        Series::new(format!("f(x) = {}", f.source()), Style::Line, curve),
    ];
    if !nodes.is_empty() && nodes.len() <= MAX_MARKED_NODES {
        series.push(Series::new("nodes", Style::Markers, nodes));
    }
    Plot {
        title: format!(
            "{method}: integral over [{}, {}] ≈ {}",
            num(*a),
            num(*b),
            num(value)
        ),
        x_label: "x".into(),
        y_label: "f(x)".into(),
        y_scale: Scale::Linear,
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_rule_is_exact_for_degree_2n_minus_1() {
        for n in [1, 2, 3, 5, 8, 20, 64, 100] {
            let rule = gauss_legendre_rule(n);
            let weight_sum: f64 = rule.iter().map(|(_, w)| w).sum();
            assert!(
                (weight_sum - 2.0).abs() < 1e-13,
                "n = {n}: weights sum to {weight_sum}"
            );
            let degree = 2 * n as i32 - 1;
            for power in [degree - 1, degree] {
                let integral: f64 = rule.iter().map(|(x, w)| w * x.powi(power)).sum();
                let exact = if power % 2 == 1 {
                    0.0
                } else {
                    2.0 / (power + 1) as f64
                };
                assert!(
                    (integral - exact).abs() < 1e-13,
                    "n = {n}, x^{power}: {integral} vs {exact}"
                );
            }
            assert!(
                rule.windows(2).all(|w| w[0].0 < w[1].0),
                "n = {n}: nodes increase"
            );
        }
        let two = gauss_legendre_rule(2);
        assert!((two[1].0 - 1.0 / 3f64.sqrt()).abs() < 1e-15, "{two:?}");
        assert!((two[1].1 - 1.0).abs() < 1e-14, "{two:?}");
    }
}
