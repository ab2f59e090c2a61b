//! Authentication, the language list, health and readiness, start-up and shutdown.

use std::time::Duration;

use cola_gateway::{GatewayConfig, GatewayError, run, serve, tokens};
use cola_testkit::LocalServer;
use cola_wire::names;
use reqwest::{Method, header};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::support::{Caller, Gateway, json_of};

#[tokio::test]
async fn requests_without_a_valid_token_are_refused_with_401() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice").await;
    let forged = Caller {
        user: alice.user.clone(),
        token: format!("cola_{}", "A".repeat(43)),
    };
    let endpoints = [
        (Method::GET, "/api/v1/jobs".to_owned()),
        (Method::POST, "/api/v1/jobs".to_owned()),
        (
            Method::GET,
            format!("/api/v1/jobs/{}", cola_wire::JobId::new()),
        ),
        (
            Method::POST,
            format!("/api/v1/jobs/{}/cancel", cola_wire::JobId::new()),
        ),
        (Method::GET, "/api/v1/languages".to_owned()),
    ];
    for (method, path) in &endpoints {
        let anonymous = gw
            .http
            .request(method.clone(), gw.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            anonymous.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"cola\""
        );
        let (status, body) = json_of(anonymous).await;
        assert_eq!(
            (status, &body["field"]),
            (401, &Value::Null),
            "{method} {path}"
        );
        assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");

        let (status, _) = json_of(
            gw.request(method.clone(), path, &forged)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 401, "forged token on {method} {path}");
        let basic = gw
            .http
            .request(method.clone(), gw.url(path))
            .basic_auth("alice", Some(&alice.token))
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), 401, "basic auth on {method} {path}");
    }
    let submit = gw
        .submit(&forged, json!({"language": "c", "source": "x"}))
        .await;
    assert_eq!(submit.status(), 401);
    assert_eq!(gw.queue_state().await.messages, 0);

    // The real token works until it is revoked. Revoked elsewhere (here: straight in the
    // bucket, as another gateway does), it stops working as soon as this gateway's token watch
    // sees the purge: within milliseconds.
    assert_eq!(gw.get_json("/api/v1/jobs", &alice).await.0, 200);
    tokens::revoke(&gw.nats.topology.tokens, &alice.token)
        .await
        .unwrap();
    let revoked = std::time::Instant::now();
    while gw.get_json("/api/v1/jobs", &alice).await.0 != 401 {
        assert!(
            revoked.elapsed() < std::time::Duration::from_secs(2),
            "a revoked token still works"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn tokens_are_stored_only_as_their_hash() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice").await;
    assert!(alice.token.starts_with("cola_") && alice.token.len() >= 40);
    let bucket = &gw.nats.topology.tokens;
    assert_eq!(bucket.get(alice.token.as_str()).await.ok().flatten(), None);
    let stored = bucket
        .get(tokens::key_of(&alice.token))
        .await
        .unwrap()
        .expect("the hash is the key");
    let stored: Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(stored["user"], "alice");
    assert_eq!(stored["name"], "test");
    assert!(stored["created_at"].is_string());
    assert!(!String::from_utf8_lossy(&serde_json::to_vec(&stored).unwrap()).contains(&alice.token));
    let other = gw.user("alice").await;
    assert_ne!(other.token, alice.token, "every token is new");
}

#[tokio::test]
async fn languages_are_listed_with_the_versions_the_middleware_published() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice").await;
    let (status, body) = gw.get_json("/api/v1/languages", &alice).await;
    assert_eq!(status, 200);
    let names_of = |body: &Value| -> Vec<String> {
        body["languages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names_of(&body), ["c", "go", "javascript", "numeric"]);
    let numeric = &body["languages"][3];
    assert_eq!(numeric["runtime"], "numeric");
    assert_eq!(body["languages"][0]["runtime"], "program");
    assert!(numeric["version"].as_str().unwrap().starts_with("built in"));
    assert_eq!(numeric["max_limits"]["wall_time_ms"], 30_000);
    let c = &body["languages"][0];
    assert_eq!(c["source_file"], "main.c");
    assert_eq!(c["version"], "unknown");
    assert!(
        c["allowed_extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("h"))
    );
    assert_eq!(c["max_limits"]["wall_time_ms"], 60_000);
    assert!(c["default_limits"]["memory_mb"].is_u64());
    assert!(c["title"].is_string());

    gw.nats
        .topology
        .meta
        .put(
            names::META_LANGUAGE_VERSIONS,
            json!({"c": "14.2.0", "go": "go1.24"}).to_string().into(),
        )
        .await
        .unwrap();
    let (_, body) = gw.get_json("/api/v1/languages", &alice).await;
    assert_eq!(body["languages"][0]["version"], "14.2.0");
    assert_eq!(body["languages"][1]["version"], "go1.24");
    assert_eq!(body["languages"][2]["version"], "unknown");

    // How jobs are isolated: unknown until a middleware says.
    assert_eq!(body["isolation"], Value::Null);
    let isolation = json!({
        "cgroup": {"enforced": false, "detail": "no cgroup for jobs: not root"},
        "disk": {"enforced": true, "detail": "a tmpfs per job"},
    });
    gw.nats
        .topology
        .meta
        .put(names::META_ISOLATION, isolation.to_string().into())
        .await
        .unwrap();
    let (_, body) = gw.get_json("/api/v1/languages", &alice).await;
    assert_eq!(body["isolation"], isolation);
    assert_eq!(body["languages"][0]["default_limits"]["disk_mb"], 64);
    assert_eq!(body["languages"][0]["max_limits"]["disk_mb"], 1024);
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice").await;
    let (status, body) = gw.get_json("/api/v1/nothing", &alice).await;
    assert_eq!((status, body["field"].clone()), (404, Value::Null));
    let (status, _) = json_of(
        gw.request(Method::PUT, "/api/v1/jobs", &alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn health_is_liveness_and_readiness_follows_nats() {
    let mut gw = Gateway::start().await;
    let (http, base) = (gw.http.clone(), gw.base.clone());
    let get = |path: &'static str| {
        let request = http
            .get(format!("{base}{path}"))
            .timeout(Duration::from_secs(10));
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await, (200, "ok".to_owned()));
    assert_eq!(get("/readyz").await, (200, "ok".to_owned()));

    gw.nats.server.stop().await;
    let mut ready = 200;
    for _ in 0..100 {
        ready = get("/readyz").await.0;
        if ready == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready, 503, "readyz must fail once NATS is gone");
    assert_eq!(get("/healthz").await.0, 200, "the process itself is alive");
}

#[tokio::test]
async fn readiness_needs_the_stream_and_buckets() {
    let gw = Gateway::start().await;
    gw.js().delete_key_value(names::META_BUCKET).await.unwrap();
    let response = gw.http.get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 503);
}

#[tokio::test]
async fn the_gateway_refuses_to_start_without_the_stream_and_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let server = LocalServer::spawn(&cola_testkit::nats_server_binary(), dir.path(), 0)
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = GatewayConfig {
        nats_url: server.url(),
        ..GatewayConfig::default()
    };
    let error = serve(listener, config, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(error, GatewayError::MissingTopology(_)), "{error}");
    assert!(error.to_string().contains("cola up"), "{error}");
}

/// On Kubernetes NATS, the middleware and the gateway start together: a gateway given patience
/// waits for NATS to answer and for the stream and buckets to exist, then serves.
#[tokio::test]
async fn with_patience_the_gateway_waits_for_nats_and_the_job_store() {
    let port = cola_testkit::free_port().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = GatewayConfig {
        nats_url: format!("nats://127.0.0.1:{port}"),
        start_patience: Duration::from_secs(30),
        ..GatewayConfig::default()
    };
    let stop = CancellationToken::new();
    let gateway = tokio::spawn(serve(listener, config, stop.clone()));
    // Nothing at that port for a while, then a server without cola's stream and buckets.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let dir = tempfile::tempdir().unwrap();
    let server = LocalServer::spawn(&cola_testkit::nats_server_binary(), dir.path(), port)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!gateway.is_finished(), "the gateway gave up");
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    cola_wire::nats::Topology::ensure(&js, &cola_wire::nats::TopologyConfig::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!gateway.is_finished(), "the gateway gave up");
    // The energy buckets come with the middleware too.
    cola_wire::energy_store::EnergyStore::ensure(&js, 1)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let ready = async {
        loop {
            match http.get(format!("{base}/readyz")).send().await {
                Ok(r) if r.status() == 200 => break,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), ready)
        .await
        .expect("the gateway serves once the job store exists");
    stop.cancel();
    gateway.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_bad_configuration_is_refused_before_any_port_is_bound() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = GatewayConfig {
        listen: taken.local_addr().unwrap(),
        max_body_bytes: 0,
        ..GatewayConfig::default()
    };
    let error = run(config, CancellationToken::new()).await.unwrap_err();
    assert!(matches!(error, GatewayError::Config(_)), "{error}");

    // A valid configuration gets as far as the port (taken here) and says so.
    let config = GatewayConfig {
        listen: taken.local_addr().unwrap(),
        ..GatewayConfig::default()
    };
    let error = run(config, CancellationToken::new()).await.unwrap_err();
    assert!(matches!(error, GatewayError::Listen { .. }), "{error}");
}

#[tokio::test]
async fn an_unreachable_nats_is_a_clear_start_up_error() {
    let port = cola_testkit::free_port().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = GatewayConfig {
        nats_url: format!("nats://127.0.0.1:{port}"),
        ..GatewayConfig::default()
    };
    let error = serve(listener, config, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(error, GatewayError::Connect { .. }), "{error}");
    assert!(error.to_string().contains(&port.to_string()), "{error}");
}

#[tokio::test]
async fn the_gateway_stops_cleanly_on_shutdown() {
    let gw = Gateway::start().await;
    let base = gw.base.clone();
    gw.stop().await.unwrap();
    assert!(reqwest::get(format!("{base}/healthz")).await.is_err());
}
