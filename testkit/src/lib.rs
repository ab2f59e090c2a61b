//! Test support shared by the crates' tests: a real `nats-server` per test, on a free port with
//! a temporary store, with cola's stream and buckets created exactly as `cola up` creates them;
//! or a three-node JetStream cluster ([`TestCluster`]) with them at three replicas.

#![forbid(unsafe_code)]

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use cola_localnats::write_config;
pub use cola_localnats::{LocalServer, free_port};
use cola_wire::{
    energy_store::EnergyStore,
    nats::{Topology, TopologyConfig},
};

mod process;
pub use process::process_cpu;

/// A running `nats-server` with JetStream and cola's topology. Killed when dropped.
pub struct TestNats {
    pub server: LocalServer,
    pub client: async_nats::Client,
    pub topology: Topology,
    /// The port of its MQTT listener, when it has one ([`TestNats::start_with_mqtt`]).
    pub mqtt_port: Option<u16>,
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
        Self::start_configured(config, None).await
    }

    /// Starts a server with an MQTT listener on loopback, as `cola up --mqtt-listen` does
    /// (devices publish `energy/<node>` without credentials, and nothing else), and creates the
    /// stream and buckets.
    pub async fn start_with_mqtt() -> Self {
        let port = free_port().expect("a free port");
        Self::start_configured(&TopologyConfig::default(), Some(port)).await
    }

    async fn start_configured(config: &TopologyConfig, mqtt_port: Option<u16>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let extra = match mqtt_port {
            Some(port) => cola_localnats::MqttListener {
                listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                password: None,
                subjects: cola_wire::names::ENERGY_SUBJECTS.into(),
            }
            .config()
            .expect("an MQTT configuration"),
            None => String::new(),
        };
        let binary = nats_server_binary();
        let server = LocalServer::spawn_with(&binary, &dir.path().join("nats"), 0, extra)
            .await
            .expect("start nats-server");
        let client = async_nats::connect(server.url())
            .await
            .expect("connect to nats-server");
        let js = async_nats::jetstream::new(client.clone());
        let topology = Topology::ensure(&js, config)
            .await
            .expect("create topology");
        EnergyStore::ensure(&js, config.replicas)
            .await
            .expect("create the energy buckets");
        Self {
            server,
            client,
            topology,
            mqtt_port,
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
            // As `LocalServer`'s: an explicit store limit, so the topology's reservations fit
            // on a fuller disk (three nodes share it here, each reserving its replica).
            let node = format!(
                "server_name: {name}\nlisten: \"127.0.0.1:{port}\"\n\
                 cluster {{\n  name: cola-test\n  listen: \"127.0.0.1:{route}\"\n  \
                 routes: [{}]\n}}\n",
                routes.join(", ")
            );
            let path = write_config(&store, &node).expect("write the node's config");
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
            .map_err(|e| e.to_string())?;
        EnergyStore::ensure(&js, config.replicas)
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
