//! The sizes of a job's work areas in the container backends: `/work` and `/tmp`, a tmpfs
//! each in a Docker container, a size-limited `emptyDir` each in a Pod. Both are sized from
//! the job's own disk allowance, so a job that fills one has used up its allowance: the
//! executor reports that `output_limit` (a full tmpfs), the kubelet by evicting the Pod.

use cola_wire::{LanguageDef, Limits};

/// The sizes of a job's two work areas, in MiB. The job's files may fill its disk allowance
/// (`disk_mb`) in each: `/work` also holds the executor's logs (the steps' output, capped, and
/// the standard input), `/tmp` nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkAreas {
    pub work_mb: u64,
    pub tmp_mb: u64,
}

impl WorkAreas {
    /// The work areas of a `lang` job with `limits`, whose message is `message_bytes` long.
    pub fn of(lang: &LanguageDef, limits: &Limits, message_bytes: usize) -> Self {
        let compile_output_kb = lang.compile.map_or(0, |_| lang.compile_limits.output_kb);
        let logs = (compile_output_kb + limits.output_kb) * 1024 + message_bytes as u64;
        Self {
            work_mb: limits.disk_mb + logs.div_ceil(1 << 20) + 1,
            tmp_mb: limits.disk_mb.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cola_wire::{Language, language};

    fn lang(name: &str) -> &'static LanguageDef {
        language(&Language::parse(name).unwrap()).unwrap()
    }

    #[test]
    fn the_work_areas_hold_the_job_s_disk_allowance_and_the_logs() {
        let c = lang("c");
        let limits = Limits {
            disk_mb: 64,
            output_kb: 2048,
            ..c.default_limits
        };
        // 64 MB of files in each; /work also holds 1 MiB of compiler output, 2 MiB of the
        // program's and the standard input (within the 10 KB message).
        let areas = WorkAreas::of(c, &limits, 10_000);
        assert_eq!(
            areas,
            WorkAreas {
                work_mb: 64 + 4 + 1,
                tmp_mb: 64
            }
        );
        let js = WorkAreas::of(lang("javascript"), &limits, 10_000);
        assert_eq!(js.work_mb, 64 + 3 + 1);
    }
}
