//! A service's NATS connection as metrics: how often it came back after being lost
//! (`cola_nats_reconnects_total`) and whether it is up now (`cola_nats_connected`, read from
//! the client when scraped), with every connection event logged.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use async_nats::{ConnectOptions, Event, connection::State};
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

/// The connection metrics of one service.
#[derive(Clone, Debug, Default)]
pub struct NatsConnectionMetrics {
    reconnects: Counter,
    connected: Gauge,
}

impl NatsConnectionMetrics {
    /// Adds the metrics to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "nats_reconnects",
            "Times the NATS connection came back after being lost",
            self.reconnects.clone(),
        );
        registry.register(
            "nats_connected",
            "Whether the service is connected to NATS (1) or not (0), when scraped",
            self.connected.clone(),
        );
    }

    /// Connect options named `name` that log every connection event, count reconnections, and
    /// call `on_reconnect` after each (a server restart loses server-side state, such as
    /// watches, that the caller may have to set up again).
    pub fn connect_options(
        &self,
        name: &str,
        on_reconnect: impl Fn() + Send + Sync + 'static,
    ) -> ConnectOptions {
        let lost = Arc::new(AtomicBool::new(false));
        let reconnects = self.reconnects.clone();
        let on_reconnect = Arc::new(on_reconnect);
        ConnectOptions::new()
            .name(name)
            .event_callback(move |event| {
                let (lost, reconnects, on_reconnect) =
                    (lost.clone(), reconnects.clone(), on_reconnect.clone());
                async move {
                    match event {
                        Event::Disconnected => {
                            lost.store(true, Ordering::SeqCst);
                            tracing::warn!("lost the connection to NATS, reconnecting");
                        }
                        Event::Connected => {
                            if lost.swap(false, Ordering::SeqCst) {
                                tracing::info!("connected to NATS again");
                                reconnects.inc();
                                on_reconnect();
                            }
                        }
                        // The client closing (the service stops) is no trouble.
                        Event::Closed => tracing::info!("NATS connection closed"),
                        other => tracing::warn!(event = %other, "NATS connection event"),
                    }
                }
            })
    }

    /// Sets `cola_nats_connected` from `client`'s state (called when the metrics are scraped).
    pub fn observe(&self, client: &async_nats::Client) {
        let up = client.connection_state() == State::Connected;
        self.connected.set(i64::from(up));
    }
}
