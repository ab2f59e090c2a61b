//! `run` end to end: a job record in a real nats-server's KV, inputs inline or from the object
//! store, the zip stored, the record ended by compare-and-set.

mod common;

use std::{path::PathBuf, time::Duration};

use cola_executors::{ExecutorConfig, ExecutorError};
use cola_testkit::TestNats;
use cola_wire::{JobRecord, Reason, Status, Work, input_object::store_inputs, names};
use common::TestJob;
use tokio::io::AsyncReadExt;

/// A job whose record exists with `status`, and the config to run its executor.
struct Prepared {
    key: cola_wire::JobKey,
    config: ExecutorConfig,
    job_dir: PathBuf,
    _dir: tempfile::TempDir,
}

async fn prepare(nats: &TestNats, job: &TestJob, status: Status) -> Prepared {
    let mut message = job.message.clone();
    if message.work.input_object().is_none() {
        message.work = Work::Inputs(job.inputs.clone());
    }
    let mut record = JobRecord::queued(&message, Vec::new(), job.inputs.stdin.len() as u64);
    record.status = status;
    if status.is_terminal() {
        record.finish(status, None, cola_wire::job::now());
    }
    let key = cola_wire::JobKey::new(&message.user, &message.id);
    nats.topology.jobs.create(&key, &record).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job_file = dir.path().join("job.json");
    std::fs::write(&job_file, serde_json::to_vec(&message).unwrap()).unwrap();
    let job_dir = dir.path().join("job");
    std::fs::create_dir(&job_dir).unwrap();
    Prepared {
        key,
        config: ExecutorConfig {
            nats_url: nats.url(),
            job: cola_executors::JobSource::File(job_file),
            job_dir: job_dir.clone(),
            sandbox: job.config.clone(),
            steps: cola_executors::Steps::All,
        },
        job_dir,
        _dir: dir,
    }
}

async fn stored_zip(nats: &TestNats, name: &str) -> Option<common::ZipFiles> {
    let mut object = nats.topology.outputs.get(name).await.ok()?;
    let mut bytes = Vec::new();
    object.read_to_end(&mut bytes).await.unwrap();
    Some(common::unzip(&bytes))
}

const C_ECHO: &str = "#include <stdio.h>\nint main(void) { char s[64]; if (!fgets(s, 64, stdin)) return 1; printf(\"got %s\", s); return 0; }\n";

#[tokio::test]
async fn a_running_job_ends_succeeded_with_its_zip_stored() {
    let nats = TestNats::start().await;
    let job = TestJob::source("c", C_ECHO).stdin("hello\n");
    let prepared = prepare(&nats, &job, Status::Running).await;

    let report = cola_executors::run(prepared.config.clone())
        .await
        .unwrap()
        .expect("a job was given");
    assert_eq!((report.status, report.reason), (Status::Succeeded, None));
    let output = names::output_object(&job.message.user, &job.message.id);
    assert_eq!(report.output_object.as_deref(), Some(output.as_str()));

    let (record, _) = nats
        .topology
        .jobs
        .get(&prepared.key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, Status::Succeeded);
    assert_eq!(record.exit_code, Some(0));
    assert_eq!(record.stdout, "got hello\n");
    assert_eq!(record.output_object.as_deref(), Some(output.as_str()));
    assert!(record.finished_at.is_some() && record.timings_ms.run.is_some());

    let zip = stored_zip(&nats, &output).await.expect("the zip is stored");
    assert_eq!(zip.entry("stdout.txt"), "got hello\n");
    assert_eq!(zip.result()["status"], "succeeded");
    let left: Vec<_> = std::fs::read_dir(&prepared.job_dir).unwrap().collect();
    assert!(left.is_empty(), "the executor left {left:?}");
}

