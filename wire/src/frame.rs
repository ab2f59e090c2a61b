//! The result frame: how an executor that cannot reach NATS (`cola executor --stdio`, in a Docker
//! container with no network) hands its outcome to the middleware.
//!
//! The executor writes the frame, and nothing else, to its standard output once the job is
//! done; the middleware reads it back from the container's log after the container exited (the
//! log survives a middleware restart). The frame is ASCII only, so any log driver keeps it as it
//! is:
//!
//! ```text
//! cola-result/1
//! <base64 of the header: JSON with the report, its output previews and the zip's size>
//! <base64 of the output zip; empty when the job has none (it failed before running)>
//! cola-end/1
//! ```
//!
//! Reading is strict: anything before, between or after these four lines, a size that does not
//! match, or a frame larger than the reader allows is an error, never a partial result.
//!
//! One line may come before the frame, before any user code ran: `cola-run-memory/1 <bytes>`,
//! the executor asking for its container's memory limit to be lowered to the run step's own
//! once the compile step is done ([`run_memory_request`]); the Docker backend's middleware
//! answers it and takes it off ([`split_run_memory_request`]) before it decodes the frame.

use std::io::{self, Write};

use base64::{Engine as _, engine::general_purpose::STANDARD, write::EncoderWriter};
use serde::{Deserialize, Serialize};

use crate::RunReport;

const BEGIN: &str = "cola-result/1";
const END: &str = "cola-end/1";
const RUN_MEMORY: &str = "cola-run-memory/1";
/// The largest header (as JSON) a frame may carry: the report and three previews of at most
/// [`crate::PREVIEW_BYTES`] each, which JSON escaping can make up to six times larger.
pub const MAX_HEADER_BYTES: usize = 4 << 20;
/// The most content (bytes, before compression) an output zip holds; the executor enforces it
/// while it builds the zip.
pub const MAX_ZIP_CONTENT_BYTES: u64 = 64 << 20;
/// The largest output zip a frame may carry: [`MAX_ZIP_CONTENT_BYTES`] of content plus the zip's
/// own headers (at most 10,000 entries of `out/` and the logs) and `result.json`.
pub const MAX_ZIP_BYTES: u64 = MAX_ZIP_CONTENT_BYTES + (8 << 20);

/// What an executor reports about one job: the report (with its output previews, which the
/// report's own serialization leaves out) and the output zip, if the job got one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorReport {
    pub report: RunReport,
    pub zip: Option<Vec<u8>>,
}

/// The frame's header.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    report: RunReport,
    stdout: String,
    stderr: String,
    compile_output: String,
    /// The zip's size; `None`: no zip.
    zip_bytes: Option<u64>,
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("the result frame is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the result frame is malformed: {0}")]
    Malformed(String),
}

/// The longest frame [`decode`] accepts for zips of at most `max_zip_bytes`.
pub fn max_frame_bytes(max_zip_bytes: u64) -> u64 {
    (BEGIN.len() + END.len() + 4) as u64
        + base64_len(MAX_HEADER_BYTES as u64)
        + base64_len(max_zip_bytes)
}

fn base64_len(bytes: u64) -> u64 {
    bytes.div_ceil(3) * 4
}

/// The frame for `outcome`. The report's `output_object` is not sent: the reader decides where
/// the zip is stored.
pub fn encode(outcome: &ExecutorReport) -> Vec<u8> {
    let mut frame = Vec::new();
    write(outcome, &mut frame).expect("writing to memory cannot fail");
    frame
}

