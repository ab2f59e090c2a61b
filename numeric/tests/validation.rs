//! Every validation error: the field it names and what its message says.

use cola_numeric::{ProblemError, parse_problem};
use serde_json::{Value, json};

#[track_caller]
fn rejected(problem: Value) -> ProblemError {
    match parse_problem(&problem) {
        Ok(_) => panic!("accepted {problem}"),
        Err(error) => error,
    }
}

/// Asserts the error's field and that its message contains every fragment.
#[track_caller]
fn assert_rejected(problem: Value, field: &str, fragments: &[&str]) {
    let error = rejected(problem.clone());
    assert_eq!(error.field, field, "{problem}: {error}");
    for fragment in fragments {
        assert!(
            error.error.contains(fragment),
            "{problem}: '{}' lacks '{fragment}'",
            error.error
        );
    }
}

fn bisection() -> Value {
    json!({"method": "bisection", "f": "x^3 + 4*x^2 - 10", "a": 1, "b": 2, "tol": 1e-10, "max_iter": 100})
}

fn with(mut problem: Value, key: &str, value: Value) -> Value {
    problem[key] = value;
    problem
}

fn without(mut problem: Value, key: &str) -> Value {
    problem.as_object_mut().unwrap().remove(key);
    problem
}

#[test]
fn statement_shape_and_method() {
    assert_rejected(json!([1, 2]), "problem", &["JSON object"]);
    assert_rejected(
        json!({"f": "x"}),
        "problem.method",
        &["missing", "bisection"],
    );
    assert_rejected(
        with(bisection(), "method", json!("bisect")),
        "problem.method",
        &["unknown method 'bisect'", "regula_falsi"],
    );
    assert_rejected(
        with(bisection(), "method", json!(3)),
        "problem.method",
        &["must be a string"],
    );
}

#[test]
fn missing_and_extra_parameters() {
    for key in ["f", "a", "b", "tol", "max_iter"] {
        assert_rejected(
            without(bisection(), key),
            &format!("problem.{key}"),
            &["missing parameter", key],
        );
    }
    assert_rejected(
        with(bisection(), "tol", Value::Null),
        "problem.tol",
        &["missing parameter 'tol'"],
    );
    assert_rejected(
        with(bisection(), "x0", json!(1)),
        "problem.x0",
        &[
            "unknown parameter 'x0' for bisection",
            "f, a, b, tol, max_iter",
        ],
    );
    assert_rejected(
        json!({"method": "gauss", "A": [[1]], "b": [1], "tol": 1e-8}),
        "problem.tol",
        &["unknown parameter 'tol' for gauss"],
    );
    // Optional parameters may be left out.
    assert!(
        parse_problem(
            &json!({"method": "newton", "f": "x^2 - 2", "x0": 1, "tol": 1e-10, "max_iter": 50})
        )
        .is_ok()
    );
    assert!(parse_problem(&json!({"method": "jacobi", "A": [[2, 1], [1, 3]], "b": [1, 2], "tol": 1e-10, "max_iter": 50})).is_ok());
}

#[test]
fn expression_errors_carry_the_position() {
    assert_rejected(
        with(bisection(), "f", json!("x^3 + * 4")),
        "problem.f",
        &["f: unexpected '*'", "at position 7"],
    );
    assert_rejected(
        with(bisection(), "f", json!("(x + 1")),
        "problem.f",
        &["never closed", "at position 1"],
    );
    assert_rejected(
        with(bisection(), "f", json!("3x - 1")),
        "problem.f",
        &["missing operator", "at position 2"],
    );
    assert_rejected(with(bisection(), "f", json!("")), "problem.f", &["empty"]);
    assert_rejected(
        with(bisection(), "f", json!(42)),
        "problem.f",
        &["must be a string"],
    );
    assert_rejected(
        with(bisection(), "f", json!("x".repeat(1001))),
        "problem.f",
        &["at most 1000"],
    );
    assert_rejected(
        json!({"method": "newton", "f": "x^2 - 2", "df": "2*x +", "x0": 1, "tol": 1e-10, "max_iter": 50}),
        "problem.df",
        &["df:", "at position 6"],
    );
}

