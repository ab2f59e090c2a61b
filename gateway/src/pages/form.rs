//! The submit form: what it shows (language, program, other files, stdin, arguments, limits;
//! or, for `numeric`, a method and its parameters: [`super::numeric_form`]), how its multipart
//! body becomes a [`SubmitRequest`], and how a validation error comes back next to the field
//! it blames, with everything typed kept.

use std::collections::BTreeMap;

use axum::extract::{Multipart, multipart::MultipartError};
use cola_wire::{InputFile, Inputs, LanguageDef, Limits, LimitsRequest, languages};

use crate::{
    GatewayError,
    pages::{
        PageError,
        numeric_form::{self, NumericForm},
    },
    submit::SubmitRequest,
};

/// One language of the select, with what the page's script needs to switch to it.
#[derive(Debug)]
pub struct LanguageOption {
    pub name: &'static str,
    /// The numeric runtime (a problem, not a program).
    pub numeric: bool,
    pub title: &'static str,
    pub source_file: &'static str,
    pub starter: &'static str,
    pub extensions: String,
    /// `name:default:max` for each limit, comma-separated (read by `app.js`).
    pub limits: String,
}

/// One limit's input.
#[derive(Debug)]
pub struct LimitField {
    pub name: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub value: String,
    pub default: u64,
    pub max: u64,
}

/// A file besides the program, kept as text so that nothing typed or uploaded is lost when
/// the form comes back with an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtraFile {
    pub name: String,
    pub content: String,
}

/// Everything the form shows.
#[derive(Debug)]
pub struct FormView {
    pub language: String,
    pub source_file: &'static str,
    pub source: String,
    pub stdin: String,
    pub args: String,
    pub extra: Vec<ExtraFile>,
    pub limits: Vec<LimitField>,
    pub languages: Vec<LanguageOption>,
    /// Whether the form shows the numeric mode (a problem) rather than a program.
    pub numeric_mode: bool,
    pub numeric: NumericForm,
    /// Field name → what is wrong with it.
    pub errors: BTreeMap<String, String>,
    /// A note above the form (e.g. what a resubmission could not keep).
    pub note: Option<String>,
}

/// The limits of the form, in order: (field, label, unit).
const LIMITS: [(&str, &str, &str); 6] = [
    ("wall_time_ms", "Wall time", "ms"),
    ("cpu_time_ms", "CPU time", "ms"),
    ("memory_mb", "Memory", "MB"),
    ("processes", "Processes", ""),
    ("output_kb", "Output", "KB"),
    ("disk_mb", "Disk", "MB"),
];

fn limit_value(limits: &Limits, name: &str) -> u64 {
    match name {
        "wall_time_ms" => limits.wall_time_ms,
        "cpu_time_ms" => limits.cpu_time_ms,
        "memory_mb" => limits.memory_mb,
        "processes" => limits.processes,
        "disk_mb" => limits.disk_mb,
        _ => limits.output_kb,
    }
}

/// A program to start from, per language.
pub fn starter(language: &str) -> &'static str {
    match language {
        "c" => {
            "#include <stdio.h>\n\nint main(void) {\n    printf(\"Hello from C!\\n\");\n    return 0;\n}\n"
        }
        "go" => {
            "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"Hello from Go!\")\n}\n"
        }
        "javascript" => "console.log(\"Hello from JavaScript!\");\n",
        _ => "",
    }
}

fn language_def(name: &str) -> &'static LanguageDef {
    languages()
        .iter()
        .find(|l| l.name == name)
        .unwrap_or(&languages()[0])
}

impl FormView {
    /// A fresh form for `language` (the first language when unknown), with its starter; for
    /// `numeric`, with `method` (or the first one) shown with its worked example.
    pub fn new(language: Option<&str>, method: Option<&str>) -> Self {
        let def = language_def(language.unwrap_or(""));
        let mut form = Self::empty(def);
        form.source = starter(def.name).to_owned();
        form.numeric = NumericForm::new(method);
        form
    }

