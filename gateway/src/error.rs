//! The gateway's one error type, and how each error answers an HTTP request.
//!
//! Client errors (4xx) say what is wrong and, when one field is to blame, which one. Server
//! errors (5xx) say nothing about the inside: their detail goes to the log.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use cola_wire::nats::NatsError;
use serde::Serialize;

/// Everything that can go wrong in the gateway, from start-up to a single request.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration is unusable (checked before any port is bound).
    #[error("invalid gateway configuration: {0}")]
    Config(String),
    /// NATS did not answer at start.
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    /// The stream or a bucket is missing at start: something else must create them first.
    #[error(
        "the NATS stream and buckets are not there ({0}); they are created by `cola up` or the \
         middleware, start that first"
    )]
    MissingTopology(#[source] NatsError),
    /// The listening socket could not be set up.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server stopped with an error.
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),

    /// The request is wrong; `field` names the part to blame, if one is.
    #[error("{message}")]
    Invalid {
        message: String,
        field: Option<String>,
    },
    /// The request body is larger than the configured limit.
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// The request body is not declared as JSON.
    #[error("request body must be JSON (Content-Type: application/json)")]
    NotJson,
    /// No credentials, or credentials that do not name a user.
    #[error("missing or invalid credentials (send Authorization: Bearer <token>)")]
    Unauthorized,
    /// Nothing there, or nothing there for this user.
    #[error("{0}")]
    NotFound(&'static str),
    /// The request does not fit the job's current state.
    #[error("{0}")]
    Conflict(&'static str),
    /// The HTTP method is not served at this path.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The user is over a quota (see [`crate::quota`]); they may try again after `retry_after`.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after: std::time::Duration,
    },
    /// The job stream is full (every user's jobs together): nothing more can be queued now.
    #[error("the job queue is full, try again later")]
    QueueFull,

    /// Talking to NATS failed during a request.
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// Something NATS-side failed outside the typed store helpers (object store, publish, ...).
    #[error("{step}: {source}")]
    Backend {
        step: &'static str,
        #[source]
        source: async_nats::Error,
    },
}

impl GatewayError {
    /// A `400` about the request as a whole.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
            field: None,
        }
    }

    /// A `400` blaming one field, named as in the request (`files[2].name`, `limits.memory_mb`).
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// A failure of a NATS step that is not covered by [`NatsError`].
    pub fn backend(step: &'static str, source: impl Into<async_nats::Error>) -> Self {
        Self::Backend {
            step,
            source: source.into(),
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid { .. } => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::QueueFull => StatusCode::SERVICE_UNAVAILABLE,
            Self::Nats(NatsError::Nats { .. }) | Self::Backend { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Nats(_)
            | Self::Config(_)
            | Self::Connect { .. }
            | Self::MissingTopology(_)
            | Self::Listen { .. }
            | Self::Serve(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// When a client whose job found the queue full is told to come back.
const QUEUE_FULL_RETRY_AFTER_SECS: u64 = 30;

/// The JSON body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What is wrong, for a person to read; a server error says only that it happened.
    pub error: String,
    /// The part of the request to blame, named as in the request (`files[2].name`,
    /// `limits.memory_mb`, `problem.f`, `wait`); `null` when no one part is.
    #[schema(required = true)]
    pub field: Option<String>,
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = if status.is_server_error() {
            tracing::error!(error = %self, source = ?std::error::Error::source(&self), "request failed");
            let error = if matches!(self, Self::QueueFull) {
                "the job queue is full, try again later"
            } else if status == StatusCode::SERVICE_UNAVAILABLE {
                "service temporarily unavailable, try again"
            } else {
                "internal error"
            };
            ErrorBody {
                error: error.into(),
                field: None,
            }
        } else {
            tracing::debug!(status = status.as_u16(), error = %self, "request refused");
            let field = match &self {
                Self::Invalid { field, .. } => field.clone(),
                _ => None,
            };
            ErrorBody {
                error: self.to_string(),
                field,
            }
        };
        let retry_after = match &self {
            Self::TooManyRequests { retry_after, .. } => Some(retry_after.as_secs().max(1)),
            Self::QueueFull => Some(QUEUE_FULL_RETRY_AFTER_SECS),
            _ => None,
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"cola\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(error: GatewayError) -> (StatusCode, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn client_errors_say_what_and_where() {
        let (status, body) =
            body_of(GatewayError::invalid_field("limits.memory_mb", "too much")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            serde_json::json!({"error": "too much", "field": "limits.memory_mb"})
        );
    }

    #[tokio::test]
    async fn server_errors_keep_their_detail_out_of_the_body() {
        let secret = "connection to 10.0.0.7:4222 refused";
        let error = GatewayError::backend("publish job", secret);
        let (status, body) = body_of(error).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!body.to_string().contains("10.0.0.7"), "{body}");
        assert_eq!(body["field"], serde_json::Value::Null);
    }
}
