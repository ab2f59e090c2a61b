//! The catalogue: every method is listed with its parameters and a worked example that
//! validates and solves.

use cola_numeric::{Budget, Convergence, Family, Method, expr, methods, parse_problem, solve};

#[test]
fn every_method_is_listed_once_with_its_family() {
    let listed = methods();
    assert_eq!(listed.len(), 21);
    for (info, method) in listed.iter().zip(Method::ALL) {
        assert_eq!(info.name, method.name());
        assert_eq!(Method::from_name(info.name), Some(method));
        assert_eq!(info.family, method.family());
        assert_eq!(info.example["method"], method.name());
    }
    let families = |family| listed.iter().filter(|m| m.family == family).count();
    assert_eq!(
        [
            Family::Roots,
            Family::LinearSystems,
            Family::Integrals,
            Family::Odes,
            Family::Interpolation
        ]
        .map(families),
        [6, 4, 4, 4, 3]
    );
}

#[test]
fn every_example_validates_and_converges() {
    for info in methods() {
        let problem = parse_problem(&info.example).unwrap_or_else(|e| panic!("{}: {e}", info.name));
        assert_eq!(problem.method().name(), info.name);
        let solution = solve(&problem, &Budget::unlimited());
        assert_eq!(
            solution.outcome,
            Convergence::Converged,
            "{}: {:?}",
            info.name,
            solution.warnings
        );
        assert!(
            !solution.table.rows.is_empty(),
            "{}: empty table",
            info.name
        );
    }
}

#[test]
fn parameters_match_the_issue_table() {
    let names = |method: &str| -> Vec<(&'static str, bool)> {
        methods()
            .into_iter()
            .find(|m| m.name == method)
            .unwrap()
            .parameters
            .iter()
            .map(|p| (p.name, p.required))
            .collect()
    };
    let required = |list: &[&'static str]| list.iter().map(|n| (*n, true)).collect::<Vec<_>>();
    for method in ["bisection", "regula_falsi", "brent"] {
        assert_eq!(names(method), required(&["f", "a", "b", "tol", "max_iter"]));
    }
    assert_eq!(
        names("secant"),
        required(&["f", "x0", "x1", "tol", "max_iter"])
    );
    assert_eq!(
        names("newton"),
        vec![
            ("f", true),
            ("df", false),
            ("x0", true),
            ("tol", true),
            ("max_iter", true)
        ]
    );
    assert_eq!(
        names("fixed_point"),
        required(&["g", "x0", "tol", "max_iter"])
    );
    for method in ["gauss", "lu"] {
        assert_eq!(names(method), required(&["A", "b"]));
    }
    for method in ["jacobi", "gauss_seidel"] {
        assert_eq!(
            names(method),
            vec![
                ("A", true),
                ("b", true),
                ("x0", false),
                ("tol", true),
                ("max_iter", true)
            ]
        );
    }
    for method in ["trapezoid", "simpson", "gauss_legendre"] {
        assert_eq!(names(method), required(&["f", "a", "b", "n"]));
    }
    assert_eq!(
        names("romberg"),
        required(&["f", "a", "b", "tol", "max_iter"])
    );
    for method in ["euler", "heun", "rk4"] {
        assert_eq!(names(method), required(&["f", "t0", "y0", "t_end", "h"]));
    }
    assert_eq!(names("rk45"), required(&["f", "t0", "y0", "t_end", "tol"]));
    for method in ["lagrange", "newton_divided", "cubic_spline"] {
        assert_eq!(names(method), required(&["xs", "ys", "at"]));
    }
}

#[test]
fn serializes_for_the_methods_endpoint() {
    let json = serde_json::to_value(methods()).unwrap();
    let bisection = &json[0];
    assert_eq!(bisection["name"], "bisection");
    assert_eq!(bisection["family"], "roots");
    assert_eq!(bisection["parameters"][0]["name"], "f");
    assert_eq!(bisection["parameters"][0]["type"], "expression");
    assert_eq!(bisection["parameters"][0]["required"], true);
    assert!(bisection["parameters"][0]["default"].is_null());
    assert_eq!(bisection["parameters"][4]["type"], "integer");
    assert_eq!(bisection["example"]["f"], "x^3 + 4*x^2 - 10");
    assert_eq!(json[16]["name"], "rk4");
    assert_eq!(json[16]["family"], "odes");
    assert_eq!(json[16]["parameters"][0]["type"], "expression_or_array");
    assert_eq!(json[6]["family"], "linear_systems");
    assert_eq!(json[6]["parameters"][0]["type"], "matrix");
}

#[test]
fn expression_help_names_every_function() {
    let bisection = methods().into_iter().next().unwrap();
    let help = bisection.parameters[0].meaning;
    for function in expr::function_names().split(", ") {
        assert!(help.contains(function), "help for f misses {function}");
    }
}
