//! The pages of a logged-in person: submit form, job list, job page, cancel, download, tokens,
//! live events; CSRF, security headers and other people's jobs.

use std::time::Duration;

use axum::{
    body::Body,
    http::{Method, Request, header},
};
use cola_gateway::tokens;
use cola_wire::{JobId, JobRecord, Reason, Status, UserId, names, nats::Transition};
use tower::ServiceExt as _;

use crate::support::{Browser, Web, input_value};

const PROGRAM: &str = "#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n";

fn dev() -> UserId {
    UserId::parse("dev").unwrap()
}

async fn logged_in(web: &Web) -> Browser {
    let mut browser = web.browser();
    let answer = browser.dev_login("/").await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    browser
}

/// Submits the form; the new job's id.
async fn submit(browser: &mut Browser, fields: &[(&str, &str)]) -> JobId {
    let csrf = browser.csrf().await;
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    let answer = browser.post_multipart("/jobs", &all).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let location = answer.location();
    let id = location
        .strip_prefix("/?submitted=")
        .and_then(|rest| rest.split('#').next())
        .unwrap_or_else(|| panic!("{location}"));
    id.parse().unwrap()
}

/// Submits a job as `user` through the JSON API (with a new token); its id.
async fn submit_by_api(web: &Web, user: &UserId) -> JobId {
    let token = tokens::issue(&web.nats.topology.tokens, user, "t")
        .await
        .unwrap();
    let request = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/jobs")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            r#"{"language":"c","source":"int main(void){return 0;}"}"#,
        ))
        .unwrap();
    let response = web.gateway.router().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 201);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let job: serde_json::Value = serde_json::from_slice(&body).unwrap();
    job["id"].as_str().unwrap().parse().unwrap()
}

async fn queued_messages(web: &Web) -> u64 {
    let js = async_nats::jetstream::new(web.nats.client.clone());
    let mut stream = js.get_stream(names::STREAM).await.unwrap();
    stream.info().await.unwrap().state.messages
}

async fn finish(web: &Web, user: &UserId, id: JobId, change: impl FnMut(&mut JobRecord) -> bool) {
    let outcome = web
        .nats
        .topology
        .jobs
        .transition(&cola_wire::JobKey::new(user, &id), change)
        .await
        .unwrap();
    assert!(matches!(outcome, Transition::Changed(..)), "{outcome:?}");
}

#[tokio::test]
async fn pages_need_a_session_and_the_api_needs_a_token() {
    let web = Web::start(|_| {}).await;
    let mut anonymous = web.browser();
    let id = JobId::new();
    for (path, next) in [
        ("/", "%2F"),
        ("/tokens", "%2Ftokens"),
        (
            &format!("/jobs/{id}") as &str,
            &format!("%2Fjobs%2F{id}") as &str,
        ),
    ] {
        let answer = anonymous.get(path).await;
        assert_eq!(answer.status, 303, "{path}");
        assert_eq!(answer.location(), format!("/login?next={next}"));
    }
    assert_eq!(anonymous.get("/events").await.status, 401);

    // A session cookie is no credential for the JSON API.
    let mut browser = logged_in(&web).await;
    for path in ["/api/v1/jobs", "/api/v1/languages"] {
        let answer = browser.get(path).await;
        assert_eq!(answer.status, 401, "{path}");
        assert!(answer.headers.contains_key(header::WWW_AUTHENTICATE));
    }
    let request = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/jobs")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"language":"c","source":"int main;"}"#))
        .unwrap();
    assert_eq!(browser.send(request).await.status, 401);
    assert_eq!(queued_messages(&web).await, 0);
}

