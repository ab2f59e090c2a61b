//! What a gateway is told at start, and the checks it passes before any port is bound.

use std::{net::SocketAddr, time::Duration};

use crate::GatewayError;

/// The largest message the job stream accepts (its `max_message_size`). A job message must fit
/// in it with room to spare: inputs above [`GatewayConfig::inline_input_bytes`] travel through
/// the object store instead.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Room a job message needs besides its inputs (ids, limits, args, JSON syntax).
const MESSAGE_HEADROOM_BYTES: usize = 128 << 10;

/// The largest encoded job message sent inline; a larger one (e.g. inputs full of characters
/// that JSON escapes) goes through the object store like large inputs do.
pub(crate) const MAX_INLINE_MESSAGE_BYTES: usize = MAX_MESSAGE_BYTES - MESSAGE_HEADROOM_BYTES / 2;

/// The longest `?wait` an operator may allow. A wait holds an HTTP connection open.
const MAX_WAIT_CEILING: Duration = Duration::from_secs(10 * 60);

/// The gateway's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Where [`crate::run`] listens for HTTP.
    pub listen: SocketAddr,
    /// The NATS server (or cluster seed) to connect to.
    pub nats_url: String,
    /// The largest request body accepted; a larger one gets `413`.
    pub max_body_bytes: usize,
    /// Inputs whose content is larger than this travel as an input zip through the object store
    /// instead of inside the job message.
    pub inline_input_bytes: usize,
    /// The longest `?wait=N` a request may ask for.
    pub max_wait: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            nats_url: "nats://127.0.0.1:4222".into(),
            max_body_bytes: 1 << 20,
            inline_input_bytes: 256 << 10,
            max_wait: Duration::from_secs(60),
        }
    }
}

impl GatewayConfig {
    /// Checks the configuration; [`crate::run`] and [`crate::serve`] call this before doing
    /// anything else.
    pub fn validate(&self) -> Result<(), GatewayError> {
        let invalid = |message: String| Err(GatewayError::Config(message));
        if self.nats_url.trim().is_empty() {
            return invalid("nats_url must not be empty".into());
        }
        if self.max_body_bytes < 1024 {
            return invalid(format!(
                "max_body_bytes must be at least 1024, got {}",
                self.max_body_bytes
            ));
        }
        let inline_ceiling = MAX_MESSAGE_BYTES - MESSAGE_HEADROOM_BYTES;
        if self.inline_input_bytes > inline_ceiling {
            return invalid(format!(
                "inline_input_bytes must be at most {inline_ceiling} (a job message is limited \
                 to {MAX_MESSAGE_BYTES} bytes), got {}",
                self.inline_input_bytes
            ));
        }
        if self.max_wait > MAX_WAIT_CEILING {
            return invalid(format!(
                "max_wait must be at most {} s, got {} s",
                MAX_WAIT_CEILING.as_secs(),
                self.max_wait.as_secs_f64()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid() {
        GatewayConfig::default().validate().unwrap();
    }

    #[test]
    fn each_bad_setting_is_named() {
        type Spoil = fn(&mut GatewayConfig);
        let cases: [(Spoil, &str); 4] = [
            (|c| c.nats_url = " ".into(), "nats_url"),
            (|c| c.max_body_bytes = 10, "max_body_bytes"),
            (|c| c.inline_input_bytes = 2 << 20, "inline_input_bytes"),
            (|c| c.max_wait = Duration::from_secs(3600), "max_wait"),
        ];
        for (spoil, name) in cases {
            let mut config = GatewayConfig::default();
            spoil(&mut config);
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }
}
