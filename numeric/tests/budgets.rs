//! Every method honours its time budget promptly, however heavy its problem: the heaviest
//! statement validation accepts for each method (long expressions, the most points, steps,
//! levels or iterations) stops within a small margin of its budget, and a stop flag ends a
//! solve at once.

use std::time::{Duration, Instant};

use cola_numeric::{Budget, Convergence, StopFlag, methods, parse_problem, solve};
use serde_json::{Value, json};

/// The integrand of issue 10's starving problem: 34 copies of a term joined by `+`, 951
/// characters (the limit is 1,000).
fn heavy(variable: &str, other: &str) -> String {
    vec![format!("sqrt(abs(sin(97*{variable})))*cos({other})"); 34].join("+")
}

/// A diagonally dominant system of the largest size.
fn largest_system() -> (Vec<Vec<f64>>, Vec<f64>) {
    let n = cola_numeric::limits::MAX_DIMENSION;
    let a = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| if i == j { 2.0 * n as f64 } else { 1.0 })
                .collect()
        })
        .collect();
    (a, vec![1.0; n])
}

/// A system of the largest size on which Jacobi and Gauss–Seidel cycle forever from 0: blocks
/// `[[1, 1], [-1, 1]]` on the diagonal (Jacobi's iteration matrix is a rotation by a quarter
/// turn; Gauss–Seidel's flips the second unknown).
fn cycling_system() -> (Vec<Vec<f64>>, Vec<f64>) {
    let n = cola_numeric::limits::MAX_DIMENSION;
    let a = (0..n)
        .map(|i| {
            let mut row = vec![0.0; n];
            let block = i - i % 2;
            row[block] = if i == block { 1.0 } else { -1.0 };
            row[block + 1] = 1.0;
            row
        })
        .collect();
    (a, vec![1.0; n])
}

/// The most equations, each heavy, for the ODE methods.
fn heavy_system() -> (Vec<String>, Vec<f64>) {
    let equations = cola_numeric::limits::MAX_EQUATIONS;
    let term = |i: usize| format!("sqrt(abs(sin(97*t)))*cos(y{i})");
    let f = (1..=equations)
        .map(|i| vec![term(i); 30].join("+"))
        .collect();
    (f, vec![0.5; equations])
}

/// The heaviest statement of `method`, and whether it runs far longer than [`BUDGET`] without
/// one (the others are bounded by validation's size limits and finish early).
fn pathological(method: &str) -> (Value, bool) {
    let x = heavy("x", "x");
    let points = cola_numeric::limits::MAX_EVALUATION_POINTS;
    match method {
        // Bracketing methods halve (or at least shrink) the bracket: at most about a thousand
        // iterations in double precision.
        "bisection" | "regula_falsi" | "brent" => (
            json!({"method": method, "f": format!("{x}-10"), "a": 0, "b": 1, "tol": 1e-300, "max_iter": 1_000_000}),
            false,
        ),
        // No root: the iterates wander for a million iterations (the heavy term, negligible,
        // makes each evaluation slow).
        "secant" => (
            json!({"method": method, "f": format!("x^2+1+1e-300*({x})"), "x0": 0, "x1": 0.5, "tol": 1e-300, "max_iter": 1_000_000}),
            true,
        ),
        // A two-cycle: 0 → 1 → 0 → …
        "newton" => (
            json!({"method": method, "f": format!("x^3-2*x+2+1e-300*({x})"), "df": "3*x^2 - 2", "x0": 0, "tol": 1e-300, "max_iter": 1_000_000}),
            true,
        ),
        "fixed_point" => (
            json!({"method": method, "g": format!("x + 1e-9*({x})"), "x0": 0.5, "tol": 1e-300, "max_iter": 1_000_000}),
            true,
        ),
        "gauss" | "lu" => {
            let (a, b) = largest_system();
            (json!({"method": method, "A": a, "b": b}), false)
        }
        "jacobi" | "gauss_seidel" => {
            let (a, b) = cycling_system();
            (
                json!({"method": method, "A": a, "b": b, "x0": vec![0.0; b.len()], "tol": 1e-300, "max_iter": 1_000_000}),
                true,
            )
        }
        "trapezoid" | "simpson" => (
            json!({"method": method, "f": x, "a": 0, "b": 1, "n": cola_numeric::limits::MAX_SUBINTERVALS}),
            true,
        ),
        "romberg" => (
            json!({"method": method, "f": x, "a": 0, "b": 1, "tol": 1e-15, "max_iter": cola_numeric::limits::MAX_ROMBERG_LEVELS}),
            true,
        ),
        "gauss_legendre" => (
            json!({"method": method, "f": x, "a": 0, "b": 1, "n": cola_numeric::limits::MAX_GAUSS_POINTS}),
            false,
        ),
        "euler" | "heun" | "rk4" => {
            let (f, y0) = heavy_system();
            (
                json!({"method": method, "f": f, "t0": 0, "y0": y0, "t_end": 1, "h": 1.0 / cola_numeric::limits::MAX_STEPS as f64}),
                true,
            )
        }
        "rk45" => {
            let (f, y0) = heavy_system();
            (
                json!({"method": method, "f": f, "t0": 0, "y0": y0, "t_end": 1000, "tol": 1e-12}),
                true,
            )
        }
        "lagrange" | "newton_divided" => {
            let n = cola_numeric::limits::MAX_POLYNOMIAL_POINTS;
            let xs: Vec<f64> = (0..n).map(|i| i as f64 / n as f64).collect();
            let ys: Vec<f64> = xs.iter().map(|x| (7.0 * x).sin()).collect();
            let at: Vec<f64> = (0..points).map(|i| i as f64 / points as f64).collect();
            (
                json!({"method": method, "xs": xs, "ys": ys, "at": at}),
                false,
            )
        }
        "cubic_spline" => {
            let n = cola_numeric::limits::MAX_SPLINE_POINTS;
            let xs: Vec<f64> = (0..n).map(|i| i as f64).collect();
            let ys: Vec<f64> = xs.iter().map(|x| x.sin()).collect();
            let at: Vec<f64> = (0..points).map(|i| i as f64 / 10.0).collect();
            (
                json!({"method": method, "xs": xs, "ys": ys, "at": at}),
                false,
            )
        }
        other => panic!("no pathological problem for {other}: add one"),
    }
}

