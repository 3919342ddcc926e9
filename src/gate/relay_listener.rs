//! Relay mode, the gate's side (SPEC §7): the gate dials *out* to a Hybrid Connections relay
//! as a listener, so the host needs no inbound port.
//!
//! Owns the control channel (listen, pings, `renewToken` before expiry, reconnect with the
//! backoff schedule plus jitter) and each `accept` message: the same policy, limits and local
//! dial as direct mode (`Gate::admit_relayed`), then either a rendezvous WebSocket to the
//! accept address bridged exactly like a direct session, or a rejection carrying the status
//! line direct mode would have answered. The outbound connections honour `proxy.url` and
//! `proxy.bypass`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role as WsRole;
use tracing::Instrument;

use crate::client::{ClientError, ConnectOptions, Connector, Target};
use crate::config::{Port, parse_port};
use crate::gate::server::{Gate, SessionMeta};
use crate::relay::{Accept, AcceptMessage, RenewToken, RenewTokenMessage, reject_address};
use crate::transport::bridge::BridgeConfig;
use crate::transport::proxy::Proxy;
use crate::transport::tls::ClientTrust;

/// Reconnect delays (SPEC §7): 0, 1, 2, 5, 10, then every 30 s, each plus up to 25% jitter.
const BACKOFF: [u64; 6] = [0, 1, 2, 5, 10, 30];
/// A control channel that lived this long was healthy: the next failure starts the
/// schedule again from 0.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

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
    /// Ping the relay this often.
    pub ping_interval: Duration,
}

struct Relayed {
    host: String,
    name: String,
}

fn relay_target(url: &str) -> Result<Relayed, ClientError> {
    let t = crate::client::target(url, 22, "-")?;
    Ok(Relayed {
        host: t.host,
        name: t.name,
    })
}

impl ListenerOptions {
    fn token(&self, gate: &Gate, relay: &Relayed) -> Result<(String, Option<Duration>), String> {
        match &self.token {
            ListenToken::File(path) => crate::client::read_token_file(path)
                .map(|t| (t, None))
                .map_err(|e| e.to_string()),
            ListenToken::Key(name, ttl) => {
                let snapshot = gate.snapshot();
                let keys = snapshot.keys.as_ref().map_err(Clone::clone)?;
                let key = keys
                    .get(name)
                    .ok_or_else(|| format!("no key named '{name}' in the keys file"))?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let resource = crate::token::resource_for(&relay.host, &relay.name);
                let token =
                    crate::token::mint(&resource, &key.name, key.secret(), now + ttl.as_secs());
                Ok((token, Some(*ttl * 4 / 5)))
            }
        }
    }

    /// A connector honouring the configuration's proxy settings as they are now.
    fn connector(&self, gate: &Gate) -> Result<Connector, ClientError> {
        let snapshot = gate.snapshot();
        let proxy = match snapshot
            .config
            .as_ref()
            .ok()
            .and_then(|c| c.proxy_url.clone())
        {
            None => None,
            Some(url) => {
                let config = snapshot.config.as_ref().expect("checked above");
                Some(
                    Proxy::new(&url, config.proxy_bypass.clone())
                        .map_err(|e| ClientError::Usage(e.to_string()))?,
                )
            }
        };
        Connector::new(ConnectOptions {
            url: self.url.clone(),
            port: 22,
            trust: self.trust.clone(),
            proxy,
            connect_timeout: self.connect_timeout,
        })
    }
}

fn jittered(secs: u64) -> Duration {
    let base = Duration::from_secs(secs);
    let jitter_ms = rand::random::<u64>() % (secs * 250 + 1);
    base + Duration::from_millis(jitter_ms)
}

