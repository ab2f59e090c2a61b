//! `cola submit`: the command-line client of the JSON API.

use std::{io::Write as _, process::ExitCode, time::Duration};

use anyhow::{Context as _, bail};
use serde::Deserialize;
use serde_json::json;

use crate::cli::SubmitArgs;

/// The parts of the job view the client prints.
#[derive(Debug, Deserialize)]
struct JobView {
    id: String,
    status: String,
    reason: Option<String>,
    exit_code: Option<i32>,
    signal: Option<i32>,
    #[serde(default)]
    stdout: String,
    #[serde(default)]
    stderr: String,
    #[serde(default)]
    compile_output: String,
    /// A numeric job's result.
    result: Option<serde_json::Value>,
}

impl JobView {
    fn is_terminal(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "failed" | "cancelled")
    }
}

pub async fn run(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let Some(token) = args
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        bail!(
            "an API token is required: --token or COLA_TOKEN (with `cola up --dev`, it is in .cola/dev-token)"
        );
    };
    let body = match &args.problem {
        Some(path) => problem_body(&args.language, path)?,
        None => program_body(&args)?,
    };
    let base = args.url.trim_end_matches('/');
    let http = reqwest::Client::new();
    let wait = if args.wait { "?wait=60" } else { "" };
    let response = http
        .post(format!("{base}/api/v1/jobs{wait}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("submitting to {base}"))?;
    let mut view = parse(response).await?;
    if !args.wait {
        println!("{} {}", view.id, view.status);
        return Ok(ExitCode::SUCCESS);
    }
    while !view.is_terminal() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let response = http
            .get(format!("{base}/api/v1/jobs/{}", view.id))
            .bearer_auth(token)
            .send()
            .await?;
        view = parse(response).await?;
    }
    print_outcome(&view)?;
    Ok(exit_code(&view))
}

/// `{"language", "files", "stdin", "args"}` from the files named on the command line.
fn program_body(args: &SubmitArgs) -> anyhow::Result<serde_json::Value> {
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
fn problem_body(language: &str, path: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let problem: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    if !problem.is_object() {
        bail!(
            "{} must hold a JSON object such as {{\"method\": \"bisection\", ...}}",
            path.display()
        );
    }
    Ok(json!({ "language": language, "problem": problem }))
}

async fn parse(response: reqwest::Response) -> anyhow::Result<JobView> {
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        let detail = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                let error = v.get("error")?.as_str()?.to_owned();
                Some(match v.get("field").and_then(|f| f.as_str()) {
                    Some(field) => format!("{error} ({field})"),
                    None => error,
                })
            })
            .unwrap_or(text);
        bail!("the gateway answered {status}: {detail}");
    }
    serde_json::from_str(&text).context("reading the job view")
}

fn print_outcome(view: &JobView) -> anyhow::Result<()> {
    let mut err = std::io::stderr().lock();
    if !view.compile_output.is_empty() {
        err.write_all(view.compile_output.as_bytes())?;
    }
    let mut out = std::io::stdout().lock();
    out.write_all(view.stdout.as_bytes())?;
    if let Some(result) = &view.result {
        writeln!(out, "{}", serde_json::to_string_pretty(result)?)?;
    }
    err.write_all(view.stderr.as_bytes())?;
    let mut line = format!("cola: job {} {}", view.id, view.status);
    if let Some(reason) = &view.reason {
        line += &format!(" ({reason})");
    }
    if let Some(code) = view.exit_code {
        line += &format!(", exit code {code}");
    }
    if let Some(signal) = view.signal {
        line += &format!(", signal {signal}");
    }
    writeln!(err, "{line}")?;
    Ok(())
}

/// 0 when the job succeeded; its exit code, or 128 + its signal, when it failed running; 1
/// otherwise.
fn exit_code(view: &JobView) -> ExitCode {
    let code = match (view.status.as_str(), view.exit_code, view.signal) {
        ("succeeded", _, _) => 0,
        (_, _, Some(signal)) => 128 + signal,
        (_, Some(code), _) if code != 0 => code,
        _ => 1,
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
