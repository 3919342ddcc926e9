//! `arcgate relay`: an embedded Azure Relay Hybrid Connections relay (SPEC §7), for one
//! machine or a lab.
//!
//! Gates attach as *listeners* (`sb-hc-action=listen`, a token with the listen right) and
//! keep a control WebSocket open. A *sender* (`sb-hc-action=connect`, send right) is held —
//! no `101` yet — while the relay sends one listener an `accept` message with a single-use
//! address that expires after 30 s. The listener either opens a WebSocket to that address
//! (the relay then answers the sender `101` and joins the two sockets frame for frame) or
//! rejects it with `sb-hc-statusCode`/`sb-hc-statusDescription` (the relay answers that
//! handshake `410 Gone` and the sender with the listener's status line).
//!
//! The relay never sees plaintext beyond the WebSocket frames it forwards, decides no
//! policy, and dials nothing: the gate behind it does.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::http::{Request, Response, StatusCode, header, request::Parts};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioIo, TokioTimer};
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{RwLock, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role as WsRole;
use tracing::Instrument;

use crate::config::shorten;
use crate::gate::server::{refusal, switching_protocols};
use crate::token::{self, Audience, KeySet, Right, TokenError};
use crate::transport::linger::Lingering;
use crate::transport::ws::{Event, FrameReader, FrameWriter, Role};

/// An accept address is good for this long (the protocol's 30 s).
pub const ACCEPT_TTL: Duration = Duration::from_secs(30);
/// Listeners one name may have at once (Azure Relay's limit).
pub const MAX_LISTENERS_PER_NAME: usize = 25;

/// The `accept` control message (SPEC §7), relay → listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptMessage {
    /// The body.
    pub accept: Accept,
}

/// The body of an `accept` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Accept {
    /// Where to open the rendezvous WebSocket (or send the rejection).
    pub address: String,
    /// The connection's id (the sender's `sb-hc-id`).
    pub id: String,
    /// Headers the sender sent (credentials removed).
    #[serde(default)]
    pub connect_headers: HashMap<String, String>,
    /// The sender's address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_endpoint: Option<RemoteEndpoint>,
}

/// The sender's address in an `accept` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteEndpoint {
    /// IP address.
    pub address: String,
    /// Port.
    pub port: u16,
}

/// The `renewToken` control message, listener → relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewTokenMessage {
    /// The body.
    pub renew_token: RenewToken,
}

/// The body of a `renewToken` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenewToken {
    /// The new token.
    pub token: String,
}

/// The rejection query a listener appends to an accept address.
pub fn reject_address(address: &str, status: u16, description: &str) -> String {
    let sep = if address.contains('?') { '&' } else { '?' };
    format!(
        "{address}{sep}sb-hc-statusCode={status}&sb-hc-statusDescription={}",
        percent_encoding::utf8_percent_encode(description, percent_encoding::NON_ALPHANUMERIC)
    )
}

/// How the relay behaves.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// TLS + HTTP request head must arrive within this.
    pub handshake_timeout: Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Largest WebSocket frame relayed.
    pub max_frame: u64,
    /// Ping listeners' control channels this often.
    pub ping_interval: Duration,
    /// Concurrent connections (control channels, senders, rendezvous).
    pub max_connections: usize,
}

