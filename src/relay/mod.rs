//! `arcgate relay`: an embedded Azure Relay Hybrid Connections relay (SPEC §7), for one
//! machine or a lab.
//!
//! Gates attach as *listeners* (`sb-hc-action=listen`, a token with the listen right) and
//! keep a control WebSocket open (`control`). A *sender* (`sb-hc-action=connect`, send
//! right, a key whose `ports` cover the requested port) is held — no `101` yet — while the
//! relay sends one listener an `accept` message with a single-use address that expires after
//! 30 s (`rendezvous`). The listener either opens a WebSocket to that address (the relay then
//! answers the sender `101` and joins the two sockets, [`join`]) or rejects it with
//! `sb-hc-statusCode`/`sb-hc-statusDescription` (the relay answers that handshake `410 Gone`
//! and the sender with the listener's status line).
//!
//! The keys decide for as long as a connection lives: a keys file that no longer backs a
//! joined sender's key (or its port) closes the session with 1008, and one that no longer
//! backs a listener's key detaches it with 1008; a file that does not parse means no keys
//! until a valid one appears (live connections are left as they are, as the gate does).
//!
//! Requests are parsed by the gate's parser (`hc::request`), answered through the shared
//! server (`transport::serve`: the same handshake limits and deadlines as the gate), and
//! refused from one table (`Refusal`). The relay decides no host policy and dials nothing:
//! the gate behind it does.

pub mod admin;
mod control;
mod join;
mod rendezvous;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::http::{Request, Response, StatusCode, header};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

use crate::config::shorten;
use crate::hc::answer::{explained, not_allowed, text};
use crate::hc::request::{Action, RequestError, parse_hc};
use crate::token::{self, Audience, Grant, KeySet, Right, TokenError};
use crate::transport::deadline::unix_now;
use crate::transport::serve::{self, Handler, Limits};

pub use join::{JoinLimits, join};

/// An accept address is good for this long (the protocol's 30 s).
pub const ACCEPT_TTL: Duration = Duration::from_secs(30);
/// Listeners one name may have at once (Azure Relay's limit).
pub const MAX_LISTENERS_PER_NAME: usize = 25;
/// Connections in their handshake at once, all sources together: a handshake is short, and
/// established connections have their own limit (`max_connections`).
const MAX_HANDSHAKES: usize = 1024;
/// Senders waiting for one name's listeners at once. A waiting sender holds its connection,
/// TLS state and a queued accept message for up to 30 s — about 20 KiB: 256 of them waiting
/// on a listener that never answered added 5.0 MiB to the relay's resident memory. A live
/// gate answers in milliseconds, so this is only reached when a name's listeners stall.
pub const MAX_WAITING_PER_NAME: usize = 256;
/// Senders waiting at once from one source (an IPv4 address or an IPv6 /64), all names
/// together: one client cannot use up every name's waiting places.
pub const MAX_WAITING_PER_SOURCE: usize = 64;

/// The keys in force, or why there are none: a keys file that does not parse leaves the
/// relay with no keys (fail closed) until a valid one appears.
pub type Keys = Result<KeySet, String>;

/// How the relay behaves.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// TLS + HTTP request head must arrive within this.
    pub handshake_timeout: Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Largest WebSocket frame relayed.
    pub max_frame: u64,
    /// Ping listeners' control channels after this long without hearing from them.
    pub ping_interval: Duration,
    /// Established connections at once (control channels, senders, rendezvous).
    pub max_connections: usize,
    /// Connections in their handshake from one source (an IPv4 address or an IPv6 /64).
    pub max_handshakes_per_ip: usize,
    /// When set, tokens' resources must name this host (`http://{host}/{name}/`).
    pub public_host: Option<String>,
}

/// Why the relay refuses a request: one variant per answer, written in [`Refusal::response`]
/// and nowhere else.
#[derive(Debug)]
enum Refusal {
    /// The request is malformed (the gate's parser said why).
    BadRequest(RequestError),
    /// The token is missing, invalid, or lacks the right; no detail, as in the gate.
    Unauthorized,
    /// The sender's key does not cover the requested port.
    PortNotCovered {
        /// The key.
        key: String,
        /// The port asked for.
        port: u16,
    },
    /// The name, or the sender's source, already has as many senders waiting as it may.
    TooManyWaiting,
    /// The name already has [`MAX_LISTENERS_PER_NAME`] listeners.
    TooManyListeners,
    /// Every established-connection place is taken.
    Busy,
    /// No listener is attached for the name.
    NoListener(String),
    /// The chosen listener went away before answering.
    ListenerGone,
    /// The accept address is unknown, used or expired.
    UnknownAddress,
    /// The listener rejected the connection with this status line.
    Rejected(u16, String),
    /// The listener neither accepted nor rejected within [`ACCEPT_TTL`].
    ListenerSilent,
    /// To the listener that rejected: the rejection has been passed on.
    RejectionDelivered,
}