    fn empty(def: &'static LanguageDef) -> Self {
        Self {
            language: def.name.to_owned(),
            source_file: def.source_file,
            source: String::new(),
            stdin: String::new(),
            args: String::new(),
            extra: Vec::new(),
            limits: LIMITS
                .iter()
                .map(|&(name, label, unit)| LimitField {
                    name,
                    label,
                    unit,
                    value: String::new(),
                    default: limit_value(&def.default_limits, name),
                    max: limit_value(&def.max_limits, name),
                })
                .collect(),
            languages: languages()
                .iter()
                .map(|l| LanguageOption {
                    name: l.name,
                    numeric: l.is_numeric(),
                    title: l.title,
                    source_file: l.source_file,
                    starter: starter(l.name),
                    extensions: l.allowed_extensions.join(", "),
                    limits: LIMITS
                        .iter()
                        .map(|(name, _, _)| {
                            format!(
                                "{name}:{}:{}",
                                limit_value(&l.default_limits, name),
                                limit_value(&l.max_limits, name)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                })
                .collect(),
            numeric_mode: def.is_numeric(),
            numeric: NumericForm::new(None),
            errors: BTreeMap::new(),
            note: None,
        }
    }

    /// The form filled from an earlier numeric job's problem and limits.
    pub fn from_problem(language: &str, problem: &serde_json::Value, limits: &Limits) -> Self {
        let mut form = Self::empty(language_def(language));
        form.source = starter(languages()[0].name).to_owned();
        form.numeric = NumericForm::from_problem(problem);
        form.keep_limits(limits);
        form
    }

    fn keep_limits(&mut self, limits: &Limits) {
        for field in &mut self.limits {
            let value = limit_value(limits, field.name);
            if value != field.default {
                field.value = value.to_string();
            }
        }
    }

    /// The form filled from an earlier job: its language, inputs and limits (those that differ
    /// from the defaults).
    pub fn from_job(language: &str, inputs: Option<Inputs>, limits: &Limits) -> Self {
        let def = language_def(language);
        let mut form = Self::empty(def);
        form.keep_limits(limits);
        match inputs {
            Some(inputs) => {
                for file in inputs.files {
                    if file.name == def.source_file {
                        form.source = file.content;
                    } else {
                        form.extra.push(ExtraFile {
                            name: file.name,
                            content: file.content,
                        });
                    }
                }
                form.stdin = inputs.stdin;
            }
            None => {
                form.source = starter(def.name).to_owned();
                form.note = Some(
                    "The sources of this job were not kept (it was submitted through the API, \
                     or has expired): the form starts from the example program."
                        .into(),
                );
            }
        }
        form
    }

    /// The message for `field`, if it has one.
    pub fn error(&self, field: &str) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The form-wide error (not tied to one field).
    pub fn form_error(&self) -> Option<&str> {
        self.error("form")
    }
}

/// What a submitted form holds, as typed.
#[derive(Debug, Default)]
pub struct Submitted {
    pub csrf: Option<String>,
    pub language: String,
    /// `numeric` or `program`: the mode the form was shown in.
    pub mode: String,
    /// The numeric method chosen, and the one whose fields were shown.
    pub method: String,
    pub shown_method: String,
    /// Numeric parameters, by field name (`<method>.<parameter>`).
    pub params: BTreeMap<String, String>,
    pub source: String,
    pub stdin: String,
    pub args: String,
    pub limits: BTreeMap<String, String>,
    pub extra: Vec<ExtraFile>,
    /// Uploaded files that are not text, by name.
    pub binary_uploads: Vec<String>,
}

/// Most parts one form may have (fields plus files).
const MAX_PARTS: usize = 200;

/// Reads the multipart body of the submit form. Uploaded files become extra files (text only).
pub async fn read(mut multipart: Multipart, body_limit: usize) -> Result<Submitted, PageError> {
    let multipart_error = |error| multipart_error(error, body_limit);
    let mut form = Submitted::default();
    let mut names: Vec<String> = Vec::new();
    let mut contents: Vec<String> = Vec::new();
    let mut parts = 0;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(PageError::BadRequest(format!(
                "The form has more than {MAX_PARTS} parts."
            )));
        }
        let name = field.name().unwrap_or("").to_owned();
        if name == "upload" {
            let file_name = field.file_name().unwrap_or("").to_owned();
            let bytes = field.bytes().await.map_err(multipart_error)?;
            if file_name.is_empty() && bytes.is_empty() {
                continue; // no file chosen
            }
            // Browsers send the base name; keep only that, whatever was sent.
            let base = file_name
                .rsplit(['/', '\\'])
                .next()
                .unwrap_or("")
                .to_owned();
            match String::from_utf8(bytes.to_vec()) {
                Ok(content) => form.extra.push(ExtraFile {
                    name: base,
                    content,
                }),
                Err(_) => form.binary_uploads.push(base),
            }
            continue;
        }
        let text = field.text().await.map_err(multipart_error)?;
        match name.as_str() {
            "csrf" => form.csrf = Some(text),
            "language" => form.language = text,
            "mode" => form.mode = text,
            "method" => form.method = text,
            "shown_method" => form.shown_method = text,
            "source" => form.source = normalize_newlines(text),
            "stdin" => form.stdin = normalize_newlines(text),
            "args" => form.args = text,
            "file_name" => names.push(text),
            "file_content" => contents.push(normalize_newlines(text)),
            limit if LIMITS.iter().any(|(n, _, _)| *n == limit) => {
                form.limits.insert(limit.to_owned(), text);
            }
            param
                if param
                    .split_once('.')
                    .is_some_and(|(method, _)| NumericForm::knows(method)) =>
            {
                form.params
                    .insert(param.to_owned(), normalize_newlines(text));
            }
            _ => {}
        }
    }
    let kept = names
        .into_iter()
        .zip(contents)
        .map(|(name, content)| ExtraFile {
            name: name.trim().to_owned(),
            content,
        })
        .filter(|f| !(f.name.is_empty() && f.content.is_empty()));
    // Kept files first, in the order shown, then this time's uploads.
    let uploads = std::mem::take(&mut form.extra);
    form.extra = kept.chain(uploads).collect();
    Ok(form)
}

/// Browsers send text areas with CRLF line ends; programs want LF.
fn normalize_newlines(text: String) -> String {
    if text.contains('\r') {
        text.replace("\r\n", "\n")
    } else {
        text
    }
}

fn multipart_error(error: MultipartError, limit: usize) -> PageError {
    if error.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        PageError::Gateway(GatewayError::BodyTooLarge { limit })
    } else {
        PageError::BadRequest(format!("The form could not be read: {}", error.body_text()))
    }
}

