//! What the runner's tests share: a C job with the language's default limits, its inputs, and a
//! sandbox configuration with the executors' own init.

use cola_wire::{InputFile, Inputs, JobMessage, languages};

use crate::sandbox::SandboxConfig;

/// A C job with the language's default limits.
pub(super) fn c_job() -> JobMessage {
    let c = &languages()[0];
    JobMessage {
        schedule: None,
        request_id: None,
        id: cola_wire::JobId::new(),
        user: cola_wire::UserId::parse("tester").unwrap(),
        language: c.id(),
        args: Vec::new(),
        limits: c.default_limits,
        created_at: cola_wire::job::now(),
        work: cola_wire::Work::Inputs(Default::default()),
    }
}

/// Inputs of a C job: `source` as its source file, no standard input.
pub(super) fn c_inputs(source: &str) -> Inputs {
    Inputs {
        files: vec![InputFile {
            name: languages()[0].source_file.into(),
            content: source.into(),
        }],
        stdin: String::new(),
    }
}

/// Sandboxes run as root need an init: the executors' own, built beside this test binary.
pub(super) fn test_config() -> SandboxConfig {
    SandboxConfig {
        init: crate::sandbox::init::standalone().unwrap(),
        ..SandboxConfig::default()
    }
}
