//! Linear systems Ax = b: Gaussian elimination (partial pivoting), LU, Jacobi, Gauss–Seidel.
//!
//! Result: `{x, residual_norm}`, plus `iterations` for the iterative methods.

use serde_json::json;

use crate::budget::Budget;
use crate::error::ProblemError;
use crate::iteration::{Step, convergence_plot, iterate};
use crate::method::Method;
use crate::solution::{Convergence, Solution};
use crate::svg::{Plot, Scale, Series, Style};
use crate::table::{Table, TableBuilder};
use crate::validation::Params;

/// Largest system accepted: n × n with n at most this.
pub const MAX_DIMENSION: usize = 100;
/// A condition number above this earns a warning.
const ILL_CONDITIONED: f64 = 1e6;

/// A dense square matrix, row-major.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Matrix {
    n: usize,
    entries: Vec<f64>,
}

impl Matrix {
    fn at(&self, i: usize, j: usize) -> f64 {
        self.entries[i * self.n + j]
    }

    fn row(&self, i: usize) -> &[f64] {
        &self.entries[i * self.n..(i + 1) * self.n]
    }

    /// ‖b − Ax‖₂.
    fn residual_norm(&self, x: &[f64], b: &[f64]) -> f64 {
        (0..self.n)
            .map(|i| {
                let ax: f64 = self.row(i).iter().zip(x).map(|(a, x)| a * x).sum();
                (b[i] - ax).powi(2)
            })
            .sum::<f64>()
            .sqrt()
    }

    /// The largest column sum of absolute values.
    fn norm_1(&self) -> f64 {
        (0..self.n)
            .map(|j| (0..self.n).map(|i| self.at(i, j).abs()).sum::<f64>())
            .fold(0.0, f64::max)
    }

    /// Whether every row's diagonal entry outweighs the rest of the row.
    fn is_diagonally_dominant(&self) -> bool {
        (0..self.n).all(|i| {
            let off_diagonal: f64 = self
                .row(i)
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, a)| a.abs())
                .sum();
            self.at(i, i).abs() > off_diagonal
        })
    }
}

/// A validated linear system.
#[derive(Clone, Debug)]
pub(crate) struct LinearProblem {
    method: Method,
    a: Matrix,
    b: Vec<f64>,
    /// For the iterative methods: start, tolerance and iteration limit.
    iteration: Option<(Vec<f64>, f64, u64)>,
}

impl LinearProblem {
    pub fn method(&self) -> Method {
        self.method
    }
}

pub(crate) fn parse(params: &Params) -> Result<LinearProblem, ProblemError> {
    let method = params.method;
    let (entries, n) = params.square_matrix("A", MAX_DIMENSION)?;
    let a = Matrix { n, entries };
    let b = params.vector("b", 1..=MAX_DIMENSION)?;
    if b.len() != n {
        return Err(ProblemError::new(
            "b",
            format!("b has {} values but A has {n} rows", b.len()),
        ));
    }
    let iteration = match method {
        Method::Jacobi | Method::GaussSeidel => {
            let x0 = match params.get("x0") {
                Some(_) => {
                    let x0 = params.vector("x0", 1..=MAX_DIMENSION)?;
                    if x0.len() != n {
                        return Err(ProblemError::new(
                            "x0",
                            format!("x0 has {} values but A has {n} rows", x0.len()),
                        ));
                    }
                    x0
                }
                None => vec![0.0; n],
            };
            let tol = params.tolerance()?;
            let max_iter = params.max_iter()?;
            if let Some(i) = (0..n).find(|&i| a.at(i, i) == 0.0) {
                return Err(ProblemError::new(
                    "A",
                    format!(
                        "A[{i}][{i}] is 0: {method} divides by the diagonal; reorder the equations so that no diagonal entry is 0"
                    ),
                ));
            }
            Some((x0, tol, max_iter))
        }
        _ => None,
    };
    match factorize(&a, &Budget::unlimited()) {
        Err(Factorization::Singular { column }) => {
            return Err(ProblemError::new(
                "A",
                format!(
                    "A is singular (to working precision): no usable pivot in column {column} after elimination"
                ),
            ));
        }
        Err(Factorization::OutOfTime) => unreachable!("an unlimited budget never runs out"),
        Ok(_) => {}
    }
    Ok(LinearProblem {
        method,
        a,
        b,
        iteration,
    })
}

