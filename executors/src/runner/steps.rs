//! Steps: one job in its sandbox, on a thread of its own — its files checked and written, the
//! compile step, the run step once its gate opens, the verdict of each, and the zip of what it
//! left.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Write},
    path::{Path, PathBuf},
};

use cola_wire::{
    InputFile, Inputs, JobMessage, LanguageDef, Limits, PREVIEW_BYTES, Reason, RunReport, Status,
    Timings, job::preview,
};

use super::{
    handoff::{self, CompileOutcome, Compiled},
    intake::{check_files, check_runnable},
    report::invalid_input,
};
use crate::{
    error::{ExecutorError, IoContext},
    go_cache,
    outputs::{self, StepUsage, Usage, ZipContents},
    sandbox::{
        Output, ReadOnlyBind, Sandbox, SandboxConfig, SandboxKind, SandboxPlan, SandboxUser, Step,
        StepOutcome, Verdict, system, verdict,
    },
    toolchain::language_env,
    workspace::{DiskAllowance, Log, Workspace},
};

/// The largest file a compiler may write (binaries, build cache entries).
pub(super) const COMPILE_MAX_FILE_BYTES: u64 = 256 << 20;

/// What running a job produced.
#[derive(Debug, Clone)]
pub struct Execution {
    pub report: RunReport,
    pub zip: Vec<u8>,
}

/// What must happen before a job's run step starts, and its user code with it; an error means
/// the step never runs. [`super::run`]'s gate is the record check ([`after`]); the Docker
/// backend's, the container's memory limit lowered to the run step's own.
pub type RunGate = Box<dyn FnOnce() -> Result<(), ExecutorError> + Send>;

/// A gate that opens once `signal` gets a value; if its sender is dropped instead, the step is
/// not run.
pub(super) fn after(signal: tokio::sync::oneshot::Receiver<()>) -> RunGate {
    Box::new(move || signal.blocking_recv().map_err(|_| ExecutorError::Halted))
}

/// What an execution task returned; a worker that failed is an [`ExecutorError::Worker`].
pub(super) async fn joined(
    task: tokio::task::JoinHandle<Result<Execution, ExecutorError>>,
) -> Result<Execution, ExecutorError> {
    task.await?
}

/// A job to execute: its language, its message, where its files come from, and the gate of its
/// run step.
pub(super) struct JobRun {
    pub(super) lang: LanguageDef,
    pub(super) job: JobMessage,
    pub(super) sources: Sources,
    pub(super) gate: Option<RunGate>,
}

/// Where a job's files (and its compile step) come from.
#[derive(Debug)]
pub(super) enum Sources {
    /// The job's inputs: written and compiled here.
    Inputs(Inputs),
    /// Written and compiled by the job's compile container, before this one (Kubernetes: see
    /// [`super::split`]).
    CompiledAhead,
}

impl JobRun {
    /// The job of `inputs`, all of its steps here.
    pub(super) fn new(
        lang: &LanguageDef,
        job: &JobMessage,
        inputs: Inputs,
        gate: Option<RunGate>,
    ) -> Self {
        Self::of(lang, job, Sources::Inputs(inputs), gate)
    }

    pub(super) fn of(
        lang: &LanguageDef,
        job: &JobMessage,
        sources: Sources,
        gate: Option<RunGate>,
    ) -> Self {
        Self {
            lang: *lang,
            job: job.clone(),
            sources,
            gate,
        }
    }
}

/// [`execute_blocking`] on a thread of its own, whose run step waits for its gate if there is
/// one. A thread per job, never a pooled one: the job's disk allowance is mounted for that
/// thread only (see [`crate::sandbox::disk`]).
pub(super) fn spawn_execute(
    run: JobRun,
    job_dir: &Path,
    sandbox: &SandboxConfig,
) -> tokio::task::JoinHandle<Result<Execution, ExecutorError>> {
    let (job_dir, sandbox) = (job_dir.to_owned(), sandbox.clone());
    let (done, executed) = tokio::sync::oneshot::channel();
    // Blocking work (processes, files): off the async threads. A panic in there still drops
    // the workspace, which removes the job's directories.
    let thread = std::thread::Builder::new()
        .name("job".into())
        .spawn(move || {
            let _ = done.send(execute_blocking(run, &job_dir, &sandbox, None));
        });
    tokio::spawn(async move {
        thread.map_err(|e| ExecutorError::Worker(format!("cannot start the job's thread: {e}")))?;
        executed.await.unwrap_or_else(|_| {
            Err(ExecutorError::Worker(
                "the job's thread ended without an outcome".into(),
            ))
        })
    })
}

