//! Login (OIDC with a real provider over HTTP, and the local developer), sessions, logout.

use std::net::SocketAddr;

use chrono::Duration;
use cola_gateway::{GatewayConfig, OidcConfig, Secret};

use crate::{
    provider::{self, CLIENT_ID, CLIENT_SECRET, Claims, Provider},
    support::{Browser, Web, encode, query_param},
};

async fn oidc_web(provider: &Provider, configure: impl FnOnce(&mut OidcConfig)) -> Web {
    let mut oidc = OidcConfig {
        issuer: provider.issuer().into(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
        allowed_domains: vec![],
        allowed_emails: vec![],
    };
    configure(&mut oidc);
    Web::start(|c| {
        c.dev = false;
        c.oidc = Some(oidc);
    })
    .await
}

struct Started {
    state: String,
    nonce: String,
    challenge: String,
}

/// Follows "log in" to the provider's authorization URL and reads what it carries.
async fn start_login(browser: &mut Browser, provider: &Provider, next: &str) -> Started {
    let answer = browser
        .get(&format!("/auth/login?next={}", encode(next)))
        .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let url = answer.location().to_owned();
    assert!(
        url.starts_with(&format!("{}/authorize?", provider.issuer())),
        "{url}"
    );
    let param = |name| query_param(&url, name).unwrap_or_else(|| panic!("{name} in {url}"));
    assert_eq!(param("response_type"), "code");
    assert_eq!(param("client_id"), CLIENT_ID);
    assert_eq!(param("redirect_uri"), "http://localhost:8080/auth/callback");
    assert!(param("scope").split(' ').any(|s| s == "openid"));
    assert_eq!(param("code_challenge_method"), "S256");
    Started {
        state: param("state"),
        nonce: param("nonce"),
        challenge: param("code_challenge"),
    }
}

async fn callback(browser: &mut Browser, code: &str, state: &str) -> crate::support::Answer {
    browser
        .get(&format!(
            "/auth/callback?code={}&state={}",
            encode(code),
            encode(state)
        ))
        .await
}

async fn assert_logged_out(browser: &mut Browser) {
    let home = browser.get("/").await;
    assert_eq!(home.status, 303, "{}", home.body);
    assert_eq!(home.location(), "/login?next=%2F");
}

#[tokio::test]
async fn a_login_verifies_the_provider_answer_and_cycles_the_session() {
    let provider = Provider::start().await;
    let web = oidc_web(&provider, |_| {}).await;
    let mut browser = web.browser();
    assert_logged_out(&mut browser).await;
    let login_page = browser.get("/login?next=%2Ftokens").await;
    assert!(
        login_page.body.contains("Log in with"),
        "{}",
        login_page.body
    );
    assert!(!login_page.body.contains("local developer"));

    let started = start_login(&mut browser, &provider, "/tokens").await;
    let before = browser.cookies.clone();
    assert_eq!(before.len(), 1, "the pending login lives in a session");
    provider.answer_with(provider.id_token(&Claims::valid("alice-sub", &started.nonce)));
    let answer = callback(&mut browser, "code-1", &started.state).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.location(), "/tokens");
    assert_ne!(browser.cookies, before, "the session id is cycled at login");

    let exchange = &provider.exchanges()[0];
    assert_eq!(exchange.code, "code-1");
    assert_eq!(exchange.client_id, CLIENT_ID);
    assert!(
        provider::pkce_matches(&exchange.code_verifier, &started.challenge),
        "PKCE verifier {} does not fit challenge {}",
        exchange.code_verifier,
        started.challenge
    );

    let home = browser.get("/").await;
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(home.body.contains("Ada Lovelace") && home.body.contains("ada@example.edu"));

    // The id the session had before the login is worth nothing now.
    let mut planted = web.browser();
    planted.cookies = before;
    assert_logged_out(&mut planted).await;
}

#[tokio::test]
async fn a_callback_with_a_wrong_or_used_state_is_refused_and_leaves_no_session() {
    let provider = Provider::start().await;
    let web = oidc_web(&provider, |_| {}).await;

    let mut browser = web.browser();
    let started = start_login(&mut browser, &provider, "/").await;
    provider.answer_with(provider.id_token(&Claims::valid("alice-sub", &started.nonce)));
    let answer = callback(&mut browser, "code-1", "not-the-state").await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(answer.body.contains("Log in again"), "{}", answer.body);
    assert!(browser.cookies.is_empty(), "{:?}", answer.set_cookies());
    assert_eq!(web.stored_sessions().await, 0);
    assert!(provider.exchanges().is_empty(), "no code is exchanged");
    assert_logged_out(&mut browser).await;

    // A state is good once.
    let mut browser = web.browser();
    let started = start_login(&mut browser, &provider, "/").await;
    provider.answer_with(provider.id_token(&Claims::valid("alice-sub", &started.nonce)));
    assert_eq!(
        callback(&mut browser, "c", &started.state).await.status,
        303
    );
    let mut replay = web.browser();
    let again = callback(&mut replay, "c", &started.state).await;
    assert_eq!(again.status, 400);
    assert!(replay.cookies.is_empty());
}

