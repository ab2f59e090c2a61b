//! Every limit is enforced, and each has its own reason.

mod common;

use std::time::{Duration, Instant};

use cola_executors::SandboxConfig;
use cola_wire::Reason;
use common::TestJob;

#[tokio::test]
async fn an_endless_loop_hits_the_cpu_limit() {
    let started = Instant::now();
    let done = TestJob::source("c", "int main(void) { for (;;) {} }\n")
        .limits(|l| {
            l.cpu_time_ms = 1_000;
            l.wall_time_ms = 6_000;
        })
        .execute()
        .await;
    done.assert_failed(Reason::TimeLimit);
    // Stopped by its rlimit (SIGXCPU) or by the executor, which measures its cgroup (SIGKILL).
    assert!(
        matches!(done.report.signal, Some(libc::SIGXCPU | libc::SIGKILL)),
        "{:?}",
        done.report
    );
    assert!(
        done.report
            .message
            .as_deref()
            .unwrap()
            .contains("CPU time limit of 1000 ms")
    );
    // Well before any wall-time limit would have stopped it (no speed test: CI is loaded).
    assert!(started.elapsed() < Duration::from_secs(15));
    // The CPU it used is reported: the compiler's and the loop's second, together.
    let cpu = done.report.timings_ms.cpu.unwrap();
    assert!((1_000..6_000).contains(&cpu), "{cpu} ms of CPU");
}

#[tokio::test]
async fn a_program_that_waits_forever_hits_the_wall_time_limit() {
    let started = Instant::now();
    let done = TestJob::source("javascript", "setInterval(() => {}, 1000);\n")
        .limits(|l| l.wall_time_ms = 1_000)
        .execute()
        .await;
    done.assert_failed(Reason::TimeLimit);
    assert!(
        done.report
            .message
            .as_deref()
            .unwrap()
            .contains("wall time limit of 1000 ms")
    );
    let run = done.report.timings_ms.run.unwrap();
    assert!((1_000..6_000).contains(&run), "run took {run} ms");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn a_c_allocation_bomb_hits_the_memory_limit() {
    let c = r#"#include <stdlib.h>
#include <string.h>
int main(void) { for (;;) { char *p = malloc(1 << 20); memset(p, 1, 1 << 20); } }
"#;
    let done = TestJob::source("c", c)
        .limits(|l| l.memory_mb = 64)
        .execute()
        .await;
    done.assert_failed(Reason::MemoryLimit);
    let message = done.report.message.clone().unwrap();
    assert!(message.contains("limit of 64 MB"), "{message}");
}

#[tokio::test]
async fn memory_is_what_a_program_touches_not_what_it_reserves() {
    let c = r#"#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    char *p = malloc(100u << 20);
    if (p == NULL) { perror("malloc"); return 1; }
    if (argc > 1) memset(p, argc, 100u << 20);
    printf("allocated %d\n", p[99u << 20]);
    return 0;
}
"#;
    // Reserved, never used: the cgroup holds nothing of it.
    let done = TestJob::source("c", c)
        .limits(|l| l.memory_mb = 64)
        .execute()
        .await;
    done.assert_succeeded();
    // Used: beyond the limit.
    let done = TestJob::source("c", c)
        .args(&["touch"])
        .limits(|l| l.memory_mb = 64)
        .execute()
        .await;
    done.assert_failed(Reason::MemoryLimit);
    // The same program with room to spare succeeds: the limit is the job's, not a constant.
    let done = TestJob::source("c", c)
        .args(&["touch"])
        .limits(|l| l.memory_mb = 256)
        .execute()
        .await;
    done.assert_succeeded();
}

#[tokio::test]
async fn a_javascript_allocation_bomb_hits_the_memory_limit() {
    let js = "const a = []; for (;;) { a.push(new Array(1e6).fill(1.5)); }\n";
    let done = TestJob::source("javascript", js)
        .limits(|l| l.memory_mb = 96)
        .execute()
        .await;
    done.assert_failed(Reason::MemoryLimit);
}

