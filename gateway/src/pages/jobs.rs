//! The job pages: `/` (the list, newest first, with the submit form), `POST /jobs`,
//! `/jobs/{id}` (one job), `POST /jobs/{id}/cancel` and `/jobs/{id}/output.zip`.
//!
//! Every job is looked up under the session user's own key prefix: another user's job is not
//! found (`404`), like an unknown one.

use std::io::Cursor;

use askama::Template;
use axum::{
    extract::{Multipart, Query, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};
use cola_wire::{JobId, JobRecord, language, names};
use serde::Deserialize;
use tokio::io::AsyncReadExt as _;

use crate::{
    GatewayError,
    app::AppState,
    jobs::{self as api, DEFAULT_PAGE_SIZE},
    pages::{
        Chrome, PageError, PageForm, PageJobId, SignedIn,
        form::{self, FormView},
        render, see_other,
        view::{self, JobRow, Output},
    },
    queue,
};

/// The largest output zip whose file list the job page reads.
const MAX_LISTED_ZIP_BYTES: u64 = 16 << 20;

#[derive(Template)]
#[template(path = "index.html")]
pub struct IndexPage {
    pub chrome: Chrome,
    pub form: FormView,
    pub jobs: Vec<JobRow>,
    /// `before` of the next (older) page.
    pub older: Option<String>,
    /// Whether this is the first page (new jobs appear on it live).
    pub first_page: bool,
    /// The job just submitted, to point it out.
    pub submitted: Option<String>,
    pub submitted_short: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct IndexQuery {
    before: Option<String>,
    /// Fill the form from this job ("edit and resubmit").
    from: Option<String>,
    /// The job just submitted (its sources stay in the form).
    submitted: Option<String>,
    /// Start the form in this language.
    language: Option<String>,
}

/// `GET /`: the user's jobs and the submit form.
pub async fn index(
    State(app): State<AppState>,
    signed: SignedIn,
    Query(query): Query<IndexQuery>,
) -> Result<Response, PageError> {
    let user = &signed.login.user;
    let before = query
        .before
        .as_deref()
        .and_then(|b| b.parse::<JobId>().ok());
    let from = query
        .from
        .as_deref()
        .or(query.submitted.as_deref())
        .map(|raw| {
            raw.parse::<JobId>()
                .map_err(|_| PageError::NotFound("no such job"))
        })
        .transpose()?;
    let form = match from {
        Some(id) => {
            let (record, _) = api::find(&app, user, id).await?;
            let inputs = queue::kept_inputs(&app.topology, user, id).await;
            let mut form = FormView::from_job(record.language.as_str(), inputs, &record.limits);
            if record.arg_count > 0 {
                form.args.clear();
                let note = format!(
                    "This job had {} command-line argument(s); arguments are not kept, enter them again.",
                    record.arg_count
                );
                form.note = Some(match form.note.take() {
                    Some(earlier) => format!("{earlier} {note}"),
                    None => note,
                });
            }
            form
        }
        None => FormView::new(query.language.as_deref()),
    };
    let submitted = query
        .submitted
        .as_deref()
        .and_then(|s| s.parse::<JobId>().ok())
        .map(|id| id.to_string());
    page(&app, signed, form, before, submitted, StatusCode::OK).await
}

async fn page(
    app: &AppState,
    signed: SignedIn,
    form: FormView,
    before: Option<JobId>,
    submitted: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let (records, next) = api::recent(app, &signed.login.user, before, DEFAULT_PAGE_SIZE).await?;
    let page = IndexPage {
        chrome: Chrome::for_user(&signed),
        form,
        jobs: records
            .iter()
            .map(|(record, revision)| JobRow::new(record, *revision))
            .collect(),
        older: next.map(|id| id.to_string()),
        first_page: before.is_none(),
        submitted_short: submitted.as_deref().map(view::short_id).unwrap_or_default(),
        submitted,
    };
    Ok((status, Html(page.render()?)).into_response())
}

/// `POST /jobs` (multipart): submits the form; `303` to the list, or the form again with the
/// error next to its field (`400`).
pub async fn submit(
    State(app): State<AppState>,
    signed: SignedIn,
    multipart: Multipart,
) -> Result<Response, PageError> {
    let submitted = form::read(multipart, app.config.max_body_bytes).await?;
    signed.check_csrf(submitted.csrf.as_deref()).await?;
    let request = match submitted.into_request() {
        Ok(request) => request,
        Err(form) => {
            return page(&app, signed, *form, None, None, StatusCode::BAD_REQUEST).await;
        }
    };
    let job = request.validate()?;
    let inputs = job.inputs.clone();
    let user = &signed.login.user;
    let id = JobId::new();
    tracing::Span::current().record("job_id", tracing::field::display(id));
    let language = job.language.name;
    let queued = queue::enqueue(&app.topology, &app.config, user, id, job).await?;
    tracing::info!(job_id = %id, user = %user, language, "job queued from the web form");
    queue::keep_inputs(&app.topology, user, id, &queued, &inputs).await;
    Ok(see_other(&format!("/?submitted={id}#job-{id}")))
}

#[derive(Template)]
#[template(path = "job.html")]
pub struct JobPage {
    pub chrome: Chrome,
    pub row: JobRow,
    pub record: JobRecord,
    pub reason_help: Option<&'static str>,
    pub exit_code: Option<String>,
    pub signal: Option<String>,
    pub started: Option<String>,
    pub finished: Option<String>,
    pub timings: Vec<(&'static str, String)>,
    pub limits: Vec<(&'static str, String)>,
    pub inputs: Vec<(String, String)>,
    pub outputs: Vec<Output>,
    pub zip: ZipListing,
    pub has_output: bool,
    pub can_cancel: bool,
}

/// What the page can say about the files in the output zip.
pub enum ZipListing {
    /// No zip (yet).
    None,
    Files(Vec<(String, String)>),
    /// Too large or unreadable: only the download.
    Unlisted(String),
}

/// `GET /jobs/{id}`.
pub async fn show(
    State(app): State<AppState>,
    signed: SignedIn,
    PageJobId(id): PageJobId,
) -> Result<Response, PageError> {
    tracing::Span::current().record("job_id", tracing::field::display(id));
    let user = &signed.login.user;
    let (record, revision) = api::find(&app, user, id).await?;
    let zip = if record.output_object.is_some() {
        zip_listing(&app, &record).await
    } else {
        ZipListing::None
    };
    let compiled = language(&record.language).is_some_and(|l| l.compile.is_some());
    let mut outputs = Vec::new();
    if compiled || !record.compile_output.is_empty() {
        outputs.push(Output::new(
            "Compiler output",
            "compile-output",
            &record.compile_output,
        ));
    }
    outputs.push(Output::new("Standard output", "stdout", &record.stdout));
    outputs.push(Output::new("Standard error", "stderr", &record.stderr));
    let t = record.timings_ms;
    let queue = t.queue.or_else(|| {
        record
            .started_at
            .map(|s| cola_wire::job::millis_between(record.created_at, s))
    });
    let timings = [
        ("Waiting in the queue", queue),
        ("Compiling", t.compile),
        ("Running", t.run),
        ("Total", t.total),
    ]
    .into_iter()
    .filter_map(|(label, ms)| ms.map(|ms| (label, view::millis(ms))))
    .collect();
    let l = record.limits;
    let limits = vec![
        ("Wall time", view::millis(l.wall_time_ms)),
        ("CPU time", view::millis(l.cpu_time_ms)),
        ("Memory", format!("{} MB", l.memory_mb)),
        ("Processes", l.processes.to_string()),
        ("Output", format!("{} KB", l.output_kb)),
    ];
    let page = JobPage {
        chrome: Chrome::for_user(&signed),
        row: JobRow::new(&record, revision),
        reason_help: record.reason.map(view::reason_help),
        exit_code: record.exit_code.map(|c| c.to_string()),
        signal: record.signal.map(signal_name),
        started: record.started_at.as_ref().map(view::when),
        finished: record.finished_at.as_ref().map(view::when),
        timings,
        limits,
        inputs: record
            .files
            .iter()
            .map(|f| (f.name.clone(), view::bytes(f.bytes)))
            .chain(
                (record.stdin_bytes > 0)
                    .then(|| ("standard input".to_owned(), view::bytes(record.stdin_bytes))),
            )
            .collect(),
        outputs,
        zip,
        has_output: record.output_object.is_some(),
        can_cancel: !record.status.is_terminal(),
        record,
    };
    render(&page)
}

fn signal_name(signal: i32) -> String {
    let name = match signal {
        6 => " (SIGABRT)",
        8 => " (SIGFPE)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        13 => " (SIGPIPE)",
        15 => " (SIGTERM)",
        24 => " (SIGXCPU)",
        25 => " (SIGXFSZ)",
        _ => "",
    };
    format!("{signal}{name}")
}

async fn zip_listing(app: &AppState, record: &JobRecord) -> ZipListing {
    let name = names::output_object(&record.user, &record.id);
    let object = match app.topology.outputs.get(name.as_str()).await {
        Ok(object) => object,
        Err(error) => {
            tracing::warn!(%error, job_id = %record.id, "cannot open the output zip to list it");
            return ZipListing::Unlisted("The list of files is not available right now.".into());
        }
    };
    let size = object.info().size as u64;
    if size > MAX_LISTED_ZIP_BYTES {
        return ZipListing::Unlisted(format!(
            "The zip is {}: download it to see its files.",
            view::bytes(size)
        ));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    if let Err(error) = object
        .take(MAX_LISTED_ZIP_BYTES)
        .read_to_end(&mut bytes)
        .await
    {
        tracing::warn!(%error, job_id = %record.id, "cannot read the output zip to list it");
        return ZipListing::Unlisted("The list of files is not available right now.".into());
    }
    let files = (|| -> zip::result::ZipResult<Vec<(String, String)>> {
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes))?;
        (0..archive.len())
            .map(|i| {
                let entry = archive.by_index_raw(i)?;
                Ok((entry.name().to_owned(), view::bytes(entry.size())))
            })
            .collect()
    })();
    match files {
        Ok(files) => ZipListing::Files(files),
        Err(error) => {
            tracing::warn!(%error, job_id = %record.id, "unreadable output zip");
            ZipListing::Unlisted("The zip could not be read: download it to look.".into())
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

/// `POST /jobs/{id}/cancel`: asks for the job to be stopped; back to its page.
pub async fn cancel(
    State(app): State<AppState>,
    signed: SignedIn,
    PageJobId(id): PageJobId,
    PageForm(form): PageForm<CsrfForm>,
) -> Result<Response, PageError> {
    signed.check_csrf(form.csrf.as_deref()).await?;
    tracing::Span::current().record("job_id", tracing::field::display(id));
    match api::request_cancel(&app, &signed.login.user, id).await {
        // A job that ended meanwhile: its page says how.
        Ok(_) | Err(GatewayError::Conflict(_)) => Ok(see_other(&format!("/jobs/{id}"))),
        Err(error) => Err(error.into()),
    }
}

/// `GET /jobs/{id}/output.zip`: the output zip.
pub async fn output_zip(
    State(app): State<AppState>,
    signed: SignedIn,
    PageJobId(id): PageJobId,
) -> Result<Response, PageError> {
    tracing::Span::current().record("job_id", tracing::field::display(id));
    Ok(api::output_response(&app, &signed.login.user, id).await?)
}