impl Submitted {
    /// The API request this form stands for, or the form to show again with its errors.
    pub fn into_request(self) -> Result<SubmitRequest, Box<FormView>> {
        let def = languages().iter().find(|l| l.name == self.language);
        let numeric = def.is_some_and(|l| l.is_numeric());
        // The language or method was changed without the page's script: show its form first.
        let shown_numeric = self.mode == "numeric";
        if def.is_some() && numeric != shown_numeric {
            return Err(self.switched());
        }
        if numeric && self.method != self.shown_method && NumericForm::knows(&self.method) {
            return Err(self.switched());
        }
        let mut errors: BTreeMap<String, String> = BTreeMap::new();
        let mut limits = LimitsRequest::default();
        for (name, _, _) in LIMITS {
            let raw = self.limits.get(name).map(|v| v.trim()).unwrap_or("");
            if raw.is_empty() {
                continue;
            }
            match raw.parse::<u64>() {
                Ok(value) => {
                    let slot = match name {
                        "wall_time_ms" => &mut limits.wall_time_ms,
                        "cpu_time_ms" => &mut limits.cpu_time_ms,
                        "memory_mb" => &mut limits.memory_mb,
                        "processes" => &mut limits.processes,
                        "disk_mb" => &mut limits.disk_mb,
                        _ => &mut limits.output_kb,
                    };
                    *slot = Some(value);
                }
                Err(_) => {
                    errors.insert(
                        name.to_owned(),
                        "enter a whole number, or leave it empty".into(),
                    );
                }
            }
        }
        if numeric {
            return self.numeric_request(limits, errors);
        }
        if !self.binary_uploads.is_empty() {
            errors.insert(
                "files".into(),
                format!(
                    "only text files (UTF-8) can be uploaded: {} is not",
                    self.binary_uploads.join(", ")
                ),
            );
        }
        if self.extra.iter().any(|f| f.name.is_empty()) {
            errors.insert("files".into(), "every file needs a name".into());
        }
        if !errors.is_empty() {
            return Err(self.back_with(errors));
        }
        let source_file = languages()
            .iter()
            .find(|l| l.name == self.language)
            .map(|l| l.source_file);
        let files = source_file.map(|source_file| {
            std::iter::once(InputFile {
                name: source_file.to_owned(),
                content: self.source.clone(),
            })
            .chain(self.extra.iter().map(|f| InputFile {
                name: f.name.clone(),
                content: f.content.clone(),
            }))
            .collect()
        });
        let args = self
            .args
            .lines()
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        let request = SubmitRequest {
            language: Some(self.language.clone()),
            files,
            source: None,
            stdin: Some(self.stdin.clone()),
            args: Some(args),
            limits: Some(limits),
            problem: None,
            schedule: None,
        };
        match request.clone().validate() {
            Ok(_) => Ok(request),
            Err(GatewayError::Invalid { message, field }) => {
                let (field, message) = form_field(field.as_deref(), message);
                Err(self.back_with(BTreeMap::from([(field.to_owned(), message)])))
            }
            Err(other) => {
                Err(self.back_with(BTreeMap::from([("form".to_owned(), other.to_string())])))
            }
        }
    }

