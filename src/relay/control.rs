//! Listeners: attaching (`sb-hc-action=listen`, a token with the listen right, at most
//! [`MAX_LISTENERS_PER_NAME`] per name) and each one's control channel — `accept` messages
//! out (each write within a deadline), `renewToken` in, the shared keepalive rule, and the
//! listen key re-checked against every new keys file. A listener that goes away takes its
//! waiting senders' answers with it: they are told at once.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::http::{Request, Response};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role as WsRole};

use super::{ListenerHandle, MAX_LISTENERS_PER_NAME, Refusal, Relay, Stream, upgraded, withdrawn};
use crate::config::shorten;
use crate::hc::answer::switching_protocols;
use crate::hc::control::RenewTokenMessage;
use crate::hc::request::HcRequest;
use crate::token::{Grant, Right};
use crate::transport::keepalive::{Beat, Keepalive};

/// Control messages queued for one listener before a sender waits for room.
const OUTBOX: usize = 64;
/// Unanswered pings after which a listener is detached.
const MISSED_PINGS: u32 = 3;
/// The longest a write to a control channel may take. An accept message is under 20 KiB,
/// which any live listener takes in milliseconds; well under the 30 s a sender may wait, so
/// that a stalled listener is detached (and its senders answered) while they still wait.
const MAX_WRITE_DEADLINE: Duration = Duration::from_secs(5);

/// The write deadline: the ping interval, between 1 s and [`MAX_WRITE_DEADLINE`] (pings off:
/// the maximum).
fn write_deadline(ping_interval: Duration) -> Duration {
    match ping_interval.is_zero() {
        true => MAX_WRITE_DEADLINE,
        false => ping_interval.clamp(Duration::from_secs(1), MAX_WRITE_DEADLINE),
    }
}

/// When a token that expires at `expiry` (Unix seconds) does, on the runtime's clock.
fn expiry_instant(expiry: u64) -> tokio::time::Instant {
    let left = expiry.saturating_sub(crate::transport::deadline::unix_now());
    // A far expiry is capped: `Instant` arithmetic must not overflow.
    tokio::time::Instant::now() + Duration::from_secs(left.min(86400 * 365))
}

impl Relay {
    /// Attaches a listener: checks its token, records it, and answers `101`; its control
    /// channel then runs in its own task until it ends.
    pub(super) async fn listen(
        self: Arc<Self>,
        hc: HcRequest,
        host: String,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Refusal> {
        let grant = self
            .check(&hc.name, hc.token.as_deref(), Right::Listen)
            .map_err(|e| {
                tracing::info!(target: "arcgate::audit", name = %hc.name, error = %e, "listener refused");
                Refusal::Unauthorized
            })?;
        let place = self.connection_place()?;
        let (tx, rx) = mpsc::channel::<String>(OUTBOX);
        let id = self.next_listener.fetch_add(1, Ordering::Relaxed) as u64;
        {
            let mut all = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            let list = all.entry(hc.name.clone()).or_default();
            if list.len() >= MAX_LISTENERS_PER_NAME {
                return Err(Refusal::TooManyListeners);
            }
            list.push(ListenerHandle {
                id,
                grant: grant.clone(),
                host,
                tx,
            });
        }
        tracing::info!(target: "arcgate::audit", name = %hc.name, key = %grant.key_name, listener = id, "listener attached");
        let relay = self.clone();
        let name = hc.name.clone();
        tokio::spawn(async move {
            if let Ok(up) = hyper::upgrade::on(request).await {
                let (io, leftover) = upgraded(up);
                relay.control(&name, id, io, leftover, rx, grant).await;
            }
            relay.detach(&name, id);
            drop(place);
        });
        Ok(switching_protocols(&hc.ws_key))
    }

    /// Forgets a listener, and answers at once the senders it was offered and had not yet
    /// answered (their wait ends as "the listener went away", not at the 30 s limit).
    fn detach(&self, name: &str, id: u64) {
        {
            let mut all = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(list) = all.get_mut(name) {
                list.retain(|l| l.id != id);
                if list.is_empty() {
                    all.remove(name);
                }
            }
        }
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, waiting| waiting.listener != id);
        tracing::info!(target: "arcgate::audit", name, listener = id, "listener detached");
    }