#[tokio::test]
async fn every_state_changing_form_needs_the_csrf_token() {
    let web = Web::start(|_| {}).await;
    let mut browser = logged_in(&web).await;
    let id = submit(&mut browser, &[("language", "c"), ("source", PROGRAM)]).await;
    assert_eq!(queued_messages(&web).await, 1);

    for csrf in [None, Some("wrong"), Some("")] {
        let with = |fields: &[(&'static str, &'static str)]| -> Vec<(&'static str, String)> {
            let mut all: Vec<(&str, String)> =
                fields.iter().map(|(k, v)| (*k, v.to_string())).collect();
            if let Some(csrf) = csrf {
                all.push(("csrf", csrf.into()));
            }
            all
        };
        let job = with(&[("language", "c"), ("source", PROGRAM)]);
        let refs: Vec<(&str, &str)> = job.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = browser.post_multipart("/jobs", &refs).await;
        assert_eq!(answer.status, 403, "{csrf:?}: {}", answer.body);
        assert!(answer.body.contains("Form expired"));

        let id_string = id.to_string();
        for (path, fields) in [
            ("/tokens".to_owned(), with(&[("name", "laptop")])),
            ("/tokens/revoke".to_owned(), with(&[("id", "00")])),
            (format!("/jobs/{id_string}/cancel"), with(&[])),
            ("/logout".to_owned(), with(&[])),
            ("/auth/dev".to_owned(), with(&[("next", "/")])),
        ] {
            let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let answer = browser.post_form(&path, &refs).await;
            assert_eq!(answer.status, 403, "{path} with {csrf:?}");
        }
    }
    assert_eq!(queued_messages(&web).await, 1);
    assert!(
        tokens::list(&web.nats.topology.tokens, &dev())
            .await
            .unwrap()
            .is_empty()
    );
    let (record, _) = web
        .nats
        .topology
        .jobs
        .get(&cola_wire::JobKey::new(&dev(), &id))
        .await
        .unwrap()
        .unwrap();
    assert!(!record.cancel_requested);
    assert_eq!(browser.get("/").await.status, 200, "still logged in");
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let web = Web::start(|_| {}).await;
    let mut browser = logged_in(&web).await;
    for path in [
        "/",
        "/login",
        "/tokens",
        "/energy",
        "/no/such/page",
        "/api/v1/jobs",
        "/static/app.js",
    ] {
        let answer = browser.get(path).await;
        let csp = answer.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(answer.headers[header::X_FRAME_OPTIONS], "DENY", "{path}");
        assert_eq!(
            answer.headers[header::REFERRER_POLICY],
            "same-origin",
            "{path}"
        );
    }
    let home = browser.get("/").await;
    assert_eq!(home.headers[header::CACHE_CONTROL], "no-store");
    assert!(!home.body.contains("<script>"), "no inline script");
    assert!(home.body.contains("<script src=\"/static/app.js?v="));
    let missing = browser.get("/no/such/page").await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("<h1"), "a page, not JSON");
    let js = browser.get("/static/app.js").await;
    assert!(
        js.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
}

