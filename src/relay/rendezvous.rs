//! Senders and rendezvous: a sender (`sb-hc-action=connect`, send right) is held while one
//! listener, chosen round-robin, is offered the connection through an `accept` message with
//! a single-use address; the listener's answer at that address (`sb-hc-action=accept`)
//! either joins the two sockets or passes its rejection to the sender.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::http::{HeaderMap, Request, Response};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::{ACCEPT_TTL, Accepted, Refusal, Relay, Rendezvous, join, upgraded};
use crate::hc::answer::switching_protocols;
use crate::hc::control::{Accept, AcceptMessage, RemoteEndpoint, rejection};
use crate::hc::request::HcRequest;
use crate::token::Right;
use crate::transport::accept::HandshakePlace;

/// Headers never passed to a listener in `connectHeaders`: credentials.
const WITHHELD: [&str; 4] = [
    "servicebusauthorization",
    "authorization",
    "sec-websocket-key",
    "cookie",
];

impl Relay {
    /// A sender: checked, offered to a listener, and answered `101` (joined) or with the
    /// listener's refusal.
    pub(super) async fn connect(
        self: Arc<Self>,
        hc: HcRequest,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<Full<Bytes>>, Refusal> {
        if let Err(e) = self.check(&hc.name, hc.token.as_deref(), Right::Send).await {
            tracing::info!(target: "arcgate::audit", name = %hc.name, peer = %peer, error = %e, "sender refused");
            return Err(Refusal::Unauthorized);
        }
        let place = self.connection_place()?;
        // Counted among the established connections now: the wait for the listener (up to
        // 30 s) must not hold one of the source's handshake places, or a few waiting senders
        // would shut out the gate's own rendezvous from the same address.
        if let Some(handshake) = request.extensions().get::<HandshakePlace>() {
            handshake.release();
        }
        let (host, listener) = self.choose_listener(&hc.name).ok_or(Refusal::NoListener)?;
        // The address carries a fresh, unguessable handle: it is the listener's only credential.
        let handle = uuid::Uuid::new_v4().simple().to_string();
        let message = accept_message(&hc, &host, &handle, request.headers(), peer);
        let accepted = self.offer(listener, handle, message).await?;
        let max_frame = self.opts.max_frame;
        tokio::spawn(
            async move {
                let (Ok(listener_side), Ok(sender_side)) =
                    (accepted.upgrade.await, hyper::upgrade::on(request).await)
                else {
                    return;
                };
                let (a, a_leftover) = upgraded(sender_side);
                let (b, b_leftover) = upgraded(listener_side);
                join(a, &a_leftover, b, &b_leftover, max_frame).await;
                drop((place, accepted.place));
            }
            .in_current_span(),
        );
        Ok(switching_protocols(&hc.ws_key))
    }

    /// One of `name`'s listeners, round-robin: the host it reached us by and its outbox.
    fn choose_listener(&self, name: &str) -> Option<(String, mpsc::Sender<String>)> {
        let all = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        let list = all.get(name).filter(|l| !l.is_empty())?;
        let i = self.round_robin.fetch_add(1, Ordering::Relaxed) % list.len();
        Some((list[i].host.clone(), list[i].tx.clone()))
    }

    /// Sends the accept message and waits for the listener's answer at the address; the
    /// address is spent whatever happens.
    async fn offer(
        &self,
        listener: mpsc::Sender<String>,
        handle: String,
        message: AcceptMessage,
    ) -> Result<Accepted, Refusal> {
        let (done_tx, done_rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(handle.clone(), done_tx);
        // Spent whatever happens, also when the sender goes away while it waits (this
        // future is then dropped, not finished).
        let _spent = Spent {
            relay: self,
            handle: &handle,
        };
        let sent = listener
            .send(serde_json::to_string(&message).expect("plain data serializes"))
            .await;
        match sent {
            // The listener went away before it could be told.
            Err(_) => Err(Refusal::ListenerGone),
            Ok(()) => match tokio::time::timeout(ACCEPT_TTL, done_rx).await {
                Err(_) => Err(Refusal::ListenerSilent),
                Ok(Err(_)) => Err(Refusal::ListenerGone),
                Ok(Ok(Rendezvous::Accepted(accepted))) => Ok(accepted),
                Ok(Ok(Rendezvous::Rejected(status, description))) => {
                    Err(Refusal::Rejected(status, description))
                }
            },
        }
    }

    /// A listener's answer at an accept address: a rejection passed on (`410` to it), or
    /// the rendezvous (`101`, joined to the waiting sender).
    pub(super) fn accept(
        &self,
        hc: HcRequest,
        mut request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Refusal> {
        let waiting = hc.id.as_ref().and_then(|id| {
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(id)
        });
        let waiting = waiting.ok_or(Refusal::UnknownAddress)?;
        // The sender is told, not left to think the listener went away.
        let place = match self.connection_place() {
            Ok(place) => place,
            Err(busy) => {
                let why = "the relay holds as many connections as it may; retry later";
                let _ = waiting.send(Rendezvous::Rejected(503, why.into()));
                return Err(busy);
            }
        };
        let rejected = rejection(
            hc.param("sb-hc-statusCode"),
            hc.param("sb-hc-statusDescription"),
        );
        if let Some((status, description)) = rejected {
            let _ = waiting.send(Rendezvous::Rejected(status, description));
            return Err(Refusal::RejectionDelivered);
        }
        let upgrade = hyper::upgrade::on(&mut request);
        let _ = waiting.send(Rendezvous::Accepted(Accepted { upgrade, place }));
        Ok(switching_protocols(&hc.ws_key))
    }
}

/// Removes a pending accept address when dropped.
struct Spent<'a> {
    relay: &'a Relay,
    handle: &'a str,
}

impl Drop for Spent<'_> {
    fn drop(&mut self) {
        self.relay
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(self.handle);
    }
}

/// The `accept` message for a sender: the single-use address (with the sender's non-protocol
/// query parameters, such as `port`), its id, its headers less credentials, its address.
fn accept_message(
    hc: &HcRequest,
    host: &str,
    handle: &str,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> AcceptMessage {
    let mut address = url::Url::parse(&format!("wss://{host}/$hc/{}", hc.name))
        .unwrap_or_else(|_| url::Url::parse("wss://localhost/").expect("a valid URL"));
    {
        let mut q = address.query_pairs_mut();
        q.append_pair("sb-hc-action", "accept");
        q.append_pair("sb-hc-id", handle);
        for (k, v) in &hc.query {
            if !k.starts_with("sb-hc-") {
                q.append_pair(k, v);
            }
        }
    }
    let connect_headers: HashMap<String, String> = headers
        .iter()
        .filter(|(n, _)| !WITHHELD.contains(&n.as_str()))
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    AcceptMessage {
        accept: Accept {
            address: address.to_string(),
            id: hc
                .id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            connect_headers,
            remote_endpoint: Some(RemoteEndpoint {
                address: peer.ip().to_string(),
                port: peer.port(),
            }),
        },
    }
}
