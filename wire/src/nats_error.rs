//! [`NatsError`]: a failure talking to NATS, with the step that failed; the error of every
//! typed access to the stream, buckets and object store.

use async_nats::jetstream;

/// What a server answers while its JetStream is not (yet) ready: worth another try.
const JETSTREAM_STARTING: [jetstream::ErrorCode; 3] = [
    jetstream::ErrorCode::CLUSTER_NOT_AVAILABLE,
    jetstream::ErrorCode::JETSTREAM_NOT_ENABLED,
    jetstream::ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT,
];

/// A failure talking to NATS, with the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("{step}: {source}")]
    Nats {
        step: &'static str,
        #[source]
        source: async_nats::Error,
    },
    #[error("job record {key} is not valid JSON: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

impl NatsError {
    pub fn nats(step: &'static str, source: impl Into<async_nats::Error>) -> Self {
        Self::Nats {
            step,
            source: source.into(),
        }
    }

    /// Whether the server answered with a refusal (a store full, a message too large, a
    /// record that does not decode): the same request would be refused again. Anything else
    /// (a timeout, a lost connection, a server starting or not yet ready) may pass if retried.
    pub fn is_refused(&self) -> bool {
        match self {
            Self::Nats { source, .. } => {
                let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
                while let Some(error) = cause {
                    if let Some(api) = error.downcast_ref::<jetstream::Error>() {
                        return !JETSTREAM_STARTING.contains(&api.error_code());
                    }
                    if let Some(publish) = error.downcast_ref::<jetstream::context::PublishError>()
                        && publish.kind()
                            == jetstream::context::PublishErrorKind::MaxPayloadExceeded
                    {
                        return true;
                    }
                    cause = error.source();
                }
                false
            }
            Self::Corrupt { .. } => true,
        }
    }
}
