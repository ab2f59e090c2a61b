//! Energy-aware placement end to end, on a real nats-server with its MQTT listener (as `cola up
//! --mqtt-listen` starts it), a real MQTT client (`mosquitto_pub`, Debian's
//! `mosquitto-clients`), the gateway and real `cola middleware` processes: telemetry in through
//! MQTT, kept per node, shown by `GET /api/v1/energy` and in the job view; stale and malformed
//! telemetry; the greener node taking the work unless there is a backlog; time shifting with
//! its deadline, and with a forecast from the last period's readings.

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use common::Stack;
use serde_json::{Value, json};

/// A C program that uses some CPU (≈ 50 ms) and says where it ran.
const C_WORK: &str = "#include <stdio.h>\nint main(void) { volatile unsigned long s = 0; \
     for (unsigned long i = 0; i < 40000000UL; i++) s += i; printf(\"%lu\\n\", s); return 0; }\n";

/// Publishes `payload` on the MQTT `topic` (QoS 1) through the stack's MQTT listener.
fn publish(stack: &Stack, topic: &str, payload: &str) {
    let port = stack.nats.mqtt_port.expect("an MQTT listener").to_string();
    let status = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            payload,
        ])
        .status()
        .expect("mosquitto_pub (Debian mosquitto-clients; scripts/setup.sh installs it)");
    assert!(status.success(), "mosquitto_pub {topic} {payload}");
}

/// Reports `share` for `node` over MQTT.
fn report(stack: &Stack, node: &str, share: f64) {
    publish(
        stack,
        &format!("energy/{node}"),
        &json!({"renewable_share": share, "solar_w": share * 2000.0}).to_string(),
    );
}

