//! What each subcommand does: turn flags into a service configuration and run the service.

mod client;
mod services;
mod up;

use std::process::ExitCode;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::cli::{Command, LogFormatArg, TokenCommand};

pub async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Up(args) => up::run(*args).await.map(|()| ExitCode::SUCCESS),
        Command::Gateway(args) => {
            let config = cola_gateway::GatewayConfig {
                start_patience: args.start.patience(),
                energy_fresh_for: args.energy_fresh_for,
                ..services::gateway_config(&args.gateway, &args.quotas, &args.nats.nats_url, false)?
            };
            cola_gateway::run(config, shutdown_on_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Middleware(args) => {
            let (config, backend) = services::middleware(
                &args.middleware,
                &args.quotas,
                &args.backend,
                &args.sandbox,
                &args.data_dir,
                &args.nats.nats_url,
                None,
            )
            .await?;
            let config = cola_middleware::MiddlewareConfig {
                start_patience: args.start.patience(),
                ..config
            };
            let health = args.health_listen;
            services::run_middleware(config, backend, health, shutdown_on_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Executor(args) => services::executor(args).await,
        Command::Client(command) => Ok(client::run(command).await),
        Command::Token(TokenCommand::Issue { user, name, nats }) => {
            let user = cola_wire::UserId::parse(&user).context("--user")?;
            let topology = services::open_topology(&nats.nats_url).await?;
            let token = cola_gateway::tokens::issue(&topology.tokens, &user, &name).await?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// For `cola executor`: moves the job message of `--job-env` out of the environment, and drops
/// the NATS URL (which may hold credentials) from it, so that nothing the executor starts could
/// inherit them. (User code gets an empty environment anyway, and an executor in a container
/// makes itself non-dumpable, which closes its `/proc/<pid>/environ`.)
///
/// Must be called while the process has one thread: changing the environment is unsound once
/// other threads may read it.
pub fn take_secrets_from_env(command: &mut Command) -> anyhow::Result<()> {
    let Command::Executor(args) = command else {
        return Ok(());
    };
    if let Some(name) = &args.job_env {
        let value = std::env::var_os(name)
            .with_context(|| format!("--job-env: the environment has no variable {name}"))?;
        args.job_json = Some(value.into_encoded_bytes());
        // SAFETY: the caller guarantees that no other thread exists yet.
        unsafe { std::env::remove_var(name) };
    }
    // SAFETY: as above.
    unsafe { std::env::remove_var("COLA_NATS_URL") };
    Ok(())
}

/// Logs to stderr as `format` says (default: text on a terminal, JSON otherwise); `RUST_LOG`
/// selects what (default: info).
pub fn init_tracing(format: Option<LogFormatArg>) {
    use cola_telemetry::logs::{LogFormat, init};
    init(match format {
        Some(LogFormatArg::Text) => LogFormat::Text,
        Some(LogFormatArg::Json) => LogFormat::Json,
        None => LogFormat::for_stderr(),
    });
}

/// A token cancelled on the first SIGINT or SIGTERM.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        cancel.cancel();
    });
    token
}
