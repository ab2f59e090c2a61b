//! Command-line flags, each with a `COLA_*` environment-variable fallback.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use cola_executors::SandboxKind;

#[derive(Debug, Parser)]
#[command(
    name = "cola",
    version,
    about = "cola: a NATS-native, serverless code-execution service"
)]
pub struct Cli {
    /// How to write logs on stderr: text, or one JSON object per line (default: text on a
    /// terminal, JSON otherwise).
    #[arg(long, global = true, env = "COLA_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything on this machine: NATS (spawned if none answers), gateway and middleware.
    Up(Box<UpArgs>),
    /// Run the HTTP gateway.
    Gateway(GatewayArgs),
    /// Run a middleware replica.
    Middleware(Box<MiddlewareArgs>),
    /// Run one job next to the user's code (started by a backend, not by people).
    Executor(ExecutorArgs),
    #[command(flatten)]
    Client(ClientCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// The commands that talk to a gateway's JSON API as one user (exit codes: README "Command
/// line").
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Submit a program (or a numeric problem) and print its id, or with --wait its output.
    Submit(SubmitArgs),
    /// Your jobs: list them, show one, cancel one, download its output, follow one live.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// The languages the service runs, with their versions and default limits.
    Languages(ClientArgs),
    /// The numeric methods and their parameters.
    Methods(ClientArgs),
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Your jobs, newest first (a page; the next one with --before).
    List {
        /// How many jobs (1 to 100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only jobs older than this one (the id `cola jobs list` ends with).
        #[arg(long)]
        before: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One job: its status, reason, exit code and times.
    Get {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Ask to stop a job (it ends `cancelled` once stopped).
    Cancel {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Download a job's output zip.
    Output {
        id: String,
        /// Where to write it (`-`: standard output); default `<id>.zip`.
        #[arg(long, short = 'f')]
        file: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Follow a job live until it ends, then print its output; exits with the job's code.
    Watch {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Which gateway, as whom, and how to print its answers.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The gateway (default: the config file's `url`, else http://127.0.0.1:8080).
    #[arg(long, env = "COLA_URL")]
    pub url: Option<String>,
    /// An API token (default: the config file's `token`; with `cola up --dev`, .cola/dev-token).
    #[arg(long, env = "COLA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A TOML file with `url` and `token` (default: $XDG_CONFIG_HOME/cola/config.toml, or
    /// ~/.config/cola/config.toml); it must be readable by you only.
    #[arg(long, env = "COLA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print answers as a table for people, or as the API's JSON for scripts.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct NatsArgs {
    /// The NATS server to use (a cluster: its nodes' URLs, comma-separated).
    #[arg(long, env = "COLA_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Development mode: create the local user `dev` and write its API token to <data-dir>/dev-token.
    #[arg(long, env = "COLA_DEV")]
    pub dev: bool,
    /// Where the spawned NATS server keeps its store, and where jobs run.
    #[arg(long, env = "COLA_DATA_DIR", default_value = ".cola")]
    pub data_dir: PathBuf,
    /// The nats-server binary to spawn when none answers at --nats-url.
    #[arg(long, env = "COLA_NATS_SERVER", default_value = "nats-server")]
    pub nats_server: PathBuf,
    /// Serve the middleware's `/healthz`, `/readyz` and `/metrics` (Prometheus) on this
    /// address (the gateway serves its own on its port).
    #[arg(long, env = "COLA_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    /// Turn on the spawned nats-server's MQTT listener here, for energy telemetry (devices
    /// publish `energy/<node>`; off loopback they log in as `cola-telemetry` with
    /// COLA_MQTT_PASSWORD).
    #[arg(long, env = "COLA_MQTT_LISTEN")]
    pub mqtt_listen: Option<SocketAddr>,
    /// The password MQTT devices log in with (user `cola-telemetry`); required when
    /// --mqtt-listen is not on loopback. Prefer the environment variable to the flag.
    #[arg(long, env = "COLA_MQTT_PASSWORD", hide_env_values = true)]
    pub mqtt_password: Option<String>,
    #[command(flatten)]
    pub gateway: GatewayFlags,
    #[command(flatten)]
    pub middleware: MiddlewareFlags,
    #[command(flatten)]
    pub quotas: QuotaFlags,
    #[command(flatten)]
    pub backend: BackendFlags,
    #[command(flatten)]
    pub sandbox: SandboxFlags,
    #[command(flatten)]
    pub nats: NatsArgs,
}

#[derive(Debug, Args)]
pub struct GatewayFlags {
    /// Address the HTTP gateway listens on.
    #[arg(long, env = "COLA_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "COLA_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// The address people reach the gateway at; the login redirect is <public-url>/auth/callback.
    #[arg(long, env = "COLA_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The OpenID Connect issuer people log in with.
    #[arg(long, env = "COLA_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// The OAuth client id registered with the issuer.
    #[arg(long, env = "COLA_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// The OAuth client secret (prefer the environment variable to the flag).
    #[arg(long, env = "COLA_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<String>,
    /// Who may log in: e-mail domains, comma-separated.
    #[arg(long, env = "COLA_ALLOWED_DOMAINS", value_delimiter = ',')]
    pub allowed_domains: Vec<String>,
    /// Who may log in: e-mail addresses, comma-separated.
    #[arg(long, env = "COLA_ALLOWED_EMAILS", value_delimiter = ',')]
    pub allowed_emails: Vec<String>,
    /// Minutes a browser session lives without use.
    #[arg(long, env = "COLA_SESSION_IDLE_MINUTES", default_value_t = 720)]
    pub session_idle_minutes: u64,
}

#[derive(Debug, Args)]
pub struct MiddlewareFlags {
    /// Jobs run at once by this middleware (default: the number of cores).
    #[arg(long, env = "COLA_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Jobs this middleware takes ahead of its free slots, to pick fairly between users which
    /// starts next.
    #[arg(long, env = "COLA_LOOKAHEAD", default_value_t = 1000)]
    pub lookahead: usize,
    /// Numeric jobs this middleware holds at once (solving or waiting for a solver thread);
    /// they take none of the --concurrency slots.
    #[arg(long, env = "COLA_NUMERIC_IN_FLIGHT", default_value_t = cola_middleware::numeric::MAX_IN_FLIGHT)]
    pub numeric_in_flight: usize,
    /// On shutdown, seconds running jobs may go on before they are left to another replica.
    #[arg(long, env = "COLA_GRACE_SECONDS", default_value_t = 30)]
    pub grace_seconds: u64,
    /// Seconds without an ack after which a job is redelivered to another replica.
    #[arg(long, env = "COLA_ACK_WAIT_SECONDS", default_value_t = 30)]
    pub ack_wait_seconds: u64,
    /// Replicas of the stream and buckets (1 on one machine, 3 on a cluster).
    #[arg(long, env = "COLA_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// Days job records and outputs are kept.
    #[arg(long, env = "COLA_RETENTION_DAYS", default_value_t = 7)]
    pub retention_days: u64,
    #[command(flatten)]
    pub placement: PlacementFlags,
}

/// Whether placement follows the energy telemetry (README, "Energy-aware placement").
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlacementKind {
    /// Browner nodes hold back their pulls; time-shiftable jobs wait for renewable power.
    Energy,
    /// Every node pulls at once; every job starts at once.
    Blind,
}

#[derive(Debug, Args)]
pub struct PlacementFlags {
    /// The node this middleware runs on, as energy telemetry names it: `A-Z a-z 0-9 _ -`, a
    /// dot becoming `_` (default: the host name up to its first dot; on Kubernetes the Pod's
    /// node, from the downward API).
    #[arg(long, env = "COLA_NODE_NAME")]
    pub node_name: Option<String>,
    /// How jobs are placed.
    #[arg(long, env = "COLA_PLACEMENT", value_enum, default_value_t = PlacementKind::Energy)]
    pub placement: PlacementKind,
    /// The most queue time placement alone adds to a job (e.g. 200ms).
    #[arg(long, env = "COLA_PLACEMENT_MAX_DELAY", default_value = "200ms", value_parser = humantime::parse_duration)]
    pub placement_max_delay: Duration,
    /// How long an energy reading counts; a node without a fresher one is on grid power.
    #[arg(long, env = "COLA_ENERGY_FRESH_FOR", default_value = "5m", value_parser = humantime::parse_duration)]
    pub energy_fresh_for: Duration,
    /// The renewable share (0 to 1) a time-shiftable job waits for.
    #[arg(long, env = "COLA_GREEN_SHARE", default_value_t = 0.5)]
    pub green_share: f64,
    /// How often a time-shiftable job waiting for renewable power is looked at again.
    #[arg(long, env = "COLA_SHIFT_RECHECK", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shift_recheck: Duration,
    /// After how long the nodes' renewable shares are expected to come again (a day): a
    /// time-shiftable job waits for no more than the same hours brought that long ago (0: no
    /// forecast, it waits for --green-share alone).
    #[arg(long, env = "COLA_FORECAST_PERIOD", default_value = "24h", value_parser = humantime::parse_duration)]
    pub forecast_period: Duration,
}

/// Where the middleware runs jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// A local `cola executor` process per job, sandboxed with bubblewrap.
    Process,
    /// A Docker container per job, through the Docker Engine API.
    Docker,
    /// A Kubernetes Pod per job, through the Kubernetes API (in-cluster or kubeconfig).
    Kubernetes,
}

#[derive(Debug, Args)]
pub struct BackendFlags {
    /// Where jobs run.
    #[arg(long, env = "COLA_BACKEND", value_enum, default_value_t = BackendKind::Process)]
    pub backend: BackendKind,
    /// Process backend: executors kept started ahead of their jobs, each connected to NATS and
    /// waiting for exactly one job (0: each starts with its job).
    #[arg(long, env = "COLA_WARM_EXECUTORS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(0..=64))]
    pub warm_executors: u16,
    #[command(flatten)]
    pub docker: DockerFlags,
    #[command(flatten)]
    pub kube: KubeFlags,
}

#[derive(Debug, Args)]
pub struct DockerFlags {
    /// The Docker daemon, e.g. unix:///var/run/docker.sock (default: $DOCKER_HOST, else the
    /// local socket).
    #[arg(long, env = "COLA_DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// The tag of the executor images (`cola-executor-<language>:<tag>`).
    #[arg(long, env = "COLA_EXECUTOR_IMAGE_TAG", default_value = "latest")]
    pub executor_image_tag: String,
    /// Put before the executor images' names, e.g. a registry (`registry.example/`).
    #[arg(long, env = "COLA_EXECUTOR_IMAGE_PREFIX", default_value = "")]
    pub executor_image_prefix: String,
    /// CPUs each job's container may use.
    #[arg(long, env = "COLA_DOCKER_CPUS", default_value_t = 1.0)]
    pub docker_cpus: f64,
}

/// The Kubernetes backend (`--backend kubernetes`); the manifests in k8s/ set these through
/// the ConfigMap `cola-middleware`.
#[derive(Debug, Args)]
pub struct KubeFlags {
    /// Namespace the executor Pods run in.
    #[arg(long, env = "COLA_KUBE_NAMESPACE", default_value = "cola-executors")]
    pub kube_namespace: String,
    /// Name of the cluster, recorded in executor handles.
    #[arg(long, env = "COLA_KUBE_CLUSTER", default_value = "kubernetes")]
    pub kube_cluster: String,
    /// Registry and path of the executor images (e.g. `registry.example.com/cola`); empty for none.
    #[arg(long, env = "COLA_KUBE_IMAGE_REGISTRY", default_value = "")]
    pub kube_image_registry: String,
    /// Tag of the executor images.
    #[arg(long, env = "COLA_KUBE_IMAGE_TAG", default_value = "latest")]
    pub kube_image_tag: String,
    /// `IfNotPresent`, `Always` or `Never`.
    #[arg(
        long,
        env = "COLA_KUBE_IMAGE_PULL_POLICY",
        default_value = "IfNotPresent"
    )]
    pub kube_image_pull_policy: String,
    /// Image pull Secrets in the executor namespace (comma-separated).
    #[arg(
        long = "kube-image-pull-secret",
        env = "COLA_KUBE_IMAGE_PULL_SECRETS",
        value_delimiter = ','
    )]
    pub kube_image_pull_secrets: Vec<String>,
    /// The Secret (in the executor namespace) holding the executors' NATS URL.
    #[arg(
        long,
        env = "COLA_KUBE_NATS_SECRET",
        default_value = "cola-executor-nats"
    )]
    pub kube_nats_secret: String,
    /// The key of that Secret.
    #[arg(long, env = "COLA_KUBE_NATS_SECRET_KEY", default_value = "url")]
    pub kube_nats_secret_key: String,
    /// The executor Pods' ServiceAccount (its token is never mounted).
    #[arg(long, env = "COLA_KUBE_SERVICE_ACCOUNT")]
    pub kube_service_account: Option<String>,
    /// A RuntimeClass for executor Pods, e.g. `gvisor`.
    #[arg(long, env = "COLA_KUBE_RUNTIME_CLASS")]
    pub kube_runtime_class: Option<String>,
    /// Node selector of executor Pods: `key=value,...`.
    #[arg(long, env = "COLA_KUBE_NODE_SELECTOR", default_value = "")]
    pub kube_node_selector: String,
    /// Tolerations of executor Pods: `key[=value]:Effect[:seconds]` (comma-separated).
    #[arg(
        long = "kube-toleration",
        env = "COLA_KUBE_TOLERATIONS",
        value_delimiter = ','
    )]
    pub kube_tolerations: Vec<String>,
    /// Run executor Pods in user namespaces (`hostUsers: false`; needs node support).
    #[arg(long, env = "COLA_KUBE_USER_NAMESPACES")]
    pub kube_user_namespaces: bool,
    /// CPU request of an executor Pod, in millicores.
    #[arg(long, env = "COLA_KUBE_CPU_REQUEST_MILLIS", default_value_t = 250)]
    pub kube_cpu_request_millis: u64,
    /// CPU limit of an executor Pod, in millicores.
    #[arg(long, env = "COLA_KUBE_CPU_LIMIT_MILLIS", default_value_t = 1000)]
    pub kube_cpu_limit_millis: u64,
    /// Memory for the executor itself on top of the job's, in MiB.
    #[arg(long, env = "COLA_KUBE_MEMORY_OVERHEAD_MB", default_value_t = 128)]
    pub kube_memory_overhead_mb: u64,
    /// Seconds a Pod may stay pending (scheduling, image pull) before its job fails.
    #[arg(long, env = "COLA_KUBE_PENDING_TIMEOUT_SECONDS", default_value_t = 120)]
    pub kube_pending_timeout_seconds: u64,
    /// Seconds between reconciliations of executor Pods with job records (0: at start-up only).
    #[arg(long, env = "COLA_KUBE_RECONCILE_SECONDS", default_value_t = 600)]
    pub kube_reconcile_seconds: u64,
    /// Executor Pods kept started ahead of their jobs, per program language, for jobs with the
    /// language's default limits (0: none; each Pod takes one job).
    #[arg(long, env = "COLA_KUBE_WARM_PODS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=50))]
    pub kube_warm_pods: u64,
}