/// `GET /api/v1/energy` until `done` holds of its nodes (5 s at most).
async fn energy_until(stack: &Stack, token: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let response = stack.get(token, "/api/v1/energy").await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        let nodes = body["nodes"].as_array().unwrap().clone();
        if done(&nodes) {
            return nodes;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "energy: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn share_of(nodes: &[Value], node: &str) -> Option<f64> {
    nodes.iter().find(|n| n["node"] == node)?["renewable_share"].as_f64()
}

/// Waits until a middleware on each of `nodes` has said it is there.
async fn nodes_present(stack: &Stack, nodes: &[&str]) {
    let js = async_nats::jetstream::new(stack.nats.client.clone());
    let bucket = js.get_key_value("cola-nodes").await.unwrap();
    let start = Instant::now();
    loop {
        let mut present = 0;
        for node in nodes {
            if bucket.get(*node).await.unwrap().is_some() {
                present += 1;
            }
        }
        if present == nodes.len() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "middlewares not present: {}",
            stack.middleware_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A free port on loopback, for a middleware's `/metrics`.
fn free_port() -> u16 {
    cola_testkit::free_port().unwrap()
}

/// The middleware's metrics once they include `sample` (a job's metrics are counted just
/// after its terminal record is written, which is what the job's view waited for).
async fn metrics_with(stack: &Stack, port: u16, sample: &str) -> String {
    for _ in 0..100 {
        let text = stack
            .http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains(sample) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {sample} in the metrics after 5 s");
}

/// The value of the sample `name` (with its labels, as exposed) in `text`.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn telemetry_over_mqtt_reaches_the_api_and_the_job_view() {
    let mut stack = Stack::with_mqtt(|_| {}).await;
    let health = free_port();
    let health_listen = format!("127.0.0.1:{health}");
    stack.start_middleware_with(&["--node-name", "a", "--health-listen", &health_listen]);
    let token = stack.token("ada").await;
    nodes_present(&stack, &["a"]).await;

    report(&stack, "a", 0.8);
    report(&stack, "b", 0.2);
    // What is refused, and changes nothing: not JSON, a share out of range, a node name that
    // is not one; a device publishing anywhere but energy/<node> (here: as a job).
    publish(&stack, "energy/a", "not json");
    publish(&stack, "energy/a", r#"{"renewable_share": 1.5}"#);
    publish(&stack, "energy/bad@node", r#"{"renewable_share": 0.5}"#);
    publish(&stack, "cola/c/ada", r#"{"language": "c"}"#);

    let nodes = energy_until(&stack, &token, |n| n.len() == 2).await;
    assert_eq!(share_of(&nodes, "a"), Some(0.8));
    assert_eq!(share_of(&nodes, "b"), Some(0.2));
    assert_eq!(nodes[0]["solar_w"], 1600.0);
    assert_eq!(nodes[0]["stale"], false);
    assert!(nodes[0]["updated_at"].as_str().unwrap().ends_with('Z'));

    // The job ran on node a, while its power was 80% renewable, and its CPU time is counted
    // so.
    let view = stack
        .run(&token, json!({"language": "c", "source": C_WORK}))
        .await;
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(view["node"], "a");
    assert_eq!(view["renewable_share"], 0.8);
    let cpu_ms = view["timings_ms"]["cpu"].as_u64().unwrap();
    assert!(cpu_ms > 0, "{view}");

    let text = metrics_with(&stack, health, "power=\"grid\"").await;
    let counted = |outcome: &str| {
        sample(
            &text,
            &format!("cola_energy_readings_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(counted("kept"), Some(2.0), "{text}");
    assert_eq!(counted("not_json"), Some(1.0), "{text}");
    assert_eq!(counted("out_of_range"), Some(1.0), "{text}");
    assert_eq!(counted("node_name"), Some(1.0), "{text}");
    let renewable = sample(
        &text,
        "cola_executor_cpu_seconds_total{node=\"a\",power=\"renewable\"}",
    )
    .unwrap();
    let grid = sample(
        &text,
        "cola_executor_cpu_seconds_total{node=\"a\",power=\"grid\"}",
    )
    .unwrap();
    let total = cpu_ms as f64 / 1000.0;
    assert!(
        (renewable - 0.8 * total).abs() < 1e-6,
        "{renewable} of {total}"
    );
    assert!((grid - 0.2 * total).abs() < 1e-6, "{grid} of {total}");

    // The device's publish on cola/c/ada never reached the job stream: the one message it
    // ever held is the job submitted through the API (which may still be there, being acked).
    let js = async_nats::jetstream::new(stack.nats.client.clone());
    let mut stream = js.get_stream("COLA").await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.state.last_sequence, 1, "{:?}", info.state);
    assert!(!stack.middleware_log().contains("undecodable"));
}

#[tokio::test]
async fn stale_readings_count_as_grid_power() {
    let fresh_for = Duration::from_secs(2);
    let mut stack = Stack::with_mqtt(|g| g.energy_fresh_for = fresh_for).await;
    stack.start_middleware_with(&["--node-name", "a", "--energy-fresh-for", "2s"]);
    let token = stack.token("ada").await;
    nodes_present(&stack, &["a"]).await;
    report(&stack, "a", 0.9);
    energy_until(&stack, &token, |n| share_of(n, "a") == Some(0.9)).await;
    let view = stack
        .run(&token, json!({"language": "c", "source": C_WORK}))
        .await;
    assert_eq!(view["renewable_share"], 0.9);

    tokio::time::sleep(fresh_for + Duration::from_millis(500)).await;
    let nodes = energy_until(&stack, &token, |n| n.len() == 1).await;
    assert_eq!(nodes[0]["stale"], true, "{nodes:?}");
    let view = stack
        .run(&token, json!({"language": "c", "source": C_WORK}))
        .await;
    assert_eq!(view["node"], "a");
    assert_eq!(view["renewable_share"], Value::Null, "{view}");
}

#[tokio::test]
async fn the_greener_node_takes_the_work_unless_there_is_a_backlog() {
    let mut stack = Stack::with_mqtt(|_| {}).await;
    for node in ["a", "b"] {
        stack.start_middleware_with(&["--node-name", node, "--lookahead", "1"]);
    }
    let token = stack.token("ada").await;
    nodes_present(&stack, &["a", "b"]).await;

    // One job at a time: each goes to the greener node, whichever it is.
    for (green, brown) in [("a", "b"), ("b", "a")] {
        report(&stack, green, 0.9);
        report(&stack, brown, 0.1);
        energy_until(&stack, &token, |n| share_of(n, green) == Some(0.9)).await;
        // The middlewares' views follow the bucket.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut on_green = 0;
        for _ in 0..6 {
            let view = stack
                .run(
                    &token,
                    json!({"language": "c", "source": "int main(void) { return 0; }\n"}),
                )
                .await;
            assert_eq!(view["status"], "succeeded", "{view}");
            if view["node"] == green {
                on_green += 1;
            }
            assert!(
                view["timings_ms"]["queue"].as_u64().unwrap() < 2_000,
                "placement held a job: {view}"
            );
        }
        assert!(
            on_green >= 5,
            "{on_green} of 6 jobs on the greener node {green}"
        );
    }

    // A backlog (more jobs than the greener node can start): every node works.
    let mut ids = Vec::new();
    for _ in 0..10 {
        let body = json!({"language": "c", "source": "#include <unistd.h>\nint main(void) { usleep(700000); return 0; }\n"});
        let (status, view) = stack.submit(&token, body, 0).await;
        assert_eq!(status, 201, "{view}");
        ids.push(view["id"].as_str().unwrap().to_owned());
    }
    let mut nodes = Vec::new();
    for id in &ids {
        let view = stack
            .wait_terminal(&token, id, Duration::from_secs(60))
            .await;
        assert_eq!(view["status"], "succeeded", "{view}");
        nodes.push(view["node"].as_str().unwrap().to_owned());
    }
    for node in ["a", "b"] {
        assert!(
            nodes.iter().any(|n| n == node),
            "no job of the backlog ran on {node}: {nodes:?}"
        );
    }
}

#[tokio::test]
async fn a_time_shiftable_job_waits_for_renewable_power_and_starts_in_time() {
    let mut stack = Stack::with_mqtt(|_| {}).await;
    stack.start_middleware_with(&["--node-name", "a", "--shift-recheck", "300ms"]);
    let token = stack.token("ada").await;
    nodes_present(&stack, &["a"]).await;
    report(&stack, "a", 0.1);
    energy_until(&stack, &token, |n| share_of(n, "a") == Some(0.1)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // No green node: it waits, and starts before its deadline all the same.
    let not_after = Utc::now() + chrono::Duration::seconds(7);
    let (status, view) = stack.submit(&token, shiftable(not_after), 0).await;
    assert_eq!(status, 201, "{view}");
    let late = view["id"].as_str().unwrap().to_owned();
    let view = stack
        .wait_for(&token, &late, Duration::from_secs(5), waiting)
        .await;
    assert_eq!(view["status"], "queued");
    assert_eq!(
        view["schedule"]["not_after"].as_str().map(parse),
        Some(not_after)
    );

    // Another, with time to spare: it starts once a node turns green.
    let (_, view) = stack
        .submit(
            &token,
            shiftable(Utc::now() + chrono::Duration::minutes(10)),
            0,
        )
        .await;
    let green = view["id"].as_str().unwrap().to_owned();
    stack
        .wait_for(&token, &green, Duration::from_secs(5), waiting)
        .await;
    // And one cancelled while it waits.
    let (_, view) = stack
        .submit(
            &token,
            shiftable(Utc::now() + chrono::Duration::minutes(10)),
            0,
        )
        .await;
    let cancelled = view["id"].as_str().unwrap().to_owned();
    stack
        .wait_for(&token, &cancelled, Duration::from_secs(5), waiting)
        .await;
    assert_eq!(stack.cancel(&token, &cancelled).await, 202);
    let view = stack
        .wait_terminal(&token, &cancelled, Duration::from_secs(5))
        .await;
    assert_eq!(view["status"], "cancelled", "{view}");

    let view = stack
        .wait_terminal(&token, &late, Duration::from_secs(20))
        .await;
    assert_eq!(view["status"], "succeeded", "{view}");
    let started = parse(view["started_at"].as_str().unwrap());
    assert!(
        started < not_after,
        "started {started}, not after {not_after}"
    );
    assert!(
        started > not_after - chrono::Duration::seconds(4),
        "it did not wait: started {started}, not after {not_after}"
    );
    assert_eq!(view["waiting"], Value::Null);
    assert_eq!(view["renewable_share"], 0.1);

    assert_eq!(stack.view(&token, &green).await["status"], "queued");
    report(&stack, "a", 0.9);
    let view = stack
        .wait_terminal(&token, &green, Duration::from_secs(5))
        .await;
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(view["renewable_share"], 0.9);

    // A schedule is checked where it enters.
    for (schedule, why) in [
        (json!({"not_after": "tomorrow"}), "RFC 3339"),
        (json!({"not_after": Utc::now().to_rfc3339()}), "ahead"),
        (
            json!({"not_after": (Utc::now() + chrono::Duration::days(2)).to_rfc3339()}),
            "24 hours",
        ),
        (json!({}), "not_after"),
    ] {
        let body = json!({"language": "c", "source": "int main(void) { return 0; }\n", "schedule": schedule});
        let (status, answer) = stack.submit(&token, body, 0).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["field"], "schedule.not_after", "{answer}");
        assert!(answer.to_string().contains(why), "{answer}");
    }
    let numeric = json!({
        "language": "numeric",
        "problem": {"method": "bisection", "f": "x^2 - 2", "a": 0, "b": 2, "tol": 1e-9},
        "schedule": {"not_after": (Utc::now() + chrono::Duration::hours(1)).to_rfc3339()},
    });
    let (status, answer) = stack.submit(&token, numeric, 0).await;
    assert_eq!(status, 400, "{answer}");
}

/// A C job that may start as late as `not_after`.
fn shiftable(not_after: DateTime<Utc>) -> Value {
    json!({
        "language": "c",
        "source": "int main(void) { return 0; }\n",
        "schedule": {"not_after": not_after.to_rfc3339()},
    })
}

/// Whether a job view says it waits for renewable power.
fn waiting(view: &Value) -> bool {
    view["waiting"] == "renewable_power"
}

#[tokio::test]
async fn a_shiftable_job_does_not_wait_for_sun_the_same_hours_a_period_ago_did_not_bring() {
    let mut stack = Stack::with_mqtt(|_| {}).await;
    stack.start_middleware_with(&[
        "--node-name",
        "a",
        "--shift-recheck",
        "300ms",
        "--forecast-period",
        "10s",
    ]);
    let token = stack.token("ada").await;
    nodes_present(&stack, &["a"]).await;
    report(&stack, "a", 0.3);
    energy_until(&stack, &token, |n| share_of(n, "a") == Some(0.3)).await;

    // The readings do not go back a period yet: no forecast, so the job waits for 50%.
    let (status, view) = stack
        .submit(
            &token,
            shiftable(Utc::now() + chrono::Duration::minutes(10)),
            0,
        )
        .await;
    assert_eq!(status, 201, "{view}");
    let id = view["id"].as_str().unwrap().to_owned();
    stack
        .wait_for(&token, &id, Duration::from_secs(5), waiting)
        .await;
    // Once they do, they say the last period never passed 30%: nothing better is coming, so
    // it starts on the greenest node now, ten minutes before it had to.
    let view = stack
        .wait_terminal(&token, &id, Duration::from_secs(20))
        .await;
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(view["renewable_share"], 0.3);
    let waited =
        parse(view["started_at"].as_str().unwrap()) - parse(view["created_at"].as_str().unwrap());
    assert!(
        waited > chrono::Duration::seconds(7) && waited < chrono::Duration::seconds(15),
        "waited {waited} (a period is 10 s)"
    );
}

fn parse(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}
