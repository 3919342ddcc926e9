//! `arcgate connect`: the client that OpenSSH runs as its `ProxyCommand`.
//!
//! Owns SPEC §6 for the client: where the URL and token come from (flags, files, the agent's
//! relay-info form), the TLS connection with verification, the WebSocket handshake, turning a
//! refusal into one line a person understands (and an exit code a script can test), and the
//! session between stdin/stdout and the WebSocket. stdout carries tunnel bytes only.

pub mod forward;
pub mod sshconfig;
pub mod stdio;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::http::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::transport::bridge::{self, BridgeConfig, ClosedBy, Counters};
use crate::transport::deadline::{TimedOut, within};
use crate::transport::proxy::Proxy;
use crate::transport::readahead::ReadAhead;
use crate::transport::tls::ClientTrust;
use crate::transport::ws::close;

/// Exit codes of `arcgate connect`, one per kind of failure, documented in `--help`.
pub mod exit {
    /// The session ended normally.
    pub const OK: u8 = 0;
    /// Anything not listed below.
    pub const OTHER: u8 = 1;
    /// Bad arguments or input (URL, token, relay info).
    pub const USAGE: u8 = 2;
    /// `403 connection not allowed`: the host's policy refused.
    pub const FORBIDDEN: u8 = 3;
    /// `401 Unauthorized`: the token was not accepted.
    pub const UNAUTHORIZED: u8 = 4;
    /// `404 Endpoint does not exist`: the gate does not answer to that name.
    pub const NOT_FOUND: u8 = 5;
    /// `503`: the local service is down, or the gate is overloaded or misconfigured.
    pub const UNAVAILABLE: u8 = 6;
    /// Another HTTP answer (400, ...).
    pub const HTTP_OTHER: u8 = 7;
    /// TLS failed: untrusted certificate, name mismatch.
    pub const TLS: u8 = 8;
    /// The gate could not be reached: DNS, refused, timeout.
    pub const NETWORK: u8 = 9;
    /// The session was established and then ended abnormally (dropped, revoked).
    pub const SESSION_LOST: u8 = 10;
}

/// How diagnostics are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One plain line per event.
    #[default]
    Human,
    /// JSON lines, the agent client's shape.
    Json,
}

/// What `connect` was asked to do.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `wss://host[:port]/$hc/NAME[/suffix]`.
    pub url: String,
    /// The target port on the host.
    pub port: u16,
    /// How to check the gate's certificate.
    pub trust: ClientTrust,
    /// The HTTP proxy to reach the gate through, if any.
    pub proxy: Option<Proxy>,
    /// TCP + TLS + HTTP handshake deadline.
    pub connect_timeout: Duration,
}

/// Why `connect` failed. The `Display` form is the one line printed after `arcgate: `.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad input.
    #[error("{0}")]
    Usage(String),
    /// The gate answered with something other than 101.
    #[error("{name} refused the connection: {status} {reason}{}", explain(.status, .detail))]
    Refused {
        /// The gate name.
        name: String,
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: String,
        /// The explanation from the body (403 reason, 503 detail).
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
        hint: &'static str,
    },
    /// The gate could not be reached.
    #[error("cannot reach {target}: {error}")]
    Network {
        /// host:port.
        target: String,
        /// What happened.
        error: String,
    },
    /// The server answered 101 but not as a WebSocket server should.
    #[error("{0}")]
    Protocol(String),
    /// The session ended abnormally.
    #[error("{0}")]
    SessionLost(String),
    /// A signal came before the tunnel was open: nothing was established.
    #[error("{0}")]
    Interrupted(String),
}

fn explain(status: &u16, detail: &Option<String>) -> String {
    match detail {
        Some(d) => format!(" ({d})"),
        None => match status {
            401 => " (the token was not accepted: check that it is current and was made for this host; `arcgate token` on the host mints one)".to_string(),
            404 => " (the gate does not answer to this name; check the name after /$hc/ in the URL)".to_string(),
            _ => String::new(),
        },
    }
}

