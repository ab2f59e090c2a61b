//! Test support shared by the crates' tests: a real `nats-server` per test, on a free port with
//! a temporary store, with cola's stream and buckets created exactly as `cola up` creates them;
//! or a three-node JetStream cluster ([`TestCluster`]) with them at three replicas.

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use cola_wire::nats::{LocalServer, Topology, TopologyConfig, free_port};

mod process;
pub use process::process_cpu;

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
        Self::start_with(&TopologyConfig::default()).await
    }

    /// Starts a server and creates the stream and buckets as `config` says (e.g. an object
    /// store of a few bytes, full at the first zip).
    pub async fn start_with(config: &TopologyConfig) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = LocalServer::spawn(&nats_server_binary(), &dir.path().join("nats"), 0)
            .await
            .expect("start nats-server");
        let client = async_nats::connect(server.url())
            .await
            .expect("connect to nats-server");
        let js = async_nats::jetstream::new(client.clone());
        let topology = Topology::ensure(&js, config)
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

/// A JetStream cluster of three `nats-server` nodes on loopback (client and route ports free at
/// start, one store directory each), with cola's stream and buckets at three replicas. Every
/// node still running is killed when dropped.
pub struct TestCluster {
    pub nodes: Vec<ClusterNode>,
    _dir: tempfile::TempDir,
}

/// One node of a [`TestCluster`].
pub struct ClusterNode {
    /// The node's `server_name`, as JetStream reports leaders and peers.
    pub name: String,
    pub port: u16,
    child: Option<tokio::process::Child>,
}

impl ClusterNode {
    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Whether the node has not been killed.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// How long a fresh cluster gets to elect its leaders and take cola's topology.
const CLUSTER_READY: Duration = Duration::from_secs(60);

impl TestCluster {
    /// Starts three nodes routed to each other, waits until JetStream answers, and creates the
    /// stream and buckets with `replicas: 3`.
    ///
    /// The nodes' ports must be chosen before any node starts (each names the others' routes), so
    /// another process may take one first: a node that exits at start-up makes the cluster start
    /// again on fresh ports (three tries).
    pub async fn start() -> Self {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start().await {
                Ok(cluster) => return cluster,
                Err(e) => last = e,
            }
        }
        panic!("the 3-node cluster did not start: {last}");
    }

    /// [`TestCluster::start`] once; `Err` when a node exited while the cluster formed.
    async fn try_start() -> Result<Self, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: Vec<(u16, u16)> = (0..3)
            .map(|_| {
                (
                    free_port().expect("a free port"),
                    free_port().expect("a free port"),
                )
            })
            .collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, route)| format!("\"nats-route://127.0.0.1:{route}\""))
            .collect();
        let mut nodes = Vec::new();
        for (i, (port, route)) in ports.iter().enumerate() {
            let name = format!("n{i}");
            let store = dir.path().join(&name);
            std::fs::create_dir_all(&store).expect("node store dir");
            let store_dir = format!("{:?}", store.to_string_lossy());
            // As `LocalServer`: an explicit store limit, so the topology's reservations fit on
            // a fuller disk (three nodes share it here, each reserving its replica).
            let config = format!(
                "server_name: {name}\nlisten: \"127.0.0.1:{port}\"\n\
                 jetstream {{\n  store_dir: {store_dir}\n  max_file_store: 16GB\n}}\n\
                 cluster {{\n  name: cola-test\n  listen: \"127.0.0.1:{route}\"\n  \
                 routes: [{}]\n}}\n",
                routes.join(", ")
            );
            let path = store.join("cola-nats.conf");
            std::fs::write(&path, config).expect("write the node's config");
            let child = tokio::process::Command::new(nats_server_binary())
                .arg("-c")
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(
                    std::fs::File::create(store.join("nats-server.log"))
                        .map(Stdio::from)
                        .unwrap_or_else(|_| Stdio::null()),
                )
                .kill_on_drop(true)
                .spawn()
                .expect("spawn nats-server (is it installed?)");
            nodes.push(ClusterNode {
                name,
                port: *port,
                child: Some(child),
            });
        }
        let mut cluster = Self { nodes, _dir: dir };
        let start = Instant::now();
        loop {
            match cluster.try_topology().await {
                Ok(()) => break,
                Err(e) => {
                    for node in &mut cluster.nodes {
                        if let Some(Ok(Some(status))) = node.child.as_mut().map(|c| c.try_wait()) {
                            let log = std::fs::read_to_string(
                                cluster._dir.path().join(&node.name).join("nats-server.log"),
                            )
                            .unwrap_or_default();
                            return Err(format!("node {} exited ({status}): {log}", node.name));
                        }
                    }
                    for node in &cluster.nodes {
                        assert!(
                            std::net::TcpStream::connect(("127.0.0.1", node.port)).is_ok()
                                || start.elapsed() < Duration::from_secs(10),
                            "cluster node {} does not listen on port {}",
                            node.name,
                            node.port
                        );
                    }
                    assert!(
                        start.elapsed() < CLUSTER_READY,
                        "the 3-node cluster did not take cola's topology (3 replicas) within \
                         {CLUSTER_READY:?}: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        Ok(cluster)
    }

    async fn try_topology(&self) -> Result<(), String> {
        let client = async_nats::connect(self.urls())
            .await
            .map_err(|e| e.to_string())?;
        let js = async_nats::jetstream::new(client);
        let config = TopologyConfig {
            replicas: 3,
            ..TopologyConfig::default()
        };
        Topology::ensure(&js, &config)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Client URLs of the nodes still running.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .map(ClusterNode::url)
            .collect()
    }

    /// Every node's client URL, comma-separated, as `--nats-url` takes a server list.
    pub fn url_list(&self) -> String {
        self.nodes
            .iter()
            .map(ClusterNode::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILLs the node named `name`, as a machine loss would, and waits for it to exit.
    pub async fn kill(&mut self, name: &str) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no cluster node {name}"));
        let mut child = node.child.take().expect("the node runs");
        child.kill().await.expect("kill nats-server");
    }
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
        let msg = message("c");
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
            problem: Some(serde_json::json!({"method": "bisection"})),
            ..message("numeric")
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

    /// A message of alice's for a job in `language`, with the first language's default limits.
    fn message(language: &str) -> JobMessage {
        JobMessage {
            id: JobId::new(),
            user: UserId::parse("alice").unwrap(),
            language: Language::parse(language).unwrap(),
            args: vec![],
            limits: languages()[0].default_limits,
            created_at: chrono_now(),
            inputs: None,
            input_object: None,
            problem: None,
        }
    }

    /// A C job's message and its record, `running` as the middleware leaves it for an executor.
    async fn running_job(nats: &TestNats) -> (JobMessage, String) {
        let msg = message("c");
        let key = names::job_key(&msg.user, &msg.id);
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
}
