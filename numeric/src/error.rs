//! The one error of validation: what is wrong, and with which field of the problem.

use serde::Serialize;

/// Why a problem was rejected before queuing. The gateway answers it as
/// `400 {"error": ..., "field": ...}`; `field` names the parameter, such as `problem.f` or
/// `problem.A` (the message says which entry of an array, e.g. `A[1][2]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProblemError {
    pub error: String,
    pub field: String,
}

impl ProblemError {
    /// An error about the parameter `name` of the problem (`problem.<name>`); an entry such as
    /// `A[1][2]` or `f[0]` is reported on its parameter.
    pub fn new(name: &str, error: impl Into<String>) -> ProblemError {
        ProblemError {
            error: error.into(),
            field: field(name),
        }
    }
}

/// The field path of a problem parameter, or of the parameter holding an entry like `A[1][2]`.
fn field(name: &str) -> String {
    let parameter = name.split('[').next().unwrap_or_default();
    if parameter.is_empty() {
        "problem".to_string()
    } else {
        format!("problem.{parameter}")
    }
}

impl std::fmt::Display for ProblemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.error)
    }
}

impl std::error::Error for ProblemError {}