    /// The request of a numeric form: the chosen method's fields as a problem.
    fn numeric_request(
        self,
        limits: LimitsRequest,
        errors: BTreeMap<String, String>,
    ) -> Result<SubmitRequest, Box<FormView>> {
        if !errors.is_empty() {
            return Err(self.back_with(errors));
        }
        let request = SubmitRequest {
            language: Some(self.language.clone()),
            limits: Some(limits),
            problem: Some(numeric_form::problem_of(&self.method, &self.params)),
            ..SubmitRequest::default()
        };
        match request.clone().validate() {
            Ok(_) => Ok(request),
            Err(GatewayError::Invalid { message, field }) => {
                let field = match field.as_deref() {
                    Some(f) if f.starts_with("limits.") => {
                        form_field(Some(f), String::new()).0.to_owned()
                    }
                    Some(f) => numeric_form::field_of_error(&self.method, f),
                    None => "form".to_owned(),
                };
                Err(self.back_with(BTreeMap::from([(field, message)])))
            }
            Err(other) => {
                Err(self.back_with(BTreeMap::from([("form".to_owned(), other.to_string())])))
            }
        }
    }

    /// The form for the language and method now chosen, keeping what was typed (nothing is
    /// submitted).
    fn switched(self) -> Box<FormView> {
        let numeric = languages()
            .iter()
            .any(|l| l.name == self.language && l.is_numeric());
        let note = if numeric {
            let title = cola_numeric::methods()
                .into_iter()
                .find(|m| m.name == self.method)
                .map_or("the method", |m| m.title);
            format!(
                "These are the fields of {title}, with a worked example: change them and press Run."
            )
        } else {
            "This is the form for the language you chose: write the program and press Run.".into()
        };
        let mut form = self.back_with(BTreeMap::new());
        form.note = Some(note);
        form
    }

    /// The form as typed, with `errors`.
    pub fn back_with(self, errors: BTreeMap<String, String>) -> Box<FormView> {
        let def = languages().iter().find(|l| l.name == self.language);
        let mut form = FormView::empty(def.unwrap_or(&languages()[0]));
        let method = if NumericForm::knows(&self.method) {
            self.method.as_str()
        } else {
            numeric_form::DEFAULT_METHOD
        };
        form.numeric = NumericForm::from_typed(method, &self.shown_method, &self.params);
        if form.numeric_mode && self.source.trim().is_empty() {
            form.source = starter(languages()[0].name).to_owned();
        } else {
            form.source = self.source;
        }
        form.language = self.language;
        form.stdin = self.stdin;
        form.args = self.args;
        form.extra = self.extra;
        for field in &mut form.limits {
            if let Some(value) = self.limits.get(field.name) {
                field.value = value.trim().to_owned();
            }
        }
        form.errors = errors;
        Box::new(form)
    }
}

