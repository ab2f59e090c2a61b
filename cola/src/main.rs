//! `cola`: one binary, a subcommand per service. Everything here is argument parsing and
//! wiring; the services are libraries (`cola-gateway`, `cola-middleware`, `cola-executors`).

mod cli;
mod commands;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // PID 1 of a job's sandbox is this binary too: it never gets further.
    cola_executors::sandbox::init::run_if_requested();
    let mut cli = cli::Cli::parse();
    commands::init_tracing(cli.log_format);
    // Still one thread: the only time the environment can be changed safely.
    if let Err(e) = commands::take_secrets_from_env(&mut cli.command) {
        eprintln!("cola: {e:#}");
        return std::process::ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(commands::dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cola: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
