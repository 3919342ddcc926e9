//! Listeners: attaching (`sb-hc-action=listen`, a token with the listen right, at most
//! [`MAX_LISTENERS_PER_NAME`] per name) and each one's control channel — `accept` messages
//! out, `renewToken` in, and the shared keepalive rule.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::http::{Request, Response};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role as WsRole;

use super::{ListenerHandle, MAX_LISTENERS_PER_NAME, Refusal, Relay, Stream, upgraded};
use crate::config::shorten;
use crate::hc::answer::switching_protocols;
use crate::hc::control::RenewTokenMessage;
use crate::hc::request::HcRequest;
use crate::token::Right;
use crate::transport::keepalive::{Beat, Keepalive};

/// Control messages queued for one listener before a sender waits for room.
const OUTBOX: usize = 64;
/// Unanswered pings after which a listener is detached.
const MISSED_PINGS: u32 = 3;

impl Relay {
    /// Attaches a listener: checks its token, records it, and answers `101`; its control
    /// channel then runs in its own task until it ends.
    pub(super) async fn listen(
        self: Arc<Self>,
        hc: HcRequest,
        host: String,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Refusal> {
        let key_name = self
            .check(&hc.name, hc.token.as_deref(), Right::Listen)
            .await
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
            list.push(ListenerHandle { id, host, tx });
        }
        tracing::info!(name = %hc.name, key = %key_name, listener = id, "listener attached");
        let relay = self.clone();
        let name = hc.name.clone();
        tokio::spawn(async move {
            if let Ok(up) = hyper::upgrade::on(request).await {
                let (io, leftover) = upgraded(up);
                relay.control(&name, io, leftover, rx).await;
            }
            relay.detach(&name, id);
            drop(place);
        });
        Ok(switching_protocols(&hc.ws_key))
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

    /// One listener's control channel: accept messages out, renewToken in, pings when quiet.
    async fn control(
        &self,
        name: &str,
        io: Box<dyn Stream>,
        leftover: Vec<u8>,
        mut outbox: mpsc::Receiver<String>,
    ) {
        let mut ws = WebSocketStream::from_partially_read(io, leftover, WsRole::Server, None).await;
        let mut keepalive = Keepalive::new(self.opts.ping_interval, MISSED_PINGS);
        let mut heard = 0u64;
        loop {
            tokio::select! {
                msg = outbox.recv() => match msg {
                    Some(text) => if ws.send(Message::text(text)).await.is_err() { return },
                    None => return,
                },
                incoming = ws.next() => {
                    heard += 1;
                    match incoming {
                        Some(Ok(Message::Text(t))) => {
                            if !self.renewal(name, &t).await {
                                let _ = ws.close(None).await;
                                return;
                            }
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                        Some(Ok(_)) => {}
                    }
                }
                beat = keepalive.tick(|| heard) => match beat {
                    Beat::Heard => {}
                    Beat::Ping => {
                        if ws.send(Message::Ping(Bytes::from_static(b"relay"))).await.is_err() {
                            return;
                        }
                    }
                    Beat::Gone => {
                        tracing::warn!(name = %name, "listener stopped answering; detaching it");
                        return;
                    }
                },
            }
        }
    }

    /// A text message from a listener; `false` when it was a renewed token that does not
    /// pass, which detaches the listener.
    async fn renewal(&self, name: &str, text: &str) -> bool {
        let Ok(renew) = serde_json::from_str::<RenewTokenMessage>(text) else {
            tracing::warn!(name = %name, message = %shorten(text), "unknown control message ignored");
            return true;
        };
        let token = Some(renew.renew_token.token.as_str());
        if let Err(e) = self.check(name, token, Right::Listen).await {
            tracing::warn!(name = %name, error = %e, "renewed token refused; detaching the listener");
            return false;
        }
        tracing::info!(name = %name, "listener token renewed");
        true
    }
}
