//! The gate: TLS accept loop, the connect-request answer, and the bridge to the local service.
//!
//! Owns SPEC §2's answers table (every status line is chosen in `Refusal::response` and
//! nowhere else), decides before `101` (parse → name → token → policy → limits → local dial),
//! and runs each allowed session until it ends, is revoked by a policy change, or the gate
//! shuts down. One tracing span per connection, `session{id, peer, port}`; one audit line per
//! decision and one per session end.
//!
//! The caller owns the listener, the TLS configuration, the live snapshot and the shutdown
//! signal ([`run`]); this module never binds a socket or installs a signal handler.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::ext::ReasonPhrase;
use hyper::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{Instrument, field};

use crate::config::Port;
use crate::gate::audit::{self, Audit};
use crate::gate::metrics::{DecisionLabels, Metrics};
use crate::gate::sessions::{ConnectionPermit, Handshakes, Limit, LiveSession, SessionTable, Slot};
use crate::hc::request::{self, ConnectRequest, RequestError};
use crate::policy::{self, Candidate, Denied};
use crate::state::live::Snapshot;
use crate::token::{self, Audience, Grant, TokenError};
use crate::transport::bridge::{self, BridgeConfig, ClosedBy, Counters, Stop};
use crate::transport::deadline::within;
use crate::transport::linger::{GateStream, Lingering};

/// Everything about how the gate behaves that is not policy (SPEC §9 defaults in `main`).
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
}

/// The gate's shared state.
pub struct Gate {
    opts: GateOptions,
    live: watch::Receiver<Arc<Snapshot>>,
    sessions: Arc<SessionTable>,
    audit: Arc<Audit>,
    metrics: Arc<Metrics>,
    stopping: watch::Sender<bool>,
}

/// Why a connect request is refused: one variant per row of SPEC §2's table.
#[derive(Debug)]
pub(crate) enum Refusal {
    BadRequest(RequestError),
    UnknownName(String),
    Unauthorized(TokenError),
    Forbidden(Denied, u16),
    Unavailable(String),
    DialFailed(u16, String),
    OverLimit(Limit),
}

impl Refusal {
    /// The HTTP answer: the one place a refusal becomes a status line and body.
    fn response(&self) -> Response<Full<Bytes>> {
        let (status, reason, body, content_type) = self.parts();
        let mut response = refusal(status, &reason, body, content_type);
        if matches!(self, Refusal::OverLimit(_) | Refusal::Unavailable(_)) {
            // Long enough for sessions to end or an administrator to fix a file.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }

    /// The status line: what a relayed connection is rejected with too.
    pub(crate) fn status_line(&self) -> (StatusCode, String) {
        let (status, reason, _, _) = self.parts();
        (status, reason)
    }

    fn parts(&self) -> (StatusCode, String, String, &'static str) {
        match self {
            Refusal::BadRequest(e) => (
                StatusCode::BAD_REQUEST,
                "Bad Request".into(),
                format!("{e}\n"),
                "text/plain",
            ),
            Refusal::UnknownName(_) => (
                StatusCode::NOT_FOUND,
                "Endpoint does not exist".into(),
                "Endpoint does not exist\n".into(),
                "text/plain",
            ),
            // No detail: nothing here should help someone guessing keys or resources.
            Refusal::Unauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                "Unauthorized".into(),
                "Unauthorized\n".into(),
                "text/plain",
            ),
            Refusal::Forbidden(denied, port) => (
                StatusCode::FORBIDDEN,
                "connection not allowed".into(),
                serde_json::json!({
                    "error": "connection not allowed",
                    "reason": denied.wire_reason(),
                    "port": port,
                    "detail": denied.explain(*port),
                })
                .to_string(),
                "application/json",
            ),
            Refusal::DialFailed(port, error) => {
                let reason = format!("connection to localhost:{port} failed: {error}.");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    reason.clone(),
                    format!("{reason}\n"),
                    "text/plain",
                )
            }
            Refusal::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable".into(),
                "the gate's configuration is invalid; the host's administrator must fix it\n"
                    .into(),
                "text/plain",
            ),
            Refusal::OverLimit(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable".into(),
                "too many sessions; retry later\n".into(),
                "text/plain",
            ),
        }
    }

    /// `(decision, reason in words, bounded reason code for metrics)`.
    fn describe(&self) -> (&'static str, String, &'static str) {
        match self {
            Refusal::BadRequest(e) => ("bad_request", e.to_string(), "malformed_request"),
            Refusal::UnknownName(n) => ("not_found", format!("unknown name '{n}'"), "unknown_name"),
            Refusal::Unauthorized(e) => ("unauthorized", e.to_string(), e.kind()),
            Refusal::Forbidden(d, _) => ("deny", d.audit_reason().to_string(), d.audit_reason()),
            Refusal::Unavailable(e) => ("unavailable", e.clone(), "config_invalid"),
            Refusal::DialFailed(_, e) => ("dial_failed", e.clone(), "dial_failed"),
            Refusal::OverLimit(Limit::Total) => {
                ("over_limit", "max sessions reached".into(), "max_sessions")
            }
            Refusal::OverLimit(Limit::PerIp) => (
                "over_limit",
                "max sessions per IP reached".into(),
                "max_sessions_per_ip",
            ),
        }
    }
}