impl Refusal {
    /// The one place a relay refusal becomes a status line and body.
    fn response(&self) -> Response<Full<Bytes>> {
        const NO_ENDPOINT: &str = "Endpoint does not exist";
        match self {
            Refusal::BadRequest(e) => text(StatusCode::BAD_REQUEST, "Bad Request", &e.to_string()),
            Refusal::Unauthorized => text(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized"),
            Refusal::PortNotCovered { key, port } => not_allowed(
                "port_not_allowed",
                *port,
                &format!("the relay's key '{key}' does not allow port {port}"),
            ),
            Refusal::TooManyWaiting => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                "too many senders are waiting for this name or from this address; retry later",
            ),
            Refusal::TooManyListeners => text(
                StatusCode::FORBIDDEN,
                "too many listeners",
                &format!("this name already has {MAX_LISTENERS_PER_NAME} listeners"),
            ),
            Refusal::Busy => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                "the relay holds as many connections as it may; retry later",
            ),
            Refusal::NoListener(name) => explained(
                StatusCode::NOT_FOUND,
                NO_ENDPOINT,
                &format!(
                    "no gate is attached to this relay under the name '{}'; check the name, and \
                     that the host's serve --relay is running and attached",
                    shorten(name)
                ),
            ),
            Refusal::ListenerGone => explained(
                StatusCode::NOT_FOUND,
                NO_ENDPOINT,
                "the gate attached under this name went away before answering; retry",
            ),
            Refusal::UnknownAddress => text(
                StatusCode::NOT_FOUND,
                NO_ENDPOINT,
                "this accept address is unknown, used or expired",
            ),
            Refusal::Rejected(status, description) => {
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::FORBIDDEN);
                text(status, description, description)
            }
            Refusal::ListenerSilent => text(
                StatusCode::GATEWAY_TIMEOUT,
                "listener did not answer",
                "the listener did not accept or reject within 30 s",
            ),
            Refusal::RejectionDelivered => text(
                StatusCode::GONE,
                "Gone",
                "rejection delivered to the sender",
            ),
        }
    }
}

/// A connection the listener accepted: its pending upgrade and its connection place.
struct Accepted {
    upgrade: OnUpgrade,
    place: OwnedSemaphorePermit,
}

enum Rendezvous {
    Accepted(Accepted),
    Rejected(u16, String),
}

struct ListenerHandle {
    id: u64,
    /// What its current token grants (updated by renewals): the sessions it takes are
    /// closed when a keys file withdraws it, and their audit names its key.
    grant: Grant,
    /// The host the listener reached us by: accept addresses use it.
    host: String,
    tx: mpsc::Sender<String>,
}

/// A sender waiting at an accept address: the listener it was offered to, and where its
/// answer goes.
struct Pending {
    listener: u64,
    /// What the listener's token granted when it was offered the sender.
    grant: Grant,
    done: oneshot::Sender<Rendezvous>,
}

/// The relay's state.
pub struct Relay {
    opts: RelayOptions,
    keys: watch::Sender<Arc<Keys>>,
    listeners: Mutex<HashMap<String, Vec<ListenerHandle>>>,
    pending: Mutex<HashMap<String, Pending>>,
    waiting: Mutex<rendezvous::Waiting>,
    connections: Arc<Semaphore>,
    metrics: admin::Metrics,
    next_listener: AtomicUsize,
    round_robin: AtomicUsize,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("opts", &self.opts)
            .field("connections_free", &self.connections.available_permits())
            .finish_non_exhaustive()
    }
}

/// An upgraded connection's stream, whichever way hyper hands it back.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The upgraded stream and the bytes that came with the request; taking it releases the
/// connection's handshake place (the relay's connection place is held instead).
fn upgraded(upgraded: Upgraded) -> (Box<dyn Stream>, Vec<u8>) {
    match serve::take_stream(upgraded) {
        Ok((io, leftover)) => (io, leftover),
        Err(upgraded) => (Box::new(TokioIo::new(upgraded)), Vec::new()),
    }
}