enum Rendezvous {
    Accepted(OnUpgrade),
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
    next_listener: AtomicUsize,
    round_robin: AtomicUsize,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct HcRequest {
    name: String,
    action: String,
    id: Option<String>,
    token: Option<String>,
    query: Vec<(String, String)>,
}

fn parse_hc(head: &Parts) -> Result<HcRequest, &'static str> {
    let path = head.uri.path();
    let rest = path
        .strip_prefix("/$hc/")
        .or_else(|| path.strip_prefix("/%24hc/"))
        .ok_or("the path must start with /$hc/")?;
    let name = percent_decode_str(rest.split('/').next().unwrap_or(""))
        .decode_utf8()
        .map_err(|_| "the name is not UTF-8")?
        .into_owned();
    crate::hc::request::check_name(&name).map_err(|_| "bad name")?;
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(head.uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let action = get("sb-hc-action").ok_or("sb-hc-action is required")?;
    let token = head
        .headers
        .get(crate::hc::request::SB_AUTH_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .or_else(|| get("sb-hc-token"))
        .or_else(|| {
            head.headers
                .get(header::AUTHORIZATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        });
    Ok(HcRequest {
        name,
        action,
        id: get("sb-hc-id"),
        token,
        query,
    })
}

fn ws_key(head: &Parts) -> Option<String> {
    let upgrade = head
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = head.headers.get(header::SEC_WEBSOCKET_KEY)?.to_str().ok()?;
    upgrade.then(|| key.to_string())
}

fn text(status: StatusCode, reason: &str, body: &str) -> Response<Full<Bytes>> {
    refusal(status, reason, format!("{body}\n"), "text/plain")
}

impl Relay {
    /// A relay checking tokens against `keys`.
    pub fn new(opts: RelayOptions, keys: KeySet) -> Arc<Relay> {
        Arc::new(Relay {
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

    async fn check(&self, req: &HcRequest, right: Right) -> Result<String, TokenError> {
        let keys = self.keys.read().await.clone();
        let token = req.token.as_deref().ok_or(TokenError::Missing)?;
        let audience = Audience {
            name: &req.name,
            host: None,
        };
        token::verify_for(&keys, token, &audience, unix_now(), right).map(|g| g.key_name)
    }

    async fn answer(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let (head, body) = request.into_parts();
        let hc = match parse_hc(&head) {
            Ok(hc) => hc,
            Err(why) => return Ok(text(StatusCode::BAD_REQUEST, "Bad Request", why)),
        };
        let Some(key) = ws_key(&head) else {
            return Ok(text(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                "not a WebSocket upgrade",
            ));
        };
        let request = Request::from_parts(head, body);
        let response = match hc.action.as_str() {
            "listen" => self.listen(hc, key, request).await,
            "connect" => self.connect(hc, key, request, peer).await,
            "accept" => self.accept(hc, key, request),
            _ => text(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                "sb-hc-action must be listen, connect or accept",
            ),
        };
        Ok(response)
    }

    async fn listen(
        self: Arc<Self>,
        hc: HcRequest,
        key: String,
        request: Request<Incoming>,
    ) -> Response<Full<Bytes>> {
        let key_name = match self.check(&hc, Right::Listen).await {
            Ok(k) => k,
            Err(e) => {
                tracing::info!(target: "arcgate::audit", name = %hc.name, error = %e, "listener refused");
                return text(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
            }
        };
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_string();
        let (tx, rx) = mpsc::channel::<String>(64);
        let id = self.next_listener.fetch_add(1, Ordering::Relaxed) as u64;
        {
            let mut all = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            let list = all.entry(hc.name.clone()).or_default();
            if list.len() >= MAX_LISTENERS_PER_NAME {
                return text(
                    StatusCode::FORBIDDEN,
                    "too many listeners",
                    "this name already has 25 listeners",
                );
            }
            list.push(ListenerHandle { id, host, tx });
        }
        tracing::info!(name = %hc.name, key = %key_name, listener = id, "listener attached");
        let relay = self.clone();
        let name = hc.name.clone();
        tokio::spawn(async move {
            if let Ok(upgraded) = hyper::upgrade::on(request).await {
                relay
                    .control(name.clone(), TokioIo::new(upgraded), rx)
                    .await;
            }
            relay.detach(&name, id);
        });
        switching_protocols(&key)
    }

    fn detach(&self, name: &str, id: u64) {
        let mut all = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = all.get_mut(name) {
            list.retain(|l| l.id != id);
            if list.is_empty() {
                all.remove(name);
            }
        }
        tracing::info!(name, listener = id, "listener detached");
    }

    /// One listener's control channel: accept messages out, renewToken in, pings both ways.
    async fn control<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        name: String,
        io: S,
        mut outbox: mpsc::Receiver<String>,
    ) {
        let mut ws =
            tokio_tungstenite::WebSocketStream::from_raw_socket(io, WsRole::Server, None).await;
        let mut ping = tokio::time::interval(self.opts.ping_interval);
        ping.tick().await;
        let mut unanswered = 0u32;
        loop {
            tokio::select! {
                msg = outbox.recv() => match msg {
                    Some(text) => if ws.send(Message::text(text)).await.is_err() { return },
                    None => return,
                },
                incoming = ws.next() => match incoming {
                    Some(Ok(Message::Text(t))) => {
                        unanswered = 0;
                        match serde_json::from_str::<RenewTokenMessage>(&t) {
                            Ok(renew) => {
                                let check = HcRequest {
                                    name: name.clone(),
                                    action: "listen".into(),
                                    id: None,
                                    token: Some(renew.renew_token.token),
                                    query: vec![],
                                };
                                if let Err(e) = self.check(&check, Right::Listen).await {
                                    tracing::warn!(name = %name, error = %e, "renewed token refused; detaching the listener");
                                    let _ = ws.close(None).await;
                                    return;
                                }
                                tracing::info!(name = %name, "listener token renewed");
                            }
                            Err(_) => tracing::warn!(name = %name, message = %shorten(&t), "unknown control message ignored"),
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => unanswered = 0,
                },
                _ = ping.tick() => {
                    unanswered += 1;
                    if unanswered > 3 || ws.send(Message::Ping(Bytes::from_static(b"relay"))).await.is_err() {
                        tracing::warn!(name = %name, "listener stopped answering; detaching it");
                        return;
                    }
                }
            }
        }
    }

    async fn connect(
        self: Arc<Self>,
        hc: HcRequest,
        key: String,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        if let Err(e) = self.check(&hc, Right::Send).await {
            tracing::info!(target: "arcgate::audit", name = %hc.name, peer = %peer, error = %e, "sender refused");
            return text(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
        }
        let id = hc
            .id
            .clone()
            .filter(|i| !i.is_empty() && i.len() <= 64 && !i.chars().any(crate::config::misleading))
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        // The address carries a fresh, unguessable handle: it is the listener's only credential.
        let handle = uuid::Uuid::new_v4().simple().to_string();
        let chosen = {
            let all = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            all.get(&hc.name).filter(|l| !l.is_empty()).map(|list| {
                let i = self.round_robin.fetch_add(1, Ordering::Relaxed) % list.len();
                (list[i].host.clone(), list[i].tx.clone())
            })
        };
        let Some((host, tx)) = chosen else {
            return text(
                StatusCode::NOT_FOUND,
                "Endpoint does not exist",
                "Endpoint does not exist",
            );
        };
        let mut address = url::Url::parse(&format!("wss://{host}/$hc/{}", hc.name))
            .unwrap_or_else(|_| url::Url::parse("wss://localhost/").expect("a valid URL"));
        {
            let mut q = address.query_pairs_mut();
            q.append_pair("sb-hc-action", "accept");
            q.append_pair("sb-hc-id", &handle);
            for (k, v) in &hc.query {
                if !k.starts_with("sb-hc-") {
                    q.append_pair(k, v);
                }
            }
        }
        let connect_headers: HashMap<String, String> = request
            .headers()
            .iter()
            .filter(|(n, _)| {
                !matches!(
                    n.as_str(),
                    "servicebusauthorization" | "authorization" | "sec-websocket-key" | "cookie"
                )
            })
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let message = AcceptMessage {
            accept: Accept {
                address: address.to_string(),
                id: id.clone(),
                connect_headers,
                remote_endpoint: Some(RemoteEndpoint {
                    address: peer.ip().to_string(),
                    port: peer.port(),
                }),
            },
        };
        let (done_tx, done_rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(handle.clone(), done_tx);
        let sent = tx
            .send(serde_json::to_string(&message).expect("plain data serializes"))
            .await;
        // None: the listener went away before answering.
        let outcome = match sent {
            Ok(()) => tokio::time::timeout(ACCEPT_TTL, done_rx)
                .await
                .map(Result::ok),
            Err(_) => Ok(None),
        };
        // Single use: whatever happened, the address is spent.
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&handle);
        match outcome {
            Ok(Some(Rendezvous::Accepted(listener_side))) => {
                let max_frame = self.opts.max_frame;
                tokio::spawn(
                    async move {
                        let (Ok(listener), Ok(sender)) =
                            (listener_side.await, hyper::upgrade::on(request).await)
                        else {
                            return;
                        };
                        join(TokioIo::new(sender), TokioIo::new(listener), max_frame).await;
                    }
                    .in_current_span(),
                );
                switching_protocols(&key)
            }
            Ok(Some(Rendezvous::Rejected(status, description))) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
                text(status, &description, &description)
            }
            Ok(None) => text(
                StatusCode::NOT_FOUND,
                "Endpoint does not exist",
                "the listener went away",
            ),
            Err(_) => text(
                StatusCode::GATEWAY_TIMEOUT,
                "listener did not answer",
                "the listener did not accept or reject within 30 s",
            ),
        }
    }

    fn accept(
        &self,
        hc: HcRequest,
        key: String,
        mut request: Request<Incoming>,
    ) -> Response<Full<Bytes>> {
        let waiting = hc.id.as_ref().and_then(|id| {
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(id)
        });
        let Some(waiting) = waiting else {
            return text(
                StatusCode::NOT_FOUND,
                "Endpoint does not exist",
                "this accept address is unknown, used or expired",
            );
        };
        let get = |k: &str| {
            hc.query
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        if let Some(code) = get("sb-hc-statusCode") {
            let status = code
                .parse::<u16>()
                .ok()
                .filter(|c| (400..600).contains(c))
                .unwrap_or(403);
            let description = get("sb-hc-statusDescription")
                .map(|d| shorten(&d))
                .unwrap_or_else(|| "connection not allowed".into());
            let _ = waiting.send(Rendezvous::Rejected(status, description));
            return text(
                StatusCode::GONE,
                "Gone",
                "rejection delivered to the sender",
            );
        }
        let _ = waiting.send(Rendezvous::Accepted(hyper::upgrade::on(&mut request)));
        switching_protocols(&key)
    }
}

/// The most the relay reads from one side at once: the frame size the gate and clients send
/// (their `buf_size`), so a frame passes through in one piece.
const PUMP_CHUNK: usize = crate::transport::readahead::AHEAD;

/// Joins two WebSocket clients frame for frame: data, pings, pongs and closes from one go
/// to the other unchanged, each direction with backpressure; the join ends when both sides
/// have closed or either connection fails.
pub async fn join<A, B>(a: A, b: B, max_frame: u64)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let ab = pump(
        FrameReader::new(ar, Role::Server, max_frame, PUMP_CHUNK),
        FrameWriter::new(bw, Role::Server),
    );
    let ba = pump(
        FrameReader::new(br, Role::Server, max_frame, PUMP_CHUNK),
        FrameWriter::new(aw, Role::Server),
    );
    tokio::pin!(ab, ba);
    // A direction that ends with a Close lets the other finish; one that fails ends both.
    tokio::select! {
        closed = &mut ab => if closed { ba.await; },
        closed = &mut ba => if closed { ab.await; },
    }
}

/// Forwards one direction; `true` if it ended with a Close.
async fn pump<R, W>(mut from: FrameReader<R>, mut to: FrameWriter<W>) -> bool
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let result = match from.next().await {
            Ok(Event::Data(d)) => to.send_binary_from(d).await,
            Ok(Event::Ping(p)) => to.send_ping(&p).await,
            Ok(Event::Pong) => Ok(()),
            Ok(Event::Close(c)) => {
                let code = if c.code == 1005 {
                    crate::transport::ws::close::NORMAL
                } else {
                    c.code
                };
                let _ = to.send_close(code, &c.reason).await;
                return true;
            }
            Err(e) => {
                if let Some(code) = e.close_code() {
                    let _ = to.send_close(code, &e.to_string()).await;
                }
                return false;
            }
        };
        if result.is_err() {
            return false;
        }
    }
}

/// Serves the relay on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    relay: Arc<Relay>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let connections = Arc::new(tokio::sync::Semaphore::new(relay.opts.max_connections));
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => return,
            p = connections.clone().acquire_owned() => p.expect("semaphore never closed"),
        };
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = crate::transport::accept::accept(&listener, "relay") => accepted,
        };
        let relay = relay.clone();
        let config = tls.clone();
        tokio::spawn(
            async move {
                let _ = tcp.set_nodelay(true);
                let timeout = relay.opts.handshake_timeout;
                let accepted = crate::transport::tls::accept(&config, tcp);
                let Ok(Ok(tls)) = tokio::time::timeout(timeout, accepted).await else {
                    return;
                };
                let service = {
                    let relay = relay.clone();
                    hyper::service::service_fn(move |req| relay.clone().answer(req, peer))
                };
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(timeout)
                    .max_buf_size(relay.opts.max_header_bytes.max(8192));
                let io = TokioIo::new(Lingering::new(tls, permit));
                let _ = http.serve_connection(io, service).with_upgrades().await;
            }
            .instrument(tracing::info_span!("relay", %peer)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::ws::HEADROOM;

    #[test]
    fn accept_messages_parse_with_and_without_remote_endpoint_and_ignore_unknown_fields() {
        let full = r#"{"accept":{"address":"wss://r/$hc/h?sb-hc-action=accept&sb-hc-id=1","id":"1",
            "connectHeaders":{"Host":"r"},"remoteEndpoint":{"address":"10.0.0.1","port":4242},
            "futureField":true}}"#;
        let m: AcceptMessage = serde_json::from_str(full).unwrap();
        assert_eq!(m.accept.remote_endpoint.unwrap().port, 4242);
        let bare =
            r#"{"accept":{"address":"wss://r/$hc/h?sb-hc-action=accept&sb-hc-id=2","id":"2"}}"#;
        let m: AcceptMessage = serde_json::from_str(bare).unwrap();
        assert!(m.accept.remote_endpoint.is_none() && m.accept.connect_headers.is_empty());
        let renew: RenewTokenMessage =
            serde_json::from_str(r#"{"renewToken":{"token":"SharedAccessSignature x"}}"#).unwrap();
        assert_eq!(renew.renew_token.token, "SharedAccessSignature x");
        assert_eq!(
            serde_json::to_string(&renew).unwrap(),
            r#"{"renewToken":{"token":"SharedAccessSignature x"}}"#
        );
    }

    #[test]
    fn reject_addresses_encode_the_description() {
        assert_eq!(
            reject_address(
                "wss://r/$hc/h?sb-hc-action=accept&sb-hc-id=1",
                403,
                "connection not allowed"
            ),
            "wss://r/$hc/h?sb-hc-action=accept&sb-hc-id=1&sb-hc-statusCode=403&sb-hc-statusDescription=connection%20not%20allowed"
        );
        let d = reject_address(
            "wss://r/x?a=1",
            503,
            "connection to localhost:22 failed: refused.",
        );
        assert!(
            d.ends_with(
                "sb-hc-statusDescription=connection%20to%20localhost%3A22%20failed%3A%20refused%2E"
            ),
            "{d}"
        );
    }

    #[tokio::test]
    async fn join_passes_frames_larger_than_its_read_chunk_whole_and_in_order() {
        // Room for the whole frame, so that the relay reads it in pieces over 64 KiB.
        let (a_client, a_relay) = tokio::io::duplex(1 << 20);
        let (b_client, b_relay) = tokio::io::duplex(64 * 1024);
        let joined = tokio::spawn(join(a_relay, b_relay, 1 << 20));
        let data: Vec<u8> = (0..(PUMP_CHUNK + 100_000) as u32)
            .map(|i| (i % 253) as u8)
            .collect();
        let sent = data.clone();
        let (a_r, a_w) = tokio::io::split(a_client);
        let sender = tokio::spawn(async move {
            let mut w = FrameWriter::new(a_w, Role::Client);
            let mut frame = vec![0u8; HEADROOM + sent.len()];
            frame[HEADROOM..].copy_from_slice(&sent);
            w.send_binary(&mut frame, sent.len()).await.unwrap();
            w.send_close(crate::transport::ws::close::NORMAL, "")
                .await
                .unwrap();
            (w, a_r)
        });
        let (b_r, mut b_w) = tokio::io::split(b_client);
        let mut reader = FrameReader::new(b_r, Role::Client, 1 << 20, 64 * 1024);
        let mut got = Vec::new();
        let close = loop {
            match reader.next().await.unwrap() {
                Event::Data(d) => got.extend_from_slice(d),
                Event::Close(c) => break c,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(close.code, crate::transport::ws::close::NORMAL);
        assert_eq!(got.len(), data.len());
        assert!(got == data, "the bytes changed on the way");
        // The other direction closes too, and the join ends.
        let mut closer = FrameWriter::new(&mut b_w, Role::Client);
        closer
            .send_close(crate::transport::ws::close::NORMAL, "")
            .await
            .unwrap();
        let _keep_a_open = sender.await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), joined)
            .await
            .expect("the join ends once both sides closed")
            .unwrap();
    }
}
