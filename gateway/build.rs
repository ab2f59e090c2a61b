//! Fetches Swagger UI (npm `swagger-ui-dist`, the exact version locked in
//! `web/api-docs/package-lock.json`) for the API reference page, `/api/docs`: `npm ci` into the
//! build directory, once per change of the lock, and the files the page needs are built into the
//! binary from there (`src/assets.rs`). Nothing of it is committed; nothing is loaded from a CDN.
//!
//! The site's Content-Security-Policy allows images from the site only (`img-src 'self'`), and
//! Swagger UI's stylesheet has its icons inline as `data:` URLs: each becomes a file of its own
//! (`/static/swagger-ui-img-<hash>.<ext>`, listed in the generated `images.rs`) and the
//! stylesheet points there instead.
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
    let built = out.join("built");
    if built.exists() {
        fs::remove_dir_all(&built).expect("empty the built files");
    }
    fs::create_dir_all(&built).expect("create the built files' directory");
    fs::copy(
        dist.join("swagger-ui-bundle.js"),
        built.join("swagger-ui-bundle.js"),
    )
    .expect("copy swagger-ui-bundle.js");
    let (css, images) = images_out_of(&read(&dist.join("swagger-ui.css")));
    fs::write(built.join("swagger-ui.css"), css).expect("write swagger-ui.css");
    let mut table = String::from(
        "/// Swagger UI's images, out of its stylesheet: (file name, content type, bytes).\n\
         pub const SWAGGER_UI_IMAGES: &[(&str, &str, &[u8])] = &[\n",
    );
    for (name, content_type, bytes) in images {
        let path = built.join(&name);
        fs::write(&path, bytes).expect("write an image");
        table.push_str(&format!(
            "    ({name:?}, {content_type:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    table.push_str("];\n");
    fs::write(built.join("images.rs"), table).expect("write images.rs");
    println!("cargo::rustc-env=COLA_SWAGGER_UI_DIR={}", built.display());
}

/// An image taken out of the stylesheet: its file name, content type and bytes.
type Image = (String, &'static str, Vec<u8>);

/// The stylesheet with every `url(data:...)` replaced by `url(/static/<name>)`, and those
/// images.
fn images_out_of(css: &str) -> (String, Vec<Image>) {
    let mut rewritten = String::with_capacity(css.len());
    let mut images: Vec<Image> = Vec::new();
    let mut rest = css;
    while let Some(at) = rest.find("url(") {
        rewritten.push_str(&rest[..at + 4]);
        rest = &rest[at + 4..];
        let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'');
        let (raw, after) = match quote {
            Some(q) => {
                let body = &rest[1..];
                let mut end = None;
                let mut escaped = false;
                for (i, c) in body.char_indices() {
                    match c {
                        '\\' if !escaped => escaped = true,
                        c if c == q && !escaped => {
                            end = Some(i);
                            break;
                        }
                        _ => escaped = false,
                    }
                }
                let end = end.expect("a quoted url() ends");
                (css_unescape(&body[..end]), &body[end + 1..])
            }
            None => {
                let end = rest.find(')').expect("an url() ends");
                (rest[..end].trim().to_owned(), &rest[end..])
            }
        };
        let Some(data) = raw.strip_prefix("data:") else {
            rewritten.push_str(&rest[..rest.len() - after.len()]);
            rest = after;
            continue;
        };
        let (header, payload) = data.split_once(',').expect("a data: URL has a comma");
        let (content_type, extension) = match header.split(';').next().unwrap() {
            "image/svg+xml" => ("image/svg+xml", "svg"),
            "image/png" => ("image/png", "png"),
            "image/jpeg" => ("image/jpeg", "jpg"),
            other => panic!("swagger-ui.css has a data: URL of an unexpected type {other}"),
        };
        let bytes = if header.ends_with(";base64") {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(payload)
                .expect("valid base64 in a data: URL")
        } else {
            percent_encoding::percent_decode_str(payload).collect()
        };
        let name = format!("swagger-ui-img-{:016x}.{extension}", fnv1a(&bytes));
        rewritten.push_str(&format!("\"/static/{name}\""));
        if !images.iter().any(|(n, _, _)| *n == name) {
            images.push((name, content_type, bytes));
        }
        rest = after;
    }
    rewritten.push_str(rest);
    (rewritten, images)
}

/// A CSS string's escapes undone (`\"` → `"`); enough for the data URLs of swagger-ui.css.
fn css_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                assert!(
                    !next.is_ascii_hexdigit(),
                    "a hex escape in swagger-ui.css's data URLs"
                );
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A 64-bit FNV-1a hash, for file names that change with their content.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
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
