//! Shared by the integration tests: jobs with small limits, run with `execute` against the real
//! bubblewrap, and their zips unpacked.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    io::{Cursor, Read},
    path::PathBuf,
    sync::OnceLock,
};

use cola_executors::{Execution, SandboxConfig};
use cola_wire::{
    InputFile, Inputs, JobId, JobMessage, Language, LanguageDef, Limits, Reason, RunReport, Status,
    UserId, language,
};

/// Small limits so that limit tests end quickly.
pub const TEST_LIMITS: Limits = Limits {
    wall_time_ms: 4_000,
    cpu_time_ms: 2_000,
    memory_mb: 128,
    processes: 32,
    output_kb: 256,
    disk_mb: 64,
};

/// A warm Go build cache, prepared once per test binary (kept across runs in cargo's tmp dir).
pub fn go_cache() -> PathBuf {
    static CACHE: OnceLock<PathBuf> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("go-cache");
            cola_executors::prepare_go_cache(&dir).expect("prepare the Go cache");
            dir
        })
        .clone()
}

pub fn sandbox_config() -> SandboxConfig {
    SandboxConfig {
        init: PathBuf::from(env!("CARGO_BIN_EXE_cola-sandbox-init")),
        ..SandboxConfig::default()
    }
}

/// A job to run.
#[derive(Debug, Clone)]
pub struct TestJob {
    pub lang: &'static LanguageDef,
    pub message: JobMessage,
    pub inputs: Inputs,
    pub config: SandboxConfig,
}

impl TestJob {
    pub fn new(lang: &str, files: &[(&str, &str)]) -> Self {
        let lang = language(&Language::parse(lang).unwrap()).unwrap();
        let config = SandboxConfig {
            go_cache: (lang.name == "go").then(go_cache),
            ..sandbox_config()
        };
        Self {
            lang,
            message: JobMessage {
                schedule: None,
                request_id: None,
                id: JobId::new(),
                user: UserId::parse("tester").unwrap(),
                language: lang.id(),
                args: Vec::new(),
                limits: TEST_LIMITS,
                created_at: cola_wire::job::now(),
                work: cola_wire::Work::Inputs(Default::default()),
            },
            inputs: Inputs {
                files: files
                    .iter()
                    .map(|(name, content)| InputFile {
                        name: (*name).into(),
                        content: (*content).into(),
                    })
                    .collect(),
                stdin: String::new(),
            },
            config,
        }
    }

    /// A job of one file, the language's usual source file.
    pub fn source(lang: &str, source: &str) -> Self {
        let file = language(&Language::parse(lang).unwrap())
            .unwrap()
            .source_file;
        Self::new(lang, &[(file, source)])
    }

    pub fn stdin(mut self, stdin: &str) -> Self {
        self.inputs.stdin = stdin.into();
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.message.args = args.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    pub fn limits(mut self, change: impl FnOnce(&mut Limits)) -> Self {
        change(&mut self.message.limits);
        self
    }

    /// Runs the job with `execute` in a fresh job directory.
    pub async fn execute(&self) -> Done {
        let dir = tempfile::tempdir().unwrap();
        self.execute_in(dir.path().to_owned()).await
    }

    pub async fn execute_in(&self, job_dir: PathBuf) -> Done {
        let execution = cola_executors::execute(
            self.lang,
            &self.message,
            &self.inputs,
            &job_dir,
            &self.config,
        )
        .await
        .expect("execute");
        let leftovers: Vec<_> = std::fs::read_dir(&job_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(leftovers.is_empty(), "the job left {leftovers:?} behind");
        Done::from(execution)
    }
}

/// The entries of a zip, by name.
pub struct ZipFiles(pub BTreeMap<String, Vec<u8>>);

impl std::ops::Deref for ZipFiles {
    type Target = BTreeMap<String, Vec<u8>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::fmt::Debug for ZipFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(name, bytes)| {
                (
                    name,
                    String::from_utf8_lossy(&bytes[..bytes.len().min(2000)]),
                )
            }))
            .finish()
    }
}

impl ZipFiles {
    pub fn entry(&self, name: &str) -> String {
        let bytes = self
            .0
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in the zip: {:?}", self.0.keys()));
        String::from_utf8_lossy(bytes).into_owned()
    }

    pub fn names(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }

    pub fn result(&self) -> serde_json::Value {
        serde_json::from_str(&self.entry("result.json")).unwrap()
    }
}

/// A finished job: its report and its zip, unpacked.
#[derive(Debug)]
pub struct Done {
    pub report: RunReport,
    pub zip: ZipFiles,
}

impl std::ops::Deref for Done {
    type Target = ZipFiles;
    fn deref(&self) -> &ZipFiles {
        &self.zip
    }
}

impl From<Execution> for Done {
    fn from(execution: Execution) -> Self {
        Self {
            report: execution.report,
            zip: unzip(&execution.zip),
        }
    }
}

impl Done {
    #[track_caller]
    pub fn assert_succeeded(&self) {
        assert_eq!(
            (self.report.status, self.report.reason),
            (Status::Succeeded, None),
            "{self:#?}"
        );
    }

    #[track_caller]
    pub fn assert_failed(&self, reason: Reason) {
        assert_eq!(
            (self.report.status, self.report.reason),
            (Status::Failed, Some(reason)),
            "{self:#?}"
        );
    }
}

pub fn unzip(bytes: &[u8]) -> ZipFiles {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    ZipFiles(
        (0..archive.len())
            .map(|i| {
                let mut entry = archive.by_index(i).unwrap();
                let mut content = Vec::new();
                entry.read_to_end(&mut content).unwrap();
                (entry.name().to_owned(), content)
            })
            .collect(),
    )
}
