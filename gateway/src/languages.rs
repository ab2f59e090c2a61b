//! `GET /api/v1/languages`: the language table, with the toolchain versions the middleware
//! publishes in the `cola-meta` bucket.

use std::collections::HashMap;

use axum::{Json, extract::State};
use cola_wire::{Isolation, Limits, languages, names};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    GatewayError,
    auth::Authenticated,
    openapi::{InternalError, ServiceUnavailable, Unauthorized},
    state::AppState,
};

/// The version shown while no middleware has said which toolchain it runs.
pub const UNKNOWN_VERSION: &str = "unknown";
/// The version of the numeric runtime: the one built into this cola.
pub const NUMERIC_VERSION: &str = concat!("built in (cola ", env!("CARGO_PKG_VERSION"), ")");

/// The languages a job can be written in.
#[derive(Debug, Serialize, ToSchema)]
pub struct LanguageList {
    pub languages: Vec<LanguageView>,
    /// How the middleware's backend isolates jobs beyond the sandbox (a cgroup and a disk
    /// allowance per job, or why not); `null` until a middleware has said.
    #[schema(required = true)]
    pub isolation: Option<Isolation>,
}

/// One language.
#[derive(Debug, Serialize, ToSchema)]
pub struct LanguageView {
    /// What a submission's `language` says.
    pub name: &'static str,
    pub title: &'static str,
    /// `program` (files run by an executor) or `numeric` (the numeric runtime: a `problem`
    /// solved in-process, see `GET /api/v1/numeric/methods`; see [`cola_wire::Runtime::as_str`]).
    #[schema(pattern = "^(program|numeric)$")]
    pub runtime: &'static str,
    /// The file a program's `source` becomes, and the one file `files` must have.
    pub source_file: &'static str,
    /// The extensions `files` may have.
    #[schema(value_type = Vec<String>)]
    pub allowed_extensions: &'static [&'static str],
    /// The toolchain's version, as the middleware found it (`unknown` until it has said).
    pub version: String,
    pub default_limits: Limits,
    pub max_limits: Limits,
}

/// `GET /api/v1/languages`.
#[utoipa::path(
    get,
    path = "/api/v1/languages",
    tag = "languages",
    operation_id = "list_languages",
    summary = "Languages, toolchain versions, default and maximum limits",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The language table.", body = LanguageList),
        (status = 401, response = Unauthorized),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
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
