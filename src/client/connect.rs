//! `arcgate connect`'s and `forward`'s tunnels: a gate URL and port, a token source, the
//! shared dialer, and the session between a tunnel and a local reader/writer — turning how a
//! session ended into success or one [`ClientError`] a person understands.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::client::ClientError;
use crate::hc::url::GateUrl;
use crate::transport::bridge::{self, BridgeConfig, ClosedBy, Counters};
use crate::transport::dial::{self, Credentials, Dialer};
use crate::transport::proxy::Proxy;
use crate::transport::tls::ClientTrust;
use crate::transport::ws::close;

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
    /// How long to wait for the gate's answer when it holds the session for its
    /// administrator's approval (`None`: the handshake deadline).
    pub approval_wait: Option<Duration>,
    /// Through a relay: a token for the gate behind it (signed with a key from the gate's
    /// keys file), sent beside the relay's token and checked by the gate itself.
    pub gate_token: TokenSource,
}

/// Reads a token file: the token is its content, surrounding whitespace removed.
pub fn read_token_file(path: &std::path::Path) -> Result<String, ClientError> {
    Ok(crate::state::read_token_file(path)?)
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
#[derive(Debug)]
pub struct Connector {
    url: GateUrl,
    port: u16,
    dialer: Dialer,
    gate_token: TokenSource,
}

impl Connector {
    /// Checks the URL and builds the TLS configuration.
    pub fn new(opts: ConnectOptions) -> Result<Connector, ClientError> {
        let url = GateUrl::parse(&opts.url)?;
        let dialer = Dialer::new(&opts.trust, opts.proxy, opts.connect_timeout)?
            .waiting_for_approval(opts.approval_wait);
        // Fail now, not at the first tunnel, if the file is unreadable.
        opts.gate_token.read()?;
        Ok(Connector {
            url,
            port: opts.port,
            dialer,
            gate_token: opts.gate_token,
        })
    }

    /// The gate name in the URL.
    pub fn name(&self) -> &str {
        self.url.name()
    }

    /// Opens a tunnel: TCP (through the proxy when one applies), TLS, the upgrade request
    /// with `token` (and the gate token, read now, when there is one). A refusal is a
    /// [`ClientError::Refused`].
    pub async fn open(&self, token: Option<&str>) -> Result<Tunnel, ClientError> {
        let id = uuid::Uuid::new_v4().to_string();
        let gate_token = self.gate_token.read()?;
        // A token sure to be refused is said so in words, not sent for a bare 401. One this
        // client cannot read (another relay's format, say) is sent: the server decides.
        let now = crate::transport::deadline::unix_now();
        let name = percent_encoding::percent_decode_str(self.name()).decode_utf8_lossy();
        let checks = [
            ("token", token, Some(name.as_ref())),
            ("gate token", gate_token.as_deref(), None),
        ];
        for (which, held, name) in checks {
            let Some(held) = held else { continue };
            match crate::token::precheck(held, name, now) {
                Ok(()) => {}
                Err(problem) if problem.is_malformed() => {
                    tracing::warn!(%problem, "{which} not checked before sending it")
                }
                Err(problem) => return Err(ClientError::Token { which, problem }),
            }
        }
        let credentials = Credentials {
            token,
            gate_token: gate_token.as_deref(),
        };
        let tunnel = self
            .dialer
            .open(&self.url.connect(self.port, &id), credentials)
            .await
            .map_err(|e| ClientError::dialling(self.name(), e))?;
        Ok(Tunnel {
            inner: tunnel,
            name: self.name().to_string(),
        })
    }
}

/// A WebSocket connection to a gate, after `101`.
#[derive(Debug)]
pub struct Tunnel {
    inner: dial::Tunnel,
    /// The gate name.
    pub name: String,
}

impl Tunnel {
    /// Ends an unused tunnel in order: Close 1000, then TLS close_notify (`forward`'s check at
    /// start: the gate records an orderly end by the client, not a lost connection).
    pub async fn close(self) -> Result<(), ClientError> {
        let mut writer = crate::transport::ws::FrameWriter::new(
            self.inner.io,
            crate::transport::ws::Role::Client,
        );
        let closed = async {
            writer
                .send_close(crate::transport::ws::close::NORMAL, "")
                .await?;
            writer.shutdown().await
        };
        // A gate that takes no Close within 5 s is left to notice the connection's end.
        let _ = tokio::time::timeout(Duration::from_secs(5), closed).await;
        Ok(())
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
            buf_size: crate::transport::CHUNK,
            // stdin ending is a half-close: keep reading until the gate closes.
            close_timeout: None,
        };
        let counters = Counters::default();
        let outcome = bridge::run(
            self.inner.io,
            &self.inner.leftover,
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
                    (close::POLICY, "session time limit reached") => {
                        "the host limits how long a session may stay open \
                         (incomingconnections.maxsessionduration)"
                    }
                    (close::POLICY, "access window closed") => {
                        "the host enabled incoming connections only until a moment that has come \
                         (incomingconnections.enableduntil)"
                    }
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
