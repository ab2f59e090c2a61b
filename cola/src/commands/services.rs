//! Service configurations built from flags, shared by `cola up` and the single-service commands.

use std::{
    io::Write as _, net::SocketAddr, path::Path, process::ExitCode, sync::Arc, time::Duration,
};

use anyhow::{Context as _, bail};
use cola_executors::SandboxKind;
#[cfg(feature = "docker")]
use cola_middleware::docker::{DockerBackend, DockerConfig};
#[cfg(feature = "kubernetes")]
use cola_middleware::kube::{self, KubeBackend, KubeBackendConfig, SecretKeyRef};
use cola_middleware::{
    Backend, MiddlewareConfig,
    energy::{EnergyConfig, Placement, Policy},
    process::{ProcessBackend, ProcessBackendConfig},
};
use cola_wire::energy::{NodeName, Share};
use cola_wire::nats::{Topology, TopologyConfig};
use tokio_util::sync::CancellationToken;

use crate::cli::{
    BackendFlags, BackendKind, DockerFlags, ExecutorArgs, GatewayFlags, KubeFlags, MiddlewareFlags,
    PlacementFlags, PlacementKind, QuotaFlags, SandboxFlags,
};

/// The gateway's configuration; `dev` offers the "continue as local developer" login.
pub fn gateway_config(
    flags: &GatewayFlags,
    quotas: &QuotaFlags,
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
        quotas: cola_gateway::quota::QuotaConfig {
            max_unfinished: quotas.max_unfinished_per_user,
            submissions_per_minute: quotas.submissions_per_minute,
            max_stored_bytes: quotas.max_stored_mb_per_user.saturating_mul(1 << 20),
        },
        ..cola_gateway::GatewayConfig::default()
    };
    config.validate()?;
    Ok(config)
}

pub fn topology_config(
    flags: &MiddlewareFlags,
    quotas: &QuotaFlags,
) -> anyhow::Result<TopologyConfig> {
    if !(1..=5).contains(&flags.replicas) {
        bail!("--replicas must be between 1 and 5");
    }
    if !(1..=3650).contains(&flags.retention_days) {
        bail!("--retention-days must be between 1 and 3650");
    }
    Ok(TopologyConfig {
        replicas: flags.replicas,
        retention: Duration::from_secs(flags.retention_days * 24 * 3600),
        max_unfinished_per_user: i64::try_from(quotas.max_unfinished_per_user)
            .context("--max-unfinished-per-user is too large")?,
        ..TopologyConfig::default()
    })
}

/// Where this middleware is and how it places jobs.
pub fn energy_config(flags: &PlacementFlags) -> anyhow::Result<EnergyConfig> {
    let node = match &flags.node_name {
        // A Kubernetes node's name may have dots: they become `_`.
        Some(name) => {
            NodeName::of_kubernetes_node(name).with_context(|| format!("--node-name {name:?}"))?
        }
        None => host_node_name()?,
    };
    let green_share = Share::new(flags.green_share)
        .map_err(|_| anyhow::anyhow!("--green-share must be from 0 to 1"))?;
    let mut config = EnergyConfig::on(node);
    config.placement = match flags.placement {
        PlacementKind::Energy => Placement::Energy,
        PlacementKind::Blind => Placement::Blind,
    };
    config.fresh_for = flags.energy_fresh_for;
    config.policy = Policy {
        max_delay: flags.placement_max_delay,
        green_share,
        recheck: flags.shift_recheck,
    };
    config.forecast_period = Some(flags.forecast_period).filter(|p| !p.is_zero());
    Ok(config)
}

/// This machine's node name: its host name, made a valid node name.
fn host_node_name() -> anyhow::Result<NodeName> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .context("cannot read the host name: give --node-name")?;
    NodeName::from_host(host.trim()).with_context(|| {
        format!(
            "the host name {:?} makes no node name: give --node-name",
            host.trim()
        )
    })
}

/// The middleware configuration and its backend. `go_cache` is a prepared warm Go build cache
/// to share with executors of the process backend.
pub async fn middleware(
    flags: &MiddlewareFlags,
    quotas: &QuotaFlags,
    backend: &BackendFlags,
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
        lookahead: flags.lookahead,
        numeric_in_flight: flags.numeric_in_flight,
        grace: Duration::from_secs(flags.grace_seconds),
        ack_wait: Duration::from_secs(flags.ack_wait_seconds),
        topology: topology_config(flags, quotas)?,
        start_patience: Duration::ZERO,
        energy: energy_config(&flags.placement)?,
    };
    config.validate()?;
    let backend: Arc<dyn Backend> = match backend.backend {
        BackendKind::Process => Arc::new(process_backend(
            sandbox,
            data_dir,
            nats_url,
            go_cache,
            usize::from(backend.warm_executors),
        )?),
        BackendKind::Docker => docker_backend(&backend.docker).await?,
        BackendKind::Kubernetes => kube_backend(&backend.kube).await?,
    };
    Ok((config, backend))
}