    /// One listener's control channel: accept messages out, renewToken in, pings when quiet,
    /// and a 1008 Close when the keys file withdraws its key. Every write must finish within
    /// the ping interval: a listener that stops reading is detached, not waited for.
    async fn control(
        &self,
        name: &str,
        id: u64,
        io: Box<dyn Stream>,
        leftover: Vec<u8>,
        mut outbox: mpsc::Receiver<String>,
        mut grant: Grant,
    ) {
        let mut ws = WebSocketStream::from_partially_read(io, leftover, WsRole::Server, None).await;
        let mut keepalive = Keepalive::new(self.opts.ping_interval, MISSED_PINGS);
        let deadline = write_deadline(self.opts.ping_interval);
        let mut heard = 0u64;
        // Subscribed, then checked once: a change made since the token was checked is seen.
        let mut keys = self.keys.subscribe();
        keys.mark_changed();
        loop {
            let expires = expiry_instant(grant.expiry);
            let sent = tokio::select! {
                // Checked first: a listener whose key is withdrawn takes nothing more.
                biased;
                Ok(()) = keys.changed() => {
                    let now = keys.borrow_and_update().clone();
                    if let Some(why) = withdrawn(&now, &grant, None) {
                        tracing::info!(target: "arcgate::audit", name = %name, key = %grant.key_name, reason = %why, "listener detached by the keys file");
                        let close = CloseFrame { code: CloseCode::Policy, reason: why.into() };
                        let _ = within(deadline, ws.close(Some(close))).await;
                        return;
                    }
                    Ok(())
                }
                () = tokio::time::sleep_until(expires) => {
                    // Azure Relay's rule: a listen token is renewed (renewToken) before it
                    // expires, or the listener is detached.
                    tracing::info!(target: "arcgate::audit", name = %name, key = %grant.key_name, "listener detached: its token expired without renewToken");
                    let close = CloseFrame { code: CloseCode::Policy, reason: "listen token expired; renew it before it expires (renewToken)".into() };
                    let _ = within(deadline, ws.close(Some(close))).await;
                    return;
                }
                msg = outbox.recv() => match msg {
                    Some(text) => within(deadline, ws.send(Message::text(text))).await,
                    None => return,
                },
                incoming = ws.next() => {
                    heard += 1;
                    match incoming {
                        Some(Ok(Message::Text(t))) => match self.renewal(name, &t) {
                            Renewal::Ignored => Ok(()),
                            Renewal::Renewed(new) => {
                                self.renewed(name, id, &new);
                                grant = new;
                                Ok(())
                            }
                            Renewal::Refused => {
                                let _ = within(deadline, ws.close(None)).await;
                                return;
                            }
                        },
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                        Some(Ok(_)) => Ok(()),
                    }
                }
                beat = keepalive.tick(|| heard) => match beat {
                    Beat::Heard => Ok(()),
                    Beat::Ping => within(deadline, ws.send(Message::Ping(Bytes::from_static(b"relay")))).await,
                    Beat::Gone => {
                        tracing::warn!(name = %name, listener_key = %grant.key_name, "listener stopped answering pings; detaching it");
                        return;
                    }
                },
            };
            if let Err(why) = sent {
                tracing::warn!(name = %name, listener_key = %grant.key_name, error = %why, "cannot write to the listener; detaching it");
                return;
            }
        }
    }

    /// Records a listener's renewed grant in its handle, for the sessions it takes next.
    fn renewed(&self, name: &str, id: u64, grant: &Grant) {
        let mut all = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = all
            .get_mut(name)
            .and_then(|list| list.iter_mut().find(|l| l.id == id))
        {
            handle.grant = grant.clone();
        }
    }

    /// A text message from a listener: a renewed token that passes replaces the listener's
    /// grant; one that does not detaches it; anything else is ignored.
    fn renewal(&self, name: &str, text: &str) -> Renewal {
        let Ok(renew) = serde_json::from_str::<RenewTokenMessage>(text) else {
            tracing::warn!(name = %name, message = %shorten(text), "unknown control message ignored");
            return Renewal::Ignored;
        };
        let token = Some(renew.renew_token.token.as_str());
        match self.check(name, token, Right::Listen) {
            Ok(grant) => {
                tracing::info!(name = %name, key = %grant.key_name, "listener token renewed");
                Renewal::Renewed(grant)
            }
            Err(e) => {
                tracing::warn!(target: "arcgate::audit", name = %name, error = %e, "renewed token refused; detaching the listener");
                Renewal::Refused
            }
        }
    }
}

/// What a listener's text message did.
enum Renewal {
    Ignored,
    Renewed(Grant),
    Refused,
}

/// Runs one write to a control channel within `deadline`.
async fn within<E: std::fmt::Display>(
    deadline: Duration,
    write: impl Future<Output = Result<(), E>>,
) -> Result<(), String> {
    match tokio::time::timeout(deadline, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("the listener took no data for {deadline:?}")),
    }
}
