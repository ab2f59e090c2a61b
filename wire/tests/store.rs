//! The job store and the topology against a real nats-server: records change only by
//! compare-and-set and a terminal one never again; outcomes are reported once NATS is back;
//! a full object store refuses at once.

use std::time::{Duration, Instant};

use cola_testkit::TestNats;
use cola_wire::nats::{Topology, TopologyConfig};
use cola_wire::{
    Ending, JobId, JobKey, JobMessage, JobRecord, Language, Limits, Status, UserId, languages,
    names, nats::Transition,
};

#[tokio::test]
async fn job_records_change_only_by_compare_and_set_and_terminal_is_final() {
    let nats = TestNats::start().await;
    let jobs = &nats.topology.jobs;
    let msg = message("c");
    let key = JobKey::new(&msg.user, &msg.id);
    let record = JobRecord::queued(&msg, vec![], 0);
    let rev = jobs.create(&key, &record).await.unwrap();
    assert!(
        jobs.create(&key, &record).await.is_err(),
        "a second create must fail"
    );

    // A writer holding a stale revision loses and retries on the fresh record.
    jobs.kv
        .update(&key, cola_wire::nats::encode(&record), rev)
        .await
        .unwrap();
    let mut calls = 0;
    let t = jobs
        .transition(&key, |r| {
            calls += 1;
            r.status = Status::Running;
            true
        })
        .await
        .unwrap();
    assert!(matches!(t, Transition::Changed(ref r, _) if r.status == Status::Running));
    assert_eq!(calls, 1);

    let t = jobs.transition(&key, |r| {
        r.finish(Status::Cancelled, None, chrono_now());
        true
    });
    assert!(matches!(t.await.unwrap(), Transition::Changed(..)));
    let t = jobs.transition(&key, |r| {
        r.status = Status::Running;
        true
    });
    assert!(
        matches!(t.await.unwrap(), Transition::Unchanged(ref r, _) if r.status == Status::Cancelled)
    );
    assert_eq!(
        jobs.transition(
            &JobKey::new(&UserId::parse("bob").unwrap(), &JobId::new()),
            |_| true
        )
        .await
        .unwrap(),
        Transition::Missing
    );
    let _: Limits = record.limits;
}