/// A refusal: `status` with `reason` as its reason phrase, and `Connection: close`.
pub(crate) fn refusal(
    status: StatusCode,
    reason: &str,
    body: String,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if let Ok(phrase) = ReasonPhrase::try_from(reason_phrase_bytes(reason)) {
        response.extensions_mut().insert(phrase);
    }
    response
}

/// `101 Switching Protocols` for a WebSocket key.
pub(crate) fn switching_protocols(ws_key: &str) -> Response<Full<Bytes>> {
    let accept = tungstenite::handshake::derive_accept_key(ws_key.as_bytes());
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    response
}

/// A reason phrase may hold only visible ASCII, space and tab (RFC 9112 §4).
fn reason_phrase_bytes(reason: &str) -> Vec<u8> {
    reason
        .bytes()
        .map(|b| {
            if b == b'\t' || (b' '..=b'~').contains(&b) {
                b
            } else {
                b'?'
            }
        })
        .collect()
}

/// What passed every check before `101`.
struct Admitted {
    request: ConnectRequest,
    grant: Grant,
    service: TcpStream,
    slot: Slot,
}

/// What a bridged session is, for its stop signal and its records.
pub(crate) struct SessionMeta {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) port: Port,
    /// The key that allowed it (for relayed sessions, the gate's listen key).
    pub(crate) key: String,
    /// The grant re-checked against every new keys file (direct sessions; a relayed
    /// session's sender key lives in the relay's keys file).
    pub(crate) grant: Option<Grant>,
}

