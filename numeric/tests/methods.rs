//! Each method's behaviour through the public API: results, iteration counts, tables, warnings,
//! did_not_converge, evaluation errors and the time budget.

use std::time::{Duration, Instant};

use cola_numeric::{Budget, Convergence, Problem, Solution, parse_problem, solve};
use serde_json::{Value, json};

#[track_caller]
fn problem(statement: Value) -> Problem {
    parse_problem(&statement).unwrap_or_else(|e| panic!("{statement} rejected: {e}"))
}

#[track_caller]
fn run(statement: Value) -> Solution {
    solve(&problem(statement), &Budget::unlimited())
}

fn number(value: &Value) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{value} is not a number"))
}

fn numbers(value: &Value) -> Vec<f64> {
    value.as_array().unwrap().iter().map(number).collect()
}

#[track_caller]
fn assert_close(actual: f64, expected: f64, tolerance: f64) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{actual} differs from {expected} by more than {tolerance}"
    );
}

const ROOT: f64 = 1.365_230_013_414_096_8; // of x^3 + 4x^2 - 10

fn bracketed(method: &str) -> Value {
    json!({"method": method, "f": "x^3 + 4*x^2 - 10", "a": 1, "b": 2, "tol": 1e-10, "max_iter": 100})
}

#[test]
fn bisection_halves_the_bracket() {
    let solution = run(bracketed("bisection"));
    assert_eq!(solution.outcome, Convergence::Converged);
    let result = &solution.result;
    assert_close(number(&result["root"]), ROOT, 1e-10);
    assert_eq!(
        result["iterations"], 34,
        "2^-34 is the first half-width below 1e-10"
    );
    assert_eq!(result["converged"], true);
    assert!(number(&result["f_root"]).abs() < 1e-8);
    assert_eq!(
        solution.table.header,
        ["iteration", "a", "b", "midpoint", "f_midpoint", "error"]
    );
    assert_eq!(solution.table.rows.len(), 34);
    assert_eq!(solution.table.rows[0], [1.0, 1.0, 2.0, 1.5, 2.375, 0.5]);
    assert_eq!(
        solution.table.rows[1],
        [
            2.0,
            1.0,
            1.5,
            1.25,
            1.25f64.powi(3) + 4.0 * 1.5625 - 10.0,
            0.25
        ]
    );
    assert_eq!(solution.iterations, Some(34));
}

#[test]
fn bisection_stops_at_double_precision() {
    let solution = run(
        json!({"method": "bisection", "f": "x^2 - 2", "a": 1, "b": 2, "tol": 1e-300, "max_iter": 1000}),
    );
    assert_eq!(solution.outcome, Convergence::Converged);
    assert!(
        solution
            .warnings
            .iter()
            .any(|w| w.contains("double precision")),
        "{:?}",
        solution.warnings
    );
    assert_close(
        number(&solution.result["root"]),
        std::f64::consts::SQRT_2,
        4e-16,
    );
    assert!(solution.iterations.unwrap() < 60);
}

#[test]
fn interpolating_bracket_methods_beat_bisection() {
    for (method, most) in [("regula_falsi", 12), ("brent", 10)] {
        let solution = run(bracketed(method));
        assert_eq!(solution.outcome, Convergence::Converged, "{method}");
        assert_close(number(&solution.result["root"]), ROOT, 1e-10);
        let iterations = solution.result["iterations"].as_u64().unwrap();
        assert!(iterations <= most, "{method} took {iterations} iterations");
        assert_eq!(
            solution.table.header,
            ["iteration", "a", "b", "x", "f_x", "error"]
        );
        assert_eq!(solution.table.rows.len() as u64, iterations);
        for row in &solution.table.rows {
            assert!(
                row[1] <= row[3] && row[3] <= row[2],
                "{method}: x stays in the bracket: {row:?}"
            );
        }
    }
}

#[test]
fn illinois_avoids_regula_falsi_stagnation() {
    // Plain regula falsi keeps one end fixed and needs hundreds of steps on x^10 - 1.
    let solution = run(
        json!({"method": "regula_falsi", "f": "x^10 - 1", "a": 0, "b": 1.3, "tol": 1e-12, "max_iter": 100}),
    );
    assert_eq!(solution.outcome, Convergence::Converged);
    assert_close(number(&solution.result["root"]), 1.0, 1e-12);
    assert!(
        solution.iterations.unwrap() < 40,
        "{:?}",
        solution.iterations
    );
}

