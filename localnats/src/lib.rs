//! A `nats-server` with JetStream, run as a child process with its store in a directory: the
//! server `cola up` starts on one machine, and the one every test gets (through `cola-testkit`).
//!
//! Launching processes is kept out of `cola-wire`, which only describes what travels on NATS.

#![forbid(unsafe_code)]

use std::{
    io::Write as _,
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("could not start nats-server: {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not start nats-server: {0}")]
    NotReady(String),
}

impl LaunchError {
    fn io(what: impl std::fmt::Display, source: std::io::Error) -> Self {
        Self::Io {
            what: what.to_string(),
            source,
        }
    }
}

/// A `nats-server` with JetStream on loopback. Killed when dropped.
pub struct LocalServer {
    child: tokio::process::Child,
    pub port: u16,
    pub store: PathBuf,
    binary: PathBuf,
    /// Configuration before the JetStream block (an MQTT listener, say).
    extra: String,
}

/// The user MQTT devices log in as: it may only publish energy telemetry.
pub const TELEMETRY_USER: &str = "cola-telemetry";

/// NATS's own MQTT listener, for devices that may publish `subjects` (e.g. `energy.*`, the MQTT
/// topics `energy/<node>`) and nothing else. On a loopback address they may come without
/// credentials; elsewhere they log in as [`TELEMETRY_USER`] with `password`, which is then
/// required. Every other client keeps connecting as before, without credentials (as the
/// server's `no_auth_user`), over plain NATS only.
#[derive(Debug, Clone)]
pub struct MqttListener {
    pub listen: SocketAddr,
    pub password: Option<String>,
    /// What devices may publish (a NATS subject, wildcards allowed).
    pub subjects: String,
}

impl MqttListener {
    /// The server configuration that turns the listener on (before the JetStream block).
    pub fn config(&self) -> Result<String, LaunchError> {
        let anonymous = match (&self.password, self.listen.ip().is_loopback()) {
            (Some(password), _) if password.len() < 12 => {
                return Err(LaunchError::NotReady(
                    "the MQTT password must have at least 12 characters".into(),
                ));
            }
            (Some(_), _) => false,
            (None, true) => true,
            (None, false) => {
                return Err(LaunchError::NotReady(format!(
                    "an MQTT listener on {} (not loopback) needs a password for its devices \
                     (COLA_MQTT_PASSWORD; they log in as {TELEMETRY_USER})",
                    self.listen
                )));
            }
        };
        let quote = |s: &str| serde_json::to_string(s).expect("a string serializes");
        // Nobody logs in as the local user: its password is random and never kept.
        let local_password = random_secret()?;
        let telemetry_password = match &self.password {
            Some(password) => password.clone(),
            None => random_secret()?,
        };
        let anonymous_devices = if anonymous {
            format!("  no_auth_user: {}\n", quote(TELEMETRY_USER))
        } else {
            String::new()
        };
        Ok(format!(
            "server_name: cola-up\n\
             authorization {{\n\
             \x20 users: [\n\
             \x20   {{user: cola, password: {local}, allowed_connection_types: [\"STANDARD\"]}}\n\
             \x20   {{user: {telemetry}, password: {device}, allowed_connection_types: [\"MQTT\"], \
             permissions: {{publish: {{allow: [{subjects}]}}, subscribe: {{deny: [\">\"]}}}}}}\n\
             \x20 ]\n\
             }}\n\
             no_auth_user: cola\n\
             mqtt {{\n\
             \x20 listen: {listen}\n\
             {anonymous_devices}\
             }}\n",
            local = quote(&local_password),
            telemetry = quote(TELEMETRY_USER),
            device = quote(&telemetry_password),
            listen = quote(&self.listen.to_string()),
            subjects = quote(&self.subjects),
        ))
    }
}