#[tokio::test]
async fn inputs_come_from_the_input_object() {
    let nats = TestNats::start().await;
    let mut job = TestJob::source("c", C_ECHO).stdin("from the object store\n");
    let object = names::input_object(&job.message.user, &job.message.id);
    store_inputs(&nats.topology.outputs, &object, &job.inputs)
        .await
        .unwrap();
    job.message.work = Work::InputObject(object);
    let prepared = prepare(&nats, &job, Status::Running).await;

    let report = cola_executors::run(prepared.config)
        .await
        .unwrap()
        .expect("a job was given");
    assert_eq!(report.status, Status::Succeeded, "{report:?}");
    assert_eq!(report.stdout, "got from the object store\n");
}

#[tokio::test]
async fn an_unreadable_input_object_is_invalid_input() {
    let nats = TestNats::start().await;
    let mut job = TestJob::source("c", C_ECHO);
    let object = names::input_object(&job.message.user, &job.message.id);
    nats.topology
        .outputs
        .put(object.as_str(), &mut &b"not a zip"[..])
        .await
        .unwrap();
    job.message.work = Work::InputObject(object);
    let prepared = prepare(&nats, &job, Status::Running).await;

    let report = cola_executors::run(prepared.config)
        .await
        .unwrap()
        .expect("a job was given");
    assert_eq!(
        (report.status, report.reason),
        (Status::Failed, Some(Reason::InvalidInput))
    );
    let (record, _) = nats
        .topology
        .jobs
        .get(&prepared.key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.reason, Some(Reason::InvalidInput));
}

#[tokio::test]
async fn a_job_already_ended_is_left_alone_and_not_run() {
    let nats = TestNats::start().await;
    let job = TestJob::source("c", C_ECHO);
    let prepared = prepare(&nats, &job, Status::Cancelled).await;
    let (_, revision) = nats
        .topology
        .jobs
        .get(&prepared.key)
        .await
        .unwrap()
        .unwrap();

    let report = cola_executors::run(prepared.config)
        .await
        .unwrap()
        .expect("a job was given");
    assert_eq!(report.status, Status::Cancelled);
    let (record, after) = nats
        .topology
        .jobs
        .get(&prepared.key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((record.status, after), (Status::Cancelled, revision));
    let output = names::output_object(&job.message.user, &job.message.id);
    assert!(stored_zip(&nats, &output).await.is_none());
}

#[tokio::test]
async fn a_job_cancelled_while_it_runs_stays_cancelled_and_its_zip_is_dropped() {
    let nats = TestNats::start().await;
    let job = TestJob::source(
        "c",
        "#include <unistd.h>\nint main(void) { sleep(1); return 0; }\n",
    );
    let prepared = prepare(&nats, &job, Status::Running).await;
    let work = prepared.job_dir.join("fs");
    let running = tokio::spawn(cola_executors::run(prepared.config.clone()));
    while !work.exists() {
        assert!(
            !running.is_finished(),
            "the executor ended before it started the job"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    nats.topology
        .jobs
        .transition(&prepared.key, |r| {
            r.finish(Status::Cancelled, None, cola_wire::job::now());
            true
        })
        .await
        .unwrap();

    let report = running.await.unwrap().unwrap().expect("a job was given");
    assert_eq!(report.status, Status::Cancelled);
    let (record, _) = nats
        .topology
        .jobs
        .get(&prepared.key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (record.status, record.output_object),
        (Status::Cancelled, None)
    );
    let output = names::output_object(&job.message.user, &job.message.id);
    assert!(
        stored_zip(&nats, &output).await.is_none(),
        "nobody will read that zip"
    );
}

#[tokio::test]
async fn a_job_without_a_record_is_an_error() {
    let nats = TestNats::start().await;
    let job = TestJob::source("c", C_ECHO);
    let prepared = prepare(&nats, &job, Status::Running).await;
    nats.topology.jobs.remove(&prepared.key).await.unwrap();
    let err = cola_executors::run(prepared.config).await.unwrap_err();
    assert!(
        matches!(err, ExecutorError::NoRecord(ref key) if *key == prepared.key),
        "{err}"
    );
}
