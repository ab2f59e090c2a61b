//! The output zip: `stdout.txt`, `stderr.txt`, `compile.txt` (compiled languages), `result.json`
//! and every regular file the program wrote under `out/`.
//!
//! `out/` is a directory user code wrote, so it is walked with `openat` from directory
//! descriptors, every entry opened with `O_NOFOLLOW`, checked with `fstat`, and taken only if it
//! is a regular file: a symbolic link, a `..` or a FIFO never leads the executor anywhere else.
//! The logs and `out/` itself come in as descriptors the workspace opened the same way
//! ([`crate::workspace::Workspace::open_log`]), never as paths.
//! The zip holds at most `max_bytes` of content; what does not fit is left out (logs are cut)
//! and `result.json` says so. `out/` is emptied as it is walked: what is zipped or left out is
//! removed, so that in a container, where files are memory, the zip takes their place.

use std::{
    fs::File,
    io::{self, Cursor, Read, Write},
    os::{fd::OwnedFd, unix::ffi::OsStrExt},
};

use cola_wire::RunReport;
use nix::{
    dir::{Dir, Type},
    errno::Errno,
    fcntl::{OFlag, openat},
    sys::stat::{Mode, SFlag, fstat},
    unistd::{UnlinkatFlags, unlinkat},
};
use serde::Serialize;
use zip::{CompressionMethod, ZipWriter, write::SimpleFileOptions};

use crate::error::{ExecutorError, IoContext};

/// Directories below `out/` deeper than this are left out.
const MAX_DEPTH: usize = 32;
/// At most this many files of `out/` are zipped.
const MAX_OUT_FILES: usize = 10_000;
/// `result.json` lists at most this many notes, then how many more there were.
const MAX_NOTES: usize = 50;

/// Resources one step used, as `result.json` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StepUsage {
    pub cpu_time_ms: u64,
    pub peak_memory_kb: u64,
}

/// Resources of the compile and run steps (those that ran).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compile: Option<StepUsage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<StepUsage>,
}

impl Usage {
    /// CPU time of the steps that ran, together.
    pub fn cpu_time_ms(&self) -> u64 {
        [self.compile, self.run]
            .iter()
            .flatten()
            .map(|s| s.cpu_time_ms)
            .fold(0, u64::saturating_add)
    }
}

/// What goes into one output zip.
#[derive(Debug, Clone, Copy)]
pub struct ZipContents<'a> {
    pub report: &'a RunReport,
    pub usage: Usage,
    /// Entry name and the file holding it (`stdout.txt`, ...), in this order; an entry
    /// without a file is empty.
    pub logs: &'a [(&'a str, Option<File>)],
    /// The program's `out/` directory, if there is one.
    pub out_dir: Option<&'a OwnedFd>,
    pub max_bytes: u64,
}

/// `result.json`: the report, plus resource usage and notes on what was left out.
#[derive(Serialize)]
struct ResultFile<'a> {
    #[serde(flatten)]
    report: &'a RunReport,
    usage: Usage,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

/// Builds the output zip in memory.
pub fn build_zip(contents: &ZipContents<'_>) -> Result<Vec<u8>, ExecutorError> {
    let mut zip = Packer {
        zip: ZipWriter::new(Cursor::new(Vec::new())),
        budget: contents.max_bytes,
        max_bytes: contents.max_bytes,
        notes: Notes::default(),
        files: 0,
    };
    for (name, file) in contents.logs {
        zip.add_log(name, file.as_ref())?;
    }
    if let Some(out_dir) = contents.out_dir {
        zip.add_out_dir(out_dir)?;
    }
    let result = ResultFile {
        report: contents.report,
        usage: contents.usage,
        notes: zip.notes.into_list(),
    };
    let json = serde_json::to_vec_pretty(&result).expect("a report always serializes");
    zip.zip.start_file("result.json", options())?;
    zip.zip.write_all(&json).context(|| "writing result.json")?;
    Ok(zip.zip.finish()?.into_inner())
}

fn options() -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(1))
        .unix_permissions(0o644)
}

#[derive(Default)]
struct Notes {
    list: Vec<String>,
    dropped: usize,
}

impl Notes {
    fn add(&mut self, note: String) {
        if self.list.len() < MAX_NOTES {
            self.list.push(note);
        } else {
            self.dropped += 1;
        }
    }

    fn into_list(mut self) -> Vec<String> {
        if self.dropped > 0 {
            self.list
                .push(format!("... and {} more entries left out", self.dropped));
        }
        self.list
    }
}

struct Packer {
    zip: ZipWriter<Cursor<Vec<u8>>>,
    /// Content bytes the zip may still take.
    budget: u64,
    max_bytes: u64,
    notes: Notes,
    files: usize,
}