#[test]
fn end_point_roots_are_returned() {
    for (a, b, root) in [(1, 3, 1.0), (-3, 1, 1.0)] {
        for method in ["bisection", "regula_falsi", "brent"] {
            let solution = run(
                json!({"method": method, "f": "x^2 - 1", "a": a, "b": b, "tol": 1e-10, "max_iter": 10}),
            );
            assert_eq!(solution.outcome, Convergence::Converged);
            assert_eq!(solution.result["root"], root);
            assert_eq!(solution.result["iterations"], 0);
            assert_eq!(solution.result["f_root"], 0.0);
            assert!(solution.warnings[0].contains("is the root"));
        }
    }
}

#[test]
fn secant_newton_and_fixed_point() {
    let secant = run(
        json!({"method": "secant", "f": "x^3 + 4*x^2 - 10", "x0": 1, "x1": 2, "tol": 1e-12, "max_iter": 50}),
    );
    assert_eq!(
        secant.table.header,
        [
            "iteration",
            "x_previous",
            "x",
            "x_next",
            "f_x_next",
            "error"
        ]
    );
    assert_close(number(&secant.result["root"]), ROOT, 1e-12);

    let symbolic = run(
        json!({"method": "newton", "f": "x^3 + 4*x^2 - 10", "x0": 1.5, "tol": 1e-12, "max_iter": 50}),
    );
    let given = run(
        json!({"method": "newton", "f": "x^3 + 4*x^2 - 10", "df": "3*x^2 + 8*x", "x0": 1.5, "tol": 1e-12, "max_iter": 50}),
    );
    assert_eq!(
        symbolic.result, given.result,
        "the symbolic derivative equals the given one"
    );
    assert_eq!(
        symbolic.table.header,
        ["iteration", "x", "f_x", "df_x", "x_next", "error"]
    );
    assert!(symbolic.iterations.unwrap() <= 6, "quadratic convergence");
    assert_close(number(&symbolic.result["root"]), ROOT, 1e-14);
    // Errors shrink quadratically: each is at most ~ the square of the one before (times a constant).
    let errors: Vec<f64> = symbolic.table.rows.iter().map(|r| r[5]).collect();
    assert!(
        errors
            .windows(2)
            .all(|w| w[1] <= w[0] * w[0] * 10.0 || w[1] < 1e-13),
        "{errors:?}"
    );

    let fixed = run(
        json!({"method": "fixed_point", "g": "cos(x)", "x0": 1, "tol": 1e-12, "max_iter": 200}),
    );
    assert_eq!(fixed.table.header, ["iteration", "x", "g_x", "error"]);
    assert_close(
        number(&fixed.result["root"]),
        0.739_085_133_215_160_6,
        1e-11,
    );
    assert!(
        number(&fixed.result["f_root"]).abs() < 1e-11,
        "f_root is g(root) - root"
    );
}

#[test]
fn running_out_of_iterations_is_did_not_converge_with_table_and_plot() {
    let solution = run(
        json!({"method": "bisection", "f": "x^3 + 4*x^2 - 10", "a": 1, "b": 2, "tol": 1e-10, "max_iter": 5}),
    );
    assert_eq!(solution.outcome, Convergence::DidNotConverge);
    assert_eq!(solution.result["converged"], false);
    assert_eq!(solution.result["iterations"], 5);
    assert_eq!(solution.table.rows.len(), 5);
    assert_eq!(solution.plot.series[0].points.len(), 5);
    assert!(solution.warnings.iter().any(|w| w.contains("max_iter = 5")));
    assert_eq!(solution.convergence()["status"], "did_not_converge");

    let newton_cycle = run(
        json!({"method": "newton", "f": "x^3 - 2*x + 2", "x0": 0, "tol": 1e-10, "max_iter": 40}),
    );
    assert_eq!(newton_cycle.outcome, Convergence::DidNotConverge);
    assert_eq!(newton_cycle.table.rows.len(), 40);

    let jacobi = run(
        json!({"method": "jacobi", "A": [[1, 2], [3, 1]], "b": [1, 1], "tol": 1e-10, "max_iter": 5000}),
    );
    assert_eq!(jacobi.outcome, Convergence::DidNotConverge);
    assert!(
        jacobi
            .warnings
            .iter()
            .any(|w| w.starts_with("matrix is not diagonally dominant")),
        "{:?}",
        jacobi.warnings
    );
    assert!(
        jacobi.warnings.iter().any(|w| w.contains("diverged")),
        "{:?}",
        jacobi.warnings
    );
    assert!(jacobi.result["iterations"].as_u64().unwrap() < 5000);
}

