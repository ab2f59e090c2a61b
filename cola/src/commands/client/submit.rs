//! `cola submit`: a program from files, or a numeric problem from a JSON file, submitted
//! through the API; with `--wait`, followed to its end and its output printed.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::{api::Api, jobs, render};
use crate::cli::{OutputFormat, SubmitArgs};

/// How long the submission itself may wait for the job's end (`?wait`); `follow` goes on after.
const SUBMIT_WAIT_SECONDS: u64 = 60;

pub async fn run(api: &Api, args: &SubmitArgs) -> anyhow::Result<ExitCode> {
    let body = match &args.problem {
        Some(path) => problem_body(&args.language, path)?,
        None => program_body(args)?,
    };
    let output = args.client.output;
    if !args.wait {
        let view = api.post("/api/v1/jobs", Some(&body)).await?;
        match output {
            OutputFormat::Json => render::json(&view)?,
            OutputFormat::Table => println!(
                "{} {}",
                render::cell(&view["id"]),
                render::cell(&view["status"])
            ),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let view = api
        .post(
            &format!("/api/v1/jobs?wait={SUBMIT_WAIT_SECONDS}"),
            Some(&body),
        )
        .await?;
    let view = jobs::follow(api, view, output, false).await?;
    if output == OutputFormat::Json {
        render::json(&view)?;
    }
    jobs::finish(&view, output)
}

/// `{"language", "files", "stdin", "args"}` from the files named on the command line.
fn program_body(args: &SubmitArgs) -> anyhow::Result<Value> {
    let mut files = Vec::new();
    for path in &args.files {
        let content =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .context("a file name")?;
        files.push(json!({ "name": name, "content": content }));
    }
    let stdin = match &args.stdin {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => String::new(),
    };
    Ok(json!({ "language": args.language, "files": files, "stdin": stdin, "args": args.args }))
}

/// `{"language", "problem"}` from a JSON file holding the problem (the gateway validates it).
fn problem_body(language: &str, path: &std::path::Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let problem: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    if !problem.is_object() {
        bail!(
            "{} must hold a JSON object such as {{\"method\": \"bisection\", ...}}",
            path.display()
        );
    }
    Ok(json!({ "language": language, "problem": problem }))
}
