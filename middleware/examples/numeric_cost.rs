//! What one numeric job costs in the middleware besides NATS: validating, solving, rendering
//! and zipping the bisection example (x³ + 4x² − 10 on [1, 2], tol 1e-10), on this
//! thread: `cargo run --release -p cola-middleware --example numeric_cost`.

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use cola_middleware::numeric::{solve, solve_inline};

fn per_job(runs: u32, mut job: impl FnMut()) -> Duration {
    for _ in 0..runs / 10 {
        job();
    }
    let started = Instant::now();
    for _ in 0..runs {
        job();
    }
    started.elapsed() / runs
}

fn main() {
    let statement = cola_numeric::example(cola_numeric::Method::Bisection);
    let budget = Duration::from_secs(10);
    drop(solve(&statement, budget)); // the first run pays for cold caches
    let solved = solve_inline(&statement, budget).expect("the example solves inline");
    let zip = solved.zip.as_ref().map_or(0, Vec::len);
    let pool = per_job(20_000, || {
        drop(black_box(solve(black_box(&statement), budget)))
    });
    let inline = per_job(20_000, || {
        drop(black_box(solve_inline(black_box(&statement), budget)))
    });
    println!("validate + solve + files + zip: {pool:.1?} per job ({zip} bytes of zip)");
    println!("the same, inline attempt first: {inline:.1?} per job");
}
