//! `cola languages` and `cola methods`: what the service runs, as the API lists it.

use std::process::ExitCode;

use serde_json::Value;

use super::{api::Api, render};
use crate::cli::OutputFormat;

/// `cola languages`: each language with its toolchain's version and default limits.
pub async fn languages(api: &Api, output: OutputFormat) -> anyhow::Result<ExitCode> {
    let list = api.get("/api/v1/languages").await?;
    if output == OutputFormat::Json {
        render::json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    let languages = list["languages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = languages
        .iter()
        .map(|l| {
            let limits = &l["default_limits"];
            vec![
                render::cell(&l["name"]),
                render::cell(&l["runtime"]),
                render::cell(&l["version"]),
                render::cell(&l["source_file"]),
                format!("{} ms", render::cell(&limits["wall_time_ms"])),
                format!("{} MB", render::cell(&limits["memory_mb"])),
            ]
        })
        .collect();
    let headers = ["NAME", "RUNTIME", "VERSION", "SOURCE", "TIME", "MEMORY"];
    render::table(&headers, &rows)?;
    Ok(ExitCode::SUCCESS)
}

/// `cola methods`: each numeric method with its parameters (required ones marked `*`).
pub async fn methods(api: &Api, output: OutputFormat) -> anyhow::Result<ExitCode> {
    let list = api.get("/api/v1/numeric/methods").await?;
    if output == OutputFormat::Json {
        render::json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    let methods = list["methods"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = methods
        .iter()
        .map(|m| {
            vec![
                render::cell(&m["name"]),
                render::cell(&m["family"]),
                parameters(&m["parameters"]),
            ]
        })
        .collect();
    render::table(&["METHOD", "FAMILY", "PARAMETERS (* required)"], &rows)?;
    Ok(ExitCode::SUCCESS)
}

fn parameters(list: &Value) -> String {
    let names: Vec<String> = list
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let mark = if p["required"] == Value::Bool(true) {
                "*"
            } else {
                ""
            };
            format!("{}{mark}", render::cell(&p["name"]))
        })
        .collect();
    names.join(" ")
}
