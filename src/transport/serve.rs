//! Serving WebSocket upgrade requests over TLS: the accept loop and each connection's TLS
//! handshake and HTTP/1.1 exchange, shared by the gate and the relay so that both keep the
//! same limits and deadlines.
//!
//! - A place among the connections in their handshake is reserved *before* accepting (over
//!   the limit, new connections wait in the kernel's backlog) and counted per source once the
//!   address is known; a source over its cap is closed at once, unanswered.
//! - TCP accept → TLS → the HTTP request head share one deadline: the HTTP head gets what the
//!   TLS handshake left, not a fresh one.
//! - The stream hyper serves is [`Lingering`], so that a refusal reaches a client that was
//!   still sending, and the handshake place is held until the connection is closed or taken
//!   for a session.
//!
//! What a request is answered with is the [`Handler`]'s: this module decides nothing.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::http::{Request, Response};
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tracing::Instrument;

use crate::transport::accept::{ConnectionPermit, HandshakePlace, Handshakes, accept};
use crate::transport::deadline::within;
use crate::transport::linger::{GateStream, Lingering};

/// The limits a server keeps.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// TCP accept → TLS → HTTP request head must finish within this.
    pub handshake_timeout: Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Connections in their handshake, all sources together.
    pub max_handshakes: usize,
    /// Connections in their handshake from one source (an IPv4 address or an IPv6 /64).
    pub max_handshakes_per_ip: usize,
}

/// What answers the requests a server accepts.
pub(crate) trait Handler: Send + Sync + 'static {
    /// The listener's name in logs (`gate`, `relay`).
    const NAME: &'static str;

    /// The span a connection from `peer` runs in.
    fn span(&self, peer: SocketAddr) -> tracing::Span;

    /// A connection was closed unanswered because its source is over its cap.
    fn handshake_refused(&self) {}

    /// Answers one request.
    fn answer(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send + 'static;
}

/// Accepts connections on `listener` and serves them with `handler` until `shutdown`
/// resolves; connections already accepted go on in their own tasks.
pub(crate) async fn run<H: Handler>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: Limits,
    handler: Arc<H>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    // Bounded so that a flood of half-open connections cannot hold unbounded memory, and per
    // source so that one source cannot hold them all and make everyone else wait for its
    // handshake deadlines.
    let handshakes = Handshakes::new(limits.max_handshakes, limits.max_handshakes_per_ip);
    let limits = Arc::new(limits);
    loop {
        let reserved = tokio::select! {
            () = &mut shutdown => return,
            p = handshakes.reserve() => p,
        };
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = accept(&listener, H::NAME) => accepted,
        };
        let Some(permit) = handshakes.admit(reserved, peer.ip()) else {
            // Closed at once, unanswered: it has sent nothing we could answer yet, and a
            // record per connection would let the flood fill the log as well.
            handler.handshake_refused();
            drop(tcp);
            continue;
        };
        let span = handler.span(peer);
        let connection = serve_connection(
            tcp,
            peer,
            tls.clone(),
            limits.clone(),
            handler.clone(),
            permit,
        );
        tokio::spawn(connection.instrument(span));
    }
}

async fn serve_connection<H: Handler>(
    tcp: TcpStream,
    peer: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    limits: Arc<Limits>,
    handler: Arc<H>,
    permit: ConnectionPermit,
) {
    let deadline = Instant::now() + limits.handshake_timeout;
    let _ = tcp.set_nodelay(true);
    let accepted = within(
        "the TLS handshake",
        limits.handshake_timeout,
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
    let place = HandshakePlace::new(permit);
    let for_requests = place.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(for_requests.clone());
        let answer = handler.clone().answer(req, peer);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(remaining.max(Duration::from_millis(1)))
        .max_buf_size(limits.max_header_bytes.max(8192));
    // The handshake permit covers the HTTP exchange and a lingering close; a session that
    // takes the stream releases it (the gate's sessions have their own limit).
    let io = TokioIo::new(Lingering::new(tls, place));
    let conn = http.serve_connection(io, service).with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

/// An upgraded connection's TLS stream, boxed, and the bytes that arrived after the request,
/// when hyper hands back the stream it was given (it always does; `Err` keeps the upgraded
/// connection). Taking it releases the connection's handshake place.
///
/// The TLS stream itself skips a layer of indirection. Boxed because it is 1.2 KiB: every
/// async function it passes through by value keeps room for it in its state, which made each
/// idle session's task 9 KiB (`-Zprint-type-sizes`); boxed, it is stored once. The leftover
/// is copied so that hyper's whole read buffer, which `read_buf` shares, is not held for the
/// life of the session; it is almost always empty.
pub(crate) fn take_stream(upgraded: Upgraded) -> Result<(Box<GateStream>, Vec<u8>), Upgraded> {
    let parts = upgraded.downcast::<TokioIo<Lingering>>()?;
    let leftover = parts.read_buf.to_vec();
    Ok((Box::new(parts.io.into_inner().into_inner()), leftover))
}
