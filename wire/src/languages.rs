//! The language table. Languages are data: adding one is one entry here plus a toolchain
//! (an image, for the container backends).
//!
//! Commands are argument vectors run inside the sandbox with the job's directory as the working
//! directory; `{sources}` expands to the job's files with one of `source_extensions`.
//!
//! A language's [`Runtime`] says how its jobs run: a [`Runtime::Program`] is files compiled and
//! run by an executor in a sandbox, with the commands of its entry; the [`Runtime::Numeric`]
//! (`numeric`) is cola's own numeric-methods library, which the middleware runs in-process on
//! the job's `problem`: such an entry has no files, commands, toolchain or image (those fields
//! are empty and unused).

use crate::{Language, Limits, limits::DEFAULT_DISK_MB};

/// How the jobs of a language run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runtime {
    /// Source files, compiled (maybe) and run by an executor in a sandbox.
    Program,
    /// Numeric methods, built into cola: the job states a `problem` (no files, no compiler, no
    /// process) that the middleware solves in-process with the numeric-methods library.
    Numeric,
}

impl Runtime {
    /// `program` or `numeric`, as the API shows it (`GET /api/v1/languages`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Program => "program",
            Self::Numeric => "numeric",
        }
    }
}

/// Everything cola needs to know to accept, compile and run programs in one language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LanguageDef {
    /// The name in the API and in the subject `cola.<name>`.
    pub name: &'static str,
    /// The name shown to people.
    pub title: &'static str,
    /// How its jobs run; the numeric runtime leaves the program fields below empty.
    pub runtime: Runtime,
    /// The file that the `source` shorthand of the API fills in.
    pub source_file: &'static str,
    /// Extensions of the files handed to the compiler as `{sources}`.
    pub source_extensions: &'static [&'static str],
    /// Extensions any file of the job may have (sources, headers, data).
    pub allowed_extensions: &'static [&'static str],
    /// The compile step, if the language has one.
    pub compile: Option<&'static [&'static str]>,
    /// The run step.
    pub run: &'static [&'static str],
    /// A command that prints the toolchain's version.
    pub version: &'static [&'static str],
    /// Environment of both steps, on top of a minimal `PATH`, `HOME` and `LANG`.
    pub env: &'static [(&'static str, &'static str)],
    /// Host directories its toolchain needs beyond [`SYSTEM_DIRS`], read-only in the
    /// sandbox; a path ending in `*` stands for every directory whose path starts with the rest.
    pub toolchain_dirs: &'static [&'static str],
    /// The executor image used by the container backends.
    pub image: &'static str,
    /// Limits of the run step when a request asks for none.
    pub default_limits: Limits,
    /// The most a request may ask for.
    pub max_limits: Limits,
    /// Limits of the compile step (not up to the request).
    pub compile_limits: Limits,
}

/// What the sandbox of every program shows of the host, read-only: the system's commands,
/// shared libraries and headers (with the merged-usr links `/bin`, `/lib`, ...). Nothing else of
/// `/usr`: not `/usr/local` (a host's own programs and settings), `/usr/share`, `/usr/etc`,
/// `/usr/src`.
pub const SYSTEM_DIRS: [&str; 5] = [
    "/usr/bin",
    "/usr/lib",
    "/usr/lib64",
    "/usr/libexec",
    "/usr/include",
];

const DEFAULT_LIMITS: Limits = Limits {
    wall_time_ms: 5_000,
    cpu_time_ms: 5_000,
    memory_mb: 256,
    processes: 64,
    output_kb: 1_024,
    disk_mb: DEFAULT_DISK_MB,
};
const MAX_LIMITS: Limits = Limits {
    wall_time_ms: 60_000,
    cpu_time_ms: 60_000,
    memory_mb: 2_048,
    processes: 256,
    output_kb: 16_384,
    disk_mb: 1_024,
};
const COMPILE_LIMITS: Limits = Limits {
    wall_time_ms: 30_000,
    cpu_time_ms: 30_000,
    memory_mb: 2_048,
    processes: 64,
    output_kb: 1_024,
    // The compiler writes into the job's own allowance: this is not used.
    disk_mb: DEFAULT_DISK_MB,
};