impl Relay {
    /// A relay checking tokens against `keys`.
    pub fn new(opts: RelayOptions, keys: KeySet) -> Arc<Relay> {
        Arc::new(Relay {
            connections: Arc::new(Semaphore::new(opts.max_connections)),
            opts,
            keys: watch::channel(Arc::new(Ok(keys))).0,
            listeners: Mutex::default(),
            pending: Mutex::default(),
            waiting: Mutex::default(),
            metrics: admin::Metrics::new(),
            next_listener: AtomicUsize::new(1),
            round_robin: AtomicUsize::new(0),
        })
    }

    /// Replaces the keys (after the keys file changed, or became invalid: then no token is
    /// accepted until it is valid again). Joined senders and listeners whose key no longer
    /// backs them are closed with 1008.
    pub fn set_keys(&self, keys: Keys) {
        self.keys.send_replace(Arc::new(keys));
    }

    /// How many listeners are attached for `name`.
    pub fn listener_count(&self, name: &str) -> usize {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map_or(0, Vec::len)
    }

    /// Listeners attached now, per name.
    fn listeners_by_name(&self) -> Vec<(String, usize)> {
        let all = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        let mut by_name: Vec<_> = all.iter().map(|(n, l)| (n.clone(), l.len())).collect();
        by_name.sort();
        by_name
    }

    /// Established connection places in use.
    fn connections_in_use(&self) -> usize {
        self.opts.max_connections - self.connections.available_permits()
    }

    /// Checks a token for `name` and `right`: what it grants when it passes.
    fn check(&self, name: &str, token: Option<&str>, right: Right) -> Result<Grant, TokenError> {
        let keys = self.keys.borrow().clone();
        let keys = keys
            .as_ref()
            .as_ref()
            .map_err(|e| TokenError::KeysUnavailable(e.clone()))?;
        let token = token.ok_or(TokenError::Missing)?;
        let audience = Audience {
            name,
            host: self.opts.public_host.as_deref(),
        };
        token::verify_for(keys, token, &audience, unix_now(), right)
    }

    /// Resolves, with the reason, once a keys file no longer backs `grant` (or no longer lets
    /// it reach `port`). A file that does not parse leaves live connections alone.
    fn revoked(&self, grant: Grant, port: Option<u16>) -> impl Future<Output = String> + use<> {
        let mut keys = self.keys.subscribe();
        // Checked once at the start too: a change made since the token was checked counts.
        keys.mark_changed();
        async move {
            loop {
                if keys.changed().await.is_err() {
                    return std::future::pending().await;
                }
                let now = keys.borrow_and_update().clone();
                if let Some(why) = withdrawn(&now, &grant, port) {
                    return why;
                }
            }
        }
    }

    /// A place for one more established connection, or [`Refusal::Busy`].
    fn connection_place(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        self.connections
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Busy)
    }

    async fn answer_request(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        let (head, body) = request.into_parts();
        let hc = match parse_hc(&head) {
            Ok(hc) => hc,
            Err(e) => {
                let response = Refusal::BadRequest(e).response();
                self.metrics.answered(response.status());
                return response;
            }
        };
        let host = head
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_string();
        let request = Request::from_parts(head, body);
        let relay = self.clone();
        let answered = match hc.action {
            Action::Listen => self.listen(hc, host, request).await,
            Action::Connect => self.connect(hc, request, peer).await,
            Action::Accept => self.accept(hc, request),
        };
        let response = answered.unwrap_or_else(|refusal| refusal.response());
        relay.metrics.answered(response.status());
        response
    }
}

impl Handler for Relay {
    const NAME: &'static str = "relay";

    fn span(&self, peer: SocketAddr) -> tracing::Span {
        tracing::info_span!("relay", %peer)
    }

    fn handshake_refused(&self) {
        self.metrics.handshake_refused();
    }

    fn answer(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send + 'static {
        self.answer_request(request, peer)
    }
}

/// Why `keys` no longer back `grant` (or its `port`), if they do not.
fn withdrawn(keys: &Keys, grant: &Grant, port: Option<u16>) -> Option<String> {
    let keys = keys.as_ref().ok()?;
    match keys.still_backs(grant) {
        Err(why) => Some(format!("key '{}' {why}", grant.key_name)),
        Ok(entry) => match port {
            Some(port) if !entry.covers(port) => Some(format!(
                "key '{}' no longer allows port {port}",
                grant.key_name
            )),
            _ => None,
        },
    }
}

/// Serves the relay on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    relay: Arc<Relay>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = Limits {
        handshake_timeout: relay.opts.handshake_timeout,
        max_header_bytes: relay.opts.max_header_bytes,
        max_handshakes: MAX_HANDSHAKES,
        max_handshakes_per_ip: relay.opts.max_handshakes_per_ip,
    };
    serve::run(listener, tls, limits, relay, shutdown).await;
}
