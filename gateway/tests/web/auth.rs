//! Login (OIDC with a real provider over HTTP, and the local developer), sessions, logout.

use std::net::SocketAddr;

use chrono::Duration;
use cola_gateway::{GatewayConfig, OidcConfig, Secret};

use crate::{
    provider::{self, CLIENT_ID, CLIENT_SECRET, Claims, Provider},
    support::{Browser, Web, encode, query_param},
};

fn oidc_config(provider: &Provider) -> OidcConfig {
    OidcConfig {
        issuer: provider.issuer().into(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
        allowed_domains: vec![],
        allowed_emails: vec![],
    }
}

async fn oidc_web(provider: &Provider, configure: impl FnOnce(&mut OidcConfig)) -> Web {
    let mut oidc = oidc_config(provider);
    configure(&mut oidc);
    Web::start(|c| {
        c.dev = false;
        c.oidc = Some(oidc);
    })
    .await
}

struct Started {
    redirect_uri: String,
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
    assert!(param("scope").split(' ').any(|s| s == "openid"));
    assert_eq!(param("code_challenge_method"), "S256");
    Started {
        redirect_uri: param("redirect_uri"),
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
    assert_eq!(started.redirect_uri, "http://localhost:8080/auth/callback");
    assert_eq!(
        web.stored_sessions().await,
        0,
        "a login on its way is no session"
    );
    assert!(
        browser.cookies.contains_key("cola_login"),
        "{:?}",
        browser.cookies
    );
    provider.answer_with(provider.id_token(&Claims::valid("alice-sub", &started.nonce)));
    let answer = callback(&mut browser, "code-1", &started.state).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.location(), "/tokens");
    assert!(!browser.cookies.contains_key("cola_login"), "used once");

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

    // Logging in again from a session gives it a new id: the one before is worth nothing.
    let before = browser.cookies["cola_session"].clone();
    assert_eq!(
        log_in_as(&mut browser, &provider, "alice-sub", |_| {})
            .await
            .status,
        303
    );
    assert_ne!(
        browser.cookies["cola_session"], before,
        "the id is cycled at login"
    );
    let mut planted = web.browser();
    planted.cookies.insert("cola_session".into(), before);
    assert_logged_out(&mut planted).await;
    assert_eq!(web.stored_sessions().await, 1);
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
    assert!(
        !browser.cookies.contains_key("cola_session"),
        "{:?}",
        browser.cookies
    );
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
    let again = callback(&mut browser, "c", &started.state).await;
    assert_eq!(again.status, 400, "{}", again.body);
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
    let answer = log_in_as(&mut browser, &provider, "alice", |_| {}).await;
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

/// Asserts `answer` sets cookie `name` with the attributes every cookie of cola has, `Secure`
/// or not.
fn assert_cookie(answer: &crate::support::Answer, name: &str, secure: bool) {
    let cookie = answer
        .set_cookie(name)
        .unwrap_or_else(|| panic!("no {name} cookie in {:?}", answer.set_cookies()));
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert_eq!(cookie.contains("Secure"), secure, "{cookie}");
}

#[tokio::test]
async fn cookies_are_http_only_lax_and_secure_unless_plain_http_loopback() {
    let web = Web::start(|_| {}).await;
    let mut browser = web.browser();
    let page = browser.get("/login").await;
    assert_cookie(&page, "cola_login", false);
    let answer = browser.dev_login("/").await;
    assert_cookie(&answer, "cola_session", false);

    let provider = Provider::start().await;
    let web = Web::start(|c| {
        c.dev = false;
        c.public_url = Some("https://cola.example.edu".into());
        c.oidc = Some(oidc_config(&provider));
    })
    .await;
    let mut browser = web.browser();
    let answer = log_in_as(&mut browser, &provider, "alice", |_| {}).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_cookie(&answer, "__Host-cola_session", true);
    let started = web.browser().get("/auth/login").await;
    assert_eq!(
        query_param(started.location(), "redirect_uri").unwrap(),
        "https://cola.example.edu/auth/callback"
    );
    assert_cookie(&started, "__Host-cola_login", true);
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

/// Logs `browser` in through the provider as `subject`, with the ID token `edit`ed.
async fn log_in_as(
    browser: &mut Browser,
    provider: &Provider,
    subject: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> crate::support::Answer {
    let started = start_login(browser, provider, "/").await;
    provider.answer_with(provider.id_token_edited(&Claims::valid(subject, &started.nonce), edit));
    callback(browser, "code", &started.state).await
}

#[tokio::test]
async fn anonymous_visitors_leave_nothing_in_the_session_store() {
    let provider = Provider::start().await;
    let web = Web::start(|c| c.oidc = Some(oidc_config(&provider))).await;
    for _ in 0..50 {
        let mut browser = web.browser();
        let page = browser.get("/login").await;
        assert!(page.body.contains("local developer"), "{}", page.body);
        start_login(&mut browser, &provider, "/").await;
    }
    assert_eq!(web.stored_sessions().await, 0);

    // The pending login and the developer form's token work all the same.
    let mut browser = web.browser();
    assert_eq!(
        log_in_as(&mut browser, &provider, "ada", |_| {})
            .await
            .status,
        303
    );
    assert_eq!(browser.get("/").await.status, 200);
    assert_eq!(web.browser().dev_login("/").await.status, 303);
    assert_eq!(web.stored_sessions().await, 2);
}

#[tokio::test]
async fn a_full_session_store_turns_a_login_away_with_a_clear_answer() {
    let web = Web::start(|_| {}).await;
    web.fill_session_store().await;
    let mut browser = web.browser();
    let answer = browser.dev_login("/").await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(answer.body.contains("Try again"), "{}", answer.body);
    assert_logged_out(&mut browser).await;
}

#[tokio::test]
async fn a_callback_without_the_right_state_leaves_a_logged_in_session_alone() {
    let provider = Provider::start().await;
    let web = oidc_web(&provider, |_| {}).await;
    let mut browser = web.browser();
    assert_eq!(
        log_in_as(&mut browser, &provider, "ada", |_| {})
            .await
            .status,
        303
    );
    for query in [
        "",
        "?code=c",
        "?code=c&state=forged",
        "?error=access_denied",
        "?error=access_denied&state=forged",
    ] {
        let answer = browser.get(&format!("/auth/callback{query}")).await;
        assert_eq!(answer.status, 400, "{query}: {}", answer.body);
        assert!(answer.body.contains("Log in again"), "{}", answer.body);
        let home = browser.get("/").await;
        assert_eq!(home.status, 200, "{query} logged the person out");
    }
    assert_eq!(web.stored_sessions().await, 1);
    assert_eq!(provider.exchanges().len(), 1, "no code is exchanged");
}

#[tokio::test]
async fn e_mail_addresses_are_parsed_whole_and_only_a_boolean_true_verifies_them() {
    let provider = Provider::start().await;
    let web = oidc_web(&provider, |c| {
        c.allowed_domains = vec!["example.test".into()]
    })
    .await;
    for email in [
        "x@evil.com@example.test",
        "\"x@evil.com\"@example.test",
        "x@evil.com(@example.test)",
        "@example.test",
        "x@",
        "x y@example.test",
        ".x@example.test",
        "x@-example.test",
    ] {
        let mut browser = web.browser();
        let answer = log_in_as(&mut browser, &provider, "eve", |claims| {
            claims["email"] = email.into()
        })
        .await;
        assert_eq!(answer.status, 403, "{email}: {}", answer.body);
        assert!(answer.body.contains("may not use this service"), "{email}");
        assert_logged_out(&mut browser).await;
    }
    let mut browser = web.browser();
    let admitted = log_in_as(&mut browser, &provider, "ada", |claims| {
        claims["email"] = "Ada@Example.test".into()
    })
    .await;
    assert_eq!(admitted.status, 303, "{}", admitted.body);

    // Only the JSON boolean `true` says the address was verified.
    for verified in [
        serde_json::json!("true"),
        serde_json::json!("false"),
        serde_json::json!(false),
        serde_json::json!(null),
    ] {
        let mut browser = web.browser();
        let answer = log_in_as(&mut browser, &provider, "ada", |claims| {
            claims["email"] = "ada@example.test".into();
            claims["email_verified"] = verified.clone();
        })
        .await;
        assert_eq!(answer.status, 403, "{verified}: {}", answer.body);
        assert!(
            answer.body.contains("no verified e-mail address"),
            "{verified}: {}",
            answer.body
        );
    }
    for verified in [serde_json::json!(1), serde_json::json!("yes")] {
        let mut browser = web.browser();
        let answer = log_in_as(&mut browser, &provider, "ada", |claims| {
            claims["email"] = "ada@example.test".into();
            claims["email_verified"] = verified.clone();
        })
        .await;
        assert_eq!(answer.status, 400, "{verified}: {}", answer.body);
        assert!(answer.body.contains("could not be verified"), "{verified}");
        assert_logged_out(&mut browser).await;
    }

    // Without allow-lists an unverified address does not matter: the login goes through.
    let open = oidc_web(&provider, |_| {}).await;
    let mut browser = open.browser();
    let answer = log_in_as(&mut browser, &provider, "ada", |claims| {
        claims["email_verified"] = "true".into()
    })
    .await;
    assert_eq!(answer.status, 303, "{}", answer.body);
}
