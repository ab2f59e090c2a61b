//! A gateway built with `Gateway::start` (no listening socket) and a cookie-keeping client
//! that sends requests to its router with `oneshot`.

use std::{collections::BTreeMap, net::SocketAddr};

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Method, Request, StatusCode, header},
};
use cola_gateway::{Gateway, GatewayConfig};
use cola_testkit::TestNats;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

pub struct Web {
    pub nats: TestNats,
    pub gateway: Gateway,
    router: Router,
    _shutdown: CancellationToken,
}

impl Web {
    /// A gateway in dev mode on loopback, configured further by `configure`.
    pub async fn start(configure: impl FnOnce(&mut GatewayConfig)) -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 8080)), configure).await
    }

    /// A gateway as if served on `listen`.
    pub async fn start_on(listen: SocketAddr, configure: impl FnOnce(&mut GatewayConfig)) -> Self {
        let nats = TestNats::start().await;
        let mut config = GatewayConfig {
            nats_url: nats.url(),
            dev: true,
            ..GatewayConfig::default()
        };
        configure(&mut config);
        let shutdown = CancellationToken::new();
        let gateway = Gateway::start(config, listen, &shutdown).await.unwrap();
        let router = gateway.router();
        Self {
            nats,
            gateway,
            router,
            _shutdown: shutdown,
        }
    }

    pub fn browser(&self) -> Browser {
        Browser {
            router: self.router.clone(),
            cookies: BTreeMap::new(),
        }
    }

    /// How many sessions the `cola-sessions` bucket holds.
    pub async fn stored_sessions(&self) -> usize {
        use futures::TryStreamExt as _;
        let js = async_nats::jetstream::new(self.nats.client.clone());
        let kv = js.get_key_value("cola-sessions").await.unwrap();
        let keys: Vec<String> = kv.keys().await.unwrap().try_collect().await.unwrap();
        let mut live = 0;
        for key in keys {
            if kv.get(&key).await.unwrap().is_some() {
                live += 1;
            }
        }
        live
    }
}

/// One browser: a cookie jar in front of the router.
pub struct Browser {
    router: Router,
    pub cookies: BTreeMap<String, String>,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no Location in a {} answer: {}", self.status, self.body))
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    /// The value of the hidden `csrf` input of the page.
    pub fn csrf(&self) -> String {
        input_value(&self.body, "csrf").unwrap_or_else(|| panic!("no csrf field in {}", self.body))
    }
}

/// The `value` of the first input named `name` in `html`.
pub fn input_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let value = tag.split("value=\"").nth(1)?;
    Some(value[..value.find('"')?].replace("&#43;", "+"))
}

impl Browser {
    pub async fn send(&mut self, mut request: Request<Body>) -> Answer {
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            request
                .headers_mut()
                .insert(header::COOKIE, jar.join("; ").parse().unwrap());
        }
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        for cookie in headers.get_all(header::SET_COOKIE) {
            let cookie = cookie.to_str().unwrap();
            let (pair, attributes) = cookie.split_once(';').unwrap_or((cookie, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let removed = attributes.to_ascii_lowercase().contains("max-age=0");
            if removed || value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let body: String = fields
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        self.send(request).await
    }

    /// A multipart form; a field whose name starts with `upload:` is a file named after the rest.
    pub async fn post_multipart(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let boundary = "----colatestboundary7d1f";
        let mut body = String::new();
        for (name, value) in fields {
            body.push_str(&format!("--{boundary}\r\n"));
            match name.strip_prefix("upload:") {
                Some(file) => body.push_str(&format!(
                    "Content-Disposition: form-data; name=\"upload\"; filename=\"{file}\"\r\n\
                     Content-Type: text/plain\r\n\r\n"
                )),
                None => body.push_str(&format!(
                    "Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                )),
            }
            body.push_str(value);
            body.push_str("\r\n");
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(Body::from(body))
            .unwrap();
        self.send(request).await
    }

    /// Logs in as the local developer; the answer of the login form.
    pub async fn dev_login(&mut self, next: &str) -> Answer {
        let page = self.get(&format!("/login?next={}", encode(next))).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let csrf = page.csrf();
        self.post_form("/auth/dev", &[("csrf", &csrf), ("next", next)])
            .await
    }

    /// The CSRF token of the logged-in session (read off the job list).
    pub async fn csrf(&mut self) -> String {
        let page = self.get("/").await;
        assert_eq!(page.status, 200, "{}", page.body);
        page.csrf()
    }
}

/// `value` encoded for a query string or a form body.
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The value of query parameter `name` in `url`.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
