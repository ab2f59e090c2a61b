//! Test support shared by the crates' tests: a real `nats-server` per test, on a free port with
//! a temporary store, with cola's stream and buckets created exactly as `cola up` creates them.

use std::path::PathBuf;

use cola_wire::nats::{LocalServer, Topology, TopologyConfig};

/// A running `nats-server` with JetStream and cola's topology. Killed when dropped.
pub struct TestNats {
    pub server: LocalServer,
    pub client: async_nats::Client,
    pub topology: Topology,
    _dir: tempfile::TempDir,
}

impl TestNats {
    /// Starts a server and creates the stream and buckets.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = LocalServer::spawn(&nats_server_binary(), &dir.path().join("nats"), 0)
            .await
            .expect("start nats-server");
        let client = async_nats::connect(server.url())
            .await
            .expect("connect to nats-server");
        let js = async_nats::jetstream::new(client.clone());
        let topology = Topology::ensure(&js, &TopologyConfig::default())
            .await
            .expect("create topology");
        Self {
            server,
            client,
            topology,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }
}

/// The `nats-server` binary: `$COLA_NATS_SERVER`, else the one on `PATH`.
pub fn nats_server_binary() -> PathBuf {
    std::env::var_os("COLA_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| "nats-server".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cola_wire::{
        JobId, JobMessage, JobRecord, Language, Limits, Status, UserId, languages, names,
        nats::Transition,
    };

    #[tokio::test]
    async fn job_records_change_only_by_compare_and_set_and_terminal_is_final() {
        let nats = TestNats::start().await;
        let jobs = &nats.topology.jobs;
        let msg = JobMessage {
            id: JobId::new(),
            user: UserId::parse("alice").unwrap(),
            language: Language::parse("c").unwrap(),
            args: vec![],
            limits: languages()[0].default_limits,
            created_at: chrono_now(),
            inputs: None,
            input_object: None,
            problem: None,
        };
        let key = names::job_key(&msg.user, &msg.id);
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
            jobs.transition("bob.x", |_| true).await.unwrap(),
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
            id: JobId::new(),
            user: UserId::parse("alice").unwrap(),
            language: Language::parse("numeric").unwrap(),
            args: vec![],
            limits: languages()[0].default_limits,
            created_at: chrono_now(),
            inputs: None,
            input_object: None,
            problem: Some(serde_json::json!({"method": "bisection"})),
        };
        let key = names::job_key(&msg.user, &msg.id);
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
        assert_eq!(stored.problem, msg.problem);
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

    fn chrono_now() -> cola_wire::job::Timestamp {
        cola_wire::job::now()
    }
}
