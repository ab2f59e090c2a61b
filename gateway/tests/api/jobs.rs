//! Reading jobs back: listing, isolation between users, cancellation, output download.

use cola_wire::{JobId, Status, job::now, names};
use reqwest::{Method, header};
use serde_json::{Value, json};

use crate::support::{Gateway, json_of};

fn ids_of(list: &Value) -> Vec<String> {
    list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn listing_is_newest_first_paginated_and_per_user() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice").await;
    let bob = gw.user("bob").await;
    let (status, empty) = gw.get_json("/api/v1/jobs", &alice).await;
    assert_eq!((status, empty), (200, json!({"jobs": [], "next": null})));

    let mut mine = Vec::new();
    for _ in 0..5 {
        mine.push(gw.submit_hello(&alice).await.to_string());
    }
    let bobs = gw.submit_hello(&bob).await.to_string();
    mine.reverse(); // newest first

    let (_, all) = gw.get_json("/api/v1/jobs", &alice).await;
    assert_eq!(ids_of(&all), mine);
    assert_eq!(all["next"], Value::Null);
    assert_eq!(all["jobs"][0]["status"], "queued");

    let (_, page1) = gw.get_json("/api/v1/jobs?limit=2", &alice).await;
    assert_eq!(ids_of(&page1), mine[0..2]);
    assert_eq!(page1["next"], mine[1]);
    let (_, page2) = gw
        .get_json(&format!("/api/v1/jobs?limit=2&before={}", mine[1]), &alice)
        .await;
    assert_eq!(ids_of(&page2), mine[2..4]);
    assert_eq!(page2["next"], mine[3]);
    let (_, page3) = gw
        .get_json(&format!("/api/v1/jobs?limit=2&before={}", mine[3]), &alice)
        .await;
    assert_eq!(ids_of(&page3), mine[4..]);
    assert_eq!(page3["next"], Value::Null);

    let (_, theirs) = gw.get_json("/api/v1/jobs", &bob).await;
    assert_eq!(ids_of(&theirs), [bobs]);

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("before=nope", "before"),
    ] {
        let (status, answer) = gw.get_json(&format!("/api/v1/jobs?{query}"), &alice).await;
        assert_eq!(
            (status, answer["field"].as_str()),
            (400, Some(field)),
            "{query}"
        );
    }
}

#[tokio::test]
async fn a_user_cannot_see_list_download_or_cancel_another_users_job() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice").await;
    let bob = gw.user("bob").await;
    let id = gw.submit_hello(&bob).await;
    gw.nats
        .topology
        .outputs
        .put(
            names::output_object(&bob.user, &id).as_str(),
            &mut &b"PK zip"[..],
        )
        .await
        .unwrap();

    let (status, _) = gw.get_json(&format!("/api/v1/jobs/{id}"), &alice).await;
    assert_eq!(status, 404);
    let (status, _) = gw
        .get_json(&format!("/api/v1/jobs/{id}/output.zip"), &alice)
        .await;
    assert_eq!(status, 404);
    let response = gw
        .request(Method::POST, &format!("/api/v1/jobs/{id}/cancel"), &alice)
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("no such job")));
    let (_, list) = gw.get_json("/api/v1/jobs", &alice).await;
    assert_eq!(list["jobs"], json!([]));
    assert!(!gw.record(&bob, id).await.unwrap().cancel_requested);

    // Bob himself sees all of it.
    let (status, _) = gw.get_json(&format!("/api/v1/jobs/{id}"), &bob).await;
    assert_eq!(status, 200);

    // A malformed or unknown id looks exactly the same.
    for path in [
        "/api/v1/jobs/not-a-uuid".to_owned(),
        "/api/v1/jobs/..%2F..%2Fetc".to_owned(),
        format!("/api/v1/jobs/{}", JobId::new()),
        format!("/api/v1/jobs/{}/output.zip", JobId::new()),
    ] {
        let (status, body) = gw.get_json(&path, &alice).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("no such job")),
            "{path}"
        );
    }
}

#[tokio::test]
async fn cancelling_asks_the_middleware_and_an_ended_job_cannot_be_cancelled() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice").await;
    let id = gw.submit_hello(&alice).await;
    let cancel = || async {
        let response = gw
            .request(Method::POST, &format!("/api/v1/jobs/{id}/cancel"), &alice)
            .send()
            .await
            .unwrap();
        json_of(response).await
    };
    let (status, view) = cancel().await;
    assert_eq!(status, 202);
    assert_eq!(view["cancel_requested"], true);
    assert_eq!(
        view["status"], "queued",
        "the gateway never changes the status"
    );
    let record = gw.record(&alice, id).await.unwrap();
    assert!(record.cancel_requested);
    assert_eq!(record.status, Status::Queued);

    // Asking twice is fine.
    assert_eq!(cancel().await.0, 202);

    gw.middleware_sets(&alice, id, |r| {
        r.finish(Status::Cancelled, None, now());
        true
    })
    .await;
    let (status, body) = cancel().await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test]
async fn the_output_zip_is_streamed_from_the_object_store() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice").await;
    let id = gw.submit_hello(&alice).await;
    let path = format!("/api/v1/jobs/{id}/output.zip");
    let (status, body) = gw.get_json(&path, &alice).await;
    assert_eq!(status, 409, "a job that has not ended: {body}");
    assert!(
        body["error"].as_str().unwrap().contains("not ended"),
        "{body}"
    );

    // Several chunks' worth, to cross the object store's chunking.
    let zip: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let object = names::output_object(&alice.user, &id);
    gw.nats
        .topology
        .outputs
        .put(object.as_str(), &mut zip.as_slice())
        .await
        .unwrap();
    gw.middleware_sets(&alice, id, |r| {
        r.output_object = Some(object.clone());
        r.finish(Status::Succeeded, None, now());
        true
    })
    .await;

    let response = gw.request(Method::GET, &path, &alice).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/zip");
    assert_eq!(
        response.headers()[header::CONTENT_DISPOSITION],
        format!("attachment; filename=\"{id}-output.zip\"").as_str()
    );
    assert_eq!(response.bytes().await.unwrap(), zip);

    let (_, view) = gw.get_json(&format!("/api/v1/jobs/{id}"), &alice).await;
    assert_eq!(view["output_url"], path);
    assert_eq!(view["status"], "succeeded");

    // A job that ended without storing a zip (cancelled while queued) has an empty one.
    let id = gw.submit_hello(&alice).await;
    gw.middleware_sets(&alice, id, |r| {
        r.finish(Status::Cancelled, None, now());
        true
    })
    .await;
    let response = gw
        .request(
            Method::GET,
            &format!("/api/v1/jobs/{id}/output.zip"),
            &alice,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/zip");
    let zip = response.bytes().await.unwrap();
    assert_eq!(
        zip::ZipArchive::new(std::io::Cursor::new(zip))
            .unwrap()
            .len(),
        0
    );
}
