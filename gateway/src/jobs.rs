//! The jobs API: submit, list, show, cancel, download the output.
//!
//! Every job path is looked up under the caller's own key prefix (`<user>.<job-id>`), so another
//! user's job is not "forbidden" but simply not there: `404`, like a malformed or unknown id.

use std::time::Duration;

use async_nats::jetstream::object_store::GetErrorKind;
use axum::{
    Json,
    body::Body,
    extract::{Extension, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use cola_wire::{JobId, JobKey, JobRecord, RequestId, UserId, names, nats::Transition};
use futures::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::io::ReaderStream;
use utoipa::{IntoParams, ToSchema};

use crate::{
    GatewayError,
    auth::Authenticated,
    extract::{JobIdParam, JsonBody, NO_SUCH_JOB, QueryParams},
    listing,
    openapi::{
        BadRequest, Conflict, InternalError, NotFound, PayloadTooLarge, ServiceUnavailable,
        TooManyRequests, Unauthorized, UnsupportedMediaType,
    },
    queue,
    state::AppState,
    submit::SubmitRequest,
    view::{JobView, job_path},
    wait::{self, Seen},
};

/// Jobs per page when the client does not say.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// The most jobs one page may hold.
pub const MAX_PAGE_SIZE: usize = 200;
/// Records read at once when filling a page.
const PAGE_READ_CONCURRENCY: usize = 16;

/// `?wait=N`, for the endpoints that can hold their answer until the job ends.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitParams {
    /// Seconds (fractions allowed) to hold the answer until the job has ended; `0`, or no
    /// `wait`, answers at once. The answer is the job as it is when the wait ends, ended or
    /// not.
    #[param(value_type = Option<f64>, minimum = 0)]
    wait: Option<String>,
}

/// `POST /api/v1/jobs[?wait=N]`: `201` with the job's view and its `Location`.
#[utoipa::path(
    post,
    path = "/api/v1/jobs",
    tag = "jobs",
    operation_id = "submit_job",
    summary = "Submit a job",
    description = "A program (`c`, `go`, `javascript`) as `files` or `source`, with optional \
        `stdin`, `args` and `limits`; or a `numeric` job's `problem` (see \
        `GET /api/v1/numeric/methods`). Every check runs before anything is queued: a mistake \
        is a 400 naming the field, a quota a 429.",
    security(("bearer" = [])),
    params(WaitParams),
    request_body(content = SubmitRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Queued (or, with `wait`, as it was when the wait ended).",
            body = JobView,
            headers(("Location" = String, description = "The job's path: `/api/v1/jobs/{id}`."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 429, response = TooManyRequests),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn create(
    State(app): State<AppState>,
    Authenticated(user): Authenticated,
    Extension(request_id): Extension<RequestId>,
    params: Result<QueryParams<WaitParams>, GatewayError>,
    request: Result<JsonBody<SubmitRequest>, GatewayError>,
) -> Result<Response, GatewayError> {
    let received = std::time::Instant::now();
    // A refusal before queueing is counted here; one while queueing, by `enqueue_detached`.
    let checked = params.and_then(|QueryParams(params)| {
        let wait = wait::parse_wait(params.wait.as_deref(), app.config.max_wait)?;
        Ok((wait, request?.0.validate()?))
    });
    let (wait, job) = checked.inspect_err(|e| app.metrics.refused(e))?;
    let validated = received.elapsed();
    let id = JobId::new();
    let language = job.language.name;
    tracing::Span::current().record("job_id", tracing::field::display(id));
    // Listen before the record exists: no change to it can be missed.
    let events = (!wait.is_zero()).then(|| app.events.subscribe_job(&user, id));
    let queued = queue::enqueue_detached(&app, &user, (id, &request_id), job).await?;
    let queued_after = received.elapsed();
    tracing::info!(job_id = %id, user = %user, language, "job queued");
    let record = match events {
        None => queued.record,
        Some(events) => {
            let seen = Seen {
                record: queued.record,
                revision: queued.revision,
            };
            wait_for_end(&app, events, &user, id, seen, wait).await?
        }
    };
    // Where a submission's time goes (`RUST_LOG=cola_gateway::jobs=debug`).
    tracing::debug!(
        job_id = %id,
        validated_us = validated.as_micros() as u64,
        queued_us = queued_after.as_micros() as u64,
        answered_us = received.elapsed().as_micros() as u64,
        "job answered"
    );
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, job_path(&id))],
        Json(JobView::from(&record)),
    )
        .into_response())
}

