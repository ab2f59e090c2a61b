//! How a step ended, and what that means for the job.

use std::{io::Read, time::Duration};

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
    /// Its processes together used up its CPU time (measured by its cgroup).
    CpuTime,
}

/// What the executor observed about one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    pub ending: Ending,
    /// Set when the executor killed the step.
    pub killed: Option<Kill>,
    pub wall: Duration,
    /// User plus system CPU time of every process of the step: as its cgroup measured it, or
    /// (without one) of the processes it waited for.
    pub cpu: Duration,
    /// The largest resident set of any process of the step.
    pub peak_memory_kb: u64,
    /// Bytes of stdout and stderr kept (at most the output limit).
    pub output_bytes: u64,
    /// Whether the kernel killed a process of the step for the memory limit of its cgroup;
    /// `None` when the step had no cgroup (memory is then bounded by `RLIMIT_DATA` only).
    pub oom_killed: Option<bool>,
}

/// What the executor measured of the job's files after a step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskEvidence {
    /// A file reached the largest size a file may have (the output limit).
    pub file_at_limit: bool,
    /// The job's disk allowance is used up.
    pub allowance_full: bool,
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

/// Without a cgroup: peak memory at or above this share of the limit counts as having hit it.
const NEAR_MEMORY_LIMIT: f64 = 0.9;
/// How far short of its CPU limit (as `wait4` measures it) a process may be when the kernel
/// signals it for its `RLIMIT_CPU`: the kernel counts on its own clock, seen up to 13% ahead.
const CPU_SIGNAL_SLACK: f64 = 0.2;

/// What the run step's outcome means, from what was measured: its time, memory, output and
/// files. `oom_reported` (its stderr holds a well-known out-of-memory message) counts only
/// for a step without a cgroup, which cannot be measured better.
pub fn judge_run(
    outcome: &StepOutcome,
    limits: &Limits,
    disk: DiskEvidence,
    oom_reported: bool,
) -> Verdict {
    match failure(outcome, limits, disk, oom_reported) {
        None => Verdict::succeeded(),
        Some((reason, message)) => Verdict::failed(reason, format!("the program {message}")),
    }
}

/// What the compile step's outcome means: `Err` with a message when the program cannot run.
pub fn judge_compile(outcome: &StepOutcome, limits: &Limits) -> Result<(), String> {
    match failure(outcome, limits, DiskEvidence::default(), false) {
        None => Ok(()),
        Some((Reason::RuntimeError, _)) => Err(format!(
            "compilation failed: the compiler {}",
            outcome.ending.describe()
        )),
        Some((_, message)) => Err(format!("compilation stopped: the compiler {message}")),
    }
}

