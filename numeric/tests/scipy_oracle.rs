//! Accuracy against SciPy/NumPy as the oracle.
//!
//! Builds a battery of problems (several per method, including hard ones: multiple roots, steep
//! functions, an ill-conditioned Hilbert matrix, a stiff-ish ODE), has `tests/scipy_oracle.py`
//! compute reference answers with SciPy/NumPy, and compares:
//! roots to 1e-10; linear systems to 1e-9 relative; integrals within the method's error bound
//! (and, where the method estimates its error, within twice that estimate); rk45 at t_end to
//! 1e-6 relative; the fixed-step ODE methods within their error bound and with their order of
//! convergence; interpolants to 1e-10.
//!
//! Needs `python3` with SciPy and NumPy (`python3 -m pip install scipy numpy`): without them
//! this test fails, it does not skip.

use std::io::Write;
use std::process::{Command, Stdio};

use cola_numeric::{Budget, Convergence, Solution, parse_problem, solve};
use serde_json::{Value, json};

enum Check {
    /// |root − reference| ≤ 1e-10·max(1, |reference|).
    Root,
    /// ‖x − reference‖∞ ≤ 1e-9·‖reference‖∞.
    Linear,
    /// |value − reference| ≤ bound (the method's error bound); and when the method reports an
    /// error estimate, the error is at most twice the estimate (plus rounding).
    Integral { bound: f64 },
    /// ‖y_end − reference‖∞ ≤ 1e-6·‖reference‖∞.
    AdaptiveOde,
    /// ‖y_end − reference‖∞ ≤ bound.
    FixedStepOde { bound: f64 },
    /// |value − reference| ≤ 1e-10·max(1, |reference|) at every point.
    Values,
}

struct Case {
    id: String,
    problem: Value,
    reference: Value,
    check: Check,
}

fn case(id: impl Into<String>, problem: Value, mut reference: Value, check: Check) -> Case {
    let id = id.into();
    reference["id"] = json!(id);
    Case {
        id,
        problem,
        reference,
        check,
    }
}

const ROOT_TOL: f64 = 1e-12;

fn bracketed_roots(cases: &mut Vec<Case>) {
    let problems = [
        ("x^3 + 4*x^2 - 10", 1.0, 2.0),
        ("(x-1)^3", 0.0, 3.0),                // triple root
        ("(x-1)^5*(x+3)", 0.0, 2.5),          // root of multiplicity 5
        ("tanh(200*(x - 0.123))", -1.0, 1.0), // steep
        ("exp(30*x) - 1e6", 0.0, 1.0),        // steep and badly scaled
        ("x^10 - 1", 0.0, 1.3),               // slow for plain regula falsi
        ("cos(x) - x", 0.0, 1.0),
    ];
    for method in ["bisection", "regula_falsi", "brent"] {
        for (f, a, b) in problems {
            cases.push(case(
                format!("{method}: {f} on [{a}, {b}]"),
                json!({"method": method, "f": f, "a": a, "b": b, "tol": ROOT_TOL, "max_iter": 1000}),
                json!({"kind": "root", "f": f, "bracket": [a, b]}),
                Check::Root,
            ));
        }
    }
}

fn open_roots(cases: &mut Vec<Case>) {
    let secant = [
        ("x^3 + 4*x^2 - 10", 1.0, 2.0, [1.0, 2.0]),
        ("cos(x) - x", 0.0, 1.0, [0.0, 1.0]),
        ("exp(-x) - x", 2.0, 3.0, [0.0, 1.0]),
        ("x^2 - 612", 10.0, 30.0, [10.0, 30.0]),
    ];
    for (f, x0, x1, bracket) in secant {
        cases.push(case(
            format!("secant: {f} from {x0}, {x1}"),
            json!({"method": "secant", "f": f, "x0": x0, "x1": x1, "tol": ROOT_TOL, "max_iter": 200}),
            json!({"kind": "root", "f": f, "bracket": bracket}),
            Check::Root,
        ));
    }
    let newton = [
        ("x^3 + 4*x^2 - 10", None, 1.5, json!({"bracket": [1, 2]})),
        (
            "x - cos(x)",
            Some("1 + sin(x)"),
            1.0,
            json!({"bracket": [0, 1]}),
        ),
        ("sin(x) - x/2", None, 2.0, json!({"bracket": [1.5, 2.5]})),
        (
            "(x-2)^2",
            None,
            3.0,
            json!({"x0": 3.0, "fprime": "2*(x-2)"}),
        ), // double root
        ("exp(x) - 5*x^2", None, 4.0, json!({"bracket": [3, 5]})),
    ];
    for (f, df, x0, reference) in newton {
        let mut problem =
            json!({"method": "newton", "f": f, "x0": x0, "tol": ROOT_TOL, "max_iter": 200});
        if let Some(df) = df {
            problem["df"] = json!(df);
        }
        let mut reference = reference;
        reference["kind"] = json!("root");
        reference["f"] = json!(f);
        cases.push(case(
            format!("newton: {f} from {x0}"),
            problem,
            reference,
            Check::Root,
        ));
    }
    let fixed_point = [
        ("cos(x)", 1.0, "cos(x) - x", [0.0, 1.0]),
        ("exp(-x)", 0.5, "exp(-x) - x", [0.0, 1.0]),
        ("sqrt(x + 2)", 0.0, "sqrt(x + 2) - x", [0.0, 3.0]),
    ];
    for (g, x0, f, bracket) in fixed_point {
        cases.push(case(
            format!("fixed_point: x = {g} from {x0}"),
            json!({"method": "fixed_point", "g": g, "x0": x0, "tol": 1e-14, "max_iter": 1000}),
            json!({"kind": "root", "f": f, "bracket": bracket}),
            Check::Root,
        ));
    }
}

