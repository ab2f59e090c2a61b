//! A gateway built with `Gateway::start` (no listening socket) and a cookie-keeping client
//! that sends requests to its router with `oneshot`.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use axum::{
    Router,
    body::{Body, BodyDataStream},
    http::{HeaderMap, Method, Request, Response, StatusCode, header},
};
use cola_gateway::{Gateway, GatewayConfig};
use cola_testkit::TestNats;
use futures::StreamExt as _;
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

    /// A browser that reaches the gateway at its public URL (it sends that `Host`).
    pub fn browser(&self) -> Browser {
        let public = &self.gateway.state().web.public_url;
        let host = public.host_str().expect("a public URL has a host");
        Browser {
            router: self.router.clone(),
            cookies: BTreeMap::new(),
            host: match public.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            },
        }
    }

    /// How many sessions the `cola-sessions` bucket holds.
    pub async fn stored_sessions(&self) -> usize {
        use futures::TryStreamExt as _;
        let kv = self.sessions_bucket().await;
        let keys: Vec<String> = kv.keys().await.unwrap().try_collect().await.unwrap();
        let mut live = 0;
        for key in keys {
            if kv.get(&key).await.unwrap().is_some() {
                live += 1;
            }
        }
        live
    }

    /// Stores `user`'s job `id`'s output zip with `entries` (as the middleware does); the
    /// object's name.
    pub async fn store_output_zip<N: AsRef<str>, C: AsRef<[u8]>>(
        &self,
        user: &cola_wire::UserId,
        id: cola_wire::JobId,
        entries: impl IntoIterator<Item = (N, C)>,
    ) -> String {
        use std::io::Write as _;
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, content) in entries {
            zip.start_file(name.as_ref(), zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(content.as_ref()).unwrap();
        }
        let zip = zip.finish().unwrap().into_inner();
        let object = cola_wire::names::output_object(user, &id);
        self.nats
            .topology
            .outputs
            .put(object.as_str(), &mut zip.as_slice())
            .await
            .unwrap();
        object
    }
}

impl Web {
    /// The `cola-sessions` bucket.
    async fn sessions_bucket(&self) -> async_nats::jetstream::kv::Store {
        let js = async_nats::jetstream::new(self.nats.client.clone());
        js.get_key_value("cola-sessions").await.unwrap()
    }

    /// Removes every session from the bucket, as a logout on another gateway or the bucket's
    /// max age would.
    pub async fn forget_sessions(&self) {
        use futures::TryStreamExt as _;
        let kv = self.sessions_bucket().await;
        let keys: Vec<String> = kv.keys().await.unwrap().try_collect().await.unwrap();
        for key in keys {
            kv.purge(&key).await.unwrap();
        }
    }

    /// Shrinks the `cola-sessions` bucket to a few KiB and fills it: the server refuses any
    /// further session.
    pub async fn fill_session_store(&self) {
        let js = async_nats::jetstream::new(self.nats.client.clone());
        let mut stream = js.get_stream("KV_cola-sessions").await.unwrap();
        let mut config = stream.info().await.unwrap().config.clone();
        config.max_bytes = 4096;
        js.update_stream(config).await.unwrap();
        let kv = self.sessions_bucket().await;
        for filler in 0.. {
            assert!(filler < 100, "the bucket never filled up");
            if kv
                .put(format!("filler-{filler}"), vec![b'x'; 512].into())
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// One browser: a cookie jar in front of the router, and the `Host` it sends.
pub struct Browser {
    router: Router,
    pub cookies: BTreeMap<String, String>,
    pub host: String,
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

    /// The `Set-Cookie` of cookie `name`, if the answer sets it.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&prefix))
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
    /// Sends `request` with this browser's cookies (and `Host`, unless it has one); the
    /// response as it comes, its body not read yet, the cookies it sets kept.
    pub async fn open(&mut self, mut request: Request<Body>) -> Response<Body> {
        if !request.headers().contains_key(header::HOST) {
            request
                .headers_mut()
                .insert(header::HOST, self.host.parse().unwrap());
        }
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
        for cookie in response.headers().get_all(header::SET_COOKIE) {
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
        response
    }

    pub async fn send(&mut self, request: Request<Body>) -> Answer {
        let response = self.open(request).await;
        let status = response.status();
        let headers = response.headers().clone();
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

    /// Opens `/events`, the live stream of the session's jobs.
    pub async fn events(&mut self) -> EventStream {
        let response = self
            .open(Request::get("/events").body(Body::empty()).unwrap())
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        EventStream {
            body: response.into_body().into_data_stream(),
            seen: String::new(),
        }
    }

    /// The CSRF token of the logged-in session (read off the job list).
    pub async fn csrf(&mut self) -> String {
        let page = self.get("/").await;
        assert_eq!(page.status, 200, "{}", page.body);
        page.csrf()
    }
}

/// A live `/events` stream, read as it comes; `seen` is everything read so far.
pub struct EventStream {
    body: BodyDataStream,
    pub seen: String,
}

impl EventStream {
    /// Reads until `needle` has been seen (10 s at most).
    pub async fn read_until(&mut self, needle: &str) {
        let body = &mut self.body;
        let seen = &mut self.seen;
        tokio::time::timeout(Duration::from_secs(10), async {
            while !seen.contains(needle) {
                let chunk = body.next().await.expect("the stream goes on").unwrap();
                seen.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {needle:?} in {seen}"));
    }

    /// Whether the stream ends within `within` (what it sends until then is kept in `seen`).
    pub async fn ends_within(&mut self, within: Duration) -> bool {
        let body = &mut self.body;
        let seen = &mut self.seen;
        tokio::time::timeout(within, async {
            while let Some(chunk) = body.next().await {
                seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            }
        })
        .await
        .is_ok()
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