#[tokio::test]
async fn topology_is_idempotent_and_survives_a_restart() {
    let mut nats = TestNats::start().await;
    let js = async_nats::jetstream::new(nats.client.clone());
    Topology::ensure(&js, &TopologyConfig::default())
        .await
        .unwrap();
    nats.server.restart().await.unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    Topology::open(&async_nats::jetstream::new(client))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_transition_from_a_known_revision_writes_once_or_falls_back() {
    let nats = TestNats::start().await;
    let jobs = &nats.topology.jobs;
    let msg = JobMessage {
        schedule: None,
        work: cola_wire::Work::Problem(serde_json::json!({"method": "bisection"})),
        ..message("numeric")
    };
    let key = JobKey::new(&msg.user, &msg.id);
    let record = JobRecord::queued(&msg, vec![], 0);
    let rev = jobs.create(&key, &record).await.unwrap();
    // Nobody wrote since: one write.
    let t = jobs
        .transition_from(&key, record.clone(), rev, |r| {
            r.status = Status::Running;
            true
        })
        .await
        .unwrap();
    let Transition::Changed(running, _) = t else {
        panic!("{t:?}")
    };
    assert_eq!(running.status, Status::Running);
    // A stale revision: the write fails and the change is made again on the fresh record.
    let mut seen = Vec::new();
    let t = jobs
        .transition_from(&key, record, rev, |r| {
            seen.push(r.status);
            r.result = Some(serde_json::json!({"root": 1.5}));
            r.finish(Status::Succeeded, None, chrono_now());
            true
        })
        .await
        .unwrap();
    assert_eq!(seen, [Status::Queued, Status::Running]);
    assert!(matches!(t, Transition::Changed(ref r, _) if r.status == Status::Succeeded));
    let (stored, _) = jobs.get(&key).await.unwrap().unwrap();
    assert_eq!(stored.result, Some(serde_json::json!({"root": 1.5})));
    assert_eq!(stored.problem.as_ref(), msg.work.problem());
}

#[tokio::test]
async fn an_object_put_in_one_round_trip_reads_back_as_usual() {
    use tokio::io::AsyncReadExt as _;
    let nats = TestNats::start().await;
    let outputs = &nats.topology.outputs;
    let small: Vec<u8> = b"result.json table.csv plot.svg".repeat(10);
    let large: Vec<u8> = (0..(2 * cola_wire::nats::OBJECT_CHUNK_BYTES + 12_345))
        .map(|i| (i % 251) as u8)
        .collect();
    for (name, data) in [
        ("alice/a-output.zip", &small),
        ("alice/b-output.zip", &large),
    ] {
        cola_wire::nats::put_new_object(&nats.topology.js, names::OUTPUTS_BUCKET, name, data)
            .await
            .unwrap();
        let info = outputs.info(name).await.unwrap();
        assert_eq!(info.size, data.len());
        let mut object = outputs.get(name).await.unwrap();
        let mut read = Vec::new();
        // Reading to the end checks the digest too.
        object.read_to_end(&mut read).await.unwrap();
        assert_eq!(&read, data, "{name}");
    }
    // The usual put replaces such an object.
    outputs
        .put("alice/a-output.zip", &mut &b"again"[..])
        .await
        .unwrap();
    let mut read = Vec::new();
    outputs
        .get("alice/a-output.zip")
        .await
        .unwrap()
        .read_to_end(&mut read)
        .await
        .unwrap();
    assert_eq!(read, b"again");
}

/// A message of alice's for a job in `language`, with the first language's default limits.
fn message(language: &str) -> JobMessage {
    JobMessage {
        schedule: None,
        request_id: None,
        id: JobId::new(),
        user: UserId::parse("alice").unwrap(),
        language: Language::parse(language).unwrap(),
        args: vec![],
        limits: languages()[0].default_limits,
        created_at: chrono_now(),
        work: cola_wire::Work::Inputs(Default::default()),
    }
}

/// A C job's message and its record, `running` as the middleware leaves it for an executor.
async fn running_job(nats: &TestNats) -> (JobMessage, JobKey) {
    let msg = message("c");
    let key = JobKey::new(&msg.user, &msg.id);
    let mut record = JobRecord::queued(&msg, vec![], 0);
    record.status = Status::Running;
    nats.topology.jobs.create(&key, &record).await.unwrap();
    (msg, key)
}

fn succeeded() -> cola_wire::RunReport {
    cola_wire::RunReport {
        status: Status::Succeeded,
        reason: None,
        exit_code: Some(0),
        signal: None,
        timings_ms: Default::default(),
        limits: languages()[0].default_limits,
        message: None,
        stdout: "hello\n".into(),
        stderr: String::new(),
        compile_output: String::new(),
        output_object: None,
    }
}

#[tokio::test]
async fn an_outcome_reported_while_nats_is_down_is_stored_once_it_is_back() {
    use cola_wire::nats::{Reported, report_outcome};
    use tokio::io::AsyncReadExt as _;
    let mut nats = TestNats::start().await;
    let (job, key) = running_job(&nats).await;
    // A client of its own, as an executor has, reconnecting by itself.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let topology = Topology::open_buckets(&async_nats::jetstream::new(client))
        .await
        .unwrap();
    let zip = b"PK the output zip".repeat(1000);

    // Down for longer than one attempt's acknowledgement may take (5 s).
    nats.server.stop().await;
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    let reporting = tokio::spawn({
        let (user, id, zip) = (job.user.clone(), job.id, zip.clone());
        async move { report_outcome(&topology, &user, &id, succeeded(), Some(&zip), until).await }
    });
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(!reporting.is_finished(), "{:?}", reporting.await);
    nats.server.start_again().await.unwrap();
    let reported = tokio::time::timeout(Duration::from_secs(30), reporting)
        .await
        .expect("the report ends once NATS is back")
        .unwrap()
        .unwrap();
    assert!(matches!(reported, Reported::Recorded(_)), "{reported:?}");

    let client = async_nats::connect(nats.url()).await.unwrap();
    let topology = Topology::open_buckets(&async_nats::jetstream::new(client))
        .await
        .unwrap();
    let (record, _) = topology.jobs.get(&key).await.unwrap().unwrap();
    assert_eq!(record.status, Status::Succeeded);
    let name = record.output_object.expect("the record names its zip");
    let mut stored = Vec::new();
    topology
        .outputs
        .get(&name)
        .await
        .unwrap()
        .read_to_end(&mut stored)
        .await
        .unwrap();
    assert_eq!(stored, zip);
}

#[tokio::test]
async fn a_full_object_store_refuses_a_zip_at_once_and_is_not_retried() {
    use cola_wire::nats::{put_new_object, report_outcome};
    let nats = TestNats::start_with(&TopologyConfig {
        outputs_max_bytes: 1024,
        ..TopologyConfig::default()
    })
    .await;
    let (job, key) = running_job(&nats).await;
    let zip = vec![7u8; 4096];
    let refused = put_new_object(&nats.topology.js, names::OUTPUTS_BUCKET, "alice/x", &zip)
        .await
        .unwrap_err();
    assert!(refused.is_refused(), "{refused:?}");

    let started = Instant::now();
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    let refused = report_outcome(
        &nats.topology,
        &job.user,
        &job.id,
        succeeded(),
        Some(&zip),
        until,
    )
    .await
    .unwrap_err();
    assert!(refused.is_refused(), "{refused:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let (record, _) = nats.topology.jobs.get(&key).await.unwrap().unwrap();
    assert_eq!(
        record.status,
        Status::Running,
        "the caller decides how it ends"
    );
}

fn chrono_now() -> cola_wire::job::Timestamp {
    cola_wire::job::now()
}

#[tokio::test]
async fn ending_a_job_ends_it_once_with_its_reason_and_keeps_an_earlier_end() {
    let nats = TestNats::start().await;
    let jobs = &nats.topology.jobs;
    let (_, key) = running_job(&nats).await;
    let late = Ending::failed(cola_wire::Reason::TimeLimit, "deadline");
    let Transition::Changed(ended, _) = jobs.end(&key, &late).await.unwrap() else {
        panic!("a running job ends");
    };
    assert_eq!(
        (ended.status, ended.reason, ended.message.as_deref()),
        (
            Status::Failed,
            Some(cola_wire::Reason::TimeLimit),
            Some("deadline")
        )
    );
    assert!(ended.finished_at.is_some() && ended.timings_ms.total.is_some());
    // A terminal record never changes again, whoever tries to end it next.
    let (record, revision) = jobs.get(&key).await.unwrap().unwrap();
    let again = jobs
        .end_from(&key, record, revision, &Ending::cancelled())
        .await
        .unwrap();
    assert!(matches!(again, Transition::Unchanged(r, _) if r.status == Status::Failed));
    assert_eq!(
        jobs.end(
            &JobKey::new(&UserId::parse("alice").unwrap(), &JobId::new()),
            &Ending::cancelled()
        )
        .await
        .unwrap(),
        Transition::Missing
    );
}
