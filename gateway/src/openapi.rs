//! The OpenAPI 3.1 document of the JSON API, served at `GET /api/v1/openapi.json`.
//!
//! It cannot drift from the code: every route under `/api/v1` is registered through
//! `utoipa_axum`'s `routes!` from the `#[utoipa::path]` attribute on its handler (the same
//! attribute gives the router its path and method and the document its operation), and every
//! body is described by the type the handler reads or answers (`ToSchema`, `IntoParams`). The
//! error answers are the [`GatewayError`](crate::GatewayError) statuses each handler can
//! produce, with the one error body, [`ErrorBody`]. What depends on the configuration (the
//! longest `?wait`, the body limit) is filled in when the router is built.

use axum::{
    Extension,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde_json::{Value, json};
use utoipa::{
    Modify, OpenApi, ToResponse,
    openapi::{
        self, Content, Ref, RefOr, ResponseBuilder,
        header::HeaderBuilder,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::{config::GatewayConfig, error::ErrorBody};

/// Where the document is served.
pub const PATH: &str = "/api/v1/openapi.json";
/// The name of the bearer-token security scheme every authenticated operation requires.
pub const BEARER: &str = "bearer";

/// The parts of the document that are not an operation: its description, the security scheme,
/// the error answers every operation refers to.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "cola",
        description = "The JSON API of cola, a NATS-native code-execution service: submit a \
            C, Go or JavaScript program or a numeric problem, follow it, download its output. \
            Every call but `GET /api/v1/openapi.json` needs `Authorization: Bearer <token>` \
            (`cola up --dev` writes one to `<data-dir>/dev-token`; `cola token issue --user \
            NAME` makes one for anybody). Errors answer `{\"error\": ..., \"field\": ...}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(
        schemas(ErrorBody),
        responses(
            BadRequest,
            Unauthorized,
            NotFound,
            Conflict,
            PayloadTooLarge,
            UnsupportedMediaType,
            TooManyRequests,
            ServiceUnavailable,
            InternalError
        )
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "jobs", description = "Submit, list, follow and cancel jobs; download their output."),
        (name = "languages", description = "The languages, their toolchains and limits."),
        (name = "numeric", description = "The numeric methods a `numeric` job can state."),
        (name = "energy", description = "The nodes' energy readings, which placement follows."),
        (name = "meta", description = "This document."),
    )
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token: `cola token issue --user NAME`, the tokens page of the \
                         web app, or `<data-dir>/dev-token` of `cola up --dev`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// A response with the error body, and the headers it always or sometimes carries.
fn error_response(description: &str, headers: &[(&str, &str)]) -> RefOr<openapi::Response> {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
    );
    for (name, meaning) in headers {
        response = response.header(
            *name,
            HeaderBuilder::new()
                .schema(Some(
                    openapi::ObjectBuilder::new().schema_type(openapi::schema::Type::String),
                ))
                .description(Some(*meaning))
                .build(),
        );
    }
    response.build().into()
}

/// The reusable error answers, one type each (referenced as `response = ...` by the handlers'
/// `#[utoipa::path]`), named as in `#/components/responses`.
macro_rules! error_responses {
    ($($name:ident => $description:expr $(, [$(($header:expr, $meaning:expr)),*])?;)*) => {
        $(
            pub struct $name;

            impl<'r> ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<openapi::Response>) {
                    (stringify!($name), error_response($description, &[$($(($header, $meaning)),*)?]))
                }
            }
        )*
    };
}

error_responses! {
    BadRequest => "The request is wrong: a malformed query string, body or parameter, or a value \
        the checks refuse; `field` names the part to blame when one is (`limits.memory_mb`, \
        `files[0].name`, `problem.f`, `wait`). Nothing was queued.";
    Unauthorized => "No `Authorization: Bearer <token>`, or a token that is not (or no longer) \
        valid.", [("WWW-Authenticate", "`Bearer realm=\"cola\"`")];
    NotFound => "No such job for this user: an unknown id, a malformed one, or another user's \
        job all look the same.";
    Conflict => "The request does not fit the job's current state: cancelling a job that has \
        ended, or asking for the output of one that has not.";
    PayloadTooLarge => "The request body is larger than the gateway's limit.";
    UnsupportedMediaType => "The body is declared as something else than JSON (a body without \
        `Content-Type` is read as JSON).";
    TooManyRequests => "Over a per-user quota (jobs queued or running at once, submissions per \
        minute, output stored); the message says which. Nothing was queued.",
        [("Retry-After", "Seconds to wait before trying again.")];
    ServiceUnavailable => "NATS did not answer in time, or the job queue is full (every \
        user's jobs together); try again later. Nothing was queued.",
        [("Retry-After", "Seconds to wait before trying again; sent when the queue is full.")];
    InternalError => "Something failed inside the service (the detail is in its log, not \
        here).";
}

/// The headers each error answer always carries (OpenAPI's `required`, which the header
/// builder cannot say).
const REQUIRED_HEADERS: &[(&str, &str)] = &[
    ("Unauthorized", "WWW-Authenticate"),
    ("TooManyRequests", "Retry-After"),
];

/// The document for a gateway with `config`, as JSON: the operations of `api`, the router's
/// own, merged into [`ApiDoc`], with the configured limits written where they apply.
pub fn document(api: openapi::OpenApi, config: &GatewayConfig) -> Value {
    let mut doc = ApiDoc::openapi();
    doc.merge(api);
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut value = serde_json::to_value(&doc).expect("an OpenAPI document always serializes");
    for (response, name) in REQUIRED_HEADERS {
        value["components"]["responses"][*response]["headers"][*name]["required"] = json!(true);
    }
    // Binary bodies (the output zip): OpenAPI 3.1 describes them by their media type alone,
    // with no schema for the bytes (what utoipa writes is a 3.0-style `format: binary`).
    if let Some(paths) = value["paths"].as_object_mut() {
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for operation in item.values_mut() {
                let Some(responses) = operation
                    .get_mut("responses")
                    .and_then(Value::as_object_mut)
                else {
                    continue;
                };
                for response in responses.values_mut() {
                    if let Some(zip) = response.pointer_mut("/content/application~1zip") {
                        *zip = json!({});
                    }
                }
            }
        }
    }
    let max_wait = config.max_wait.as_secs_f64();
    if let Some(paths) = value["paths"].as_object_mut() {
        for operation in paths.values_mut().filter_map(Value::as_object_mut) {
            for operation in operation.values_mut() {
                let Some(parameters) = operation
                    .get_mut("parameters")
                    .and_then(Value::as_array_mut)
                else {
                    continue;
                };
                for parameter in parameters {
                    if parameter["name"] == "wait" && parameter["in"] == "query" {
                        parameter["schema"]["maximum"] = json!(max_wait);
                    }
                }
            }
        }
    }
    value["components"]["responses"]["PayloadTooLarge"]["description"] = json!(format!(
        "The request body is larger than this gateway's limit, {} bytes.",
        config.max_body_bytes
    ));
    value
}

/// The document as served: built once per router.
#[derive(Clone)]
pub struct Served(pub Bytes);

impl Served {
    pub fn new(document: &Value) -> Self {
        Self(Bytes::from(
            serde_json::to_vec(document).expect("a JSON value always serializes"),
        ))
    }
}

/// `GET /api/v1/openapi.json`: this document (public: it says nothing about anybody's jobs).
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    operation_id = "openapi",
    summary = "This OpenAPI 3.1 document",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API.",
            content_type = "application/json", body = Object),
    )
)]
pub async fn serve(Extension(Served(body)): Extension<Served>) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
