//! The one outbound dialer: TCP (through an HTTP CONNECT proxy when one applies), TLS with
//! verification, and the WebSocket upgrade — used by `connect`, each `forward` tunnel, and
//! the relay-listener role's control channel, rendezvous and rejections.
//!
//! Every phase is its own function under what is left of one deadline (the caller's connect
//! timeout), and names itself in the error when it runs out. A refusal is a
//! [`DialError::Refused`] with the status line and the explanation from a `403` body; what a
//! refusal means to a person (and which exit code it is) is the client's business.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::http::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::shorten_sentence;
use crate::hc::request::{GATE_TOKEN_HEADER, SB_AUTH_HEADER};
use crate::hc::url::Endpoint;
use crate::transport::deadline::{TimedOut, within};
use crate::transport::proxy::Proxy;
use crate::transport::server_tls::ClientTls;
use crate::transport::tls::{self, ClientTrust, TlsError};

/// The largest refusal body read, for its explanation: a hostile server cannot make us
/// buffer more.
const MAX_REFUSAL_BODY: usize = 8192;

/// The stream a dialled WebSocket runs on.
pub(crate) type ClientStream = ClientTls<TcpStream>;

/// Why a dial failed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The server answered with something other than `101`.
    #[error("{status} {reason}")]
    Refused {
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: String,
        /// The explanation from the body (a 403's detail or reason).
        detail: Option<String>,
    },
    /// TLS failed.
    #[error("TLS with {host} failed: {error}; {hint}")]
    Tls {
        /// Host dialled.
        host: String,
        /// The TLS error.
        error: String,
        /// What to check.
        hint: String,
    },
    /// The server could not be reached, or the connection failed mid-handshake.
    #[error("cannot reach {target}: {error}")]
    Network {
        /// host:port.
        target: String,
        /// What happened.
        error: String,
    },
    /// The host is not a name TLS can verify.
    #[error("'{host}' is not a valid TLS name: {why}")]
    BadName {
        /// The host.
        host: String,
        /// Why.
        why: String,
    },
    /// The server answered `101` but not as a WebSocket server should.
    #[error("{0}")]
    Protocol(&'static str),
}

/// An open WebSocket after `101`: the TLS stream and the bytes that came with the answer
/// (copied out of hyper's read buffer, so that a session does not hold that buffer).
#[derive(Debug)]
pub(crate) struct Tunnel {
    /// The stream, boxed for the reason given at `transport::serve::take_stream`: the tunnel
    /// passes by value through several async functions (forward's tunnel task measured 5.8
    /// KiB with it inline, each holding room for its 1.1 KiB).
    pub io: Box<ClientStream>,
    /// Bytes after the `101`.
    pub leftover: Vec<u8>,
}

/// Dials WebSockets with one TLS configuration, proxy setting and deadline.
#[derive(Debug, Clone)]
pub(crate) struct Dialer {
    tls: Arc<rustls::ClientConfig>,
    proxy: Option<Proxy>,
    /// The addresses the names it dials resolved to, shared by this dialer's clones.
    resolved: Arc<Resolved>,
    timeout: Duration,
    /// The flag that adds a CA, for the hint when a certificate is not trusted.
    ca_flag: &'static str,
    /// How long the gate may take to answer the upgrade request when it holds the session
    /// for its administrator's approval (`connect --approval-wait`); `None`: the deadline,
    /// so that an endpoint that never answers is given up on in `--connect-timeout`.
    answer_wait: Option<Duration>,
}

/// After this long without an answer to the upgrade request, a client says it may be
/// waiting for the host's administrator: a gate answers in milliseconds otherwise.
const WAITING_HINT_AFTER: Duration = Duration::from_secs(3);

/// What a request carries to prove who sends it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Credentials<'a> {
    /// The token for whoever answers (the gate, or the relay), in `ServiceBusAuthorization`.
    pub(crate) token: Option<&'a str>,
    /// Through a relay: a token for the gate behind it, in `Arcgate-Gate-Token`, which the
    /// relay passes on to the gate.
    pub(crate) gate_token: Option<&'a str>,
}