/// One elimination step: which row became the pivot row and how large the multipliers were.
#[derive(Clone, Copy, Debug)]
struct PivotStep {
    /// The row (1-based, in the order at that step) swapped into the pivot position.
    pivot_row: usize,
    pivot: f64,
    largest_multiplier: f64,
}

/// PA = LU with partial pivoting: `lu` holds L below the diagonal (unit diagonal implied) and U
/// on and above it; `order[i]` is the row of A that became row i.
struct Lu {
    n: usize,
    lu: Vec<f64>,
    order: Vec<usize>,
    steps: Vec<PivotStep>,
}

enum Factorization {
    /// No pivot above the tolerance in this (1-based) column.
    Singular {
        column: usize,
    },
    OutOfTime,
}

fn factorize(a: &Matrix, budget: &Budget) -> Result<Lu, Factorization> {
    let n = a.n;
    let mut lu = a.entries.clone();
    let mut order: Vec<usize> = (0..n).collect();
    let mut steps = Vec::with_capacity(n);
    let scale = a.entries.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let tolerance = n as f64 * f64::EPSILON * scale;
    for k in 0..n {
        if budget.is_exhausted() {
            return Err(Factorization::OutOfTime);
        }
        let pivot_row = (k..n)
            .max_by(|&i, &j| lu[i * n + k].abs().total_cmp(&lu[j * n + k].abs()))
            .expect("k < n");
        let pivot = lu[pivot_row * n + k];
        if pivot.abs() <= tolerance || scale == 0.0 {
            return Err(Factorization::Singular { column: k + 1 });
        }
        if pivot_row != k {
            for j in 0..n {
                lu.swap(k * n + j, pivot_row * n + j);
            }
            order.swap(k, pivot_row);
        }
        let mut largest_multiplier = 0.0f64;
        for i in k + 1..n {
            let multiplier = lu[i * n + k] / pivot;
            lu[i * n + k] = multiplier;
            largest_multiplier = largest_multiplier.max(multiplier.abs());
            for j in k + 1..n {
                lu[i * n + j] -= multiplier * lu[k * n + j];
            }
        }
        steps.push(PivotStep {
            pivot_row: pivot_row + 1,
            pivot,
            largest_multiplier,
        });
    }
    Ok(Lu {
        n,
        lu,
        order,
        steps,
    })
}

impl Lu {
    /// Solves Ax = b by forward substitution with L and back substitution with U.
    fn solve(&self, b: &[f64]) -> Vec<f64> {
        let n = self.n;
        let mut x: Vec<f64> = self.order.iter().map(|&i| b[i]).collect();
        for i in 0..n {
            let sum: f64 = (0..i).map(|j| self.lu[i * n + j] * x[j]).sum();
            x[i] -= sum;
        }
        for i in (0..n).rev() {
            let sum: f64 = (i + 1..n).map(|j| self.lu[i * n + j] * x[j]).sum();
            x[i] = (x[i] - sum) / self.lu[i * n + i];
        }
        x
    }

    /// ‖A‖₁‖A⁻¹‖₁, with A⁻¹ computed column by column.
    fn condition_number(&self, a: &Matrix) -> f64 {
        let n = self.n;
        let mut unit = vec![0.0; n];
        let mut inverse_norm = 0.0f64;
        for j in 0..n {
            unit[j] = 1.0;
            inverse_norm = inverse_norm.max(self.solve(&unit).iter().map(|v| v.abs()).sum());
            unit[j] = 0.0;
        }
        a.norm_1() * inverse_norm
    }
}

pub(crate) fn solve(problem: &LinearProblem, budget: &Budget) -> Solution {
    match &problem.iteration {
        None => direct(problem, budget),
        Some((x0, tol, max_iter)) => iterative(problem, x0, *tol, *max_iter, budget),
    }
}