/// Runs the middleware until `shutdown` and its drain, serving its probes and metrics on
/// `health_listen` when given: until the drain ends, so that liveness holds while running
/// jobs finish.
pub async fn run_middleware(
    config: MiddlewareConfig,
    backend: Arc<dyn Backend>,
    health_listen: Option<SocketAddr>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let probes = cola_middleware::health::Probes::new();
    let probes_stop = CancellationToken::new();
    if let Some(addr) = health_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--health-listen {addr}"))?;
        tokio::spawn(cola_middleware::health::serve(
            listener,
            probes.clone(),
            probes_stop.clone(),
        ));
    }
    let ran = cola_middleware::run_with_probes(config, backend, shutdown, probes).await;
    probes_stop.cancel();
    Ok(ran?)
}

/// Fails, saying so, when `kind` is a backend this binary was built without (its cargo
/// feature, `docker` or `kubernetes`, was off).
pub fn ensure_built(kind: BackendKind) -> anyhow::Result<()> {
    match kind {
        BackendKind::Docker if !cfg!(feature = "docker") => Err(not_built("docker")),
        BackendKind::Kubernetes if !cfg!(feature = "kubernetes") => Err(not_built("kubernetes")),
        _ => Ok(()),
    }
}

fn not_built(backend: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "--backend {backend}: this cola was built without the {backend} backend (its cargo \
         feature `{backend}`, on by default, was turned off)"
    )
}

fn process_backend(
    sandbox: &SandboxFlags,
    data_dir: &Path,
    nats_url: &str,
    go_cache: Option<&Path>,
    warm_executors: usize,
) -> anyhow::Result<ProcessBackend> {
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
    if let Some(parent) = &sandbox.cgroup_parent {
        executor_args.extend(["--cgroup-parent".to_owned(), parent.display().to_string()]);
    }
    if let Some(cache) = go_cache {
        executor_args.extend(["--go-cache".to_owned(), cache.display().to_string()]);
    }
    let backend = ProcessBackend::new(ProcessBackendConfig {
        executor_bin: std::env::current_exe().context("locating the cola binary")?,
        jobs_dir: absolute(&data_dir.join("jobs"))?,
        nats_url: nats_url.to_owned(),
        executor_args,
        warm_executors,
    })?;
    backend.prestart();
    Ok(backend)
}

#[cfg(feature = "docker")]
async fn docker_backend(flags: &DockerFlags) -> anyhow::Result<Arc<dyn Backend>> {
    let config = DockerConfig {
        host: flags.docker_host.clone(),
        image_prefix: flags.executor_image_prefix.clone(),
        image_tag: flags.executor_image_tag.clone(),
        cpus: flags.docker_cpus,
        ..DockerConfig::default()
    };
    Ok(Arc::new(DockerBackend::connect(config).await?))
}

#[cfg(not(feature = "docker"))]
async fn docker_backend(_: &DockerFlags) -> anyhow::Result<Arc<dyn Backend>> {
    Err(not_built("docker"))
}

#[cfg(feature = "kubernetes")]
async fn kube_backend(flags: &KubeFlags) -> anyhow::Result<Arc<dyn Backend>> {
    let mut config = KubeBackendConfig::new(
        flags.kube_namespace.clone(),
        SecretKeyRef {
            name: flags.kube_nats_secret.clone(),
            key: flags.kube_nats_secret_key.clone(),
        },
    );
    config.cluster = flags.kube_cluster.clone();
    config.image_registry = flags.kube_image_registry.clone();
    config.image_tag = flags.kube_image_tag.clone();
    config.image_pull_policy = flags.kube_image_pull_policy.clone();
    config.image_pull_secrets = flags.kube_image_pull_secrets.clone();
    config.service_account = flags.kube_service_account.clone();
    config.runtime_class = flags.kube_runtime_class.clone();
    config.user_namespaces = flags.kube_user_namespaces;
    config.node_selector =
        kube::parse_node_selector(&flags.kube_node_selector).map_err(anyhow::Error::msg)?;
    config.tolerations = flags
        .kube_tolerations
        .iter()
        .map(|t| kube::parse_toleration(t))
        .collect::<Result<_, _>>()
        .map_err(anyhow::Error::msg)?;
    config.cpu_request_millis = flags.kube_cpu_request_millis;
    config.cpu_limit_millis = flags.kube_cpu_limit_millis;
    config.memory_overhead_mb = flags.kube_memory_overhead_mb;
    config.pending_timeout = Duration::from_secs(flags.kube_pending_timeout_seconds);
    config.reconcile_every = (flags.kube_reconcile_seconds > 0)
        .then(|| Duration::from_secs(flags.kube_reconcile_seconds));
    config.warm_pods = flags.kube_warm_pods as usize;
    Ok(Arc::new(KubeBackend::connect(config).await?))
}

