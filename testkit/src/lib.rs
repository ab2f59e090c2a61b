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

    fn chrono_now() -> cola_wire::job::Timestamp {
        cola_wire::job::now()
    }
}