/// A sandbox started before its job, with its workspace and its uid (a pre-started executor's:
/// see [`super::standby`]). Dropped in field order: the sandbox, its workspace, then its uid.
#[derive(Debug)]
pub(super) struct PreparedSandbox {
    pub(super) sandbox: Sandbox,
    pub(super) workspace: Workspace,
    pub(super) user: SandboxUser,
}

/// Runs the job of `run` in `prepared` if given (and it can serve the job), or in a sandbox of
/// its own.
pub(super) fn execute_blocking(
    run: JobRun,
    job_dir: &Path,
    config: &SandboxConfig,
    prepared: Option<PreparedSandbox>,
) -> Result<Execution, ExecutorError> {
    let JobRun {
        lang,
        ref job,
        sources,
        gate,
    } = run;
    let lang = &lang;
    config.validate()?;
    let inputs = match sources {
        Sources::Inputs(inputs) => inputs,
        Sources::CompiledAhead => {
            return run_compiled(lang, job, job_dir, config, gate);
        }
    };
    if let Err(message) = check_runnable(lang).and_then(|()| check_files(lang, &inputs.files)) {
        return refused(invalid_input(&job.limits, message), config);
    }
    // Dropped in the reverse order: the sandbox's processes are gone before the workspace is,
    // and the uid stays reserved until the workspace is gone.
    let (user, workspace, standing) = match prepared {
        Some(prepared) => {
            if let DiskAllowance::Mount(bytes) = disk_allowance(config, job_dir, &job.limits) {
                prepared.workspace.resize_allowance(bytes)?;
            }
            (prepared.user, prepared.workspace, Some(prepared.sandbox))
        }
        None => {
            let (user, workspace) = new_workspace(job, job_dir, config)?;
            (user, workspace, None)
        }
    };
    let stdin = workspace.write_inputs(&inputs)?;
    let steps = JobSteps {
        lang,
        job,
        files: &inputs.files,
        workspace: &workspace,
        config,
    };
    let (compile, read_only) = steps.compile_step().unzip();
    let run = steps.run_step(stdin);
    let read_only = read_only.flatten().into_iter().collect();
    let compile = compile.map(CompileStage::Here);
    steps.execute(compile, read_only, run, standing, &user, gate)
}

/// The run step of `job` in the workspace its compile container left in `job_dir`, once `gate`
/// (if any) lets it; the compile container's refusal or failure reported as such.
pub(super) fn run_compiled(
    lang: &LanguageDef,
    job: &JobMessage,
    job_dir: &Path,
    config: &SandboxConfig,
    gate: Option<RunGate>,
) -> Result<Execution, ExecutorError> {
    let DiskAllowance::Container(areas) = disk_allowance(config, job_dir, &job.limits) else {
        return Err(ExecutorError::Config(
            "only a container sandbox runs what a compile container left".into(),
        ));
    };
    let user = SandboxUser::for_job(&job.id, config.uid_base, config.uid_count)?;
    let workspace = Workspace::reopen(job_dir, areas)?;
    let compiled = match handoff::read_outcome(&workspace)? {
        CompileOutcome::Refused { message } => {
            return refused(invalid_input(&job.limits, message), config);
        }
        CompileOutcome::Ready { compiled } => compiled,
    };
    let compile = match (lang.compile, compiled) {
        (None, _) => None,
        (Some(_), Some(compiled)) => Some(CompileStage::Done(compiled)),
        (Some(_), None) => {
            return Err(ExecutorError::Worker(
                "the compile container did not compile the job".into(),
            ));
        }
    };
    let steps = JobSteps {
        lang,
        job,
        files: &[],
        workspace: &workspace,
        config,
    };
    let run = steps.run_step(workspace.log(Log::Stdin));
    steps.execute(compile, Vec::new(), run, None, &user, gate)
}

/// The job's own uid, and a new workspace for it in `job_dir` with its disk allowance.
pub(super) fn new_workspace(
    job: &JobMessage,
    job_dir: &Path,
    config: &SandboxConfig,
) -> Result<(SandboxUser, Workspace), ExecutorError> {
    let user = SandboxUser::for_job(&job.id, config.uid_base, config.uid_count)?;
    let allowance = disk_allowance(config, job_dir, &job.limits);
    let workspace = Workspace::create(job_dir, user.host_ids(), allowance)?;
    Ok((user, workspace))
}

