//! The numeric mode of the pages: the form shows each method's fields with its worked example,
//! a submitted form becomes a problem (or comes back with the error next to its field), and a
//! numeric job's page shows its problem, result, table and plot.

use axum::http::header;
use cola_wire::{JobId, Status, UserId, names, nats::Transition};
use serde_json::json;

use crate::support::{Browser, Web, input_value};

fn dev() -> UserId {
    UserId::parse("dev").unwrap()
}

async fn logged_in(web: &Web) -> Browser {
    let mut browser = web.browser();
    let answer = browser.dev_login("/").await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    browser
}

async fn queued_messages(web: &Web) -> u64 {
    let js = async_nats::jetstream::new(web.nats.client.clone());
    let mut stream = js.get_stream(names::STREAM).await.unwrap();
    stream.info().await.unwrap().state.messages
}

/// The bisection example as the form sends it.
fn bisection_fields(f: &str) -> Vec<(&'static str, String)> {
    vec![
        ("language", "numeric".into()),
        ("mode", "numeric".into()),
        ("method", "bisection".into()),
        ("shown_method", "bisection".into()),
        ("bisection.f", f.into()),
        ("bisection.a", "1".into()),
        ("bisection.b", "2".into()),
        ("bisection.tol", "1e-10".into()),
        ("bisection.max_iter", "100".into()),
    ]
}

