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
        schedule: None,
        request_id: None,
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

/// `cola executor --sandbox container` with `args` on `queued`'s job directory, as the
/// executor's user.
fn executor_command(nats: &TestNats, queued: &Queued, args: &[&str]) -> Command {
    let mut command = Command::new(COLA);
    command
        .args(["executor", "--sandbox", "container"])
        .args(args)
        .arg("--job-dir")
        .arg(&queued.job_dir)
        .args(["--nats-url", &nats.url()])
        .env("TMPDIR", "/tmp")
        .uid(EXECUTOR_UID)
        .gid(EXECUTOR_UID);
    command
}

/// `cola executor --step <step>` on `queued`'s job file, to its end.
fn executor(nats: &TestNats, queued: &Queued, step: &str) -> Output {
    let job_file = queued.job_file.to_str().unwrap();
    let output = executor_command(nats, queued, &["--step", step, "--job-file", job_file])
        .output()
        .unwrap();
    succeeded(output, step)
}

fn succeeded(output: Output, what: &str) -> Output {
    assert!(
        output.status.success(),
        "{what}: {}",
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

/// As in a Pod whose two containers start together: the run container waits for the compile
/// container's handoff, takes the job from it and runs the program.
#[tokio::test]
async fn the_run_container_waits_for_the_handoff_of_the_compile_container_beside_it() {
    let nats = TestNats::start().await;
    let queued = queue(&nats, "c", &[("main.c", C_ECHO)], "hi\n").await;
    let run = executor_command(&nats, &queued, &["--step", "run", "--job-from-handoff"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    executor(&nats, &queued, "compile");
    succeeded(run.wait_with_output().unwrap(), "run");
    let r = record(&nats, &queued.key).await;
    assert_eq!(
        (r.status, r.stdout.as_str()),
        (Status::Succeeded, "got hi\n"),
        "{r:?}"
    );
}

/// A pre-started Pod: its executors wait, connected, for a job the middleware hands over as a
/// request on the Pod's subject; the request is answered once the job is taken.
#[tokio::test]
async fn pre_started_executors_take_their_job_from_their_subject() {
    let nats = TestNats::start().await;
    let client = async_nats::connect(nats.url()).await.unwrap();

    // A compiled language: the compile container waits on the subject, the run container on
    // the handoff.
    let queued = queue(&nats, "c", &[("main.c", C_ECHO)], "warm\n").await;
    let subject = names::warm_subject("cola-job-warm-c-test1");
    let compile = executor_command(
        &nats,
        &queued,
        &["--step", "compile", "--job-subject", &subject],
    )
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let run = executor_command(&nats, &queued, &["--step", "run", "--job-from-handoff"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let message = std::fs::read(&queued.job_file).unwrap();
    hand_over(&client, &subject, message).await;
    succeeded(compile.wait_with_output().unwrap(), "compile");
    succeeded(run.wait_with_output().unwrap(), "run");
    let r = record(&nats, &queued.key).await;
    assert_eq!(
        (r.status, r.stdout.as_str()),
        (Status::Succeeded, "got warm\n"),
        "{r:?}"
    );

    // An interpreted language: one executor does it all.
    let js = "process.stdin.on('data', d => process.stdout.write('js ' + d));\n";
    let queued = queue(&nats, "javascript", &[("main.js", js)], "warm\n").await;
    let subject = names::warm_subject("cola-job-warm-javascript-test2");
    let executor = executor_command(&nats, &queued, &["--job-subject", &subject])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    hand_over(&client, &subject, std::fs::read(&queued.job_file).unwrap()).await;
    succeeded(executor.wait_with_output().unwrap(), "javascript");
    let r = record(&nats, &queued.key).await;
    assert_eq!(
        (r.status, r.stdout.as_str()),
        (Status::Succeeded, "js warm\n"),
        "{r:?}"
    );
}

/// Sends `message` as a request on `subject` once an executor listens there (until then the
/// server answers that nobody does), and waits for the executor's answer.
async fn hand_over(client: &async_nats::Client, subject: &str, message: Vec<u8>) {
    for _ in 0..200 {
        match client
            .request(subject.to_owned(), message.clone().into())
            .await
        {
            Ok(_) => return,
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("handing over the job: {e}"),
        }
    }
    panic!("no executor listened on {subject}");
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
    // (Run as root, which the container sandbox refuses too: the split is checked first.)
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("only in the container sandbox"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