impl ClientError {
    /// The exit code: the one place a client failure becomes a number.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_) => exit::USAGE,
            ClientError::Refused { status, .. } => match status {
                403 => exit::FORBIDDEN,
                401 => exit::UNAUTHORIZED,
                404 => exit::NOT_FOUND,
                503 => exit::UNAVAILABLE,
                _ => exit::HTTP_OTHER,
            },
            ClientError::Tls { .. } => exit::TLS,
            ClientError::Network { .. } => exit::NETWORK,
            ClientError::Protocol(_) | ClientError::Interrupted(_) => exit::OTHER,
            ClientError::SessionLost(_) => exit::SESSION_LOST,
        }
    }

    /// The lines `--log-format json` prints, in the agent client's shape.
    pub fn json_lines(&self, url: &str) -> Vec<String> {
        let version = env!("CARGO_PKG_VERSION");
        let line = |level: &str, msg: String| {
            serde_json::json!({"level": level, "msg": msg, "proxyVersion": version}).to_string()
        };
        match self {
            ClientError::Refused { status, reason, .. } => vec![
                line(
                    "error",
                    format!(
                        "error connecting to {url}. {status} {reason}. websocket: bad handshake "
                    ),
                ),
                line(
                    "fatal",
                    format!(
                        "sshproxy: error connecting to the address: {status} {reason}. websocket: bad handshake"
                    ),
                ),
            ],
            other => vec![line(
                "fatal",
                format!("sshproxy: error connecting to the address: {other}"),
            )],
        }
    }
}

/// The parsed target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host to dial and to verify the certificate for.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The gate name (`/$hc/{name}`).
    pub name: String,
    /// Path and query to request.
    pub path_and_query: String,
}

impl Target {
    /// An exact `wss://` address, used as it is (a relay's accept address).
    pub fn exact(address: &str) -> Result<Target, ClientError> {
        let parsed = url::Url::parse(address).map_err(|e| {
            ClientError::Usage(format!(
                "'{}' is not a URL: {e}",
                crate::config::shorten(address)
            ))
        })?;
        if parsed.scheme() != "wss" {
            return Err(ClientError::Usage(format!(
                "'{}' is not wss://",
                crate::config::shorten(address)
            )));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| {
                ClientError::Usage(format!("'{}' has no host", crate::config::shorten(address)))
            })?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name = parsed
            .path_segments()
            .and_then(|mut s| s.nth(1))
            .unwrap_or_default()
            .to_string();
        let path_and_query = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_string(),
        };
        Ok(Target {
            host,
            port: parsed.port().unwrap_or(443),
            name,
            path_and_query,
        })
    }
}

