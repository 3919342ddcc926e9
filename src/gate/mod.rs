//! The gate (`arcgate serve`): connect requests over TLS — direct, or announced by a relay
//! the gate listens on — decided against the local policy and bridged to the local service.
//!
//! Owns SPEC §2's answers table (`refusal`: every status line chosen in one function),
//! decides before `101` (`admit`: one admission core for both modes — snapshot, credential,
//! policy, limits, local dial), and runs each allowed session until it ends, is revoked by a
//! policy or keys change, or the gate shuts down (`session`). One tracing span per
//! connection, `session{id, peer, port, key}`; one audit line per decision and one per
//! session end ([`audit`]). Also the relay-listener role ([`relay_listener`]), the live
//! session table ([`sessions`]), the admin endpoint ([`admin`]) and [`metrics`].
//!
//! The caller owns the listener, the TLS configuration, the live snapshot and the shutdown
//! signal ([`run`]); this module never binds a socket or installs a signal handler.

pub mod admin;
pub(crate) mod admit;
pub mod approvals;
pub mod audit;
pub(crate) mod clock;
pub mod metrics;
pub(crate) mod refusal;
pub mod relay_listener;
pub(crate) mod session;
pub mod sessions;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::field;

use crate::gate::audit::Audit;
use crate::gate::metrics::Metrics;
use crate::gate::sessions::SessionTable;
use crate::state::live::Snapshot;
use crate::transport::bridge::BridgeConfig;
use crate::transport::serve::{self, Handler, Limits};

/// How long sessions told to close (1001) have to do so after the grace period: bounds a
/// peer that never answers our Close.
const CLOSE_AFTER_GRACE: Duration = Duration::from_secs(10);

/// The least number of connections the gate lets be in their handshake at once, whatever
/// `--max-sessions` is: a handshake is short, and a small session limit must not make
/// refusals (which also need a handshake) queue.
const MIN_HANDSHAKES: usize = 64;

/// Everything about how the gate behaves that is not policy (SPEC §9 defaults in `cli`).
#[derive(Debug, Clone)]
pub struct GateOptions {
    /// The name this gate answers to.
    pub name: String,
    /// When set, tokens must name this host.
    pub public_host: Option<String>,
    /// TCP accept → TLS → HTTP request head must finish within this.
    pub handshake_timeout: Duration,
    /// Largest request head accepted.
    pub max_header_bytes: usize,
    /// How long a local dial may take.
    pub dial_timeout: Duration,
    /// Concurrent sessions, all peers together.
    pub max_sessions: usize,
    /// Concurrent sessions from one IP address.
    pub max_sessions_per_ip: usize,
    /// Connections in their handshake from one source (an IPv4 address or an IPv6 /64).
    pub max_handshakes_per_ip: usize,
    /// After shutdown begins, how long sessions may go on before they are closed with 1001.
    pub shutdown_grace: Duration,
    /// Per-session bridge settings.
    pub bridge: BridgeConfig,
    /// The configuration file the policy comes from (for `arcgate status`).
    pub config_path: std::path::PathBuf,
    /// How long a session may wait for the administrator's approval.
    pub approval_timeout: Duration,
    /// How many may wait at once.
    pub max_waiting_approvals: usize,
}

/// The gate's shared state.
#[derive(Debug)]
pub struct Gate {
    opts: GateOptions,
    live: watch::Receiver<Arc<Snapshot>>,
    sessions: Arc<SessionTable>,
    audit: Arc<Audit>,
    metrics: Arc<Metrics>,
    stopping: watch::Sender<bool>,
    clock: clock::Clock,
    approvals: approvals::Approvals,
}

impl Gate {
    /// A gate over a live snapshot, recording to `audit`.
    pub fn new(
        opts: GateOptions,
        live: watch::Receiver<Arc<Snapshot>>,
        audit: Arc<Audit>,
    ) -> Arc<Gate> {
        let sessions = SessionTable::new(opts.max_sessions, opts.max_sessions_per_ip);
        let metrics = Arc::new(Metrics::new(sessions.clone()));
        let approvals =
            approvals::Approvals::new(opts.max_waiting_approvals, opts.approval_timeout);
        Arc::new(Gate {
            opts,
            live,
            sessions,
            audit,
            metrics,
            stopping: watch::channel(false).0,
            clock: clock::Clock::new(),
            approvals,
        })
    }

    /// The live sessions.
    pub fn sessions(&self) -> &Arc<SessionTable> {
        &self.sessions
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The snapshot in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.live.borrow().clone()
    }

    /// The name this gate answers to.
    pub fn name(&self) -> &str {
        &self.opts.name
    }

    /// The bridge settings.
    pub fn bridge_config(&self) -> &BridgeConfig {
        &self.opts.bridge
    }

    /// The configuration file the policy comes from.
    pub fn config_path(&self) -> &std::path::Path {
        &self.opts.config_path
    }

    /// The version this gate runs.
    pub fn version(&self) -> &'static str {
        crate::VERSION
    }
}

impl Handler for Gate {
    const NAME: &'static str = "gate";

    fn span(&self, peer: SocketAddr) -> tracing::Span {
        tracing::info_span!(
            "session",
            id = field::Empty,
            peer = %peer,
            port = field::Empty,
            key = field::Empty
        )
    }

    fn handshake_refused(&self) {
        self.metrics.handshake_refused();
    }

    fn answer(
        self: Arc<Self>,
        request: hyper::http::Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = hyper::http::Response<http_body_util::Full<bytes::Bytes>>> + Send + 'static
    {
        Gate::answer(self, request, peer)
    }
}

/// Serves connect requests on `listener` until `shutdown` resolves; then stops accepting,
/// lets sessions run for the grace period, closes the rest with 1001 and returns.
pub async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    gate: Arc<Gate>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = Limits {
        handshake_timeout: gate.opts.handshake_timeout,
        max_header_bytes: gate.opts.max_header_bytes,
        max_handshakes: gate.opts.max_sessions.max(MIN_HANDSHAKES),
        max_handshakes_per_ip: gate.opts.max_handshakes_per_ip,
    };
    serve::run(listener, tls, limits, gate.clone(), shutdown).await;
    stop_sessions(&gate).await;
}

/// Relay-only mode: no listener; waits for `shutdown`, then stops sessions like [`run`].
pub async fn run_without_listener(gate: Arc<Gate>, shutdown: impl Future<Output = ()>) {
    shutdown.await;
    stop_sessions(&gate).await;
}

async fn stop_sessions(gate: &Gate) {
    tracing::info!(
        sessions = gate.sessions.len(),
        grace = ?gate.opts.shutdown_grace,
        "shutting down: no longer accepting"
    );
    let _ = tokio::time::timeout(gate.opts.shutdown_grace, gate.sessions.all_ended()).await;
    gate.stopping.send_replace(true);
    let _ = tokio::time::timeout(CLOSE_AFTER_GRACE, gate.sessions.all_ended()).await;
}