fn direct(problem: &LinearProblem, budget: &Budget) -> Solution {
    let LinearProblem { method, a, b, .. } = problem;
    let n = a.n;
    let lu = match factorize(a, budget) {
        Ok(lu) => lu,
        Err(failure) => {
            let outcome = match failure {
                Factorization::OutOfTime => Convergence::OutOfTime,
                Factorization::Singular { column } => Convergence::EvaluationError {
                    message: format!("A is singular (to working precision) in column {column}"),
                },
            };
            return Solution {
                method: *method,
                outcome,
                result: json!({ "x": null, "residual_norm": null }),
                iterations: None,
                warnings: Vec::new(),
                table: Table::default(),
                plot: solution_plot(*method, &[]),
            };
        }
    };
    let x = lu.solve(b);
    let mut warnings = Vec::new();
    let condition = lu.condition_number(a);
    if condition > ILL_CONDITIONED {
        warnings.push(format!(
            "A is ill-conditioned (condition number ≈ {condition:.1e} in the 1-norm): about {} of the ~16 significant digits may be lost",
            condition.log10().floor()
        ));
    }
    let table = if *method == Method::Lu {
        let mut header = vec!["row".to_string(), "p".to_string()];
        header.extend((1..=n).map(|j| format!("l{j}")));
        header.extend((1..=n).map(|j| format!("u{j}")));
        let mut table = TableBuilder::new(header);
        for i in 0..n {
            let mut row = vec![(i + 1) as f64, (lu.order[i] + 1) as f64];
            row.extend((0..n).map(|j| match j {
                j if j < i => lu.lu[i * n + j],
                j if j == i => 1.0,
                _ => 0.0,
            }));
            row.extend((0..n).map(|j| if j >= i { lu.lu[i * n + j] } else { 0.0 }));
            table.push(row);
        }
        table
    } else {
        let mut table = TableBuilder::new(["step", "pivot_row", "pivot", "largest_multiplier"]);
        for (k, step) in lu.steps.iter().enumerate() {
            table.push(vec![
                (k + 1) as f64,
                step.pivot_row as f64,
                step.pivot,
                step.largest_multiplier,
            ]);
        }
        table
    };
    Solution {
        method: *method,
        outcome: Convergence::Converged,
        result: json!({ "x": x, "residual_norm": a.residual_norm(&x, b) }),
        iterations: None,
        warnings,
        table: table.finish(),
        plot: solution_plot(*method, &x),
    }
}

/// The solution's components x₁…xₙ.
fn solution_plot(method: Method, x: &[f64]) -> Plot {
    Plot {
        title: format!("{method}: solution"),
        x_label: "component i".into(),
        y_label: "x_i".into(),
        y_scale: Scale::Linear,
        series: vec![Series::new(
            "x_i",
            Style::Markers,
            x.iter()
                .enumerate()
                .map(|(i, v)| ((i + 1) as f64, *v))
                .collect(),
        )],
    }
}

fn iterative(
    problem: &LinearProblem,
    x0: &[f64],
    tol: f64,
    max_iter: u64,
    budget: &Budget,
) -> Solution {
    let LinearProblem { method, a, b, .. } = problem;
    let n = a.n;
    let mut header = vec!["iteration".to_string()];
    header.extend((1..=n).map(|i| format!("x{i}")));
    header.push("error".into());
    let mut table = TableBuilder::new(header);
    let mut x = x0.to_vec();
    let mut next = x0.to_vec();
    let in_place = *method == Method::GaussSeidel;
    let iterated = iterate(budget, max_iter, |k| {
        for i in 0..n {
            let mut sum = b[i];
            for (j, a_ij) in a.row(i).iter().enumerate() {
                if j != i {
                    sum -= a_ij * if in_place && j < i { next[j] } else { x[j] };
                }
            }
            next[i] = sum / a.at(i, i);
        }
        let error = x
            .iter()
            .zip(&next)
            .fold(0.0f64, |m, (old, new)| m.max((new - old).abs()));
        if !error.is_finite() {
            return Ok(Step::BrokeDown {
                reason: format!("the iteration diverged: the iterates overflowed at iteration {k}"),
            });
        }
        std::mem::swap(&mut x, &mut next);
        let mut row = Vec::with_capacity(n + 2);
        row.push(k as f64);
        row.extend_from_slice(&x);
        row.push(error);
        table.push(row);
        Ok(Step::after(error, error <= tol))
    });
    let table = table.finish();
    let mut warnings = Vec::new();
    if !a.is_diagonally_dominant() {
        warnings
            .push("matrix is not diagonally dominant: the iteration may not converge".to_string());
    }
    warnings.extend(iterated.warnings);
    warnings.extend(table.omission_note());
    Solution {
        method: *method,
        result: json!({
            "x": x,
            "residual_norm": a.residual_norm(&x, b),
            "iterations": iterated.iterations,
        }),
        iterations: Some(iterated.iterations),
        outcome: iterated.outcome,
        warnings,
        table,
        plot: convergence_plot(*method, "max |x_k − x_(k−1)|", iterated.errors),
    }
}