fn hilbert(n: usize) -> Vec<Vec<f64>> {
    (0..n)
        .map(|i| (0..n).map(|j| 1.0 / (i + j + 1) as f64).collect())
        .collect()
}

fn linear_systems(cases: &mut Vec<Case>) {
    let hilbert6 = hilbert(6);
    let hilbert_b: Vec<f64> = hilbert6.iter().map(|row| row.iter().sum()).collect();
    let direct = [
        (
            "3x3",
            json!([[2, 1, -1], [-3, -1, 2], [-2, 1, 2]]),
            json!([8, -11, -3]),
        ),
        (
            "needs pivoting",
            json!([[0, 2, 1], [1, 1, 1], [2, 1, 0]]),
            json!([3, 6, 5]),
        ),
        (
            "Hilbert 6x6 (ill-conditioned)",
            json!(hilbert6),
            json!(hilbert_b),
        ),
        (
            "5x5",
            json!([
                [4, -2, 1, 3, 0],
                [3, 6, -4, 2, 1],
                [2, 1, 8, -5, 2],
                [1, 3, -2, 7, -1],
                [0, 2, 1, -3, 9]
            ]),
            json!([1, -2, 3, -4, 5]),
        ),
    ];
    for method in ["gauss", "lu"] {
        for (name, a, b) in &direct {
            cases.push(case(
                format!("{method}: {name}"),
                json!({"method": method, "A": a, "b": b}),
                json!({"kind": "linear", "A": a, "b": b}),
                Check::Linear,
            ));
        }
    }
    let n: usize = 12;
    let tridiagonal: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| match i.abs_diff(j) {
                    0 => 4.0,
                    1 => -1.0,
                    _ => 0.0,
                })
                .collect()
        })
        .collect();
    let tridiagonal_b: Vec<f64> = (0..n).map(|i| (i as f64 + 1.0).sin()).collect();
    let iterative = [
        (
            "4x4 diagonally dominant",
            json!([
                [10, -1, 2, 0],
                [-1, 11, -1, 3],
                [2, -1, 10, -1],
                [0, 3, -1, 8]
            ]),
            json!([6, 25, -11, 15]),
        ),
        (
            "12x12 tridiagonal",
            json!(tridiagonal),
            json!(tridiagonal_b),
        ),
    ];
    for method in ["jacobi", "gauss_seidel"] {
        for (name, a, b) in &iterative {
            cases.push(case(
                format!("{method}: {name}"),
                json!({"method": method, "A": a, "b": b, "tol": 1e-14, "max_iter": 5000}),
                json!({"kind": "linear", "A": a, "b": b}),
                Check::Linear,
            ));
        }
    }
}

fn factorial(n: u32) -> f64 {
    (1..=n).map(f64::from).product()
}