#[tokio::test]
async fn a_javascript_heap_exhaustion_is_a_memory_limit_every_time() {
    // It once ended `runtime_error` (V8's abort) in about one run of eight.
    let js = "const a = []; for (;;) { a.push({ n: a.length, s: 'x'.repeat(64) }); }\n";
    for run in 0..8 {
        let done = TestJob::source("javascript", js)
            .limits(|l| l.memory_mb = 128)
            .execute()
            .await;
        assert_eq!(
            done.report.reason,
            Some(Reason::MemoryLimit),
            "run {run}: {:?}",
            done.report
        );
    }
}

#[tokio::test]
async fn a_million_goroutines_are_a_memory_limit_not_an_output_limit() {
    // Go's out-of-memory crash dumps every goroutine's stack: a flood of stderr.
    let go = r#"package main

import "time"

func main() {
	for i := 0; i < 1000000; i++ {
		go func() { time.Sleep(time.Hour) }()
	}
	time.Sleep(time.Hour)
}
"#;
    let done = TestJob::source("go", go)
        .limits(|l| {
            l.memory_mb = 128;
            l.wall_time_ms = 20_000;
            l.cpu_time_ms = 20_000;
        })
        .execute()
        .await;
    done.assert_failed(Reason::MemoryLimit);
}

#[tokio::test]
async fn a_signal_a_program_raises_itself_is_not_a_limit() {
    for (signal, name) in [(libc::SIGXCPU, "SIGXCPU"), (libc::SIGXFSZ, "SIGXFSZ")] {
        let c = format!("#include <signal.h>\nint main(void) {{ raise({name}); return 0; }}\n");
        let done = TestJob::source("c", &c).execute().await;
        done.assert_failed(Reason::RuntimeError);
        assert_eq!(done.report.signal, Some(signal), "{:?}", done.report);
    }
}

