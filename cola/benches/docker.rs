//! `scripts/bench-docker.sh`: per-job wall time of hello world through the Docker backend
//! (submit → terminal through the HTTP API of a real `cola up --backend docker`) against a bare
//! `docker run` of the same executor image compiling and running the same program, in the same
//! run. Prints a table for BENCHMARKS.md (target: ≤ 1.2×).
//!
//! The executor images must hold this build's `cola` binary, tagged `$COLA_EXECUTOR_IMAGE_TAG`
//! (default `latest`): `scripts/bench-docker.sh` builds them first.

use std::process::{Command, Stdio};

mod support;

use support::{ColaUp, HELLO_C, alternated, median_ratio, ms, percentile};

const COLA: &str = env!("CARGO_BIN_EXE_cola");

/// Language, source, and the shell script a bare container runs on it (as the language table's
/// commands do, in a tmpfs work area).
const PROGRAMS: [(&str, &str, &str); 3] = [
    (
        "c",
        HELLO_C,
        "cat > main.c && gcc -O2 -std=c17 -o main main.c -lm && ./main",
    ),
    (
        "javascript",
        "console.log('hello');\n",
        "cat > main.js && node main.js",
    ),
    (
        "go",
        "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n",
        "cat > main.go && GO111MODULE=off CGO_ENABLED=0 GOPATH=/tmp/gopath GOCACHE=$COLA_GO_CACHE go build -o main main.go && ./main",
    ),
];

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list: there is nothing to list.
    }
    let tag = std::env::var("COLA_EXECUTOR_IMAGE_TAG").unwrap_or_else(|_| "latest".into());
    let up = ColaUp::start(COLA, &["--backend", "docker", "--executor-image-tag", &tag]);
    let (url, token) = (&up.url, &up.token);
    let runtime = tokio::runtime::Runtime::new().unwrap();

    println!(
        "| language | docker run p50 | docker run p90 | cola p50 | cola p90 | ratio (p50) | ratio (median of pairs) | target |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (language, source, script) in PROGRAMS {
        let image = format!("cola-executor-{language}:{tag}");
        let (bare, api) = alternated(
            &runtime,
            bare_run(&image, source, script),
            url,
            token,
            language,
            source,
        );
        println!(
            "| {language} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.2}× | {:.2}× | ≤ 1.2× |",
            ms(percentile(&bare, 50)),
            ms(percentile(&bare, 90)),
            ms(percentile(&api, 50)),
            ms(percentile(&api, 90)),
            ms(percentile(&api, 50)) / ms(percentile(&bare, 50)),
            median_ratio(&bare, &api),
        );
    }
}

/// `docker run --rm -i` of the image, with the same isolation as a job's container, compiling
/// (when the language does) and running the program read from stdin.
fn bare_run<'a>(image: &'a str, source: &'a str, script: &'a str) -> impl FnMut() + 'a {
    let tmpfs = "rw,exec,nosuid,nodev,size=256m,uid=10001,gid=10001,mode=0700";
    move || {
        let mut child = Command::new("docker")
            .args(["run", "--rm", "-i", "--network", "none", "--read-only"])
            .args(["--cap-drop", "ALL", "--security-opt", "no-new-privileges"])
            .args(["--user", "10001:10001", "--workdir", "/work"])
            .args(["--tmpfs", &format!("/work:{tmpfs}")])
            .args(["--tmpfs", &format!("/tmp:{tmpfs}")])
            .args(["--entrypoint", "/bin/sh", image, "-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(source.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello\n",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