/// The form field an API validation error of a program belongs to, and the message to show
/// there.
fn form_field(api_field: Option<&str>, message: String) -> (&'static str, String) {
    let Some(field) = api_field else {
        return ("form", message);
    };
    if let Some(limit) = field.strip_prefix("limits.")
        && let Some((name, _, _)) = LIMITS.iter().find(|(n, _, _)| *n == limit)
    {
        return (name, message);
    }
    match field {
        "language" => ("language", message),
        "stdin" => ("stdin", message),
        f if f == "args" || f.starts_with("args[") => ("args", message),
        // The program is always the first file.
        "files[0].content" | "source" => ("source", "write a program first".into()),
        f if f == "files" || f.starts_with("files[0]") => ("source", message),
        _ => ("files", message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submitted(language: &str, source: &str) -> Submitted {
        Submitted {
            language: language.into(),
            source: source.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_good_form_becomes_an_api_request() {
        let mut form = submitted("c", "int main(void) { return 0; }");
        form.args = "-v\r\n\r\ntwo words\n".into();
        form.limits.insert("memory_mb".into(), " 64 ".into());
        form.limits.insert("processes".into(), "".into());
        form.extra.push(ExtraFile {
            name: "data.txt".into(),
            content: "1 2 3".into(),
        });
        let request = form.into_request().unwrap();
        let job = request.validate().unwrap();
        assert_eq!(job.args, ["-v", "two words"]);
        assert_eq!(job.limits.memory_mb, 64);
        assert_eq!(job.limits.processes, job.language.default_limits.processes);
        let inputs = job.work.inputs().unwrap();
        let names: Vec<_> = inputs.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["main.c", "data.txt"]);
    }

    #[test]
    fn errors_come_back_next_to_their_field_with_the_code_kept() {
        let cases: Vec<(Submitted, &str)> = vec![
            (submitted("cobol", "x"), "language"),
            (submitted("c", ""), "source"),
            (
                {
                    let mut f = submitted("c", "x");
                    f.limits.insert("memory_mb".into(), "999999".into());
                    f
                },
                "memory_mb",
            ),
            (
                {
                    let mut f = submitted("c", "x");
                    f.limits.insert("wall_time_ms".into(), "soon".into());
                    f
                },
                "wall_time_ms",
            ),
            (
                {
                    let mut f = submitted("c", "x");
                    f.extra.push(ExtraFile {
                        name: "../evil.c".into(),
                        content: "x".into(),
                    });
                    f
                },
                "files",
            ),
            (
                {
                    let mut f = submitted("c", "x");
                    f.binary_uploads.push("a.out".into());
                    f
                },
                "files",
            ),
        ];
        for (form, field) in cases {
            let source = form.source.clone();
            let back = form.into_request().unwrap_err();
            assert!(back.error(field).is_some(), "{field}: {:?}", back.errors);
            assert_eq!(back.source, source);
        }
    }

    #[test]
    fn a_resubmitted_job_fills_the_form() {
        let def = &languages()[0];
        let mut limits = def.default_limits;
        limits.memory_mb = 64;
        let inputs = Inputs {
            files: vec![
                InputFile {
                    name: def.source_file.into(),
                    content: "main".into(),
                },
                InputFile {
                    name: "data.txt".into(),
                    content: "1".into(),
                },
            ],
            stdin: "in".into(),
        };
        let form = FormView::from_job(def.name, Some(inputs), &limits);
        assert_eq!(form.source, "main");
        assert_eq!(form.extra.len(), 1);
        assert_eq!(form.stdin, "in");
        let memory = form.limits.iter().find(|l| l.name == "memory_mb").unwrap();
        assert_eq!(memory.value, "64");
        assert!(form.limits.iter().filter(|l| l.value.is_empty()).count() == 5);
        let lost = FormView::from_job(def.name, None, &limits);
        assert!(lost.note.is_some());
        assert_eq!(lost.source, starter(def.name));
    }
}