/// Keeps the gate attached to the relay until `shutdown` resolves.
pub async fn run(gate: Arc<Gate>, opts: ListenerOptions, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    let relay = match relay_target(&opts.url) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "relay mode disabled: bad --relay URL");
            return;
        }
    };
    let mut attempt = 0usize;
    loop {
        let started = tokio::time::Instant::now();
        let attached = attach(&gate, &opts, &relay, &mut shutdown).await;
        match attached {
            Ok(Done::Shutdown) => return,
            Ok(Done::Lost(why)) => {
                tracing::warn!(relay = %opts.url, why = %why, "relay control channel lost; reconnecting")
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
            () = &mut shutdown => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

enum Done {
    Shutdown,
    Lost(String),
}

async fn attach<F: Future<Output = ()> + Unpin>(
    gate: &Arc<Gate>,
    opts: &ListenerOptions,
    relay: &Relayed,
    shutdown: &mut F,
) -> Result<Done, String> {
    let (token, renew_after) = opts.token(gate, relay)?;
    let connector = opts.connector(gate).map_err(|e| e.to_string())?;
    let mut url = url::Url::parse(&opts.url).map_err(|e| e.to_string())?;
    url.query_pairs_mut()
        .clear()
        .append_pair("sb-hc-action", "listen")
        .append_pair("sb-hc-id", &uuid::Uuid::new_v4().to_string());
    let target = Target::exact(url.as_str()).map_err(|e| e.to_string())?;
    let tunnel = connector
        .open_target(&target, Some(&token))
        .await
        .map_err(|e| e.to_string())?;
    let (io, leftover) = tunnel.into_parts();
    let mut ws = WebSocketStream::from_partially_read(io, leftover, WsRole::Client, None).await;
    eprintln!(
        "arcgate: attached to relay {} as listener for '{}'",
        relay.host, relay.name
    );
    tracing::info!(relay = %opts.url, "relay listener attached");
    let connector = Arc::new(connector);
    let mut ping = tokio::time::interval(opts.ping_interval);
    ping.tick().await;
    let mut unanswered = 0u32;
    let far = Duration::from_secs(86400 * 365);
    let mut renew_at = tokio::time::Instant::now() + renew_after.unwrap_or(far);
    let mut last_file_token = token;
    loop {
        tokio::select! {
            () = &mut *shutdown => {
                let _ = ws.close(None).await;
                return Ok(Done::Shutdown);
            }
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<AcceptMessage>(&text) {
                    Ok(message) => {
                        let gate = gate.clone();
                        let connector = connector.clone();
                        let span = tracing::info_span!("relayed", id = %crate::config::shorten(&message.accept.id));
                        tokio::spawn(handle_accept(gate, connector, message.accept).instrument(span));
                    }
                    Err(_) => tracing::warn!(message = %crate::config::shorten(&text), "unknown control command ignored"),
                },
                Some(Ok(Message::Close(frame))) => return Ok(Done::Lost(format!("relay closed the channel: {frame:?}"))),
                Some(Ok(_)) => unanswered = 0,
                Some(Err(e)) => return Ok(Done::Lost(e.to_string())),
                None => return Ok(Done::Lost("connection ended".into())),
            },
            _ = ping.tick() => {
                unanswered += 1;
                if unanswered > 3 {
                    return Ok(Done::Lost("the relay stopped answering pings".into()));
                }
                if let Err(e) = ws.send(Message::Ping(bytes::Bytes::from_static(b"arcgate"))).await {
                    return Ok(Done::Lost(e.to_string()));
                }
                // A token file that changed is sent as a renewal.
                if let ListenToken::File(_) = opts.token
                    && let Ok((now, _)) = opts.token(gate, relay)
                    && now != last_file_token
                {
                    last_file_token = now.clone();
                    let renew = RenewTokenMessage { renew_token: RenewToken { token: now } };
                    let text = serde_json::to_string(&renew).expect("plain data serializes");
                    if let Err(e) = ws.send(Message::text(text)).await {
                        return Ok(Done::Lost(e.to_string()));
                    }
                }
            }
            () = tokio::time::sleep_until(renew_at), if renew_after.is_some() => {
                let (token, next) = opts.token(gate, relay)?;
                let renew = RenewTokenMessage { renew_token: RenewToken { token } };
                let text = serde_json::to_string(&renew).expect("plain data serializes");
                if let Err(e) = ws.send(Message::text(text)).await {
                    return Ok(Done::Lost(e.to_string()));
                }
                tracing::info!("listen token renewed");
                renew_at = tokio::time::Instant::now() + next.unwrap_or(far);
            }
        }
    }
}

/// Decides one relayed connection and accepts or rejects it at the relay.
async fn handle_accept(gate: Arc<Gate>, connector: Arc<Connector>, accept: Accept) {
    let id: String = accept
        .id
        .chars()
        .filter(|c| !crate::config::misleading(*c))
        .take(64)
        .collect();
    let id = if id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        id
    };
    let port_param = url::Url::parse(&accept.address).ok().and_then(|u| {
        u.query_pairs()
            .find(|(k, _)| k == "port")
            .map(|(_, v)| v.into_owned())
    });
    let port: Port = match port_param {
        None => Port::new(22).expect("22 is non-zero"),
        Some(p) => match parse_port(&p) {
            Ok(p) => p,
            Err(why) => {
                reject(
                    &connector,
                    &accept.address,
                    400,
                    &format!("bad port: {why}"),
                )
                .await;
                return;
            }
        },
    };
    let peer: SocketAddr = accept
        .remote_endpoint
        .as_ref()
        .and_then(|r| r.address.parse().ok().map(|ip| SocketAddr::new(ip, r.port)))
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    match gate.admit_relayed(&id, port, peer, "relay").await {
        Err(refusal) => {
            let (status, reason) = refusal.status_line();
            reject(&connector, &accept.address, status.as_u16(), &reason).await;
        }
        Ok((service, slot)) => {
            let target = match Target::exact(&accept.address) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "unusable accept address");
                    return;
                }
            };
            let tunnel = match connector.open_target(&target, None).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "rendezvous with the relay failed");
                    return;
                }
            };
            let (io, leftover) = tunnel.into_parts();
            // We opened the rendezvous, so we mask like a client; but we are the service's
            // side, so a sender's Close is a half-close exactly as in direct mode.
            let cfg = BridgeConfig {
                role: crate::transport::ws::Role::Client,
                peer_close_ends_session: false,
                ..gate.bridge_config().clone()
            };
            let meta = SessionMeta {
                id,
                name: gate.name().to_string(),
                port,
                key: "relay".into(),
                grant: None,
            };
            // Boxed for the reason given at `server::take_stream`.
            gate.bridge_session(Box::new(io), &leftover, &cfg, meta, service, slot)
                .await;
        }
    }
}

/// Rejects at the relay: a WebSocket handshake to the accept address with the status; the
/// relay answers `410 Gone` and passes the status line to the sender.
async fn reject(connector: &Connector, address: &str, status: u16, description: &str) {
    let address = reject_address(address, status, description);
    let result = match Target::exact(&address) {
        Ok(target) => connector.open_target(&target, None).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Err(ClientError::Refused { status: 410, .. }) => {
            tracing::debug!(status, description, "rejection delivered");
        }
        Ok(()) => tracing::warn!("the relay upgraded a rejection instead of answering 410"),
        Err(e) => tracing::warn!(error = %e, "could not deliver the rejection to the relay"),
    }
}