#[test]
fn unknown_variables_per_family() {
    assert_rejected(
        with(bisection(), "f", json!("x + y")),
        "problem.f",
        &["unknown variable 'y'", "may use x", "position 5"],
    );
    assert_rejected(
        json!({"method": "fixed_point", "g": "cos(t)", "x0": 1, "tol": 1e-10, "max_iter": 50}),
        "problem.g",
        &["unknown variable 't'"],
    );
    assert_rejected(
        json!({"method": "euler", "f": "x*y", "t0": 0, "y0": 1, "t_end": 1, "h": 0.1}),
        "problem.f",
        &["unknown variable 'x'", "may use t, y"],
    );
    assert_rejected(
        json!({"method": "rk4", "f": ["y2", "-y"], "t0": 0, "y0": [1, 0], "t_end": 1, "h": 0.1}),
        "problem.f",
        &["f[1]: unknown variable 'y'", "may use t, y1, y2"],
    );
    assert_rejected(
        json!({"method": "simpson", "f": "sin(t)", "a": 0, "b": 1, "n": 4}),
        "problem.f",
        &["unknown variable 't'"],
    );
}

#[test]
fn brackets_need_a_sign_change_but_an_end_point_root_is_fine() {
    for method in ["bisection", "regula_falsi", "brent"] {
        let problem = with(
            with(bisection(), "method", json!(method)),
            "f",
            json!("x^2 + 1"),
        );
        assert_rejected(problem, "problem.a", &["same sign", "f(1) = 2", "f(2) = 5"]);
        assert!(
            parse_problem(&with(
                with(bisection(), "method", json!(method)),
                "f",
                json!("x^2 - 1")
            ))
            .is_ok()
        );
        assert!(
            parse_problem(&with(
                with(bisection(), "method", json!(method)),
                "f",
                json!("x^2 - 4")
            ))
            .is_ok()
        );
    }
    // Secant, Newton and fixed point do not need one.
    assert!(parse_problem(&json!({"method": "secant", "f": "x^2 - 9", "x0": 4, "x1": 5, "tol": 1e-10, "max_iter": 50})).is_ok());
    assert!(
        parse_problem(
            &json!({"method": "newton", "f": "x^2 - 9", "x0": 4, "tol": 1e-10, "max_iter": 50})
        )
        .is_ok()
    );
}

#[test]
fn interval_order() {
    assert_rejected(
        with(with(bisection(), "a", json!(2)), "b", json!(1)),
        "problem.b",
        &["greater than a"],
    );
    assert_rejected(
        with(bisection(), "b", json!(1)),
        "problem.b",
        &["greater than a"],
    );
    assert_rejected(
        json!({"method": "trapezoid", "f": "x", "a": 3, "b": 3, "n": 4}),
        "problem.b",
        &["greater than a"],
    );
    assert_rejected(
        json!({"method": "rk4", "f": "y", "t0": 1, "y0": 1, "t_end": 0, "h": 0.1}),
        "problem.t_end",
        &["greater than t0"],
    );
}

#[test]
fn tolerances_and_iteration_limits() {
    for tol in [json!(0), json!(-1e-8)] {
        assert_rejected(
            with(bisection(), "tol", tol),
            "problem.tol",
            &["greater than 0"],
        );
    }
    assert_rejected(
        with(bisection(), "tol", json!("small")),
        "problem.tol",
        &["tol: unknown variable 'small'"],
    );
    assert_rejected(
        with(bisection(), "tol", json!([1])),
        "problem.tol",
        &["must be a number"],
    );
    for max_iter in [json!(0), json!(1_000_001), json!(2.5), json!(-3)] {
        assert_rejected(
            with(bisection(), "max_iter", max_iter),
            "problem.max_iter",
            &["from 1 to 1000000"],
        );
    }
    assert_rejected(
        with(bisection(), "max_iter", json!("10")),
        "problem.max_iter",
        &["must be a number"],
    );
    assert!(parse_problem(&with(bisection(), "max_iter", json!(1_000_000))).is_ok());
    assert!(parse_problem(&with(bisection(), "max_iter", json!(50.0))).is_ok());
    assert_rejected(
        json!({"method": "rk45", "f": "y", "t0": 0, "y0": 1, "t_end": 1, "tol": 0}),
        "problem.tol",
        &["greater than 0"],
    );
    assert_rejected(
        json!({"method": "romberg", "f": "x", "a": 0, "b": 1, "tol": 1e-8, "max_iter": 26}),
        "problem.max_iter",
        &["from 1 to 25"],
    );
}