/// Limits of a numeric job: `wall_time_ms` (and `cpu_time_ms`, the same on one thread) is its
/// time budget; the library bounds its own memory and output sizes, recorded here as they are.
/// It writes no files: its disk allowance is none (and no request may ask for one).
const NUMERIC_DEFAULT_LIMITS: Limits = Limits {
    wall_time_ms: 5_000,
    cpu_time_ms: 5_000,
    memory_mb: 256,
    processes: 1,
    output_kb: 16_384,
    disk_mb: 0,
};
const NUMERIC_MAX_LIMITS: Limits = Limits {
    wall_time_ms: 30_000,
    cpu_time_ms: 30_000,
    ..NUMERIC_DEFAULT_LIMITS
};

static LANGUAGES: [LanguageDef; 4] = [
    LanguageDef {
        name: "c",
        title: "C (gcc, C17)",
        runtime: Runtime::Program,
        source_file: "main.c",
        source_extensions: &["c"],
        allowed_extensions: &["c", "h", "txt", "csv", "json", "dat", "in", "md"],
        compile: Some(&["gcc", "-O2", "-std=c17", "-o", "main", "{sources}", "-lm"]),
        run: &["./main"],
        version: &["gcc", "-dumpfullversion"],
        env: &[],
        toolchain_dirs: &[],
        image: "cola-executor-c",
        default_limits: DEFAULT_LIMITS,
        max_limits: MAX_LIMITS,
        compile_limits: COMPILE_LIMITS,
    },
    LanguageDef {
        name: "go",
        title: "Go",
        runtime: Runtime::Program,
        source_file: "main.go",
        source_extensions: &["go"],
        allowed_extensions: &["go", "txt", "csv", "json", "dat", "in", "md"],
        compile: Some(&["go", "build", "-o", "main", "{sources}"]),
        run: &["./main"],
        version: &["go", "env", "GOVERSION"],
        env: &[
            ("GO111MODULE", "off"),
            ("CGO_ENABLED", "0"),
            ("GOPATH", "/tmp/gopath"),
            ("GOTOOLCHAIN", "local"),
        ],
        // Debian's GOROOT (/usr/lib/go-<version>) links its sources there.
        toolchain_dirs: &["/usr/share/go-*"],
        image: "cola-executor-go",
        default_limits: DEFAULT_LIMITS,
        max_limits: MAX_LIMITS,
        compile_limits: COMPILE_LIMITS,
    },
    LanguageDef {
        name: "javascript",
        title: "JavaScript (Node.js)",
        runtime: Runtime::Program,
        source_file: "main.js",
        source_extensions: &["js", "mjs"],
        allowed_extensions: &["js", "mjs", "txt", "csv", "json", "dat", "in", "md"],
        compile: None,
        run: &["node", "main.js"],
        version: &["node", "--version"],
        env: &[],
        toolchain_dirs: &[],
        image: "cola-executor-javascript",
        default_limits: DEFAULT_LIMITS,
        max_limits: MAX_LIMITS,
        compile_limits: COMPILE_LIMITS,
    },
    LanguageDef {
        name: "numeric",
        title: "Numeric methods (built in)",
        runtime: Runtime::Numeric,
        source_file: "",
        source_extensions: &[],
        allowed_extensions: &[],
        compile: None,
        run: &[],
        version: &[],
        env: &[],
        toolchain_dirs: &[],
        image: "",
        default_limits: NUMERIC_DEFAULT_LIMITS,
        max_limits: NUMERIC_MAX_LIMITS,
        compile_limits: NUMERIC_DEFAULT_LIMITS,
    },
];

/// Every language cola runs.
pub fn languages() -> &'static [LanguageDef] {
    &LANGUAGES
}

/// The definition of `name`, if cola runs it.
pub fn language(name: &Language) -> Option<&'static LanguageDef> {
    LANGUAGES.iter().find(|l| l.name == name.as_str())
}

