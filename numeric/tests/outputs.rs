//! The files of the job's zip: result.json, table.csv (with each method's header) and a
//! well-formed plot.svg, whatever the outcome.

use cola_numeric::{Budget, Convergence, Method, Solution, example, methods, parse_problem, solve};
use serde_json::{Value, json};

fn solved(statement: &Value) -> Solution {
    solve(&parse_problem(statement).unwrap(), &Budget::unlimited())
}

/// The files by name, checking there are exactly the three expected ones.
fn files(solution: &Solution, statement: &Value) -> (Value, String, String) {
    let files = solution.files(statement);
    let names: Vec<&str> = files.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["result.json", "table.csv", "plot.svg"]);
    let text = |i: usize| String::from_utf8(files[i].1.clone()).expect("UTF-8");
    (
        serde_json::from_slice(&files[0].1).expect("result.json is JSON"),
        text(1),
        text(2),
    )
}

/// Parses the SVG as XML and checks it is an SVG document with something drawn.
#[track_caller]
fn assert_valid_svg(svg: &str, context: &str) {
    let document = roxmltree::Document::parse(svg)
        .unwrap_or_else(|e| panic!("{context}: plot.svg is not well-formed XML: {e}"));
    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "svg", "{context}");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg"),
        "{context}"
    );
    assert!(root.attribute("viewBox").is_some(), "{context}");
    let drawn = root
        .descendants()
        .filter(|n| matches!(n.tag_name().name(), "polyline" | "polygon" | "circle"))
        .count();
    assert!(drawn > 0, "{context}: nothing drawn");
}

#[test]
fn every_method_produces_its_three_files() {
    let expected_headers = [
        ("bisection", "iteration,a,b,midpoint,f_midpoint,error"),
        ("regula_falsi", "iteration,a,b,x,f_x,error"),
        ("brent", "iteration,a,b,x,f_x,error"),
        ("secant", "iteration,x_previous,x,x_next,f_x_next,error"),
        ("newton", "iteration,x,f_x,df_x,x_next,error"),
        ("fixed_point", "iteration,x,g_x,error"),
        ("gauss", "step,pivot_row,pivot,largest_multiplier"),
        ("lu", "row,p,l1,l2,l3,u1,u2,u3"),
        ("jacobi", "iteration,x1,x2,x3,x4,error"),
        ("gauss_seidel", "iteration,x1,x2,x3,x4,error"),
        ("trapezoid", "i,x,f_x,weight"),
        ("simpson", "i,x,f_x,weight"),
        ("romberg", "level,intervals,trapezoid,extrapolated,error"),
        ("gauss_legendre", "i,node,weight,f_node"),
        ("euler", "step,t,y"),
        ("heun", "step,t,y"),
        ("rk4", "step,t,y"),
        ("rk45", "step,t,h,y1,y2,error_estimate"),
        ("lagrange", "i,x,y,barycentric_weight"),
        ("newton_divided", "i,x,y,coefficient"),
        ("cubic_spline", "interval,x_left,x_right,a,b,c,d"),
    ];
    let listed = methods();
    assert_eq!(listed.len(), expected_headers.len());
    for (info, (name, header)) in listed.iter().zip(expected_headers) {
        assert_eq!(info.name, name);
        let statement = example_of(info.name);
        let solution = solved(&statement);
        let (document, csv, svg) = files(&solution, &statement);

        assert_eq!(
            document["statement"], statement,
            "{name}: the statement as received"
        );
        assert_eq!(document["method"], name);
        assert_same_numbers(&document["result"], &solution.result, name);
        assert_eq!(document["convergence"]["status"], "converged", "{name}");
        assert!(document["warnings"].is_array());

        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some(header), "{name}");
        let rows: Vec<&str> = lines.collect();
        assert_eq!(rows.len(), solution.table.rows.len(), "{name}");
        let columns = header.split(',').count();
        for row in &rows {
            let cells: Vec<&str> = row.split(',').collect();
            assert_eq!(cells.len(), columns, "{name}: {row}");
            for cell in cells {
                cell.parse::<f64>()
                    .unwrap_or_else(|_| panic!("{name}: '{cell}' is not a number"));
            }
        }
        assert_valid_svg(&svg, name);
    }
}

/// Equal JSON up to the last bit of a number (serde_json's default float parser may be 1 ulp off).
#[track_caller]
fn assert_same_numbers(read: &Value, written: &Value, context: &str) {
    match (read, written) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!(
                (a - b).abs() <= 2.0 * f64::EPSILON * b.abs(),
                "{context}: {a} != {b}"
            );
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{context}");
            a.iter()
                .zip(b)
                .for_each(|(a, b)| assert_same_numbers(a, b, context));
        }
        (Value::Object(a), Value::Object(b)) => {
            assert_eq!(
                a.keys().collect::<Vec<_>>(),
                b.keys().collect::<Vec<_>>(),
                "{context}"
            );
            a.iter()
                .zip(b)
                .for_each(|((_, a), (_, b))| assert_same_numbers(a, b, context));
        }
        (a, b) => assert_eq!(a, b, "{context}"),
    }
}

fn example_of(name: &str) -> Value {
    example(Method::from_name(name).unwrap())
}

