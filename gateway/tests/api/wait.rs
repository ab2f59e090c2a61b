//! `?wait=N`: the answer comes as soon as the job ends, or with the job as it is when N elapses.

use std::time::{Duration, Instant};

use cola_wire::{JobId, Reason, Status, job::now};
use reqwest::Method;
use serde_json::json;

use crate::support::{Gateway, HELLO_C, json_of};

/// Waits until the stream holds `count` job messages and returns the last one's id.
async fn queued_job(gw: &Gateway, count: u64) -> JobId {
    for _ in 0..400 {
        if gw.queue_state().await.messages >= count {
            return gw.last_message("c").await.0.id;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no job was queued");
}

#[tokio::test]
async fn a_waiting_submission_answers_as_soon_as_the_job_ends() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice").await;
    let started = Instant::now();
    let submit = gw
        .request(Method::POST, "/api/v1/jobs?wait=20", &alice)
        .json(&json!({"language": "c", "source": HELLO_C}))
        .send();
    let middleware = async {
        let id = queued_job(&gw, 1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        gw.middleware_sets(&alice, id, |r| {
            r.status = Status::Running;
            r.started_at = Some(now());
            true
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        gw.middleware_sets(&alice, id, |r| {
            r.stdout = "hello\n".into();
            r.exit_code = Some(0);
            r.finish(Status::Succeeded, None, now());
            true
        })
        .await;
        (id, Instant::now())
    };
    let (response, (id, ended)) = tokio::join!(submit, middleware);
    let answered = Instant::now();
    let (status, view) = json_of(response.unwrap()).await;
    assert_eq!(status, 201);
    assert_eq!(view["id"], id.to_string());
    assert_eq!(view["status"], "succeeded");
    assert_eq!(view["stdout"], "hello\n");
    assert_eq!(view["exit_code"], 0);
    assert!(
        view["timings_ms"]["queue"].as_u64().unwrap() >= 300,
        "{view}"
    );
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(
        answered - ended < Duration::from_secs(2),
        "answered {:?} after the job ended",
        answered - ended
    );
}

#[tokio::test]
async fn a_waiting_submission_answers_with_the_job_as_it_is_when_the_wait_elapses() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice").await;
    let started = Instant::now();
    let response = gw
        .request(Method::POST, "/api/v1/jobs?wait=1", &alice)
        .json(&json!({"language": "c", "source": HELLO_C}))
        .send();
    let middleware = async {
        // A job that starts but does not end, and an unrelated job of the same user that ends.
        let id = queued_job(&gw, 1).await;
        gw.middleware_sets(&alice, id, |r| {
            r.status = Status::Running;
            true
        })
        .await;
        let other = gw.submit_hello(&alice).await;
        gw.middleware_sets(&alice, other, |r| {
            r.finish(Status::Failed, Some(Reason::TimeLimit), now());
            true
        })
        .await;
    };
    let (response, ()) = tokio::join!(response, middleware);
    let elapsed = started.elapsed();
    let (status, view) = json_of(response.unwrap()).await;
    assert_eq!(status, 201);
    assert_eq!(view["status"], "running");
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
}

#[tokio::test]
async fn a_job_can_be_waited_for_after_submission_too() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice").await;
    let id = gw.submit_hello(&alice).await;
    let path = format!("/api/v1/jobs/{id}?wait=20");
    let show = gw.get_json(&path, &alice);
    let cancel = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        gw.middleware_sets(&alice, id, |r| {
            r.finish(Status::Cancelled, None, now());
            true
        })
        .await;
    };
    let started = Instant::now();
    let ((status, view), ()) = tokio::join!(show, cancel);
    assert_eq!((status, view["status"].as_str()), (200, Some("cancelled")));
    // Answered on the change, long before the 20 s wait would end.
    assert!(started.elapsed() < Duration::from_secs(12));

    // A job that has already ended answers at once.
    let started = Instant::now();
    let (status, view) = gw
        .get_json(&format!("/api/v1/jobs/{id}?wait=20"), &alice)
        .await;
    assert_eq!((status, view["status"].as_str()), (200, Some("cancelled")));
    assert!(started.elapsed() < Duration::from_secs(12));
}

#[tokio::test]
async fn shutting_down_answers_pending_waits_and_stops() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice").await;
    let response = gw
        .request(Method::POST, "/api/v1/jobs?wait=60", &alice)
        .json(&json!({"language": "c", "source": HELLO_C}))
        .send();
    let stop = async {
        queued_job(&gw, 1).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        gw.shutdown.cancel();
    };
    let started = Instant::now();
    let (response, ()) = tokio::join!(response, stop);
    let (status, view) = json_of(response.unwrap()).await;
    assert_eq!((status, view["status"].as_str()), (201, Some("queued")));
    assert!(started.elapsed() < Duration::from_secs(5));
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_wait_survives_a_nats_restart() {
    let mut gw = Gateway::start().await;
    let alice = gw.user("alice").await;
    let id = gw.submit_hello(&alice).await;
    let waiting = tokio::spawn(
        gw.request(Method::GET, &format!("/api/v1/jobs/{id}?wait=30"), &alice)
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.nats.server.restart().await.unwrap();

    // The job ends once everything is connected again.
    let mut ended = None;
    for _ in 0..200 {
        let ready = gw
            .http
            .get(gw.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == 200;
        let changed = ready
            && gw
                .nats
                .topology
                .jobs
                .transition(&cola_wire::JobKey::new(&alice.user, &id), |r| {
                    r.finish(Status::Succeeded, None, now());
                    true
                })
                .await
                .is_ok();
        if changed {
            ended = Some(Instant::now());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ended = ended.expect("NATS came back within 10 s");
    let response = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the wait answers")
        .unwrap()
        .unwrap();
    let (status, view) = json_of(response).await;
    assert_eq!((status, view["status"].as_str()), (200, Some("succeeded")));
    assert!(
        ended.elapsed() < Duration::from_secs(3),
        "answered {:?} after the job ended",
        ended.elapsed()
    );
}
