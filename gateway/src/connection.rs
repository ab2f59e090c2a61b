//! The gateway's NATS connection, with a signal each time it comes back after being lost (a
//! server restart loses the server-side state of watches: they must be set up again).

use cola_telemetry::nats::NatsConnectionMetrics;
use tokio::sync::watch;

use crate::GatewayError;

/// Counts the reconnections of one NATS client; `changed()` fires after each.
pub type Reconnects = watch::Receiver<u64>;

/// Connects to `url` (one URL, or a cluster's, comma-separated), logging connection events and
/// counting reconnections in `metrics`, and returns the client with its reconnects.
pub async fn connect(
    url: &str,
    metrics: &NatsConnectionMetrics,
) -> Result<(async_nats::Client, Reconnects), GatewayError> {
    let (reconnected, reconnects) = watch::channel(0u64);
    let options = metrics.connect_options("cola-gateway", move || {
        reconnected.send_modify(|count| *count += 1);
    });
    let client = cola_wire::nats_connect::connect(url, options)
        .await
        .map_err(|source| GatewayError::Connect {
            url: cola_wire::nats_connect::redacted(url),
            source,
        })?;
    Ok((client, reconnects))
}