/// Why a file name is not acceptable for a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileNameError {
    #[error("file name must be 1 to 100 characters from A-Z a-z 0-9 . _ - (no directories)")]
    Unsafe,
    #[error("file name must not start with '-' (a compiler would take it for an option)")]
    LeadingDash,
    #[error("files of this language must end in one of: {0}")]
    Extension(String),
}

impl LanguageDef {
    /// The language's name as a [`Language`].
    pub fn id(&self) -> Language {
        Language::parse(self.name).expect("the table holds valid names")
    }

    /// Whether jobs of this language state a problem for the numeric runtime (no files).
    pub fn is_numeric(&self) -> bool {
        self.runtime == Runtime::Numeric
    }

    /// Checks a job file name: a plain name (no path, no `..`, no hidden file) with an allowed
    /// extension, not starting with `-` (names reach compiler command lines as `{sources}`).
    pub fn check_file_name(&self, name: &str) -> Result<(), FileNameError> {
        if name.starts_with('-') {
            return Err(FileNameError::LeadingDash);
        }
        let plain = !name.is_empty()
            && name.len() <= 100
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !plain {
            return Err(FileNameError::Unsafe);
        }
        let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        if self.allowed_extensions.contains(&ext) {
            Ok(())
        } else {
            Err(FileNameError::Extension(self.allowed_extensions.join(", ")))
        }
    }

    /// Whether a file of this name is handed to the compiler.
    pub fn is_source(&self, name: &str) -> bool {
        name.rsplit_once('.')
            .is_some_and(|(_, e)| self.source_extensions.contains(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA_EXTENSIONS: [&str; 6] = ["txt", "csv", "json", "dat", "in", "md"];

    #[test]
    fn the_table_is_consistent() {
        for l in languages() {
            assert_eq!(language(&l.id()).unwrap().name, l.name);
            assert!(l.default_limits.wall_time_ms <= l.max_limits.wall_time_ms);
            if l.is_numeric() {
                // No files, no commands, no toolchain, no image.
                assert!(l.source_file.is_empty() && l.allowed_extensions.is_empty());
                assert!(l.compile.is_none() && l.run.is_empty() && l.version.is_empty());
                assert!(l.image.is_empty());
                continue;
            }
            l.check_file_name(l.source_file).unwrap();
            assert!(l.is_source(l.source_file));
            assert!(
                l.allowed_extensions
                    .iter()
                    .all(|e| l.source_extensions.contains(e)
                        || DATA_EXTENSIONS.contains(e)
                        || *e == "h")
            );
        }
        assert!(language(&Language::parse("cobol").unwrap()).is_none());
        let numeric = language(&Language::parse("numeric").unwrap()).unwrap();
        assert_eq!(numeric.runtime, Runtime::Numeric);
        let user = crate::UserId::parse("ada").unwrap();
        assert_eq!(
            crate::names::job_subject(&numeric.id(), &user),
            "cola.numeric.ada"
        );
        assert_eq!(
            languages().iter().filter(|l| l.is_numeric()).count(),
            1,
            "one numeric runtime"
        );
    }

    #[test]
    fn unsafe_file_names_are_rejected() {
        let c = language(&Language::parse("c").unwrap()).unwrap();
        for bad in [
            "",
            "/etc/passwd",
            "../main.c",
            "a/b.c",
            ".hidden.c",
            "main.c\0",
            "ma in.c",
        ] {
            assert_eq!(
                c.check_file_name(bad),
                Err(FileNameError::Unsafe),
                "{bad:?}"
            );
        }
        // Compilers take such names for options (`gcc ... -o.c` writes the binary to `.c`).
        let go = language(&Language::parse("go").unwrap()).unwrap();
        for (lang, bad) in [(c, "-o.c"), (c, "-E.c"), (c, "--help.h"), (go, "-n.go")] {
            assert_eq!(
                lang.check_file_name(bad),
                Err(FileNameError::LeadingDash),
                "{bad:?}"
            );
        }
        assert!(c.check_file_name("a-o.c").is_ok());
        assert!(matches!(
            c.check_file_name("main.py"),
            Err(FileNameError::Extension(_))
        ));
        assert!(c.check_file_name("data.csv").is_ok() && !c.is_source("data.csv"));
    }
}
