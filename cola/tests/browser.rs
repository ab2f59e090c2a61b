//! The web app in a real browser: Debian's Chromium driven through chromedriver (WebDriver),
//! against the whole stack (gateway, real middleware, real bubblewrap) and a real OpenID
//! provider on localhost (npm `oidc-provider`, `web/tests/oidc`) standing in for Google.
//!
//! Needs `scripts/setup-web.sh` (chromium, chromium-driver, `npm ci` of the provider). Set
//! `COLA_SKIP_BROWSER_TESTS=1` to skip it where no browser can be installed. Screenshots land
//! in `target/test-artifacts/` (or `$COLA_TEST_ARTIFACTS`).

mod common;

use std::{
    io::{BufRead as _, BufReader, Read as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use cola_gateway::{OidcConfig, Secret};
use common::Stack;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const CLIENT_ID: &str = "cola-browser-test";
const CLIENT_SECRET: &str = "browser-test-secret-not-used-anywhere-else";
const TAB: &str = "\u{E004}";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn artifacts() -> PathBuf {
    let dir = std::env::var_os("COLA_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/test-artifacts"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    cola_testkit::free_port().unwrap()
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited at start: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Where the test provider puts a person's e-mail address and name (`OIDC_CLAIMS_IN`).
#[derive(Clone, Copy)]
enum ClaimsIn {
    /// In the ID token too, as Google does.
    IdToken,
    /// From the UserInfo endpoint only, as the specification says and oidc-provider does by
    /// default.
    UserInfo,
}

/// The test OpenID provider on `port`, sending people back to `redirect_uri`.
fn start_provider(port: u16, redirect_uri: &str, claims_in: ClaimsIn) -> Guard {
    let dir = workspace().join("web/tests/oidc");
    assert!(
        dir.join("node_modules/oidc-provider").exists(),
        "the test OpenID provider is not installed: run scripts/setup-web.sh"
    );
    let mut child = Command::new("node")
        .arg("server.mjs")
        .current_dir(&dir)
        .env("OIDC_PORT", port.to_string())
        .env("OIDC_CLIENT_ID", CLIENT_ID)
        .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
        .env("OIDC_REDIRECT_URI", redirect_uri)
        .env(
            "OIDC_CLAIMS_IN",
            match claims_in {
                ClaimsIn::IdToken => "id_token",
                ClaimsIn::UserInfo => "userinfo",
            },
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs web/tests/oidc/server.mjs");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("ready "), "the provider said {first:?}");
    // Keep reading what it says (a closed pipe would kill it), into the test's output.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().chain(stderr.lines()).map_while(Result::ok) {
            eprintln!("oidc-provider: {line}");
        }
    });
    wait_for_port(port, "the OpenID provider", &mut child);
    Guard(child)
}

fn start_chromedriver(port: u16) -> Guard {
    let mut child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian chromium-driver): run scripts/setup-web.sh");
    wait_for_port(port, "chromedriver", &mut child);
    Guard(child)
}

/// A fresh headless Chromium with its own profile and download directory.
async fn browser(driver: u16, profile: &Path, downloads: &Path) -> Client {
    browser_with(driver, profile, downloads, &[]).await
}

/// [`browser`] with more Chromium flags.
async fn browser_with(driver: u16, profile: &Path, downloads: &Path, extra: &[&str]) -> Client {
    let mut args = vec![
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
    ];
    let profile = format!("--user-data-dir={}", profile.display());
    args.push(&profile);
    args.extend_from_slice(extra);
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": args,
            "prefs": {
                "download.default_directory": downloads.display().to_string(),
                "download.prompt_for_download": false,
                "download.directory_upgrade": true,
            },
        },
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{driver}"))
        .await
        .expect("a WebDriver session with Chromium")
}

/// Clicks the element `click`, then waits for the element `appears`.
async fn click_then_wait(client: &Client, click: &str, appears: &str) {
    client
        .find(Locator::Css(click))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Css(appears))
        .await
        .unwrap();
}

