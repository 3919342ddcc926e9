//! `arcgate relay`: an embedded Azure Relay Hybrid Connections relay (SPEC §7), for one
//! machine or a lab.
//!
//! Gates attach as *listeners* (`sb-hc-action=listen`, a token with the listen right) and
//! keep a control WebSocket open (`control`). A *sender* (`sb-hc-action=connect`, send
//! right) is held — no `101` yet — while the relay sends one listener an `accept` message
//! with a single-use address that expires after 30 s (`rendezvous`). The listener either
//! opens a WebSocket to that address (the relay then answers the sender `101` and joins the
//! two sockets, [`join`]) or rejects it with `sb-hc-statusCode`/`sb-hc-statusDescription`
//! (the relay answers that handshake `410 Gone` and the sender with the listener's status
//! line).
//!
//! Requests are parsed by the gate's parser (`hc::request`), answered through the shared
//! server (`transport::serve`: the same handshake limits and deadlines as the gate), and
//! refused from one table (`Refusal`). The relay decides no policy and dials nothing: the
//! gate behind it does.

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
use tokio::sync::{OwnedSemaphorePermit, RwLock, Semaphore, mpsc, oneshot};

use crate::hc::answer::text;
use crate::hc::request::{Action, RequestError, parse_hc};
use crate::token::{self, Audience, KeySet, Right, TokenError};
use crate::transport::deadline::unix_now;
use crate::transport::serve::{self, Handler, Limits};

pub use join::join;

/// An accept address is good for this long (the protocol's 30 s).
pub const ACCEPT_TTL: Duration = Duration::from_secs(30);
/// Listeners one name may have at once (Azure Relay's limit).
pub const MAX_LISTENERS_PER_NAME: usize = 25;
/// Connections in their handshake at once, all sources together: a handshake is short, and
/// established connections have their own limit (`max_connections`).
const MAX_HANDSHAKES: usize = 1024;

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
}

/// Why the relay refuses a request: one variant per answer, written in [`Refusal::response`]
/// and nowhere else.
#[derive(Debug)]
enum Refusal {
    /// The request is malformed (the gate's parser said why).
    BadRequest(RequestError),
    /// The token is missing, invalid, or lacks the right; no detail, as in the gate.
    Unauthorized,
    /// The name already has [`MAX_LISTENERS_PER_NAME`] listeners.
    TooManyListeners,
    /// Every established-connection place is taken.
    Busy,
    /// No listener is attached for the name.
    NoListener,
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
            Refusal::NoListener => text(StatusCode::NOT_FOUND, NO_ENDPOINT, NO_ENDPOINT),
            Refusal::ListenerGone => {
                text(StatusCode::NOT_FOUND, NO_ENDPOINT, "the listener went away")
            }
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
    /// The host the listener reached us by: accept addresses use it.
    host: String,
    tx: mpsc::Sender<String>,
}

/// The relay's state.
pub struct Relay {
    opts: RelayOptions,
    keys: RwLock<Arc<KeySet>>,
    listeners: Mutex<HashMap<String, Vec<ListenerHandle>>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Rendezvous>>>,
    connections: Arc<Semaphore>,
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
            keys: RwLock::new(Arc::new(keys)),
            listeners: Mutex::default(),
            pending: Mutex::default(),
            next_listener: AtomicUsize::new(1),
            round_robin: AtomicUsize::new(0),
        })
    }

    /// Replaces the keys (after the keys file changed).
    pub async fn set_keys(&self, keys: KeySet) {
        *self.keys.write().await = Arc::new(keys);
    }

    /// How many listeners are attached for `name`.
    pub fn listener_count(&self, name: &str) -> usize {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map_or(0, Vec::len)
    }

    /// Checks a token for `name` and `right`; the key's name when it passes.
    async fn check(
        &self,
        name: &str,
        token: Option<&str>,
        right: Right,
    ) -> Result<String, TokenError> {
        let keys = self.keys.read().await.clone();
        let token = token.ok_or(TokenError::Missing)?;
        let audience = Audience { name, host: None };
        token::verify_for(&keys, token, &audience, unix_now(), right).map(|g| g.key_name)
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
            Err(e) => return Refusal::BadRequest(e).response(),
        };
        let host = head
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_string();
        let request = Request::from_parts(head, body);
        let answered = match hc.action {
            Action::Listen => self.listen(hc, host, request).await,
            Action::Connect => self.connect(hc, request, peer).await,
            Action::Accept => self.accept(hc, request),
        };
        answered.unwrap_or_else(|refusal| refusal.response())
    }
}

impl Handler for Relay {
    const NAME: &'static str = "relay";

    fn span(&self, peer: SocketAddr) -> tracing::Span {
        tracing::info_span!("relay", %peer)
    }

    fn answer(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send + 'static {
        self.answer_request(request, peer)
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
