//! How a step ended, and what that means for the job.

use std::{fs::File, io::Read, path::Path, time::Duration};

use cola_wire::{Limits, Reason, Status};

/// How the sandboxed command ended.
///
/// bubblewrap (and the shell that is PID 1 inside) report a death by signal `n` as exit status
/// `128 + n`, like every POSIX shell; a status above 128 is therefore read as a signal. (A program
/// that itself exits with such a status is reported as killed by that signal.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signaled(i32),
}

impl Ending {
    pub fn exit_code(self) -> Option<i32> {
        match self {
            Self::Exited(code) => Some(code),
            Self::Signaled(_) => None,
        }
    }

    pub fn signal(self) -> Option<i32> {
        match self {
            Self::Signaled(signal) => Some(signal),
            Self::Exited(_) => None,
        }
    }

    fn describe(self) -> String {
        match self {
            Self::Exited(code) => format!("exited with code {code}"),
            Self::Signaled(signal) => {
                format!("was killed by signal {signal} ({})", signal_name(signal))
            }
        }
    }
}

/// Why the executor killed a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// Its wall-clock time ran out.
    WallTime,
    /// It wrote more than its output limit to stdout and stderr.
    Output,
}

/// What the executor observed about one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    pub ending: Ending,
    /// Set when the executor killed the step.
    pub killed: Option<Kill>,
    pub wall: Duration,
    /// User plus system CPU time of every process of the step.
    pub cpu: Duration,
    /// The largest resident set of any process of the step.
    pub peak_memory_kb: u64,
    /// Bytes of stdout and stderr kept (at most the output limit).
    pub output_bytes: u64,
}

/// What a step's outcome means for the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    pub reason: Option<Reason>,
    /// Why, in a sentence, when the job failed.
    pub message: Option<String>,
}

impl Verdict {
    fn succeeded() -> Self {
        Self {
            status: Status::Succeeded,
            reason: None,
            message: None,
        }
    }

    fn failed(reason: Reason, message: String) -> Self {
        Self {
            status: Status::Failed,
            reason: Some(reason),
            message: Some(message),
        }
    }
}

/// Peak memory at or above this share of the limit counts as having hit it.
const NEAR_MEMORY_LIMIT: f64 = 0.9;

/// What the run step's outcome means. `oom_reported` says whether the program's stderr holds a
/// well-known out-of-memory message.
pub fn judge_run(outcome: &StepOutcome, limits: &Limits, oom_reported: bool) -> Verdict {
    match failure(outcome, limits, oom_reported) {
        None => Verdict::succeeded(),
        Some((reason, message)) => Verdict::failed(reason, format!("the program {message}")),
    }
}

/// What the compile step's outcome means: `Err` with a message when the program cannot run.
pub fn judge_compile(outcome: &StepOutcome, limits: &Limits) -> Result<(), String> {
    match failure(outcome, limits, false) {
        None => Ok(()),
        Some((Reason::RuntimeError, _)) => Err(format!(
            "compilation failed: the compiler {}",
            outcome.ending.describe()
        )),
        Some((_, message)) => Err(format!("compilation stopped: the compiler {message}")),
    }
}

