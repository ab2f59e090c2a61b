//! A compiled job's steps in two containers, as the Kubernetes backend runs them: `cola executor
//! --sandbox container --step compile` (the Pod's init container), then `--step run` (its
//! executor container) in the same job directory, each a process of its own as a non-root user,
//! against a real nats-server, with the job's inputs in the object store as the backend puts them.

mod common;

use std::{
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Output},
};

use cola_testkit::TestNats;
use cola_wire::{
    InputFile, Inputs, JobId, JobKey, JobMessage, JobRecord, Language, Reason, Status, UserId,
    Work, input_object::store_inputs, language, names,
};
use common::COLA;

/// The executor images' user, as the Pod runs them (any non-root uid would do).
const EXECUTOR_UID: u32 = 10001;

/// A job whose record is running, its message in a file, and its empty job directory (the
/// Pod's work area).
struct Queued {
    key: JobKey,
    job_file: PathBuf,
    job_dir: PathBuf,
    _dir: tempfile::TempDir,
}

async fn queue(nats: &TestNats, lang: &str, files: &[(&str, &str)], stdin: &str) -> Queued {
    let name = Language::parse(lang).unwrap();
    let mut job = JobMessage {
        id: JobId::new(),
        user: UserId::parse("u0123456789abcdef").unwrap(),
        limits: language(&name).unwrap().default_limits,
        language: name,
        args: Vec::new(),
        created_at: cola_wire::job::now(),
        work: Work::Inputs(Inputs {
            files: files
                .iter()
                .map(|(name, content)| InputFile {
                    name: (*name).into(),
                    content: (*content).into(),
                })
                .collect(),
            stdin: stdin.into(),
        }),
    };
    let mut record = JobRecord::queued(&job, Vec::new(), stdin.len() as u64);
    record.status = Status::Running;
    let key = JobKey::new(&job.user, &job.id);
    nats.topology.jobs.create(&key, &record).await.unwrap();
    let object = names::input_object(&job.user, &job.id);
    store_inputs(&nats.topology.outputs, &object, job.work.inputs().unwrap())
        .await
        .unwrap();
    job.work = Work::InputObject(object);

    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let job_file = dir.path().join("job.json");
    std::fs::write(&job_file, serde_json::to_vec(&job).unwrap()).unwrap();
    std::fs::set_permissions(&job_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let job_dir = dir.path().join("work");
    std::fs::create_dir(&job_dir).unwrap();
    std::os::unix::fs::chown(&job_dir, Some(EXECUTOR_UID), Some(EXECUTOR_UID)).unwrap();
    Queued {
        key,
        job_file,
        job_dir,
        _dir: dir,
    }
}

/// `cola executor --step <step>` on `queued`, as the executor's user.
fn executor(nats: &TestNats, queued: &Queued, step: &str) -> Output {
    let output = Command::new(COLA)
        .args(["executor", "--sandbox", "container", "--step", step])
        .arg("--job-file")
        .arg(&queued.job_file)
        .arg("--job-dir")
        .arg(&queued.job_dir)
        .args(["--nats-url", &nats.url()])
        .env("TMPDIR", "/tmp")
        .uid(EXECUTOR_UID)
        .gid(EXECUTOR_UID)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "--step {step}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

async fn record(nats: &TestNats, key: &JobKey) -> JobRecord {
    nats.topology.jobs.get(key).await.unwrap().unwrap().0
}

fn left_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

const C_ECHO: &str = "#include <stdio.h>\nint main(void) { char s[64]; if (!fgets(s, 64, stdin)) return 1; printf(\"got %s\", s); return 0; }\n";

#[tokio::test]
async fn the_run_container_runs_what_the_compile_container_compiled() {
    let nats = TestNats::start().await;
    let queued = queue(&nats, "c", &[("main.c", C_ECHO)], "hello\n").await;

    executor(&nats, &queued, "compile");
    // Compiled, handed on, and nothing recorded yet: the run step's executor reports.
    assert_eq!(left_in(&queued.job_dir).len(), 2, "fs/ and logs/");
    assert_eq!(record(&nats, &queued.key).await.status, Status::Running);

    executor(&nats, &queued, "run");
    let r = record(&nats, &queued.key).await;
    assert_eq!((r.status, r.reason), (Status::Succeeded, None), "{r:?}");
    assert_eq!(r.stdout, "got hello\n");
    assert!(r.timings_ms.compile.is_some() && r.timings_ms.run.is_some());
    assert!(r.output_object.is_some());
    assert!(
        left_in(&queued.job_dir).is_empty(),
        "the run step cleans up"
    );
}

#[tokio::test]
async fn a_compile_error_or_a_refused_file_is_reported_by_the_run_container() {
    let nats = TestNats::start().await;
    let broken = queue(
        &nats,
        "c",
        &[("main.c", "int main(void) { return x; }\n")],
        "",
    )
    .await;
    executor(&nats, &broken, "compile");
    executor(&nats, &broken, "run");
    let r = record(&nats, &broken.key).await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Failed, Some(Reason::CompileError)),
        "{r:?}"
    );
    assert!(r.compile_output.contains("error"), "{r:?}");
    assert!(r.timings_ms.compile.is_some() && r.timings_ms.run.is_none());

    let option = queue(&nats, "c", &[("main.c", C_ECHO), ("-o.c", "int f;\n")], "").await;
    executor(&nats, &option, "compile");
    executor(&nats, &option, "run");
    let r = record(&nats, &option.key).await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Failed, Some(Reason::InvalidInput)),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_run_container_without_its_compile_container_fails_internal_error() {
    let nats = TestNats::start().await;
    let queued = queue(&nats, "c", &[("main.c", C_ECHO)], "").await;
    executor(&nats, &queued, "run");
    let r = record(&nats, &queued.key).await;
    assert_eq!(
        (r.status, r.reason),
        (Status::Failed, Some(Reason::InternalError)),
        "{r:?}"
    );
}

#[tokio::test]
async fn only_the_container_sandbox_splits_a_job() {
    let nats = TestNats::start().await;
    let queued = queue(&nats, "c", &[("main.c", C_ECHO)], "").await;
    let output = Command::new(COLA)
        .args(["executor", "--step", "compile"])
        .arg("--job-file")
        .arg(&queued.job_file)
        .arg("--job-dir")
        .arg(&queued.job_dir)
        .args(["--nats-url", &nats.url()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("only in the container sandbox"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