impl Packer {
    /// Adds a log file of the executor's (empty without one), cut to what the budget allows.
    fn add_log(&mut self, name: &str, file: Option<&File>) -> Result<(), ExecutorError> {
        let Some(file) = file else {
            return self.add_file(name, io::empty(), 0);
        };
        let size = file
            .metadata()
            .context(|| format!("reading the log for {name}"))?
            .len();
        let kept = size.min(self.budget);
        if kept < size {
            self.notes.add(format!(
                "{name} was cut to {kept} of {size} bytes: the zip holds at most {} bytes",
                self.max_bytes
            ));
        }
        self.add_file(name, file, kept)
    }

    /// Adds `size` bytes of `file` as entry `name`.
    fn add_file(&mut self, name: &str, file: impl Read, size: u64) -> Result<(), ExecutorError> {
        self.zip.start_file(name, options())?;
        let copied = io::copy(&mut file.take(size), &mut self.zip)
            .context(|| format!("adding {name} to the zip"))?;
        self.budget -= copied.min(self.budget);
        Ok(())
    }

    /// Adds every regular file under `out_dir` as `out/...`.
    fn add_out_dir(&mut self, out_dir: &OwnedFd) -> Result<(), ExecutorError> {
        // A descriptor of its own: reading a directory moves its offset.
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        match Dir::openat(out_dir, ".", flags, Mode::empty()) {
            Ok(dir) => self.add_dir(dir, "out", 0),
            Err(e) => {
                self.notes.add(format!(
                    "out is not a directory the executor can read ({e}): left out"
                ));
                Ok(())
            }
        }
    }

    /// Adds the entries of `dir` (known in the zip as `prefix`), sorted by name, recursively.
    fn add_dir(&mut self, mut dir: Dir, prefix: &str, depth: usize) -> Result<(), ExecutorError> {
        let mut names: Vec<(Vec<u8>, Option<Type>)> = dir
            .iter()
            .filter_map(Result::ok)
            .map(|e| (e.file_name().to_bytes().to_vec(), e.file_type()))
            .filter(|(name, _)| name != b"." && name != b"..")
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, file_type) in names {
            match entry_name(prefix, &name) {
                None => {
                    let shown = String::from_utf8_lossy(&name);
                    self.notes.add(format!(
                        "{prefix}/{shown:?} has a name a zip cannot hold safely: left out"
                    ));
                }
                Some(entry) if file_type == Some(Type::Symlink) => {
                    self.notes
                        .add(format!("{entry} is a symbolic link: left out"));
                }
                Some(entry) => self.add_entry(&dir, &name, &entry, depth)?,
            }
            remove_entry(&dir, &name);
        }
        Ok(())
    }

    /// Opens one directory entry without following links and adds it if it is a regular file
    /// (or descends into it if it is a directory).
    fn add_entry(
        &mut self,
        dir: &Dir,
        name: &[u8],
        entry: &str,
        depth: usize,
    ) -> Result<(), ExecutorError> {
        let flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC
            | OFlag::O_NOCTTY;
        let fd: OwnedFd = match openat(dir, std::ffi::OsStr::from_bytes(name), flags, Mode::empty())
        {
            Ok(fd) => fd,
            Err(Errno::ELOOP) => {
                self.notes
                    .add(format!("{entry} is a symbolic link: left out"));
                return Ok(());
            }
            Err(e) => {
                self.notes
                    .add(format!("{entry} could not be opened ({e}): left out"));
                return Ok(());
            }
        };
        let stat = fstat(&fd).context(|| format!("inspecting {entry}"))?;
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFDIR {
            if depth >= MAX_DEPTH {
                self.notes
                    .add(format!("{entry} is nested too deeply: left out"));
                return Ok(());
            }
            let sub = Dir::from_fd(fd).context(|| format!("reading {entry}"))?;
            return self.add_dir(sub, entry, depth + 1);
        }
        if kind != SFlag::S_IFREG {
            self.notes
                .add(format!("{entry} is not a regular file: left out"));
            return Ok(());
        }
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        if self.files >= MAX_OUT_FILES {
            self.notes.add(format!(
                "{entry}: out holds more than {MAX_OUT_FILES} files: left out"
            ));
        } else if size > self.budget {
            self.notes.add(format!(
                "{entry} ({size} bytes) does not fit in what is left of the zip's size limit ({} bytes): left out",
                self.budget
            ));
        } else {
            self.files += 1;
            self.add_file(entry, File::from(fd), size)?;
        }
        Ok(())
    }
}

/// Removes the entry `name` of `dir` (emptied already if it is a directory) once it is zipped or
/// left out: in a container, files are memory, which the zip needs as it grows. Best effort.
fn remove_entry(dir: &Dir, name: &[u8]) {
    let name = std::ffi::OsStr::from_bytes(name);
    if unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) == Err(Errno::EISDIR) {
        let _ = unlinkat(dir, name, UnlinkatFlags::RemoveDir);
    }
}

