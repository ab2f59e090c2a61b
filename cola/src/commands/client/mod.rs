//! The command-line client of the JSON API: `cola submit`, `cola jobs list|get|cancel|output|
//! watch`, `cola languages`, `cola methods`. The gateway and the token come from flags, the
//! environment or the config file ([`config`]); answers print as a table or as JSON
//! ([`render`]); every outcome has its exit code ([`exit`]).

mod api;
mod catalogue;
mod config;
mod exit;
mod jobs;
mod render;
mod submit;

use std::process::ExitCode;

use crate::cli::{ClientArgs, ClientCommand, JobsCommand};

/// Runs a client command; a failure prints its reason and ends with its exit code.
pub async fn run(command: ClientCommand) -> ExitCode {
    match dispatch(command).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("cola: {error:#}");
            let code = error
                .downcast_ref::<api::ApiError>()
                .map_or(exit::USAGE, api::ApiError::exit_code);
            ExitCode::from(code)
        }
    }
}

async fn dispatch(command: ClientCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClientCommand::Submit(args) => {
            let api = connect(&args.client)?;
            submit::run(&api, &args).await
        }
        ClientCommand::Languages(client) => {
            catalogue::languages(&connect(&client)?, client.output).await
        }
        ClientCommand::Methods(client) => {
            catalogue::methods(&connect(&client)?, client.output).await
        }
        ClientCommand::Jobs(command) => jobs_command(command).await,
    }
}

async fn jobs_command(command: JobsCommand) -> anyhow::Result<ExitCode> {
    match command {
        JobsCommand::List {
            limit,
            before,
            client,
        } => jobs::list(&connect(&client)?, limit, before.as_deref(), client.output).await,
        JobsCommand::Get { id, client } => jobs::get(&connect(&client)?, &id, client.output).await,
        JobsCommand::Cancel { id, client } => {
            jobs::cancel(&connect(&client)?, &id, client.output).await
        }
        JobsCommand::Output { id, file, client } => {
            jobs::output(&connect(&client)?, &id, file.as_deref()).await
        }
        JobsCommand::Watch { id, client } => {
            jobs::watch(&connect(&client)?, &id, client.output).await
        }
    }
}

fn connect(client: &ClientArgs) -> anyhow::Result<api::Api> {
    Ok(api::Api::new(config::resolve(client)?))
}
