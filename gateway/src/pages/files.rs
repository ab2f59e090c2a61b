//! One file of a job's output zip: `/jobs/{id}/files/{*name}` shows it (text escaped by the
//! template, only the beginning of a large one; a binary file only named), and
//! `/jobs/{id}/download/{*name}` downloads it alone. `name` is only ever looked up among the
//! zip's entries: nothing but the zip is read, and another user's job is not found.

use std::io::{Cursor, Read as _};

use askama::Template;
use axum::{
    extract::{Path, State},
    http::header,
    response::{IntoResponse, Response},
};
use cola_wire::JobId;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::{
    jobs as api,
    pages::{
        Chrome, PageError, SignedIn,
        jobs::read_output_zip,
        render,
        view::{self, JobRow},
    },
    state::AppState,
};

/// The most of a file its page shows; its download has all of it.
pub const MAX_SHOWN_FILE_BYTES: u64 = 256 << 10;
/// The largest file downloaded alone (unpacked); a larger one is in the zip.
const MAX_DOWNLOADED_FILE_BYTES: u64 = 64 << 20;

#[derive(Template)]
#[template(path = "file.html")]
pub struct FilePage {
    pub chrome: Chrome,
    pub row: JobRow,
    pub name: String,
    pub size: String,
    pub download_url: String,
    pub content: FileContent,
}

/// What the page shows of a file.
pub enum FileContent {
    /// Its text, all of it or only the beginning (`truncated`).
    Text { text: String, truncated: bool },
    /// Not text: only its download.
    Binary,
}

/// `GET /jobs/{id}/files/{*name}`.
pub async fn show(
    State(app): State<AppState>,
    signed: SignedIn,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let (record, revision, zip) = job_zip(&app, &signed, &id).await?;
    let (size, head) = read_entry(&zip, &name, MAX_SHOWN_FILE_BYTES)?;
    let content = match text_of(&head) {
        Some(text) => FileContent::Text {
            text: text.to_owned(),
            truncated: size > MAX_SHOWN_FILE_BYTES,
        },
        None => FileContent::Binary,
    };
    let page = FilePage {
        chrome: Chrome::for_user(&signed),
        download_url: download_url(&record.id, &name),
        row: JobRow::new(&record, revision),
        name,
        size: view::bytes(size),
        content,
    };
    render(&page)
}

/// `GET /jobs/{id}/download/{*name}`: the file alone, as an attachment.
pub async fn download(
    State(app): State<AppState>,
    signed: SignedIn,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let (_, _, zip) = job_zip(&app, &signed, &id).await?;
    let (size, bytes) = read_entry(&zip, &name, MAX_DOWNLOADED_FILE_BYTES)?;
    if size > MAX_DOWNLOADED_FILE_BYTES {
        return Err(PageError::BadRequest(format!(
            "{name} is {} unpacked: download the whole zip for it.",
            view::bytes(size)
        )));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", attachment_name(&name)),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// Where the page of the file `name` of job `id` is.
pub fn page_url(id: &JobId, name: &str) -> String {
    format!("/jobs/{id}/files/{}", utf8_percent_encode(name, PATH))
}

/// Where the file `name` of job `id` is downloaded alone.
pub fn download_url(id: &JobId, name: &str) -> String {
    format!("/jobs/{id}/download/{}", utf8_percent_encode(name, PATH))
}

/// What a zip entry's name keeps unencoded in a URL path: its `/`s and the unreserved
/// characters.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'.')
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// The signed-in user's job `id` (its record, revision and output zip), or a `404` page when
/// there is no such job of theirs or it has no zip (yet).
async fn job_zip(
    app: &AppState,
    signed: &SignedIn,
    id: &str,
) -> Result<(cola_wire::JobRecord, u64, Vec<u8>), PageError> {
    let id: JobId = id.parse().map_err(|_| PageError::NotFound("no such job"))?;
    tracing::Span::current().record("job_id", tracing::field::display(id));
    let (record, revision) = api::find(app, &signed.login.user, id).await?;
    if record.output_object.is_none() {
        return Err(PageError::NotFound("this job has no output zip"));
    }
    let zip = read_output_zip(app, &record).await.map_err(|_| {
        PageError::Unavailable("the output zip cannot be opened here just now: download it whole")
    })?;
    Ok((record, revision, zip))
}

/// The entry `name` of `zip`: its size unpacked and at most `max` of its first bytes; a `404`
/// page when there is no such entry (or the zip cannot be read).
fn read_entry(zip: &[u8], name: &str, max: u64) -> Result<(u64, Vec<u8>), PageError> {
    const NO_SUCH_FILE: PageError = PageError::NotFound("no such file in the output zip");
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).map_err(|_| NO_SUCH_FILE)?;
    let entry = archive.by_name(name).map_err(|_| NO_SUCH_FILE)?;
    if entry.is_dir() {
        return Err(NO_SUCH_FILE);
    }
    let size = entry.size();
    let mut bytes = Vec::with_capacity(size.min(max) as usize);
    entry
        .take(max)
        .read_to_end(&mut bytes)
        .map_err(|_| NO_SUCH_FILE)?;
    Ok((size, bytes))
}

/// `bytes` as text, when they are: UTF-8 without NUL bytes (a character cut at the end of a
/// file's beginning is left out).
fn text_of(bytes: &[u8]) -> Option<&str> {
    if bytes.contains(&0) {
        return None;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Some(text),
        // Incomplete at the very end: the rest of the character is beyond what was read.
        Err(error) if error.error_len().is_none() && bytes.len() - error.valid_up_to() < 4 => {
            std::str::from_utf8(&bytes[..error.valid_up_to()]).ok()
        }
        Err(_) => None,
    }
}

/// A file name for `Content-Disposition`: the entry's last part, with anything but letters,
/// digits, `.`, `-` and `_` made `_`.
fn attachment_name(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match cleaned.trim_matches('.') {
        "" => "file".to_owned(),
        _ => cleaned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_utf8_without_nul_and_a_cut_character_is_left_out() {
        assert_eq!(text_of(b"hello\n"), Some("hello\n"));
        assert_eq!(text_of(b"a\0b"), None);
        assert_eq!(text_of(&[0xff, 0xfe]), None);
        let e_acute = "é".as_bytes();
        assert_eq!(text_of(&[b'a', e_acute[0]]), Some("a"));
        assert_eq!(text_of(&[b'a', 0xc3, b'b']), None);
    }

    #[test]
    fn attachment_names_are_plain() {
        assert_eq!(attachment_name("out/result.txt"), "result.txt");
        assert_eq!(attachment_name("a\"b;c.txt"), "a_b_c.txt");
        assert_eq!(attachment_name("ü.csv"), "_.csv");
        assert_eq!(attachment_name(".."), "file");
        assert_eq!(attachment_name("dir/"), "file");
    }
}
