//! Senders and rendezvous: a sender (`sb-hc-action=connect`, send right, its key's `ports`
//! covering the port) is held while one listener, chosen round-robin, is offered the
//! connection through an `accept` message with a single-use address; the listener's answer
//! at that address (`sb-hc-action=accept`) either joins the two sockets or passes its
//! rejection to the sender. The whole wait is bounded by [`ACCEPT_TTL`] and the number of
//! waiting senders per name and per source by [`MAX_WAITING_PER_NAME`] and
//! [`MAX_WAITING_PER_SOURCE`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::http::{HeaderMap, Request, Response};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tracing::Instrument;

use super::{
    ACCEPT_TTL, Accepted, JoinLimits, MAX_WAITING_PER_NAME, MAX_WAITING_PER_SOURCE, Pending,
    Refusal, Relay, Rendezvous, join, upgraded, withdrawn,
};
use crate::hc::answer::switching_protocols;
use crate::hc::control::{Accept, AcceptMessage, RemoteEndpoint, rejection};
use crate::hc::request::{DEFAULT_PORT, HcRequest};
use crate::token::{Grant, Right};
use crate::transport::accept::{HandshakePlace, source};

/// The shortest stall limit of a join (with pings off or very frequent).
const MIN_STALL: std::time::Duration = std::time::Duration::from_secs(10);

/// Headers never passed to a listener in `connectHeaders`: the relay's credentials. The
/// sender's `Sec-WebSocket-Key` is passed (Microsoft's listener libraries answer with it).
const WITHHELD: [&str; 3] = ["servicebusauthorization", "authorization", "cookie"];

/// How many senders wait, per name and per source.
#[derive(Debug, Default)]
pub(super) struct Waiting {
    per_name: HashMap<String, usize>,
    per_source: HashMap<IpAddr, usize>,
}

/// One sender's waiting place; given back when dropped.
struct WaitingPlace<'a> {
    relay: &'a Relay,
    name: String,
    source: IpAddr,
}

impl Relay {
    /// Senders waiting now, all names together.
    pub(super) fn waiting_now(&self) -> usize {
        let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting.per_name.values().sum()
    }

