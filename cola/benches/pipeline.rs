//! `make bench`: submit → terminal latency of hello world per language through the HTTP API of a
//! real `cola up`, against the same program run directly with the same environment, and the
//! throughput of 200 C jobs from 8 concurrent clients. Prints a table for BENCHMARKS.md.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

mod support;

use support::{ColaUp, HELLO_C, alternated, median_ratio, ms, percentile, submit};

const COLA: &str = env!("CARGO_BIN_EXE_cola");

const PROGRAMS: [(&str, &str, &str); 3] = [
    ("c", "main.c", HELLO_C),
    ("javascript", "main.js", "console.log('hello');\n"),
    (
        "go",
        "main.go",
        "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n",
    ),
];

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list: there is nothing to list.
    }
    let up = ColaUp::start(COLA, &[]);
    let (url, token) = (&up.url, &up.token);
    let runtime = tokio::runtime::Runtime::new().unwrap();

    println!(
        "| language | direct p50 | direct p90 | cola p50 | cola p90 | ratio (p50) | ratio (median of pairs) | target |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (language, file, source) in PROGRAMS {
        let dir = up.dir.path().join(format!("direct-{language}"));
        let (direct, api) = alternated(
            &runtime,
            direct_run(language, file, source, &dir),
            url,
            token,
            language,
            source,
        );
        let target = match language {
            "c" => "≤ 1.2×",
            "javascript" => "≤ 1.25×",
            _ => "≤ 1.3×",
        };
        println!(
            "| {language} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.2}× | {:.2}× | {target} |",
            ms(percentile(&direct, 50)),
            ms(percentile(&direct, 90)),
            ms(percentile(&api, 50)),
            ms(percentile(&api, 90)),
            ms(percentile(&api, 50)) / ms(percentile(&direct, 50)),
            median_ratio(&direct, &api),
        );
    }
    let (jobs, elapsed) = runtime.block_on(throughput(url, token, 200, 8));
    println!(
        "\nthroughput: {jobs} C hello-world jobs, 8 concurrent clients: {:.1} s, {:.1} jobs/s",
        elapsed.as_secs_f64(),
        jobs as f64 / elapsed.as_secs_f64()
    );
}

/// The program compiled (when it is) and run directly, in the environment the sandbox gives it.
fn direct_run(language: &str, file: &str, source: &str, dir: &Path) -> impl FnMut() {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(file), source).unwrap();
    let gocache = dir.join("gocache");
    // Every job builds in a fresh directory, so the direct build starts without the previous
    // run's binary: `go build` would otherwise find `main` up to date and skip the link, and
    // the baseline would measure no build at all (see BENCHMARKS.md).
    let script = match language {
        "c" => "rm -f main && gcc -O2 -std=c17 -o main main.c -lm && ./main",
        "go" => "rm -f main && go build -o main main.go && ./main",
        _ => "node main.js",
    };
    let dir = dir.to_owned();
    move || {
        let out = Command::new("/bin/sh")
            .args(["-c", script])
            .current_dir(&dir)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &dir)
            .env("LANG", "C.UTF-8")
            .env("GO111MODULE", "off")
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", &gocache)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello\n",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

async fn throughput(url: &str, token: &str, jobs: usize, clients: usize) -> (usize, Duration) {
    let http = reqwest::Client::new();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (http, url, token) = (http.clone(), url.to_owned(), token.to_owned());
        let share = jobs / clients + usize::from(client < jobs % clients);
        tasks.push(tokio::spawn(async move {
            for _ in 0..share {
                submit(&http, &url, &token, "c", HELLO_C).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    (jobs, start.elapsed())
}