/// A job refused before anything ran: its report, alone in its zip.
pub(super) fn refused(
    report: RunReport,
    config: &SandboxConfig,
) -> Result<Execution, ExecutorError> {
    let zip = outputs::build_zip(&ZipContents {
        report: &report,
        usage: Usage::default(),
        logs: &[],
        out_dir: None,
        max_bytes: config.max_zip_bytes,
    })?;
    Ok(Execution { report, zip })
}

/// `standing` if it serves `plan`; otherwise (`standing` stopped first) a sandbox started for
/// the plan.
fn sandbox_for(
    plan: &SandboxPlan,
    standing: Option<Sandbox>,
    config: &SandboxConfig,
    user: &SandboxUser,
    workspace: &Workspace,
) -> Result<Sandbox, ExecutorError> {
    match standing {
        Some(sandbox) if sandbox.serves(plan) => Ok(sandbox),
        standing => {
            if standing.is_some() {
                tracing::info!(
                    "the pre-started sandbox does not fit the job's limits; starting one"
                );
            }
            // (A pre-started sandbox that does not fit is stopped here, before the new one.)
            drop(standing);
            start_sandbox(config, user, workspace, plan)
        }
    }
}

/// A sandbox for `plan`, run as `user`, writing `workspace`.
pub(super) fn start_sandbox(
    config: &SandboxConfig,
    user: &SandboxUser,
    workspace: &Workspace,
    plan: &SandboxPlan,
) -> Result<Sandbox, ExecutorError> {
    Sandbox::start(
        config,
        user.host_ids(),
        workspace.writable(),
        plan,
        &workspace.log(Log::Sandbox),
    )
}

/// The disk allowance of a job with `limits` in `job_dir` (see [`crate::sandbox::disk`]): in
/// bubblewrap, a tmpfs the executor mounts when it runs as root; in a container, its `/work`
/// (the job directory) and `/tmp`, which the backend sized for the job.
pub(super) fn disk_allowance(
    config: &SandboxConfig,
    job_dir: &Path,
    limits: &Limits,
) -> DiskAllowance {
    match config.kind {
        SandboxKind::Bubblewrap if nix::unistd::geteuid().is_root() => {
            DiskAllowance::Mount(limits.disk_mb << 20)
        }
        SandboxKind::Bubblewrap => DiskAllowance::None,
        SandboxKind::Container => {
            DiskAllowance::Container(vec![job_dir.to_owned(), PathBuf::from("/tmp")])
        }
    }
}

/// The largest file a program with `limits` may write: its output limit.
pub(super) fn run_file_bytes(limits: &Limits) -> u64 {
    limits.output_kb * 1024
}

/// One job's steps in its sandbox.
pub(super) struct JobSteps<'a> {
    pub(super) lang: &'a LanguageDef,
    pub(super) job: &'a JobMessage,
    /// The job's files (none when they were written before, see [`Sources::CompiledAhead`]).
    pub(super) files: &'a [InputFile],
    pub(super) workspace: &'a Workspace,
    pub(super) config: &'a SandboxConfig,
}

/// A job's compile step: to run here, or run before.
pub(super) enum CompileStage {
    Here(Step),
    Done(Compiled),
}

