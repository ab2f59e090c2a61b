//! The pages answer only requests addressed to the public URL, and take forms only from its
//! origin: a page elsewhere that makes a browser call cola under another name (DNS rebinding)
//! or post to it gets neither a page nor a session. The developer login lives on loopback
//! names only; the JSON API (bearer tokens, nothing ambient) answers under any name.

use axum::{
    body::Body,
    http::{Method, Request, header},
};
use cola_gateway::tokens;
use cola_wire::UserId;
use tower::ServiceExt as _;

use crate::support::{Answer, Browser, Web, encode};

/// The developer login form as a browser posts it, with `origin` if any.
async fn post_dev_login(browser: &mut Browser, csrf: &str, origin: Option<&str>) -> Answer {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/auth/dev")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(origin) = origin {
        request = request.header(header::ORIGIN, origin);
    }
    let body = format!("csrf={}&next=%2F", encode(csrf));
    browser.send(request.body(Body::from(body)).unwrap()).await
}

#[tokio::test]
async fn a_foreign_host_gets_no_page_and_no_session() {
    let web = Web::start(|_| {}).await;
    for host in [
        "attacker.example:8080",
        "attacker.example",
        "localhost.attacker.example:8080",
        "localhost:9999",
        "127.0.0.1:80",
    ] {
        let mut browser = web.browser();
        browser.host = host.into();
        for path in ["/", "/login", "/login?next=%2Ftokens", "/tokens", "/events"] {
            let answer = browser.get(path).await;
            assert_eq!(answer.status, 421, "{host}{path}: {}", answer.body);
            assert!(answer.body.contains("Wrong address"), "{}", answer.body);
            assert!(!answer.body.contains("local developer"));
            assert!(answer.set_cookies().is_empty(), "{host}{path}");
        }
    }
    for host in [
        "x@localhost:8080",
        "localhost:8080/x",
        "",
        "localhost:80800",
    ] {
        let mut browser = web.browser();
        browser.host = host.into();
        let answer = browser.get("/login").await;
        assert_eq!(answer.status, 400, "{host:?}: {}", answer.body);
        assert!(answer.set_cookies().is_empty());
    }
    let no_host = Request::get("/login").body(Body::empty()).unwrap();
    let answer = web.gateway.router().oneshot(no_host).await.unwrap();
    assert_eq!(answer.status(), 400);

    // The form's token, fetched at the right name, is of no use under another one.
    let mut browser = web.browser();
    let csrf = browser.get("/login").await.csrf();
    browser.host = "attacker.example:8080".into();
    let answer = post_dev_login(&mut browser, &csrf, None).await;
    assert_eq!(answer.status, 421, "{}", answer.body);
    assert!(answer.set_cookies().is_empty());
    assert_eq!(web.stored_sessions().await, 0);
    browser.host = "localhost:8080".into();
    assert_eq!(post_dev_login(&mut browser, &csrf, None).await.status, 303);
    assert_eq!(browser.get("/").await.status, 200);

    // A logged-in session is no use under another name either.
    browser.host = "attacker.example:8080".into();
    assert_eq!(browser.get("/").await.status, 421);
    assert_eq!(browser.get("/tokens").await.status, 421);
}

#[tokio::test]
async fn the_public_host_and_on_loopback_its_other_names_are_served() {
    let web = Web::start(|_| {}).await;
    for host in [
        "localhost:8080",
        "LocalHost:8080",
        "127.0.0.1:8080",
        "[::1]:8080",
    ] {
        let mut browser = web.browser();
        browser.host = host.into();
        assert_eq!(browser.dev_login("/").await.status, 303, "{host}");
        assert_eq!(browser.get("/").await.status, 200, "{host}");
    }

    // A public URL that is not loopback: its own name only, and no developer login.
    let web = Web::start(|c| c.public_url = Some("https://cola.example.edu".into())).await;
    for host in [
        "cola.example.edu",
        "COLA.example.edu",
        "cola.example.edu:443",
    ] {
        let mut browser = web.browser();
        browser.host = host.into();
        let page = browser.get("/login").await;
        assert_eq!(page.status, 200, "{host}: {}", page.body);
        assert!(!page.body.contains("local developer"), "{}", page.body);
    }
    for host in ["localhost:8080", "127.0.0.1:8080", "cola.example.edu:8443"] {
        let mut browser = web.browser();
        browser.host = host.into();
        assert_eq!(browser.get("/login").await.status, 421, "{host}");
    }
    let answer = post_dev_login(&mut web.browser(), "x", None).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
}

#[tokio::test]
async fn forms_from_another_origin_are_refused() {
    let web = Web::start(|_| {}).await;
    let mut browser = web.browser();
    let csrf = browser.get("/login").await.csrf();
    for origin in [
        "http://attacker.example:8080",
        "null",
        "https://localhost:8080",
        "http://localhost:9999",
        "http://localhost:8080/x",
    ] {
        let answer = post_dev_login(&mut browser, &csrf, Some(origin)).await;
        assert_eq!(answer.status, 403, "{origin}: {}", answer.body);
        assert!(answer.body.contains("another site"), "{}", answer.body);
    }
    assert_eq!(web.stored_sessions().await, 0);
    for origin in [
        Some("http://localhost:8080"),
        Some("http://127.0.0.1:8080"),
        None,
    ] {
        let mut browser = web.browser();
        let csrf = browser.get("/login").await.csrf();
        let answer = post_dev_login(&mut browser, &csrf, origin).await;
        assert_eq!(answer.status, 303, "{origin:?}: {}", answer.body);
    }

    // A logged-in person's forms alike: a logout from elsewhere is refused.
    let mut browser = web.browser();
    assert_eq!(browser.dev_login("/").await.status, 303);
    let csrf = browser.csrf().await;
    let logout = Request::builder()
        .method(Method::POST)
        .uri("/logout")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ORIGIN, "http://attacker.example")
        .body(Body::from(format!("csrf={}", encode(&csrf))))
        .unwrap();
    assert_eq!(browser.send(logout).await.status, 403);
    assert_eq!(browser.get("/").await.status, 200, "still logged in");
}

#[tokio::test]
async fn the_json_api_and_health_answer_under_any_name() {
    let web = Web::start(|_| {}).await;
    let token = tokens::issue(
        &web.nats.topology.tokens,
        &UserId::parse("dev").unwrap(),
        "t",
    )
    .await
    .unwrap();
    let mut browser = web.browser();
    browser.host = "cola-gateway.cola.svc:8080".into();
    let request = Request::get("/api/v1/jobs")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(browser.send(request).await.status, 200);
    assert_eq!(browser.get("/healthz").await.status, 200);
    assert_eq!(browser.get("/static/app.js").await.status, 200);
}
