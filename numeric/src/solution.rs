//! What a solve produces, and the files of the job's zip.

use serde_json::{Value, json};

use crate::method::Method;
use crate::svg::Plot;
use crate::table::Table;

/// Largest compact `result.json` that is written indented instead.
const PRETTY_JSON_LIMIT: usize = 64 * 1024;

/// How a solve ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Convergence {
    /// The method met its tolerance (or, for a direct method, finished).
    Converged,
    /// The iteration or step limit was reached first, or the method broke down (a zero
    /// derivative, a diverging iteration); the warnings say which.
    DidNotConverge,
    /// The time budget ran out first.
    OutOfTime,
    /// A value could not be computed (NaN or infinity); the message says where.
    EvaluationError { message: String },
}

impl Convergence {
    /// The name in `result.json`'s `convergence.status`.
    pub fn status(&self) -> &'static str {
        match self {
            Convergence::Converged => "converged",
            Convergence::DidNotConverge => "did_not_converge",
            Convergence::OutOfTime => "out_of_time",
            Convergence::EvaluationError { .. } => "evaluation_error",
        }
    }

    pub fn is_converged(&self) -> bool {
        *self == Convergence::Converged
    }
}

/// The answer to a problem, with everything the job's zip needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Solution {
    pub method: Method,
    pub outcome: Convergence,
    /// The family's result shape: roots `{root, f_root, iterations, converged}`; linear systems
    /// `{x, residual_norm, iterations?}`; integrals `{value, error_estimate?}`; ODEs
    /// `{t, y, y_end}`; interpolation `{values}`.
    pub result: Value,
    /// Iterations or steps performed, for methods that iterate or step.
    pub iterations: Option<u64>,
    pub warnings: Vec<String>,
    pub table: Table,
    pub plot: Plot,
}

impl Solution {
    /// `convergence` in `result.json`.
    pub fn convergence(&self) -> Value {
        let mut convergence = json!({ "status": self.outcome.status() });
        if let Some(iterations) = self.iterations {
            convergence["iterations"] = json!(iterations);
        }
        if let Convergence::EvaluationError { message } = &self.outcome {
            convergence["message"] = json!(message);
        }
        convergence
    }

    /// The document `result.json` holds; `statement` is the problem as received.
    pub fn result_document(&self, statement: &Value) -> Value {
        json!({
            "statement": statement,
            "method": self.method.name(),
            "result": self.result,
            "convergence": self.convergence(),
            "warnings": self.warnings,
        })
    }

    /// The files of the job's zip: `result.json`, `table.csv` and `plot.svg`, produced whatever
    /// the outcome. `result.json` is indented for reading unless that would make it large.
    pub fn files(&self, statement: &Value) -> Vec<(&'static str, Vec<u8>)> {
        let document = self.result_document(statement);
        let mut json = serde_json::to_vec(&document).expect("a JSON value always serializes");
        if json.len() <= PRETTY_JSON_LIMIT {
            json = serde_json::to_vec_pretty(&document).expect("a JSON value always serializes");
        }
        vec![
            ("result.json", json),
            ("table.csv", self.table.to_csv().into_bytes()),
            ("plot.svg", self.plot.to_svg().into_bytes()),
        ]
    }
}