/// What is known of a request when it is decided, for the audit record.
#[derive(Default)]
struct Known {
    id: String,
    name: String,
    port: u16,
    key: String,
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
        Arc::new(Gate {
            opts,
            live,
            sessions,
            audit,
            metrics,
            stopping: watch::channel(false).0,
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

    async fn admit(
        self: &Arc<Self>,
        head: &hyper::http::request::Parts,
        peer: SocketAddr,
        known: &mut Known,
    ) -> Result<Admitted, Refusal> {
        let span = tracing::Span::current();
        let request = request::parse(head).map_err(Refusal::BadRequest)?;
        span.record("id", request.id.as_str());
        span.record("port", request.port.get());
        known.id.clone_from(&request.id);
        known.name.clone_from(&request.name);
        known.port = request.port.get();
        if !request.name.eq_ignore_ascii_case(&self.opts.name) {
            return Err(Refusal::UnknownName(request.name.clone()));
        }
        let snapshot = self.live.borrow().clone();
        let (config, keys) = match (&snapshot.config, &snapshot.keys) {
            (Ok(c), Ok(k)) => (c.clone(), k.clone()),
            (Err(e), _) | (_, Err(e)) => return Err(Refusal::Unavailable(e.clone())),
        };
        let token = request
            .token
            .as_deref()
            .ok_or(Refusal::Unauthorized(TokenError::Missing))?;
        let audience = Audience {
            name: &self.opts.name,
            host: self.opts.public_host.as_deref(),
        };
        let grant =
            token::verify(&keys, token, &audience, unix_now()).map_err(Refusal::Unauthorized)?;
        span.record("key", grant.key_name.as_str());
        known.key.clone_from(&grant.key_name);
        let candidate = Candidate {
            port: request.port,
            key_ports: grant.ports.as_ref(),
        };
        policy::decide(&config, &candidate)
            .map_err(|d| Refusal::Forbidden(d, request.port.get()))?;
        let slot = self
            .sessions
            .take(LiveSession {
                id: request.id.clone(),
                peer,
                name: request.name.clone(),
                port: request.port.get(),
                key: grant.key_name.clone(),
                started: SystemTime::now(),
                counters: Counters::default(),
            })
            .map_err(Refusal::OverLimit)?;
        let service = dial(request.port, self.opts.dial_timeout)
            .await
            .map_err(|e| Refusal::DialFailed(request.port.get(), e))?;
        Ok(Admitted {
            request,
            grant,
            service,
            slot,
        })
    }

    /// Records a decision: the audit record and the metrics.
    fn record_decision(
        &self,
        known: &Known,
        peer: SocketAddr,
        refused: Option<&Refusal>,
        started: Instant,
    ) {
        let seconds = started.elapsed().as_secs_f64();
        let (decision, reason, code) = match refused {
            Some(refusal) => refusal.describe(),
            None => ("allow", "allowed".to_string(), "allowed"),
        };
        self.audit.decision(&audit::Decision {
            subject: audit::Subject {
                session: &known.id,
                peer: peer.to_string(),
                name: &known.name,
                port: known.port,
                key: &known.key,
            },
            decision,
            reason: &reason,
            handshake_ms: seconds * 1000.0,
        });
        self.metrics.decision(
            DecisionLabels {
                decision,
                reason: code,
            },
            seconds,
        );
        if let Some(Refusal::Unauthorized(e)) = refused {
            self.metrics.token_failure(e.kind());
        }
    }

    /// Decides a connection a relay announced: the same policy, limits and local dial as a
    /// direct one (the relay has checked the sender's token). Recorded like any decision.
    pub(crate) async fn admit_relayed(
        self: &Arc<Self>,
        id: &str,
        port: Port,
        peer: SocketAddr,
        listen_key: &str,
    ) -> Result<(TcpStream, Slot), Refusal> {
        let started = Instant::now();
        let known = Known {
            id: id.to_string(),
            name: self.opts.name.clone(),
            port: port.get(),
            key: listen_key.to_string(),
        };
        let result = async {
            let snapshot = self.live.borrow().clone();
            let config = match &snapshot.config {
                Ok(c) => c.clone(),
                Err(e) => return Err(Refusal::Unavailable(e.clone())),
            };
            let candidate = Candidate {
                port,
                key_ports: None,
            };
            policy::decide(&config, &candidate).map_err(|d| Refusal::Forbidden(d, port.get()))?;
            let slot = self
                .sessions
                .take(LiveSession {
                    id: id.to_string(),
                    peer,
                    name: self.opts.name.clone(),
                    port: port.get(),
                    key: listen_key.to_string(),
                    started: SystemTime::now(),
                    counters: Counters::default(),
                })
                .map_err(Refusal::OverLimit)?;
            let service = dial(port, self.opts.dial_timeout)
                .await
                .map_err(|e| Refusal::DialFailed(port.get(), e))?;
            Ok((service, slot))
        }
        .await;
        self.record_decision(&known, peer, result.as_ref().err(), started);
        result
    }

    /// The name this gate answers to.
    pub fn name(&self) -> &str {
        &self.opts.name
    }

    /// The bridge settings.
    pub fn bridge_config(&self) -> &BridgeConfig {
        &self.opts.bridge
    }

    /// Answers one HTTP request on a connection.
    async fn answer(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let started = Instant::now();
        let (head, body) = request.into_parts();
        let mut known = Known::default();
        let admitted = self.admit(&head, peer, &mut known).await;
        self.record_decision(&known, peer, admitted.as_ref().err(), started);
        let admitted = match admitted {
            Err(refusal) => return Ok(refusal.response()),
            Ok(a) => a,
        };
        let response = switching_protocols(&admitted.request.ws_key);
        // Taken before the task, so that the task holds the pending upgrade, not the request.
        let upgrade = hyper::upgrade::on(Request::from_parts(head, body));
        let gate = self.clone();
        tokio::spawn(
            async move {
                match upgrade.await {
                    Ok(upgraded) => gate.session(upgraded, admitted).await,
                    Err(e) => tracing::warn!(error = %e, "upgrade failed after 101"),
                }
            }
            .instrument(tracing::Span::current()),
        );
        Ok(response)
    }

    async fn session(self: Arc<Self>, upgraded: Upgraded, admitted: Admitted) {
        let Admitted {
            request,
            grant,
            service,
            slot,
        } = admitted;
        let meta = SessionMeta {
            id: request.id,
            name: request.name,
            port: request.port,
            key: grant.key_name.clone(),
            grant: Some(grant),
        };
        let cfg = &self.opts.bridge;
        match take_stream(upgraded) {
            Ok((io, leftover)) => {
                self.bridge_session(io, &leftover, cfg, meta, service, slot)
                    .await
            }
            Err(upgraded) => {
                let io = Box::new(TokioIo::new(upgraded));
                self.bridge_session(io, &[], cfg, meta, service, slot).await
            }
        }
    }

    /// Bridges an allowed session to its dialled service until it ends, then records the end.
    pub(crate) async fn bridge_session<S>(
        &self,
        io: S,
        leftover: &[u8],
        cfg: &BridgeConfig,
        mut meta: SessionMeta,
        service: TcpStream,
        slot: Slot,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let started = Instant::now();
        let live = slot.session().clone();
        let counters = &live.counters;
        let _ = service.set_nodelay(true);
        let (service_r, service_w) = service.into_split();
        // Boxed: by value, its 376 bytes were stored twice more in the session's task, which
        // put the task in the allocator's 4 KiB size class instead of 3 KiB (-Zprint-type-sizes).
        let stop = Box::pin(self.stop_signal(meta.port, meta.grant.take()));
        let outcome = bridge::run(io, leftover, service_r, service_w, cfg, stop, counters).await;
        let (closed_by, reason) = match &outcome.closed_by {
            ClosedBy::Peer => ("client", String::new()),
            ClosedBy::Local => ("service", String::new()),
            ClosedBy::Stopped(Stop::Revoked(why)) => {
                ("policy", format!("revoked by policy change: {why}"))
            }
            ClosedBy::Stopped(Stop::Shutdown | Stop::Exiting) => {
                ("gate", "gate shutting down".to_string())
            }
            ClosedBy::PingTimeout => ("gate", "client missed pings".to_string()),
            ClosedBy::IdleTimeout => ("gate", "idle timeout".to_string()),
            ClosedBy::PeerError(e) => ("gate", format!("client protocol error: {e}")),
            ClosedBy::ConnectionLost(e) => ("client", format!("connection lost: {e}")),
            ClosedBy::LocalError(e) => ("service", format!("service connection failed: {e}")),
        };
        // The slot goes first: once the end is recorded, the session is out of every listing.
        drop(slot);
        self.audit.session_end(&audit::SessionEnd {
            subject: audit::Subject {
                session: &meta.id,
                peer: live.peer.to_string(),
                name: &meta.name,
                port: meta.port.get(),
                key: &meta.key,
            },
            bytes_from_client: counters.from_peer.load(Ordering::Relaxed),
            bytes_to_client: counters.to_peer.load(Ordering::Relaxed),
            duration_ms: started.elapsed().as_millis() as u64,
            closed_by,
            close_sent: outcome.sent,
            close_received: outcome.received.as_ref().map(|c| c.code),
            reason: &reason,
        });
    }

    /// Resolves when the session must end: the gate stops, or a new snapshot's policy (or the
    /// keys file, for the session's grant) no longer allows it.
    fn stop_signal(&self, port: Port, grant: Option<Grant>) -> impl Future<Output = Stop> + use<> {
        let mut live = self.live.clone();
        let mut stopping = self.stopping.subscribe();
        async move {
            let revoked = async {
                loop {
                    if live.changed().await.is_err() {
                        return std::future::pending().await;
                    }
                    let snapshot = live.borrow_and_update().clone();
                    let (Ok(config), Ok(keys)) = (&snapshot.config, &snapshot.keys) else {
                        // An invalid file refuses new connections but leaves sessions alone:
                        // an editor's half-written save must not cut everyone off.
                        continue;
                    };
                    let key_ports = match &grant {
                        None => None,
                        Some(grant) => match keys.still_backs(grant) {
                            Ok(key) => key.ports.as_ref(),
                            Err(why) => return format!("key '{}' {why}", grant.key_name),
                        },
                    };
                    let candidate = Candidate { port, key_ports };
                    if let Err(denied) = policy::decide(config, &candidate) {
                        return denied.audit_reason().to_string();
                    }
                }
            };
            tokio::select! {
                why = revoked => Stop::Revoked(why),
                _ = stopping.wait_for(|s| *s) => Stop::Shutdown,
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Dials the local service: `127.0.0.1:{port}`, then `[::1]:{port}`. Never another host.
async fn dial(port: Port, timeout: Duration) -> Result<TcpStream, String> {
    let mut last = String::new();
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        let addr = SocketAddr::new(ip, port.get());
        let error = match within("dialling", timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => e.to_string(),
            Err(t) => t.to_string(),
        };
        // The IPv4 error is the one to report: [::1] is only a fallback.
        if last.is_empty() {
            last = error;
        }
    }
    Err(last)
}

/// The session's TLS stream, boxed, and the bytes that arrived after the request, when hyper
/// hands back the stream it was given (it always does; `Err` keeps the upgraded connection).
///
/// The TLS stream itself skips a layer of indirection. Boxed because it is 1.2 KiB: every
/// async function it passes through by value keeps room for it in its state, which made each
/// idle session's task 9 KiB (`-Zprint-type-sizes`); boxed, it is stored once. The leftover
/// is copied so that hyper's whole read buffer, which `read_buf` shares, is not held for the
/// life of the session; it is almost always empty.
fn take_stream(upgraded: Upgraded) -> Result<(Box<GateStream>, Vec<u8>), Upgraded> {
    let parts = upgraded.downcast::<TokioIo<Lingering>>()?;
    let leftover = parts.read_buf.to_vec();
    Ok((Box::new(parts.io.into_inner().into_inner()), leftover))
}

/// Serves connect requests on `listener` until `shutdown` resolves; then stops accepting,
/// lets sessions run for the grace period, closes the rest with 1001 and returns.
pub async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    gate: Arc<Gate>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    // Connections still in their handshake: bounded so a flood of half-open connections
    // cannot hold unbounded memory, and per source so that one source cannot hold them all
    // and make everyone else wait for its handshake deadlines; sessions have their own limit.
    let handshakes = Handshakes::new(
        gate.opts.max_sessions.max(64),
        gate.opts.max_handshakes_per_ip,
    );
    loop {
        let reserved = tokio::select! {
            () = &mut shutdown => break,
            p = handshakes.reserve() => p,
        };
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = crate::transport::accept::accept(&listener, "gate") => accepted,
        };
        let Some(permit) = handshakes.admit(reserved, peer.ip()) else {
            // Closed at once, unanswered: it has sent nothing we could answer yet, and a
            // record per connection would let the flood fill the log as well.
            gate.metrics.handshake_refused();
            drop(tcp);
            continue;
        };
        let span = tracing::info_span!(
            "session",
            id = field::Empty,
            peer = %peer,
            port = field::Empty,
            key = field::Empty
        );
        let gate = gate.clone();
        let config = tls.clone();
        tokio::spawn(
            async move {
                serve_connection(tcp, peer, config, gate, permit).await;
            }
            .instrument(span),
        );
    }
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
    // Every session has been told to close; this bounds a peer that never answers.
    let _ = tokio::time::timeout(Duration::from_secs(10), gate.sessions.all_ended()).await;
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    gate: Arc<Gate>,
    permit: ConnectionPermit,
) {
    let deadline = Instant::now() + gate.opts.handshake_timeout;
    let _ = tcp.set_nodelay(true);
    let accepted = within(
        "the TLS handshake",
        gate.opts.handshake_timeout,
        crate::transport::tls::accept(&config, tcp),
    );
    let tls = match accepted.await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            return;
        }
        Err(t) => {
            tracing::debug!(error = %t, "TLS handshake did not finish");
            return;
        }
    };
    let remaining = deadline.saturating_duration_since(Instant::now());
    let service = {
        let gate = gate.clone();
        hyper::service::service_fn(move |req| gate.clone().answer(req, peer))
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(remaining.max(Duration::from_millis(1)))
        .max_buf_size(gate.opts.max_header_bytes.max(8192));
    // The handshake permit covers the HTTP exchange and a lingering close; a session holds a
    // slot instead (the permit is released when the stream is taken for it).
    let io = TokioIo::new(Lingering::new(tls, permit));
    let conn = http.serve_connection(io, service).with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}
