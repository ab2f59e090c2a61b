//! Fetches Swagger UI (npm `swagger-ui-dist`, the exact version locked in
//! `web/api-docs/package-lock.json`) for the API reference page, `/api/docs`: `npm ci` into the
//! build directory, once per change of the lock, and the files the page needs are built into the
//! binary from there (`src/assets.rs`). Nothing of it is committed; nothing is loaded from a CDN.
//!
//! Needs `npm` (Debian's `npm`; `scripts/setup.sh` installs it) and the npm registry, or npm's
//! cache once it has the package.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

/// The files of `swagger-ui-dist` the page uses.
const FILES: &[&str] = &["swagger-ui-bundle.js", "swagger-ui.css"];

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let source = manifest.join("../web/api-docs");
    let lock = source.join("package-lock.json");
    let package = source.join("package.json");
    for path in [&lock, &package] {
        println!("cargo::rerun-if-changed={}", path.display());
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("api-docs");
    let dist = out.join("node_modules/swagger-ui-dist");
    // Written once an install is complete: the lock it installed.
    let stamp = out.join("installed-lock.json");
    let lock_text = read(&lock);
    let up_to_date = fs::read_to_string(&stamp).is_ok_and(|text| text == lock_text)
        && FILES.iter().all(|file| dist.join(file).is_file());
    if !up_to_date {
        install(&out, &package, &lock);
        fs::write(&stamp, &lock_text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", stamp.display()));
    }
    for file in FILES {
        let path = dist.join(file);
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > 0,
            "{} is missing or empty after npm ci in {}",
            path.display(),
            out.display()
        );
    }
    println!("cargo::rustc-env=COLA_SWAGGER_UI_DIR={}", dist.display());
}

/// `npm ci` of `package.json` and the lock into `out`, without running any package's install
/// scripts (`swagger-ui-dist` depends on `@scarf/scarf`, whose install script reports
/// downloads).
fn install(out: &Path, package: &Path, lock: &Path) {
    if out.exists() {
        fs::remove_dir_all(out).unwrap_or_else(|e| panic!("cannot empty {}: {e}", out.display()));
    }
    fs::create_dir_all(out).unwrap_or_else(|e| panic!("cannot create {}: {e}", out.display()));
    for (from, name) in [(package, "package.json"), (lock, "package-lock.json")] {
        fs::copy(from, out.join(name))
            .unwrap_or_else(|e| panic!("cannot copy {}: {e}", from.display()));
    }
    let status = Command::new("npm")
        .args([
            "ci",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--prefer-offline",
            "--loglevel=error",
        ])
        .current_dir(out)
        .env("SCARF_ANALYTICS", "false")
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "`npm ci` for Swagger UI (web/api-docs) failed in {} ({status}); it needs the npm \
             registry, or npm's cache once it has the package",
            out.display()
        ),
        Err(error) => panic!(
            "cannot run npm ({error}) to fetch Swagger UI for /api/docs: install it with \
             scripts/setup.sh (Debian package npm)"
        ),
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
