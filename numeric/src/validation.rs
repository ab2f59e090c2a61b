//! Reading a problem statement's parameters: presence, types and ranges, each error naming its
//! field. The checks that need the mathematics (sign changes, singular matrices, …) live with
//! their family.

use serde_json::{Map, Value};

use crate::catalogue::parameters;
use crate::error::ProblemError;
use crate::expr::Expression;
use crate::method::Method;
use crate::table::format_number as num;

/// Most iterations any method may be asked for.
pub const MAX_ITERATIONS: u64 = 1_000_000;

/// The parameters of one problem statement, checked against its method's catalogue entry.
pub(crate) struct Params<'a> {
    object: &'a Map<String, Value>,
    pub method: Method,
}

impl<'a> Params<'a> {
    /// Checks that `problem` is an object naming a known method, with every required parameter
    /// and no unknown one.
    pub fn read(problem: &'a Value) -> Result<Params<'a>, ProblemError> {
        let object = problem
            .as_object()
            .ok_or_else(|| ProblemError::new("", "problem must be a JSON object"))?;
        let known = || Method::ALL.map(Method::name).join(", ");
        let method = match object.get("method") {
            None | Some(Value::Null) => {
                return Err(ProblemError::new(
                    "method",
                    format!("method is missing (one of: {})", known()),
                ));
            }
            Some(Value::String(name)) => Method::from_name(name).ok_or_else(|| {
                ProblemError::new(
                    "method",
                    format!("unknown method '{name}' (one of: {})", known()),
                )
            })?,
            Some(_) => return Err(ProblemError::new("method", "method must be a string")),
        };
        let specs = parameters(method);
        let list = || specs.iter().map(|p| p.name).collect::<Vec<_>>().join(", ");
        if let Some(unknown) = object
            .keys()
            .find(|key| *key != "method" && !specs.iter().any(|p| p.name == key.as_str()))
        {
            return Err(ProblemError::new(
                unknown,
                format!(
                    "unknown parameter '{unknown}' for {method} (its parameters: {})",
                    list()
                ),
            ));
        }
        if let Some(missing) = specs
            .iter()
            .find(|p| p.required && object.get(p.name).is_none_or(Value::is_null))
        {
            return Err(ProblemError::new(
                missing.name,
                format!(
                    "missing parameter '{}' for {method} (its parameters: {})",
                    missing.name,
                    list()
                ),
            ));
        }
        Ok(Params { object, method })
    }

    /// The value of `name`, if given and not null.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.object.get(name).filter(|v| !v.is_null())
    }

