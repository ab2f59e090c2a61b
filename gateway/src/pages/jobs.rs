//! The job pages: `/` (the list, newest first, with the submit form), `POST /jobs`,
//! `/jobs/{id}` (one job), `POST /jobs/{id}/cancel` and `/jobs/{id}/output.zip`.
//!
//! Every job is looked up under the session user's own key prefix: another user's job is not
//! found (`404`), like an unknown one.

use std::io::{Cursor, Read as _};

use askama::Template;
use axum::{
    extract::{Extension, Multipart, Query, State},
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use cola_wire::{JobId, JobRecord, RequestId, language, names};
use serde::Deserialize;
use tokio::io::AsyncReadExt as _;

use crate::{
    GatewayError,
    jobs::{self as api, DEFAULT_PAGE_SIZE},
    pages::{
        Chrome, PageError, PageForm, PageJobId, SignedIn, files,
        form::{self, FormView},
        numeric_form, render, see_other,
        view::{self, JobRow, Output},
    },
    queue,
    state::AppState,
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
    /// Start the numeric form with this method.
    method: Option<String>,
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
            let mut form = match &record.problem {
                Some(problem) => {
                    FormView::from_problem(record.language.as_str(), problem, &record.limits)
                }
                None => {
                    let inputs = queue::kept_inputs(&app.topology, user, id).await;
                    FormView::from_job(record.language.as_str(), inputs, &record.limits)
                }
            };
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
        None => FormView::new(query.language.as_deref(), query.method.as_deref()),
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
    Extension(request_id): Extension<RequestId>,
    signed: SignedIn,
    multipart: Multipart,
) -> Result<Response, PageError> {
    let submitted = form::read(multipart, app.config.max_body_bytes).await?;
    signed.check_csrf(submitted.csrf.as_deref()).await?;
    let request = match submitted.into_request() {
        Ok(request) => request,
        Err(form) => {
            // Without errors, the form was only switched to another language or method.
            let status = if form.has_errors() {
                app.metrics.form_refused();
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            return page(&app, signed, *form, None, None, status).await;
        }
    };
    let job = request.validate().inspect_err(|e| app.metrics.refused(e))?;
    // A numeric job's record keeps its problem; a program's sources are kept aside.
    let inputs = job.work.inputs().cloned();
    let user = &signed.login.user;
    let id = JobId::new();
    tracing::Span::current().record("job_id", tracing::field::display(id));
    let language = job.language.name;
    let queued = queue::enqueue_detached(&app, user, (id, &request_id), job).await?;
    tracing::info!(job_id = %id, user = %user, language, "job queued from the web form");
    if let Some(inputs) = inputs {
        queue::keep_inputs(&app.topology, user, id, &queued, &inputs).await;
    }
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
    /// What a numeric job asked and found.
    pub numeric: Option<NumericView>,
    pub has_output: bool,
    pub can_cancel: bool,
}

/// Rows of `table.csv` the job page shows.
pub const TABLE_PREVIEW_ROWS: usize = 20;
/// The largest `table.csv` or `plot.svg` the pages read out of a zip.
const MAX_SHOWN_ENTRY_BYTES: u64 = 4 << 20;

/// A numeric job as its page shows it: the problem, the result, the start of its table and
/// (through [`plot_svg`]) its plot.
pub struct NumericView {
    pub method: String,
    /// The problem's parameters as written in the form.
    pub problem: Vec<(String, String)>,
    /// The result, as indented JSON.
    pub result: Option<String>,
    /// Warnings and messages (the job's `stderr`), one per line.
    pub messages: Vec<String>,
    pub table: Option<TablePreview>,
    /// Where the plot is, when the zip has one.
    pub plot_url: Option<String>,
}

/// The first rows of `table.csv`.
pub struct TablePreview {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Rows of the file not shown.
    pub more: usize,
}

impl NumericView {
    fn new(record: &JobRecord, problem: &serde_json::Value, zip: Option<&[u8]>) -> Self {
        let method = problem
            .get("method")
            .and_then(|m| m.as_str())
            .unwrap_or_default();
        let catalogue = cola_numeric::methods();
        let info = catalogue.iter().find(|m| m.name == method);
        let problem = match (info, problem.as_object()) {
            (Some(info), Some(_)) => info
                .parameters
                .iter()
                .filter_map(|p| {
                    let value = problem.get(p.name)?;
                    Some((
                        p.name.to_owned(),
                        numeric_form::text_of(p.kind, value).replace('\n', "; "),
                    ))
                })
                .collect(),
            _ => Vec::new(),
        };
        let table = zip
            .and_then(|zip| zip_entry(zip, "table.csv", MAX_SHOWN_ENTRY_BYTES))
            .map(|csv| {
                let mut lines = csv.lines();
                let header = lines
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(str::to_owned)
                    .collect();
                let rows: Vec<Vec<String>> = lines
                    .by_ref()
                    .take(TABLE_PREVIEW_ROWS)
                    .map(|l| l.split(',').map(str::to_owned).collect())
                    .collect();
                TablePreview {
                    header,
                    rows,
                    more: lines.count(),
                }
            });
        let has_plot = zip.is_some_and(|zip| {
            zip::ZipArchive::new(Cursor::new(zip))
                .is_ok_and(|mut archive| archive.by_name("plot.svg").is_ok())
        });
        Self {
            method: info.map_or(method, |i| i.title).to_owned(),
            problem,
            result: record
                .result
                .as_ref()
                .and_then(|r| serde_json::to_string_pretty(r).ok()),
            messages: record
                .stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned)
                .collect(),
            table,
            plot_url: has_plot.then(|| format!("/jobs/{}/plot.svg", record.id)),
        }
    }
}

/// `GET /jobs/{id}/plot.svg`: a numeric job's plot, from its zip. The SVG is cola's own
/// (drawn by the numeric library, every text escaped), served as an image with a policy that
/// allows nothing but its own inline styles, so it renders in an `<img>` and does nothing if
/// opened on its own.
pub async fn plot_svg(
    State(app): State<AppState>,
    signed: SignedIn,
    PageJobId(id): PageJobId,
) -> Result<Response, PageError> {
    tracing::Span::current().record("job_id", tracing::field::display(id));
    let (record, _) = api::find(&app, &signed.login.user, id).await?;
    if record.output_object.is_none() {
        return Err(PageError::NotFound("this job has no plot"));
    }
    let svg = read_output_zip(&app, &record)
        .await
        .ok()
        .and_then(|zip| zip_entry(&zip, "plot.svg", MAX_SHOWN_ENTRY_BYTES))
        .ok_or(PageError::NotFound("this job has no plot"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CONTENT_SECURITY_POLICY, SVG_CONTENT_SECURITY_POLICY),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        svg,
    )
        .into_response())
}

