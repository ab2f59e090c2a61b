//! `cola jobs list|get|cancel|output|watch`: one's own jobs through the API, and the follow
//! loop `cola submit --wait` shares with `watch`.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;
use serde_json::Value;

use super::{api::Api, exit, render};
use crate::cli::OutputFormat;

/// How often a queued job is read again while it waits for its start.
const QUEUED_POLL: Duration = Duration::from_millis(250);
/// How long one read of a running job may wait for its end (`?wait`), within the gateway's
/// longest.
const RUNNING_WAIT_SECONDS: u64 = 30;

/// `cola jobs list`: a page of the caller's jobs, newest first.
pub async fn list(
    api: &Api,
    limit: u32,
    before: Option<&str>,
    output: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let mut path = format!("/api/v1/jobs?limit={limit}");
    if let Some(before) = before {
        path += &format!("&before={}", encode(before));
    }
    let page = api.get(&path).await?;
    match output {
        OutputFormat::Json => render::json(&page)?,
        OutputFormat::Table => {
            let jobs = page["jobs"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            let rows: Vec<Vec<String>> = jobs.iter().map(list_row).collect();
            let headers = ["ID", "LANGUAGE", "STATUS", "REASON", "EXIT", "CREATED"];
            render::table(&headers, &rows)?;
            if let Some(next) = page["next"].as_str() {
                eprintln!("cola: more with --before {next}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list_row(job: &Value) -> Vec<String> {
    [
        "id",
        "language",
        "status",
        "reason",
        "exit_code",
        "created_at",
    ]
    .iter()
    .map(|key| render::cell(&job[*key]))
    .collect()
}

/// `cola jobs get ID`: one job.
pub async fn get(api: &Api, id: &str, output: OutputFormat) -> anyhow::Result<ExitCode> {
    let view = api.get(&job_path(id)).await?;
    match output {
        OutputFormat::Json => render::json(&view)?,
        OutputFormat::Table => print_details(&view)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `cola jobs cancel ID`: asks to cancel; the job as it is then.
pub async fn cancel(api: &Api, id: &str, output: OutputFormat) -> anyhow::Result<ExitCode> {
    let view = api.post(&format!("{}/cancel", job_path(id)), None).await?;
    match output {
        OutputFormat::Json => render::json(&view)?,
        OutputFormat::Table => println!(
            "{} {} (cancel requested)",
            cell(&view, "id"),
            cell(&view, "status")
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `cola jobs output ID`: the job's output zip, into `file` (`-`: stdout; default
/// `<id>.zip`), written aside and renamed so that a file there is always whole.
pub async fn output(api: &Api, id: &str, file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut response = api
        .download(&format!("{}/output.zip", job_path(id)))
        .await?;
    let target = file.map_or_else(|| PathBuf::from(format!("{id}.zip")), Path::to_path_buf);
    if target == Path::new("-") {
        let mut out = std::io::stdout().lock();
        while let Some(chunk) = response.chunk().await.context("reading the zip")? {
            out.write_all(&chunk)?;
        }
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut aside = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing into {}", dir.display()))?;
    let mut bytes = 0;
    while let Some(chunk) = response.chunk().await.context("reading the zip")? {
        aside.write_all(&chunk)?;
        bytes += chunk.len();
    }
    aside
        .persist(&target)
        .with_context(|| format!("writing {}", target.display()))?;
    eprintln!("cola: {} ({bytes} bytes)", target.display());
    Ok(ExitCode::SUCCESS)
}

/// `cola jobs watch ID`: follows the job live (each change of its status as it happens) to its
/// end, then prints its outcome; the job's exit code (see [`exit::of_job`]).
pub async fn watch(api: &Api, id: &str, output: OutputFormat) -> anyhow::Result<ExitCode> {
    let view = api.get(&job_path(id)).await?;
    let view = follow(api, view, output, true).await?;
    finish(&view, output)
}

/// Reads the job of `view` again until it ends: while it is queued every [`QUEUED_POLL`], once
/// it runs with a wait for its end. With `announce`, each status it passes through is printed
/// as it is seen (a line on stderr, or the whole view as a JSON line on stdout).
pub async fn follow(
    api: &Api,
    mut view: Value,
    output: OutputFormat,
    announce: bool,
) -> anyhow::Result<Value> {
    let path = job_path(&cell(&view, "id"));
    let mut shown: Option<String> = None;
    loop {
        let status = cell(&view, "status");
        if announce && shown.as_deref() != Some(status.as_str()) {
            match output {
                OutputFormat::Json => render::json_line(&view)?,
                OutputFormat::Table => eprintln!("cola: job {} {status}", cell(&view, "id")),
            }
            shown = Some(status.clone());
        }
        match status.as_str() {
            "succeeded" | "failed" | "cancelled" => return Ok(view),
            "queued" => {
                tokio::time::sleep(QUEUED_POLL).await;
                view = api.get(&path).await?;
            }
            _ => {
                view = api
                    .get(&format!("{path}?wait={RUNNING_WAIT_SECONDS}"))
                    .await?
            }
        }
    }
}

/// Prints an ended job's outcome (in table mode: its output on stdout and stderr, as a
/// program run by hand would, and a summary line on stderr); the job's exit code.
pub fn finish(view: &Value, output: OutputFormat) -> anyhow::Result<ExitCode> {
    if output == OutputFormat::Table {
        print_outcome(view)?;
    }
    let number = |key: &str| view[key].as_i64();
    Ok(exit::of_job(
        &cell(view, "status"),
        number("exit_code"),
        number("signal"),
    ))
}

/// A job's path in the API.
fn job_path(id: &str) -> String {
    format!("/api/v1/jobs/{}", encode(id))
}

/// A path segment or query value, percent-encoded.
fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn cell(view: &Value, key: &str) -> String {
    render::cell(&view[key])
}

fn print_details(view: &Value) -> anyhow::Result<()> {
    let keys = [
        "id",
        "language",
        "status",
        "reason",
        "exit_code",
        "signal",
        "created_at",
        "started_at",
        "finished_at",
        "cancel_requested",
        "output_url",
    ];
    let mut rows: Vec<Vec<String>> = keys
        .iter()
        .map(|key| vec![(*key).to_owned(), cell(view, key)])
        .collect();
    if let Some(timings) = view["timings_ms"].as_object() {
        for (step, ms) in timings.iter().filter(|(_, ms)| !ms.is_null()) {
            rows.push(vec![format!("timings_ms.{step}"), render::cell(ms)]);
        }
    }
    render::table(&["FIELD", "VALUE"], &rows)
}

fn print_outcome(view: &Value) -> anyhow::Result<()> {
    let mut err = std::io::stderr().lock();
    err.write_all(cell(view, "compile_output").as_bytes())?;
    let mut out = std::io::stdout().lock();
    out.write_all(cell(view, "stdout").as_bytes())?;
    if !view["result"].is_null() {
        writeln!(out, "{}", serde_json::to_string_pretty(&view["result"])?)?;
    }
    err.write_all(cell(view, "stderr").as_bytes())?;
    let mut line = format!("cola: job {} {}", cell(view, "id"), cell(view, "status"));
    if let Some(reason) = view["reason"].as_str() {
        line += &format!(" ({reason})");
    }
    if let Some(code) = view["exit_code"].as_i64() {
        line += &format!(", exit code {code}");
    }
    if let Some(signal) = view["signal"].as_i64() {
        line += &format!(", signal {signal}");
    }
    writeln!(err, "{line}")?;
    Ok(())
}