    /// A waiting place for a sender to `name` from `peer`, or [`Refusal::TooManyWaiting`].
    fn waiting_place(&self, name: &str, peer: IpAddr) -> Result<WaitingPlace<'_>, Refusal> {
        let source = source(peer);
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let by_name = waiting.per_name.get(name).copied().unwrap_or(0);
        let by_source = waiting.per_source.get(&source).copied().unwrap_or(0);
        if by_name >= MAX_WAITING_PER_NAME || by_source >= MAX_WAITING_PER_SOURCE {
            return Err(Refusal::TooManyWaiting);
        }
        *waiting.per_name.entry(name.to_string()).or_default() += 1;
        *waiting.per_source.entry(source).or_default() += 1;
        Ok(WaitingPlace {
            relay: self,
            name: name.to_string(),
            source,
        })
    }

    /// A sender: checked (token, right, the key's ports), offered to a listener, and
    /// answered `101` (joined) or with the listener's refusal.
    pub(super) async fn connect(
        self: Arc<Self>,
        hc: HcRequest,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<Full<Bytes>>, Refusal> {
        let grant = match self.check(&hc.name, hc.token.as_deref(), Right::Send) {
            Ok(grant) => grant,
            Err(e) => {
                tracing::info!(target: "arcgate::audit", name = %hc.name, peer = %peer, error = %e, "sender refused");
                return Err(Refusal::Unauthorized);
            }
        };
        // The port the gate will be asked for, parsed by the gate's own parser (`parse_hc`).
        let port = hc.port.map_or(DEFAULT_PORT, |p| p.get());
        if !grant.covers(port) {
            tracing::info!(target: "arcgate::audit", name = %hc.name, peer = %peer, key = %grant.key_name, port, "sender refused: its key does not allow the port");
            return Err(Refusal::PortNotCovered {
                key: grant.key_name,
                port,
            });
        }
        let waited = self.wait_for_listener(&hc, &request, peer).await;
        let (accepted, chosen, place, waiting) = waited.inspect_err(|refusal| {
            tracing::info!(target: "arcgate::audit", name = %hc.name, peer = %peer, key = %grant.key_name, port, refusal = ?refusal, "sender refused");
        })?;
        // The keys may have changed during the wait: checked again before 101, so that a
        // sender (or a listener) withdrawn meanwhile is not joined, not even for a moment.
        let keys = self.keys.borrow().clone();
        let withdrawn_now = withdrawn(&keys, &grant, Some(port)).or_else(|| {
            withdrawn(&keys, &chosen.grant, None).map(|w| format!("the listener's {w}"))
        });
        if let Some(why) = withdrawn_now {
            tracing::info!(target: "arcgate::audit", name = %hc.name, peer = %peer, key = %grant.key_name, reason = %why, "sender refused: withdrawn while it waited");
            // Dropping the accepted side closes the listener's rendezvous.
            return Err(Refusal::Unauthorized);
        }
        drop(waiting);
        self.metrics.joined();
        tracing::info!(
            target: "arcgate::audit",
            name = %hc.name, peer = %peer, key = %grant.key_name, port,
            listener = chosen.id, listener_key = %chosen.grant.key_name,
            "sender joined"
        );
        let limits = JoinLimits {
            max_frame: self.opts.max_frame,
            // The gate's rule for a peer that takes no bytes: four ping intervals.
            stall: (self.opts.ping_interval * 4).max(MIN_STALL),
        };
        let counted = (
            self.metrics.to_listener.clone(),
            self.metrics.to_sender.clone(),
        );
        // Either key withdrawn ends the session: the sender's (or its port), or the
        // listener's that took it (a listener attached with a stolen key keeps nothing).
        let (sender_key, listener_key) = (
            self.revoked(grant, Some(port)),
            self.revoked(chosen.grant.clone(), None),
        );
        let name = hc.name.clone();
        // Boxed once: by value it would be held again by each layer it passes through
        // (this task, the join), for the session's whole life.
        let revoked = Box::pin(async move {
            let why = tokio::select! {
                why = sender_key => why,
                why = listener_key => format!("the listener's {why}"),
            };
            tracing::info!(target: "arcgate::audit", name = %name, reason = %why, "relayed session closed by the keys file");
            why
        });
        tokio::spawn(
            async move {
                let (Ok(listener_side), Ok(sender_side)) =
                    (accepted.upgrade.await, hyper::upgrade::on(request).await)
                else {
                    return;
                };
                let (a, a_leftover) = upgraded(sender_side);
                let (b, b_leftover) = upgraded(listener_side);
                join(a, &a_leftover, b, &b_leftover, limits, revoked, counted).await;
                drop((place, accepted.place));
            }
            .in_current_span(),
        );
        Ok(switching_protocols(&hc.ws_key))
    }

    /// Everything from the sender's connection place to the listener's answer: the waiting
    /// caps, the choice of listener, the accept message and the wait, all within
    /// [`ACCEPT_TTL`].
    async fn wait_for_listener(
        &self,
        hc: &HcRequest,
        request: &Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<(Accepted, Chosen, OwnedSemaphorePermit, WaitingPlace<'_>), Refusal> {
        let place = self.connection_place()?;
        let waiting = self.waiting_place(&hc.name, peer.ip())?;
        let chosen = self
            .choose_listener(&hc.name)
            .ok_or_else(|| Refusal::NoListener(hc.name.clone()))?;
        // Counted among the established connections and the waiting senders now: the wait
        // for the listener (up to 30 s) must not hold one of the source's handshake places,
        // or a few waiting senders would shut out the gate's own rendezvous from the same
        // address. A sender refused before this point keeps its place while it lingers.
        if let Some(handshake) = request.extensions().get::<HandshakePlace>() {
            handshake.release();
        }
        // The address carries a fresh, unguessable handle: it is the listener's only credential.
        let handle = uuid::Uuid::new_v4().simple().to_string();
        let message = accept_message(hc, &chosen.host, &handle, request.headers(), peer);
        let offered = self.offer(&chosen, handle, message);
        match tokio::time::timeout(ACCEPT_TTL, offered).await {
            Ok(answer) => Ok((answer?, chosen, place, waiting)),
            Err(_) => Err(Refusal::ListenerSilent),
        }
    }

    /// One of `name`'s listeners, round-robin.
    fn choose_listener(&self, name: &str) -> Option<Chosen> {
        let all = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        let list = all.get(name).filter(|l| !l.is_empty())?;
        let l = &list[self.round_robin.fetch_add(1, Ordering::Relaxed) % list.len()];
        Some(Chosen {
            id: l.id,
            grant: l.grant.clone(),
            host: l.host.clone(),
            tx: l.tx.clone(),
        })
    }

    /// Sends the accept message and waits for the listener's answer at the address; the
    /// address is spent whatever happens. The caller bounds the whole wait.
    async fn offer(
        &self,
        listener: &Chosen,
        handle: String,
        message: AcceptMessage,
    ) -> Result<Accepted, Refusal> {
        let (done, answer) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                handle.clone(),
                Pending {
                    listener: listener.id,
                    grant: listener.grant.clone(),
                    done,
                },
            );
        // Spent whatever happens, also when the sender goes away or its time is up while it
        // waits (this future is then dropped, not finished).
        let _spent = Spent {
            relay: self,
            handle: &handle,
        };
        let text = serde_json::to_string(&message).expect("plain data serializes");
        if listener.tx.send(text).await.is_err() {
            // The listener went away before it could be told.
            return Err(Refusal::ListenerGone);
        }
        match answer.await {
            // Its channel ended (detached): told at once, not at the time limit.
            Err(_) => Err(Refusal::ListenerGone),
            Ok(Rendezvous::Accepted(accepted)) => Ok(accepted),
            Ok(Rendezvous::Rejected(status, description)) => {
                Err(Refusal::Rejected(status, description))
            }
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
        // A listener whose key was withdrawn since it was offered the sender takes nothing.
        if let Some(why) = withdrawn(&self.keys.borrow().clone(), &waiting.grant, None) {
            tracing::info!(target: "arcgate::audit", listener = waiting.listener, reason = %why, "accept refused: the listener's key is withdrawn");
            return Err(Refusal::UnknownAddress);
        }
        let waiting = waiting.done;
        // A rejection needs no connection place: the sender hears the listener's answer.
        let rejected = rejection(
            hc.param("sb-hc-statusCode"),
            hc.param("sb-hc-statusDescription"),
        );
        if let Some((status, description)) = rejected {
            let _ = waiting.send(Rendezvous::Rejected(status, description));
            return Err(Refusal::RejectionDelivered);
        }
        // The sender is told, not left to think the listener went away.
        let place = match self.connection_place() {
            Ok(place) => place,
            Err(busy) => {
                let why = "the relay holds as many connections as it may; retry later";
                let _ = waiting.send(Rendezvous::Rejected(503, why.into()));
                return Err(busy);
            }
        };
        let upgrade = hyper::upgrade::on(&mut request);
        let _ = waiting.send(Rendezvous::Accepted(Accepted { upgrade, place }));
        Ok(switching_protocols(&hc.ws_key))
    }
}

/// The listener a sender is offered to.
struct Chosen {
    id: u64,
    /// What its token granted when it was chosen.
    grant: Grant,
    /// The host the listener reached us by: accept addresses use it.
    host: String,
    tx: mpsc::Sender<String>,
}

impl Drop for WaitingPlace<'_> {
    fn drop(&mut self) {
        let mut waiting = self.relay.waiting.lock().unwrap_or_else(|p| p.into_inner());
        give_back(&mut waiting.per_name, &self.name);
        give_back(&mut waiting.per_source, &self.source);
    }
}

/// One count fewer for `key`; a count of zero is no entry.
fn give_back<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
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