#[tokio::test]
async fn a_chain_of_processes_cannot_use_more_than_the_cpu_limit() {
    // While the program sleeps, each process of a chain burns 300 ms of CPU, starts the next
    // and exits: every one stays far below its own RLIMIT_CPU, and none is waited for.
    let c = r#"#include <time.h>
#include <unistd.h>
int main(void) {
    if (fork() != 0) { for (;;) pause(); }
    for (;;) {
        clock_t start = clock();
        while (clock() - start < CLOCKS_PER_SEC * 3 / 10) {}
        if (fork() != 0) _exit(0);
    }
}
"#;
    let started = Instant::now();
    let done = TestJob::source("c", c)
        .limits(|l| {
            l.cpu_time_ms = 1_000;
            l.wall_time_ms = 20_000;
        })
        .execute()
        .await;
    done.assert_failed(Reason::TimeLimit);
    let message = done.report.message.clone().unwrap();
    assert!(message.contains("CPU time limit of 1000 ms"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "ran until {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_go_allocation_bomb_hits_the_memory_limit() {
    let go = r#"package main

func main() {
	var all [][]byte
	for {
		b := make([]byte, 1<<20)
		for i := range b {
			b[i] = 1
		}
		all = append(all, b)
	}
}
"#;
    let done = TestJob::source("go", go)
        .limits(|l| l.memory_mb = 64)
        .execute()
        .await;
    done.assert_failed(Reason::MemoryLimit);
}

#[tokio::test]
async fn endless_printing_hits_the_output_limit_and_the_zip_keeps_what_fits() {
    let c = "#include <stdio.h>\nint main(void) { for (;;) { puts(\"yes yes yes yes\"); fputs(\"err\\n\", stderr); } }\n";
    let done = TestJob::source("c", c)
        .limits(|l| l.output_kb = 64)
        .execute()
        .await;
    done.assert_failed(Reason::OutputLimit);
    let kept = done.zip["stdout.txt"].len() + done.zip["stderr.txt"].len();
    assert_eq!(kept, 64 * 1024, "exactly the limit is kept");
    assert!(done.entry("stdout.txt").starts_with("yes yes yes yes\n"));
    assert_eq!(done.result()["reason"], "output_limit");
    assert!(done.report.stdout.len() <= 64 * 1024);
}

#[tokio::test]
async fn a_file_larger_than_the_output_limit_cannot_be_written() {
    let c = r#"#include <stdio.h>
int main(void) {
    FILE *f = fopen("out/big.bin", "w");
    static char block[4096];
    for (int i = 0; i < 1024; i++) fwrite(block, 1, sizeof block, f);
    fclose(f);
    puts("wrote it");
    return 0;
}
"#;
    let done = TestJob::source("c", c)
        .limits(|l| l.output_kb = 64)
        .execute()
        .await;
    done.assert_failed(Reason::OutputLimit);
    assert_eq!(done.report.signal, Some(libc::SIGXFSZ));
    assert!(done.zip["out/big.bin"].len() <= 64 * 1024);
}

#[tokio::test]
async fn forks_beyond_the_process_limit_fail() {
    let c = r#"#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>
int main(void) {
    int made = 0;
    for (int i = 0; i < 40; i++) {
        pid_t pid = fork();
        if (pid == 0) { sleep(5); _exit(0); }
        if (pid > 0) made++;
    }
    printf("%d\n", made);
    fflush(stdout);
    _exit(0);
}
"#;
    let done = TestJob::source("c", c)
        .limits(|l| l.processes = 10)
        .execute()
        .await;
    done.assert_succeeded();
    // The program itself is one of the 10.
    assert_eq!(done.entry("stdout.txt"), "9\n");
}

#[tokio::test]
async fn a_fork_bomb_is_contained() {
    // A uid range of its own, so that no other test's sandbox is counted below.
    let config = SandboxConfig {
        uid_base: 260_000,
        uid_count: 8,
        ..common::sandbox_config()
    };
    let started = Instant::now();
    let mut job = TestJob::source(
        "c",
        "#include <unistd.h>\nint main(void) { for (;;) fork(); }\n",
    )
    .limits(|l| {
        l.processes = 16;
        l.wall_time_ms = 1_500;
        l.cpu_time_ms = 1_000;
    });
    job.config = config.clone();
    let done = job.execute().await;
    done.assert_failed(Reason::TimeLimit);
    // Contained by its wall limit (generous slack: this is no speed test, and CI is loaded).
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    // Nothing of the sandbox outlives the job (the kernel tears a PID namespace down
    // asynchronously, so give it a moment), and the host still starts processes.
    let uids = config.uid_base..config.uid_base + config.uid_count;
    let mut survivors = processes_with_uid_in(uids.clone());
    for _ in 0..50 {
        if survivors.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        survivors = processes_with_uid_in(uids.clone());
    }
    assert!(survivors.is_empty(), "left running: {survivors:?}");
    assert!(
        std::process::Command::new("true")
            .status()
            .unwrap()
            .success()
    );
}

fn processes_with_uid_in(range: std::ops::Range<u32>) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        // A zombie runs nothing; the host's init reaps it in its own time.
        .filter(|status| !status.contains("State:\tZ"))
        .filter(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next()?.parse::<u32>().ok())
                .is_some_and(|uid| range.contains(&uid))
        })
        .map(|status| status.lines().take(3).collect::<Vec<_>>().join(" "))
        .collect()
}

#[tokio::test]
async fn a_compiler_over_its_limits_is_a_compile_error_with_a_clear_message() {
    // 30,000 errors: far more compiler output than the compile step's 1 MB.
    let c: String = (0..30_000)
        .map(|i| format!("int v{i} = undefined_{i};\n"))
        .collect();
    let done = TestJob::source("c", &c).execute().await;
    done.assert_failed(Reason::CompileError);
    let message = done.report.message.clone().unwrap();
    assert_eq!(
        message,
        "compilation stopped: the compiler exceeded its output limit of 1024 KB (stdout plus stderr)"
    );
    assert!(
        done.entry("compile.txt")
            .ends_with(&format!("[cola] {message}\n"))
    );
    assert_eq!(done.report.timings_ms.run, None);
}