#[derive(Debug, Args)]
pub struct SandboxFlags {
    /// The bubblewrap binary.
    #[arg(long, env = "COLA_BWRAP", default_value = "/usr/bin/bwrap")]
    pub bwrap: PathBuf,
    /// First host uid used for sandboxed code when running as root (one per job from a range).
    #[arg(long, env = "COLA_SANDBOX_UID_BASE", default_value_t = 200_000)]
    pub uid_base: u32,
    /// How many host uids the range holds.
    #[arg(long, env = "COLA_SANDBOX_UID_COUNT", default_value_t = 50_000)]
    pub uid_count: u32,
    /// The cgroup that holds a cgroup per job, as a path inside the cgroup hierarchies (e.g.
    /// `/cola.slice`); by default the executor's own (cgroup v2 needs a delegated one).
    #[arg(long, env = "COLA_CGROUP_PARENT")]
    pub cgroup_parent: Option<PathBuf>,
}

/// Per-user quotas: the gateway checks them before it queues a job; the job stream (which the
/// middleware and `cola up` create) enforces the unfinished-jobs one in each language too.
#[derive(Debug, Args)]
pub struct QuotaFlags {
    /// Jobs one user may have queued or running at once; one more is refused with 429.
    #[arg(long, env = "COLA_MAX_UNFINISHED_PER_USER", default_value_t = 50)]
    pub max_unfinished_per_user: u64,
    /// Jobs one user may submit per minute (to one gateway), in bursts of up to as many.
    #[arg(long, env = "COLA_SUBMISSIONS_PER_MINUTE", default_value_t = 600)]
    pub submissions_per_minute: u32,
    /// Megabytes of output zips one user may keep stored (they expire with the retention).
    #[arg(long, env = "COLA_MAX_STORED_MB_PER_USER", default_value_t = 512)]
    pub max_stored_mb_per_user: u64,
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub gateway: GatewayFlags,
    /// How long an energy reading counts (older ones are shown stale): the middlewares'
    /// --energy-fresh-for.
    #[arg(long, env = "COLA_ENERGY_FRESH_FOR", default_value = "5m", value_parser = humantime::parse_duration)]
    pub energy_fresh_for: Duration,
    #[command(flatten)]
    pub start: StartFlags,
    #[command(flatten)]
    pub quotas: QuotaFlags,
    #[command(flatten)]
    pub nats: NatsArgs,
}