impl<'a> Credentials<'a> {
    /// No credentials (an accept address is its own credential).
    pub(crate) const NONE: Credentials<'static> = Credentials {
        token: None,
        gate_token: None,
    };

    /// Only `token`.
    pub(crate) fn token(token: &'a str) -> Credentials<'a> {
        Credentials {
            token: Some(token),
            gate_token: None,
        }
    }
}

impl Dialer {
    /// Builds the TLS configuration once.
    pub(crate) fn new(
        trust: &ClientTrust,
        proxy: Option<Proxy>,
        timeout: Duration,
    ) -> Result<Dialer, TlsError> {
        Ok(Dialer {
            tls: tls::client_config(trust)?,
            proxy,
            resolved: Arc::default(),
            timeout,
            ca_flag: trust.ca_flag,
            answer_wait: None,
        })
    }

    /// A client that waits up to `wait` for the gate's answer (it may hold the session for
    /// its administrator's approval), and says so after a few seconds.
    pub(crate) fn waiting_for_approval(mut self, wait: Option<Duration>) -> Dialer {
        self.answer_wait = wait;
        self
    }

    /// Opens a WebSocket to `to`, sending the credentials given.
    pub(crate) async fn open(
        &self,
        to: &Endpoint,
        token: Credentials<'_>,
    ) -> Result<Tunnel, DialError> {
        let mut phase = Phases {
            to,
            timeout: self.timeout,
            deadline: Instant::now() + self.timeout,
            ca_flag: self.ca_flag,
            answer_wait: self.answer_wait,
        };
        let (tcp, trial) = phase.tcp(self.proxy.as_ref(), &self.resolved).await?;
        let dialled = match phase.tls(self.tls.clone(), tcp).await {
            Ok(tls) => phase.upgrade(tls, token).await,
            Err(e) => Err(e),
        };
        // Addresses that led to something other than a gate's answer (TLS failed, the
        // upgrade was not answered) are forgotten with `trial`: the name may have moved to
        // another host while its old address still accepts connections.
        if let (Some(trial), Ok(_) | Err(DialError::Refused { .. })) = (trial, &dialled) {
            trial.answered();
        }
        dialled
    }
}

/// How long a name's addresses are reused before it is resolved again.
const RESOLVED_FRESH: Duration = Duration::from_secs(10);

/// How many names a dialer keeps addresses for: a client dials one gate or relay, a relayed
/// gate its relay, rarely more; the oldest is dropped first.
const RESOLVED_NAMES: usize = 4;

/// The addresses gate names resolved to, reused for [`RESOLVED_FRESH`]: `forward` opens a
/// tunnel per local connection, and each resolution is a hand-off to tokio's blocking pool and
/// back, two thread switches of the seventeen a new tunnel costs here (strace, bench).
///
/// Kept addresses are only a shortcut, never a reason to fail for more than one dial: a dial
/// that cannot connect to them, or is given up on while it tries (a deadline, an address that
/// drops SYNs), forgets them, and one that cannot connect resolves the name again at once;
/// addresses that connect but do not lead to a gate's answer (the name moved and something
/// else listens at the old address) are forgotten too, so the next dial resolves again: an
/// answer is a `101` or any refusal, which a verified certificate says came from the gate
/// (under `--insecure`, from whatever answers HTTPS there). Dials through a proxy do not use
/// them: the proxy resolves.
#[derive(Debug, Default)]
struct Resolved(std::sync::Mutex<Vec<ResolvedName>>);

#[derive(Debug, Clone)]
struct ResolvedName {
    host: String,
    port: u16,
    addresses: Arc<[std::net::SocketAddr]>,
    at: Instant,
}