impl JobSteps<'_> {
    /// Starts the sandbox for the steps (or keeps `standing`, if it serves them), runs them as
    /// [`JobSteps::compile_and_run`] does, and zips what they left.
    pub(super) fn execute(
        &self,
        compile: Option<CompileStage>,
        read_only: Vec<ReadOnlyBind>,
        run: Step,
        standing: Option<Sandbox>,
        user: &SandboxUser,
        gate: Option<RunGate>,
    ) -> Result<Execution, ExecutorError> {
        let compile_here = match &compile {
            Some(CompileStage::Here(step)) => std::slice::from_ref(step),
            _ => &[],
        };
        let plan =
            SandboxPlan::for_steps(&run, compile_here, read_only, system::dirs_of(self.lang));
        let sandbox = sandbox_for(&plan, standing, self.config, user, self.workspace)?;
        let (report, usage) = self.compile_and_run(&sandbox, compile, run, gate)?;
        drop(sandbox);
        let zip = self.package(&report, usage)?;
        Ok(Execution { report, zip })
    }

    /// Runs the compile step (or takes the outcome of the one that ran before), then `run` once
    /// `gate` (if any) lets it, in `sandbox`; the report and what the steps used.
    fn compile_and_run(
        &self,
        sandbox: &Sandbox,
        compile: Option<CompileStage>,
        run: Step,
        gate: Option<RunGate>,
    ) -> Result<(RunReport, Usage), ExecutorError> {
        let mut usage = Usage::default();
        let mut timings = Timings::default();
        if let Some(compile) = compile {
            let compiled = match compile {
                CompileStage::Here(step) => self.compile(sandbox, &step)?,
                CompileStage::Done(compiled) => compiled,
            };
            timings.compile = Some(compiled.millis);
            usage.compile = Some(compiled.usage);
            timings.cpu = Some(usage.cpu_time_ms());
            if let Some(message) = compiled.failure {
                let report = RunReport {
                    timings_ms: timings,
                    ..self.report(failed_verdict(Reason::CompileError, message))
                };
                return Ok((report, usage));
            }
        }
        if let Some(gate) = gate {
            gate()?;
        }
        let outcome = sandbox.run(&run)?;
        timings.run = Some(millis(&outcome));
        usage.run = Some(step_usage(&outcome));
        timings.cpu = Some(usage.cpu_time_ms());
        let verdict = self.judge_run(&outcome)?;
        let report = RunReport {
            exit_code: outcome.ending.exit_code(),
            signal: outcome.ending.signal(),
            timings_ms: timings,
            ..self.report(verdict)
        };
        Ok((report, usage))
    }

    /// Runs the compile step `step` in `sandbox`, noting in the compiler's output why it failed
    /// if it did.
    pub(super) fn compile(
        &self,
        sandbox: &Sandbox,
        step: &Step,
    ) -> Result<Compiled, ExecutorError> {
        let outcome = sandbox.run(step)?;
        let failure = verdict::judge_compile(&outcome, &self.lang.compile_limits).err();
        if let Some(message) = &failure {
            self.note_in_compile_log(message)?;
        }
        Ok(Compiled {
            millis: millis(&outcome),
            usage: step_usage(&outcome),
            failure,
        })
    }

    /// The compile step, if the language has one, and what the sandbox must bind for it.
    pub(super) fn compile_step(&self) -> Option<(Step, Option<ReadOnlyBind>)> {
        let template = self.lang.compile?;
        let mut step = Step {
            command: expand_sources(template, &self.sources()),
            env: language_env(self.lang),
            limits: self.lang.compile_limits,
            max_file_bytes: COMPILE_MAX_FILE_BYTES,
            stdin: None,
            output: Output::Merged(self.workspace.log(Log::Compile)),
        };
        let bind = if go_cache::applies_to(self.lang) {
            go_cache::configure(
                &mut step,
                self.config.go_cache.as_deref(),
                self.config.kind.binds_directories(),
            )
        } else {
            None
        };
        Some((step, bind))
    }

    /// The job's source files (those handed to the compiler), sorted.
    fn sources(&self) -> Vec<String> {
        let mut sources: Vec<String> = self
            .files
            .iter()
            .filter(|f| self.lang.is_source(&f.name))
            .map(|f| f.name.clone())
            .collect();
        sources.sort();
        sources
    }

    pub(super) fn run_step(&self, stdin: PathBuf) -> Step {
        let limits = self.job.limits;
        let mut command: Vec<String> = self.lang.run.iter().map(|a| (*a).to_owned()).collect();
        command.extend(self.job.args.iter().cloned());
        Step {
            command,
            env: language_env(self.lang),
            limits,
            max_file_bytes: run_file_bytes(&limits),
            stdin: Some(stdin),
            output: Output::Separate {
                stdout: self.workspace.log(Log::Stdout),
                stderr: self.workspace.log(Log::Stderr),
            },
        }
    }

    fn judge_run(&self, outcome: &StepOutcome) -> Result<Verdict, ExecutorError> {
        let failed = outcome.ending != verdict::Ending::Exited(0);
        // Only a step without a cgroup, whose memory cannot be measured, is judged on this.
        let stderr = match failed && outcome.oom_killed.is_none() {
            true => self.workspace.open_log(Log::Stderr)?,
            false => None,
        };
        let oom_reported = match stderr {
            Some(stderr) => verdict::reports_out_of_memory(stderr)
                .context(|| format!("reading {}", self.workspace.log(Log::Stderr).display()))?,
            None => false,
        };
        let disk = self
            .workspace
            .disk_evidence(run_file_bytes(&self.job.limits));
        Ok(verdict::judge_run(
            outcome,
            &self.job.limits,
            disk,
            oom_reported,
        ))
    }

    /// Appends the executor's word on a failed compilation to the compiler's output.
    fn note_in_compile_log(&self, message: &str) -> Result<(), ExecutorError> {
        let path = self.workspace.log(Log::Compile);
        let mut log = OpenOptions::new()
            .append(true)
            .open(&path)
            .context(|| format!("opening {}", path.display()))?;
        writeln!(log, "\n[cola] {message}").context(|| format!("writing {}", path.display()))
    }

    /// The report for `verdict`, with the previews of the logs.
    fn report(&self, verdict: Verdict) -> RunReport {
        RunReport {
            status: verdict.status,
            reason: verdict.reason,
            exit_code: None,
            signal: None,
            timings_ms: Timings::default(),
            limits: self.job.limits,
            message: verdict.message,
            stdout: self.preview(Log::Stdout),
            stderr: self.preview(Log::Stderr),
            compile_output: self.preview(Log::Compile),
            output_object: None,
        }
    }

    /// The start of a log as text, for a record's preview; empty if there is none.
    fn preview(&self, log: Log) -> String {
        match self.workspace.open_log(log) {
            Ok(Some(file)) => read_preview(file),
            Ok(None) => String::new(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a log for its preview");
                String::new()
            }
        }
    }

    fn package(&self, report: &RunReport, usage: Usage) -> Result<Vec<u8>, ExecutorError> {
        let mut logs = vec![
            ("stdout.txt", self.workspace.open_log(Log::Stdout)?),
            ("stderr.txt", self.workspace.open_log(Log::Stderr)?),
        ];
        if self.lang.compile.is_some() {
            logs.push(("compile.txt", self.workspace.open_log(Log::Compile)?));
        }
        outputs::build_zip(&ZipContents {
            report,
            usage,
            logs: &logs,
            out_dir: self.workspace.open_out_dir()?.as_ref(),
            max_bytes: self.config.max_zip_bytes,
        })
    }
}