/// The content security policy of a served SVG: no script, no fetches, a sandbox.
pub const SVG_CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; sandbox";

/// What the page can say about the files in the output zip.
pub enum ZipListing {
    /// No zip (yet).
    None,
    Files(Vec<ZipFile>),
    /// Too large or unreadable: only the download.
    Unlisted(String),
}

/// A file in the output zip, as its job page lists it.
pub struct ZipFile {
    pub name: String,
    /// Its size unpacked, for people.
    pub size: String,
    /// Its own page ([`files::show`]).
    pub page_url: String,
    /// Its download alone ([`files::download`]).
    pub download_url: String,
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
    let bytes = match record.output_object {
        Some(_) => Some(read_output_zip(&app, &record).await),
        None => None,
    };
    let zip = match &bytes {
        Some(bytes) => zip_listing(&record, bytes),
        None => ZipListing::None,
    };
    let numeric = record.problem.as_ref().map(|problem| {
        let zip = bytes.as_ref().and_then(|b| b.as_ref().ok());
        NumericView::new(&record, problem, zip.map(Vec::as_slice))
    });
    let compiled = language(&record.language).is_some_and(|l| l.compile.is_some());
    let mut outputs = Vec::new();
    if numeric.is_some() {
        // A numeric job has no program output: its messages are shown with its result.
    } else if compiled || !record.compile_output.is_empty() {
        outputs.push(Output::new(
            "Compiler output",
            "compile-output",
            &record.compile_output,
        ));
    }
    if numeric.is_none() {
        outputs.push(Output::new("Standard output", "stdout", &record.stdout));
        outputs.push(Output::new("Standard error", "stderr", &record.stderr));
    }
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
    let limits = if numeric.is_some() {
        vec![(
            "Time budget",
            view::millis(l.wall_time_ms.min(l.cpu_time_ms)),
        )]
    } else {
        vec![
            ("Wall time", view::millis(l.wall_time_ms)),
            ("CPU time", view::millis(l.cpu_time_ms)),
            ("Memory", format!("{} MB", l.memory_mb)),
            ("Processes", l.processes.to_string()),
            ("Output", format!("{} KB", l.output_kb)),
            ("Disk", format!("{} MB", l.disk_mb)),
        ]
    };
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
        numeric,
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

/// The output zip's bytes, or why the page cannot look into it.
pub(crate) async fn read_output_zip(app: &AppState, record: &JobRecord) -> Result<Vec<u8>, String> {
    let name = names::output_object(&record.user, &record.id);
    let object = match app.topology.outputs.get(name.as_str()).await {
        Ok(object) => object,
        Err(error) => {
            tracing::warn!(%error, job_id = %record.id, "cannot open the output zip");
            return Err("The list of files is not available right now.".into());
        }
    };
    let size = object.info().size as u64;
    if size > MAX_LISTED_ZIP_BYTES {
        return Err(format!(
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
        tracing::warn!(%error, job_id = %record.id, "cannot read the output zip");
        return Err("The list of files is not available right now.".into());
    }
    Ok(bytes)
}

fn zip_listing(record: &JobRecord, zip: &Result<Vec<u8>, String>) -> ZipListing {
    let bytes = match zip {
        Ok(bytes) => bytes,
        Err(why) => return ZipListing::Unlisted(why.clone()),
    };
    let files = (|| -> zip::result::ZipResult<Vec<ZipFile>> {
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes))?;
        let mut files = Vec::with_capacity(archive.len());
        for i in 0..archive.len() {
            let entry = archive.by_index_raw(i)?;
            if entry.is_dir() {
                continue;
            }
            files.push(ZipFile {
                name: entry.name().to_owned(),
                size: view::bytes(entry.size()),
                page_url: files::page_url(&record.id, entry.name()),
                download_url: files::download_url(&record.id, entry.name()),
            });
        }
        Ok(files)
    })();
    match files {
        Ok(files) => ZipListing::Files(files),
        Err(error) => {
            tracing::warn!(%error, job_id = %record.id, "unreadable output zip");
            ZipListing::Unlisted("The zip could not be read: download it to look.".into())
        }
    }
}

/// The entry `name` of a zip, as text, if it is there and at most `max` bytes.
fn zip_entry(zip: &[u8], name: &str, max: u64) -> Option<String> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).ok()?;
    let entry = archive.by_name(name).ok()?;
    if entry.size() > max {
        return None;
    }
    let mut text = String::with_capacity(entry.size() as usize);
    entry.take(max).read_to_string(&mut text).ok()?;
    Some(text)
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