impl Resolved {
    /// Connects to `host`:`port` through its fresh addresses if it has any, else (or when they
    /// do not connect) through what it resolves to now. The addresses used stay kept only if
    /// the [`Trial`] returned is [answered](Trial::answered).
    async fn connect(&self, host: &str, port: u16) -> std::io::Result<(TcpStream, Trial<'_>)> {
        if let Some(kept) = self.fresh(host, port) {
            let addresses = kept.addresses.clone();
            let trial = Trial {
                resolved: self,
                kept: Some(kept),
            };
            if let Ok(tcp) = TcpStream::connect(&addresses[..]).await {
                return Ok((tcp, trial));
            }
        }
        let addresses: Arc<[_]> = tokio::net::lookup_host((host, port)).await?.collect();
        // Stamped when resolved: reused for RESOLVED_FRESH from the answer, not from whenever
        // the connect got through.
        let at = Instant::now();
        let tcp = TcpStream::connect(&addresses[..]).await?;
        let name = ResolvedName {
            host: host.to_string(),
            port,
            addresses,
            at,
        };
        self.keep(name.clone());
        Ok((
            tcp,
            Trial {
                resolved: self,
                kept: Some(name),
            },
        ))
    }

    fn names(&self) -> std::sync::MutexGuard<'_, Vec<ResolvedName>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fresh(&self, host: &str, port: u16) -> Option<ResolvedName> {
        self.names()
            .iter()
            .find(|k| k.host == host && k.port == port && k.at.elapsed() < RESOLVED_FRESH)
            .cloned()
    }

    fn keep(&self, name: ResolvedName) {
        let mut names = self.names();
        names.retain(|k| !(k.host == name.host && k.port == name.port));
        if names.len() == RESOLVED_NAMES {
            names.remove(0);
        }
        names.push(name);
    }
}

/// Forgets the addresses a dial is trying when it ends without a gate's answer through them,
/// whether it failed or was dropped mid-way; a newer resolution of the name is left alone.
struct Trial<'a> {
    resolved: &'a Resolved,
    kept: Option<ResolvedName>,
}

impl Trial<'_> {
    /// A gate answered through these addresses: they stay kept.
    fn answered(mut self) {
        self.kept = None;
    }
}

impl Drop for Trial<'_> {
    fn drop(&mut self) {
        if let Some(tried) = &self.kept {
            self.resolved
                .names()
                .retain(|k| !(k.host == tried.host && k.port == tried.port && k.at == tried.at));
        }
    }
}

/// One dial's phases, sharing its deadline.
struct Phases<'a> {
    to: &'a Endpoint,
    timeout: Duration,
    /// Moved on once a gate answers after an approval wait, so the phases after it get time.
    deadline: Instant,
    ca_flag: &'static str,
    answer_wait: Option<Duration>,
}

