//! A job's container: its image and command, its limits (memory for the compile step and
//! then the run step, CPUs, processes), its tmpfs work area, and the log that carries its
//! result frame back.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};
use cola_wire::{JobMessage, LanguageDef, Limits, frame};

use super::DockerBackend;
use crate::work_areas::WorkAreas;

/// Where the executor works in the container (a tmpfs sized for the job).
const WORK_DIR: &str = "/work";
/// Memory for the executor itself on top of what the job's steps may use, beside its copies of
/// the job's inputs ([`INPUT_COPIES`]). (It writes the output zip's frame as it encodes it, and
/// the zip takes the place of the files it holds.)
const EXECUTOR_MEMORY_MB: u64 = 32;
/// How many times the job message's size the executor keeps while the job runs: its inputs in
/// memory, the copy its blocking worker gets, and the files written to the tmpfs work area.
const INPUT_COPIES: u64 = 3;
/// Processes and threads for the executor and the toolchains' helpers on top of the job's.
const EXECUTOR_TASKS: u64 = 64;

impl DockerBackend {
    /// The container of one job: see the module's documentation.
    pub(super) fn container_spec(
        &self,
        job: &JobMessage,
        lang: &LanguageDef,
        message_bytes: usize,
        labels: HashMap<String, String>,
    ) -> ContainerCreateBody {
        let (uid, gid) = self.config.user;
        let areas = WorkAreas::of(lang, &job.limits, message_bytes);
        let tmpfs =
            |mb: u64| format!("rw,exec,nosuid,nodev,size={mb}m,uid={uid},gid={gid},mode=0700");
        let executor_mb = executor_mb(message_bytes);
        let memory = memory_bytes(lang, &job.limits, executor_mb, &areas);
        let mut cmd: Vec<String> = ["--sandbox", "container", "--stdio", "--job-dir", WORK_DIR]
            .map(String::from)
            .to_vec();
        if lang.compile.is_some() {
            let run = run_memory_bytes(&job.limits, executor_mb);
            cmd.extend(["--run-memory-limit".into(), run.to_string()]);
        }
        ContainerCreateBody {
            image: Some(self.config.image(lang)),
            cmd: Some(cmd),
            user: Some(format!("{uid}:{gid}")),
            working_dir: Some(WORK_DIR.into()),
            labels: Some(labels),
            open_stdin: Some(true),
            stdin_once: Some(true),
            attach_stdin: Some(true),
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            tty: Some(false),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                memory: Some(memory),
                memory_swap: Some(memory),
                nano_cpus: Some((self.config.cpus * 1e9) as i64),
                pids_limit: Some(pids_limit(lang, &job.limits)),
                readonly_rootfs: Some(true),
                tmpfs: Some(HashMap::from([
                    (WORK_DIR.to_owned(), tmpfs(areas.work_mb)),
                    ("/tmp".to_owned(), tmpfs(areas.tmp_mb)),
                ])),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                privileged: Some(false),
                network_mode: Some("none".into()),
                init: Some(false),
                log_config: Some(HostConfigLogConfig {
                    typ: Some("json-file".into()),
                    config: Some(HashMap::from([
                        ("max-size".to_owned(), format!("{}m", log_max_mb())),
                        ("max-file".to_owned(), "1".to_owned()),
                    ])),
                }),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        }
    }
}

/// `cola-<job-id>`.
pub fn container_name(job: &JobMessage) -> String {
    format!("cola-{}", job.id)
}

/// The executor's own memory, in MiB, for a job message of `message_bytes`.
pub(super) fn executor_mb(message_bytes: usize) -> u64 {
    EXECUTOR_MEMORY_MB + (INPUT_COPIES * message_bytes as u64).div_ceil(1 << 20)
}

/// The container's memory limit when it starts: the run step's ([`run_memory_bytes`]); for a
/// compiled language, the compile step's until the run step (what the compiler may use, the
/// executor's own, and the two tmpfs mounts it may fill, whose pages count against it).
pub(super) fn memory_bytes(
    lang: &LanguageDef,
    limits: &Limits,
    executor_mb: u64,
    areas: &WorkAreas,
) -> i64 {
    let run = run_memory_bytes(limits, executor_mb);
    if lang.compile.is_none() {
        return run;
    }
    let mb = lang.compile_limits.memory_mb + executor_mb + areas.work_mb + areas.tmp_mb;
    i64::try_from(mb << 20).unwrap_or(i64::MAX).max(run)
}

/// The container's memory limit during the run step: the program's and the executor's own.
/// Whatever the program puts in memory counts against it, shared memory and tmpfs files
/// (`/work`, `/tmp`, `/dev/shm`) included.
pub(super) fn run_memory_bytes(limits: &Limits, executor_mb: u64) -> i64 {
    let mb = limits.memory_mb + executor_mb;
    i64::try_from(mb << 20).unwrap_or(i64::MAX)
}

/// The container's pids limit: the job's processes (or the compiler's, if more) and the
/// executor's. Inside, `RLIMIT_NPROC` cannot be used (it counts the uid across containers).
pub(super) fn pids_limit(lang: &LanguageDef, limits: &Limits) -> i64 {
    let steps = match lang.compile {
        Some(_) => limits.processes.max(lang.compile_limits.processes),
        None => limits.processes,
    };
    i64::try_from(steps + EXECUTOR_TASKS).unwrap_or(i64::MAX)
}

/// The log cap: the largest result frame, plus the json-file driver's overhead (a JSON object
/// of about 100 bytes per 16 KiB line) and room for the executor's own log.
pub(super) fn log_max_mb() -> u64 {
    let frame = frame::max_frame_bytes(frame::MAX_ZIP_BYTES);
    (frame + frame / 64).div_ceil(1 << 20) + 16
}

#[cfg(test)]
mod tests {
    use super::*;
    use cola_wire::{Language, language};

    fn lang(name: &str) -> &'static LanguageDef {
        language(&Language::parse(name).unwrap()).unwrap()
    }

    #[test]
    fn limits_cover_the_steps_the_executor_and_the_work_area() {
        let js = lang("javascript");
        let c = lang("c");
        let limits = js.default_limits;
        // The program's, with its files; no room for the tmpfs mounts beside it.
        assert_eq!(executor_mb(1000), 32 + 1);
        assert_eq!(executor_mb(10 << 20), 32 + 30);
        let areas = WorkAreas {
            work_mb: 100,
            tmp_mb: 60,
        };
        assert_eq!(memory_bytes(js, &limits, 40, &areas), (256 + 40_i64) << 20);
        assert_eq!(run_memory_bytes(&limits, 40), (256 + 40_i64) << 20);
        // Compiling may take more than the program may, until the run step.
        assert_eq!(
            memory_bytes(c, &limits, 40, &areas),
            (2048 + 40 + 160_i64) << 20
        );
        assert_eq!(pids_limit(js, &limits), (64 + EXECUTOR_TASKS) as i64);
        let many = Limits {
            processes: 200,
            ..limits
        };
        assert_eq!(pids_limit(c, &many), (200 + EXECUTOR_TASKS) as i64);
    }

    #[test]
    fn the_log_holds_the_largest_frame() {
        assert!(log_max_mb() << 20 > frame::max_frame_bytes(frame::MAX_ZIP_BYTES));
    }
}
