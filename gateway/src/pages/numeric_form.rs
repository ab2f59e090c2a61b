//! The numeric mode of the submit form: a method select and, per method, a fieldset with
//! exactly its parameters (from the library's catalogue, with their help texts), preset with
//! the method's worked example.
//!
//! Every method's fieldset is in the page; the one of the chosen method is shown and enabled,
//! the others are `hidden` and `disabled` (so they are not sent). The page's script switches
//! them when another method is picked; without it, picking another method and pressing Run
//! brings the form back with that method's fields (the hidden `shown_method` says which fields
//! were on screen, so nothing is submitted then).
//!
//! A field's text becomes the JSON the API takes: numbers where they parse as numbers (else the
//! text, e.g. a constant expression such as `pi/2`), vectors as comma- or space-separated
//! numbers, matrices one row per line, and systems of expressions one per line. JSON arrays
//! typed as such are taken as they are.

use std::collections::BTreeMap;

use cola_numeric::{Family, MethodInfo, ParamType};
use serde_json::{Number, Value};

/// The method the form starts with.
pub const DEFAULT_METHOD: &str = "bisection";

/// The numeric part of the form.
#[derive(Debug)]
pub struct NumericForm {
    /// The method shown.
    pub method: String,
    pub families: Vec<FamilyGroup>,
    pub methods: Vec<MethodForm>,
}

/// One `<optgroup>` of the method select.
#[derive(Debug)]
pub struct FamilyGroup {
    pub title: &'static str,
    pub methods: Vec<(&'static str, &'static str)>,
}

/// One method's fieldset.
#[derive(Debug)]
pub struct MethodForm {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub fields: Vec<ParamField>,
}

/// One parameter's input.
#[derive(Debug)]
pub struct ParamField {
    pub name: &'static str,
    /// The form field's name: `<method>.<parameter>`.
    pub input: String,
    /// The element id: `p-<method>-<parameter>`.
    pub id: String,
    pub type_label: &'static str,
    pub required: bool,
    pub meaning: &'static str,
    pub value: String,
    pub multiline: bool,
    pub rows: usize,
}

fn family_title(family: Family) -> &'static str {
    match family {
        Family::Roots => "Roots of f(x) = 0",
        Family::LinearSystems => "Linear systems A x = b",
        Family::Integrals => "Integrals",
        Family::Odes => "Ordinary differential equations",
        Family::Interpolation => "Interpolation",
    }
}

fn type_label(kind: ParamType) -> &'static str {
    match kind {
        ParamType::Expression => "expression",
        ParamType::ExpressionOrArray => "expression, or one per line for a system",
        ParamType::Number => "number",
        ParamType::Integer => "whole number",
        ParamType::Vector => "numbers, separated by commas",
        ParamType::NumberOrVector => "number, or numbers separated by commas",
        ParamType::Matrix => "matrix: one row per line, numbers separated by commas",
    }
}

fn multiline(kind: ParamType) -> bool {
    matches!(kind, ParamType::Matrix | ParamType::ExpressionOrArray)
}

impl NumericForm {
    /// Every method with its worked example; `method` shown (the default when unknown).
    pub fn new(method: Option<&str>) -> Self {
        let catalogue = cola_numeric::methods();
        let method = method
            .filter(|m| catalogue.iter().any(|info| info.name == *m))
            .unwrap_or(DEFAULT_METHOD)
            .to_owned();
        let mut families: Vec<FamilyGroup> = Vec::new();
        for info in &catalogue {
            let title = family_title(info.family);
            match families.iter_mut().find(|g| g.title == title) {
                Some(group) => group.methods.push((info.name, info.title)),
                None => families.push(FamilyGroup {
                    title,
                    methods: vec![(info.name, info.title)],
                }),
            }
        }
        let methods = catalogue.iter().map(MethodForm::from_example).collect();
        Self {
            method,
            families,
            methods,
        }
    }

    /// The form showing `problem` (an earlier job's statement).
    pub fn from_problem(problem: &Value) -> Self {
        let method = problem.get("method").and_then(Value::as_str);
        let mut form = Self::new(method);
        if let Some(shown) = form.methods.iter_mut().find(|m| Some(m.name) == method) {
            let catalogue = cola_numeric::methods();
            let info = catalogue.iter().find(|i| i.name == shown.name);
            for (field, param) in shown
                .fields
                .iter_mut()
                .zip(info.map(|i| i.parameters.as_slice()).unwrap_or_default())
            {
                field.value = problem
                    .get(param.name)
                    .map(|v| text_of(param.kind, v))
                    .unwrap_or_default();
            }
        }
        form
    }