impl Phases<'_> {
    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    fn network(&self, error: impl std::fmt::Display) -> DialError {
        DialError::Network {
            target: format!("{}:{}", self.to.host, self.to.port),
            error: error.to_string(),
        }
    }

    /// The gate did not answer the upgrade request in time: a gate that holds sessions for
    /// its administrator's approval is the one good reason, said when the client did not
    /// expect it.
    fn answer_timed_out(&self, t: TimedOut) -> DialError {
        match self.answer_wait {
            Some(wait) => self.network(format_args!(
                "{} did not finish within {}s (--approval-wait): nobody approved the session, \
                 or the gate is not answering",
                t.phase,
                wait.as_secs()
            )),
            None => self.network(format_args!(
                "{} did not finish within {:?} (--connect-timeout); check the host, port and any \
                 firewall, and if the host holds sessions until its administrator approves them \
                 (incomingconnections.approval), give the client --approval-wait 2m",
                t.phase, self.timeout
            )),
        }
    }

    fn timed_out(&self, t: TimedOut) -> DialError {
        self.network(format_args!(
            "{} did not finish within {:?} (--connect-timeout); check the host, port and any firewall",
            t.phase, self.timeout
        ))
    }

    /// The TCP connection, and when it went to kept or resolved addresses (not through a
    /// proxy), the trial that keeps them if the dial gets an answer.
    async fn tcp<'r>(
        &self,
        proxy: Option<&Proxy>,
        resolved: &'r Resolved,
    ) -> Result<(TcpStream, Option<Trial<'r>>), DialError> {
        let (host, port) = (self.to.host.as_str(), self.to.port);
        let (tcp, trial) = match proxy.filter(|p| p.applies_to(host)) {
            Some(proxy) => within(
                "connecting through the proxy",
                self.left(),
                proxy.connect(host, port),
            )
            .await
            .map_err(|t| self.timed_out(t))?
            .map(|tcp| (tcp, None))
            .map_err(|e| self.network(e))?,
            None => within("connecting", self.left(), resolved.connect(host, port))
                .await
                .map_err(|t| self.timed_out(t))?
                .map(|(tcp, trial)| (tcp, Some(trial)))
                .map_err(|e| self.network(e))?,
        };
        let _ = tcp.set_nodelay(true);
        Ok((tcp, trial))
    }

    async fn tls(
        &self,
        config: Arc<rustls::ClientConfig>,
        tcp: TcpStream,
    ) -> Result<ClientStream, DialError> {
        let host = &self.to.host;
        let server_name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| {
            DialError::BadName {
                host: host.clone(),
                why: e.to_string(),
            }
        })?;
        let connecting = tls::connect(config, server_name, tcp);
        within("the TLS handshake", self.left(), connecting)
            .await
            .map_err(|t| self.timed_out(t))?
            .map_err(|e| match tls_hint(&e, self.ca_flag) {
                Some(hint) => DialError::Tls {
                    host: host.clone(),
                    error: e.to_string(),
                    hint,
                },
                // No TLS error inside: the connection itself failed (reset, closed).
                None => self.network(format_args!(
                    "the connection ended during the TLS handshake: {e}"
                )),
            })
    }

    /// The upgrade request and its answer, under the deadline too: an endpoint that
    /// completes TLS and never answers must not hold `connect`, a `forward` tunnel or a
    /// relayed session for ever.
    async fn upgrade(
        &mut self,
        io: ClientStream,
        token: Credentials<'_>,
    ) -> Result<Tunnel, DialError> {
        const PHASE: &str = "the WebSocket handshake";
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.network(e))?;
        let conn_task = tokio::spawn(conn.with_upgrades());
        // Aborted on every way out but success: it holds the connection.
        let abort = AbortOnDrop(Some(conn_task));
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
        let answer = within(
            PHASE,
            self.left().max(self.answer_wait.unwrap_or_default()),
            self.send(&mut sender, &key, token),
        );
        let hint = async {
            if let Some(wait) = self.answer_wait {
                tokio::time::sleep(WAITING_HINT_AFTER).await;
                tracing::warn!(
                    "no answer yet from {}: the host may hold the session until its \
                     administrator approves it (waiting up to {}s, --approval-wait)",
                    self.to.host,
                    wait.as_secs()
                );
            }
            std::future::pending::<()>().await
        };
        let response = tokio::select! {
            answered = answer => answered.map_err(|t| self.answer_timed_out(t))??,
            () = hint => unreachable!("the hint never ends"),
        };
        // An answer that came after a long wait for approval leaves the rest of the
        // handshake (the upgrade, or a refusal's body) the usual time.
        let rest = Instant::now() + self.timeout;
        if rest > self.deadline {
            self.deadline = rest;
        }
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(self.refused(response).await);
        }
        let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
        if response
            .headers()
            .get(header::SEC_WEBSOCKET_ACCEPT)
            .map(|v| v.as_bytes())
            != Some(expected.as_bytes())
        {
            return Err(DialError::Protocol(
                "the server answered 101 without a valid Sec-WebSocket-Accept; it is not an arcgate gate",
            ));
        }
        let upgraded = within(PHASE, self.left(), hyper::upgrade::on(response))
            .await
            .map_err(|t| self.timed_out(t))?
            .map_err(|e| self.network(format_args!("upgrade failed: {e}")))?;
        let parts = upgraded
            .downcast::<TokioIo<ClientStream>>()
            .map_err(|_| DialError::Protocol("unexpected connection type after upgrade"))?;
        // The connection task has handed the stream over; it ends by itself.
        abort.disarm();
        Ok(Tunnel {
            io: Box::new(parts.io.into_inner()),
            leftover: parts.read_buf.to_vec(),
        })
    }

    async fn send(
        &self,
        sender: &mut SendRequest<Empty<Bytes>>,
        key: &str,
        token: Credentials<'_>,
    ) -> Result<Response<hyper::body::Incoming>, DialError> {
        let (host, port) = (&self.to.host, self.to.port);
        let host_header = match (port, host.contains(':')) {
            (443, _) => host.clone(),
            (_, true) => format!("[{host}]:{port}"),
            (_, false) => format!("{host}:{port}"),
        };
        let mut request = Request::get(&self.to.path_and_query)
            .header(header::HOST, host_header)
            .header(header::UPGRADE, "websocket")
            .header(header::CONNECTION, "Upgrade")
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .header(header::SEC_WEBSOCKET_KEY, key)
            .header(
                header::USER_AGENT,
                concat!("arcgate/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(token) = token.token {
            request = request.header(SB_AUTH_HEADER, token);
        }
        if let Some(token) = token.gate_token {
            request = request.header(GATE_TOKEN_HEADER, token);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| self.network(format_args!("cannot build the request: {e}")))?;
        sender.send_request(request).await.map_err(|e| {
            self.network(format_args!(
                "the gate closed the connection during the handshake: {e}"
            ))
        })
    }

    async fn refused(&self, response: Response<hyper::body::Incoming>) -> DialError {
        let status = response.status();
        let reason = response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
            .or_else(|| status.canonical_reason().map(str::to_string))
            .unwrap_or_default();
        let reading = Limited::new(response.into_body(), MAX_REFUSAL_BODY).collect();
        let body = within("the WebSocket handshake", self.left(), reading)
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        DialError::Refused {
            status: status.as_u16(),
            reason,
            detail: refusal_detail(status, &body),
        }
    }
}