async fn post(browser: &mut Browser, fields: &[(&'static str, String)]) -> crate::support::Answer {
    let csrf = browser.csrf().await;
    let mut all: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
    all.extend(fields.iter().map(|(k, v)| (*k, v.as_str())));
    browser.post_multipart("/jobs", &all).await
}

/// Whether the element with `id` is rendered hidden (and, for fieldsets, disabled).
fn is_hidden(html: &str, id: &str) -> bool {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let tag_end = at + html[at..].find('>').unwrap();
    html[at..tag_end].contains(" hidden")
}

#[tokio::test]
async fn the_numeric_form_shows_each_method_with_its_example_and_queues_the_problem() {
    let web = Web::start(|_| {}).await;
    let mut browser = logged_in(&web).await;

    let page = browser.get("/?language=numeric").await;
    assert_eq!(page.status, 200);
    assert!(!is_hidden(&page.body, "numeric-mode") && is_hidden(&page.body, "program-mode"));
    assert_eq!(input_value(&page.body, "mode").as_deref(), Some("numeric"));
    assert!(
        !is_hidden(&page.body, "method-bisection"),
        "bisection is shown first"
    );
    for method in cola_numeric::methods() {
        assert!(
            page.body
                .contains(&format!("id=\"method-{}\"", method.name)),
            "{}",
            method.name
        );
        if method.name != "bisection" {
            assert!(is_hidden(&page.body, &format!("method-{}", method.name)));
        }
        for param in &method.parameters {
            assert!(
                page.body
                    .contains(&format!("name=\"{}.{}\"", method.name, param.name))
            );
        }
    }
    assert_eq!(
        input_value(&page.body, "bisection.f").as_deref(),
        Some("x^3 + 4*x^2 - 10"),
        "the worked example is preset"
    );
    assert!(page.body.contains("left end of the bracket"), "help texts");
    let newton = browser.get("/?language=numeric&method=newton").await;
    assert!(
        !is_hidden(&newton.body, "method-newton") && is_hidden(&newton.body, "method-bisection")
    );

    // A mistake comes back next to its field, with what was typed; nothing is queued.
    let answer = post(&mut browser, &bisection_fields("x^3 + * 4")).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(
        answer.body.contains("id=\"p-bisection-f-error\""),
        "{}",
        answer.body
    );
    assert!(answer.body.contains("position 7"));
    assert_eq!(
        input_value(&answer.body, "bisection.f").as_deref(),
        Some("x^3 + * 4")
    );
    let answer = post(&mut browser, &bisection_fields("x^2 + 1")).await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.body.contains("id=\"p-bisection-a-error\""),
        "{}",
        answer.body
    );
    assert!(answer.body.contains("same sign"));
    assert_eq!(queued_messages(&web).await, 0);

    // Without the script: another language or method chosen, Run shows its form first.
    let mut switch = bisection_fields("x^3 + 4*x^2 - 10");
    switch[1].1 = "program".into();
    let answer = post(&mut browser, &switch).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(!is_hidden(&answer.body, "numeric-mode"));
    let mut switch = bisection_fields("x^3 + 4*x^2 - 10");
    switch[2].1 = "newton".into();
    let answer = post(&mut browser, &switch).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(!is_hidden(&answer.body, "method-newton"));
    assert!(answer.body.contains("These are the fields of"));
    assert_eq!(
        input_value(&answer.body, "newton.x0").as_deref(),
        Some("1.5")
    );
    assert_eq!(queued_messages(&web).await, 0, "switching submits nothing");

    // The problem as the form states it.
    let answer = post(&mut browser, &bisection_fields("x^3 + 4*x^2 - 10")).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let id: JobId = answer
        .location()
        .strip_prefix("/?submitted=")
        .and_then(|rest| rest.split('#').next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(queued_messages(&web).await, 1);
    let (record, _) = web
        .nats
        .topology
        .jobs
        .get(&cola_wire::JobKey::new(&dev(), &id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        record.problem,
        Some(
            json!({"method": "bisection", "f": "x^3 + 4*x^2 - 10", "a": 1, "b": 2, "tol": 1e-10, "max_iter": 100})
        )
    );
    // Edit and resubmit: the form comes back in numeric mode with the job's problem.
    let again = browser.get(&format!("/?from={id}")).await;
    assert!(!is_hidden(&again.body, "numeric-mode"));
    assert_eq!(
        input_value(&again.body, "bisection.tol").as_deref(),
        Some("1e-10")
    );
}

#[tokio::test]
async fn a_numeric_job_page_shows_its_problem_result_table_and_plot() {
    let web = Web::start(|_| {}).await;
    let mut browser = logged_in(&web).await;
    let answer = post(&mut browser, &bisection_fields("x^3 + 4*x^2 - 10")).await;
    let id: JobId = answer
        .location()
        .strip_prefix("/?submitted=")
        .and_then(|rest| rest.split('#').next())
        .unwrap()
        .parse()
        .unwrap();
    let page = browser.get(&format!("/jobs/{id}")).await;
    assert!(page.body.contains("Not solved yet"), "{}", page.body);

    // The middleware's part: solve, zip the files, end the record.
    let statement = cola_numeric::example(cola_numeric::Method::Bisection);
    let problem = cola_numeric::parse_problem(&statement).unwrap();
    let solution = cola_numeric::solve(&problem, &cola_numeric::Budget::unlimited());
    let object = web
        .store_output_zip(&dev(), id, solution.files(&statement))
        .await;
    let ended = web
        .nats
        .topology
        .jobs
        .transition(&cola_wire::JobKey::new(&dev(), &id), |r| {
            r.result = Some(solution.result.clone());
            r.stderr = "warning: something to know\n".into();
            r.output_object = Some(object.clone());
            r.finish(Status::Succeeded, None, cola_wire::job::now());
            true
        })
        .await
        .unwrap();
    assert!(matches!(ended, Transition::Changed(..)));

    let page = browser.get(&format!("/jobs/{id}")).await;
    assert_eq!(page.status, 200);
    let body = &page.body;
    assert!(body.contains("Bisection"), "the method");
    assert!(body.contains("id=\"problem\"") && body.contains("<code>max_iter</code>"));
    assert!(
        body.contains("id=\"result\"") && body.contains("&#34;root&#34;: 1.36523001"),
        "{body}"
    );
    assert!(body.contains("warning: something to know"));
    assert!(
        body.contains("<th scope=\"col\">f_midpoint</th>"),
        "the table's header"
    );
    assert!(body.contains("id=\"table-preview\""));
    assert!(body.contains(&format!("<img id=\"plot\" src=\"/jobs/{id}/plot.svg\"")));
    assert!(
        !body.contains("Standard output"),
        "no program output for a problem"
    );
    assert!(body.contains("Time budget"));

    let plot = browser.get(&format!("/jobs/{id}/plot.svg")).await;
    assert_eq!(plot.status, 200);
    assert_eq!(plot.headers[header::CONTENT_TYPE], "image/svg+xml");
    let csp = plot.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("sandbox"),
        "{csp}"
    );
    assert!(!csp.contains("script-src"), "{csp}");
    assert_eq!(plot.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(plot.body.contains("<svg") && plot.body.trim_end().ends_with("</svg>"));
    // A job without a zip has no plot.
    let other = post(&mut browser, &bisection_fields("x^3 + 4*x^2 - 10")).await;
    let other = other
        .location()
        .strip_prefix("/?submitted=")
        .unwrap()
        .split('#')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        browser.get(&format!("/jobs/{other}/plot.svg")).await.status,
        404
    );
}