#[tokio::test]
async fn the_form_queues_a_job_and_mistakes_come_back_next_to_their_field() {
    let web = Web::start(|_| {}).await;
    let mut browser = logged_in(&web).await;
    let home = browser.get("/").await;
    assert!(home.body.contains("Hello from C!"), "a starter program");
    assert!(
        home.body.contains("data-starter="),
        "starters for the script"
    );

    let csrf = browser.csrf().await;
    let tricky = "int main(void) { return 1 < 2 && \"</textarea>\"[0]; }\n";
    let answer = browser
        .post_multipart(
            "/jobs",
            &[
                ("csrf", &csrf),
                ("language", "c"),
                ("source", tricky),
                ("memory_mb", "999999"),
            ],
        )
        .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(
        answer.body.contains("id=\"memory_mb-error\""),
        "{}",
        answer.body
    );
    assert!(answer.body.contains("value=\"999999\""));
    assert!(
        answer.body.contains("&#60;/textarea&#62;") && !answer.body.contains("\"</textarea>\""),
        "the code comes back, escaped"
    );
    let answer = browser
        .post_multipart(
            "/jobs",
            &[
                ("csrf", &csrf),
                ("language", "c"),
                ("source", PROGRAM),
                ("upload:run.exe", "MZ"),
            ],
        )
        .await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.body.contains("id=\"files-error\""),
        "{}",
        answer.body
    );
    assert!(
        answer.body.contains("value=\"run.exe\""),
        "the upload is kept as a file"
    );
    let answer = browser
        .post_multipart(
            "/jobs",
            &[("csrf", &csrf), ("language", "c"), ("source", "")],
        )
        .await;
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("id=\"source-error\""));
    assert_eq!(queued_messages(&web).await, 0, "nothing queued");

    let id = submit(
        &mut browser,
        &[
            ("language", "c"),
            ("source", PROGRAM),
            ("stdin", "1 2\r\n"),
            ("args", "-v\r\ntwo words"),
            ("memory_mb", "64"),
            ("upload:data.txt", "42\n"),
        ],
    )
    .await;
    assert_eq!(queued_messages(&web).await, 1);
    let (record, _) = web
        .nats
        .topology
        .jobs
        .get(&cola_wire::JobKey::new(&dev(), &id))
        .await
        .unwrap()
        .expect("a record");
    assert_eq!(record.status, Status::Queued);
    assert_eq!(record.limits.memory_mb, 64);
    assert_eq!(record.arg_count, 2);
    let files: Vec<_> = record.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(files, ["main.c", "data.txt"]);

    let list = browser.get(&format!("/?submitted={id}")).await;
    assert!(
        list.body.contains(&format!("id=\"job-{id}\"")),
        "{}",
        list.body
    );
    assert!(list.body.contains("badge-queued"));
    assert!(
        list.body.contains("puts(&#34;hi&#34;)"),
        "the program stays in the form"
    );
    let again = browser.get(&format!("/?from={id}")).await;
    assert_eq!(
        input_value(&again.body, "file_name").as_deref(),
        Some("data.txt")
    );
    assert!(again.body.contains("arguments are not kept"));
}