fn integrals(cases: &mut Vec<Case>) {
    // (f, a, b, max |f''|, max |f''''|) on [a, b].
    let smooth = [
        ("exp(x)", 0.0, 1.0, std::f64::consts::E, std::f64::consts::E),
        ("sin(x)", 0.0, std::f64::consts::PI, 1.0, 1.0),
        ("1/(1 + 25*x^2)", -1.0, 1.0, 50.0, 15_000.0), // Runge's function: steep
    ];
    for (f, a, b, second, fourth) in smooth {
        for n in [64u32, 1000] {
            let h = (b - a) / f64::from(n);
            cases.push(case(
                format!("trapezoid: {f} on [{a}, {b}], n = {n}"),
                json!({"method": "trapezoid", "f": f, "a": a, "b": b, "n": n}),
                json!({"kind": "integral", "f": f, "a": a, "b": b}),
                Check::Integral {
                    bound: (b - a) * h * h * second / 12.0,
                },
            ));
            cases.push(case(
                format!("simpson: {f} on [{a}, {b}], n = {n}"),
                json!({"method": "simpson", "f": f, "a": a, "b": b, "n": n}),
                json!({"kind": "integral", "f": f, "a": a, "b": b}),
                Check::Integral {
                    bound: (b - a) * h.powi(4) * fourth / 180.0 + 1e-15,
                },
            ));
        }
    }
    for (f, a, b, tol) in [
        ("exp(-x^2)", 0.0, 1.0, 1e-11),
        ("1/(1 + 25*x^2)", -1.0, 1.0, 1e-10),
        ("x*sin(10*x)", 0.0, 2.0, 1e-10),
    ] {
        cases.push(case(
            format!("romberg: {f} on [{a}, {b}]"),
            json!({"method": "romberg", "f": f, "a": a, "b": b, "tol": tol, "max_iter": 25}),
            json!({"kind": "integral", "f": f, "a": a, "b": b}),
            Check::Integral { bound: 10.0 * tol },
        ));
    }
    // Gauss–Legendre: error = (b−a)^(2n+1)(n!)⁴ / ((2n+1)((2n)!)³) · f^(2n)(ξ).
    let gauss_bound = |n: u32, width: f64, derivative_bound: f64| {
        width.powi(2 * n as i32 + 1) * factorial(n).powi(4)
            / ((2 * n + 1) as f64 * factorial(2 * n).powi(3))
            * derivative_bound
    };
    for (f, a, b, n, bound) in [
        (
            "exp(x)",
            0.0,
            1.0,
            5,
            gauss_bound(5, 1.0, std::f64::consts::E) + 1e-15,
        ),
        ("x^9 - 3*x^4 + 2", -1.0, 2.0, 5, 1e-12), // degree 9 = 2n − 1: exact
        ("cos(x)", 0.0, 2.0, 8, gauss_bound(8, 2.0, 1.0) + 1e-15),
        // Runge's function: the error decays like ρ^(−2n), ρ = 0.2 + √1.04.
        (
            "1/(1 + 25*x^2)",
            -1.0,
            1.0,
            64,
            10.0 * (0.2f64 + 1.04f64.sqrt()).powi(-128),
        ),
        // An integrable end-point singularity, never evaluated at the end: error O(n^(−1.5)).
        ("sqrt(x)", 0.0, 1.0, 20, 2e-4),
    ] {
        cases.push(case(
            format!("gauss_legendre: {f} on [{a}, {b}], n = {n}"),
            json!({"method": "gauss_legendre", "f": f, "a": a, "b": b, "n": n}),
            json!({"kind": "integral", "f": f, "a": a, "b": b}),
            Check::Integral { bound },
        ));
    }
}

/// (name, f, t0, y0, t_end) for the ODE cases.
fn ode_problems() -> Vec<(&'static str, Value, f64, Value, f64)> {
    vec![
        ("decay y' = -2ty", json!("-2*t*y"), 0.0, json!(1.0), 2.0),
        (
            "y' = y - t^2 + 1",
            json!("y - t^2 + 1"),
            0.0,
            json!(0.5),
            2.0,
        ),
        (
            "harmonic oscillator",
            json!(["y2", "-y1"]),
            0.0,
            json!([0.0, 1.0]),
            10.0,
        ),
        (
            "Lotka–Volterra",
            json!(["1.5*y1 - y1*y2", "-3*y2 + y1*y2"]),
            0.0,
            json!([10.0, 5.0]),
            5.0,
        ),
        (
            "van der Pol, mu = 1",
            json!(["y2", "(1 - y1^2)*y2 - y1"]),
            0.0,
            json!([2.0, 0.0]),
            5.0,
        ),
        (
            "stiff-ish y' = -50(y - cos t)",
            json!("-50*(y - cos(t))"),
            0.0,
            json!(0.0),
            1.0,
        ),
    ]
}