    /// The form as typed: `method` shown, the fields of `typed_method` as `params` hold them.
    pub fn from_typed(method: &str, typed_method: &str, params: &BTreeMap<String, String>) -> Self {
        let mut form = Self::new(Some(method));
        if let Some(typed) = form.methods.iter_mut().find(|m| m.name == typed_method) {
            for field in &mut typed.fields {
                field.value = params.get(&field.input).cloned().unwrap_or_default();
            }
        }
        form
    }

    /// Whether `name` is the method shown.
    pub fn is_shown(&self, name: &str) -> bool {
        self.method == name
    }

    /// Whether `name` is a method of the catalogue.
    pub fn knows(name: &str) -> bool {
        cola_numeric::methods().iter().any(|m| m.name == name)
    }
}

impl MethodForm {
    fn from_example(info: &MethodInfo) -> Self {
        let fields = info
            .parameters
            .iter()
            .map(|param| {
                let value = info
                    .example
                    .get(param.name)
                    .map(|v| text_of(param.kind, v))
                    .unwrap_or_default();
                let rows = if multiline(param.kind) {
                    value.lines().count().clamp(2, 8)
                } else {
                    1
                };
                ParamField {
                    name: param.name,
                    input: format!("{}.{}", info.name, param.name),
                    id: format!("p-{}-{}", info.name, param.name),
                    type_label: type_label(param.kind),
                    required: param.required,
                    meaning: param.meaning,
                    value,
                    multiline: multiline(param.kind),
                    rows,
                }
            })
            .collect();
        Self {
            name: info.name,
            title: info.title,
            description: info.description,
            fields,
        }
    }
}

/// The problem statement the fields of `method` stand for (fields left empty are left out, so
/// that a missing required one is reported by validation).
pub fn problem_of(method: &str, params: &BTreeMap<String, String>) -> Value {
    let mut problem = serde_json::Map::new();
    problem.insert("method".into(), Value::String(method.to_owned()));
    if let Some(info) = cola_numeric::methods()
        .into_iter()
        .find(|m| m.name == method)
    {
        for param in &info.parameters {
            let text = params
                .get(&format!("{method}.{}", param.name))
                .map(String::as_str)
                .unwrap_or("");
            if let Some(value) = value_of(param.kind, text) {
                problem.insert(param.name.to_owned(), value);
            }
        }
    }
    Value::Object(problem)
}

/// The form field a validation error of the problem (`problem.<name>`) belongs to.
pub fn field_of_error(method: &str, api_field: &str) -> String {
    match api_field.strip_prefix("problem.") {
        Some(name)
            if name != "method"
                && cola_numeric::methods()
                    .iter()
                    .find(|m| m.name == method)
                    .is_some_and(|m| m.parameters.iter().any(|p| p.name == name)) =>
        {
            format!("{method}.{name}")
        }
        _ => "method".to_owned(),
    }
}