/// `GET /api/v1/jobs/{id}[?wait=N]`: the job's view, optionally once it has ended.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}",
    tag = "jobs",
    operation_id = "get_job",
    summary = "One job",
    security(("bearer" = [])),
    params(("id" = JobId, Path, description = "The job's id."), WaitParams),
    responses(
        (status = 200, description = "The job (with `wait`, as it was when the wait ended).",
            body = JobView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn show(
    State(app): State<AppState>,
    Authenticated(user): Authenticated,
    JobIdParam(id): JobIdParam,
    QueryParams(params): QueryParams<WaitParams>,
) -> Result<Json<JobView>, GatewayError> {
    let wait = wait::parse_wait(params.wait.as_deref(), app.config.max_wait)?;
    tracing::Span::current().record("job_id", tracing::field::display(id));
    let events = (!wait.is_zero()).then(|| app.events.subscribe_job(&user, id));
    let (record, revision) = find(&app, &user, id).await?;
    let record = match events {
        None => record,
        Some(events) => {
            wait_for_end(&app, events, &user, id, Seen { record, revision }, wait).await?
        }
    };
    Ok(Json(JobView::from(&record)))
}

async fn wait_for_end(
    app: &AppState,
    events: crate::events::UserEvents,
    user: &UserId,
    id: JobId,
    seen: Seen,
    wait: Duration,
) -> Result<JobRecord, GatewayError> {
    wait::until_terminal(
        events,
        &app.topology.jobs,
        &JobKey::new(user, &id),
        id,
        seen,
        Instant::now() + wait,
        &app.shutdown,
    )
    .await
}

/// The caller's job `id` with its revision, or `404`.
pub(crate) async fn find(
    app: &AppState,
    user: &UserId,
    id: JobId,
) -> Result<(JobRecord, u64), GatewayError> {
    app.topology
        .jobs
        .get(&JobKey::new(user, &id))
        .await?
        .ok_or(NO_SUCH_JOB)
}

/// `?limit=N&before=<job-id>`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Jobs on the page (50 when left out).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// Only jobs older than this one: the `next` of the previous page.
    #[param(value_type = Option<String>, format = Uuid)]
    before: Option<String>,
}

/// A page of the caller's jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    /// Newest first.
    pub jobs: Vec<JobView>,
    /// The `before` of the next page; `null` on the last one.
    #[schema(required = true)]
    pub next: Option<JobId>,
}

/// `GET /api/v1/jobs?limit=N&before=<job-id>`: the caller's jobs, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    tag = "jobs",
    operation_id = "list_jobs",
    summary = "Your jobs, newest first",
    security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "A page of jobs; `next` is the `before` of the next one.",
            body = JobList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn list(
    State(app): State<AppState>,
    Authenticated(user): Authenticated,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Json<JobList>, GatewayError> {
    let limit = match params.limit.as_deref() {
        None => DEFAULT_PAGE_SIZE,
        Some(raw) => raw
            .parse()
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| {
                GatewayError::invalid_field(
                    "limit",
                    format!("limit must be a whole number from 1 to {MAX_PAGE_SIZE}"),
                )
            })?,
    };
    let before = params
        .before
        .as_deref()
        .map(|raw| {
            raw.parse::<JobId>()
                .map_err(|_| GatewayError::invalid_field("before", "before must be a job id"))
        })
        .transpose()?;
    let (records, next) = recent(&app, &user, before, limit).await?;
    let jobs = records
        .iter()
        .map(|(record, _)| JobView::from(record))
        .collect();
    Ok(Json(JobList { jobs, next }))
}

/// One page of `user`'s jobs, newest first, strictly older than `before`, with their
/// revisions; and the `before` of the next page, if there is one.
pub(crate) async fn recent(
    app: &AppState,
    user: &UserId,
    before: Option<JobId>,
    limit: usize,
) -> Result<(Vec<(JobRecord, u64)>, Option<JobId>), GatewayError> {
    let ids = listing::job_ids(&app.topology.jobs.kv, user).await?;
    let (page, more) = listing::page(ids, before, limit);
    let next = if more { page.last().copied() } else { None };
    let jobs = &app.topology.jobs;
    let records = futures::stream::iter(page)
        .map(|id| async move { jobs.get(&JobKey::new(user, &id)).await })
        .buffered(PAGE_READ_CONCURRENCY)
        // A record removed since the listing is simply left out.
        .try_filter_map(|found| async move { Ok(found) })
        .try_collect()
        .await?;
    Ok((records, next))
}

