//! Prometheus metrics (prometheus-client): decisions, handshake latency, reloads and token
//! failures are counted as they happen; sessions and bytes are read from the live session
//! table at scrape time, so they are exact without touching the data path.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of `arcgate_decisions_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `allow`, `deny`, `unauthorized`, ...
    pub decision: &'static str,
    /// A bounded reason code (`port_not_allowed`, `expired`, ...).
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// What the collector reads at scrape time.
pub trait LiveView: Send + Sync + 'static {
    /// Active sessions by target port.
    fn sessions_by_port(&self) -> Vec<(u16, u64)>;
    /// Bytes (from clients, to clients) over all sessions, ended and live.
    fn bytes(&self) -> (u64, u64);
}

/// The gate's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    handshake: Histogram,
    reloads: Family<ResultLabel, Counter>,
    token_failures: Family<ReasonLabel, Counter>,
    handshakes_refused: Counter,
}

struct LiveCollector(Arc<dyn LiveView>);

impl fmt::Debug for LiveCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LiveCollector")
    }
}

impl Collector for LiveCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let mut by_port = self.0.sessions_by_port();
        by_port.sort_unstable();
        let mut family = encoder.encode_descriptor(
            "arcgate_sessions_active",
            "Sessions bridged now, by target port",
            None,
            MetricType::Gauge,
        )?;
        for (port, n) in by_port {
            let labels = [("port", port.to_string())];
            ConstGauge::new(n as i64).encode(family.encode_family(&labels)?)?;
        }
        let (from_client, to_client) = self.0.bytes();
        for (name, help, value) in [
            (
                "arcgate_bytes_from_client",
                "Bytes from clients to local services",
                from_client,
            ),
            (
                "arcgate_bytes_to_client",
                "Bytes from local services to clients",
                to_client,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// Registers every metric; `live` answers the scrape-time ones.
    pub fn new(live: Arc<dyn LiveView>) -> Metrics {
        let mut registry = Registry::default();
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "arcgate_decisions",
            "Connect-request decisions by result and reason",
            decisions.clone(),
        );
        // 0.5 ms to ~4 s: a local decision with a local dial is about a millisecond; the upper
        // buckets catch slow dials and slow clients.
        let handshake = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "arcgate_handshake_seconds",
            "From a connect request's arrival to its decision (including the local dial)",
            handshake.clone(),
        );
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "arcgate_config_reloads",
            "Configuration reloads by result (ok, failed)",
            reloads.clone(),
        );
        let token_failures = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "arcgate_token_failures",
            "Refused tokens by reason",
            token_failures.clone(),
        );
        let handshakes_refused = Counter::default();
        registry.register(
            "arcgate_handshakes_refused",
            "Connections closed unanswered because their source already had \
             --max-handshakes-per-ip connections in their handshake",
            handshakes_refused.clone(),
        );
        registry.register_collector(Box::new(LiveCollector(live)));
        Metrics {
            registry,
            decisions,
            handshake,
            reloads,
            token_failures,
            handshakes_refused,
        }
    }

    /// Counts a decision and its handshake time.
    pub fn decision(&self, labels: DecisionLabels, seconds: f64) {
        self.decisions.get_or_create(&labels).inc();
        self.handshake.observe(seconds);
    }

    /// Counts a refused token.
    pub fn token_failure(&self, reason: &'static str) {
        self.token_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Counts a connection closed for its source's handshake cap.
    pub fn handshake_refused(&self) {
        self.handshakes_refused.inc();
    }

    /// Counts a configuration reload.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The `Content-Type` of [`Metrics::render`].
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