/// Writes the frame for `outcome` (see [`encode`]) to `out` as it encodes it: no copy of the
/// encoded zip is ever held in memory (an executor in a container has little to spare once its
/// program has run).
pub fn write(outcome: &ExecutorReport, out: &mut impl Write) -> io::Result<()> {
    let report = &outcome.report;
    let header = Header {
        report: report.clone(),
        stdout: report.stdout.clone(),
        stderr: report.stderr.clone(),
        compile_output: report.compile_output.clone(),
        zip_bytes: outcome.zip.as_ref().map(|zip| zip.len() as u64),
    };
    let zip = outcome.zip.as_deref().unwrap_or_default();
    let header = serde_json::to_vec(&header).expect("a report serializes");
    writeln!(out, "{BEGIN}")?;
    for part in [&header[..], zip] {
        let mut encoder = EncoderWriter::new(&mut *out, &STANDARD);
        encoder.write_all(part)?;
        encoder.finish()?.write_all(b"\n")?;
    }
    writeln!(out, "{END}")
}

/// The line that asks for the container's memory limit to be `bytes` for the run step.
pub fn run_memory_request(bytes: u64) -> String {
    format!("{RUN_MEMORY} {bytes}\n")
}

/// The memory limit `line` (without its newline) asks for, if it is a run step's request.
pub fn parse_run_memory_request(line: &[u8]) -> Option<u64> {
    let bytes = std::str::from_utf8(line)
        .ok()?
        .strip_prefix(RUN_MEMORY)?
        .strip_prefix(' ')?;
    bytes.parse().ok().filter(|b| *b > 0)
}

/// An executor's standard output split into its run step's memory request, when its first line
/// is one, and the rest: the frame.
pub fn split_run_memory_request(stdout: &[u8]) -> (Option<u64>, &[u8]) {
    let Some(end) = stdout.iter().position(|b| *b == b'\n') else {
        return (None, stdout);
    };
    match parse_run_memory_request(&stdout[..end]) {
        Some(bytes) => (Some(bytes), &stdout[end + 1..]),
        None => (None, stdout),
    }
}