/// Parses a `wss://` URL and adds the connect parameters.
pub fn target(url: &str, port: u16, id: &str) -> Result<Target, ClientError> {
    let mut parsed = url::Url::parse(url)
        .map_err(|e| ClientError::Usage(format!("'{url}' is not a URL: {e}")))?;
    if parsed.scheme() != "wss" {
        return Err(ClientError::Usage(format!(
            "'{url}': the scheme must be wss:// (remember to single-quote $hc in shells)"
        )));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| ClientError::Usage(format!("'{url}' has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let name = {
        let mut segments = parsed.path_segments().into_iter().flatten();
        match (segments.next(), segments.next()) {
            (Some("$hc" | "%24hc"), Some(name)) if !name.is_empty() => name.to_string(),
            _ => {
                return Err(ClientError::Usage(format!(
                    "'{url}' is not a gate URL; expected wss://HOST[:PORT]/$hc/NAME \
                     (in a shell or ssh_config, single-quote it so that $hc is not expanded)"
                )));
            }
        }
    };
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| !matches!(k.as_ref(), "sb-hc-action" | "sb-hc-id" | "port"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut q = parsed.query_pairs_mut();
        q.clear();
        q.append_pair("sb-hc-action", "connect");
        q.append_pair("sb-hc-id", id);
        q.append_pair("port", &port.to_string());
        for (k, v) in &kept {
            q.append_pair(k, v);
        }
    }
    let path_and_query = format!("{}?{}", parsed.path(), parsed.query().unwrap_or(""));
    Ok(Target {
        host,
        port: parsed.port().unwrap_or(443),
        name,
        path_and_query,
    })
}

/// The agent's relay information, decoded: the URL and token it implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayInfo {
    /// `wss://{namespaceName}.{namespaceNameSuffix}/$hc/{hybridConnectionName}`.
    pub url: String,
    /// `accessKey`.
    pub token: String,
}

/// Decodes the base64 JSON relay information (`-r FILE`, `SSHPROXY_RELAY_INFO`); raw JSON is
/// accepted too.
pub fn parse_relay_info(text: &str, now: u64) -> Result<RelayInfo, ClientError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Relay {
        namespace_name: String,
        namespace_name_suffix: String,
        hybrid_connection_name: String,
        access_key: String,
        #[serde(default)]
        expires_on: Option<serde_json::Value>,
    }
    #[derive(serde::Deserialize)]
    struct Info {
        relay: Relay,
    }
    let bad = |why: String| ClientError::Usage(format!("relay information: {why}"));
    let text = text.trim();
    let json = if text.starts_with('{') {
        text.as_bytes().to_vec()
    } else {
        let compact: String = text.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(compact.as_bytes()))
            .map_err(|e| bad(format!("not base64 ({e})")))?
    };
    let info: Info = serde_json::from_slice(&json).map_err(|e| {
        bad(format!(
            "not the expected JSON ({e}); expected {{\"relay\":{{\"namespaceName\",\"namespaceNameSuffix\",\"hybridConnectionName\",\"accessKey\",...}}}}"
        ))
    })?;
    let r = info.relay;
    let expiry = match &r.expires_on {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    if let Some(expiry) = expiry
        && expiry <= now
    {
        return Err(bad(format!(
            "it expired at {expiry} (Unix time; now {now}); fetch fresh relay information"
        )));
    }
    Ok(RelayInfo {
        url: format!(
            "wss://{}.{}/$hc/{}",
            r.namespace_name, r.namespace_name_suffix, r.hybrid_connection_name
        ),
        token: r.access_key,
    })
}

/// Reads a token file: the token is its content, surrounding whitespace removed.
pub fn read_token_file(path: &PathBuf) -> Result<String, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ClientError::Usage(format!("cannot read token file {}: {e}", path.display()))
    })?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(ClientError::Usage(format!(
            "token file {} is empty",
            path.display()
        )));
    }
    Ok(token)
}

/// A WebSocket connection to a gate, after `101`.
pub struct Tunnel {
    io: TlsStream<ReadAhead<TcpStream>>,
    /// Copied out of hyper's read buffer, so that the session does not hold that buffer.
    leftover: Vec<u8>,
    /// The gate name.
    pub name: String,
}

/// Where the token comes from. A file is read again for every tunnel, so that a long-running
/// `forward` picks up a renewed token.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// No token.
    None,
    /// Given on the command line, in the environment or in relay information.
    Literal(String),
    /// `--token-file`.
    File(PathBuf),
}

impl TokenSource {
    /// The token now.
    pub fn read(&self) -> Result<Option<String>, ClientError> {
        match self {
            TokenSource::None => Ok(None),
            TokenSource::Literal(t) => Ok(Some(t.clone())),
            TokenSource::File(path) => read_token_file(path).map(Some),
        }
    }
}

/// Opens tunnels to one gate URL and port; the TLS configuration is built once.
pub struct Connector {
    opts: ConnectOptions,
    tls: Arc<rustls::ClientConfig>,
}

impl Connector {
    /// Checks the URL and builds the TLS configuration.
    pub fn new(opts: ConnectOptions) -> Result<Connector, ClientError> {
        target(&opts.url, opts.port, "check")?;
        let tls = crate::transport::tls::client_config(&opts.trust)
            .map_err(|e| ClientError::Usage(e.to_string()))?;
        Ok(Connector { opts, tls })
    }