#[test]
fn numbers_may_be_constant_expressions_but_must_be_finite() {
    assert!(
        parse_problem(&json!({"method": "simpson", "f": "sin(x)", "a": 0, "b": "pi", "n": 4}))
            .is_ok()
    );
    assert_rejected(
        json!({"method": "simpson", "f": "sin(x)", "a": 0, "b": "pi*x", "n": 4}),
        "problem.b",
        &["unknown variable 'x'", "no variables are allowed"],
    );
    assert_rejected(
        json!({"method": "simpson", "f": "sin(x)", "a": "ln(0)", "b": 1, "n": 4}),
        "problem.a",
        &["must be finite"],
    );
    assert_rejected(
        with(bisection(), "a", json!(true)),
        "problem.a",
        &["must be a number"],
    );
}

#[test]
fn quadrature_sizes() {
    let simpson = |n: Value| json!({"method": "simpson", "f": "x^2", "a": 0, "b": 1, "n": n});
    assert_rejected(simpson(json!(5)), "problem.n", &["even"]);
    assert_rejected(simpson(json!(0)), "problem.n", &["from 2 to 1000000"]);
    assert_rejected(
        json!({"method": "trapezoid", "f": "x", "a": 0, "b": 1, "n": 2_000_000}),
        "problem.n",
        &["from 1 to 1000000"],
    );
    assert_rejected(
        json!({"method": "gauss_legendre", "f": "x", "a": 0, "b": 1, "n": 101}),
        "problem.n",
        &["from 1 to 100"],
    );
}

#[test]
fn ode_shapes_and_steps() {
    let rk4 = |f: Value, y0: Value, h: Value| json!({"method": "rk4", "f": f, "t0": 0, "y0": y0, "t_end": 1, "h": h});
    assert_rejected(
        rk4(json!("y"), json!(1), json!(0)),
        "problem.h",
        &["greater than 0"],
    );
    assert_rejected(
        rk4(json!("y"), json!(1), json!(-0.1)),
        "problem.h",
        &["greater than 0"],
    );
    assert_rejected(
        rk4(json!("y"), json!(1), json!(1e-6)),
        "problem.h",
        &["1000000 steps", "at most 100000"],
    );
    assert_rejected(
        rk4(json!("y"), json!([1, 2]), json!(0.1)),
        "problem.y0",
        &["must be a number"],
    );
    assert_rejected(
        rk4(json!(["y2", "-y1"]), json!([1]), json!(0.1)),
        "problem.y0",
        &["array of 2 numbers"],
    );
    assert_rejected(
        rk4(json!(["y2", "-y1"]), json!(1), json!(0.1)),
        "problem.y0",
        &["array of 2 numbers"],
    );
    assert_rejected(
        rk4(json!([]), json!([]), json!(0.1)),
        "problem.f",
        &["1 to 32"],
    );
    assert_rejected(
        rk4(json!({"dy": "y"}), json!(1), json!(0.1)),
        "problem.f",
        &["array of expressions"],
    );
    assert!(parse_problem(&rk4(json!(["-y1"]), json!([1]), json!(0.1))).is_ok());
    assert!(parse_problem(&rk4(json!("y"), json!(1), json!(1e-5))).is_ok());
}