fn odes(cases: &mut Vec<Case>) {
    for (name, f, t0, y0, t_end) in ode_problems() {
        let reference = json!({"kind": "ode", "f": f, "t0": t0, "y0": y0, "t_end": t_end});
        cases.push(case(
            format!("rk45: {name}"),
            json!({"method": "rk45", "f": f, "t0": t0, "y0": y0, "t_end": t_end, "tol": 1e-9}),
            reference,
            Check::AdaptiveOde,
        ));
    }
    // Fixed steps on the smooth scalar problem and the oscillator, at h and h/2 (for the order).
    for (method, h, bound) in [
        ("euler", 0.01, 0.1),
        ("heun", 0.01, 1e-3),
        ("rk4", 0.01, 1e-8),
        ("rk4", 0.05, 1e-5),
    ] {
        for (name, f, t0, y0, t_end) in ode_problems()
            .into_iter()
            .filter(|p| p.0.starts_with("y'") || p.0.starts_with("harmonic"))
        {
            for step in [h, h / 2.0] {
                cases.push(case(
                    fixed_step_id(method, name, step),
                    json!({"method": method, "f": f, "t0": t0, "y0": y0, "t_end": t_end, "h": step}),
                    json!({"kind": "ode", "f": f, "t0": t0, "y0": y0, "t_end": t_end}),
                    Check::FixedStepOde { bound },
                ));
            }
        }
    }
}

fn fixed_step_id(method: &str, problem: &str, h: f64) -> String {
    format!("{method}: {problem}, h = {h}")
}

fn interpolations(cases: &mut Vec<Case>) {
    let runge = |x: f64| 1.0 / (1.0 + 25.0 * x * x);
    let chebyshev: Vec<f64> = (0..15)
        .map(|k| -(std::f64::consts::PI * (2.0 * k as f64 + 1.0) / 30.0).cos())
        .collect();
    let sample_at: Vec<f64> = (0..41).map(|i| -1.0 + i as f64 * 0.05).collect();
    let polynomial_sets = [
        (
            "exp at 5 equispaced points",
            vec![0.0, 0.5, 1.0, 1.5, 2.0],
            f64::exp as fn(f64) -> f64,
            vec![0.25, 0.75, 1.2, 1.9, 2.2],
        ),
        (
            "Runge at 15 Chebyshev points",
            chebyshev,
            runge,
            sample_at.clone(),
        ),
        (
            "cubic through 4 points",
            vec![-1.0, 0.0, 2.0, 3.0],
            |x: f64| x * x * x - 2.0 * x + 1.0,
            vec![-0.5, 1.0, 2.5],
        ),
    ];
    for method in ["lagrange", "newton_divided"] {
        for (name, xs, f, at) in &polynomial_sets {
            let ys: Vec<f64> = xs.iter().map(|x| f(*x)).collect();
            cases.push(case(
                format!("{method}: {name}"),
                json!({"method": method, "xs": xs, "ys": ys, "at": at}),
                json!({"kind": "interpolation", "method": method, "xs": xs, "ys": ys, "at": at}),
                Check::Values,
            ));
        }
    }
    let uniform: Vec<f64> = (0..=10).map(f64::from).collect();
    let spline_sets = [
        (
            "sin at 0..10",
            uniform.clone(),
            uniform.iter().map(|x| x.sin()).collect::<Vec<_>>(),
            vec![-0.5, 0.3, 2.5, 7.77, 9.99, 10.5],
        ),
        (
            "uneven nodes",
            vec![0.0, 0.3, 1.1, 2.0, 3.7, 4.0],
            vec![1.0, -0.5, 2.0, 0.0, 3.5, 3.0],
            vec![0.1, 0.7, 1.5, 2.9, 3.8],
        ),
        (
            "two points",
            vec![1.0, 3.0],
            vec![2.0, -2.0],
            vec![0.0, 2.0, 2.5],
        ),
        (
            "Runge at 21 points",
            (0..21).map(|i| -1.0 + i as f64 * 0.1).collect(),
            (0..21).map(|i| runge(-1.0 + i as f64 * 0.1)).collect(),
            sample_at,
        ),
    ];
    for (name, xs, ys, at) in spline_sets {
        cases.push(case(
            format!("cubic_spline: {name}"),
            json!({"method": "cubic_spline", "xs": xs, "ys": ys, "at": at}),
            json!({"kind": "interpolation", "method": "cubic_spline", "xs": xs, "ys": ys, "at": at}),
            Check::Values,
        ));
    }
}

/// Runs the oracle script on the battery's reference requests.
fn scipy_reference(cases: &[Case]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scipy_oracle.py");
    let battery = json!({ "cases": cases.iter().map(|c| &c.reference).collect::<Vec<_>>() });
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("the SciPy oracle needs python3 ({e}): install python3, then `python3 -m pip install scipy numpy`")
        });
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(battery.to_string().as_bytes())
        .expect("writing the battery to the oracle");
    let output = child.wait_with_output().expect("waiting for the oracle");
    assert!(
        output.status.success(),
        "the SciPy oracle failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the oracle writes JSON")
}

