//! Numeric jobs at the API: `{"language": "numeric", "problem": {...}}`, validated completely
//! before anything is queued, and the catalogue of methods.

use cola_wire::{JobId, Status, Work, names};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Gateway, json_of};

fn bisection() -> Value {
    json!({"method": "bisection", "f": "x^3 + 4*x^2 - 10", "a": 1, "b": 2, "tol": 1e-10, "max_iter": 100})
}

fn with(mut problem: Value, key: &str, value: Value) -> Value {
    problem[key] = value;
    problem
}

fn without(mut problem: Value, key: &str) -> Value {
    problem.as_object_mut().unwrap().remove(key);
    problem
}

fn numeric(problem: Value) -> Value {
    json!({"language": "numeric", "problem": problem})
}

#[tokio::test]
async fn every_bad_numeric_submission_is_refused_with_its_field_and_nothing_is_queued() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice").await;
    let records_before = gw.records_state().await.last_sequence;
    let cases: Vec<(Value, &str, &str)> = vec![
        // What a numeric job is, and what it is not.
        (json!({"language": "numeric"}), "problem", "needs a problem"),
        (
            json!({"language": "numeric", "problem": bisection(), "source": "x"}),
            "source",
            "takes no source",
        ),
        (
            json!({"language": "numeric", "problem": bisection(), "files": [{"name": "main.c", "content": "x"}]}),
            "files",
            "takes no files",
        ),
        (
            json!({"language": "numeric", "problem": bisection(), "stdin": "1"}),
            "stdin",
            "takes no stdin",
        ),
        (
            json!({"language": "numeric", "problem": bisection(), "args": ["-v"]}),
            "args",
            "takes no args",
        ),
        (
            json!({"language": "c", "source": "int main;", "problem": bisection()}),
            "problem",
            "only numeric jobs",
        ),
        (
            json!({"language": "numeric", "problem": bisection(), "limits": {"wall_time_ms": 600000}}),
            "limits.wall_time_ms",
            "between 1 and 30000",
        ),
        // The problem itself.
        (numeric(json!([1, 2])), "problem", "JSON object"),
        (
            numeric(without(bisection(), "method")),
            "problem.method",
            "missing",
        ),
        (
            numeric(with(bisection(), "method", json!("bisect"))),
            "problem.method",
            "unknown method",
        ),
        (
            numeric(without(bisection(), "f")),
            "problem.f",
            "missing parameter",
        ),
        (
            numeric(with(bisection(), "x0", json!(1))),
            "problem.x0",
            "unknown parameter",
        ),
        (
            numeric(with(bisection(), "f", json!("x^3 + * 4"))),
            "problem.f",
            "at position 7",
        ),
        (
            numeric(with(bisection(), "f", json!("y^2 - 1"))),
            "problem.f",
            "y",
        ),
        (
            numeric(with(bisection(), "f", json!("x^2 + 1"))),
            "problem.a",
            "same sign",
        ),
        (
            numeric(with(with(bisection(), "a", json!(2)), "b", json!(1))),
            "problem.b",
            "greater than a",
        ),
        (
            numeric(with(bisection(), "tol", json!(0))),
            "problem.tol",
            "tol",
        ),
        (
            numeric(with(bisection(), "max_iter", json!(0))),
            "problem.max_iter",
            "max_iter",
        ),
        (
            numeric(with(bisection(), "max_iter", json!(2_000_000))),
            "problem.max_iter",
            "max_iter",
        ),
        (
            numeric(json!({"method": "simpson", "f": "x", "a": 0, "b": 1, "n": 5})),
            "problem.n",
            "even",
        ),
        (
            numeric(json!({"method": "euler", "f": "y", "t0": 0, "y0": 1, "t_end": 1, "h": 0})),
            "problem.h",
            "h",
        ),
        (
            numeric(json!({"method": "gauss", "A": [[1, 2, 3], [4, 5, 6]], "b": [1, 2]})),
            "problem.A",
            "square",
        ),
        (
            numeric(json!({"method": "gauss", "A": [[1, 2], [3, 4]], "b": [1, 2, 3]})),
            "problem.b",
            "",
        ),
        (
            numeric(json!({"method": "lu", "A": [[1, 2], [2, 4]], "b": [1, 2]})),
            "problem.A",
            "singular",
        ),
        (
            numeric(
                json!({"method": "bisection", "f": "1/x - 1", "a": 0, "b": 2, "tol": 1e-8, "max_iter": 10}),
            ),
            "problem.f",
            "inf at x = 0",
        ),
    ];
    for (body, field, says) in cases {
        let (status, answer) = json_of(gw.submit(&alice, body.clone()).await).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(answer["field"], field, "{body} → {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            !error.is_empty() && error.contains(says),
            "{body} → {answer}"
        );
    }
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
}

