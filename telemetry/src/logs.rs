//! Logs on stderr, as text for a person at a terminal or as one JSON object per line for a log
//! collector (`--log-format`; by default text on a terminal, JSON elsewhere). `RUST_LOG` selects
//! what is logged (default `info`). A JSON line carries the event's fields at its top level and
//! those of the span it happened in under `span` (a job's `job_id`, `user`, `language`,
//! `request_id`; a request's `method`, `path`, `request_id`).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// Text when stderr is a terminal, JSON otherwise.
    pub fn for_stderr() -> Self {
        if std::io::stderr().is_terminal() {
            Self::Text
        } else {
            Self::Json
        }
    }
}

/// Installs the process's logger (once, at start).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
