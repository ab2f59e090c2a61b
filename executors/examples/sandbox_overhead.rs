//! Measures what the sandbox costs: bubblewrap's start-up alone, and `execute` of hello world in
//! each language against the same toolchain commands run directly with the same environment
//! (and the same warm Go cache). Medians of N runs.
//!
//! `cargo build --release -p cola-executors --bins --examples &&
//! target/release/examples/sandbox_overhead [N]` (as root, like the process backend; the
//! sandbox's init is `cola-sandbox-init`, built beside the example).

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use cola_executors::{
    SandboxConfig,
    sandbox::{BASE_ENV, Output, Sandbox, SandboxPlan, SandboxUser, Step, WritableDirs},
};
use cola_wire::{InputFile, Inputs, JobId, JobMessage, LanguageDef, UserId, languages};

fn hello(lang: &LanguageDef) -> &'static str {
    match lang.name {
        "c" => "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n",
        "go" => "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n",
        _ => "console.log('hello');\n",
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The median time of `runs` calls of `f`, after one to warm up.
fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    f();
    median(
        (0..runs)
            .map(|_| {
                let started = Instant::now();
                f();
                started.elapsed()
            })
            .collect(),
    )
}

/// Compiles (if needed) and runs hello world in `dir` without a sandbox.
fn run_directly(lang: &LanguageDef, dir: &Path, go_cache: &Path) {
    let run = |argv: &[&str]| {
        let ok = Command::new(argv[0])
            .args(&argv[1..])
            .current_dir(dir)
            .env_clear()
            .envs(BASE_ENV.iter().chain(lang.env.iter()).copied())
            .env("GOCACHE", go_cache)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "{argv:?}");
    };
    if let Some(compile) = lang.compile {
        let _ = std::fs::remove_file(dir.join("main"));
        let argv: Vec<&str> = compile
            .iter()
            .map(|a| {
                if *a == "{sources}" {
                    lang.source_file
                } else {
                    a
                }
            })
            .collect();
        run(&argv);
    }
    run(lang.run);
}

fn bwrap_start_up(runs: usize, config: &SandboxConfig, scratch: &Path) {
    let dirs = WritableDirs {
        work: scratch.join("true"),
        tmp: scratch.join("true-tmp"),
    };
    let user = SandboxUser::for_job(&JobId::new(), config.uid_base, config.uid_count).unwrap();
    for dir in [&dirs.work, &dirs.tmp] {
        std::fs::create_dir(dir).unwrap();
        if let Some((uid, gid)) = user.host_ids() {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
        }
    }
    let step = Step {
        command: vec!["true".into()],
        env: Vec::new(),
        limits: languages()[0].default_limits,
        max_file_bytes: 1 << 20,
        stdin: None,
        output: Output::Merged(scratch.join("true.log")),
    };
    let plan = SandboxPlan::for_steps(
        &step,
        &[],
        Vec::new(),
        cola_executors::sandbox::system::dirs_for(languages()),
    );
    let log = scratch.join("sandbox.log");
    let start = || Sandbox::start(config, user.host_ids(), &dirs, &plan, &log).unwrap();
    let started = time(runs, || drop(start()));
    let mut up = Vec::new();
    let mut down = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let s = start();
        up.push(t.elapsed());
        let t = Instant::now();
        drop(s);
        down.push(t.elapsed());
    }
    println!("sandbox up {:.1?}, down {:.1?}", median(up), median(down));
    let sandbox = start();
    let step_in_sandbox = time(runs, || {
        // A step's output files are made anew (never over one that is there).
        let _ = std::fs::remove_file(scratch.join("true.log"));
        sandbox.run(&step).unwrap();
    });
    let direct = time(runs, || {
        Command::new("true").status().unwrap();
    });
    println!(
        "true: directly {direct:.1?}; a sandbox started and stopped {started:.1?}, a step in a running one {step_in_sandbox:.1?} (+{:.1?})",
        step_in_sandbox.saturating_sub(direct)
    );
}

async fn hello_world(runs: usize, lang: &LanguageDef, config: &SandboxConfig, scratch: &Path) {
    let dir = scratch.join(format!("direct-{}", lang.name));
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(lang.source_file), hello(lang)).unwrap();
    let go_cache = config.go_cache.as_deref().unwrap();
    let direct = time(runs, || run_directly(lang, &dir, go_cache));

    let job = JobMessage {
        schedule: None,
        request_id: None,
        id: JobId::new(),
        user: UserId::parse("bench").unwrap(),
        language: lang.id(),
        args: Vec::new(),
        limits: lang.default_limits,
        created_at: cola_wire::job::now(),
        work: cola_wire::Work::Inputs(Default::default()),
    };
    let inputs = Inputs {
        files: vec![InputFile {
            name: lang.source_file.into(),
            content: hello(lang).into(),
        }],
        stdin: String::new(),
    };
    let job_dir = scratch.join(format!("job-{}", lang.name));
    std::fs::create_dir(&job_dir).unwrap();
    let (mut total, mut compile, mut run) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..=runs {
        let started = Instant::now();
        let done = cola_executors::execute(lang, &job, &inputs, &job_dir, config)
            .await
            .unwrap();
        assert_eq!(done.report.stdout, "hello\n");
        if i > 0 {
            total.push(started.elapsed());
            let timings = done.report.timings_ms;
            compile.push(Duration::from_millis(timings.compile.unwrap_or(0)));
            run.push(Duration::from_millis(timings.run.unwrap_or(0)));
        }
    }
    let total = median(total);
    println!(
        "{}: directly {direct:.1?}, execute() {total:.1?} (compile step {:?}, run step {:?}) = {:.2}x",
        lang.name,
        median(compile),
        median(run),
        total.as_secs_f64() / direct.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let scratch = tempfile::tempdir().unwrap();
    let go_cache = scratch.path().join("go-cache");
    cola_executors::prepare_go_cache(&go_cache).unwrap();
    let init = cola_executors::sandbox::init::standalone().unwrap();
    let config = SandboxConfig {
        go_cache: Some(go_cache),
        init,
        ..SandboxConfig::default()
    };
    bwrap_start_up(runs, &config, scratch.path());
    for lang in languages().iter().filter(|l| !l.is_numeric()) {
        hello_world(runs, lang, &config, scratch.path()).await;
    }
}