#[test]
fn newton_breaks_down_on_a_zero_derivative() {
    // From x0 = 2, the first step lands on x = 1 where f'(x) = 0.
    let solution =
        run(json!({"method": "newton", "f": "(x-1)^2 + 1", "x0": 2, "tol": 1e-10, "max_iter": 50}));
    assert_eq!(solution.outcome, Convergence::DidNotConverge);
    assert!(
        solution
            .warnings
            .iter()
            .any(|w| w.contains("f'(x) = 0 at x = 1")),
        "{:?}",
        solution.warnings
    );
    assert_eq!(solution.table.rows.len(), 1);
}

#[test]
fn values_that_stop_being_finite_are_evaluation_errors() {
    let diverging = run(
        json!({"method": "fixed_point", "g": "sqrt(x) - 2", "x0": 1, "tol": 1e-10, "max_iter": 50}),
    );
    assert_eq!(
        diverging.outcome,
        Convergence::EvaluationError {
            message: "g is NaN at x = -1".into()
        }
    );
    assert_eq!(diverging.convergence()["message"], "g is NaN at x = -1");
    assert_eq!(
        diverging.table.rows.len(),
        1,
        "the rows before the failure are kept"
    );

    let node = run(json!({"method": "trapezoid", "f": "1/(x - 0.25)", "a": 0, "b": 1, "n": 4}));
    assert_eq!(
        node.outcome,
        Convergence::EvaluationError {
            message: "f is inf at x = 0.25".into()
        }
    );

    let blow_up =
        run(json!({"method": "rk4", "f": "y^2", "t0": 0, "y0": 1, "t_end": 2, "h": 0.01}));
    match &blow_up.outcome {
        Convergence::EvaluationError { message } => {
            assert!(message.contains("at t = "), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        blow_up.result["t"].as_array().unwrap().len() > 90,
        "the trajectory up to the blow-up is kept"
    );
}

#[test]
fn an_expired_budget_ends_a_huge_job_at_once() {
    let expired = Budget::until(Instant::now() - Duration::from_millis(1));
    let huge = [
        json!({"method": "fixed_point", "g": "x + 1", "x0": 0, "tol": 1e-10, "max_iter": 1_000_000}),
        json!({"method": "jacobi", "A": [[1, 2], [3, 1]], "b": [1, 1], "tol": 1e-10, "max_iter": 1_000_000}),
        json!({"method": "romberg", "f": "sqrt(x)", "a": 0, "b": 1, "tol": 1e-300, "max_iter": 25}),
        json!({"method": "trapezoid", "f": "sin(x)", "a": 0, "b": 1, "n": 1_000_000}),
        json!({"method": "euler", "f": "-y", "t0": 0, "y0": 1, "t_end": 1, "h": 1e-5}),
        json!({"method": "rk45", "f": "-y", "t0": 0, "y0": 1, "t_end": 1000, "tol": 1e-12}),
        json!({"method": "gauss", "A": [[2, 1], [1, 3]], "b": [1, 2]}),
        json!({"method": "gauss_legendre", "f": "x", "a": 0, "b": 1, "n": 100}),
        json!({"method": "cubic_spline", "xs": [0, 1, 2], "ys": [0, 1, 0], "at": vec![0.5; 10_000]}),
    ];
    for statement in huge {
        let problem = problem(statement.clone());
        let started = Instant::now();
        let solution = solve(&problem, &expired);
        assert_eq!(solution.outcome, Convergence::OutOfTime, "{statement}");
        assert_eq!(solution.convergence()["status"], "out_of_time");
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "{statement} took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_running_budget_interrupts_a_long_iteration() {
    let problem = problem(
        json!({"method": "fixed_point", "g": "x + 1", "x0": 0, "tol": 1e-10, "max_iter": 1_000_000}),
    );
    let started = Instant::now();
    let solution = solve(&problem, &Budget::new(Duration::from_millis(20)));
    let elapsed = started.elapsed();
    assert_eq!(solution.outcome, Convergence::OutOfTime);
    assert!(solution.iterations.unwrap() > 0);
    assert!(
        elapsed >= Duration::from_millis(20) && elapsed < Duration::from_millis(500),
        "{elapsed:?}"
    );
    assert!(solution.table.rows.len() <= 2_000, "tables stay bounded");

    let romberg = parse_problem(&json!({"method": "romberg", "f": "sqrt(x)*sin(1/(x + 0.001))", "a": 0, "b": 1, "tol": 1e-300, "max_iter": 25})).unwrap();
    let started = Instant::now();
    let solution = solve(&romberg, &Budget::new(Duration::from_millis(30)));
    assert_eq!(solution.outcome, Convergence::OutOfTime);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn direct_linear_solvers() {
    for method in ["gauss", "lu"] {
        let solution = run(
            json!({"method": method, "A": [[2, 1, -1], [-3, -1, 2], [-2, 1, 2]], "b": [8, -11, -3]}),
        );
        assert_eq!(solution.outcome, Convergence::Converged);
        let x = numbers(&solution.result["x"]);
        for (actual, expected) in x.iter().zip([2.0, 3.0, -1.0]) {
            assert_close(*actual, expected, 1e-14);
        }
        assert!(number(&solution.result["residual_norm"]) < 1e-13);
        assert!(solution.result.get("iterations").is_none());
        assert!(solution.warnings.is_empty(), "{:?}", solution.warnings);
    }
    let gauss = run(
        json!({"method": "gauss", "A": [[2, 1, -1], [-3, -1, 2], [-2, 1, 2]], "b": [8, -11, -3]}),
    );
    assert_eq!(
        gauss.table.header,
        ["step", "pivot_row", "pivot", "largest_multiplier"]
    );
    assert_eq!(
        gauss.table.rows[0],
        [1.0, 2.0, -3.0, 2.0 / 3.0],
        "row 2 has the largest pivot"
    );
    let lu = run(json!({"method": "lu", "A": [[0, 2], [1, 1]], "b": [2, 2]}));
    assert_eq!(lu.table.header, ["row", "p", "l1", "l2", "u1", "u2"]);
    assert_eq!(
        lu.table.rows,
        [
            vec![1.0, 2.0, 1.0, 0.0, 1.0, 1.0],
            vec![2.0, 1.0, 0.0, 1.0, 0.0, 2.0]
        ]
    );
    assert_eq!(numbers(&lu.result["x"]), [1.0, 1.0]);

    let hilbert: Vec<Vec<f64>> = (0..8)
        .map(|i| (0..8).map(|j| 1.0 / (i + j + 1) as f64).collect())
        .collect();
    let ill = run(json!({"method": "gauss", "A": hilbert, "b": vec![1.0; 8]}));
    assert!(
        ill.warnings
            .iter()
            .any(|w| w.contains("ill-conditioned") && w.contains("3.4e10")),
        "{:?}",
        ill.warnings
    );
}

#[test]
fn iterative_linear_solvers() {
    let statement = |method: &str| {
        json!({
            "method": method,
            "A": [[10, -1, 2, 0], [-1, 11, -1, 3], [2, -1, 10, -1], [0, 3, -1, 8]],
            "b": [6, 25, -11, 15],
            "tol": 1e-12,
            "max_iter": 500
        })
    };
    let jacobi = run(statement("jacobi"));
    let seidel = run(statement("gauss_seidel"));
    for solution in [&jacobi, &seidel] {
        assert_eq!(solution.outcome, Convergence::Converged);
        for (actual, expected) in numbers(&solution.result["x"])
            .iter()
            .zip([1.0, 2.0, -1.0, 1.0])
        {
            assert_close(*actual, expected, 1e-11);
        }
        assert!(solution.warnings.is_empty(), "{:?}", solution.warnings);
        assert_eq!(
            solution.table.header,
            ["iteration", "x1", "x2", "x3", "x4", "error"]
        );
    }
    let (j, s) = (jacobi.iterations.unwrap(), seidel.iterations.unwrap());
    assert!(
        s < j,
        "Gauss–Seidel ({s}) needs fewer iterations than Jacobi ({j})"
    );
    assert_eq!(jacobi.result["iterations"], j);

    let started = run(
        json!({"method": "gauss_seidel", "A": [[4, 1], [1, 3]], "b": [1, 2], "x0": [0.0909090909, 0.6363636364], "tol": 1e-6, "max_iter": 100}),
    );
    assert!(
        started.iterations.unwrap() <= 2,
        "x0 close to the solution converges at once"
    );

    let not_dominant = run(
        json!({"method": "gauss_seidel", "A": [[1, 2], [2, 5]], "b": [1, 2], "tol": 1e-10, "max_iter": 1000}),
    );
    assert_eq!(
        not_dominant.outcome,
        Convergence::Converged,
        "symmetric positive definite: converges anyway"
    );
    assert_eq!(
        not_dominant.warnings,
        ["matrix is not diagonally dominant: the iteration may not converge"]
    );
}

#[test]
fn composite_rules_and_their_error_estimates() {
    let trapezoid = run(json!({"method": "trapezoid", "f": "x^2", "a": 0, "b": 1, "n": 4}));
    assert_eq!(trapezoid.result["value"], 0.34375);
    // Richardson: |T4 - T2| / 3 = |0.34375 - 0.375| / 3 is exactly the error for x².
    assert_close(
        number(&trapezoid.result["error_estimate"]),
        0.34375 - 1.0 / 3.0,
        1e-15,
    );
    assert_eq!(trapezoid.table.header, ["i", "x", "f_x", "weight"]);
    assert_eq!(trapezoid.table.rows.len(), 5);
    let odd = run(json!({"method": "trapezoid", "f": "x^2", "a": 0, "b": 1, "n": 3}));
    assert!(odd.result.get("error_estimate").is_none());

    let simpson = run(json!({"method": "simpson", "f": "x^3 - x", "a": -1, "b": 2, "n": 2}));
    assert_close(number(&simpson.result["value"]), 2.25, 1e-14);
    let simpson = run(json!({"method": "simpson", "f": "exp(x)", "a": 0, "b": 1, "n": 8}));
    let error = (number(&simpson.result["value"]) - (std::f64::consts::E - 1.0)).abs();
    let estimate = number(&simpson.result["error_estimate"]);
    assert!(
        error <= estimate * 1.2 && error >= estimate * 0.8,
        "error {error} vs estimate {estimate}"
    );
}

#[test]
fn romberg_and_gauss_legendre() {
    let romberg = run(
        json!({"method": "romberg", "f": "exp(-x^2)", "a": 0, "b": 1, "tol": 1e-12, "max_iter": 20}),
    );
    assert_eq!(romberg.outcome, Convergence::Converged);
    assert_close(
        number(&romberg.result["value"]),
        0.746_824_132_812_427,
        1e-13,
    );
    assert!(number(&romberg.result["error_estimate"]) <= 1e-12);
    assert_eq!(
        romberg.table.header,
        ["level", "intervals", "trapezoid", "extrapolated", "error"]
    );
    assert!(romberg.iterations.unwrap() >= 3 && romberg.iterations.unwrap() <= 8);
    // It does not stop early on an integrand that vanishes at the first nodes.
    let vanishing = run(
        json!({"method": "romberg", "f": "sin(4*x)^2", "a": 0, "b": "pi", "tol": 1e-10, "max_iter": 20}),
    );
    assert_close(
        number(&vanishing.result["value"]),
        std::f64::consts::FRAC_PI_2,
        1e-10,
    );
    let short = run(
        json!({"method": "romberg", "f": "sqrt(x)", "a": 0, "b": 1, "tol": 1e-14, "max_iter": 4}),
    );
    assert_eq!(short.outcome, Convergence::DidNotConverge);

    let gauss =
        run(json!({"method": "gauss_legendre", "f": "x^7 - 2*x^3", "a": 0, "b": 2, "n": 4}));
    assert_close(number(&gauss.result["value"]), 32.0 - 8.0, 1e-12);
    assert_eq!(gauss.table.header, ["i", "node", "weight", "f_node"]);
    assert_eq!(gauss.table.rows.len(), 4);
    let singular_end =
        run(json!({"method": "gauss_legendre", "f": "1/sqrt(x)", "a": 0, "b": 1, "n": 100}));
    assert_close(number(&singular_end.result["value"]), 2.0, 0.02);
}

#[test]
fn fixed_step_odes() {
    let exact = |t: f64| (t + 1.0).powi(2) - 0.5 * t.exp();
    let mut errors = Vec::new();
    for method in ["euler", "heun", "rk4"] {
        let solution = run(
            json!({"method": method, "f": "y - t^2 + 1", "t0": 0, "y0": 0.5, "t_end": 2, "h": 0.1}),
        );
        assert_eq!(solution.outcome, Convergence::Converged);
        let t = numbers(&solution.result["t"]);
        let y = numbers(&solution.result["y"]);
        assert_eq!(t.len(), 21);
        assert_eq!(y.len(), 21);
        assert_eq!((t[0], *t.last().unwrap()), (0.0, 2.0));
        assert_eq!(solution.result["y_end"], *y.last().unwrap());
        assert_eq!(solution.table.header, ["step", "t", "y"]);
        assert_eq!(solution.iterations, Some(20));
        errors.push((y.last().unwrap() - exact(2.0)).abs());
    }
    assert!(
        errors[0] > 0.1 && errors[1] < 0.05 && errors[2] < 1e-4,
        "{errors:?}"
    );

    let uneven = run(json!({"method": "euler", "f": "1", "t0": 0, "y0": 0, "t_end": 1, "h": 0.3}));
    let t = numbers(&uneven.result["t"]);
    assert_eq!(t.len(), 5);
    for (actual, expected) in t.iter().zip([0.0, 0.3, 0.6, 0.9, 1.0]) {
        assert_close(*actual, expected, 1e-15);
    }
    assert_eq!(t[4], 1.0, "the last, shorter step ends exactly at t_end");
    assert_close(number(&uneven.result["y_end"]), 1.0, 1e-15);
}

#[test]
fn systems_use_y1_to_yn() {
    let solution = run(
        json!({"method": "rk4", "f": ["y2", "-y1"], "t0": 0, "y0": [0, 1], "t_end": "pi/2", "h": 0.01}),
    );
    let y_end = numbers(&solution.result["y_end"]);
    assert_close(y_end[0], 1.0, 1e-9);
    assert_close(y_end[1], 0.0, 1e-9);
    assert_eq!(solution.table.header, ["step", "t", "y1", "y2"]);
    assert_eq!(solution.result["y"][0], json!([0.0, 1.0]));
    assert_eq!(solution.plot.series.len(), 2);
}

#[test]
fn adaptive_rk45() {
    let solution =
        run(json!({"method": "rk45", "f": "-2*t*y", "t0": 0, "y0": 1, "t_end": 2, "tol": 1e-10}));
    assert_eq!(solution.outcome, Convergence::Converged);
    assert_close(number(&solution.result["y_end"]), (-4.0f64).exp(), 1e-9);
    assert_eq!(
        solution.table.header,
        ["step", "t", "h", "y", "error_estimate"]
    );
    let t = numbers(&solution.result["t"]);
    assert_eq!(*t.last().unwrap(), 2.0);
    let steps: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    let (smallest, largest) = steps
        .iter()
        .fold((f64::MAX, 0.0f64), |(s, l), h| (s.min(*h), l.max(*h)));
    assert!(
        largest > 2.0 * smallest,
        "the step adapts: {smallest} .. {largest}"
    );
    for row in &solution.table.rows[1..] {
        assert!(row[4] <= 1.0, "accepted steps meet the tolerance: {row:?}");
    }

    let loose =
        run(json!({"method": "rk45", "f": "-2*t*y", "t0": 0, "y0": 1, "t_end": 2, "tol": 1e-4}));
    assert!(
        loose.iterations.unwrap() < solution.iterations.unwrap() / 3,
        "a looser tol takes fewer steps"
    );

    let singular =
        run(json!({"method": "rk45", "f": "y^2", "t0": 0, "y0": 1, "t_end": 2, "tol": 1e-8}));
    assert_ne!(
        singular.outcome,
        Convergence::Converged,
        "y = 1/(1 - t) blows up at t = 1"
    );
    let t_last = *numbers(&singular.result["t"]).last().unwrap();
    assert!(
        (t_last - 1.0).abs() < 1e-6,
        "stopped at the singularity: {t_last}"
    );
    assert!(
        singular.warnings.iter().any(|w| w.contains("singularity")),
        "{:?}",
        singular.warnings
    );
}

#[test]
fn interpolation_methods() {
    // A cubic is reproduced exactly by the polynomial methods through 4 of its points.
    let cubic = |x: f64| 2.0 * x.powi(3) - x + 1.0;
    let xs = [-1.0, 0.5, 2.0, 3.0];
    let ys: Vec<f64> = xs.iter().map(|x| cubic(*x)).collect();
    let at = [-0.5, 1.0, 2.5, 4.0];
    for method in ["lagrange", "newton_divided"] {
        let solution = run(json!({"method": method, "xs": xs, "ys": ys, "at": at}));
        for (value, x) in numbers(&solution.result["values"]).iter().zip(at) {
            assert_close(*value, cubic(x), 1e-12);
        }
        assert!(
            solution.warnings[0].contains("extrapolating")
                && solution.warnings[0].contains("x = 4")
        );
    }
    let newton = run(json!({"method": "newton_divided", "xs": xs, "ys": ys, "at": 1}));
    assert_eq!(newton.table.header, ["i", "x", "y", "coefficient"]);
    assert_close(newton.table.rows[3][3], 2.0, 1e-12);
    assert_eq!(
        newton.result["values"],
        json!([cubic(1.0)]),
        "a number for at gives one value"
    );

    let lagrange = run(json!({"method": "lagrange", "xs": xs, "ys": ys, "at": [0.5]}));
    assert_eq!(lagrange.result["values"], json!([ys[1]]), "exact at a node");

    // Natural spline through collinear points is the line; its pieces' second derivatives vanish.
    let spline = run(
        json!({"method": "cubic_spline", "xs": [0, 1, 3, 4], "ys": [1, 3, 7, 9], "at": [0.5, 2, 3.5]}),
    );
    for (value, x) in numbers(&spline.result["values"])
        .iter()
        .zip([0.5, 2.0, 3.5])
    {
        assert_close(*value, 1.0 + 2.0 * x, 1e-14);
    }
    assert_eq!(
        spline.table.header,
        ["interval", "x_left", "x_right", "a", "b", "c", "d"]
    );
    assert_eq!(spline.table.rows.len(), 3);
    assert!(spline.warnings.is_empty());
    // Through (0,0), (1,1), (2,0): M1 = -3, so S(0.5) = 0.6875.
    let bump =
        run(json!({"method": "cubic_spline", "xs": [0, 1, 2], "ys": [0, 1, 0], "at": [0.5, 1.5]}));
    assert_eq!(numbers(&bump.result["values"]), [0.6875, 0.6875]);
}

#[test]
fn problems_move_between_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Problem>();
    assert_send_sync::<Solution>();
    let problem = problem(bracketed("brent"));
    let solution = std::thread::spawn(move || solve(&problem, &Budget::unlimited()))
        .join()
        .unwrap();
    assert_eq!(solution.outcome, Convergence::Converged);
}

#[test]
fn validation_and_solving_fit_a_small_thread_stack() {
    // Gateways validate on async worker threads (2 MiB stacks); half of that must do, even in
    // debug builds, for the deepest and longest expressions and a symbolic derivative.
    let deep = format!("{}x{}", "sin(".repeat(60), ")".repeat(60));
    let long = vec!["x^2"; 160].join(" + ");
    assert!(long.len() <= 1000);
    let handle = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || {
            for f in [deep, long, "x^3 + 4*x^2 - 10".to_string()] {
                let problem = parse_problem(
                    &json!({"method": "newton", "f": f, "x0": 0.5, "tol": 1e-10, "max_iter": 50}),
                )
                .unwrap();
                solve(&problem, &Budget::unlimited());
            }
        })
        .unwrap();
    handle.join().unwrap();
}