#[tokio::test]
async fn a_job_page_shows_escaped_output_and_other_people_get_404() {
    let web = Web::start(|_| {}).await;
    let mut browser = logged_in(&web).await;
    let id = submit(&mut browser, &[("language", "c"), ("source", PROGRAM)]).await;
    let page = browser.get(&format!("/jobs/{id}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("id=\"cancel\""),
        "a running job can be cancelled"
    );
    assert!(!page.body.contains("id=\"download\""));

    // The middleware's part: the job ends with output and a zip.
    let object = web
        .store_output_zip(&dev(), id, [("stdout.txt", b"<script>alert(1)</script>\n")])
        .await;
    finish(&web, &dev(), id, |r| {
        r.stdout = "<script>alert(1)</script>\n".into();
        r.exit_code = Some(3);
        r.output_object = Some(object.clone());
        r.finish(
            Status::Failed,
            Some(Reason::RuntimeError),
            cola_wire::job::now(),
        );
        true
    })
    .await;
    let page = browser.get(&format!("/jobs/{id}")).await;
    assert!(
        page.body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script>alert"));
    assert!(page.body.contains("id=\"exit-code\">3<"));
    assert!(page.body.contains("runtime error"));
    assert!(
        page.body.contains("<code>stdout.txt</code>"),
        "the zip's files are listed"
    );
    assert!(page.body.contains("id=\"download\""));
    assert!(
        !page.body.contains("id=\"cancel\""),
        "an ended job cannot be cancelled"
    );
    let download = browser.get(&format!("/jobs/{id}/output.zip")).await;
    assert_eq!(download.status, 200);
    assert_eq!(download.headers[header::CONTENT_TYPE], "application/zip");

    // Bob's job, submitted through the API, is not there for dev.
    let bobs = submit_by_api(&web, &UserId::parse("bob").unwrap())
        .await
        .to_string();
    for path in [
        format!("/jobs/{bobs}"),
        format!("/jobs/{bobs}/output.zip"),
        format!("/?from={bobs}"),
        "/jobs/not-a-job".to_owned(),
    ] {
        let answer = browser.get(&path).await;
        assert_eq!(answer.status, 404, "{path}");
        assert!(answer.body.contains("Not found"));
    }
    let csrf = browser.csrf().await;
    let cancel = browser
        .post_form(&format!("/jobs/{bobs}/cancel"), &[("csrf", &csrf)])
        .await;
    assert_eq!(cancel.status, 404);
    assert!(!browser.get("/").await.body.contains(&bobs));
}

#[tokio::test]
async fn a_running_job_is_cancelled_from_its_page() {
    let web = Web::start(|_| {}).await;
    let mut browser = logged_in(&web).await;
    let id = submit(&mut browser, &[("language", "c"), ("source", PROGRAM)]).await;
    let csrf = browser.csrf().await;
    let answer = browser
        .post_form(&format!("/jobs/{id}/cancel"), &[("csrf", &csrf)])
        .await;
    assert_eq!(answer.status, 303);
    assert_eq!(answer.location(), format!("/jobs/{id}"));
    let (record, _) = web
        .nats
        .topology
        .jobs
        .get(&cola_wire::JobKey::new(&dev(), &id))
        .await
        .unwrap()
        .unwrap();
    assert!(record.cancel_requested);
    let page = browser.get(&format!("/jobs/{id}")).await;
    assert!(page.body.contains("Cancel requested"));
}

#[tokio::test]
async fn api_tokens_are_shown_once_listed_and_revoked() {
    let web = Web::start(|_| {}).await;
    let mut browser = logged_in(&web).await;
    let csrf = browser.csrf().await;
    let created = browser
        .post_form("/tokens", &[("csrf", &csrf), ("name", "laptop")])
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let token = input_value(&created.body, "new-token")
        .or_else(|| {
            let at = created.body.find("id=\"new-token\"")?;
            let rest = &created.body[at..];
            let value = rest.split("value=\"").nth(1)?;
            Some(value[..value.find('"')?].to_owned())
        })
        .expect("the new token is shown");
    assert!(token.starts_with("cola_"), "{token}");

    let api = |token: &str| {
        Request::get("/api/v1/jobs")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let router = web.gateway.router();
    assert_eq!(
        router.clone().oneshot(api(&token)).await.unwrap().status(),
        200
    );

    let listed = browser.get("/tokens").await;
    assert!(listed.body.contains("<td>laptop</td>"));
    assert!(!listed.body.contains(&token), "a token is shown only once");
    let id = input_value(&listed.body, "id").expect("a revoke form");

    // Someone else's token cannot be revoked from here.
    let bob = UserId::parse("bob").unwrap();
    let bobs = tokens::issue(&web.nats.topology.tokens, &bob, "b")
        .await
        .unwrap();
    let bobs_id = tokens::key_of(&bobs);
    let refused = browser
        .post_form("/tokens/revoke", &[("csrf", &csrf), ("id", &bobs_id)])
        .await;
    assert_eq!(refused.status, 404);
    assert_eq!(
        router.clone().oneshot(api(&bobs)).await.unwrap().status(),
        200
    );

    let revoked = browser
        .post_form("/tokens/revoke", &[("csrf", &csrf), ("id", &id)])
        .await;
    assert_eq!(revoked.status, 303);
    assert_eq!(
        router.clone().oneshot(api(&token)).await.unwrap().status(),
        401
    );
    let listed = browser.get("/tokens?revoked=1").await;
    assert!(!listed.body.contains("<td>laptop</td>"));
    assert!(listed.body.contains("no longer works"));

    let empty = browser
        .post_form("/tokens", &[("csrf", &csrf), ("name", " ")])
        .await;
    assert_eq!(empty.status, 400);
    assert!(empty.body.contains("id=\"token-name-error\""));
}

#[tokio::test]
async fn live_events_carry_the_users_own_jobs_only() {
    let web = Web::start(|_| {}).await;
    let mut browser = logged_in(&web).await;
    let mine = submit(&mut browser, &[("language", "c"), ("source", PROGRAM)]).await;

    let mut live = browser.events().await;
    // Catch-up first: the job as it is.
    live.read_until(&format!("\"id\":\"{mine}\"")).await;
    let seen = &live.seen;
    assert!(
        seen.contains("event: job") && seen.contains("\"status\":\"queued\""),
        "{seen}"
    );

    // Bob's job changes; then mine: only mine shows up.
    submit_by_api(&web, &UserId::parse("bob").unwrap()).await;
    finish(&web, &dev(), mine, |r| {
        r.status = Status::Running;
        true
    })
    .await;
    live.read_until("\"status\":\"running\"").await;
    finish(&web, &dev(), mine, |r| {
        r.finish(Status::Succeeded, None, cola_wire::job::now());
        true
    })
    .await;
    live.read_until("\"status\":\"succeeded\"").await;
    let seen = &live.seen;
    assert!(!seen.contains("\"user\""), "rows carry no user");
    assert_eq!(
        seen.matches("\"id\":\"").count(),
        3,
        "mine, three times: {seen}"
    );
}

#[tokio::test]
async fn live_events_end_at_logout() {
    let web = Web::start(|_| {}).await;
    let mut browser = logged_in(&web).await;
    let csrf = browser.csrf().await;
    let mut live = browser.events().await;
    live.read_until("event: hello").await;

    let answer = browser.post_form("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(answer.status, 303);
    let after = submit_by_api(&web, &dev()).await;
    assert!(
        live.ends_within(Duration::from_secs(2)).await,
        "the stream outlived the logout: {}",
        live.seen
    );
    assert!(!live.seen.contains(&after.to_string()), "{}", live.seen);
}

#[tokio::test]
async fn live_events_end_when_the_session_is_gone_elsewhere() {
    let web = Web::start(|_| {}).await;
    let mut browser = logged_in(&web).await;
    let mut live = browser.events().await;
    live.read_until("event: hello").await;
    // Logged out on another gateway, or expired: the record is gone from the bucket.
    web.forget_sessions().await;
    assert!(
        live.ends_within(Duration::from_secs(10)).await,
        "the stream outlived its session: {}",
        live.seen
    );
}

/// `/energy`: every node's latest reading (a stale one marked so) and the chart of the last
/// hours, drawn on the server; the readings are machines', shown to any logged-in person.
#[tokio::test]
async fn the_energy_page_shows_every_nodes_reading_and_its_chart() {
    use cola_wire::{
        energy::{EnergyReading, NodeName, Telemetry},
        energy_store::EnergyStore,
    };

    let web = Web::start(|c| c.energy_fresh_for = Duration::from_secs(60)).await;
    let mut browser = logged_in(&web).await;
    let empty = browser.get("/energy").await;
    assert_eq!(empty.status, 200);
    assert!(
        empty.body.contains("No node has reported yet"),
        "{}",
        empty.body
    );

    let js = async_nats::jetstream::new(web.nats.client.clone());
    let store = EnergyStore::open(&js).await.unwrap();
    let now = cola_wire::job::now();
    for (node, payload, age_s) in [
        (
            "lab-1",
            r#"{"renewable_share": 0.8, "solar_w": 1200, "battery_pct": 64}"#,
            10,
        ),
        ("lab-2", r#"{"renewable_share": 0.1}"#, 600),
    ] {
        let reading = EnergyReading::new(
            NodeName::parse(node).unwrap(),
            Telemetry::parse(payload.as_bytes()).unwrap(),
            now - chrono::Duration::seconds(age_s),
        );
        store.put_reading(&reading).await.unwrap();
        store.append_history(&reading).await.unwrap();
    }
    let page = browser.get("/energy").await;
    assert_eq!(page.status, 200);
    let body = &page.body;
    for shown in ["lab-1", "80%", "1200 W", "64%", "lab-2", "10%"] {
        assert!(body.contains(shown), "{shown} not on the page: {body}");
    }
    assert_eq!(body.matches("stale: counts as grid").count(), 1, "{body}");
    assert_eq!(body.matches("<polyline").count(), 2, "{body}");
    assert!(body.contains("(1 readings)"), "{body}");
    // Drawn by the server: no script, no inline style.
    assert!(
        !body.contains("<script>") && !body.contains("style="),
        "{body}"
    );
}

#[tokio::test]
async fn each_file_of_the_zip_is_shown_escaped_or_downloaded_alone() {
    let web = Web::start(|_| {}).await;
    let mut browser = logged_in(&web).await;
    let id = submit(&mut browser, &[("language", "c"), ("source", PROGRAM)]).await;
    let big: String = "0123456789abcdef\n".repeat(20_000); // 340 KB: more than a page shows
    let entries: [(&str, &[u8]); 3] = [
        ("stdout.txt", b"<script>alert(1)</script>\n"),
        ("out/data.bin", b"\x00\x01\x02binary"),
        ("out/big text.txt", big.as_bytes()),
    ];
    let object = web.store_output_zip(&dev(), id, entries).await;
    finish(&web, &dev(), id, |r| {
        r.output_object = Some(object.clone());
        r.finish(Status::Succeeded, None, cola_wire::job::now());
        true
    })
    .await;

    // The job page links each file's page and its download.
    let page = browser.get(&format!("/jobs/{id}")).await;
    for link in [
        format!("href=\"/jobs/{id}/files/stdout.txt\""),
        format!("href=\"/jobs/{id}/download/out/data.bin\""),
        format!("href=\"/jobs/{id}/files/out/big%20text.txt\""),
    ] {
        assert!(page.body.contains(&link), "{link} in {}", page.body);
    }

    // Text, escaped.
    let text = browser.get(&format!("/jobs/{id}/files/stdout.txt")).await;
    assert_eq!(text.status, 200, "{}", text.body);
    assert!(
        text.body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62;")
    );
    assert!(!text.body.contains("<script>alert"));
    assert!(!text.body.contains("id=\"file-truncated\""));
    // Not text: named, not shown.
    let binary = browser.get(&format!("/jobs/{id}/files/out/data.bin")).await;
    assert_eq!(binary.status, 200);
    assert!(binary.body.contains("id=\"file-binary\""));
    assert!(!binary.body.contains("id=\"file-text\""));
    // Large: the beginning, and the download has it all.
    let large = browser
        .get(&format!("/jobs/{id}/files/out/big%20text.txt"))
        .await;
    assert_eq!(large.status, 200);
    assert!(large.body.contains("id=\"file-truncated\""));
    assert!(large.body.len() < big.len());
    let download = browser
        .get(&format!("/jobs/{id}/download/out/big%20text.txt"))
        .await;
    assert_eq!(download.status, 200);
    assert_eq!(download.body, big);
    assert_eq!(
        download.headers[header::CONTENT_DISPOSITION],
        "attachment; filename=\"big_text.txt\""
    );
    assert_eq!(
        download.headers[header::CONTENT_TYPE],
        "application/octet-stream"
    );

    // Only the zip's own entries, only one's own jobs.
    let bobs = submit_by_api(&web, &UserId::parse("bob").unwrap()).await;
    for path in [
        format!("/jobs/{id}/files/missing.txt"),
        format!("/jobs/{id}/files/out"),
        format!("/jobs/{id}/files/../stdout.txt"),
        format!("/jobs/{id}/download/%2e%2e/stdout.txt"),
        format!("/jobs/{bobs}/files/stdout.txt"),
        format!("/jobs/{bobs}/download/stdout.txt"),
        "/jobs/not-a-job/files/stdout.txt".to_owned(),
    ] {
        let answer = browser.get(&path).await;
        assert_eq!(answer.status, 404, "{path}: {}", answer.body);
    }
}
