//! `GET /api/v1/languages`: the language table, with the toolchain versions the middleware
//! publishes in the `cola-meta` bucket.

use std::collections::HashMap;

use axum::{Json, extract::State};
use cola_wire::{Isolation, Limits, languages, names};
use serde::Serialize;

use crate::{GatewayError, auth::Authenticated, state::AppState};

/// The version shown while no middleware has said which toolchain it runs.
pub const UNKNOWN_VERSION: &str = "unknown";
/// The version of the numeric runtime: the one built into this cola.
pub const NUMERIC_VERSION: &str = concat!("built in (cola ", env!("CARGO_PKG_VERSION"), ")");

#[derive(Debug, Serialize)]
pub struct LanguageList {
    pub languages: Vec<LanguageView>,
    /// How the middleware's backend isolates jobs beyond the sandbox (a cgroup and a disk
    /// allowance per job, or why not); `null` until a middleware has said.
    pub isolation: Option<Isolation>,
}

#[derive(Debug, Serialize)]
pub struct LanguageView {
    pub name: &'static str,
    pub title: &'static str,
    /// `program` (files run by an executor) or `numeric` (the numeric runtime: a `problem`
    /// solved in-process, see `GET /api/v1/numeric/methods`; see [`cola_wire::Runtime::as_str`]).
    pub runtime: &'static str,
    pub source_file: &'static str,
    pub allowed_extensions: &'static [&'static str],
    pub version: String,
    pub default_limits: Limits,
    pub max_limits: Limits,
}

pub async fn list(
    State(app): State<AppState>,
    Authenticated(_): Authenticated,
) -> Result<Json<LanguageList>, GatewayError> {
    let mut versions = toolchain_versions(&app).await?;
    let languages = languages()
        .iter()
        .map(|l| LanguageView {
            name: l.name,
            title: l.title,
            runtime: l.runtime.as_str(),
            source_file: l.source_file,
            allowed_extensions: l.allowed_extensions,
            version: if l.is_numeric() {
                NUMERIC_VERSION.into()
            } else {
                versions
                    .remove(l.name)
                    .unwrap_or_else(|| UNKNOWN_VERSION.into())
            },
            default_limits: l.default_limits,
            max_limits: l.max_limits,
        })
        .collect();
    Ok(Json(LanguageList {
        languages,
        isolation: isolation(&app).await?,
    }))
}

/// How jobs are isolated, as a middleware last published it.
async fn isolation(app: &AppState) -> Result<Option<Isolation>, GatewayError> {
    let value = app
        .topology
        .meta
        .get(names::META_ISOLATION)
        .await
        .map_err(|e| GatewayError::backend("read how jobs are isolated", e))?;
    Ok(value.and_then(|value| {
        serde_json::from_slice(&value)
            .inspect_err(|error| tracing::warn!(%error, "isolation in cola-meta is not valid"))
            .ok()
    }))
}

/// Language name → toolchain version, as last published; empty when nothing was.
async fn toolchain_versions(app: &AppState) -> Result<HashMap<String, String>, GatewayError> {
    let Some(value) = app
        .topology
        .meta
        .get(names::META_LANGUAGE_VERSIONS)
        .await
        .map_err(|e| GatewayError::backend("read toolchain versions", e))?
    else {
        return Ok(HashMap::new());
    };
    Ok(serde_json::from_slice(&value).unwrap_or_else(|error| {
        tracing::warn!(%error, "toolchain versions in cola-meta are not a JSON map of strings");
        HashMap::new()
    }))
}
