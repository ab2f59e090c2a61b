//! `POST /api/v1/jobs`: what a valid submission puts in NATS, and what a bad one does not.

use cola_wire::{
    InputFile, Inputs, JobId, Status, Work, input_object::fetch_inputs, languages, names,
};
use futures::StreamExt;
use reqwest::{Method, header};
use serde_json::{Value, json};
use std::time::Duration;

use crate::support::{Gateway, HELLO_C, json_of};

#[tokio::test]
async fn a_valid_submission_creates_a_queued_record_and_exactly_one_message() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice").await;
    let response = gw
        .submit(
            &alice,
            json!({
                "language": "c",
                "files": [
                    {"name": "main.c", "content": HELLO_C},
                    {"name": "data.txt", "content": "1 2 3\n"}
                ],
                "stdin": "42\n",
                "args": ["-n", "3"],
                "limits": {"wall_time_ms": 2000, "memory_mb": 128}
            }),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let (_, view) = json_of(response).await;
    let id: JobId = view["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(location, format!("/api/v1/jobs/{id}"));
    assert_eq!(view["status"], "queued");
    assert_eq!(view["language"], "c");
    assert_eq!(view["output_url"], Value::Null);
    assert_eq!(
        view["timings_ms"],
        json!({"queue": null, "compile": null, "run": null, "total": null})
    );

    let record = gw
        .record(&alice, id)
        .await
        .expect("a record under alice.<id>");
    assert_eq!(record.status, Status::Queued);
    assert_eq!(record.user, alice.user);
    assert_eq!(record.stdin_bytes, 3);
    assert_eq!(record.arg_count, 2);
    assert_eq!(record.files.len(), 2);
    assert_eq!(
        (record.limits.wall_time_ms, record.limits.memory_mb),
        (2000, 128)
    );
    assert_eq!(
        record.limits.cpu_time_ms,
        languages()[0].default_limits.cpu_time_ms
    );

    assert_eq!(gw.queue_state().await.messages, 1);
    let (message, msg_id) = gw.last_message("c").await;
    assert_eq!(msg_id, id.to_string());
    assert_eq!(message.id, id);
    assert_eq!(message.user, alice.user);
    assert_eq!(message.args, ["-n", "3"]);
    assert_eq!(message.limits, record.limits);
    let Work::Inputs(inputs) = message.work else {
        panic!("small inputs travel inline: {:?}", message.work)
    };
    assert_eq!(inputs.stdin, "42\n");
    assert_eq!(
        inputs.files[1],
        InputFile {
            name: "data.txt".into(),
            content: "1 2 3\n".into()
        }
    );

    // The view the API gives back later is the same job.
    let (status, shown) = gw.get_json(&location, &alice).await;
    assert_eq!((status, shown), (200, view));
}

#[tokio::test]
async fn source_is_shorthand_for_the_languages_source_file() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice").await;
    let response = gw
        .submit(
            &alice,
            json!({"language": "javascript", "source": "console.log('hello')"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let (message, _) = gw.last_message("javascript").await;
    assert_eq!(
        message.work,
        Work::Inputs(Inputs {
            files: vec![InputFile {
                name: "main.js".into(),
                content: "console.log('hello')".into()
            }],
            stdin: String::new(),
        })
    );
}

#[tokio::test]
async fn large_inputs_travel_as_an_input_zip_through_the_object_store() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice").await;
    let big = "0123456789abcdef\n".repeat(20_000); // 340 KB > 256 KiB inline limit
    let response = gw
        .submit(
            &alice,
            json!({"language": "c", "files": [
                {"name": "main.c", "content": HELLO_C},
                {"name": "big.csv", "content": big}
            ], "stdin": "x"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let (message, _) = gw.last_message("c").await;
    let object = names::input_object(&alice.user, &message.id);
    assert_eq!(message.work, Work::InputObject(object.clone()));
    let inputs = fetch_inputs(&gw.nats.topology.outputs, &object)
        .await
        .unwrap();
    assert_eq!(inputs.stdin, "x");
    assert_eq!(inputs.files[0].content, HELLO_C);
    assert_eq!(inputs.files[1].name, "big.csv");
    assert_eq!(inputs.files[1].content, big);
    assert_eq!(
        gw.record(&alice, message.id).await.unwrap().files[1].bytes,
        big.len() as u64
    );
}

#[tokio::test]
async fn inputs_that_grow_when_escaped_also_go_through_the_object_store() {
    // Under the inline limit in bytes, but JSON escapes each control character as \u00XX.
    let gw = Gateway::start_with(|c| c.max_body_bytes = 2 << 20).await;
    let alice = gw.user("alice").await;
    let response = gw
        .submit(
            &alice,
            json!({"language": "c", "source": HELLO_C, "stdin": "\u{1}".repeat(200_000)}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let (message, _) = gw.last_message("c").await;
    assert!(
        matches!(message.work, Work::InputObject(_)),
        "{:?}",
        message.work
    );
}

/// Sends `body` (raw) and returns status and JSON answer.
async fn post_raw(
    gw: &Gateway,
    caller: &crate::support::Caller,
    body: &str,
    content_type: Option<&str>,
    query: &str,
) -> (u16, Value) {
    let mut request = gw
        .request(Method::POST, &format!("/api/v1/jobs{query}"), caller)
        .body(body.to_owned());
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    json_of(request.send().await.unwrap()).await
}

#[tokio::test]
async fn every_bad_submission_is_refused_with_its_field_and_nothing_is_queued() {
    let gw = Gateway::start_with(|c| c.max_body_bytes = 64 << 10).await;
    let alice = gw.user("alice").await;
    let records_before = gw.records_state().await.last_sequence;
    let file = |name: &str, content: &str| json!({"name": name, "content": content});
    let many_args: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"language": "cobol", "source": "x"}), "language"),
        (json!({"source": "x"}), "language"),
        (json!({"language": "c"}), "files"),
        (json!({"language": "c", "files": []}), "files"),
        (json!({"language": "c", "source": ""}), "source"),
        (
            json!({"language": "c", "files": [file("main.c", "")]}),
            "files[0].content",
        ),
        (
            json!({"language": "c", "source": "x", "files": [file("main.c", "x")]}),
            "source",
        ),
        (
            json!({"language": "c", "files": [file("main.c", "x"), file("main.c", "y")]}),
            "files[1].name",
        ),
        (
            json!({"language": "c", "files": [file("/etc/passwd", "x")]}),
            "files[0].name",
        ),
        (
            json!({"language": "c", "files": [file("main.c", "x"), file("../main.c", "x")]}),
            "files[1].name",
        ),
        (
            json!({"language": "c", "files": [file("main.c", "x"), file("run.sh", "x")]}),
            "files[1].name",
        ),
        // Compilers would take these for options (`gcc -o main main.c -o.c`).
        (
            json!({"language": "c", "files": [file("main.c", "x"), file("-o.c", "x")]}),
            "files[1].name",
        ),
        (
            json!({"language": "c", "files": [file("main.c", "x"), file("-E.c", "x")]}),
            "files[1].name",
        ),
        (
            json!({"language": "go", "files": [file("main.go", "x"), file("-n.go", "x")]}),
            "files[1].name",
        ),
        (
            json!({"language": "c", "files": [file("helper.c", "x")]}),
            "files",
        ),
        (
            json!({"language": "c", "source": "x", "limits": {"wall_time_ms": 600000}}),
            "limits.wall_time_ms",
        ),
        (
            json!({"language": "c", "source": "x", "limits": {"memory_mb": 0}}),
            "limits.memory_mb",
        ),
        (
            json!({"language": "c", "source": "x", "limits": {"gpu": 1}}),
            "limits.gpu",
        ),
        (
            json!({"language": "c", "source": "x", "colour": "red"}),
            "colour",
        ),
        (
            json!({"language": "c", "source": "x", "args": many_args}),
            "args",
        ),
        (
            json!({"language": "c", "source": "x", "args": ["ok", "y".repeat(5000)]}),
            "args[1]",
        ),
        (
            json!({"language": "c", "source": "x", "files": [{"name": "main.c"}]}),
            "files[0]",
        ),
        (json!({"language": "c", "source": 42}), "source"),
    ];
    for (body, field) in cases {
        let (status, answer) = json_of(gw.submit(&alice, body.clone()).await).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(answer["field"], field, "{body} → {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{answer}"
        );
    }

    let json = Some("application/json");
    for malformed in ["{\"language\": \"c\", ", "", "not json", "[1, 2]", "{} {}"] {
        let (status, answer) = post_raw(&gw, &alice, malformed, json, "").await;
        assert_eq!(status, 400, "{malformed:?} → {answer}");
    }
    let (status, answer) = post_raw(
        &gw,
        &alice,
        r#"{"language":"c","source":"x"}"#,
        Some("text/plain"),
        "",
    )
    .await;
    assert_eq!((status, answer["field"].clone()), (415, Value::Null));

    let too_big = json!({"language": "c", "source": "x".repeat(70 << 10)}).to_string();
    let (status, answer) = post_raw(&gw, &alice, &too_big, json, "").await;
    assert_eq!(status, 413, "{answer}");

    for wait in ["61", "-1", "soon"] {
        let (status, answer) = post_raw(
            &gw,
            &alice,
            r#"{"language":"c","source":"x"}"#,
            json,
            &format!("?wait={wait}"),
        )
        .await;
        assert_eq!(
            (status, answer["field"].as_str()),
            (400, Some("wait")),
            "{wait}"
        );
    }

    assert_eq!(gw.queue_state().await.messages, 0, "nothing may be queued");
    assert_eq!(
        gw.queue_state().await.last_sequence,
        0,
        "nothing may be published"
    );
    assert_eq!(
        gw.records_state().await.last_sequence,
        records_before,
        "no record may be written"
    );

    // A JSON body without a Content-Type is read as JSON: the same gateway still accepts jobs.
    let (status, _) = post_raw(
        &gw,
        &alice,
        &json!({"language": "c", "source": HELLO_C}).to_string(),
        None,
        "",
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(gw.queue_state().await.messages, 1);
}

/// When even the rollback fails (the bucket without a leader, here: gone), the client hears of
/// the failure at once, and the rollback goes on in the background until the bucket is back.
#[tokio::test]
async fn a_rollback_that_has_to_wait_does_not_hold_the_answer() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice").await;
    let js = gw.js();
    js.delete_key_value(names::JOBS_BUCKET).await.unwrap();
    // Less than the rollback's patience (30 s): an answer that waited for it fails here.
    let answer = tokio::time::timeout(
        Duration::from_secs(20),
        gw.submit(&alice, json!({"language": "c", "source": HELLO_C})),
    )
    .await
    .expect("the answer waited for the rollback");
    assert_eq!(answer.status(), 503);

    // The bucket comes back: the record's key is purged in it, though nobody asks any more.
    cola_wire::nats::Topology::ensure(&js, &cola_wire::nats::TopologyConfig::default())
        .await
        .unwrap();
    let jobs = js.get_key_value(names::JOBS_BUCKET).await.unwrap();
    let mut changes = jobs.watch_all_from_revision(1).await.unwrap();
    let change = tokio::time::timeout(Duration::from_secs(10), changes.next())
        .await
        .expect("no rollback after the bucket came back")
        .unwrap()
        .unwrap();
    assert_eq!(
        change.operation,
        async_nats::jetstream::kv::Operation::Purge
    );
    assert!(
        change.key.starts_with(&format!("{}.", alice.user.as_str())),
        "{}",
        change.key
    );
}

#[tokio::test]
async fn a_job_that_cannot_be_published_is_rolled_back_with_503() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice").await;
    gw.js().delete_stream(names::STREAM).await.unwrap();
    let (status, answer) = json_of(
        gw.submit(&alice, json!({"language": "c", "source": HELLO_C}))
            .await,
    )
    .await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["field"], Value::Null);
    let error = answer["error"].as_str().unwrap();
    assert!(
        !error.contains("stream") && !error.contains("nats"),
        "no internal detail: {error}"
    );
    let (status, list) = gw.get_json("/api/v1/jobs", &alice).await;
    assert_eq!(status, 200);
    assert_eq!(list["jobs"], json!([]), "the record was purged");
}
