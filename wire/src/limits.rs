//! Resource limits of a job: what a request may ask for and what a job runs with.

use serde::{Deserialize, Serialize};

/// The limits a job runs under. Every field is always set and always enforced.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall-clock time of the run step.
    pub wall_time_ms: u64,
    /// CPU time of the run step (all threads).
    pub cpu_time_ms: u64,
    /// Memory the program may allocate.
    pub memory_mb: u64,
    /// Processes and threads the program may have at once.
    pub processes: u64,
    /// Bytes of stdout plus stderr, and the size of any one file written.
    pub output_kb: u64,
    /// What the job may keep on disk: its files in `/work` and `/tmp` together (records made
    /// before this limit existed read as [`DEFAULT_DISK_MB`]).
    #[serde(default = "default_disk_mb")]
    pub disk_mb: u64,
}

/// The disk allowance of a program job when its request asks for none.
pub const DEFAULT_DISK_MB: u64 = 64;

fn default_disk_mb() -> u64 {
    DEFAULT_DISK_MB
}

/// Limits as a request states them: any field may be left out for the language's default.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub wall_time_ms: Option<u64>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub cpu_time_ms: Option<u64>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub memory_mb: Option<u64>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub processes: Option<u64>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub output_kb: Option<u64>,
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub disk_mb: Option<u64>,
}

/// A requested limit that is zero or above the language's maximum (never silently clamped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limits.{field} must be between 1 and {max}, got {got}")]
pub struct LimitError {
    pub field: &'static str,
    pub got: u64,
    pub max: u64,
}

impl LimitsRequest {
    /// The limits to run with: each requested value checked against `max`, defaults elsewhere.
    pub fn resolve(&self, default: &Limits, max: &Limits) -> Result<Limits, LimitError> {
        fn pick(
            field: &'static str,
            want: Option<u64>,
            default: u64,
            max: u64,
        ) -> Result<u64, LimitError> {
            match want {
                None => Ok(default),
                Some(got) if got == 0 || got > max => Err(LimitError { field, got, max }),
                Some(got) => Ok(got),
            }
        }
        Ok(Limits {
            wall_time_ms: pick(
                "wall_time_ms",
                self.wall_time_ms,
                default.wall_time_ms,
                max.wall_time_ms,
            )?,
            cpu_time_ms: pick(
                "cpu_time_ms",
                self.cpu_time_ms,
                default.cpu_time_ms,
                max.cpu_time_ms,
            )?,
            memory_mb: pick(
                "memory_mb",
                self.memory_mb,
                default.memory_mb,
                max.memory_mb,
            )?,
            processes: pick(
                "processes",
                self.processes,
                default.processes,
                max.processes,
            )?,
            output_kb: pick(
                "output_kb",
                self.output_kb,
                default.output_kb,
                max.output_kb,
            )?,
            disk_mb: pick("disk_mb", self.disk_mb, default.disk_mb, max.disk_mb)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: Limits = Limits {
        wall_time_ms: 5_000,
        cpu_time_ms: 5_000,
        memory_mb: 256,
        processes: 32,
        output_kb: 1024,
        disk_mb: 64,
    };
    const MAX: Limits = Limits {
        wall_time_ms: 60_000,
        cpu_time_ms: 60_000,
        memory_mb: 1024,
        processes: 128,
        output_kb: 16_384,
        disk_mb: 1024,
    };

    #[test]
    fn defaults_fill_what_is_not_asked() {
        let req = LimitsRequest {
            memory_mb: Some(512),
            ..Default::default()
        };
        let got = req.resolve(&DEFAULT, &MAX).unwrap();
        assert_eq!(
            got,
            Limits {
                memory_mb: 512,
                ..DEFAULT
            }
        );
    }

    #[test]
    fn over_the_maximum_or_zero_is_rejected_not_clamped() {
        let req = LimitsRequest {
            wall_time_ms: Some(60_001),
            ..Default::default()
        };
        assert_eq!(
            req.resolve(&DEFAULT, &MAX).unwrap_err().field,
            "wall_time_ms"
        );
        let req = LimitsRequest {
            processes: Some(0),
            ..Default::default()
        };
        assert_eq!(req.resolve(&DEFAULT, &MAX).unwrap_err().field, "processes");
        assert!(serde_json::from_str::<LimitsRequest>(r#"{"wall":1}"#).is_err());
        let req = LimitsRequest {
            disk_mb: Some(1025),
            ..Default::default()
        };
        assert_eq!(req.resolve(&DEFAULT, &MAX).unwrap_err().field, "disk_mb");
    }

    #[test]
    fn a_record_from_before_the_disk_limit_reads_with_the_default() {
        let old = r#"{"wall_time_ms":1,"cpu_time_ms":1,"memory_mb":1,"processes":1,"output_kb":1}"#;
        let limits: Limits = serde_json::from_str(old).unwrap();
        assert_eq!(limits.disk_mb, DEFAULT_DISK_MB);
    }
}