/// `POST /api/v1/jobs/{id}/cancel`: asks for the job to be cancelled (`202`); the middleware
/// stops it. A job that has already ended answers `409`. (Not `DELETE /api/v1/jobs/{id}`: the
/// job is not deleted, it stays readable until it expires with the retention.)
#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/cancel",
    tag = "jobs",
    operation_id = "cancel_job",
    summary = "Cancel a queued or running job",
    description = "Asks for the job to be stopped: the answer has `cancel_requested: true`, and \
        the job ends `cancelled` once the middleware has stopped it (or ends otherwise if it \
        finished first).",
    security(("bearer" = [])),
    params(("id" = JobId, Path, description = "The job's id.")),
    responses(
        (status = 202, description = "Cancellation asked for.", body = JobView),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn cancel(
    State(app): State<AppState>,
    Authenticated(user): Authenticated,
    JobIdParam(id): JobIdParam,
) -> Result<(StatusCode, Json<JobView>), GatewayError> {
    tracing::Span::current().record("job_id", tracing::field::display(id));
    let record = request_cancel(&app, &user, id).await?;
    Ok((StatusCode::ACCEPTED, Json(JobView::from(&record))))
}

/// Sets `cancel_requested` on `user`'s job `id` (compare-and-set); `409` if it has ended.
pub(crate) async fn request_cancel(
    app: &AppState,
    user: &UserId,
    id: JobId,
) -> Result<JobRecord, GatewayError> {
    let key = JobKey::new(user, &id);
    let outcome = app
        .topology
        .jobs
        .transition(&key, |record| {
            let ask = !record.cancel_requested;
            record.cancel_requested = true;
            ask
        })
        .await?;
    match outcome {
        Transition::Missing => Err(NO_SUCH_JOB),
        Transition::Unchanged(record, _) if record.status.is_terminal() => {
            Err(GatewayError::Conflict("the job has already ended"))
        }
        Transition::Changed(record, _) | Transition::Unchanged(record, _) => {
            tracing::info!(job_id = %id, user = %user, language = %record.language, "cancel requested");
            Ok(record)
        }
    }
}

/// `GET /api/v1/jobs/{id}/output.zip`: the output zip, streamed from the object store.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/output.zip",
    tag = "jobs",
    operation_id = "get_job_output",
    summary = "The job's output zip",
    description = "`stdout.txt`, `stderr.txt`, `compile.txt`, the files the program wrote under \
        `out/`; a numeric job's `result.json`, `table.csv` and `plot.svg`. There once the job \
        has ended (the view's `output_url`): before, the answer is 409. A job that ended \
        without storing any (cancelled before it ran) has an empty zip.",
    security(("bearer" = [])),
    params(("id" = JobId, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "The zip (empty for a job that ended without output).",
            content_type = "application/zip", body = [u8],
            headers(("Content-Disposition" = String,
                description = "`attachment; filename=\"<id>-output.zip\"`"))),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn output_zip(
    State(app): State<AppState>,
    Authenticated(user): Authenticated,
    JobIdParam(id): JobIdParam,
) -> Result<Response, GatewayError> {
    tracing::Span::current().record("job_id", tracing::field::display(id));
    output_response(&app, &user, id).await
}

/// A zip without entries: its end-of-central-directory record alone.
const EMPTY_ZIP: &[u8] = b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

/// The output zip of `user`'s job `id`, streamed from the object store: `409` while the job has
/// not ended (its zip is stored before its record ends); an empty zip for a job that ended
/// without storing one (cancelled before it ran, or ended by an internal error).
pub(crate) async fn output_response(
    app: &AppState,
    user: &UserId,
    id: JobId,
) -> Result<Response, GatewayError> {
    let (record, _) = find(app, user, id).await?;
    if !record.status.is_terminal() {
        return Err(GatewayError::Conflict(
            "the job has not ended yet: its output is there once it has",
        ));
    }
    let object = match app
        .topology
        .outputs
        .get(names::output_object(user, &id))
        .await
    {
        Ok(object) => object,
        Err(error) if error.kind() == GetErrorKind::NotFound => {
            return Ok(zip_response(
                id,
                EMPTY_ZIP.len() as u64,
                Body::from(EMPTY_ZIP),
            ));
        }
        Err(error) => return Err(GatewayError::backend("read output zip", error)),
    };
    let size = object.info().size;
    Ok(zip_response(
        id,
        size as u64,
        Body::from_stream(ReaderStream::new(object)),
    ))
}

fn zip_response(id: JobId, size: u64, body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}-output.zip\""),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_empty_zip_is_a_zip_without_entries() {
        let archive = zip::ZipArchive::new(std::io::Cursor::new(super::EMPTY_ZIP)).unwrap();
        assert_eq!(archive.len(), 0);
    }
}