#[test]
fn result_json_has_the_issue_shapes() {
    let root = solved(&example_of("bisection")).result;
    let mut keys: Vec<&String> = root.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["converged", "f_root", "iterations", "root"]);
    let direct = solved(&example_of("gauss")).result;
    assert_eq!(direct.as_object().unwrap().len(), 2);
    assert!(direct["x"].is_array() && direct["residual_norm"].is_number());
    let iterative = solved(&example_of("jacobi")).result;
    assert!(iterative["iterations"].is_u64());
    let integral = solved(&example_of("simpson")).result;
    assert!(integral["value"].is_number() && integral["error_estimate"].is_number());
    let ode = solved(&example_of("rk45")).result;
    assert!(ode["t"].is_array() && ode["y"][0].is_array() && ode["y_end"].is_array());
    let scalar_ode = solved(&example_of("rk4")).result;
    assert!(scalar_ode["y"][0].is_number() && scalar_ode["y_end"].is_number());
    let interpolation = solved(&example_of("lagrange")).result;
    assert_eq!(interpolation.as_object().unwrap().len(), 1);
    assert_eq!(interpolation["values"].as_array().unwrap().len(), 3);
}

#[test]
fn did_not_converge_still_produces_table_and_plot() {
    let statement =
        json!({"method": "newton", "f": "x^3 - 2*x + 2", "x0": 0, "tol": 1e-10, "max_iter": 12});
    let solution = solved(&statement);
    assert_eq!(solution.outcome, Convergence::DidNotConverge);
    let (document, csv, svg) = files(&solution, &statement);
    assert_eq!(
        document["convergence"],
        json!({"status": "did_not_converge", "iterations": 12})
    );
    assert_eq!(document["result"]["converged"], false);
    assert!(
        document["warnings"][0]
            .as_str()
            .unwrap()
            .contains("max_iter = 12")
    );
    assert_eq!(csv.lines().count(), 13);
    assert_valid_svg(&svg, "did_not_converge");
    assert!(
        svg.contains("log") || svg.contains("1e"),
        "the error axis is logarithmic"
    );
}

#[test]
fn evaluation_errors_and_unusual_values_still_render() {
    let statement =
        json!({"method": "fixed_point", "g": "sqrt(x) - 2", "x0": 1, "tol": 1e-10, "max_iter": 50});
    let solution = solved(&statement);
    let (document, csv, svg) = files(&solution, &statement);
    assert_eq!(document["convergence"]["status"], "evaluation_error");
    assert_eq!(document["convergence"]["message"], "g is NaN at x = -1");
    assert_eq!(csv.lines().count(), 2);
    roxmltree::Document::parse(&svg).expect("well-formed even with nothing finite to draw");

    // Text from the user (an expression with < and &-like characters cannot occur, but titles
    // carry numbers and expressions) is escaped; an integral with a NaN-free curve has an area.
    let integral = json!({"method": "gauss_legendre", "f": "1/sqrt(x)", "a": 0, "b": 1, "n": 3});
    let solution = solved(&integral);
    let (_, _, svg) = files(&solution, &integral);
    assert_valid_svg(&svg, "integral");
    assert!(
        svg.contains("<polygon"),
        "the area under the curve is shaded"
    );

    let diverged = json!({"method": "jacobi", "A": [[1, 3], [3, 1]], "b": [1, 1], "tol": 1e-10, "max_iter": 2000});
    let solution = solved(&diverged);
    let (document, csv, svg) = files(&solution, &diverged);
    assert_eq!(document["convergence"]["status"], "did_not_converge");
    assert!(
        document["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("matrix is not diagonally dominant")
    );
    assert!(csv.contains("e30") || csv.contains("e100") || csv.lines().count() > 100);
    assert_valid_svg(&svg, "diverged");
}

#[test]
fn large_outputs_stay_bounded() {
    // 100 000 steps of 8 equations: the trajectory is sampled evenly, y_end is exact.
    let equations: Vec<String> = (1..=8).map(|i| format!("-{i}*y{i}/10")).collect();
    let statement = json!({"method": "euler", "f": equations, "t0": 0, "y0": vec![1.0; 8], "t_end": 10, "h": 1e-4});
    let solution = solved(&statement);
    assert_eq!(solution.iterations, Some(100_000));
    let t = solution.result["t"].as_array().unwrap();
    assert!(t.len() > 1000 && t.len() <= 2001, "{} points", t.len());
    assert_eq!(t.len(), solution.result["y"].as_array().unwrap().len());
    assert_eq!(t.last().unwrap(), 10.0);
    assert_eq!(solution.table.rows.len(), t.len());
    assert_eq!(solution.table.rows[1][0], 64.0, "every 64th step");
    assert!((solution.result["y_end"][0].as_f64().unwrap() - (-1.0f64).exp()).abs() < 1e-4);
    assert!(
        solution
            .warnings
            .iter()
            .any(|w| w.contains("every 64th of the 100000 steps")),
        "{:?}",
        solution.warnings
    );
    let (document, csv, svg) = files(&solution, &statement);
    assert_eq!(csv.lines().count(), t.len() + 1);
    let total: usize = solution
        .files(&statement)
        .iter()
        .map(|(_, bytes)| bytes.len())
        .sum();
    assert!(total < 2_000_000, "the zip's files take {total} bytes");
    assert!(svg.len() < 300_000, "plot.svg is {} bytes", svg.len());
    assert_valid_svg(&svg, "long ODE");
    assert_eq!(document["convergence"]["iterations"], 100_000);

    // A long iteration keeps the first and last rows of its table.
    let statement =
        json!({"method": "fixed_point", "g": "x + 1", "x0": 0, "tol": 1e-10, "max_iter": 50_000});
    let solution = solved(&statement);
    assert_eq!(solution.table.rows.len(), 2_000);
    assert_eq!(solution.table.omitted_rows, 48_000);
    assert_eq!(solution.table.rows[1999][0], 50_000.0);
    assert!(
        solution.warnings.iter().any(|w| w.contains("48000 rows")),
        "{:?}",
        solution.warnings
    );
    assert!(solution.plot.series[0].points.len() <= 4_097);
}
