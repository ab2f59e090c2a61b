//! The exit codes of the client commands (README "Command line"): a script tells what happened
//! from the code alone. With `--wait` and `cola jobs watch`, a job that ran and ended is the
//! command's outcome: its program's own exit code passes through.

use std::process::ExitCode;

/// The command did what was asked (with `--wait`/`watch`: the job succeeded).
pub const OK: u8 = 0;
/// The job ended without success and without an exit code of its own (a compile error, a
/// limit, cancelled, an internal error).
pub const JOB_FAILED: u8 = 1;
/// A mistake on this side: flags, a file that cannot be read, no token (also clap's code).
pub const USAGE: u8 = 2;
/// The gateway refused the request as it is (400, 409, 413, 415): the message says why.
pub const REFUSED: u8 = 65;
/// No such job (404): it never was, it expired, or it is someone else's.
pub const NOT_FOUND: u8 = 66;
/// The gateway could not be reached, or failed (5xx other than a full queue).
pub const UNAVAILABLE: u8 = 69;
/// Over a quota, or the queue is full (429, 503): the same request may succeed later.
pub const TRY_LATER: u8 = 75;
/// The token was refused (401, 403).
pub const NOT_AUTHORIZED: u8 = 77;

/// The exit code of a job that ran to its end: 0 when it succeeded; its program's exit code,
/// or 128 + the signal that ended it; [`JOB_FAILED`] otherwise.
pub fn of_job(status: &str, exit_code: Option<i64>, signal: Option<i64>) -> ExitCode {
    let code = match (status, exit_code, signal) {
        ("succeeded", _, _) => i64::from(OK),
        (_, _, Some(signal)) => 128 + signal,
        (_, Some(code), _) if code != 0 => code,
        _ => i64::from(JOB_FAILED),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(JOB_FAILED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_passes_its_own_exit_code_through() {
        assert_eq!(of_job("succeeded", Some(0), None), ExitCode::from(0));
        assert_eq!(of_job("failed", Some(3), None), ExitCode::from(3));
        assert_eq!(of_job("failed", None, Some(9)), ExitCode::from(137));
        assert_eq!(of_job("failed", None, None), ExitCode::from(JOB_FAILED));
        assert_eq!(of_job("cancelled", None, None), ExitCode::from(JOB_FAILED));
        assert_eq!(
            of_job("failed", Some(300), None),
            ExitCode::from(JOB_FAILED)
        );
    }
}