fn failed_verdict(reason: Reason, message: String) -> Verdict {
    Verdict {
        status: Status::Failed,
        reason: Some(reason),
        message: Some(message),
    }
}

fn millis(outcome: &StepOutcome) -> u64 {
    u64::try_from(outcome.wall.as_millis()).unwrap_or(u64::MAX)
}

fn step_usage(outcome: &StepOutcome) -> StepUsage {
    StepUsage {
        cpu_time_ms: u64::try_from(outcome.cpu.as_millis()).unwrap_or(u64::MAX),
        peak_memory_kb: outcome.peak_memory_kb,
    }
}

/// A command of the language table with `{sources}` replaced by the source files.
fn expand_sources(template: &[&str], sources: &[String]) -> Vec<String> {
    template
        .iter()
        .flat_map(|arg| match *arg {
            "{sources}" => sources.to_vec(),
            arg => vec![arg.to_owned()],
        })
        .collect()
}

/// The start of a log file as text, for a record's preview.
fn read_preview(file: File) -> String {
    let mut bytes = Vec::new();
    // A few bytes more than the preview so that a character cut by the limit is not lost.
    let _ = file.take(PREVIEW_BYTES as u64 + 4).read_to_end(&mut bytes);
    preview(&String::from_utf8_lossy(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::test_support::{c_inputs, c_job, test_config};
    use cola_wire::languages;

    #[test]
    fn sources_expand_in_place() {
        let sources = vec!["a.c".to_owned(), "b.c".to_owned()];
        assert_eq!(
            expand_sources(&["gcc", "-o", "main", "{sources}", "-lm"], &sources),
            ["gcc", "-o", "main", "a.c", "b.c", "-lm"]
        );
        assert_eq!(
            expand_sources(&["go", "build", "{sources}"], &[]),
            ["go", "build"]
        );
    }

    #[tokio::test]
    async fn a_run_step_waits_for_its_gate_and_never_starts_without_it() {
        let c = &languages()[0];
        let job = c_job;
        let inputs =
            c_inputs("#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n");
        let config = test_config();

        let dir = tempfile::tempdir().unwrap();
        let (go, gate) = tokio::sync::oneshot::channel::<()>();
        let run = JobRun::new(c, &job(), inputs.clone(), Some(after(gate)));
        let task = spawn_execute(run, dir.path(), &config);
        drop(go);
        let stopped = joined(task).await;
        assert!(matches!(stopped, Err(ExecutorError::Halted)), "{stopped:?}");

        let dir = tempfile::tempdir().unwrap();
        let (go, gate) = tokio::sync::oneshot::channel();
        let run = JobRun::new(c, &job(), inputs.clone(), Some(after(gate)));
        let task = spawn_execute(run, dir.path(), &config);
        go.send(()).unwrap();
        let done = joined(task).await.unwrap();
        assert_eq!(
            (done.report.status, done.report.stdout.as_str()),
            (Status::Succeeded, "hello\n"),
            "{:?}",
            done.report
        );
    }
}