    /// The gate name in the URL.
    pub fn name(&self) -> String {
        target(&self.opts.url, self.opts.port, "-")
            .map(|t| t.name)
            .unwrap_or_default()
    }

    /// Opens a tunnel: TCP (through the proxy when one applies), TLS, the upgrade request.
    /// A refusal is a [`ClientError::Refused`].
    pub async fn open(&self, token: Option<&str>) -> Result<Tunnel, ClientError> {
        let id = uuid::Uuid::new_v4().to_string();
        let target = target(&self.opts.url, self.opts.port, &id)?;
        self.open_target(&target, token).await
    }

    /// Opens a WebSocket to an exact address (a relay's accept or reject address).
    pub async fn open_target(
        &self,
        target: &Target,
        token: Option<&str>,
    ) -> Result<Tunnel, ClientError> {
        let deadline = tokio::time::Instant::now() + self.opts.connect_timeout;
        handshake(target, self.tls.clone(), &self.opts, token, deadline).await
    }
}

/// Each phase runs under what is left of the one `--connect-timeout` deadline.
async fn handshake(
    target: &Target,
    tls_config: Arc<rustls::ClientConfig>,
    opts: &ConnectOptions,
    token: Option<&str>,
    deadline: tokio::time::Instant,
) -> Result<Tunnel, ClientError> {
    let addr = format!("{}:{}", target.host, target.port);
    let network = |error: String| ClientError::Network {
        target: addr.clone(),
        error,
    };
    let timed_out = |t: TimedOut| {
        network(format!(
            "{} did not finish within {:?} (--connect-timeout); check the host, port and any firewall",
            t.phase, opts.connect_timeout
        ))
    };
    let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
    let tcp = match opts.proxy.as_ref().filter(|p| p.applies_to(&target.host)) {
        Some(proxy) => within(
            "connecting through the proxy",
            left(),
            proxy.connect(&target.host, target.port),
        )
        .await
        .map_err(timed_out)?
        .map_err(|e| network(e.to_string()))?,
        None => within(
            "connecting",
            left(),
            TcpStream::connect((target.host.as_str(), target.port)),
        )
        .await
        .map_err(timed_out)?
        .map_err(|e| network(e.to_string()))?,
    };
    let _ = tcp.set_nodelay(true);
    let server_name =
        rustls::pki_types::ServerName::try_from(target.host.clone()).map_err(|e| {
            ClientError::Usage(format!("'{}' is not a valid TLS name: {e}", target.host))
        })?;
    let tls = within(
        "the TLS handshake",
        left(),
        crate::transport::tls::connect(TlsConnector::from(tls_config), server_name, tcp),
    )
    .await
    .map_err(timed_out)?
    .map_err(|e| match tls_hint(&e) {
        Some(hint) => ClientError::Tls {
            host: target.host.clone(),
            error: e.to_string(),
            hint,
        },
        // No TLS error inside: the connection itself failed (reset, closed) mid-handshake.
        None => network(format!(
            "the connection ended during the TLS handshake: {e}"
        )),
    })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| network(e.to_string()))?;
    let ws_phase = "the WebSocket handshake";
    let conn_task = tokio::spawn(conn.with_upgrades());
    let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
    let host_header = if target.port == 443 {
        target.host.clone()
    } else if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let mut request = Request::get(&target.path_and_query)
        .header(header::HOST, host_header)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, &key)
        .header(
            header::USER_AGENT,
            concat!("arcgate/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(token) = token {
        request = request.header(crate::hc::request::SB_AUTH_HEADER, token);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| ClientError::Usage(format!("cannot build the request: {e}")))?;
    // Under the deadline too: an endpoint that completes TLS and never answers the upgrade
    // must not hold `connect`, a `forward` tunnel or a relayed session for ever.
    let response = within(ws_phase, left(), sender.send_request(request))
        .await
        .map_err(|t| {
            conn_task.abort();
            timed_out(t)
        })?
        .map_err(|e| {
            network(format!(
                "the gate closed the connection during the handshake: {e}"
            ))
        })?;
    let status = response.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        let reason = response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
            .or_else(|| status.canonical_reason().map(str::to_string))
            .unwrap_or_default();
        // The body explains a 403; bounded so a hostile server cannot make us buffer much.
        let body = within(
            ws_phase,
            left(),
            Limited::new(response.into_body(), 8192).collect(),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .map(|b| b.to_bytes())
        .unwrap_or_default();
        conn_task.abort();
        return Err(ClientError::Refused {
            name: target.name.clone(),
            status: status.as_u16(),
            reason,
            detail: refusal_detail(status, &body),
        });
    }
    let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
    if response
        .headers()
        .get(header::SEC_WEBSOCKET_ACCEPT)
        .map(|v| v.as_bytes())
        != Some(expected.as_bytes())
    {
        return Err(ClientError::Protocol(
            "the server answered 101 without a valid Sec-WebSocket-Accept; it is not an arcgate gate"
                .into(),
        ));
    }
    let upgraded = within(ws_phase, left(), hyper::upgrade::on(response))
        .await
        .map_err(timed_out)?
        .map_err(|e| network(format!("upgrade failed: {e}")))?;
    let parts = upgraded
        .downcast::<TokioIo<TlsStream<ReadAhead<TcpStream>>>>()
        .map_err(|_| ClientError::Protocol("unexpected connection type after upgrade".into()))?;
    Ok(Tunnel {
        io: parts.io.into_inner(),
        leftover: parts.read_buf.to_vec(),
        name: target.name.clone(),
    })
}

