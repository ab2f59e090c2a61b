//! The OpenAPI document at `/api/v1/openapi.json` and the reference page at `/api/docs`: the
//! document is OpenAPI 3.1 and lists exactly the routes and methods the router serves under
//! `/api/v1`, so a route added without its operation fails here.

use std::collections::{BTreeMap, BTreeSet};

use cola_gateway::app::CONTENT_SECURITY_POLICY;
use reqwest::{Method, header};
use serde_json::Value;

use crate::support::Gateway;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// `{path template: {method}}` of the document.
fn operations(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .cloned()
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

/// Every string literal of the gateway's source that is an `/api/v1/` path, as a template
/// (`{...}` → `{id}`, query and optional parts cut off).
fn api_paths_in_source() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut dirs = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for literal in text.split("\"/api/v1/").skip(1) {
                let literal = &literal[..literal.find('"').unwrap()];
                let end = literal.find(['?', '[']).unwrap_or(literal.len());
                let mut template = String::from("/api/v1/");
                let mut rest = &literal[..end];
                while let Some(open) = rest.find('{') {
                    template.push_str(&rest[..open]);
                    template.push_str("{id}");
                    rest = &rest[rest[open..].find('}').unwrap() + open + 1..];
                }
                template.push_str(rest);
                found.insert(template);
            }
        }
    }
    found
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_lists_every_route_the_router_serves() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice").await;

    // Public, JSON, OpenAPI 3.1.
    let response = gw
        .http
        .get(gw.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let doc: Value = response.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        doc["components"]["securitySchemes"][cola_gateway::openapi::BEARER]["scheme"],
        "bearer"
    );

    let operations = operations(&doc);
    let expected: BTreeMap<String, BTreeSet<String>> = [
        ("/api/v1/languages", &["get"][..]),
        ("/api/v1/energy", &["get"]),
        ("/api/v1/numeric/methods", &["get"]),
        ("/api/v1/jobs", &["get", "post"]),
        ("/api/v1/jobs/{id}", &["get"]),
        ("/api/v1/jobs/{id}/cancel", &["post"]),
        ("/api/v1/jobs/{id}/output.zip", &["get"]),
        ("/api/v1/openapi.json", &["get"]),
    ]
    .into_iter()
    .map(|(path, methods)| {
        (
            path.to_owned(),
            methods.iter().map(|m| (*m).to_owned()).collect(),
        )
    })
    .collect();
    assert_eq!(operations, expected);

    // Every `/api/v1/...` path the gateway's code names is one of the document's: a route
    // registered past `utoipa_axum::routes!` would name its path somewhere here.
    let documented: BTreeSet<_> = operations.keys().cloned().collect();
    let named = api_paths_in_source();
    assert!(
        named.is_subset(&documented),
        "paths in gateway/src without an operation in the document: {:?}",
        named.difference(&documented).collect::<Vec<_>>()
    );

    // The router serves each documented method on each path, and no other (405 with `Allow`).
    let id = gw.submit_hello(&alice).await;
    for (template, methods) in &operations {
        let path = template.replace("{id}", &id.to_string());
        for method in METHODS {
            let response = gw
                .request(method.to_uppercase().parse().unwrap(), &path, &alice)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let allow = response.headers().get(header::ALLOW).cloned();
            let body = response.text().await.unwrap();
            if methods.contains(method) {
                assert!(
                    status != 405 && !body.contains("no such endpoint"),
                    "{method} {path}: {status} {body}"
                );
            } else {
                assert_eq!(status, 405, "{method} {path} is not documented: {body}");
                let allow = allow.expect("a 405 says what is allowed");
                let allowed: BTreeSet<String> = allow
                    .to_str()
                    .unwrap()
                    .split(',')
                    .map(|m| m.trim().to_lowercase())
                    .filter(|m| METHODS.contains(&m.as_str()))
                    .collect();
                assert_eq!(&allowed, methods, "Allow of {path}");
            }
        }
    }

    // Every operation but the document itself needs the bearer token and says so, with its
    // 401; every error answer is one of the shared ones (the error body).
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            if template == "/api/v1/openapi.json" {
                assert!(operation.get("security").is_none());
                continue;
            }
            assert_eq!(
                operation["security"],
                serde_json::json!([{ "bearer": [] }]),
                "{method} {template}"
            );
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let reference = response["$ref"].as_str().unwrap_or_default();
                    assert!(
                        reference.starts_with("#/components/responses/"),
                        "{method} {template} {status}: {response}"
                    );
                }
            }
            for status in ["401", "500", "503"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {template} {status}"
                );
            }
        }
    }
    assert_eq!(
        doc["components"]["responses"]["TooManyRequests"]["headers"]["Retry-After"]["required"],
        true
    );
    assert_eq!(
        doc["paths"]["/api/v1/jobs/{id}/output.zip"]["get"]["responses"]["200"]["content"],
        serde_json::json!({"application/zip": {}})
    );
    // What the configuration decides is written in.
    let wait = doc["paths"]["/api/v1/jobs/{id}"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "wait")
        .unwrap();
    assert_eq!(wait["schema"]["maximum"], 60.0);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn the_reference_page_and_its_assets_are_served_under_the_sites_policy() {
    let gw = Gateway::start().await;
    let response = gw.http.get(gw.url("/api/docs")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    assert_eq!(
        response.headers()[header::CONTENT_SECURITY_POLICY],
        CONTENT_SECURITY_POLICY
    );
    let page = response.text().await.unwrap();
    assert!(
        !page.contains("<style") && !page.contains("style="),
        "{page}"
    );
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );
    let scripts: Vec<&str> = page.split("<script").skip(1).collect();
    assert_eq!(scripts.len(), 2, "{page}");
    for script in scripts {
        assert!(
            script.trim_start().starts_with("src=\"/static/"),
            "{script}"
        );
        assert!(script.contains("></script>"), "no inline script: {script}");
    }
    for (asset, content_type, at_least) in [
        (
            "swagger-ui-bundle.js",
            "text/javascript; charset=utf-8",
            100_000,
        ),
        ("swagger-ui.css", "text/css; charset=utf-8", 10_000),
        ("api-docs.js", "text/javascript; charset=utf-8", 100),
    ] {
        let link = page
            .split('"')
            .find(|part| part.starts_with(&format!("/static/{asset}?v=")))
            .unwrap_or_else(|| panic!("the page links {asset}: {page}"));
        let response = gw
            .http
            .request(Method::GET, gw.url(link))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{link}");
        assert_eq!(response.headers()[header::CONTENT_TYPE], content_type);
        let body = response.bytes().await.unwrap();
        assert!(body.len() >= at_least, "{link}");
        if asset == "swagger-ui.css" {
            // Its images are served from here: the policy refuses `data:` images.
            let css = String::from_utf8(body.to_vec()).unwrap();
            assert!(!css.contains("data:"));
            let images: Vec<&str> = css
                .split("url(\"")
                .skip(1)
                .map(|rest| &rest[..rest.find('"').unwrap()])
                .collect();
            assert!(!images.is_empty());
            for image in images {
                assert!(image.starts_with("/static/swagger-ui-img-"), "{image}");
                let response = gw.http.get(gw.url(image)).send().await.unwrap();
                assert_eq!(response.status(), 200, "{image}");
                assert!(
                    response.headers()[header::CONTENT_TYPE]
                        .to_str()
                        .unwrap()
                        .starts_with("image/"),
                    "{image}"
                );
            }
        }
    }
    gw.stop().await.unwrap();
}