#[test]
fn matrix_shapes() {
    let gauss = |a: Value, b: Value| json!({"method": "gauss", "A": a, "b": b});
    assert_rejected(
        gauss(json!([[1, 2], [3]]), json!([1, 2])),
        "problem.A",
        &["square", "row 1 has 1 entries"],
    );
    assert_rejected(
        gauss(json!([[1, 2, 3], [4, 5, 6]]), json!([1, 2])),
        "problem.A",
        &["square"],
    );
    assert_rejected(
        gauss(json!([]), json!([])),
        "problem.A",
        &["at least one row"],
    );
    assert_rejected(
        gauss(json!([1, 2]), json!([1, 2])),
        "problem.A",
        &["array of rows"],
    );
    assert_rejected(
        gauss(json!([[1, "a"], [3, 4]]), json!([1, 2])),
        "problem.A",
        &["A[0][1]"],
    );
    assert_rejected(
        gauss(json!([[1, 2], [3, 4]]), json!([1, 2, 3])),
        "problem.b",
        &["3 values but A has 2 rows"],
    );
    let big: Vec<Vec<f64>> = (0..101)
        .map(|i| (0..101).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    assert_rejected(
        gauss(json!(big), json!(vec![1.0; 101])),
        "problem.A",
        &["at most 100 x 100"],
    );
    assert_rejected(
        json!({"method": "jacobi", "A": [[2, 1], [1, 3]], "b": [1, 2], "x0": [0], "tol": 1e-8, "max_iter": 10}),
        "problem.x0",
        &["1 values but A has 2 rows"],
    );
}

#[test]
fn singular_matrices_are_detected_not_divided_by() {
    for method in ["gauss", "lu", "jacobi", "gauss_seidel"] {
        let singular = [
            json!([[1, 2], [2, 4]]),
            json!([[1, 2, 3], [4, 5, 6], [7, 8, 9]]), // singular only up to rounding
            json!([[0, 0], [0, 0]]),
        ];
        for a in singular {
            let b = &[1, 2, 3][..a.as_array().unwrap().len()];
            let mut problem = json!({"method": method, "A": a, "b": b});
            if method == "jacobi" || method == "gauss_seidel" {
                problem["tol"] = json!(1e-8);
                problem["max_iter"] = json!(10);
                problem["A"] = json!([[1, 2], [2, 4]]);
                problem["b"] = json!([1, 2]);
            }
            assert_rejected(problem, "problem.A", &["singular"]);
        }
    }
    // Ill-conditioned but not singular: accepted.
    let hilbert: Vec<Vec<f64>> = (0..8)
        .map(|i| (0..8).map(|j| 1.0 / (i + j + 1) as f64).collect())
        .collect();
    assert!(parse_problem(&json!({"method": "gauss", "A": hilbert, "b": vec![1.0; 8]})).is_ok());
}

#[test]
fn iterative_methods_need_a_nonzero_diagonal() {
    assert_rejected(
        json!({"method": "gauss_seidel", "A": [[0, 1], [1, 0]], "b": [1, 1], "tol": 1e-8, "max_iter": 10}),
        "problem.A",
        &["A[0][0] is 0", "reorder"],
    );
}

#[test]
fn values_that_are_not_finite_where_validation_evaluates() {
    assert_rejected(
        json!({"method": "bisection", "f": "1/x - 1", "a": 0, "b": 2, "tol": 1e-8, "max_iter": 10}),
        "problem.f",
        &["f is inf at x = 0 (the end point a)"],
    );
    assert_rejected(
        json!({"method": "brent", "f": "sqrt(x)", "a": -1, "b": 2, "tol": 1e-8, "max_iter": 10}),
        "problem.f",
        &["f is NaN at x = -1 (the end point a)"],
    );
    assert_rejected(
        json!({"method": "newton", "f": "ln(x)", "x0": -1, "tol": 1e-8, "max_iter": 10}),
        "problem.f",
        &["f is NaN at x = -1 (x0)"],
    );
    assert_rejected(
        json!({"method": "newton", "f": "x^2 - 2", "df": "1/x", "x0": 0, "tol": 1e-8, "max_iter": 10}),
        "problem.df",
        &["df is inf at x = 0 (x0)"],
    );
    assert_rejected(
        json!({"method": "fixed_point", "g": "ln(x)", "x0": 0, "tol": 1e-8, "max_iter": 10}),
        "problem.g",
        &["g is -inf at x = 0"],
    );
    assert_rejected(
        json!({"method": "trapezoid", "f": "1/sqrt(x)", "a": 0, "b": 1, "n": 10}),
        "problem.f",
        &["at x = 0 (the end point a)"],
    );
    assert_rejected(
        json!({"method": "romberg", "f": "1/(x - 0.5)", "a": 0, "b": 1, "tol": 1e-8, "max_iter": 10}),
        "problem.f",
        &["at x = 0.5 (the middle of [a, b])"],
    );
    // Gauss–Legendre never evaluates at the end points.
    assert!(
        parse_problem(
            &json!({"method": "gauss_legendre", "f": "1/sqrt(x)", "a": 0, "b": 1, "n": 10})
        )
        .is_ok()
    );
    assert_rejected(
        json!({"method": "euler", "f": ["y2", "1/y1"], "t0": 0, "y0": [0, 1], "t_end": 1, "h": 0.1}),
        "problem.f",
        &["f[1] is inf at t = 0, y = [0, 1]"],
    );
    assert_rejected(
        json!({"method": "heun", "f": "ln(y)", "t0": 0, "y0": -1, "t_end": 1, "h": 0.1}),
        "problem.f",
        &["f is NaN at t = 0, y = -1"],
    );
}

#[test]
fn method_specific_starting_points() {
    assert_rejected(
        json!({"method": "secant", "f": "x^2 - 2", "x0": 1, "x1": 1, "tol": 1e-8, "max_iter": 10}),
        "problem.x1",
        &["differ from x0"],
    );
    assert_rejected(
        json!({"method": "secant", "f": "x^2 - 2", "x0": -1, "x1": 1, "tol": 1e-8, "max_iter": 10}),
        "problem.x1",
        &["horizontal"],
    );
    assert_rejected(
        json!({"method": "newton", "f": "x^2 - 2", "x0": 0, "tol": 1e-8, "max_iter": 10}),
        "problem.x0",
        &["f'(x0) = 0"],
    );
}

#[test]
fn interpolation_points() {
    let problem = |method: &str, xs: Value, ys: Value, at: Value| json!({"method": method, "xs": xs, "ys": ys, "at": at});
    for method in ["lagrange", "newton_divided", "cubic_spline"] {
        assert_rejected(
            problem(method, json!([1]), json!([1]), json!(0.5)),
            "problem.xs",
            &["must have 2 to"],
        );
        assert_rejected(
            problem(method, json!([1, 2, 3]), json!([1, 2]), json!(0.5)),
            "problem.ys",
            &["2 values but xs has 3"],
        );
        assert_rejected(
            problem(method, json!([1, 2, 1]), json!([1, 2, 3]), json!(0.5)),
            "problem.xs",
            &[],
        );
        assert_rejected(
            problem(method, json!([1, 2]), json!([1, 2]), json!([])),
            "problem.at",
            &["1 to 10000"],
        );
        assert_rejected(
            problem(method, json!([1, 2]), json!([1, 2]), json!("x")),
            "problem.at",
            &["unknown variable"],
        );
        assert_rejected(
            problem(method, json!([1, true]), json!([1, 2]), json!(1)),
            "problem.xs",
            &["xs[1] must be a number"],
        );
    }
    assert_rejected(
        problem("lagrange", json!([1, 2, 1]), json!([1, 2, 3]), json!(0.5)),
        "problem.xs",
        &["distinct", "xs[0] = xs[2] = 1"],
    );
    assert_rejected(
        problem(
            "cubic_spline",
            json!([0, 2, 1]),
            json!([1, 2, 3]),
            json!(0.5),
        ),
        "problem.xs",
        &["strictly increasing", "xs[2] = 1"],
    );
    assert!(
        parse_problem(&problem(
            "lagrange",
            json!([2, 0, 1]),
            json!([1, 2, 3]),
            json!(0.5)
        ))
        .is_ok()
    );
    let many: Vec<f64> = (0..101).map(f64::from).collect();
    assert_rejected(
        problem("newton_divided", json!(many), json!(many), json!(1)),
        "problem.xs",
        &["at most 100", "cubic_spline"],
    );
    assert!(parse_problem(&problem("cubic_spline", json!(many), json!(many), json!(1))).is_ok());
}

#[test]
fn errors_serialize_for_the_gateway() {
    let error = rejected(with(bisection(), "tol", json!(0)));
    let body = serde_json::to_value(&error).unwrap();
    assert_eq!(
        body,
        json!({"error": "tol must be greater than 0, not 0", "field": "problem.tol"})
    );
    assert_eq!(
        error.to_string(),
        "problem.tol: tol must be greater than 0, not 0"
    );
}
