//! `GET /api/v1/numeric/methods`: every method of the numeric runtime with its
//! parameters (name, type, required, default, meaning) and a worked example, so that clients
//! can build forms. The catalogue is static: it is serialized once.

use std::sync::LazyLock;

use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    auth::Authenticated,
    openapi::{InternalError, ServiceUnavailable, Unauthorized},
};

/// The numeric methods.
#[derive(Serialize, ToSchema)]
pub struct MethodList {
    methods: Vec<cola_numeric::MethodInfo>,
}

/// The catalogue as the endpoint answers it.
pub fn catalogue_json() -> Bytes {
    static BODY: LazyLock<Bytes> = LazyLock::new(|| {
        let list = MethodList {
            methods: cola_numeric::methods(),
        };
        Bytes::from(serde_json::to_vec(&list).expect("the catalogue always serializes"))
    });
    BODY.clone()
}

/// `GET /api/v1/numeric/methods`.
#[utoipa::path(
    get,
    path = "/api/v1/numeric/methods",
    tag = "numeric",
    operation_id = "list_numeric_methods",
    summary = "The numeric methods, their parameters and a worked example each",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The catalogue.", body = MethodList),
        (status = 401, response = Unauthorized),
        (status = 500, response = InternalError),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn methods(Authenticated(_): Authenticated) -> Response {
    let mut response = catalogue_json().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
