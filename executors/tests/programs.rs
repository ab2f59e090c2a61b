//! Programs that work, and programs that fail on their own (no limit involved), in every language.

mod common;

use cola_wire::Reason;
use common::TestJob;

const C_HELLO: &str = "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n";
const GO_HELLO: &str = "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n";
const JS_HELLO: &str = "console.log('hello');\n";

#[tokio::test]
async fn c_hello_world() {
    let done = TestJob::source("c", C_HELLO).execute().await;
    done.assert_succeeded();
    assert_eq!(done.report.stdout, "hello\n");
    assert_eq!(done.report.exit_code, Some(0));
    assert_eq!(
        done.names(),
        ["compile.txt", "result.json", "stderr.txt", "stdout.txt"]
    );
    assert_eq!(done.entry("stdout.txt"), "hello\n");
    assert_eq!(done.entry("compile.txt"), "");
    let result = done.result();
    assert_eq!(result["status"], "succeeded");
    assert_eq!(result["exit_code"], 0);
    assert!(result["timings_ms"]["compile"].as_u64().is_some());
    assert!(result["timings_ms"]["run"].as_u64().is_some());
    assert_eq!(result["limits"]["memory_mb"], common::TEST_LIMITS.memory_mb);
    assert!(result["usage"]["run"]["peak_memory_kb"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn go_hello_world() {
    let done = TestJob::source("go", GO_HELLO).execute().await;
    done.assert_succeeded();
    assert_eq!(done.entry("stdout.txt"), "hello\n");
    assert_eq!(
        done.entry("compile.txt"),
        "",
        "a read-only cache is no reason to complain"
    );
    assert_eq!(
        done.names(),
        ["compile.txt", "result.json", "stderr.txt", "stdout.txt"]
    );
}

#[tokio::test]
async fn go_jobs_share_the_warm_build_cache_read_only() {
    // net and crypto/sha1 are not in Go 1.19's precompiled standard library: a cold cache
    // compiles them (over a second), the warm one has them.
    let source = r#"package main

import (
	"crypto/sha1"
	"fmt"
	"net"
)

func main() {
	fmt.Printf("%x %v\n", sha1.Sum([]byte("cola")), net.ParseIP("127.0.0.1").IsLoopback())
}
"#;
    let template = common::go_cache();
    let before = files_under(&template);
    let warm = TestJob::source("go", source).execute().await;
    warm.assert_succeeded();
    assert_eq!(
        warm.entry("stdout.txt"),
        "7ff2f15b823924892a46e9d19aa1a569f6070f2b true\n"
    );
    assert_eq!(
        files_under(&template),
        before,
        "jobs cannot change the shared cache"
    );

    let mut cold = TestJob::source("go", source);
    cold.config.go_cache = None;
    let cold = cold.execute().await;
    cold.assert_succeeded();
    let (warm_ms, cold_ms) = (
        warm.report.timings_ms.compile.unwrap(),
        cold.report.timings_ms.compile.unwrap(),
    );
    assert!(
        warm_ms * 2 < cold_ms,
        "warm {warm_ms} ms, cold {cold_ms} ms"
    );
}

fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            files.extend(files_under(&entry.path()));
        } else {
            files.push((entry.path(), meta.len()));
        }
    }
    files.sort();
    files
}

#[tokio::test]
async fn javascript_hello_world() {
    let done = TestJob::source("javascript", JS_HELLO).execute().await;
    done.assert_succeeded();
    assert_eq!(done.entry("stdout.txt"), "hello\n");
    assert_eq!(
        done.names(),
        ["result.json", "stderr.txt", "stdout.txt"],
        "no compile.txt"
    );
}

#[tokio::test]
async fn stdin_and_args_reach_the_program() {
    let c = r#"#include <stdio.h>
int main(int argc, char **argv) {
    char line[100];
    if (!fgets(line, sizeof line, stdin)) return 9;
    printf("%d [%s] [%s] %s", argc, argv[1], argv[2], line);
    return 0;
}
"#;
    let done = TestJob::source("c", c)
        .stdin("from stdin\n")
        .args(&["one", "two words"])
        .execute()
        .await;
    done.assert_succeeded();
    assert_eq!(done.entry("stdout.txt"), "3 [one] [two words] from stdin\n");

    let js = "const input = require('fs').readFileSync(0, 'utf8');\n\
              console.log(process.argv.slice(2).join('|') + ':' + input.trim());\n";
    let done = TestJob::source("javascript", js)
        .stdin("42\n")
        .args(&["a", "b c"])
        .execute()
        .await;
    done.assert_succeeded();
    assert_eq!(done.entry("stdout.txt"), "a|b c:42\n");
}

