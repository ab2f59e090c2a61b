//! The middleware's error type.

use cola_wire::nats::NatsError;

use crate::backend::BackendError;

/// What can stop the middleware.
#[derive(Debug, thiserror::Error)]
pub enum MiddlewareError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error(transparent)]
    Backend(#[from] BackendError),
}