/// 32 random bytes from the kernel, as hex.
fn random_secret() -> Result<String, LaunchError> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| LaunchError::io("/dev/urandom", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl LocalServer {
    /// Starts `binary` on 127.0.0.1:`port` (0 = a port the server picks itself, so no other
    /// process can take it between choosing and binding) with its store under `store`, and
    /// waits until it accepts connections.
    pub async fn spawn(binary: &Path, store: &Path, port: u16) -> Result<Self, LaunchError> {
        Self::spawn_with(binary, store, port, String::new()).await
    }

    /// [`spawn`](Self::spawn), with `extra` configuration before the JetStream block (e.g.
    /// [`MqttListener::config`]).
    pub async fn spawn_with(
        binary: &Path,
        store: &Path,
        port: u16,
        extra: String,
    ) -> Result<Self, LaunchError> {
        let (child, port) = start(binary, store, (port != 0).then_some(port), &extra).await?;
        Ok(Self {
            child,
            port,
            store: store.to_owned(),
            binary: binary.to_owned(),
            extra,
        })
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (as a crash would: SIGKILL) and starts it again on the same port and store.
    pub async fn restart(&mut self) -> Result<(), LaunchError> {
        self.stop().await;
        self.start_again().await
    }

    /// Kills the server (SIGKILL) and waits for it to exit; [`start_again`](Self::start_again)
    /// brings it back.
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Starts the server again on the same port and store after [`stop`](Self::stop).
    pub async fn start_again(&mut self) -> Result<(), LaunchError> {
        self.child = start(&self.binary, &self.store, Some(self.port), &self.extra)
            .await?
            .0;
        Ok(())
    }
}

/// The JetStream store limit of every server started here.
///
/// JetStream's own default is 75% of the disk free at start: on a fuller disk it refuses the
/// topology's reservations (about 10.4 GiB in all), though a bucket only ever takes what is
/// written to it. An explicit limit above the reservations keeps `cola up` (and every test
/// server) working on any disk; the buckets' limits bound the real use.
pub const MAX_FILE_STORE: &str = "16GB";

/// Writes `cola-nats.conf` in `store`: JetStream with its store there (limited to
/// [`MAX_FILE_STORE`]), after `extra` (more configuration, e.g. a server name and a cluster).
/// Its path.
pub fn write_config(store: &Path, extra: &str) -> Result<PathBuf, LaunchError> {
    std::fs::create_dir_all(store).map_err(|e| LaunchError::io(store.display(), e))?;
    let config = store.join("cola-nats.conf");
    let store_dir = serde_json::to_string(&store.to_string_lossy()).expect("a path serializes");
    let text = format!(
        "{extra}jetstream {{\n  store_dir: {store_dir}\n  max_file_store: {MAX_FILE_STORE}\n}}\n"
    );
    // Only its owner reads it: it may hold passwords.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&config)
        .map_err(|e| LaunchError::io(config.display(), e))?;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| LaunchError::io(config.display(), e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| LaunchError::io(config.display(), e))?;
    Ok(config)
}

/// Starts a server on `port`, or on a port of its own choosing (`None`), which it then reports
/// in a ports file in `store`. Returns the server and its port once it accepts connections.
async fn start(
    binary: &Path,
    store: &Path,
    port: Option<u16>,
    extra: &str,
) -> Result<(tokio::process::Child, u16), LaunchError> {
    let config = write_config(store, extra)?;
    let mut command = tokio::process::Command::new(binary);
    command.args(["-a", "127.0.0.1", "-c"]).arg(&config);
    match port {
        Some(port) => command.args(["-p", &port.to_string()]),
        None => command.args(["-p", "-1", "--ports_file_dir"]).arg(store),
    };
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| LaunchError::io(binary.display(), e))?;
    let pid = child.id();
    for _ in 0..200 {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| LaunchError::io("nats-server", e))?
        {
            let port = port.map_or_else(|| "its port".into(), |p| format!("port {p}"));
            return Err(LaunchError::NotReady(format!(
                "nats-server exited at start ({status}); is {port} taken?"
            )));
        }
        let listening = port.or_else(|| pid.and_then(|pid| reported_port(store, pid)));
        if let Some(port) = listening {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok((child, port));
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(LaunchError::NotReady(
        "nats-server did not accept connections within 5 s".into(),
    ))
}

/// The client port a server with `pid` wrote to its ports file
/// (`<executable>_<pid>.ports` in `dir`: `{"nats": ["nats://127.0.0.1:<port>"], ...}`).
fn reported_port(dir: &Path, pid: u32) -> Option<u16> {
    let suffix = format!("_{pid}.ports");
    let file = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with(&suffix))?;
    let ports: serde_json::Value =
        serde_json::from_slice(&std::fs::read(file.path()).ok()?).ok()?;
    let url = ports["nats"].as_array()?.first()?.as_str()?;
    url.rsplit(':').next()?.parse().ok()
}

/// A TCP port on loopback that nobody listens on right now.
pub fn free_port() -> Result<u16, LaunchError> {
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).map_err(|e| LaunchError::io("a free port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| LaunchError::io("a free port", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_limits_the_store_and_keeps_what_comes_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("a \"quoted\" store");
        let path = write_config(&store, "server_name: n0\n").unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.starts_with("server_name: n0\njetstream {\n"), "{text}");
        assert!(text.contains("max_file_store: 16GB"), "{text}");
        // The path is quoted as JSON, which the server's configuration syntax reads back.
        assert!(text.contains(r#"a \"quoted\" store"#), "{text}");
    }

    #[test]
    fn an_mqtt_listener_lets_devices_publish_telemetry_only() {
        let loopback = MqttListener {
            listen: "127.0.0.1:1883".parse().unwrap(),
            password: None,
            subjects: "energy.*".into(),
        };
        let text = loopback.config().unwrap();
        assert!(text.contains(r#"listen: "127.0.0.1:1883""#), "{text}");
        assert!(text.contains(r#"no_auth_user: "cola-telemetry""#), "{text}");
        assert!(text.contains(r#"publish: {allow: ["energy.*"]}"#), "{text}");
        assert!(text.contains("no_auth_user: cola\n"), "{text}");
        // Each start makes its own secrets.
        assert_ne!(text, loopback.config().unwrap());
        let open = MqttListener {
            listen: "0.0.0.0:1883".parse().unwrap(),
            password: None,
            subjects: "energy.*".into(),
        };
        assert!(
            open.config()
                .unwrap_err()
                .to_string()
                .contains("COLA_MQTT_PASSWORD")
        );
        let short = MqttListener {
            password: Some("short".into()),
            ..open.clone()
        };
        assert!(short.config().is_err());
        let guarded = MqttListener {
            password: Some("a-long-device-password".into()),
            ..open
        };
        let text = guarded.config().unwrap();
        assert!(text.contains(r#""a-long-device-password""#), "{text}");
        assert!(
            !text.contains(r#"no_auth_user: "cola-telemetry""#),
            "{text}"
        );
    }

    #[test]
    fn a_missing_binary_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let Err(error) = runtime.block_on(LocalServer::spawn(
            Path::new("/nonexistent/nats-server"),
            dir.path(),
            0,
        )) else {
            panic!("a missing binary started");
        };
        assert!(
            error.to_string().contains("/nonexistent/nats-server"),
            "{error}"
        );
    }
}