/// The reason a step failed and what happened (a phrase following "the program"), or `None`
/// when it succeeded. Limits come first, each judged on what the executor measured, never on
/// the signal the program died of or what it printed (a program can raise any signal).
fn failure(
    outcome: &StepOutcome,
    limits: &Limits,
    disk: DiskEvidence,
    oom_reported: bool,
) -> Option<(Reason, String)> {
    let cpu_ms = outcome.cpu.as_millis();
    let cpu_limit = Duration::from_millis(limits.cpu_time_ms);
    let died = outcome.ending != Ending::Exited(0);
    if outcome.killed == Some(Kill::WallTime) {
        return Some((
            Reason::TimeLimit,
            format!("exceeded its wall time limit of {} ms", limits.wall_time_ms),
        ));
    }
    if outcome.oom_killed == Some(true) {
        return Some((
            Reason::MemoryLimit,
            format!(
                "ran out of memory: it was killed at its limit of {} MB (its processes' memory, \
                 shared memory and files together)",
                limits.memory_mb
            ),
        ));
    }
    if outcome.killed == Some(Kill::Output) {
        return Some((
            Reason::OutputLimit,
            format!(
                "exceeded its output limit of {} KB (stdout plus stderr)",
                limits.output_kb
            ),
        ));
    }
    let over_cpu = outcome.cpu > cpu_limit
        || outcome.killed == Some(Kill::CpuTime)
        || (matches!(outcome.ending, Ending::Signaled(_))
            && outcome.cpu.as_secs_f64() >= cpu_limit.as_secs_f64() * (1.0 - CPU_SIGNAL_SLACK));
    if over_cpu {
        return Some((
            Reason::TimeLimit,
            format!(
                "exceeded its CPU time limit of {} ms (used {cpu_ms} ms)",
                limits.cpu_time_ms
            ),
        ));
    }
    if !died {
        return None;
    }
    if disk.allowance_full {
        return Some((
            Reason::OutputLimit,
            format!(
                "filled its disk allowance of {} MB and {}",
                limits.disk_mb,
                outcome.ending.describe()
            ),
        ));
    }
    if disk.file_at_limit {
        return Some((
            Reason::OutputLimit,
            format!(
                "wrote a file of the largest size allowed ({} KB) and {}",
                limits.output_kb,
                outcome.ending.describe()
            ),
        ));
    }
    let limit_kb = limits.memory_mb * 1024;
    let near_limit = outcome.peak_memory_kb as f64 >= limit_kb as f64 * NEAR_MEMORY_LIMIT;
    if outcome.oom_killed.is_none() && (oom_reported || near_limit) {
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

/// Whether `file` holds a well-known out-of-memory message anywhere.
pub fn reports_out_of_memory(mut file: impl Read) -> std::io::Result<bool> {
    let longest = OUT_OF_MEMORY_MESSAGES
        .iter()
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
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
        disk_mb: 64,
    };

    fn outcome(ending: Ending) -> StepOutcome {
        StepOutcome {
            ending,
            killed: None,
            wall: Duration::from_millis(10),
            cpu: Duration::from_millis(5),
            peak_memory_kb: 2_000,
            output_bytes: 6,
            oom_killed: None,
        }
    }

    /// A step that had a cgroup, which saw no out-of-memory kill.
    fn measured(ending: Ending) -> StepOutcome {
        StepOutcome {
            oom_killed: Some(false),
            ..outcome(ending)
        }
    }

    fn reason(o: &StepOutcome, oom: bool) -> Option<Reason> {
        judge_run(o, &LIMITS, DiskEvidence::default(), oom).reason
    }

    fn reason_with(o: &StepOutcome, disk: DiskEvidence) -> Option<Reason> {
        judge_run(o, &LIMITS, disk, false).reason
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
        assert_eq!(reason(&ok, false), None);

        let wall = StepOutcome {
            killed: Some(Kill::WallTime),
            ..outcome(Ending::Signaled(9))
        };
        assert_eq!(reason(&wall, false), Some(Reason::TimeLimit));

        let xcpu = StepOutcome {
            cpu: Duration::from_millis(1_000),
            ..outcome(Ending::Signaled(libc::SIGXCPU))
        };
        assert_eq!(reason(&xcpu, false), Some(Reason::TimeLimit));
        let cgroup_cpu = StepOutcome {
            killed: Some(Kill::CpuTime),
            ..measured(Ending::Signaled(9))
        };
        assert_eq!(reason(&cgroup_cpu, false), Some(Reason::TimeLimit));
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
        let big_file = DiskEvidence {
            file_at_limit: true,
            ..DiskEvidence::default()
        };
        assert_eq!(
            reason_with(&outcome(Ending::Signaled(libc::SIGXFSZ)), big_file),
            Some(Reason::OutputLimit)
        );
        let full = DiskEvidence {
            allowance_full: true,
            ..DiskEvidence::default()
        };
        assert_eq!(
            reason_with(&outcome(Ending::Exited(1)), full),
            Some(Reason::OutputLimit)
        );
        // A full disk does not fail a program that coped with it.
        assert_eq!(reason_with(&outcome(Ending::Exited(0)), full), None);

        let oom_killed = StepOutcome {
            oom_killed: Some(true),
            ..outcome(Ending::Signaled(9))
        };
        assert_eq!(reason(&oom_killed, false), Some(Reason::MemoryLimit));

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
    fn a_signal_or_a_message_of_the_programs_own_is_not_a_limit() {
        // raise(SIGXCPU) and raise(SIGXFSZ) at once: no CPU used, no file at its limit.
        for signal in [libc::SIGXCPU, libc::SIGXFSZ] {
            assert_eq!(
                reason(&measured(Ending::Signaled(signal)), false),
                Some(Reason::RuntimeError),
                "{signal}"
            );
        }
        // With a cgroup, memory is measured: neither a message nor a large peak is a limit.
        let near = StepOutcome {
            peak_memory_kb: 60 * 1024,
            ..measured(Ending::Signaled(libc::SIGABRT))
        };
        assert_eq!(reason(&near, true), Some(Reason::RuntimeError));
        // A flood of output after the kernel killed for memory is still memory.
        let both = StepOutcome {
            killed: Some(Kill::Output),
            oom_killed: Some(true),
            ..outcome(Ending::Signaled(9))
        };
        assert_eq!(reason(&both, false), Some(Reason::MemoryLimit));
    }

    #[test]
    fn other_failures_are_runtime_errors_that_say_what_happened() {
        let segv = judge_run(
            &outcome(Ending::Signaled(11)),
            &LIMITS,
            DiskEvidence::default(),
            false,
        );
        assert_eq!(segv.reason, Some(Reason::RuntimeError));
        assert_eq!(
            segv.message.unwrap(),
            "the program was killed by signal 11 (SIGSEGV)"
        );
        let exit = judge_run(
            &outcome(Ending::Exited(3)),
            &LIMITS,
            DiskEvidence::default(),
            false,
        );
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
        assert!(reports_out_of_memory(std::fs::File::open(&path).unwrap()).unwrap());
        std::fs::write(&path, "fatal error: runtime: out of memory\n").unwrap();
        assert!(reports_out_of_memory(std::fs::File::open(&path).unwrap()).unwrap());
        std::fs::write(
            &path,
            "terminate called after throwing an instance of 'std::bad_alloc'",
        )
        .unwrap();
        assert!(reports_out_of_memory(std::fs::File::open(&path).unwrap()).unwrap());
        std::fs::write(&path, "panic: index out of range\n".repeat(10_000)).unwrap();
        assert!(!reports_out_of_memory(std::fs::File::open(&path).unwrap()).unwrap());
    }
}
