//! The Prometheus metrics of the gateway (`/metrics` on its port) and the middleware (`/metrics`
//! on its health listener), read as a scraper reads them: what they count after real jobs,
//! that no label names a user or a job, and a real Prometheus scraping both, loading the
//! alerting rules of `k8s/monitoring` and answering every query of its dashboard.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{C_HELLO, Stack, job};
use serde_json::{Value, json};

const USER: &str = "metrics-user";

/// A free port on loopback.
fn free_port() -> u16 {
    cola_localnats::free_port().unwrap()
}

/// The stack with its middleware's health listener (probes and metrics) on a free port; the
/// listener's address.
async fn stack_with_health() -> (Stack, String) {
    let mut stack = Stack::without_middleware().await;
    let health = format!("127.0.0.1:{}", free_port());
    stack.middleware_args = vec!["--health-listen".into(), health.clone()];
    stack.start_middleware();
    (stack, format!("http://{health}"))
}

fn numeric_job() -> Value {
    json!({ "language": "numeric", "problem": {
        "method": "bisection", "f": "x^2 - 2", "a": 0, "b": 2, "tol": 1e-9, "max_iter": 100,
    }})
}

/// The samples of an exposition, by their name and labels as written (`name{a="b"}`).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// `GET {base}/metrics`, checked to be OpenMetrics text, once it answers.
async fn scrape(http: &reqwest::Client, base: &str) -> String {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = http.get(format!("{base}/metrics")).send().await
            && response.status() == 200
        {
            let content_type = response.headers()["content-type"].to_str().unwrap();
            assert!(
                content_type.starts_with("application/openmetrics-text"),
                "{content_type}"
            );
            let text = response.text().await.unwrap();
            assert!(text.ends_with("# EOF\n"), "{text}");
            return text;
        }
        assert!(Instant::now() < until, "{base}/metrics never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no sample {series} in {samples:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_jobs_requests_and_refusals_and_name_no_user_or_job() {
    let (stack, health) = stack_with_health().await;
    let token = stack.token(USER).await;
    let hello = stack.run(&token, job("c", C_HELLO)).await;
    assert_eq!(hello["status"], "succeeded", "{hello}");
    let broken = stack
        .run(&token, job("c", "int main(void) { return x; }\n"))
        .await;
    assert_eq!(broken["reason"], "compile_error", "{broken}");
    let solved = stack.run(&token, numeric_job()).await;
    assert_eq!(solved["status"], "succeeded", "{solved}");
    let (status, _) = stack.submit(&token, json!({"language": "cobol"}), 0).await;
    assert_eq!(status, 400);

    let gateway_text = scrape(&stack.http, &stack.url).await;
    let gateway = samples(&gateway_text);
    assert_eq!(
        value(&gateway, r#"cola_jobs_submitted_total{language="c"}"#),
        2.0
    );
    assert_eq!(
        value(&gateway, r#"cola_jobs_submitted_total{language="numeric"}"#),
        1.0
    );
    assert_eq!(
        value(
            &gateway,
            r#"cola_submissions_refused_total{cause="validation"}"#
        ),
        1.0
    );
    // `run` reads each job's view by its id: counted under the route's template.
    let views = r#"cola_http_requests_total{route="/api/v1/jobs/{id}",method="GET",code="200"}"#;
    assert!(value(&gateway, views) >= 3.0, "{gateway_text}");
    let posts = r#"cola_http_request_duration_seconds_count{route="/api/v1/jobs",method="POST"}"#;
    assert_eq!(value(&gateway, posts), 4.0);
    assert_eq!(value(&gateway, "cola_nats_connected"), 1.0);
    assert_eq!(value(&gateway, "cola_nats_reconnects_total"), 0.0);

    let middleware_text = scrape(&stack.http, &health).await;
    let middleware = samples(&middleware_text);
    let finished = |labels: &str| {
        value(
            &middleware,
            &format!("cola_jobs_finished_total{{{labels}}}"),
        )
    };
    assert_eq!(
        finished(r#"language="c",status="succeeded",reason="""#),
        1.0
    );
    assert_eq!(
        finished(r#"language="c",status="failed",reason="compile_error""#),
        1.0
    );
    assert_eq!(
        finished(r#"language="numeric",status="succeeded",reason="""#),
        1.0
    );
    for histogram in ["queue", "run", "total"] {
        let count = format!(r#"cola_job_{histogram}_seconds_count{{language="c"}}"#);
        assert_eq!(value(&middleware, &count), 2.0, "{middleware_text}");
    }
    // A job's time is under its bucket's bound: the C jobs took less than a minute in all.
    let within_a_minute = r#"cola_job_total_seconds_bucket{le="60.0",language="c"}"#;
    assert_eq!(value(&middleware, within_a_minute), 2.0);
    assert_eq!(
        value(&middleware, r#"cola_jobs_in_flight{language="c"}"#),
        0.0
    );
    assert_eq!(value(&middleware, "cola_consumer_pending_messages"), 0.0);
    assert_eq!(
        value(&middleware, "cola_consumer_ack_pending_messages"),
        0.0
    );
    assert!(value(&middleware, "cola_executors_waiting") >= 0.0);
    assert_eq!(value(&middleware, "cola_nats_connected"), 1.0);
    assert_eq!(value(&middleware, "cola_middleware_ready"), 1.0);

    // Nothing that names a person or a job, in any label or anywhere else.
    for text in [&gateway_text, &middleware_text] {
        for secret in [
            USER,
            &token,
            hello["id"].as_str().unwrap(),
            solved["id"].as_str().unwrap(),
        ] {
            assert!(!text.contains(secret), "{secret} in the metrics:\n{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_over_the_quota_is_counted_by_its_cause() {
    // No middleware: the first job stays unfinished, and the second is one too many.
    let stack = Stack::start_with_gateway(|config| config.quotas.max_unfinished = 1).await;
    let token = stack.token(USER).await;
    let (first, view) = stack.submit(&token, numeric_job(), 0).await;
    assert_eq!(first, 201, "{view}");
    let (second, view) = stack.submit(&token, numeric_job(), 0).await;
    assert_eq!(second, 429, "{view}");

    let gateway = samples(&scrape(&stack.http, &stack.url).await);
    assert_eq!(
        value(&gateway, r#"cola_submissions_refused_total{cause="quota"}"#),
        1.0
    );
    assert_eq!(
        value(&gateway, r#"cola_jobs_submitted_total{language="numeric"}"#),
        1.0
    );
    let refused = r#"cola_http_requests_total{route="/api/v1/jobs",method="POST",code="429"}"#;
    assert_eq!(value(&gateway, refused), 1.0);
}

/// A real Prometheus (Debian's `prometheus`, installed by `scripts/setup.sh`), scraping the
/// given targets every second, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rules = monitoring_file("alerts.yaml");
        let jobs: Vec<String> = targets
            .iter()
            .map(|(job, address)| {
                format!(
                    "  - job_name: {job}\n    static_configs:\n      - targets: ['{address}']\n"
                )
            })
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: ['{}']\nscrape_configs:\n{}",
            rules.display(),
            jobs.concat()
        );
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (Debian's package; scripts/setup.sh installs it)");
        Self {
            child,
            url: format!("http://{listen}"),
            _dir: dir,
        }
    }

    /// Prometheus's answer to a `GET` of its HTTP API at `path` with `params`.
    async fn api(
        &self,
        http: &reqwest::Client,
        path: &str,
        params: &[(&str, &str)],
    ) -> Option<Value> {
        let url = format!("{}/api/v1/{path}", self.url);
        let response = http.get(url).query(params).send().await.ok()?;
        response.json().await.ok()
    }

    /// The value of the instant query `query` once it has exactly one series, as a number.
    async fn query(&self, http: &reqwest::Client, query: &str) -> Option<f64> {
        let answer = self.api(http, "query", &[("query", query)]).await?;
        let result = answer["data"]["result"].as_array()?;
        let [series] = result.as_slice() else {
            return None;
        };
        series["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `query` answers `expected`.
    async fn until_equals(&self, http: &reqwest::Client, query: &str, expected: f64) {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = self.query(http, query).await;
            if answer == Some(expected) {
                return;
            }
            assert!(
                Instant::now() < until,
                "Prometheus answers {answer:?} to {query}, not {expected}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// A file of `k8s/monitoring`.
fn monitoring_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../k8s/monitoring")
        .join(name)
}

/// Every query of the Grafana dashboard, Grafana's `$__rate_interval` read as one minute.
fn dashboard_queries() -> Vec<String> {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(monitoring_file("dashboard.json")).unwrap())
            .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let queries: Vec<String> = panels
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap())
        .map(|target| {
            target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
        })
        .collect();
    assert!(queries.len() >= panels.len(), "{queries:?}");
    queries
}

/// The `cola_…` metric names `text` mentions.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("cola_") {
        let name: String = rest[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[start + name.len()..];
        names.insert(name);
    }
    names
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_both_services_and_answers_queries_about_the_jobs() {
    let (stack, health) = stack_with_health().await;
    let gateway = stack.url.trim_start_matches("http://").to_owned();
    let middleware = health.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(&[("gateway", &gateway), ("middleware", &middleware)]);
    let token = stack.token(USER).await;
    for _ in 0..3 {
        let view = stack.run(&token, numeric_job()).await;
        assert_eq!(view["status"], "succeeded", "{view}");
    }
    let hello = stack.run(&token, job("c", C_HELLO)).await;
    assert_eq!(hello["status"], "succeeded", "{hello}");
    // A refusal, so that every family the dashboard reads has a sample.
    let (status, _) = stack.submit(&token, json!({"language": "cobol"}), 0).await;
    assert_eq!(status, 400);

    let http = &stack.http;
    prometheus
        .until_equals(http, r#"up{job="gateway"}"#, 1.0)
        .await;
    prometheus
        .until_equals(http, r#"up{job="middleware"}"#, 1.0)
        .await;
    prometheus
        .until_equals(http, "sum(cola_jobs_submitted_total)", 4.0)
        .await;
    prometheus
        .until_equals(
            http,
            r#"sum(cola_jobs_finished_total{status="succeeded",language="numeric"})"#,
            3.0,
        )
        .await;
    prometheus
        .until_equals(
            http,
            r#"sum(cola_job_total_seconds_count{language="c"})"#,
            1.0,
        )
        .await;
    // A quantile over the histogram: the C job's total time, within its bucket bounds.
    let p95 =
        r#"histogram_quantile(0.95, sum by (le) (cola_job_total_seconds_bucket{language="c"}))"#;
    let answer = prometheus
        .query(http, p95)
        .await
        .expect("a p95 of the C jobs");
    assert!(answer > 0.0 && answer <= 300.0, "{answer}");

    // The alerting rules are loaded and evaluate without error; none is pending or firing on a
    // healthy cola once both services were scraped.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let rules = prometheus.api(http, "rules", &[]).await.expect("the rules");
        let rules: Vec<Value> = rules["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|group| group["rules"].as_array().unwrap().clone())
            .collect();
        assert_eq!(rules.len(), 4, "{rules:?}");
        assert!(rules.iter().all(|r| r["health"] == "ok"), "{rules:?}");
        if rules.iter().all(|r| r["state"] == "inactive") {
            break;
        }
        assert!(
            Instant::now() < until,
            "alerts on a healthy cola: {rules:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Every query of the dashboard is valid, and every metric it or the alerts name is one
    // the services serve.
    for query in dashboard_queries() {
        let answer = prometheus.api(http, "query", &[("query", &query)]).await;
        let status = answer.as_ref().map(|a| a["status"].clone());
        assert_eq!(status, Some(json!("success")), "{query}: {answer:?}");
    }
    let served: String = [scrape(http, &stack.url).await, scrape(http, &health).await].concat();
    let served = metric_names(&served);
    let dashboard = std::fs::read_to_string(monitoring_file("dashboard.json")).unwrap();
    let alerts = std::fs::read_to_string(monitoring_file("alerts.yaml")).unwrap();
    for name in metric_names(&dashboard).union(&metric_names(&alerts)) {
        assert!(served.contains(name), "{name} is not served: {served:?}");
    }
}