/// Reads a frame back, accepting zips of at most `max_zip_bytes`.
pub fn decode(frame: &[u8], max_zip_bytes: u64) -> Result<ExecutorReport, FrameError> {
    let limit = max_frame_bytes(max_zip_bytes);
    if frame.len() as u64 > limit {
        return Err(FrameError::TooLarge(limit));
    }
    let bad = |what: &str| FrameError::Malformed(what.to_owned());
    let text = std::str::from_utf8(frame).map_err(|_| bad("not ASCII"))?;
    let body = text
        .strip_suffix('\n')
        .ok_or_else(|| bad("it does not end with a newline (cut short?)"))?;
    let lines: Vec<&str> = body.split('\n').collect();
    let [begin, header, zip, end] = lines[..] else {
        return Err(FrameError::Malformed(format!(
            "{} lines instead of 4",
            lines.len()
        )));
    };
    if begin != BEGIN {
        return Err(bad("it does not start with the frame marker"));
    }
    if end != END {
        return Err(bad("it does not end with the end marker (cut short?)"));
    }
    if header.len() as u64 > base64_len(MAX_HEADER_BYTES as u64) {
        return Err(bad("the header is too large"));
    }
    let header = STANDARD
        .decode(header)
        .map_err(|e| FrameError::Malformed(format!("header: {e}")))?;
    let header: Header = serde_json::from_slice(&header)
        .map_err(|e| FrameError::Malformed(format!("header: {e}")))?;
    if header.zip_bytes.unwrap_or(0) > max_zip_bytes {
        return Err(FrameError::TooLarge(limit));
    }
    let zip = STANDARD
        .decode(zip)
        .map_err(|e| FrameError::Malformed(format!("zip: {e}")))?;
    let zip = match header.zip_bytes {
        Some(bytes) if bytes == zip.len() as u64 => Some(zip),
        None if zip.is_empty() => None,
        said => {
            return Err(FrameError::Malformed(format!(
                "the zip has {} bytes, the header says {said:?}",
                zip.len()
            )));
        }
    };
    let report = RunReport {
        stdout: header.stdout,
        stderr: header.stderr,
        compile_output: header.compile_output,
        output_object: None,
        ..header.report
    };
    Ok(ExecutorReport { report, zip })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, Reason, Status, Timings};

    fn outcome() -> ExecutorReport {
        ExecutorReport {
            report: RunReport {
                status: Status::Failed,
                reason: Some(Reason::RuntimeError),
                exit_code: Some(3),
                signal: None,
                timings_ms: Timings {
                    compile: Some(12),
                    run: Some(3),
                    ..Timings::default()
                },
                limits: Limits {
                    wall_time_ms: 1000,
                    cpu_time_ms: 1000,
                    memory_mb: 64,
                    processes: 8,
                    output_kb: 64,
                    disk_mb: 64,
                },
                message: Some("the program exited with code 3".into()),
                stdout: "héllo\nwörld\u{2028}\n".into(),
                stderr: "line\r\n\0nul".into(),
                compile_output: "warning: <&>".into(),
                output_object: None,
            },
            zip: Some((0..=255u8).cycle().take(10_000).collect()),
        }
    }

    #[test]
    fn a_frame_round_trips_and_is_ascii_in_four_lines() {
        let frame = encode(&outcome());
        assert!(frame.is_ascii());
        assert_eq!(frame.iter().filter(|b| **b == b'\n').count(), 4);
        assert_eq!(decode(&frame, 1 << 20).unwrap(), outcome());
        let without_zip = ExecutorReport {
            zip: None,
            ..outcome()
        };
        assert_eq!(decode(&encode(&without_zip), 0).unwrap(), without_zip);
    }

    #[test]
    fn anything_but_an_exact_frame_is_refused() {
        let frame = encode(&outcome());
        let text = String::from_utf8(frame.clone()).unwrap();
        let malformed =
            |bytes: &[u8]| matches!(decode(bytes, 1 << 20), Err(FrameError::Malformed(_)));
        assert!(malformed(format!("noise\n{text}").as_bytes()));
        assert!(malformed(format!("{text}more\n").as_bytes()));
        assert!(malformed(&frame[..frame.len() - 1]));
        assert!(malformed(&frame[..frame.len() / 2]));
        assert!(malformed(b""));
        let lines: Vec<&str> = text.lines().collect();
        // A zip cut short (its size no longer matches the header's).
        let cut = format!(
            "{}\n{}\n{}\n{}\n",
            lines[0],
            lines[1],
            &lines[2][..400],
            lines[3]
        );
        assert!(malformed(cut.as_bytes()));
        let swapped = format!("{}\n{}\n{}\n{}\n", lines[0], lines[2], lines[1], lines[3]);
        assert!(malformed(swapped.as_bytes()));
    }

    #[test]
    fn a_run_memory_request_comes_off_before_the_frame() {
        let frame = encode(&outcome());
        let mut stdout = run_memory_request(300 << 20).into_bytes();
        stdout.extend_from_slice(&frame);
        assert_eq!(
            split_run_memory_request(&stdout),
            (Some(300 << 20), &frame[..])
        );
        assert_eq!(
            decode(split_run_memory_request(&stdout).1, 1 << 20).unwrap(),
            outcome()
        );
        assert_eq!(split_run_memory_request(&frame), (None, &frame[..]));
        for line in [
            "cola-run-memory/1 0",
            "cola-run-memory/1 x",
            "cola-run-memory/1  5",
            "cola-run-memory/15",
        ] {
            assert_eq!(parse_run_memory_request(line.as_bytes()), None, "{line}");
        }
    }

    #[test]
    fn frames_over_the_limit_are_refused_before_decoding() {
        let frame = encode(&outcome());
        assert!(matches!(
            decode(&frame, 5_000),
            Err(FrameError::TooLarge(_))
        ));
        let huge = vec![b'A'; max_frame_bytes(100) as usize + 1];
        assert!(matches!(decode(&huge, 100), Err(FrameError::TooLarge(_))));
    }
}
