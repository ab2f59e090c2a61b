//! Command-line flags, each with a `COLA_*` environment-variable fallback.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cola",
    version,
    about = "cola: a NATS-native, serverless code-execution service"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything on this machine: NATS (spawned if none answers), gateway and middleware.
    Up(UpArgs),
    /// Run the HTTP gateway.
    Gateway(GatewayArgs),
    /// Run a middleware replica.
    Middleware(MiddlewareArgs),
    /// Run one job next to the user's code (started by a backend, not by people).
    Executor(ExecutorArgs),
    /// Submit a program and print its output.
    Submit(SubmitArgs),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Args)]
pub struct NatsArgs {
    /// The NATS server to use.
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
    #[command(flatten)]
    pub gateway: GatewayFlags,
    #[command(flatten)]
    pub middleware: MiddlewareFlags,
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
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub gateway: GatewayFlags,
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
    pub sandbox: SandboxFlags,
    #[command(flatten)]
    pub nats: NatsArgs,
}

#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// Print the toolchain version of every language as JSON and exit.
    #[arg(long)]
    pub versions: bool,
    /// Prepare a warm Go build cache in this directory and exit.
    #[arg(long, value_name = "DIR")]
    pub prepare_go_cache: Option<PathBuf>,
    /// The job message (JSON) to run.
    #[arg(long, required_unless_present_any = ["versions", "prepare_go_cache"])]
    pub job_file: Option<PathBuf>,
    /// The job's private directory.
    #[arg(long, required_unless_present_any = ["versions", "prepare_go_cache"])]
    pub job_dir: Option<PathBuf>,
    /// A warm, read-only Go build cache shared by jobs.
    #[arg(long, env = "COLA_GO_CACHE")]
    pub go_cache: Option<PathBuf>,
    #[command(flatten)]
    pub sandbox: SandboxFlags,
    #[command(flatten)]
    pub nats: NatsArgs,
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
    /// Wait for the job to finish and print its output.
    #[arg(long)]
    pub wait: bool,
    /// The gateway.
    #[arg(long, env = "COLA_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An API token (e.g. the content of .cola/dev-token).
    #[arg(long, env = "COLA_TOKEN")]
    pub token: Option<String>,
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