/// What to check for a TLS failure; `None` when the error is not TLS's but the connection's.
fn tls_hint(e: &std::io::Error) -> Option<&'static str> {
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
            "the gate's certificate is not signed by a CA you trust; pass its CA with --ca FILE"
        }
        Some(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the certificate is not valid for this host name; connect with a name it was issued for"
        }
        Some(C::Expired | C::ExpiredContext { .. }) => "the gate's certificate has expired",
        Some(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "the gate's certificate is not valid yet; check this machine's clock"
        }
        Some(_) => "the gate's certificate was rejected",
        None => "check that the port speaks TLS (it may be plain HTTP or another service)",
    })
}

fn refusal_detail(status: StatusCode, body: &[u8]) -> Option<String> {
    if status == StatusCode::FORBIDDEN
        && let Ok(json) = serde_json::from_slice::<serde_json::Value>(body)
    {
        if let Some(detail) = json.get("detail").and_then(|d| d.as_str()) {
            return Some(detail.to_string());
        }
        if let Some(reason) = json.get("reason").and_then(|r| r.as_str()) {
            return Some(reason.to_string());
        }
    }
    None
}

impl Tunnel {
    /// The TLS stream and any bytes that arrived with the `101`.
    pub fn into_parts(self) -> (TlsStream<ReadAhead<TcpStream>>, Vec<u8>) {
        (self.io, self.leftover)
    }