async fn text_of(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn path_of(client: &Client) -> String {
    let url = client.current_url().await.unwrap();
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

/// Logs in through the test provider as `name`; lands on the job list.
async fn log_in(client: &Client, base: &str, name: &str) {
    client.goto(&format!("{base}/")).await.unwrap();
    assert!(
        path_of(client).await.starts_with("/login"),
        "{}",
        path_of(client).await
    );
    client
        .find(Locator::Css("#login-oidc"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let login = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#login"))
        .await
        .unwrap();
    login.send_keys(name).await.unwrap();
    client
        .find(Locator::Css("#sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    if let Err(error) = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#new-job"))
        .await
    {
        screenshot(client, &format!("login-failed-{name}.png")).await;
        panic!(
            "{name} did not land on the job list ({error}): at {}\n{}",
            client.current_url().await.unwrap(),
            client.source().await.unwrap()
        );
    }
    assert_eq!(client.current_url().await.unwrap().port(), url_port(base));
    let who = text_of(client, ".who").await;
    assert!(who.contains(&format!("{name}@example.edu")), "{who}");
}

/// What every browser test stands on: a stack whose gateway logs in with the test OpenID
/// provider, that provider, chromedriver, and a scratch directory for browser profiles.
/// `None` when `COLA_SKIP_BROWSER_TESTS` is set.
struct Stage {
    stack: Stack,
    /// The gateway's public URL on loopback: `http://localhost:<port>`.
    base: String,
    /// The test OpenID provider's issuer URL.
    issuer: String,
    driver_port: u16,
    scratch: tempfile::TempDir,
    _provider: Guard,
    _driver: Guard,
}

impl Stage {
    async fn start() -> Option<Self> {
        Self::start_with(ClaimsIn::IdToken).await
    }

    /// The stage with the provider putting e-mail addresses where `claims_in` says.
    async fn start_with(claims_in: ClaimsIn) -> Option<Self> {
        if std::env::var_os("COLA_SKIP_BROWSER_TESTS").is_some() {
            eprintln!("COLA_SKIP_BROWSER_TESTS is set: skipping the browser test");
            return None;
        }
        let provider_port = free_port();
        let issuer = format!("http://localhost:{provider_port}");
        let stack = Stack::start_with_gateway(|config| {
            config.oidc = Some(OidcConfig {
                issuer: issuer.clone(),
                client_id: CLIENT_ID.into(),
                client_secret: Secret::new(CLIENT_SECRET),
                allowed_domains: vec!["example.edu".into()],
                allowed_emails: vec![],
            });
        })
        .await;
        let base = format!("http://localhost:{}", url_port(&stack.url).unwrap());
        let redirect_uri = format!("{base}/auth/callback");
        let provider = start_provider(provider_port, &redirect_uri, claims_in);
        let driver_port = free_port();
        let driver = start_chromedriver(driver_port);
        Some(Self {
            stack,
            base,
            issuer,
            driver_port,
            scratch: tempfile::tempdir().unwrap(),
            _provider: provider,
            _driver: driver,
        })
    }
}

fn url_port(base: &str) -> Option<u16> {
    base.rsplit(':').next().and_then(|p| p.parse().ok())
}

async fn screenshot(client: &Client, name: &str) {
    client.execute("window.scrollTo(0, 0);", vec![]).await.ok();
    let png = client.screenshot().await.unwrap();
    let path = artifacts().join(name);
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_gives_the_address_only_from_user_info_lets_people_in() {
    // The gateway only admits verified addresses in example.edu (see `Stage`): the ID token
    // names none, so the login gets through only if the gateway asks UserInfo.
    let Some(stage) = Stage::start_with(ClaimsIn::UserInfo).await else {
        return;
    };
    let client = browser(
        stage.driver_port,
        &stage.scratch.path().join("grace"),
        &stage.scratch.path().join("downloads"),
    )
    .await;
    log_in(&client, &stage.base, "grace").await;
    screenshot(&client, "login-through-userinfo.png").await;
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_logs_in_runs_a_program_watches_it_and_downloads_its_output() {
    let Some(stage) = Stage::start().await else {
        return;
    };
    let Stage {
        stack,
        base,
        issuer,
        scratch,
        ..
    } = &stage;
    let driver_port = stage.driver_port;
    let downloads = scratch.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();

    // Alice logs in with the "Google" button and submits a C program through the form.
    let alice = browser(driver_port, &scratch.path().join("alice"), &downloads).await;
    log_in(&alice, base, "alice").await;
    let source = alice.find(Locator::Css("#source")).await.unwrap();
    source.clear().await.unwrap();
    source
        .send_keys(&format!(
            "#include <stdio.h>\nint main(void) {{\n{TAB}printf(\"hello from the browser: %d\\n\", 6 * 7);\n}}\n"
        ))
        .await
        .unwrap();
    let typed = source.prop("value").await.unwrap().unwrap();
    assert!(
        typed.contains("\n    printf("),
        "Tab indents in the editor: {typed:?}"
    );
    alice
        .find(Locator::Css("#run"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    alice
        .wait()
        .for_element(Locator::Css("tr.fresh"))
        .await
        .unwrap();
    let url = alice.current_url().await.unwrap();
    let id = url
        .query_pairs()
        .find(|(k, _)| k == "submitted")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("{url}"));

    // The status changes to succeeded on the list, without a reload.
    alice
        .execute("window.colaNoReload = 'still here';", vec![])
        .await
        .unwrap();
    // (Read by script: the live updates replace the badge element as it changes.)
    let badge = format!("return document.querySelector('#job-{id} .badge')?.textContent ?? '';");
    let start = Instant::now();
    loop {
        let status = alice.execute(&badge, vec![]).await.unwrap();
        let status = status.as_str().unwrap_or_default().to_owned();
        if status == "Succeeded" {
            break;
        }
        if matches!(status.as_str(), "Failed" | "Cancelled") {
            let user = cola_wire::UserId::from_identity(issuer, "alice");
            let key = cola_wire::JobKey::parse(&format!("{user}.{id}")).unwrap();
            let record = stack.jobs().get(&key).await.unwrap();
            panic!(
                "the job ended {status}: {record:#?}\n{}",
                stack.middleware_log()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "still {status} after 120 s\n{}",
            stack.middleware_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let marker = alice
        .execute("return window.colaNoReload;", vec![])
        .await
        .unwrap();
    assert_eq!(marker, json!("still here"), "the page was not reloaded");
    assert!(
        !text_of(&alice, "#live-status").await.is_empty(),
        "live status shown"
    );
    screenshot(&alice, "job-list.png").await;

    // Its page shows the output.
    alice
        .find(Locator::Css(&format!("#job-{id} a.job-link")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    alice
        .wait()
        .for_element(Locator::Css("#stdout"))
        .await
        .unwrap();
    assert_eq!(path_of(&alice).await, format!("/jobs/{id}"));
    let stdout = text_of(&alice, "#stdout").await;
    assert!(stdout.contains("hello from the browser: 42"), "{stdout}");
    assert!(text_of(&alice, "#zip-files").await.contains("stdout.txt"));
    screenshot(&alice, "job-page.png").await;

    // The zip downloads.
    alice
        .find(Locator::Css("#download"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let zip_path = downloaded(&downloads, &format!("{id}-output.zip")).await;
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    let mut stdout = String::new();
    zip.by_name("stdout.txt")
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(stdout, "hello from the browser: 42\n");

    // Each file of the zip has its own page, and downloads alone.
    click_then_wait(
        &alice,
        "#zip-files a[href$='/files/stdout.txt']",
        "#file-text",
    )
    .await;
    assert_eq!(
        path_of(&alice).await,
        format!("/jobs/{id}/files/stdout.txt")
    );
    assert!(
        text_of(&alice, "#file-text")
            .await
            .contains("hello from the browser: 42")
    );
    screenshot(&alice, "file-page.png").await;
    alice
        .find(Locator::Css("#download-file"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let file = downloaded(&downloads, "stdout.txt").await;
    assert_eq!(
        std::fs::read_to_string(file).unwrap(),
        "hello from the browser: 42\n"
    );

    // In the system's dark colour scheme, the same page is dark.
    let dark = browser_with(
        driver_port,
        &scratch.path().join("alice-dark"),
        &downloads,
        &[
            "--force-dark-mode",
            "--blink-settings=preferredColorScheme=0",
        ],
    )
    .await;
    log_in(&dark, base, "alice").await;
    dark.goto(&format!("{base}/jobs/{id}")).await.unwrap();
    let background = dark
        .execute(
            "return [matchMedia('(prefers-color-scheme: dark)').matches, \
             getComputedStyle(document.body).backgroundColor];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(background, json!([true, "rgb(24, 22, 20)"]));
    screenshot(&dark, "job-page-dark.png").await;
    dark.close().await.unwrap();

    // Bob logs in elsewhere and cannot see Alice's job.
    let bob = browser(driver_port, &scratch.path().join("bob"), &downloads).await;
    log_in(&bob, base, "bob").await;
    assert!(
        !bob.source().await.unwrap().contains(&id),
        "Alice's job is not on Bob's list"
    );
    for path in [
        format!("/jobs/{id}"),
        format!("/jobs/{id}/output.zip"),
        format!("/jobs/{id}/files/stdout.txt"),
    ] {
        bob.goto(&format!("{base}{path}")).await.unwrap();
        assert_eq!(text_of(&bob, "h1").await, "Not found", "{path}");
    }
    bob.close().await.unwrap();

    // Logging out ends Alice's session: her cookie opens nothing any more.
    let cookies = alice.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name() == "cola_session")
        .expect("a session cookie");
    let (name, value) = (session.name().to_owned(), session.value().to_owned());
    assert_eq!(session.http_only(), Some(true));
    alice
        .find(Locator::Css(".who button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    alice
        .wait()
        .for_element(Locator::Css("#login-title"))
        .await
        .unwrap();
    assert!(text_of(&alice, "main").await.contains("You are logged out"));
    alice.goto(&format!("{base}/jobs/{id}")).await.unwrap();
    assert!(
        path_of(&alice).await.starts_with("/login"),
        "{}",
        path_of(&alice).await
    );
    let replay = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{base}/"))
        .header("cookie", format!("{name}={value}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 303);
    assert!(
        replay.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login")
    );
    alice.close().await.unwrap();
}

/// The file `name` once the browser has downloaded it into `downloads` (within 20 s).
async fn downloaded(downloads: &Path, name: &str) -> PathBuf {
    let path = downloads.join(name);
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no {} in {:?}",
            path.display(),
            std::fs::read_dir(downloads).unwrap().collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    path
}

async fn displayed(client: &Client, css: &str) -> bool {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .is_displayed()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_states_a_numeric_problem_in_the_form_and_sees_its_result_and_plot() {
    let Some(stage) = Stage::start().await else {
        return;
    };
    let Stage {
        stack,
        base,
        issuer: _,
        scratch,
        ..
    } = &stage;
    let driver_port = stage.driver_port;
    let carol = browser(driver_port, &scratch.path().join("carol"), scratch.path()).await;
    log_in(&carol, base, "carol").await;

    // The language select switches the form to a problem, in place.
    assert!(displayed(&carol, "#source").await && !displayed(&carol, "#method").await);
    let language = carol.find(Locator::Css("#language")).await.unwrap();
    language.select_by_value("numeric").await.unwrap();
    assert!(displayed(&carol, "#method").await, "the numeric mode shows");
    assert!(!displayed(&carol, "#source").await, "the program is hidden");
    let f = carol.find(Locator::Css("#p-bisection-f")).await.unwrap();
    assert_eq!(
        f.prop("value").await.unwrap().as_deref(),
        Some("x^3 + 4*x^2 - 10")
    );
    // The method select shows exactly that method's fields.
    let method = carol.find(Locator::Css("#method")).await.unwrap();
    method.select_by_value("newton").await.unwrap();
    assert!(displayed(&carol, "#p-newton-x0").await);
    assert!(!displayed(&carol, "#p-bisection-f").await);
    method.select_by_value("bisection").await.unwrap();
    assert!(displayed(&carol, "#p-bisection-f").await);
    screenshot(&carol, "numeric-form.png").await;

    carol
        .find(Locator::Css("#run"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    carol
        .wait()
        .for_element(Locator::Css("tr.fresh"))
        .await
        .unwrap();
    let url = carol.current_url().await.unwrap();
    let id = url
        .query_pairs()
        .find(|(k, _)| k == "submitted")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("{url}"));
    // (Read by script: the live updates replace the badge element as it changes.)
    let badge = format!("return document.querySelector('#job-{id} .badge')?.textContent;");
    let start = Instant::now();
    while carol.execute(&badge, vec![]).await.unwrap() != json!("Succeeded") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the numeric job did not succeed\n{}",
            stack.middleware_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Its page: the result, the table and the plot (an image from the zip).
    carol.goto(&format!("{base}/jobs/{id}")).await.unwrap();
    let result = text_of(&carol, "#result").await;
    assert!(result.contains("\"root\": 1.36523001"), "{result}");
    assert!(
        text_of(&carol, "#table-preview")
            .await
            .contains("f_midpoint")
    );
    let loaded = carol
        .execute(
            "const img = document.getElementById('plot'); return img.complete && img.naturalWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert!(loaded.as_u64().unwrap_or(0) > 0, "the plot loads: {loaded}");
    screenshot(&carol, "numeric-job.png").await;
    carol.close().await.unwrap();
}

/// The API reference page, `/api/docs`: Swagger UI, built into the binary, renders every
/// operation of the OpenAPI document under the site's Content-Security-Policy (no inline script
/// or style, nothing from elsewhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reference_shows_every_operation_under_the_sites_policy() {
    if std::env::var_os("COLA_SKIP_BROWSER_TESTS").is_some() {
        eprintln!("COLA_SKIP_BROWSER_TESTS is set: skipping the browser test");
        return;
    }
    let stack = Stack::start().await;
    let driver_port = free_port();
    let _driver = start_chromedriver(driver_port);
    let scratch = tempfile::tempdir().unwrap();
    let client = browser(
        driver_port,
        &scratch.path().join("profile"),
        &scratch.path().join("downloads"),
    )
    .await;
    client
        .goto(&format!("{}/api/docs", stack.url))
        .await
        .unwrap();
    if let Err(error) = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(".opblock-summary-path"))
        .await
    {
        screenshot(&client, "api-docs-failed.png").await;
        panic!(
            "Swagger UI listed no operation ({error}):\n{}",
            client.source().await.unwrap()
        );
    }
    let listed = client
        .execute(
            "return [...document.querySelectorAll('.opblock')].map(block => \
               block.querySelector('.opblock-summary-method').textContent + ' ' + \
               block.querySelector('.opblock-summary-path').getAttribute('data-path'));",
            vec![],
        )
        .await
        .unwrap();
    let mut listed: Vec<String> = serde_json::from_value(listed).unwrap();
    listed.sort();
    assert_eq!(
        listed,
        [
            "GET /api/v1/energy",
            "GET /api/v1/jobs",
            "GET /api/v1/jobs/{id}",
            "GET /api/v1/jobs/{id}/output.zip",
            "GET /api/v1/languages",
            "GET /api/v1/numeric/methods",
            "GET /api/v1/openapi.json",
            "POST /api/v1/jobs",
            "POST /api/v1/jobs/{id}/cancel",
        ]
    );
    // Swagger UI's own stylesheet applies (a method's badge is coloured).
    let badge = client
        .execute(
            "return getComputedStyle(document.querySelector('.opblock-summary-method'))\
               .backgroundColor;",
            vec![],
        )
        .await
        .unwrap();
    assert_ne!(
        badge,
        json!("rgba(0, 0, 0, 0)"),
        "swagger-ui.css did not apply"
    );
    // One operation opens with its parameters and responses.
    client
        .find(Locator::Css("#operations-jobs-submit_job .opblock-summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#operations-jobs-submit_job .responses-table"))
        .await
        .unwrap();
    let responses = text_of(&client, "#operations-jobs-submit_job .responses-table").await;
    for status in ["201", "400", "401", "413", "415", "429", "500", "503"] {
        assert!(responses.contains(status), "{status} in {responses}");
    }
    // What the policy blocked, and whatever was loaded from elsewhere: nothing.
    let report = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const blocked = [];
             new ReportingObserver(reports => {
               for (const r of reports) blocked.push(r.body.effectiveDirective + ' ' + r.body.blockedURL);
             }, {types: ['csp-violation'], buffered: true}).observe();
             const foreign = performance.getEntriesByType('resource')
               .map(e => e.name).filter(url => !url.startsWith(location.origin));
             setTimeout(() => done({blocked, foreign}), 500);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(report, json!({"blocked": [], "foreign": []}));
    screenshot(&client, "api-docs.png").await;
    client.close().await.unwrap();
}