/// How a parameter's value is written in its field.
pub fn text_of(kind: ParamType, value: &Value) -> String {
    let scalar = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match value {
        Value::Array(items) if kind == ParamType::Matrix => items
            .iter()
            .map(|row| match row {
                Value::Array(cells) => cells.iter().map(scalar).collect::<Vec<_>>().join(", "),
                other => scalar(other),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Array(items) if kind == ParamType::ExpressionOrArray => {
            items.iter().map(scalar).collect::<Vec<_>>().join("\n")
        }
        Value::Array(items) if items.iter().all(|i| !i.is_array() && !i.is_object()) => {
            items.iter().map(scalar).collect::<Vec<_>>().join(", ")
        }
        Value::Array(_) | Value::Object(_) => value.to_string(),
        other => scalar(other),
    }
}

/// The JSON value a field's text stands for; `None` when it is empty.
pub fn value_of(kind: ParamType, text: &str) -> Option<Value> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if text.starts_with('[')
        && let Ok(json @ Value::Array(_)) = serde_json::from_str::<Value>(text)
    {
        return Some(json);
    }
    let tokens = |line: &str| -> Vec<Value> {
        line.split(|c: char| c == ',' || c == ';' || c.is_whitespace())
            .filter(|t| !t.is_empty())
            .map(number)
            .collect()
    };
    Some(match kind {
        ParamType::Expression => Value::String(text.to_owned()),
        ParamType::ExpressionOrArray => {
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            match lines.as_slice() {
                [one] => Value::String((*one).to_owned()),
                many => Value::Array(
                    many.iter()
                        .map(|l| Value::String((*l).to_owned()))
                        .collect(),
                ),
            }
        }
        ParamType::Number | ParamType::Integer => number(text),
        ParamType::Vector => Value::Array(tokens(text)),
        ParamType::NumberOrVector => {
            let mut values = tokens(text);
            if values.len() == 1 {
                values.remove(0)
            } else {
                Value::Array(values)
            }
        }
        ParamType::Matrix => {
            let rows = text
                .split(['\n', ';'])
                .map(str::trim)
                .filter(|row| !row.is_empty())
                .map(|row| Value::Array(tokens(row)))
                .collect();
            Value::Array(rows)
        }
    })
}

/// A whole number, a number, or else the text (a constant expression such as `pi/2`, or a
/// mistake that validation reports).
fn number(token: &str) -> Value {
    let token = token.trim();
    if let Ok(whole) = token.parse::<i64>() {
        return Value::Number(whole.into());
    }
    match token.parse::<f64>().ok().and_then(Number::from_f64) {
        Some(number) => Value::Number(number),
        None => Value::String(token.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_example_survives_the_round_trip_through_its_fields() {
        for info in cola_numeric::methods() {
            let form = NumericForm::from_problem(&info.example);
            assert_eq!(form.method, info.name);
            let shown = form.methods.iter().find(|m| m.name == info.name).unwrap();
            let params: BTreeMap<String, String> = shown
                .fields
                .iter()
                .map(|f| (f.input.clone(), f.value.clone()))
                .collect();
            let problem = problem_of(info.name, &params);
            let expected = cola_numeric::parse_problem(&info.example).unwrap();
            let got = cola_numeric::parse_problem(&problem)
                .unwrap_or_else(|e| panic!("{}: {e} from {problem}", info.name));
            assert_eq!(got.method(), expected.method());
            // The same numbers come back (up to 1 and 1.0).
            for param in &info.parameters {
                let (a, b) = (&info.example.get(param.name), &problem.get(param.name));
                assert_eq!(
                    a.map(|v| v.to_string().replace(".0", "")),
                    b.map(|v| v.to_string().replace(".0", "")),
                    "{}.{}",
                    info.name,
                    param.name
                );
            }
        }
    }

    #[test]
    fn fields_read_as_people_write_them() {
        assert_eq!(value_of(ParamType::Number, " 1e-10 "), Some(json!(1e-10)));
        assert_eq!(value_of(ParamType::Number, "pi/2"), Some(json!("pi/2")));
        assert_eq!(value_of(ParamType::Integer, "100"), Some(json!(100)));
        assert_eq!(value_of(ParamType::Number, ""), None);
        assert_eq!(
            value_of(ParamType::Vector, "1, 2 3;4"),
            Some(json!([1, 2, 3, 4]))
        );
        assert_eq!(
            value_of(ParamType::Vector, "[1, 2.5]"),
            Some(json!([1, 2.5]))
        );
        assert_eq!(value_of(ParamType::NumberOrVector, "0.5"), Some(json!(0.5)));
        assert_eq!(
            value_of(ParamType::NumberOrVector, "0, 1"),
            Some(json!([0, 1]))
        );
        assert_eq!(
            value_of(ParamType::Matrix, "2, 1\n-1 3\n"),
            Some(json!([[2, 1], [-1, 3]]))
        );
        assert_eq!(
            value_of(ParamType::Matrix, "1 2; 3 4"),
            Some(json!([[1, 2], [3, 4]]))
        );
        assert_eq!(
            value_of(ParamType::ExpressionOrArray, "y2\n-y1\n"),
            Some(json!(["y2", "-y1"]))
        );
        assert_eq!(
            value_of(ParamType::ExpressionOrArray, " y - t "),
            Some(json!("y - t"))
        );
        assert_eq!(
            text_of(ParamType::Matrix, &json!([[1, 2], [3, 4]])),
            "1, 2\n3, 4"
        );
        assert_eq!(text_of(ParamType::Number, &json!("2*pi")), "2*pi");
    }

    #[test]
    fn errors_land_on_their_field() {
        assert_eq!(field_of_error("bisection", "problem.f"), "bisection.f");
        assert_eq!(field_of_error("bisection", "problem.method"), "method");
        assert_eq!(field_of_error("bisection", "problem.x0"), "method");
        assert_eq!(field_of_error("bisection", "problem"), "method");
        let form = NumericForm::new(Some("nope"));
        assert_eq!(form.method, DEFAULT_METHOD);
        assert_eq!(form.methods.len(), cola_numeric::methods().len());
        assert_eq!(form.families.len(), 5);
    }
}
