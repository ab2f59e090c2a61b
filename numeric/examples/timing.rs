//! Measures validation and solving of the bisection example (x³ + 4x² − 10 on [1, 2],
//! tol 1e-10), and rendering its files: `cargo run --release -p cola-numeric --example timing`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cola_numeric::{Budget, parse_problem, solve};
use serde_json::json;

fn per_call(runs: u32, mut work: impl FnMut()) -> Duration {
    for _ in 0..runs / 10 {
        work();
    }
    let started = Instant::now();
    for _ in 0..runs {
        work();
    }
    started.elapsed() / runs
}

fn main() {
    let statement = json!({"method": "bisection", "f": "x^3 + 4*x^2 - 10", "a": 1, "b": 2, "tol": 1e-10, "max_iter": 100});
    let budget = Budget::new(Duration::from_secs(10));
    let runs = 20_000;
    let problem = parse_problem(&statement).unwrap();
    let solution = solve(&problem, &budget);
    println!(
        "root {} after {:?} iterations",
        solution.result["root"], solution.iterations
    );

    let parse = per_call(runs, || {
        drop(black_box(parse_problem(black_box(&statement)).unwrap()))
    });
    let solve_only = per_call(runs, || {
        drop(black_box(solve(black_box(&problem), &budget)))
    });
    let both = per_call(runs, || {
        let problem = parse_problem(black_box(&statement)).unwrap();
        drop(black_box(solve(&problem, &budget)));
    });
    let files = per_call(runs / 4, || {
        drop(black_box(solution.files(black_box(&statement))))
    });
    let csv = per_call(runs, || drop(black_box(solution.table.to_csv())));
    let svg = per_call(runs / 4, || drop(black_box(solution.plot.to_svg())));
    let json = per_call(runs, || {
        drop(black_box(
            serde_json::to_vec_pretty(&solution.result_document(&statement)).unwrap(),
        ))
    });
    println!("parse_problem         {parse:>10.2?}");
    println!("solve                 {solve_only:>10.2?}");
    println!("parse_problem + solve {both:>10.2?}");
    println!(
        "files (json+csv+svg)  {files:>10.2?}  (result.json {json:.2?}, table.csv {csv:.2?}, plot.svg {svg:.2?})"
    );
}