#[tokio::test]
async fn tampered_expired_and_foreign_id_tokens_are_refused() {
    let provider = Provider::start().await;
    let web = oidc_web(&provider, |_| {}).await;
    type Spoil = fn(&Provider, &str) -> String;
    let cases: [(&str, Spoil); 6] = [
        ("tampered", |p, nonce| {
            provider::tamper(&p.id_token(&Claims::valid("alice", nonce)))
        }),
        ("unsigned", |p, nonce| {
            provider::unsigned(&p.id_token(&Claims::valid("alice", nonce)))
        }),
        ("expired", |p, nonce| {
            p.id_token(&Claims {
                expires_in: Duration::minutes(-10),
                ..Claims::valid("alice", nonce)
            })
        }),
        ("wrong nonce", |p, _| {
            p.id_token(&Claims::valid("alice", "another-nonce"))
        }),
        ("wrong audience", |p, nonce| {
            p.id_token(&Claims {
                audience: "another-client",
                ..Claims::valid("alice", nonce)
            })
        }),
        ("wrong issuer", |p, nonce| {
            p.id_token(&Claims {
                issuer: Some("https://accounts.example"),
                ..Claims::valid("alice", nonce)
            })
        }),
    ];
    for (what, spoil) in cases {
        let mut browser = web.browser();
        let started = start_login(&mut browser, &provider, "/").await;
        provider.answer_with(spoil(&provider, &started.nonce));
        let answer = callback(&mut browser, "code", &started.state).await;
        assert_eq!(answer.status, 400, "{what}: {}", answer.body);
        assert!(answer.body.contains("could not be verified"), "{what}");
        assert_logged_out(&mut browser).await;
    }
}

#[tokio::test]
async fn the_allow_lists_keep_other_people_out() {
    let provider = Provider::start().await;
    let web = oidc_web(&provider, |c| {
        c.allowed_domains = vec!["example.org".into()]
    })
    .await;
    let mut browser = web.browser();
    let started = start_login(&mut browser, &provider, "/").await;
    provider.answer_with(provider.id_token(&Claims::valid("alice", &started.nonce)));
    let answer = callback(&mut browser, "code", &started.state).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(
        answer
            .body
            .contains("ada@example.edu may not use this service")
    );
    assert_logged_out(&mut browser).await;
}

#[tokio::test]
async fn login_redirects_only_ever_go_to_local_paths() {
    let provider = Provider::start().await;
    let web = oidc_web(&provider, |_| {}).await;
    for next in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let mut browser = web.browser();
        let started = start_login(&mut browser, &provider, next).await;
        provider.answer_with(provider.id_token(&Claims::valid("alice", &started.nonce)));
        let answer = callback(&mut browser, "code", &started.state).await;
        assert_eq!(answer.status, 303);
        assert_eq!(answer.location(), "/", "{next}");
    }
    let page = web
        .browser()
        .get("/login?next=https%3A%2F%2Fevil.example")
        .await;
    assert!(
        page.body.contains("/auth/login?next=%2F\""),
        "{}",
        page.body
    );

    let dev = Web::start(|_| {}).await;
    for next in ["//evil.example/x", "https://evil.example"] {
        let answer = dev.browser().dev_login(next).await;
        assert_eq!(answer.status, 303);
        assert_eq!(answer.location(), "/", "{next}");
    }
    let answer = dev.browser().dev_login("/tokens").await;
    assert_eq!(answer.location(), "/tokens");
}

#[tokio::test]
async fn session_cookies_are_http_only_lax_and_secure_unless_plain_http_loopback() {
    let web = Web::start(|_| {}).await;
    let answer = web.browser().dev_login("/").await;
    let cookie = &answer.set_cookies()[0];
    assert!(cookie.starts_with("cola_session="), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");

    let web = Web::start(|c| c.public_url = Some("https://cola.example.edu".into())).await;
    let answer = web.browser().get("/login").await;
    let cookie = &answer.set_cookies()[0];
    assert!(cookie.starts_with("__Host-cola_session="), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Secure"] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
}

#[tokio::test]
async fn the_dev_login_is_refused_unless_listening_on_loopback() {
    let config = GatewayConfig {
        dev: true,
        listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
        ..GatewayConfig::default()
    };
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("dev login"), "{error}");

    // Configured for dev, but actually served on a non-loopback address.
    let web = Web::start_on(SocketAddr::from(([10, 1, 2, 3], 8080)), |_| {}).await;
    let mut browser = web.browser();
    let page = browser.get("/login").await;
    assert!(!page.body.contains("local developer"), "{}", page.body);
    let answer = browser
        .post_form("/auth/dev", &[("csrf", "x"), ("next", "/")])
        .await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(answer.body.contains("dev mode"));
    assert_logged_out(&mut browser).await;

    // Not in dev mode at all.
    let web = Web::start(|c| c.dev = false).await;
    let answer = web
        .browser()
        .post_form("/auth/dev", &[("csrf", "x"), ("next", "/")])
        .await;
    assert_eq!(answer.status, 403);
}

#[tokio::test]
async fn logout_ends_the_session() {
    let web = Web::start(|_| {}).await;
    let mut browser = web.browser();
    assert_eq!(browser.dev_login("/").await.status, 303);
    let cookies = browser.cookies.clone();
    let csrf = browser.csrf().await;
    assert_eq!(web.stored_sessions().await, 1);

    let refused = browser.post_form("/logout", &[]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(browser.get("/").await.status, 200, "still logged in");

    let confirm = browser.get("/logout").await;
    assert!(confirm.body.contains("action=\"/logout\""));
    let answer = browser.post_form("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(answer.status, 303);
    assert_eq!(answer.location(), "/login?bye=1");
    assert!(browser.cookies.is_empty(), "{:?}", answer.set_cookies());
    assert_eq!(web.stored_sessions().await, 0);
    assert_logged_out(&mut browser).await;
    let mut stolen = web.browser();
    stolen.cookies = cookies;
    assert_logged_out(&mut stolen).await;
}
