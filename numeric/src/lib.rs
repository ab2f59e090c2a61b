//! cola's built-in numeric-methods runtime: roots, linear systems, integrals, ODEs and
//! interpolation, as a pure library (no I/O, no async).
//!
//! A job's problem is a JSON object such as
//! `{"method": "bisection", "f": "x^3 + 4*x^2 - 10", "a": 1, "b": 2, "tol": 1e-10, "max_iter": 100}`.
//! It is used in two steps:
//!
//! 1. [`parse_problem`] validates it completely and cheaply (microseconds for typical problems),
//!    so the gateway can answer `400 {"error", "field"}` ([`ProblemError`]) before anything is
//!    queued: unknown method, missing or extra parameters, expressions that do not parse (with
//!    the position), bad brackets, tolerances, sizes, singular matrices, values that are not
//!    finite where validation evaluates.
//! 2. [`solve`] runs the method under a time [`Budget`] and returns a [`Solution`]: the
//!    [`Convergence`], the result in the family's shape, warnings, the iteration [`Table`] and a
//!    [`Plot`]. [`Solution::files`] renders `result.json`, `table.csv` and `plot.svg`.
//!
//! [`methods`] describes every method (parameters, help, a worked example) for
//! `GET /api/v1/numeric/methods` and the web form.
//!
//! Modules: [`expr`] (expressions, compiled once with exmex), `validation` (parameters),
//! one module per family (`roots`, `linear`, `integrals`, `odes`, `interpolation`),
//! `iteration` (the shared loop with budget and error history), [`table`] and [`svg`]
//! (outputs), [`catalogue`].

#![forbid(unsafe_code)]

mod budget;
pub mod catalogue;
mod error;
pub mod expr;
mod integrals;
mod interpolation;
mod iteration;
pub mod job;
mod linear;
mod method;
mod odes;
mod roots;
mod solution;
pub mod svg;
pub mod table;
mod validation;

pub use budget::{Budget, StopFlag};
pub use catalogue::{MethodInfo, ParamInfo, ParamType, example, methods};
pub use error::ProblemError;
pub use method::{Family, Method};
pub use solution::{Convergence, Solution};
pub use svg::Plot;
pub use table::Table;

/// The size limits validation enforces, for documentation and clients.
pub mod limits {
    pub use crate::expr::MAX_EXPRESSION_CHARS;
    pub use crate::integrals::{MAX_GAUSS_POINTS, MAX_ROMBERG_LEVELS, MAX_SUBINTERVALS};
    pub use crate::interpolation::{
        MAX_EVALUATION_POINTS, MAX_POLYNOMIAL_POINTS, MAX_SPLINE_POINTS,
    };
    pub use crate::linear::MAX_DIMENSION;
    pub use crate::odes::{MAX_EQUATIONS, MAX_STEPS};
    pub use crate::validation::MAX_ITERATIONS;
}

use serde_json::Value;

/// A validated problem: its method, typed parameters and compiled expressions. Cheap to keep
/// and to send to another thread.
#[derive(Clone, Debug)]
pub struct Problem {
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    Root(roots::RootProblem),
    Linear(linear::LinearProblem),
    Integral(integrals::IntegralProblem),
    Ode(odes::OdeProblem),
    Interpolation(interpolation::InterpolationProblem),
}

impl Problem {
    pub fn method(&self) -> Method {
        match &self.kind {
            Kind::Root(problem) => problem.method(),
            Kind::Linear(problem) => problem.method(),
            Kind::Integral(problem) => problem.method(),
            Kind::Ode(problem) => problem.method(),
            Kind::Interpolation(problem) => problem.method(),
        }
    }
}

/// Validates a problem statement (the job's `problem` object).
pub fn parse_problem(problem: &Value) -> Result<Problem, ProblemError> {
    let params = validation::Params::read(problem)?;
    let kind = match params.method.family() {
        Family::Roots => Kind::Root(roots::parse(&params)?),
        Family::LinearSystems => Kind::Linear(linear::parse(&params)?),
        Family::Integrals => Kind::Integral(integrals::parse(&params)?),
        Family::Odes => Kind::Ode(odes::parse(&params)?),
        Family::Interpolation => Kind::Interpolation(interpolation::parse(&params)?),
    };
    Ok(Problem { kind })
}

/// Solves a validated problem, stopping with [`Convergence::OutOfTime`] when `budget` runs out.
pub fn solve(problem: &Problem, budget: &Budget) -> Solution {
    match &problem.kind {
        Kind::Root(problem) => roots::solve(problem, budget),
        Kind::Linear(problem) => linear::solve(problem, budget),
        Kind::Integral(problem) => integrals::solve(problem, budget),
        Kind::Ode(problem) => odes::solve(problem, budget),
        Kind::Interpolation(problem) => interpolation::solve(problem, budget),
    }
}
