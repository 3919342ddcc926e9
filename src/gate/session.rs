//! An admitted session, after `101`: the bridge to the dialled service, the stop signal that
//! ends it when the gate stops or a new snapshot (policy, or the keys file for its grant) no
//! longer allows it, and its end record. Direct and relayed sessions run through the same
//! [`Gate::bridge_session`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;

use crate::config::Port;
use crate::gate::Gate;
use crate::gate::admit::Admitted;
use crate::gate::audit;
use crate::hc::request::ConnectRequest;
use crate::policy::{self, Candidate, Permit};
use crate::token::Grant;
use crate::transport::bridge::{self, BridgeConfig, ClosedBy, Stop};
use crate::transport::serve;

/// What a bridged session is, for its records.
pub(crate) struct SessionMeta {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) port: Port,
}

impl Gate {
    /// A direct session after `101`: the upgraded stream, bridged.
    pub(crate) async fn session(
        self: Arc<Self>,
        upgraded: Upgraded,
        request: ConnectRequest,
        admitted: Admitted,
    ) {
        let meta = SessionMeta {
            id: request.id,
            name: request.name,
            port: request.port,
        };
        let cfg = &self.opts.bridge;
        match serve::take_stream(upgraded) {
            Ok((io, leftover)) => {
                self.bridge_session(io, &leftover, cfg, meta, admitted)
                    .await
            }
            Err(upgraded) => {
                let io = Box::new(TokioIo::new(upgraded));
                self.bridge_session(io, &[], cfg, meta, admitted).await
            }
        }
    }

    /// Bridges an admitted session to its dialled service until it ends, then records the
    /// end. Direct and relayed sessions both end here.
    pub(crate) async fn bridge_session<S>(
        &self,
        io: S,
        leftover: &[u8],
        cfg: &BridgeConfig,
        meta: SessionMeta,
        admitted: Admitted,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let Admitted {
            permit,
            grant,
            key,
            service,
            slot,
        } = admitted;
        let started = Instant::now();
        let live = slot.session().clone();
        let counters = &live.counters;
        let _ = service.set_nodelay(true);
        let (service_r, service_w) = service.into_split();
        // Boxed: by value, its 376 bytes were stored twice more in the session's task, which
        // put the task in the allocator's 4 KiB size class instead of 3 KiB (-Zprint-type-sizes).
        let stop = Box::pin(self.stop_signal(permit, grant));
        let outcome = bridge::run(io, leftover, service_r, service_w, cfg, stop, counters).await;
        let (closed_by, reason) = match &outcome.closed_by {
            ClosedBy::Peer => ("client", String::new()),
            ClosedBy::Local => ("service", String::new()),
            ClosedBy::Stopped(Stop::Revoked(why)) => {
                ("policy", format!("revoked by policy change: {why}"))
            }
            ClosedBy::Stopped(Stop::Shutdown | Stop::Exiting) => {
                ("gate", "gate shutting down".to_string())
            }
            ClosedBy::PingTimeout => ("gate", "client missed pings".to_string()),
            ClosedBy::IdleTimeout => ("gate", "idle timeout".to_string()),
            ClosedBy::PeerError(e) => ("gate", format!("client protocol error: {e}")),
            ClosedBy::ConnectionLost(e) => ("client", format!("connection lost: {e}")),
            ClosedBy::LocalError(e) => ("service", format!("service connection failed: {e}")),
        };
        // The slot goes first: once the end is recorded, the session is out of every listing.
        drop(slot);
        self.audit.session_end(&audit::SessionEnd {
            subject: audit::Subject {
                session: &meta.id,
                peer: live.peer.to_string(),
                name: &meta.name,
                port: meta.port.get(),
                key: &key,
            },
            bytes_from_client: counters.from_peer.load(Ordering::Relaxed),
            bytes_to_client: counters.to_peer.load(Ordering::Relaxed),
            duration_ms: started.elapsed().as_millis() as u64,
            closed_by,
            close_sent: outcome.sent,
            close_received: outcome.received.as_ref().map(|c| c.code),
            reason: &reason,
        });
    }

    /// Resolves when the session must end: the gate stops, or a new snapshot's policy (or the
    /// keys file, for the session's grant) no longer allows it.
    fn stop_signal(
        &self,
        permit: Permit,
        grant: Option<Grant>,
    ) -> impl Future<Output = Stop> + use<> {
        let mut live = self.live.clone();
        let mut stopping = self.stopping.subscribe();
        async move {
            let revoked = async {
                loop {
                    if live.changed().await.is_err() {
                        return std::future::pending().await;
                    }
                    let snapshot = live.borrow_and_update().clone();
                    let (Ok(config), Ok(keys)) = (&snapshot.config, &snapshot.keys) else {
                        // An invalid file refuses new connections but leaves sessions alone:
                        // an editor's half-written save must not cut everyone off.
                        continue;
                    };
                    let key_ports = match &grant {
                        None => None,
                        Some(grant) => match keys.still_backs(grant) {
                            Ok(key) => key.ports.as_ref(),
                            Err(why) => return format!("key '{}' {why}", grant.key_name),
                        },
                    };
                    let candidate = Candidate {
                        port: permit.port,
                        key_ports,
                    };
                    if let Err(denied) = policy::decide(config, &candidate) {
                        return denied.audit_reason().to_string();
                    }
                }
            };
            tokio::select! {
                why = revoked => Stop::Revoked(why),
                _ = stopping.wait_for(|s| *s) => Stop::Shutdown,
            }
        }
    }
}
