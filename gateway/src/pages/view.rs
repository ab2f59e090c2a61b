//! What the pages show of jobs, formatted for people (and sent as JSON to the live list).

use cola_wire::{JobRecord, PREVIEW_BYTES, Reason, Status, job::Timestamp};
use serde::Serialize;

/// One row of the job list; also the data of a live `job` event.
#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    pub id: String,
    pub short_id: String,
    pub url: String,
    pub language: String,
    pub status: &'static str,
    pub status_label: &'static str,
    pub reason: String,
    pub created: String,
    pub created_iso: String,
    pub duration: String,
    pub revision: u64,
    pub terminal: bool,
}

impl JobRow {
    pub fn new(record: &JobRecord, revision: u64) -> Self {
        Self {
            id: record.id.to_string(),
            short_id: short_id(&record.id.to_string()),
            url: format!("/jobs/{}", record.id),
            language: record.language.to_string(),
            status: record.status.as_str(),
            status_label: status_label(record.status),
            reason: record
                .reason
                .map(reason_label)
                .unwrap_or_default()
                .to_owned(),
            created: when(&record.created_at),
            created_iso: record.created_at.to_rfc3339(),
            duration: duration_of(record),
            revision,
            terminal: record.status.is_terminal(),
        }
    }
}

/// The first block of a job id: enough to tell a person's jobs apart.
pub fn short_id(id: &str) -> String {
    id.chars()
        .rev()
        .take(12)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}

pub fn status_label(status: Status) -> &'static str {
    match status {
        Status::Queued => "Queued",
        Status::Running => "Running",
        Status::Succeeded => "Succeeded",
        Status::Failed => "Failed",
        Status::Cancelled => "Cancelled",
    }
}

pub fn reason_label(reason: Reason) -> &'static str {
    match reason {
        Reason::CompileError => "compile error",
        Reason::RuntimeError => "runtime error",
        Reason::TimeLimit => "time limit",
        Reason::MemoryLimit => "memory limit",
        Reason::OutputLimit => "output limit",
        Reason::DidNotConverge => "did not converge",
        Reason::InvalidInput => "invalid input",
        Reason::InternalError => "internal error",
    }
}

/// What a reason means and what to do about it.
pub fn reason_help(reason: Reason) -> &'static str {
    match reason {
        Reason::CompileError => "The program did not compile: the compiler output below says why.",
        Reason::RuntimeError => {
            "The program stopped with an error (a non-zero exit code or a signal)."
        }
        Reason::TimeLimit => {
            "The program ran longer than its wall-time or CPU-time limit and was stopped."
        }
        Reason::MemoryLimit => "The program needed more memory than its limit allows.",
        Reason::OutputLimit => "The program wrote more output than its limit allows.",
        Reason::DidNotConverge => "The numeric method did not converge within its iterations.",
        Reason::InvalidInput => "The job's input could not be used.",
        Reason::InternalError => {
            "cola could not run the job (not the program's fault). Try again later."
        }
    }
}

/// A time as pages show it: `2026-11-23 13:45:02 UTC`.
pub fn when(at: &Timestamp) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Milliseconds as a person reads them.
pub fn millis(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.2} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

fn duration_of(record: &JobRecord) -> String {
    match (record.timings_ms.total, record.timings_ms.run) {
        (Some(total), _) => millis(total),
        (None, _) if record.status == Status::Running => "running…".into(),
        _ => "—".into(),
    }
}

/// A job's output as the job page shows it.
pub struct Output {
    pub title: &'static str,
    pub id: &'static str,
    pub text: String,
    /// The text is only the beginning: the zip has everything.
    pub truncated: bool,
}

impl Output {
    pub fn new(title: &'static str, id: &'static str, text: &str) -> Self {
        Self {
            title,
            id,
            text: text.to_owned(),
            // A preview cut at a character boundary is at most 3 bytes short of the cap.
            truncated: text.len() + 3 >= PREVIEW_BYTES,
        }
    }
}

/// A byte count as a person reads it.
pub fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_read_durations_and_sizes() {
        assert_eq!(millis(850), "850 ms");
        assert_eq!(millis(1234), "1.23 s");
        assert_eq!(millis(125_000), "2 min 5 s");
        assert_eq!(bytes(10), "10 B");
        assert_eq!(bytes(2048), "2.0 KiB");
        assert_eq!(
            short_id("0190b3c4-5d6e-7f80-9a0b-1c2d3e4f5a6b"),
            "1c2d3e4f5a6b"
        );
    }
}