    fn required(&self, name: &str) -> &'a Value {
        self.get(name)
            .expect("required parameters are checked by Params::read")
    }

    /// A finite number, given as a JSON number or a constant expression such as `"pi/2"`.
    pub fn number(&self, name: &str) -> Result<f64, ProblemError> {
        number_value(self.required(name), name)
    }

    /// The interval `[a, b]` of the parameters `a` and `b`, with `a < b`.
    pub fn interval(&self) -> Result<(f64, f64), ProblemError> {
        let (a, b) = (self.number("a")?, self.number("b")?);
        if a >= b {
            return Err(ProblemError::new(
                "b",
                format!("b must be greater than a (a = {}, b = {})", num(a), num(b)),
            ));
        }
        Ok((a, b))
    }

    /// A number > 0.
    pub fn positive(&self, name: &str) -> Result<f64, ProblemError> {
        let value = self.number(name)?;
        if value > 0.0 {
            Ok(value)
        } else {
            Err(ProblemError::new(
                name,
                format!("{name} must be greater than 0, not {value}"),
            ))
        }
    }

    /// `tol`, > 0.
    pub fn tolerance(&self) -> Result<f64, ProblemError> {
        self.positive("tol")
    }

    /// A whole number within `range`.
    pub fn integer(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, ProblemError> {
        let out_of_range = || {
            ProblemError::new(
                name,
                format!(
                    "{name} must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )
        };
        let value = self.required(name);
        let integer = match value {
            Value::Number(number) => number
                .as_u64()
                .or_else(|| {
                    number
                        .as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= 1e18)
                        .map(|f| f as u64)
                })
                .ok_or_else(out_of_range)?,
            _ => return Err(ProblemError::new(name, format!("{name} must be a number"))),
        };
        if range.contains(&integer) {
            Ok(integer)
        } else {
            Err(out_of_range())
        }
    }

    /// `max_iter`, 1 to [`MAX_ITERATIONS`].
    pub fn max_iter(&self) -> Result<u64, ProblemError> {
        self.integer("max_iter", 1..=MAX_ITERATIONS)
    }

    /// An expression in `variables`.
    pub fn expression(&self, name: &str, variables: &[&str]) -> Result<Expression, ProblemError> {
        expression_value(self.required(name), name, variables)
    }

    /// An optional expression in `variables`.
    pub fn optional_expression(
        &self,
        name: &str,
        variables: &[&str],
    ) -> Result<Option<Expression>, ProblemError> {
        self.get(name)
            .map(|value| expression_value(value, name, variables))
            .transpose()
    }

    /// An array of numbers with a length within `lengths`.
    pub fn vector(
        &self,
        name: &str,
        lengths: std::ops::RangeInclusive<usize>,
    ) -> Result<Vec<f64>, ProblemError> {
        vector_value(self.required(name), name, lengths)
    }

    /// A number or an array of numbers (with a length within `lengths`); `true` with a number.
    pub fn number_or_vector(
        &self,
        name: &str,
        lengths: std::ops::RangeInclusive<usize>,
    ) -> Result<(Vec<f64>, bool), ProblemError> {
        match self.required(name) {
            Value::Array(_) => Ok((vector_value(self.required(name), name, lengths)?, false)),
            value => Ok((vec![number_value(value, name)?], true)),
        }
    }

    /// A square matrix of finite numbers, at most `max_dimension` rows: (rows, dimension).
    pub fn square_matrix(
        &self,
        name: &str,
        max_dimension: usize,
    ) -> Result<(Vec<f64>, usize), ProblemError> {
        let not_a_matrix = || {
            ProblemError::new(
                name,
                format!("{name} must be an array of rows, each an array of numbers"),
            )
        };
        let rows = self.required(name).as_array().ok_or_else(not_a_matrix)?;
        let n = rows.len();
        if n == 0 {
            return Err(ProblemError::new(
                name,
                format!("{name} must have at least one row"),
            ));
        }
        if n > max_dimension {
            return Err(ProblemError::new(
                name,
                format!(
                    "{name} has {n} rows; at most {max_dimension} x {max_dimension} is allowed"
                ),
            ));
        }
        let mut entries = Vec::with_capacity(n * n);
        for (i, row) in rows.iter().enumerate() {
            let row = row.as_array().ok_or_else(not_a_matrix)?;
            if row.len() != n {
                return Err(ProblemError::new(
                    name,
                    format!(
                        "{name} must be square: it has {n} rows but row {i} has {} entries",
                        row.len()
                    ),
                ));
            }
            for (j, entry) in row.iter().enumerate() {
                entries.push(number_value(entry, &format!("{name}[{i}][{j}]"))?);
            }
        }
        Ok((entries, n))
    }
}

/// A finite number from a JSON number or a constant expression.
pub(crate) fn number_value(value: &Value, name: &str) -> Result<f64, ProblemError> {
    let number = match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => {
            let constant = Expression::parse(text, &[])
                .map_err(|e| ProblemError::new(name, format!("{name}: {}", e.message)))?;
            Some(constant.eval(&[]))
        }
        _ => None,
    };
    match number {
        Some(number) if number.is_finite() => Ok(number),
        Some(number) => Err(ProblemError::new(
            name,
            format!("{name} must be finite, not {number}"),
        )),
        None => Err(ProblemError::new(name, format!("{name} must be a number"))),
    }
}

fn vector_value(
    value: &Value,
    name: &str,
    lengths: std::ops::RangeInclusive<usize>,
) -> Result<Vec<f64>, ProblemError> {
    let items = value
        .as_array()
        .ok_or_else(|| ProblemError::new(name, format!("{name} must be an array of numbers")))?;
    if !lengths.contains(&items.len()) {
        return Err(ProblemError::new(
            name,
            format!(
                "{name} has {} values; it must have {} to {}",
                items.len(),
                lengths.start(),
                lengths.end()
            ),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| number_value(item, &format!("{name}[{i}]")))
        .collect()
}

/// An expression from `value`; `name` may name an entry of an array, like `f[1]`.
pub(crate) fn expression_value(
    value: &Value,
    name: &str,
    variables: &[&str],
) -> Result<Expression, ProblemError> {
    let text = value.as_str().ok_or_else(|| {
        ProblemError::new(name, format!("{name} must be a string such as \"x^2 - 2\""))
    })?;
    Expression::parse(text, variables)
        .map_err(|e| ProblemError::new(name, format!("{name}: {}", e.message)))
}

/// Checks that `expression` (the parameter `name`) has a finite value at `point`; `at` says
/// where, e.g. "x = 1 (the end point a)".
pub(crate) fn finite_at(
    expression: &Expression,
    name: &str,
    point: &[f64],
    at: impl FnOnce() -> String,
) -> Result<f64, ProblemError> {
    expression
        .eval_finite(name, point, at)
        .map_err(|message| ProblemError::new(name, message))
}
