//! Service configurations built from flags, shared by `cola up` and the single-service commands.

use std::{path::Path, process::ExitCode, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use cola_middleware::{
    Backend, MiddlewareConfig,
    process::{ProcessBackend, ProcessBackendConfig},
};
use cola_wire::nats::{Topology, TopologyConfig};

use crate::cli::{ExecutorArgs, GatewayFlags, MiddlewareFlags, SandboxFlags};

/// The gateway's configuration; `dev` offers the "continue as local developer" login.
pub fn gateway_config(
    flags: &GatewayFlags,
    nats_url: &str,
    dev: bool,
) -> anyhow::Result<cola_gateway::GatewayConfig> {
    let oidc = cola_gateway::config::OidcConfig::from_options(
        flags.oidc_issuer.clone(),
        flags.oidc_client_id.clone(),
        flags.oidc_client_secret.clone(),
        flags.allowed_domains.clone(),
        flags.allowed_emails.clone(),
    )?;
    let config = cola_gateway::GatewayConfig {
        listen: flags.listen,
        nats_url: nats_url.to_owned(),
        max_body_bytes: flags.max_body_bytes,
        public_url: flags.public_url.clone(),
        oidc,
        dev,
        session_idle: Duration::from_secs(flags.session_idle_minutes.saturating_mul(60)),
        ..cola_gateway::GatewayConfig::default()
    };
    config.validate()?;
    Ok(config)
}

pub fn topology_config(flags: &MiddlewareFlags) -> anyhow::Result<TopologyConfig> {
    if !(1..=5).contains(&flags.replicas) {
        bail!("--replicas must be between 1 and 5");
    }
    if !(1..=3650).contains(&flags.retention_days) {
        bail!("--retention-days must be between 1 and 3650");
    }
    Ok(TopologyConfig {
        replicas: flags.replicas,
        retention: Duration::from_secs(flags.retention_days * 24 * 3600),
        ..TopologyConfig::default()
    })
}

/// The middleware configuration and its process backend. `go_cache` is a prepared warm Go
/// build cache to share with executors.
pub fn middleware(
    flags: &MiddlewareFlags,
    sandbox: &SandboxFlags,
    data_dir: &Path,
    nats_url: &str,
    go_cache: Option<&Path>,
) -> anyhow::Result<(MiddlewareConfig, Arc<dyn Backend>)> {
    let config = MiddlewareConfig {
        nats_url: nats_url.to_owned(),
        concurrency: flags
            .concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        grace: Duration::from_secs(flags.grace_seconds),
        ack_wait: Duration::from_secs(flags.ack_wait_seconds),
        topology: topology_config(flags)?,
    };
    config.validate()?;
    if !sandbox.bwrap.exists() {
        bail!(
            "bubblewrap not found at {} (install the Debian package bubblewrap)",
            sandbox.bwrap.display()
        );
    }
    let mut executor_args = vec![
        "--bwrap".to_owned(),
        sandbox.bwrap.display().to_string(),
        "--uid-base".to_owned(),
        sandbox.uid_base.to_string(),
        "--uid-count".to_owned(),
        sandbox.uid_count.to_string(),
    ];
    if let Some(cache) = go_cache {
        executor_args.extend(["--go-cache".to_owned(), cache.display().to_string()]);
    }
    let backend = ProcessBackend::new(ProcessBackendConfig {
        executor_bin: std::env::current_exe().context("locating the cola binary")?,
        jobs_dir: absolute(&data_dir.join("jobs"))?,
        nats_url: nats_url.to_owned(),
        executor_args,
    })?;
    Ok((config, Arc::new(backend)))
}

pub fn sandbox_config(
    flags: &SandboxFlags,
    go_cache: Option<&Path>,
) -> cola_executors::SandboxConfig {
    cola_executors::SandboxConfig {
        bwrap: flags.bwrap.clone(),
        uid_base: flags.uid_base,
        uid_count: flags.uid_count,
        go_cache: go_cache.map(Path::to_owned),
        ..cola_executors::SandboxConfig::default()
    }
}

/// `cola executor`: runs one job (or answers --versions / --prepare-go-cache).
pub async fn executor(args: ExecutorArgs) -> anyhow::Result<ExitCode> {
    if args.versions {
        println!(
            "{}",
            serde_json::to_string(&cola_executors::toolchain_versions())?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(dir) = &args.prepare_go_cache {
        cola_executors::prepare_go_cache(dir)?;
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(job_file), Some(job_dir)) = (args.job_file, args.job_dir) else {
        bail!("--job-file and --job-dir are required");
    };
    let config = cola_executors::ExecutorConfig {
        nats_url: args.nats.nats_url,
        job_file,
        job_dir,
        sandbox: sandbox_config(&args.sandbox, args.go_cache.as_deref()),
    };
    let report = cola_executors::run(config).await?;
    tracing::info!(
        status = report.status.as_str(),
        reason = report.reason.map(|r| r.as_str()),
        "job ended"
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn open_topology(nats_url: &str) -> anyhow::Result<Topology> {
    let client = async_nats::connect(nats_url)
        .await
        .with_context(|| format!("connecting to NATS at {nats_url}"))?;
    Ok(Topology::open(&async_nats::jetstream::new(client)).await?)
}

pub fn absolute(path: &Path) -> anyhow::Result<std::path::PathBuf> {
    std::path::absolute(path).with_context(|| format!("{}", path.display()))
}