/// `prefix/name` as a zip entry, or `None` for a name that is not UTF-8 or that an unzipper
/// could misread as a path (a backslash, a control character).
fn entry_name(prefix: &str, name: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(name).ok()?;
    let safe = !name.is_empty()
        && !name
            .chars()
            .any(|c| c == '\\' || c == '/' || c.is_control());
    safe.then(|| format!("{prefix}/{name}"))
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, os::unix::fs::symlink, path::Path};

    use cola_wire::{Status, Timings, languages};

    use super::*;

    pub(crate) fn unzip(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        (0..archive.len())
            .map(|i| {
                let mut entry = archive.by_index(i).unwrap();
                let mut content = Vec::new();
                entry.read_to_end(&mut content).unwrap();
                (entry.name().to_owned(), content)
            })
            .collect()
    }

    fn report() -> RunReport {
        RunReport {
            status: Status::Succeeded,
            reason: None,
            exit_code: Some(0),
            signal: None,
            timings_ms: Timings {
                compile: Some(20),
                run: Some(3),
                ..Timings::default()
            },
            limits: languages()[0].default_limits,
            message: None,
            stdout: "hello\n".into(),
            stderr: String::new(),
            compile_output: String::new(),
            output_object: None,
        }
    }

    fn zip_dir(root: &Path, max_bytes: u64) -> BTreeMap<String, Vec<u8>> {
        let stdout = root.join("stdout");
        std::fs::write(&stdout, "hello\n").unwrap();
        let logs = [("stdout.txt", Some(File::open(&stdout).unwrap()))];
        let out_dir: OwnedFd = File::open(root.join("work/out")).unwrap().into();
        let contents = ZipContents {
            report: &report(),
            usage: Usage::default(),
            logs: &logs,
            out_dir: Some(&out_dir),
            max_bytes,
        };
        unzip(&build_zip(&contents).unwrap())
    }

    fn notes(files: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
        let result: serde_json::Value = serde_json::from_slice(&files["result.json"]).unwrap();
        result["notes"]
            .as_array()
            .map(|n| n.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn regular_files_are_zipped_recursively_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("work/out");
        std::fs::create_dir_all(out.join("sub/deeper")).unwrap();
        std::fs::write(out.join("a.txt"), "A").unwrap();
        std::fs::write(out.join("sub/deeper/b.csv"), "1,2").unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "host file").unwrap();
        symlink(&secret, out.join("link.txt")).unwrap();
        symlink(dir.path(), out.join("linkdir")).unwrap();
        symlink("../..", out.join("sub/up")).unwrap();
        nix::unistd::mkfifo(&out.join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();

        let files = zip_dir(dir.path(), 1 << 20);
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "out/a.txt",
                "out/sub/deeper/b.csv",
                "result.json",
                "stdout.txt"
            ]
        );
        assert_eq!(files["out/sub/deeper/b.csv"], b"1,2");
        assert!(files.values().all(|c| c != b"host file"));
        let notes = notes(&files);
        for expected in [
            "out/link.txt is a symbolic link",
            "out/linkdir is a symbolic link",
            "out/sub/up is a symbolic link",
            "out/fifo is not a regular file",
        ] {
            assert!(
                notes.iter().any(|n| n.starts_with(expected)),
                "{expected:?} not in {notes:?}"
            );
        }
        assert_eq!(
            std::fs::read_dir(&out).unwrap().count(),
            0,
            "out/ is emptied as it is zipped"
        );
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "host file");
        let result: serde_json::Value = serde_json::from_slice(&files["result.json"]).unwrap();
        assert_eq!(result["status"], "succeeded");
        assert_eq!(result["timings_ms"]["compile"], 20);
        assert_eq!(result["limits"]["memory_mb"], 256);
        assert!(
            result.get("stdout").is_none(),
            "previews stay out of result.json"
        );
    }

    #[test]
    fn files_beyond_the_size_cap_are_left_out_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("work/out");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("a.bin"), vec![1u8; 60]).unwrap();
        std::fs::write(out.join("b.bin"), vec![2u8; 60]).unwrap();
        std::fs::write(out.join("c.bin"), vec![3u8; 10]).unwrap();
        // 6 bytes of stdout + 60 + 10 fit in 100; b.bin does not.
        let files = zip_dir(dir.path(), 100);
        assert!(files.contains_key("out/a.bin") && files.contains_key("out/c.bin"));
        assert!(!files.contains_key("out/b.bin"));
        assert!(notes(&files)[0].starts_with("out/b.bin (60 bytes) does not fit"));

        let files = zip_dir(dir.path(), 4);
        assert_eq!(files["stdout.txt"], b"hell");
        assert!(notes(&files)[0].starts_with("stdout.txt was cut to 4 of 6 bytes"));
    }

    #[test]
    fn names_an_unzipper_could_misread_are_left_out() {
        assert_eq!(entry_name("out", b"a.txt").as_deref(), Some("out/a.txt"));
        assert_eq!(entry_name("out", b"..\\..\\x"), None);
        assert_eq!(entry_name("out", b"a\nb"), None);
        assert_eq!(entry_name("out", b"\xff"), None);
    }
}