/// The budget of every solve here.
const BUDGET: Duration = Duration::from_millis(300);

/// How long past its budget a solve may go: 100 ms in a release build; a debug build (which
/// evaluates expressions about ten times slower) gets 150 ms. Measured on a loaded 2-core
/// machine (load 8): at most 12 ms over in release, 21 ms in debug; with a budget check every
/// 4,096 evaluations Simpson's rule went 193 ms over in debug.
fn margin() -> Duration {
    if cfg!(debug_assertions) {
        Duration::from_millis(150)
    } else {
        Duration::from_millis(100)
    }
}

#[test]
fn every_method_stops_near_its_budget_on_its_heaviest_problem() {
    let mut overruns = Vec::new();
    for method in methods() {
        let (statement, long) = pathological(method.name);
        let problem = parse_problem(&statement)
            .unwrap_or_else(|e| panic!("{}: the statement is rejected: {e}", method.name));
        let started = Instant::now();
        let solution = solve(&problem, &Budget::new(BUDGET));
        let took = started.elapsed();
        eprintln!("{:>15}: {took:>10.1?} {:?}", method.name, solution.outcome);
        if long {
            assert_eq!(
                solution.outcome,
                Convergence::OutOfTime,
                "{}: the problem must outlast its budget",
                method.name
            );
        }
        if took > BUDGET + margin() {
            overruns.push(format!("{} took {took:?}", method.name));
        }
    }
    assert!(
        overruns.is_empty(),
        "over the budget of {BUDGET:?} by more than {:?}: {overruns:?}",
        margin()
    );
}

#[test]
fn a_stop_flag_ends_a_solve_at_once() {
    let (statement, _) = pathological("romberg");
    let problem = parse_problem(&statement).unwrap();
    let stop = StopFlag::new();
    let budget = Budget::new(Duration::from_secs(600)).stopped_by(&stop);
    let solving = std::thread::spawn(move || {
        let started = Instant::now();
        (solve(&problem, &budget), started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(100));
    let stopped = Instant::now();
    stop.stop();
    let (solution, took) = solving.join().unwrap();
    assert_eq!(solution.outcome, Convergence::OutOfTime);
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(
        stopped.elapsed() < margin(),
        "stopped {:?} after the flag",
        stopped.elapsed()
    );
    // A flag raised before the solve: nothing is solved.
    let (statement, _) = pathological("fixed_point");
    let problem = parse_problem(&statement).unwrap();
    let solution = solve(&problem, &Budget::unlimited().stopped_by(&stop));
    assert_eq!(
        (solution.outcome, solution.iterations),
        (Convergence::OutOfTime, Some(0))
    );
}
