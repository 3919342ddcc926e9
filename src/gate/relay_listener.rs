//! Relay mode, the gate's side (SPEC §7): the gate dials *out* to a Hybrid Connections relay
//! as a listener, so the host needs no inbound port.
//!
//! Owns the control channel (listen, the shared keepalive rule, `renewToken` before expiry,
//! reconnect with the backoff schedule plus jitter) and each `accept` message: the id and
//! port checked by the same rules as a direct request (`hc::request`), the same admission
//! core as direct mode (`Gate::admit_relayed`), then either a rendezvous WebSocket to the
//! accept address bridged exactly like a direct session, or a rejection carrying the status
//! line direct mode would have answered. Every outbound connection goes through the shared
//! dialer (`transport::dial`), which honours `proxy.url` and `proxy.bypass`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role as WsRole;
use tracing::Instrument;

use crate::config::{Port, parse_port, shorten};
use crate::gate::Gate;
use crate::gate::admit::Credential;
use crate::gate::session::SessionMeta;
use crate::hc::control::{Accept, AcceptMessage, RenewToken, RenewTokenMessage, reject_address};
use crate::hc::request::{DEFAULT_PORT, GATE_TOKEN_HEADER, RequestError, check_id};
use crate::hc::url::{Endpoint, GateUrl, UrlError};
use crate::state::{TokenFileError, read_token_file};
use crate::transport::bridge::BridgeConfig;
use crate::transport::deadline::unix_now;
use crate::transport::dial::{ClientStream, Credentials, DialError, Dialer};
use crate::transport::keepalive::{Beat, Keepalive};
use crate::transport::proxy::{Proxy, ProxyError};
use crate::transport::tls::{ClientTrust, TlsError};

/// Reconnect delays (SPEC §7): 0, 1, 2, 5, 10, then every 30 s, each plus up to 25% jitter.
const BACKOFF: [u64; 6] = [0, 1, 2, 5, 10, 30];
/// A control channel that lived this long was healthy: the next failure starts the
/// schedule again from 0.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// Attempts whose listen credentials all failed, before any succeeded, after which `serve`
/// stops with the reason: with the backoff's 0, 1, 2 s, about 3 s.
const CREDENTIAL_ATTEMPTS: usize = 3;
/// Unanswered pings after which the relay is taken for gone and the channel reconnected.
const MISSED_PINGS: u32 = 3;

/// Where the listen token comes from.
#[derive(Debug, Clone)]
pub enum ListenToken {
    /// A file holding a token (re-read at each connect; a change is sent as `renewToken`).
    File(PathBuf),
    /// Minted from this key in the gate's keys file for this long, renewed at 80% of it.
    Key(String, Duration),
}

/// What relay mode needs.
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    /// `wss://RELAY/$hc/NAME`.
    pub url: String,
    /// The listen token's source.
    pub token: ListenToken,
    /// How to check the relay's certificate.
    pub trust: ClientTrust,
    /// Connect deadline for the control channel and each rendezvous.
    pub connect_timeout: Duration,
    /// Ping the relay after this long without hearing from it.
    pub ping_interval: Duration,
    /// Admit only senders whose gate token (signed with a key from the gate's own keys file)
    /// passes, whatever the relay says.
    pub require_gate_token: bool,
}