#[tokio::test]
async fn a_numeric_job_is_queued_on_its_subject_with_its_problem() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice").await;
    let response = gw.submit(&alice, numeric(bisection())).await;
    let (status, view) = json_of(response).await;
    assert_eq!(status, 201, "{view}");
    assert_eq!(view["language"], "numeric");
    assert_eq!(view["status"], "queued");
    assert_eq!(view["problem"], bisection());
    assert_eq!(view["result"], Value::Null);
    let id: JobId = view["id"].as_str().unwrap().parse().unwrap();

    let record = gw.record(&alice, id).await.expect("a record");
    assert_eq!(record.status, Status::Queued);
    assert_eq!(record.problem, Some(bisection()));
    assert!(record.files.is_empty() && record.stdin_bytes == 0);
    assert_eq!(
        record.limits.wall_time_ms, 5_000,
        "the numeric default budget"
    );

    let (message, msg_id) = gw.last_message("numeric").await;
    assert_eq!(msg_id, id.to_string());
    assert_eq!(
        message.work,
        Work::Problem(bisection()),
        "a problem has no files"
    );
    // The message says at which revision the record was created.
    let stream = gw.js().get_stream(names::STREAM).await.unwrap();
    let raw = stream
        .get_last_raw_message_by_subject("cola.numeric.*")
        .await
        .unwrap();
    let revision: u64 = raw
        .headers
        .get(names::RECORD_REVISION_HEADER)
        .unwrap()
        .to_string()
        .parse()
        .unwrap();
    let (_, current) = gw
        .nats
        .topology
        .jobs
        .get(&cola_wire::JobKey::new(&alice.user, &id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revision, current);

    // Once the middleware records a result, the view shows it.
    gw.middleware_sets(&alice, id, |r| {
        r.result = Some(json!({"root": 1.365, "converged": true}));
        r.finish(Status::Succeeded, None, cola_wire::job::now());
        true
    })
    .await;
    let (status, view) = gw.get_json(&format!("/api/v1/jobs/{id}"), &alice).await;
    assert_eq!(status, 200);
    assert_eq!(view["result"]["root"], 1.365);
    assert_eq!(view["status"], "succeeded");
}

#[tokio::test]
async fn the_methods_are_listed_with_their_parameters_and_an_example() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice").await;
    let (status, body) = gw.get_json("/api/v1/numeric/methods", &alice).await;
    assert_eq!(status, 200);
    let methods = body["methods"].as_array().unwrap();
    let names: Vec<&str> = methods
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for expected in [
        "bisection",
        "regula_falsi",
        "brent",
        "secant",
        "newton",
        "fixed_point",
        "gauss",
        "lu",
        "jacobi",
        "gauss_seidel",
        "trapezoid",
        "simpson",
        "romberg",
        "gauss_legendre",
        "euler",
        "heun",
        "rk4",
        "rk45",
        "lagrange",
        "newton_divided",
        "cubic_spline",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let bisection = methods.iter().find(|m| m["name"] == "bisection").unwrap();
    assert_eq!(bisection["family"], "roots");
    let parameters: Vec<(&str, &str, bool)> = bisection["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert!(p["meaning"].as_str().is_some_and(|m| !m.is_empty()), "{p}");
            assert!(p.get("default").is_some(), "{p}");
            (
                p["name"].as_str().unwrap(),
                p["type"].as_str().unwrap(),
                p["required"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        parameters,
        [
            ("f", "expression", true),
            ("a", "number", true),
            ("b", "number", true),
            ("tol", "number", true),
            ("max_iter", "integer", true)
        ]
    );
    let newton = methods.iter().find(|m| m["name"] == "newton").unwrap();
    assert!(
        newton["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "df" && p["required"] == false)
    );
    // Every example is a problem the API accepts as it is.
    for method in methods {
        let (status, answer) =
            json_of(gw.submit(&alice, numeric(method["example"].clone())).await).await;
        assert_eq!(status, 201, "{}: {answer}", method["name"]);
    }

    // Like the rest of the API, it needs a token.
    let anonymous = gw
        .http
        .request(Method::GET, gw.url("/api/v1/numeric/methods"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}