fn numbers(value: &Value) -> Vec<f64> {
    match value {
        Value::Array(items) => items.iter().flat_map(numbers).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("expected numbers, got {other}"),
    }
}

fn max_abs(values: &[f64]) -> f64 {
    values.iter().fold(0.0, |m, v| m.max(v.abs()))
}

fn max_difference(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

/// Compares one solution with its reference: (error, allowed) or a description of the failure.
fn compare(case: &Case, solution: &Solution, reference: &Value) -> Result<(f64, f64), String> {
    if solution.outcome != Convergence::Converged {
        return Err(format!(
            "did not converge: {:?} {:?}",
            solution.outcome, solution.warnings
        ));
    }
    let result = &solution.result;
    let expected = numbers(reference);
    match case.check {
        Check::Root => {
            let error = (result["root"].as_f64().unwrap() - expected[0]).abs();
            Ok((error, 1e-10 * expected[0].abs().max(1.0)))
        }
        Check::Linear => {
            let x = numbers(&result["x"]);
            Ok((max_difference(&x, &expected) / max_abs(&expected), 1e-9))
        }
        Check::Integral { bound } => {
            let error = (result["value"].as_f64().unwrap() - expected[0]).abs();
            if let Some(estimate) = result.get("error_estimate").and_then(Value::as_f64)
                && error > 2.0 * estimate + 64.0 * f64::EPSILON * expected[0].abs()
            {
                return Err(format!(
                    "error {error:e} exceeds twice the reported estimate {estimate:e}"
                ));
            }
            Ok((error, bound))
        }
        Check::AdaptiveOde => {
            let y_end = numbers(&result["y_end"]);
            Ok((max_difference(&y_end, &expected) / max_abs(&expected), 1e-6))
        }
        Check::FixedStepOde { bound } => {
            Ok((max_difference(&numbers(&result["y_end"]), &expected), bound))
        }
        Check::Values => {
            let values = numbers(&result["values"]);
            let scale = max_abs(&expected).max(1.0);
            Ok((max_difference(&values, &expected) / scale, 1e-10))
        }
    }
}

#[test]
fn methods_agree_with_scipy() {
    let mut cases = Vec::new();
    bracketed_roots(&mut cases);
    open_roots(&mut cases);
    linear_systems(&mut cases);
    integrals(&mut cases);
    odes(&mut cases);
    interpolations(&mut cases);
    for method in cola_numeric::Method::ALL {
        let count = cases
            .iter()
            .filter(|c| c.problem["method"] == method.name())
            .count();
        assert!(count >= 2, "{method} has only {count} cases in the battery");
    }

    let oracle = scipy_reference(&cases);
    eprintln!("SciPy oracle: {}", oracle["versions"]);
    let mut failures = Vec::new();
    let mut errors = std::collections::HashMap::new();
    for case in &cases {
        let reference = &oracle["results"][&case.id];
        let problem = match parse_problem(&case.problem) {
            Ok(problem) => problem,
            Err(error) => {
                failures.push(format!("{}: rejected: {error}", case.id));
                continue;
            }
        };
        let solution = solve(&problem, &Budget::unlimited());
        match compare(case, &solution, reference) {
            Ok((error, allowed)) => {
                eprintln!("{:<70} error {error:9.2e}  allowed {allowed:9.2e}", case.id);
                if error.is_nan() || error > allowed {
                    failures.push(format!("{}: error {error:e} > {allowed:e}", case.id));
                }
                errors.insert(case.id.clone(), error);
            }
            Err(failure) => failures.push(format!("{}: {failure}", case.id)),
        }
    }

    // Halving h divides the error of a method of order p by about 2^p.
    for (method, order) in [("euler", 1), ("heun", 2), ("rk4", 4)] {
        for (name, ..) in ode_problems()
            .into_iter()
            .filter(|p| p.0.starts_with("y'") || p.0.starts_with("harmonic"))
        {
            let h = if method == "rk4" { 0.05 } else { 0.01 };
            let (Some(coarse), Some(fine)) = (
                errors.get(&fixed_step_id(method, name, h)),
                errors.get(&fixed_step_id(method, name, h / 2.0)),
            ) else {
                continue;
            };
            let observed = (coarse / fine).log2();
            eprintln!("{method} on {name}: observed order {observed:.2}");
            if (observed - order as f64).abs() > 0.25 {
                failures.push(format!(
                    "{method} on {name}: observed order {observed:.2}, expected {order}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