#[derive(Debug, Args)]
pub struct MiddlewareArgs {
    /// Where jobs run (one directory each).
    #[arg(long, env = "COLA_DATA_DIR", default_value = ".cola")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub middleware: MiddlewareFlags,
    #[command(flatten)]
    pub quotas: QuotaFlags,
    #[command(flatten)]
    pub backend: BackendFlags,
    #[command(flatten)]
    pub sandbox: SandboxFlags,
    /// Serve `/healthz`, `/readyz` (for orchestrators' probes) and `/metrics` (Prometheus)
    /// on this address.
    #[arg(long, env = "COLA_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub start: StartFlags,
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// How a service that runs beside NATS starts.
#[derive(Debug, Args)]
pub struct StartFlags {
    /// Seconds to keep trying, at start-up, to reach NATS and open (or, for the middleware,
    /// make) cola's stream and buckets, before giving up; 0: give up at the first failure.
    #[arg(long, env = "COLA_NATS_START_TIMEOUT_SECONDS", default_value_t = 120)]
    pub nats_start_timeout_seconds: u64,
}

impl StartFlags {
    pub fn patience(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.nats_start_timeout_seconds)
    }
}

#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// Print the toolchain version of every language as JSON and exit.
    #[arg(long)]
    pub versions: bool,
    /// Print how this machine isolates jobs (a cgroup and a disk allowance per job, or why
    /// not) as JSON and exit.
    #[arg(long)]
    pub isolation_report: bool,
    /// Prepare a warm Go build cache in this directory and exit.
    #[arg(long, value_name = "DIR")]
    pub prepare_go_cache: Option<PathBuf>,
    /// The job message (JSON) to run.
    #[arg(long, required_unless_present_any = ["versions", "isolation_report", "prepare_go_cache", "stdio", "job_env", "wait_for_job", "job_subject", "job_from_handoff"])]
    pub job_file: Option<PathBuf>,
    /// Read the job message from this environment variable instead (Kubernetes); it is removed
    /// from the environment before anything else happens.
    #[arg(long, value_name = "NAME", conflicts_with = "job_file")]
    pub job_env: Option<String>,
    /// Read the job message (every input inline) from standard input and, instead of talking to
    /// NATS, write the outcome as one result frame to standard output (Docker).
    #[arg(long, conflicts_with_all = ["job_file", "job_env"])]
    pub stdio: bool,
    /// With --stdio (Docker): once the compile step is done, ask on standard output for the
    /// container's memory limit to be lowered to BYTES, and start the run step only once the
    /// container's cgroup says it is.
    #[arg(long, value_name = "BYTES", requires = "stdio", value_parser = clap::value_parser!(u64).range(1..))]
    pub run_memory_limit: Option<u64>,
    /// Connect to NATS first, then wait for the job message on standard input (a pre-started
    /// executor of the process backend). Standard input closed without a job: remove --job-dir
    /// and exit.
    #[arg(long, conflicts_with_all = ["job_file", "job_env", "stdio"])]
    pub wait_for_job: bool,
    /// Connect to NATS first, then wait for the job message as a request on this core NATS
    /// subject, and answer it (a pre-started executor Pod of the Kubernetes backend).
    #[arg(long, value_name = "SUBJECT", conflicts_with_all = ["job_file", "job_env", "stdio", "wait_for_job"])]
    pub job_subject: Option<String>,
    /// With --step run: take the job message from the handoff the compile container beside this
    /// one leaves in --job-dir, waiting for it.
    #[arg(long, requires = "step", conflicts_with_all = ["job_file", "job_env", "stdio", "wait_for_job", "job_subject"])]
    pub job_from_handoff: bool,
    /// Run only some of the job's steps, in the container sandbox (Kubernetes, where the compile
    /// step gets a container of its own limits): `compile` writes the job's files and compiles
    /// them, leaving the job directory for `run`, which runs the program in it.
    #[arg(long, value_name = "STEPS", conflicts_with_all = ["stdio", "wait_for_job"], value_parser = parse_steps)]
    pub step: Option<cola_executors::Steps>,
    /// The job's private directory.
    #[arg(long, required_unless_present_any = ["versions", "isolation_report", "prepare_go_cache"])]
    pub job_dir: Option<PathBuf>,
    /// How user code is isolated: `bubblewrap` (on a host), or `container` (the executor's
    /// container is the sandbox: steps run as the executor's own non-root user).
    #[arg(long = "sandbox", env = "COLA_SANDBOX", default_value = "bubblewrap", value_parser = parse_sandbox_kind)]
    pub isolation: SandboxKind,
    /// A warm, read-only Go build cache shared by jobs.
    #[arg(long, env = "COLA_GO_CACHE")]
    pub go_cache: Option<PathBuf>,
    #[command(flatten)]
    pub sandbox: SandboxFlags,
    #[command(flatten)]
    pub nats: NatsArgs,
    /// The job message taken from `--job-env` before the runtime started.
    #[arg(skip)]
    pub job_json: Option<Vec<u8>>,
}