    /// Runs the session between the tunnel and a local reader/writer until it ends, or until
    /// `exiting` resolves: then it closes the session in order (Close 1000, TLS close_notify)
    /// and returns `Ok`.
    pub async fn run<R, W, X>(
        self,
        local_r: R,
        local_w: W,
        ping_interval: Option<Duration>,
        exiting: X,
    ) -> Result<(), ClientError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
        X: std::future::Future<Output = ()>,
    {
        let cfg = BridgeConfig {
            role: crate::transport::ws::Role::Client,
            peer_close_ends_session: true,
            ping_interval,
            missed_pongs: 3,
            idle_timeout: None,
            max_frame: 1 << 20,
            buf_size: crate::transport::readahead::AHEAD,
            // stdin ending is a half-close: keep reading until the gate closes.
            close_timeout: None,
        };
        let counters = Counters::default();
        let outcome = bridge::run(
            self.io,
            &self.leftover,
            local_r,
            local_w,
            &cfg,
            Box::pin(async move {
                exiting.await;
                bridge::Stop::Exiting
            }),
            &counters,
        )
        .await;
        let name = &self.name;
        match (&outcome.closed_by, &outcome.received) {
            (ClosedBy::Stopped(bridge::Stop::Exiting), _) => Ok(()),
            (ClosedBy::Peer | ClosedBy::Local, Some(frame))
                if frame.code == close::NORMAL || frame.code == 1005 =>
            {
                Ok(())
            }
            (_, Some(frame)) => {
                let why = match (frame.code, frame.reason.as_str()) {
                    (close::POLICY, _) => "the host's policy no longer allows this session",
                    (close::GOING_AWAY, "idle timeout") => {
                        "no data either way for the gate's --idle-timeout"
                    }
                    (close::GOING_AWAY, _) => "the gate is shutting down",
                    (close::INTERNAL, _) => "the gate lost the connection to the local service",
                    _ => "the gate ended the session",
                };
                Err(ClientError::SessionLost(format!(
                    "{name} closed the session: {} {} ({why})",
                    frame.code, frame.reason
                )))
            }
            (ClosedBy::PingTimeout, None) => Err(ClientError::SessionLost(format!(
                "{name} stopped answering pings; the connection is gone"
            ))),
            (other, None) => Err(ClientError::SessionLost(format!(
                "the connection to {name} was lost: {}",
                match other {
                    ClosedBy::ConnectionLost(e)
                    | ClosedBy::PeerError(e)
                    | ClosedBy::LocalError(e) => e.clone(),
                    _ => "it ended before the gate closed the session".to_string(),
                }
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = target("wss://gate.example/$hc/myhost", 22, "id1").unwrap();
        assert_eq!(t.host, "gate.example");
        assert_eq!(t.port, 443);
        assert_eq!(t.name, "myhost");
        assert_eq!(
            t.path_and_query,
            "/$hc/myhost?sb-hc-action=connect&sb-hc-id=id1&port=22"
        );
        let t = target("wss://[::1]:8443/$hc/h/v2?port=9&x=1", 3389, "i").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 8443));
        assert_eq!(
            t.path_and_query,
            "/$hc/h/v2?sb-hc-action=connect&sb-hc-id=i&port=3389&x=1"
        );
        for bad in [
            "https://h/$hc/n",
            "wss://h/",
            "wss://h/hc/n",
            "not a url",
            "wss://h//n",
        ] {
            assert!(
                matches!(target(bad, 22, "i"), Err(ClientError::Usage(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn relay_info_in_the_agents_form() {
        let json = r#"{"relay":{"namespaceName":"ns","namespaceNameSuffix":"servicebus.example","hybridConnectionName":"hc1","accessKey":"SharedAccessSignature sr=x","expiresOn":2000000000,"serviceConfigurationToken":"t"}}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(json);
        let info = parse_relay_info(&b64, 1_900_000_000).unwrap();
        assert_eq!(info.url, "wss://ns.servicebus.example/$hc/hc1");
        assert_eq!(info.token, "SharedAccessSignature sr=x");
        assert_eq!(parse_relay_info(json, 0).unwrap(), info);
        let err = parse_relay_info(&b64, 2_100_000_000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expired"), "{err}");
        assert!(parse_relay_info("!!!", 0).is_err());
    }

    #[test]
    fn refusal_lines_and_exit_codes() {
        let e = ClientError::Refused {
            name: "myhost".into(),
            status: 403,
            reason: "connection not allowed".into(),
            detail: Some("port 22 is not in incomingconnections.ports on the host".into()),
        };
        assert_eq!(
            e.to_string(),
            "myhost refused the connection: 403 connection not allowed (port 22 is not in incomingconnections.ports on the host)"
        );
        assert_eq!(e.exit_code(), exit::FORBIDDEN);
        let lines = e.json_lines("wss://g/$hc/myhost");
        let fatal: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(fatal["level"], "fatal");
        assert_eq!(
            fatal["msg"],
            "sshproxy: error connecting to the address: 403 connection not allowed. websocket: bad handshake"
        );
    }
}