#[tokio::test]
async fn files_written_to_out_appear_in_the_zip() {
    let c = r#"#include <stdio.h>
#include <sys/stat.h>
int main(void) {
    FILE *f = fopen("out/result.csv", "w"); fputs("x,y\n1,2\n", f); fclose(f);
    mkdir("out/plots", 0755);
    f = fopen("out/plots/p.txt", "w"); fputs("plot", f); fclose(f);
    f = fopen("not-in-out.txt", "w"); fputs("no", f); fclose(f);
    return 0;
}
"#;
    let done = TestJob::source("c", c).execute().await;
    done.assert_succeeded();
    assert_eq!(done.entry("out/result.csv"), "x,y\n1,2\n");
    assert_eq!(done.entry("out/plots/p.txt"), "plot");
    assert!(!done.zip.contains_key("not-in-out.txt"));
    assert!(
        !done.zip.keys().any(|k| k.contains("main")),
        "{:?}",
        done.names()
    );
}

#[tokio::test]
async fn several_files_are_compiled_together_and_data_files_are_readable() {
    let job = TestJob::new(
        "c",
        &[
            (
                "main.c",
                "#include <stdio.h>\n#include \"util.h\"\nint main(void) { char s[32]; FILE *f = fopen(\"data.txt\", \"r\"); fgets(s, 32, f); printf(\"%d %s\", twice(21), s); return 0; }\n",
            ),
            ("util.c", "int twice(int x) { return 2 * x; }\n"),
            ("util.h", "int twice(int x);\n"),
            ("data.txt", "data\n"),
        ],
    );
    let done = job.execute().await;
    done.assert_succeeded();
    assert_eq!(done.entry("stdout.txt"), "42 data\n");
}

#[tokio::test]
async fn a_compile_error_comes_with_the_compilers_message() {
    let done = TestJob::source("c", "int main(void) { return undefined_name; }\n")
        .execute()
        .await;
    done.assert_failed(Reason::CompileError);
    let compile = done.entry("compile.txt");
    assert!(compile.contains("undefined_name"), "{compile}");
    assert!(compile.contains("error"), "{compile}");
    assert!(done.report.compile_output.contains("undefined_name"));
    assert_eq!(done.report.timings_ms.run, None, "nothing ran");
    assert!(done.report.timings_ms.compile.is_some());
    assert!(
        done.report
            .message
            .as_deref()
            .unwrap()
            .starts_with("compilation failed")
    );
    assert_eq!(done.entry("stdout.txt"), "");

    let done = TestJob::source("go", "package main\n\nfunc main() { x := 1 }\n")
        .execute()
        .await;
    done.assert_failed(Reason::CompileError);
    assert!(
        done.entry("compile.txt")
            .contains("x declared but not used"),
        "{}",
        done.entry("compile.txt")
    );
}

#[tokio::test]
async fn a_non_zero_exit_is_a_runtime_error_with_its_code() {
    let done = TestJob::source(
        "c",
        "#include <stdio.h>\nint main(void) { fputs(\"bad\\n\", stderr); return 3; }\n",
    )
    .execute()
    .await;
    done.assert_failed(Reason::RuntimeError);
    assert_eq!((done.report.exit_code, done.report.signal), (Some(3), None));
    assert_eq!(done.entry("stderr.txt"), "bad\n");
    assert_eq!(done.report.stderr, "bad\n");
    assert_eq!(done.result()["exit_code"], 3);

    let done = TestJob::source("javascript", "throw new Error('boom');\n")
        .execute()
        .await;
    done.assert_failed(Reason::RuntimeError);
    assert_eq!(done.report.exit_code, Some(1));
    assert!(done.entry("stderr.txt").contains("Error: boom"));
}

#[tokio::test]
async fn a_segfault_records_signal_11() {
    let c = "int main(void) { volatile int *p = 0; return *p; }\n";
    let done = TestJob::source("c", c).execute().await;
    done.assert_failed(Reason::RuntimeError);
    assert_eq!(
        (done.report.exit_code, done.report.signal),
        (None, Some(11))
    );
    assert_eq!(done.result()["signal"], 11);
    assert!(done.report.message.as_deref().unwrap().contains("SIGSEGV"));
}

#[tokio::test]
async fn an_abort_records_signal_6() {
    let c = "#include <stdlib.h>\nint main(void) { abort(); }\n";
    let done = TestJob::source("c", c).execute().await;
    done.assert_failed(Reason::RuntimeError);
    assert_eq!(done.report.signal, Some(6));
}

#[tokio::test]
async fn unsafe_file_names_are_refused_before_anything_runs() {
    let done = TestJob::new(
        "c",
        &[
            ("main.c", "int main(void){return 0;}"),
            ("../escape.c", "x"),
        ],
    )
    .execute()
    .await;
    done.assert_failed(Reason::InvalidInput);
    assert!(
        done.report
            .message
            .as_deref()
            .unwrap()
            .contains("../escape.c")
    );
    assert_eq!(done.names(), ["result.json"]);
}