/// The reason a step failed and what happened (a phrase following "the program"), or `None`
/// when it succeeded. Limits come first: a program killed for its limit failed because of it.
fn failure(outcome: &StepOutcome, limits: &Limits, oom_reported: bool) -> Option<(Reason, String)> {
    let cpu_ms = outcome.cpu.as_millis();
    let over_cpu = cpu_ms > u128::from(limits.cpu_time_ms);
    let killed_for_cpu = match outcome.ending {
        Ending::Signaled(libc::SIGXCPU) => true,
        Ending::Signaled(libc::SIGKILL) => over_cpu,
        _ => false,
    };
    if outcome.killed == Some(Kill::WallTime) {
        return Some((
            Reason::TimeLimit,
            format!("exceeded its wall time limit of {} ms", limits.wall_time_ms),
        ));
    }
    if outcome.killed == Some(Kill::Output) || outcome.ending == Ending::Signaled(libc::SIGXFSZ) {
        return Some((
            Reason::OutputLimit,
            format!(
                "exceeded its output limit of {} KB (stdout plus stderr, or one file)",
                limits.output_kb
            ),
        ));
    }
    if killed_for_cpu || over_cpu {
        return Some((
            Reason::TimeLimit,
            format!(
                "exceeded its CPU time limit of {} ms (used {cpu_ms} ms)",
                limits.cpu_time_ms
            ),
        ));
    }
    if outcome.ending == Ending::Exited(0) {
        return None;
    }
    let limit_kb = limits.memory_mb * 1024;
    if oom_reported || outcome.peak_memory_kb as f64 >= limit_kb as f64 * NEAR_MEMORY_LIMIT {
        return Some((
            Reason::MemoryLimit,
            format!(
                "ran out of memory (limit {} MB, peak {} MB) and {}",
                limits.memory_mb,
                outcome.peak_memory_kb / 1024,
                outcome.ending.describe()
            ),
        ));
    }
    Some((Reason::RuntimeError, outcome.ending.describe()))
}

fn signal_name(signal: i32) -> &'static str {
    nix::sys::signal::Signal::try_from(signal).map_or("real-time signal", |s| s.as_str())
}

/// What runtimes print when an allocation fails (matched case-insensitively): Go's
/// `fatal error: runtime: out of memory`, V8's `JavaScript heap out of memory` and
/// `Fatal process out of memory`, `strerror(ENOMEM)`, C++'s `std::bad_alloc`.
const OUT_OF_MEMORY_MESSAGES: [&str; 3] = ["out of memory", "cannot allocate memory", "bad_alloc"];