/// Why attaching to the relay failed. Retried on the backoff schedule, except that
/// credentials that never worked end relay mode ([`AttachError::is_credential`]).
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The listen token file cannot be used.
    #[error(transparent)]
    TokenFile(#[from] TokenFileError),
    /// The keys file cannot be used.
    #[error("the keys file is unusable: {0}")]
    Keys(String),
    /// `--relay-key` names no key.
    #[error(
        "no key named '{0}' in the keys file; add one with the listen right, or pass --relay-token-file"
    )]
    NoKey(String),
    /// `--relay-key` names a key without the listen right.
    #[error(
        "key '{0}' lacks the listen right; add \"listen\" to its rights in the keys file (a key needs it to attach a gate to a relay)"
    )]
    NotListen(String),
    /// The relay refused the listen token.
    #[error(
        "the relay refused the listen token: {0}; check that the relay's keys file holds the key with the listen right for this name"
    )]
    Refused(DialError),
    /// `proxy.url` cannot be used.
    #[error("proxy.url cannot be used: {0}")]
    Proxy(#[from] ProxyError),
    /// The relay's TLS settings cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Connecting to the relay failed.
    #[error(transparent)]
    Dial(DialError),
    /// The `--relay` URL is not one.
    #[error("bad --relay URL: {0}")]
    Url(#[from] UrlError),
}

impl From<DialError> for AttachError {
    fn from(e: DialError) -> AttachError {
        match &e {
            // A 403 that is the relay's listener limit says nothing about the token.
            DialError::Refused { status: 401, .. } => AttachError::Refused(e),
            DialError::Refused {
                status: 403,
                reason,
                ..
            } if !reason.contains("too many listeners") => AttachError::Refused(e),
            _ => AttachError::Dial(e),
        }
    }
}

impl AttachError {
    /// Whether it is about the listen credentials (the token, its key, the relay's verdict
    /// on it), as opposed to the network or the relay's availability.
    pub fn is_credential(&self) -> bool {
        matches!(
            self,
            AttachError::TokenFile(_)
                | AttachError::Keys(_)
                | AttachError::NoKey(_)
                | AttachError::NotListen(_)
                | AttachError::Refused(_)
                | AttachError::Url(_)
        )
    }
}

/// How a control channel ended.
enum Done {
    Shutdown,
    Lost(String),
}

impl ListenerOptions {
    /// The listen token now, and when to renew it (minted tokens only).
    fn token(
        &self,
        gate: &Gate,
        relay: &GateUrl,
    ) -> Result<(String, Option<Duration>), AttachError> {
        match &self.token {
            ListenToken::File(path) => Ok((read_token_file(path)?, None)),
            ListenToken::Key(name, ttl) => {
                let snapshot = gate.snapshot();
                let keys = snapshot
                    .keys
                    .as_ref()
                    .map_err(|e| AttachError::Keys(e.clone()))?;
                let key = keys
                    .get(name)
                    .ok_or_else(|| AttachError::NoKey(name.clone()))?;
                if !key.may(crate::token::Right::Listen) {
                    return Err(AttachError::NotListen(name.clone()));
                }
                let resource = crate::token::resource_for(relay.host(), relay.name());
                let expiry = unix_now() + ttl.as_secs();
                let token = crate::token::mint(&resource, &key.name, key.secret(), expiry);
                Ok((token, Some(*ttl * 4 / 5)))
            }
        }
    }

    /// A dialer honouring the configuration's proxy settings as they are now.
    fn dialer(&self, gate: &Gate) -> Result<Dialer, AttachError> {
        let snapshot = gate.snapshot();
        let proxy = match snapshot.config.as_ref().ok() {
            Some(config) => match &config.proxy_url {
                Some(url) => Some(Proxy::new(url, config.proxy_bypass.clone())?),
                None => None,
            },
            None => None,
        };
        Ok(Dialer::new(&self.trust, proxy, self.connect_timeout)?)
    }
}

fn jittered(secs: u64) -> Duration {
    let base = Duration::from_secs(secs);
    let jitter_ms = rand::random::<u64>() % (secs * 250 + 1);
    base + Duration::from_millis(jitter_ms)
}

/// Checks the listen credentials before `serve` starts: a token file that can be read, or a
/// key that exists and has the listen right.
pub fn check_credentials(gate: &Gate, opts: &ListenerOptions) -> Result<(), AttachError> {
    let relay = GateUrl::parse(&opts.url)?;
    opts.token(gate, &relay).map(|_| ())
}

/// Keeps the gate attached to the relay until `shutdown` resolves. Returns an error only
/// when the listen credentials never worked — the first attachments all failed on them — so
/// that `serve` exits with it instead of retrying for ever; once attached, every failure is
/// retried (a key being rotated at the relay must not stop the gate).
pub async fn run(
    gate: Arc<Gate>,
    opts: ListenerOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AttachError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let relay = GateUrl::parse(&opts.url)?;
    let mut attempt = 0usize;
    let mut ever_attached = false;
    let mut credential_failures = 0usize;
    loop {
        let started = Instant::now();
        match attach(&gate, &opts, &relay, &mut shutdown, &mut ever_attached).await {
            Ok(Done::Shutdown) => return Ok(()),
            Ok(Done::Lost(why)) => {
                tracing::warn!(relay = %opts.url, why = %why, "relay control channel lost; reconnecting")
            }
            // Credentials that failed on every attempt so far (and at least
            // CREDENTIAL_ATTEMPTS times, so that a relay whose keys file is being replaced
            // does not stop a gate that is starting) end relay mode.
            Err(e) if e.is_credential() && !ever_attached => {
                credential_failures += 1;
                if credential_failures >= CREDENTIAL_ATTEMPTS {
                    return Err(e);
                }
                tracing::warn!(relay = %opts.url, error = %e, "cannot attach to the relay; will retry")
            }
            Err(e) => {
                tracing::warn!(relay = %opts.url, error = %e, "cannot attach to the relay; will retry")
            }
        }
        if started.elapsed() >= HEALTHY_AFTER {
            attempt = 0;
        }
        let delay = jittered(BACKOFF[attempt.min(BACKOFF.len() - 1)]);
        attempt += 1;
        tracing::info!(delay = ?delay, attempt, "reconnecting to the relay");
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// One control channel, attached.
struct Channel<'a> {
    gate: &'a Arc<Gate>,
    opts: &'a ListenerOptions,
    relay: &'a GateUrl,
    dialer: Arc<Dialer>,
    ws: WebSocketStream<Box<ClientStream>>,
    /// The token last sent, to notice a token file that changed.
    last_token: String,
}

async fn attach<F: Future<Output = ()> + Unpin>(
    gate: &Arc<Gate>,
    opts: &ListenerOptions,
    relay: &GateUrl,
    shutdown: &mut F,
    ever_attached: &mut bool,
) -> Result<Done, AttachError> {
    let (token, renew_after) = opts.token(gate, relay)?;
    let dialer = opts.dialer(gate)?;
    let listen = relay.listen(&uuid::Uuid::new_v4().to_string());
    let tunnel = dialer.open(&listen, Credentials::token(&token)).await?;
    *ever_attached = true;
    let ws = WebSocketStream::from_partially_read(tunnel.io, tunnel.leftover, WsRole::Client, None)
        .await;
    eprintln!(
        "arcgate: attached to relay {} as listener for '{}'",
        relay.host(),
        relay.name()
    );
    tracing::info!(relay = %opts.url, "relay listener attached");
    let mut channel = Channel {
        gate,
        opts,
        relay,
        dialer: Arc::new(dialer),
        ws,
        last_token: token,
    };
    channel.run(renew_after, shutdown).await
}

impl Channel<'_> {
    async fn run<F: Future<Output = ()> + Unpin>(
        &mut self,
        renew_after: Option<Duration>,
        shutdown: &mut F,
    ) -> Result<Done, AttachError> {
        let mut keepalive = Keepalive::new(self.opts.ping_interval, MISSED_PINGS);
        let mut heard = 0u64;
        let far = Duration::from_secs(86400 * 365);
        let mut renew_at = Instant::now() + renew_after.unwrap_or(far);
        loop {
            let step = tokio::select! {
                () = &mut *shutdown => {
                    let _ = self.ws.close(None).await;
                    return Ok(Done::Shutdown);
                }
                incoming = self.ws.next() => {
                    heard += 1;
                    self.on_message(incoming)
                }
                beat = keepalive.tick(|| heard) => self.on_beat(beat).await,
                () = tokio::time::sleep_until(renew_at), if renew_after.is_some() => {
                    let (token, next) = self.opts.token(self.gate, self.relay)?;
                    renew_at = Instant::now() + next.unwrap_or(far);
                    self.renew(token).await
                }
            };
            if let Some(done) = step {
                return Ok(done);
            }
        }
    }

    /// A message from the relay; `Some` when the channel is over.
    fn on_message(
        &self,
        incoming: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Option<Done> {
        match incoming {
            Some(Ok(Message::Text(text))) => {
                match serde_json::from_str::<AcceptMessage>(&text) {
                    Ok(message) => {
                        let span =
                            tracing::info_span!("relayed", id = %shorten(&message.accept.id));
                        let task = handle_accept(
                            self.gate.clone(),
                            self.dialer.clone(),
                            message.accept,
                            self.opts.require_gate_token,
                        );
                        tokio::spawn(task.instrument(span));
                    }
                    Err(_) => {
                        tracing::warn!(message = %shorten(&text), "unknown control command ignored")
                    }
                }
                None
            }
            Some(Ok(Message::Close(frame))) => {
                Some(Done::Lost(format!("relay closed the channel: {frame:?}")))
            }
            Some(Ok(_)) => None,
            Some(Err(e)) => Some(Done::Lost(e.to_string())),
            None => Some(Done::Lost("connection ended".into())),
        }
    }

    /// A keepalive tick; a token file that changed is sent as a renewal then too.
    async fn on_beat(&mut self, beat: Beat) -> Option<Done> {
        match beat {
            Beat::Gone => return Some(Done::Lost("the relay stopped answering pings".into())),
            Beat::Ping => {
                let ping = Message::Ping(bytes::Bytes::from_static(b"arcgate"));
                if let Err(e) = self.ws.send(ping).await {
                    return Some(Done::Lost(e.to_string()));
                }
            }
            Beat::Heard => {}
        }
        if let ListenToken::File(_) = self.opts.token
            && let Ok((now, _)) = self.opts.token(self.gate, self.relay)
            && now != self.last_token
        {
            return self.renew(now).await;
        }
        None
    }

    /// Sends `renewToken`.
    async fn renew(&mut self, token: String) -> Option<Done> {
        self.last_token.clone_from(&token);
        let renew = RenewTokenMessage {
            renew_token: RenewToken { token },
        };
        let text = serde_json::to_string(&renew).expect("plain data serializes");
        if let Err(e) = self.ws.send(Message::text(text)).await {
            return Some(Done::Lost(e.to_string()));
        }
        tracing::info!("listen token renewed");
        None
    }
}

/// The id and port an accept message announces, checked by the direct request's rules.
fn announced(accept: &Accept) -> Result<(String, Port), RequestError> {
    check_id(&accept.id)?;
    let port = Endpoint::exact(&accept.address)
        .ok()
        .and_then(|a| a.param("port"));
    let port = match port {
        None => Port::new(DEFAULT_PORT).expect("22 is non-zero"),
        Some(p) => parse_port(&p).map_err(|why| RequestError::BadPort {
            given: shorten(&p),
            why,
        })?,
    };
    Ok((accept.id.clone(), port))
}

/// The sender's gate token, from `connectHeaders` (header names in any case).
fn gate_token(accept: &Accept) -> Option<&str> {
    accept
        .connect_headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(GATE_TOKEN_HEADER))
        .map(|(_, token)| token.as_str())
}

/// Decides one relayed connection and accepts or rejects it at the relay.
async fn handle_accept(gate: Arc<Gate>, dialer: Arc<Dialer>, accept: Accept, required: bool) {
    let (id, port) = match announced(&accept) {
        Ok(announced) => announced,
        Err(e) => {
            reject(&dialer, &accept.address, 400, &e.to_string()).await;
            return;
        }
    };
    let peer: SocketAddr = accept
        .remote_endpoint
        .as_ref()
        .and_then(|r| r.address.parse().ok().map(|ip| SocketAddr::new(ip, r.port)))
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let credential = Credential::Relayed {
        gate_token: gate_token(&accept),
        required,
    };
    let admitted = match gate.admit_relayed(&id, port, peer, credential).await {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let (status, reason) = refusal.status_line();
            reject(&dialer, &accept.address, status.as_u16(), &reason).await;
            return;
        }
    };
    // The dials are boxed: inline, their 6 KiB of state would size this task for the whole
    // session (an async function is as large as its largest wait), where the bridge needs 3.
    let rendezvous = match Endpoint::exact(&accept.address) {
        Ok(address) => Box::pin(dialer.open(&address, Credentials::NONE))
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(format!("unusable accept address: {e}")),
    };
    let tunnel = match rendezvous {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "rendezvous with the relay failed");
            return;
        }
    };
    // We opened the rendezvous, so we mask like a client; but we are the service's side, so
    // a sender's Close is a half-close exactly as in direct mode.
    let cfg = BridgeConfig {
        role: crate::transport::ws::Role::Client,
        peer_close_ends_session: false,
        ..gate.bridge_config().clone()
    };
    let meta = SessionMeta {
        id,
        name: gate.name().to_string(),
        port,
    };
    // Boxed (by the dialer) for the reason given at `transport::serve::take_stream`.
    gate.bridge_session(tunnel.io, &tunnel.leftover, &cfg, meta, admitted)
        .await;
}

/// Rejects at the relay: a WebSocket handshake to the accept address with the status; the
/// relay answers `410 Gone` and passes the status line to the sender.
async fn reject(dialer: &Dialer, address: &str, status: u16, description: &str) {
    let address = reject_address(address, status, description);
    let result = match Endpoint::exact(&address) {
        // Boxed for the reason given in `handle_accept`.
        Ok(target) => Box::pin(dialer.open(&target, Credentials::NONE))
            .await
            .map(|_| ()),
        Err(e) => {
            tracing::warn!(error = %e, "unusable accept address");
            return;
        }
    };
    match result {
        Err(DialError::Refused { status: 410, .. }) => {
            tracing::debug!(status, description, "rejection delivered");
        }
        Ok(()) => tracing::warn!("the relay upgraded a rejection instead of answering 410"),
        Err(e) => tracing::warn!(error = %e, "could not deliver the rejection to the relay"),
    }
}