fn parse_steps(name: &str) -> Result<cola_executors::Steps, String> {
    match name {
        "compile" => Ok(cola_executors::Steps::Compile),
        "run" => Ok(cola_executors::Steps::Run),
        _ => Err("expected compile or run".to_owned()),
    }
}

fn parse_sandbox_kind(name: &str) -> Result<SandboxKind, String> {
    SandboxKind::parse(name).ok_or_else(|| "expected bubblewrap or container".to_owned())
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The language: c, go, javascript or numeric.
    #[arg(long = "lang")]
    pub language: String,
    /// The source file (or more files: the first is the main one).
    #[arg(required_unless_present = "problem")]
    pub files: Vec<PathBuf>,
    /// A numeric problem instead of files: a JSON file such as
    /// {"method": "bisection", "f": "x^3 + 4*x^2 - 10", "a": 1, "b": 2, "tol": 1e-10, "max_iter": 100}
    /// (`GET /api/v1/numeric/methods` lists the methods and their parameters).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["files", "stdin", "args"])]
    pub problem: Option<PathBuf>,
    /// A file whose content is the program's standard input.
    #[arg(long)]
    pub stdin: Option<PathBuf>,
    /// An argument for the program (repeatable).
    #[arg(long = "arg")]
    pub args: Vec<String>,
    /// Wait for the job to finish and print its output (exits with the job's code).
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a user and print it (it is shown only once).
    Issue {
        /// The user the token acts as.
        #[arg(long)]
        user: String,
        /// A label to recognise the token by.
        #[arg(long, default_value = "cli")]
        name: String,
        #[command(flatten)]
        nats: NatsArgs,
    },
}