struct AbortOnDrop(Option<tokio::task::JoinHandle<Result<(), hyper::Error>>>);

impl AbortOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// What to check for a TLS failure; `None` when the error is not TLS's but the connection's.
fn tls_hint(e: &std::io::Error, ca_flag: &str) -> Option<String> {
    use rustls::CertificateError as C;
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let cert = match tls {
        None if matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::BrokenPipe
        ) =>
        {
            return None;
        }
        Some(rustls::Error::InvalidCertificate(c)) => Some(c),
        _ => None,
    };
    Some(match cert {
        Some(C::UnknownIssuer) => {
            return Some(format!(
                "the certificate is not signed by a CA you trust; pass its CA with {ca_flag} FILE"
            ));
        }
        Some(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the certificate is not valid for this host name; connect with a name it was issued for"
        }
        Some(C::Expired | C::ExpiredContext { .. }) => "the certificate has expired",
        Some(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "the certificate is not valid yet; check this machine's clock"
        }
        Some(_) => "the certificate was rejected",
        None => "check that the port speaks TLS (it may be plain HTTP or another service)",
    }
    .to_string())
}

/// A `403`'s or `404`'s explanation: the JSON body's `detail`, else its `reason`.
fn refusal_detail(status: StatusCode, body: &[u8]) -> Option<String> {
    if (status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND)
        && let Ok(json) = serde_json::from_slice::<serde_json::Value>(body)
    {
        if let Some(detail) = json.get("detail").and_then(|d| d.as_str()) {
            return Some(shorten_sentence(detail));
        }
        if let Some(reason) = json.get("reason").and_then(|r| r.as_str()) {
            return Some(shorten_sentence(reason));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    /// Puts `addresses` in as `host`:`port`'s, resolved `ago`.
    fn put(resolved: &Resolved, host: &str, port: u16, addresses: &[SocketAddr], ago: Duration) {
        resolved.keep(ResolvedName {
            host: host.to_string(),
            port,
            addresses: addresses.into(),
            at: Instant::now().checked_sub(ago).unwrap(),
        });
    }

    /// A connect that a gate answered through.
    fn answered(connected: std::io::Result<(TcpStream, Trial<'_>)>) {
        connected.expect("connected").1.answered();
    }

    #[tokio::test]
    async fn a_resolved_name_is_reused_while_fresh_and_forgotten_when_it_fails() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let resolved = Resolved::default();
        assert!(resolved.fresh("localhost", port).is_none());
        answered(resolved.connect("localhost", port).await);
        let kept = resolved
            .fresh("localhost", port)
            .expect("kept after it worked");
        assert!(
            kept.addresses
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == port)
        );
        // Another name or port is resolved afresh, not served from what was kept.
        assert!(resolved.fresh("localhost", port + 1).is_none());
        assert!(resolved.fresh("127.0.0.1", port).is_none());
        // Old addresses are resolved again.
        let addresses = kept.addresses.to_vec();
        put(
            &resolved,
            "localhost",
            port,
            &addresses,
            RESOLVED_FRESH - Duration::from_millis(50),
        );
        assert!(resolved.fresh("localhost", port).is_some());
        put(&resolved, "localhost", port, &addresses, RESOLVED_FRESH);
        assert!(resolved.fresh("localhost", port).is_none());
        answered(resolved.connect("localhost", port).await);
        assert!(resolved.fresh("localhost", port).is_some());
        // Nothing listens any more: the failure forgets the addresses.
        drop(listener);
        assert!(resolved.connect("localhost", port).await.is_err());
        assert!(resolved.fresh("localhost", port).is_none());
    }

    #[tokio::test]
    async fn kept_addresses_that_no_longer_connect_are_resolved_again_in_the_same_dial() {
        // The gate's name now resolves elsewhere than what was kept: the kept address (a port
        // nothing listens on) fails, and the same dial connects through a fresh resolution.
        let moved = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone = moved.local_addr().unwrap();
        drop(moved);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let resolved = Resolved::default();
        put(&resolved, "127.0.0.1", port, &[gone], Duration::ZERO);
        let (_tcp, trial) = resolved
            .connect("127.0.0.1", port)
            .await
            .expect("resolved again after the kept address failed");
        trial.answered();
        let now = resolved
            .fresh("127.0.0.1", port)
            .expect("the new addresses kept");
        assert_eq!(&now.addresses[..], &[listener.local_addr().unwrap()]);
    }

    #[tokio::test]
    async fn a_dial_given_up_on_forgets_the_addresses_it_was_trying() {
        // A listener whose accept queue is full drops SYNs: connecting to it hangs, as to a
        // host behind a firewall that drops packets, until the dial's deadline gives up.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let full = socket.listen(0).unwrap();
        let hang = full.local_addr().unwrap();
        // The one connection the queue takes (Linux takes one more than the backlog given).
        let _queued = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(hang))
            .await
            .expect("a listen(0) queue takes one connection")
            .unwrap();
        let resolved = Resolved::default();
        put(&resolved, "gate.example", 443, &[hang], Duration::ZERO);
        let dial = tokio::time::timeout(
            Duration::from_millis(300),
            resolved.connect("gate.example", 443),
        );
        assert!(dial.await.is_err(), "the dial should hang on a full queue");
        assert!(
            resolved.fresh("gate.example", 443).is_none(),
            "the next dial resolves again instead of hanging on the same address"
        );
    }

    #[tokio::test]
    async fn kept_addresses_that_lead_to_no_gate_are_forgotten() {
        // The gate's name moved, and something else at its old address accepts connections
        // and closes them: the dial fails in TLS, and the next one must resolve again rather
        // than fail the same way until the addresses go stale.
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let old = other.local_addr().unwrap();
        let accepting = tokio::spawn(async move {
            loop {
                let _ = other.accept().await;
            }
        });
        let trust = ClientTrust {
            ca_files: Vec::new(),
            insecure: true,
            ca_flag: "--ca",
        };
        let dialer = Dialer::new(&trust, None, Duration::from_secs(10)).unwrap();
        put(
            &dialer.resolved,
            "gate.example",
            443,
            &[old],
            Duration::ZERO,
        );
        let to = Endpoint {
            host: "gate.example".into(),
            port: 443,
            path_and_query: "/".into(),
        };
        let failed = dialer.open(&to, Credentials::NONE).await.unwrap_err();
        assert!(
            failed.to_string().contains("TLS handshake"),
            "failed in TLS: {failed}"
        );
        assert!(
            dialer.resolved.fresh("gate.example", 443).is_none(),
            "the addresses that led to no gate are forgotten"
        );
        accepting.abort();
    }

    #[tokio::test]
    async fn kept_addresses_stay_kept_when_a_gate_answers_even_with_a_refusal() {
        use crate::transport::server_tls::tests::{dev_cert_store, dev_dir};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        let config = tls::server_config(Arc::new(dev_cert_store()));
        let gate = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = tls::accept(&config, tcp).await.unwrap();
            let (mut head, mut piece) = (Vec::new(), [0u8; 1024]);
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = tls.read(&mut piece).await.unwrap();
                assert!(n > 0, "the request head came whole");
                head.extend_from_slice(&piece[..n]);
            }
            tls.write_all(b"HTTP/1.1 403 connection not allowed\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            tls.flush().await.unwrap();
            // Open until the client has read the answer and gone.
            let _ = tls.read(&mut piece).await;
        });
        let trust = ClientTrust {
            ca_files: vec![dev_dir().join("ca.pem")],
            insecure: false,
            ca_flag: "--ca",
        };
        let dialer = Dialer::new(&trust, None, Duration::from_secs(10)).unwrap();
        put(
            &dialer.resolved,
            "localhost",
            at.port(),
            &[at],
            Duration::ZERO,
        );
        let to = Endpoint {
            host: "localhost".into(),
            port: at.port(),
            path_and_query: "/".into(),
        };
        let refused = dialer.open(&to, Credentials::NONE).await.unwrap_err();
        assert!(
            matches!(refused, DialError::Refused { status: 403, .. }),
            "the gate refused: {refused}"
        );
        assert!(
            dialer.resolved.fresh("localhost", at.port()).is_some(),
            "a gate answered through the kept addresses: they stay kept"
        );
        gate.abort();
    }

    #[test]
    fn each_name_keeps_its_own_addresses_and_the_oldest_gives_way() {
        let resolved = Resolved::default();
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        for port in 1..=RESOLVED_NAMES as u16 {
            put(
                &resolved,
                "relay.example",
                port,
                &[at(port)],
                Duration::ZERO,
            );
        }
        put(&resolved, "relay.example", 2, &[at(20)], Duration::ZERO);
        assert_eq!(
            &resolved.fresh("relay.example", 2).unwrap().addresses[..],
            &[at(20)],
            "a name resolved again replaces its old addresses"
        );
        assert_eq!(resolved.names().len(), RESOLVED_NAMES);
        put(&resolved, "gate.example", 443, &[at(443)], Duration::ZERO);
        assert!(
            resolved.fresh("relay.example", 1).is_none(),
            "the oldest went"
        );
        for port in 2..=RESOLVED_NAMES as u16 {
            assert!(resolved.fresh("relay.example", port).is_some());
        }
        assert!(resolved.fresh("gate.example", 443).is_some());
    }

    #[test]
    fn a_refusals_explanation_reaches_the_terminal_whole_and_harmless() {
        let detail = "incoming connections are disabled on the host: incomingconnections.enabled \
                      is false; ask its administrator";
        let body = serde_json::json!({ "detail": detail }).to_string();
        assert_eq!(
            refusal_detail(StatusCode::FORBIDDEN, body.as_bytes()).as_deref(),
            Some(detail),
            "a sentence is not cut"
        );
        // A server's escape sequences never reach the terminal as such.
        let body = serde_json::json!({ "detail": "no gate\u{1b}[2J\u{202e}here" }).to_string();
        assert_eq!(
            refusal_detail(StatusCode::NOT_FOUND, body.as_bytes()).as_deref(),
            Some("no gate?[2J?here")
        );
        assert_eq!(
            refusal_detail(StatusCode::UNAUTHORIZED, body.as_bytes()),
            None
        );
        assert_eq!(refusal_detail(StatusCode::FORBIDDEN, b"not json"), None);
    }
}
