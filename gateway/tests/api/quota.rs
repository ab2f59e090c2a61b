//! Per-user quotas: checked before anything is queued, answered with 429 and `Retry-After`.

use std::time::Duration;

use cola_gateway::quota::QuotaConfig;
use serde_json::{Value, json};

use crate::support::{Gateway, HELLO_C, json_of};

fn hello() -> Value {
    json!({"language": "c", "source": HELLO_C})
}

/// The answer's status, `Retry-After` in seconds, and body.
async fn refusal(response: reqwest::Response) -> (u16, Option<u64>, Value) {
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let (status, body) = json_of(response).await;
    (status, retry_after, body)
}

#[tokio::test]
async fn the_jobs_beyond_a_users_unfinished_quota_are_refused_and_nothing_of_them_is_queued() {
    let gw = Gateway::start_with(|c| {
        c.quotas = QuotaConfig {
            max_unfinished: 5,
            ..QuotaConfig::default()
        }
    })
    .await;
    let (ada, bob) = (gw.user("ada").await, gw.user("bob").await);
    // Five unfinished jobs in two languages: the quota is the user's, across languages.
    for _ in 0..3 {
        gw.submit_hello(&ada).await;
    }
    for _ in 0..2 {
        let response = gw
            .submit(&ada, json!({"language": "javascript", "source": "1"}))
            .await;
        assert_eq!(response.status(), 201);
    }
    let before = (gw.queue_state().await, gw.records_state().await);
    let (status, retry_after, body) = refusal(gw.submit(&ada, hello()).await).await;
    assert_eq!(status, 429, "{body}");
    assert!(retry_after.is_some_and(|s| s >= 1), "{retry_after:?}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("5 unfinished jobs"),
        "{body}"
    );
    let after = (gw.queue_state().await, gw.records_state().await);
    assert_eq!(after.0.messages, before.0.messages, "no message queued");
    assert_eq!(after.1.last_sequence, before.1.last_sequence, "no record");
    // Another user is not affected.
    gw.submit_hello(&bob).await;
    // One of ada's jobs ends (its message acknowledged, as the middleware does): one more fits.
    gw.finish_one_message().await;
    gw.submit_hello(&ada).await;
}

#[tokio::test]
async fn the_stream_itself_refuses_more_than_the_quota_on_a_users_subject() {
    // A gateway told a larger quota than the stream's (50 per user and language): the stream
    // holds the line, and the job is rolled back.
    let gw = Gateway::start_with(|c| {
        c.quotas = QuotaConfig {
            max_unfinished: 1_000,
            ..QuotaConfig::default()
        }
    })
    .await;
    let ada = gw.user("ada").await;
    for _ in 0..50 {
        gw.submit_hello(&ada).await;
    }
    let records = gw.records_state().await.messages;
    let (status, retry_after, body) = refusal(gw.submit(&ada, hello()).await).await;
    assert_eq!((status, retry_after.is_some()), (429, true), "{body}");
    assert_eq!(gw.queue_state().await.messages, 50);
    // The refused job's record is gone again (a delete marker may stay in the bucket).
    let (_, list) = gw.get_json("/api/v1/jobs?limit=200", &ada).await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 50, "{records}");
}

#[tokio::test]
async fn submissions_beyond_the_rate_wait_for_their_turn() {
    let gw = Gateway::start_with(|c| {
        c.quotas = QuotaConfig {
            submissions_per_minute: 3,
            ..QuotaConfig::default()
        }
    })
    .await;
    let ada = gw.user("ada").await;
    for _ in 0..3 {
        gw.submit_hello(&ada).await;
    }
    let (status, retry_after, body) = refusal(gw.submit(&ada, hello()).await).await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("3 jobs in a minute")
    );
    let wait = retry_after.unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    gw.submit_hello(&ada).await;
}

#[tokio::test]
async fn a_user_whose_outputs_fill_their_storage_cannot_queue_more() {
    let gw = Gateway::start_with(|c| {
        c.quotas = QuotaConfig {
            max_stored_bytes: 10 << 20,
            ..QuotaConfig::default()
        }
    })
    .await;
    let (ada, bob) = (gw.user("ada").await, gw.user("bob").await);
    // What executors and the middleware count as they store zips.
    let usage = &gw.nats.topology.usage;
    usage.add(&ada.user, 6 << 20).await.unwrap();
    usage.add(&ada.user, 4 << 20).await.unwrap();
    usage.add(&bob.user, 1 << 20).await.unwrap();
    let (status, retry_after, body) = refusal(gw.submit(&ada, hello()).await).await;
    assert_eq!(status, 429, "{body}");
    assert!(retry_after.is_some());
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("10 MB"), "{error}");
    gw.submit_hello(&bob).await;
}