/// Whether the file at `path` holds a well-known out-of-memory message anywhere.
pub fn reports_out_of_memory(path: &Path) -> std::io::Result<bool> {
    let longest = OUT_OF_MEMORY_MESSAGES
        .iter()
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
    let mut file = File::open(path)?;
    let mut window: Vec<u8> = Vec::with_capacity(64 * 1024 + longest);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut chunk)?;
        if n == 0 {
            return Ok(false);
        }
        window.extend(chunk[..n].iter().map(u8::to_ascii_lowercase));
        if OUT_OF_MEMORY_MESSAGES
            .iter()
            .any(|m| window.windows(m.len()).any(|w| w == m.as_bytes()))
        {
            return Ok(true);
        }
        // Keep a tail so that a message split across two reads is still found.
        let keep = window.len().min(longest - 1);
        window.drain(..window.len() - keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        wall_time_ms: 2_000,
        cpu_time_ms: 1_000,
        memory_mb: 64,
        processes: 16,
        output_kb: 64,
    };

    fn outcome(ending: Ending) -> StepOutcome {
        StepOutcome {
            ending,
            killed: None,
            wall: Duration::from_millis(10),
            cpu: Duration::from_millis(5),
            peak_memory_kb: 2_000,
            output_bytes: 6,
        }
    }

    fn reason(o: &StepOutcome, oom: bool) -> Option<Reason> {
        judge_run(o, &LIMITS, oom).reason
    }

    #[test]
    fn an_ending_has_an_exit_code_or_a_signal() {
        assert_eq!(Ending::Exited(3).exit_code(), Some(3));
        assert_eq!(Ending::Exited(3).signal(), None);
        assert_eq!(Ending::Signaled(11).exit_code(), None);
        assert_eq!(Ending::Signaled(11).signal(), Some(11));
    }

    #[test]
    fn each_limit_has_its_reason() {
        let ok = outcome(Ending::Exited(0));
        assert_eq!(judge_run(&ok, &LIMITS, false), Verdict::succeeded());

        let wall = StepOutcome {
            killed: Some(Kill::WallTime),
            ..outcome(Ending::Signaled(9))
        };
        assert_eq!(reason(&wall, false), Some(Reason::TimeLimit));

        let xcpu = outcome(Ending::Signaled(libc::SIGXCPU));
        assert_eq!(reason(&xcpu, false), Some(Reason::TimeLimit));
        let hard_cpu = StepOutcome {
            cpu: Duration::from_millis(2_001),
            ..outcome(Ending::Signaled(9))
        };
        assert_eq!(reason(&hard_cpu, false), Some(Reason::TimeLimit));
        let over_cpu_but_exited = StepOutcome {
            cpu: Duration::from_millis(1_500),
            ..ok.clone()
        };
        assert_eq!(reason(&over_cpu_but_exited, false), Some(Reason::TimeLimit));

        let output = StepOutcome {
            killed: Some(Kill::Output),
            ..outcome(Ending::Signaled(9))
        };
        assert_eq!(reason(&output, false), Some(Reason::OutputLimit));
        assert_eq!(
            reason(&outcome(Ending::Signaled(libc::SIGXFSZ)), false),
            Some(Reason::OutputLimit)
        );

        let segv_near_limit = StepOutcome {
            peak_memory_kb: 60 * 1024,
            ..outcome(Ending::Signaled(11))
        };
        assert_eq!(reason(&segv_near_limit, false), Some(Reason::MemoryLimit));
        assert_eq!(
            reason(&outcome(Ending::Exited(2)), true),
            Some(Reason::MemoryLimit)
        );
        let big_but_fine = StepOutcome {
            peak_memory_kb: 63 * 1024,
            ..ok
        };
        assert_eq!(reason(&big_but_fine, false), None);
    }

    #[test]
    fn other_failures_are_runtime_errors_that_say_what_happened() {
        let segv = judge_run(&outcome(Ending::Signaled(11)), &LIMITS, false);
        assert_eq!(segv.reason, Some(Reason::RuntimeError));
        assert_eq!(
            segv.message.unwrap(),
            "the program was killed by signal 11 (SIGSEGV)"
        );
        let exit = judge_run(&outcome(Ending::Exited(3)), &LIMITS, false);
        assert_eq!(exit.message.unwrap(), "the program exited with code 3");
        // Killed by SIGKILL without reaching the CPU limit: not a time limit.
        assert_eq!(
            reason(&outcome(Ending::Signaled(9)), false),
            Some(Reason::RuntimeError)
        );
    }

    #[test]
    fn compile_failures_say_whether_a_limit_stopped_the_compiler() {
        assert_eq!(judge_compile(&outcome(Ending::Exited(0)), &LIMITS), Ok(()));
        let error = judge_compile(&outcome(Ending::Exited(1)), &LIMITS).unwrap_err();
        assert_eq!(error, "compilation failed: the compiler exited with code 1");
        let slow = StepOutcome {
            killed: Some(Kill::WallTime),
            ..outcome(Ending::Signaled(9))
        };
        let error = judge_compile(&slow, &LIMITS).unwrap_err();
        assert_eq!(
            error,
            "compilation stopped: the compiler exceeded its wall time limit of 2000 ms"
        );
    }

    #[test]
    fn out_of_memory_messages_are_found_even_across_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stderr");
        // "out o" ends the first 64 KiB read, "f memory" starts the second.
        let mut text = "x".repeat(64 * 1024 - 5).into_bytes();
        text.extend_from_slice(b"out of memory\n");
        std::fs::write(&path, &text).unwrap();
        assert!(reports_out_of_memory(&path).unwrap());
        std::fs::write(&path, "fatal error: runtime: out of memory\n").unwrap();
        assert!(reports_out_of_memory(&path).unwrap());
        std::fs::write(
            &path,
            "terminate called after throwing an instance of 'std::bad_alloc'",
        )
        .unwrap();
        assert!(reports_out_of_memory(&path).unwrap());
        std::fs::write(&path, "panic: index out of range\n".repeat(10_000)).unwrap();
        assert!(!reports_out_of_memory(&path).unwrap());
    }
}
