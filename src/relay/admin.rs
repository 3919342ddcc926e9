//! The relay's admin endpoint (`relay --admin`, loopback only, served by
//! `transport::admin`): `/metrics` and `/healthz`. It only reads the relay's state.
//!
//! Counters are kept as things happen (joins, refusals by status, bytes each way, handshakes
//! closed for their source's cap); gauges (listeners per name, waiting senders, connections)
//! are read from the relay's tables at scrape time.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::http::{Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::net::TcpListener;

use super::Relay;
use crate::transport::admin::{self, json, respond};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabel {
    name: String,
}

/// The relay's metrics.
#[derive(Debug)]
pub(super) struct Metrics {
    /// Held while a scrape sets the gauges and encodes: two scrapes do not interleave.
    registry: Mutex<Registry>,
    joins: Counter,
    refusals: Family<StatusLabel, Counter>,
    /// Payload bytes from senders to listeners.
    pub(super) to_listener: Counter,
    /// Payload bytes from listeners to senders.
    pub(super) to_sender: Counter,
    handshakes_refused: Counter,
    listeners: Family<NameLabel, Gauge>,
    waiting: Gauge,
    connections: Gauge,
}

impl Metrics {
    pub(super) fn new() -> Metrics {
        let mut registry = Registry::default();
        let joins = Counter::default();
        registry.register(
            "arcgate_relay_joins",
            "Senders joined to a listener",
            joins.clone(),
        );
        let refusals = Family::<StatusLabel, Counter>::default();
        registry.register(
            "arcgate_relay_refusals",
            "Requests answered with an error status, by status (410: rejections passed on)",
            refusals.clone(),
        );
        let bytes = Family::<DirectionLabel, Counter>::default();
        registry.register(
            "arcgate_relay_bytes",
            "Data frame payload bytes relayed, by direction",
            bytes.clone(),
        );
        let handshakes_refused = Counter::default();
        registry.register(
            "arcgate_relay_handshakes_refused",
            "Connections closed unanswered because their source already had \
             --max-handshakes-per-ip connections in their handshake",
            handshakes_refused.clone(),
        );
        let listeners = Family::<NameLabel, Gauge>::default();
        registry.register(
            "arcgate_relay_listeners",
            "Listeners attached now, by name",
            listeners.clone(),
        );
        let waiting = Gauge::default();
        registry.register(
            "arcgate_relay_senders_waiting",
            "Senders waiting now for a listener's answer",
            waiting.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "arcgate_relay_connections",
            "Established connections now (listeners, waiting senders, joined pairs' two sides)",
            connections.clone(),
        );
        let direction = |direction| bytes.get_or_create(&DirectionLabel { direction }).clone();
        Metrics {
            registry: Mutex::new(registry),
            joins,
            refusals,
            to_listener: direction("sender_to_listener"),
            to_sender: direction("listener_to_sender"),
            handshakes_refused,
            listeners,
            waiting,
            connections,
        }
    }

    pub(super) fn joined(&self) {
        self.joins.inc();
    }

    pub(super) fn answered(&self, status: StatusCode) {
        if status.as_u16() >= 400 {
            self.refusals
                .get_or_create(&StatusLabel {
                    status: status.as_u16(),
                })
                .inc();
        }
    }

    pub(super) fn handshake_refused(&self) {
        self.handshakes_refused.inc();
    }
}

/// `/healthz`.
#[derive(Debug, Serialize)]
struct Health {
    /// `ok`, or `keys_invalid` (no token is accepted).
    status: &'static str,
    /// Why the keys cannot be used, when they cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    keys_error: Option<String>,
    names: usize,
    listeners: usize,
    senders_waiting: usize,
    connections: usize,
}

impl Relay {
    /// The Prometheus text exposition, gauges read now.
    fn render_metrics(&self) -> String {
        let m = &self.metrics;
        let registry = m.registry.lock().unwrap_or_else(|p| p.into_inner());
        m.listeners.clear();
        for (name, n) in self.listeners_by_name() {
            m.listeners.get_or_create(&NameLabel { name }).set(n as i64);
        }
        m.waiting.set(self.waiting_now() as i64);
        m.connections.set(self.connections_in_use() as i64);
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }

    fn health(&self) -> (StatusCode, Health) {
        let keys = self.keys.borrow().clone();
        let by_name = self.listeners_by_name();
        let health = Health {
            status: if keys.is_ok() { "ok" } else { "keys_invalid" },
            keys_error: keys.as_ref().as_ref().err().cloned(),
            names: by_name.len(),
            listeners: by_name.iter().map(|(_, n)| n).sum(),
            senders_waiting: self.waiting_now(),
            connections: self.connections_in_use(),
        };
        match keys.is_ok() {
            true => (StatusCode::OK, health),
            false => (StatusCode::SERVICE_UNAVAILABLE, health),
        }
    }

    fn page(&self, path: &str) -> Response<Full<Bytes>> {
        match path {
            "/metrics" => respond(
                StatusCode::OK,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                self.render_metrics(),
            ),
            "/healthz" => {
                let (status, health) = self.health();
                respond(status, "application/json", json(&health))
            }
            _ => respond(
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found; try /metrics or /healthz\n".into(),
            ),
        }
    }
}

/// Serves the relay's admin endpoint on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    relay: Arc<Relay>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    admin::serve(
        admin::Listener::Tcp(listener),
        move |asked: &admin::Asked<'_>| relay.page(asked.path),
        shutdown,
    )
    .await;
}