#[cfg(not(feature = "kubernetes"))]
async fn kube_backend(_: &KubeFlags) -> anyhow::Result<Arc<dyn Backend>> {
    Err(not_built("kubernetes"))
}

pub fn sandbox_config(
    flags: &SandboxFlags,
    go_cache: Option<&Path>,
    kind: SandboxKind,
) -> cola_executors::SandboxConfig {
    cola_executors::SandboxConfig {
        kind,
        bwrap: flags.bwrap.clone(),
        uid_base: flags.uid_base,
        uid_count: flags.uid_count,
        go_cache: go_cache.map(Path::to_owned),
        cgroup_parent: flags.cgroup_parent.clone(),
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
    if args.isolation_report {
        let sandbox = sandbox_config(&args.sandbox, None, args.isolation);
        println!(
            "{}",
            serde_json::to_string(&cola_executors::sandbox::isolation(&sandbox))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(dir) = &args.prepare_go_cache {
        cola_executors::prepare_go_cache(dir)?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(job_dir) = args.job_dir else {
        bail!("--job-dir is required");
    };
    let sandbox = sandbox_config(&args.sandbox, args.go_cache.as_deref(), args.isolation);
    if args.isolation == SandboxKind::Container && std::process::id() != 1 {
        tracing::warn!(
            "the container sandbox runs as PID {} rather than 1: processes that leave the \
             program's process group outlive their step until the container ends, and its CPU \
             limit holds for each process alone",
            std::process::id()
        );
    }
    if args.stdio {
        let job = cola_executors::read_job_bytes(std::io::stdin().lock())?;
        let before_run = args.run_memory_limit.map(|bytes| {
            Box::new(move || cola_executors::await_memory_limit(bytes)) as cola_executors::RunGate
        });
        let outcome = cola_executors::run_offline(job, &job_dir, &sandbox, before_run).await?;
        log_end(&outcome.report);
        let mut stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        cola_wire::frame::write(&outcome, &mut stdout)
            .and_then(|()| stdout.flush())
            .context("writing the result frame")?;
        return Ok(ExitCode::SUCCESS);
    }
    let job = match (args.job_file, args.job_json, args.job_subject) {
        (Some(file), _, _) => cola_executors::JobSource::File(file),
        (None, Some(json), _) => cola_executors::JobSource::Json(json),
        (None, None, Some(subject)) => cola_executors::JobSource::Subject(subject),
        (None, None, None) if args.wait_for_job => cola_executors::JobSource::Stdin,
        (None, None, None) if args.job_from_handoff => cola_executors::JobSource::Handoff,
        (None, None, None) => bail!(
            "one of --job-file, --job-env, --stdio, --wait-for-job, --job-subject and \
             --job-from-handoff is required"
        ),
    };
    if args.job_from_handoff && args.step != Some(cola_executors::Steps::Run) {
        bail!("--job-from-handoff goes with --step run");
    }
    let config = cola_executors::ExecutorConfig {
        nats_url: args.nats.nats_url,
        job,
        job_dir: job_dir.clone(),
        sandbox,
        steps: args.step.unwrap_or_default(),
    };
    if config.steps == cola_executors::Steps::Compile {
        cola_executors::compile_ahead(config).await?;
        return Ok(ExitCode::SUCCESS);
    }
    match cola_executors::run(config).await? {
        Some(report) => log_end(&report),
        None => {
            // A pre-started executor nobody gave a job (its middleware stopped): its directory
            // holds nothing but this executor's log.
            if let Err(e) = std::fs::remove_dir_all(&job_dir) {
                tracing::warn!(dir = %job_dir.display(), error = %e, "cannot remove the job directory");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn log_end(report: &cola_wire::RunReport) {
    tracing::info!(
        status = report.status.as_str(),
        reason = report.reason.map(|r| r.as_str()),
        "job ended"
    );
}

pub async fn open_topology(nats_url: &str) -> anyhow::Result<Topology> {
    let client = cola_wire::nats_connect::connect(nats_url, async_nats::ConnectOptions::new())
        .await
        .with_context(|| {
            let url = cola_wire::nats_connect::redacted(nats_url);
            format!("connecting to NATS at {url}")
        })?;
    Ok(Topology::open(&async_nats::jetstream::new(client)).await?)
}

pub fn absolute(path: &Path) -> anyhow::Result<std::path::PathBuf> {
    std::path::absolute(path).with_context(|| format!("{}", path.display()))
}
