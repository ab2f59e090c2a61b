//! Extractors that answer every malformed request with the gateway's JSON error, never with
//! axum's default plain-text rejections.

use axum::{
    body::Bytes,
    extract::{FromRef, FromRequest, FromRequestParts, Path, Query, Request},
    http::{StatusCode, header, request::Parts},
};
use cola_wire::JobId;
use serde::de::DeserializeOwned;

use crate::GatewayError;

/// The largest request body accepted, in bytes (what the body-limit layer enforces).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON request body, parsed strictly. A syntax error, a wrong type or an unknown field is a
/// `400` naming the field at fault; a body over the limit is a `413`; a body declared as
/// something else than JSON is a `415`. A body without a `Content-Type` is read as JSON.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    BodyLimit: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = GatewayError;

    async fn from_request(request: Request, state: &S) -> Result<Self, GatewayError> {
        if let Some(content_type) = request.headers().get(header::CONTENT_TYPE)
            && !is_json(content_type.to_str().unwrap_or(""))
        {
            return Err(GatewayError::NotJson);
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    GatewayError::BodyTooLarge {
                        limit: BodyLimit::from_ref(state).0,
                    }
                } else {
                    GatewayError::invalid("could not read the request body")
                }
            })?;
        parse_json(&bytes).map(JsonBody)
    }
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses `bytes` as a `T`, blaming the field (`files[0].name`) where the value does not fit.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, GatewayError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_data() {
            let field = (path != ".").then_some(path);
            GatewayError::Invalid {
                message: format!("invalid request: {inner}"),
                field,
            }
        } else {
            GatewayError::invalid(format!("malformed JSON: {inner}"))
        }
    })?;
    deserializer
        .end()
        .map_err(|e| GatewayError::invalid(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// Query parameters; a query string that cannot be decoded at all is a `400`.
#[derive(Debug, Clone)]
pub struct QueryParams<T>(pub T);

impl<T, S> FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, GatewayError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(params)| QueryParams(params))
            .map_err(|rejection| {
                GatewayError::invalid(format!("invalid query string: {}", rejection.body_text()))
            })
    }
}

/// The `{id}` of a job path. Anything that is not a job id is simply a job that is not found.
#[derive(Debug, Clone, Copy)]
pub struct JobIdParam(pub JobId);

/// The answer about a job id that is malformed, unknown or someone else's: all look the same.
pub const NO_SUCH_JOB: GatewayError = GatewayError::NotFound("no such job");

impl<S> FromRequestParts<S> for JobIdParam
where
    S: Send + Sync,
{
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, GatewayError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| NO_SUCH_JOB)?;
        id.parse().map(JobIdParam).map_err(|_| NO_SUCH_JOB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        files: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        name: String,
    }

    fn field_of(json: &str) -> Option<String> {
        match parse_json::<Outer>(json.as_bytes()).unwrap_err() {
            GatewayError::Invalid { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn data_errors_name_the_field_and_syntax_errors_do_not() {
        assert_eq!(
            field_of(r#"{"files": [{"name": "a"}, {"name": 3}]}"#).as_deref(),
            Some("files[1].name")
        );
        assert_eq!(field_of(r#"{"files": [}"#), None);
        assert_eq!(field_of(""), None);
        assert!(parse_json::<Outer>(br#"{"files": []} trailing"#).is_err());
        assert!(parse_json::<Outer>(br#"{"files": []}"#).is_ok());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let error = parse_json::<Outer>(br#"{"files": [], "color": "red"}"#).unwrap_err();
        assert!(error.to_string().contains("color"), "{error}");
    }

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/problem+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }
}
