//! The gateway's NATS connection, with a signal each time it comes back after being lost (a
//! server restart loses the server-side state of watches: they must be set up again).

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio::sync::watch;

use crate::GatewayError;

/// Counts the reconnections of one NATS client; `changed()` fires after each.
pub type Reconnects = watch::Receiver<u64>;

/// Connects to `url` (one URL, or a cluster's, comma-separated), logging connection events, and
/// returns the client with its reconnects.
pub async fn connect(url: &str) -> Result<(async_nats::Client, Reconnects), GatewayError> {
    let (reconnected, reconnects) = watch::channel(0u64);
    let reconnected = Arc::new(reconnected);
    let lost = Arc::new(AtomicBool::new(false));
    let options = async_nats::ConnectOptions::new()
        .name("cola-gateway")
        .event_callback(move |event| {
            let (reconnected, lost) = (reconnected.clone(), lost.clone());
            async move {
                match event {
                    async_nats::Event::Disconnected => {
                        lost.store(true, Ordering::SeqCst);
                        tracing::warn!("lost the connection to NATS, reconnecting");
                    }
                    async_nats::Event::Connected => {
                        if lost.swap(false, Ordering::SeqCst) {
                            tracing::info!("connected to NATS again");
                            reconnected.send_modify(|count| *count += 1);
                        }
                    }
                    other => tracing::warn!(event = %other, "NATS connection event"),
                }
            }
        });
    let client = cola_wire::nats_connect::connect(url, options)
        .await
        .map_err(|source| GatewayError::Connect {
            url: cola_wire::nats_connect::redacted(url),
            source,
        })?;
    Ok((client, reconnects))
}
