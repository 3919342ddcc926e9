//! Admission: every check before `101`, once, for direct and relayed connections alike —
//! snapshot → credential (the token, or the relay's word) → policy → session limits → local
//! dial — and one audit record and metric per decision.
//!
//! Decide before `101`: a direct request is answered `101` only once this has returned
//! [`Admitted`]; a relayed one is accepted at the relay only then.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::http::{Request, Response};
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::config::Port;
use crate::gate::Gate;
use crate::gate::approvals::{Asking, Outcome};
use crate::gate::audit;
use crate::gate::metrics::DecisionLabels;
use crate::gate::refusal::Refusal;
use crate::gate::session::SessionMeta;
use crate::gate::sessions::{LiveSession, Slot};
use crate::hc::answer::switching_protocols;
use crate::hc::request;
use crate::policy::{self, Candidate, Denied, Permit};
use crate::token::{self, Audience, Grant, TokenError};
use crate::transport::bridge::Counters;
use crate::transport::deadline::{TimedOut, unix_now, within};

/// The key relayed sessions without a gate token are recorded under: only the relay's word
/// (its check of the sender's relay token) vouches for them.
pub(crate) const RELAYED_KEY: &str = "relay";

/// How long a relayed request may wait for approval: a relay holds its sender about 30 s
/// (`arcgate relay`'s limit; Azure Relay's is of that order), and the gate must still accept
/// within it.
const RELAY_APPROVAL_WAIT: Duration = Duration::from_secs(25);

/// What vouches for a connection.
pub(crate) enum Credential<'a> {
    /// The token a client presented (direct mode), checked against the gate's keys.
    Token(Option<&'a str>),
    /// A relay announced it (relay mode): the relay checked the sender's relay token. A gate
    /// token the sender sent beside it (`Arcgate-Gate-Token` in `connectHeaders`) is checked
    /// exactly as a direct token; without one, the relay's word is enough unless `required`.
    Relayed {
        /// The end-to-end token, when the sender sent one.
        gate_token: Option<&'a str>,
        /// `serve --relay-require-gate-token`: no gate token, no session.
        required: bool,
    },
}

/// A connection to decide.
pub(crate) struct Ask<'a> {
    pub(crate) id: &'a str,
    pub(crate) port: Port,
    pub(crate) peer: SocketAddr,
    pub(crate) credential: Credential<'a>,
    /// The longest it may wait for the administrator's approval: the gate's timeout, or less
    /// through a relay, which holds a sender only so long.
    pub(crate) approval_wait: Duration,
}

/// What passed every check before `101`.
pub(crate) struct Admitted {
    /// What the policy allowed: the session's stop signal re-decides for its port.
    pub(crate) permit: Permit,
    /// The token's grant, re-checked against every new keys file (direct sessions, and
    /// relayed ones with a gate token).
    pub(crate) grant: Option<Grant>,
    /// The key the session is recorded under.
    pub(crate) key: String,
    /// The dialled local service.
    pub(crate) service: TcpStream,
    /// The session's place in the table.
    pub(crate) slot: Slot,
}

/// What is known of a request when it is decided, for the audit record.
#[derive(Default)]
struct Known {
    id: String,
    name: String,
    port: u16,
    key: String,
    /// Who approved or denied it, when the administrator was asked.
    approval: Option<String>,
}

impl Gate {
    /// The admission core, both modes: every check in order, the first refusal wins.
    async fn admit(&self, ask: &Ask<'_>, known: &mut Known) -> Result<Admitted, Refusal> {
        let snapshot = self.live.borrow().clone();
        let config = snapshot
            .config
            .as_ref()
            .map_err(|e| Refusal::Unavailable(e.clone()))?;
        let token = match ask.credential {
            Credential::Token(token) => Some(token),
            Credential::Relayed {
                gate_token: Some(token),
                ..
            } => Some(Some(token)),
            Credential::Relayed {
                gate_token: None,
                required,
            } => required.then_some(None),
        };
        let grant = match token {
            None => None,
            Some(token) => {
                let keys = snapshot
                    .keys
                    .as_ref()
                    .map_err(|e| Refusal::Unavailable(e.clone()))?;
                let token = token.ok_or(Refusal::Unauthorized(TokenError::Missing))?;
                let audience = Audience {
                    name: &self.opts.name,
                    host: self.opts.public_host.as_deref(),
                };
                let grant = token::verify(keys, token, &audience, unix_now())
                    .map_err(Refusal::Unauthorized)?;
                tracing::Span::current().record("key", grant.key_name.as_str());
                Some(grant)
            }
        };
        let key = grant
            .as_ref()
            .map_or(RELAYED_KEY, |g| g.key_name.as_str())
            .to_string();
        known.key.clone_from(&key);
        let candidate = Candidate {
            port: ask.port,
            key_ports: grant.as_ref().and_then(|g| g.ports.as_ref()),
            source: ask.peer.ip(),
            started: None,
        };
        let now = self.clock.now();
        let permit = policy::decide(config, &candidate, now)
            .map_err(|d| Refusal::Forbidden(d, ask.port.get()))?;
        let (permit, now) = match permit.needs_approval {
            false => {
                // Approval switched off: what stood is forgotten, so switching it on again
                // asks again.
                if self.approvals.withdraw_standing() {
                    tracing::info!("approval no longer required: standing approvals withdrawn");
                }
                (permit, now)
            }
            true => self.approved(ask, &key, &grant, &candidate, known).await?,
        };
        let slot = self
            .sessions
            .take(LiveSession {
                id: ask.id.to_string(),
                peer: ask.peer,
                name: self.opts.name.clone(),
                port: ask.port.get(),
                key: key.clone(),
                started: now,
                counters: Counters::default(),
            })
            .map_err(Refusal::OverLimit)?;
        let service = dial_local(ask.port, self.opts.dial_timeout)
            .await
            .map_err(|e| Refusal::DialFailed(ask.port.get(), e))?;
        Ok(Admitted {
            permit,
            grant,
            key,
            service,
            slot,
        })
    }

    /// Holds an allowed request for the administrator's answer, then decides it again on
    /// what is in force then: a refusal written while it waited is final. While it waits, a
    /// policy change that refuses it ends the wait at once.
    async fn approved(
        &self,
        ask: &Ask<'_>,
        key: &str,
        grant: &Option<Grant>,
        candidate: &Candidate<'_>,
        known: &mut Known,
    ) -> Result<(Permit, SystemTime), Refusal> {
        let forbidden = |d| Refusal::Forbidden(d, ask.port.get());
        let peer = ask.peer.to_string();
        let asking = Asking {
            session: ask.id,
            peer: &peer,
            key,
            port: ask.port.get(),
            secret: grant.as_ref().map(Grant::secret_id),
            wait: ask.approval_wait.min(self.approvals.timeout()),
        };
        let refused = self.refused_meanwhile(grant, candidate);
        match self.approvals.ask(asking, refused).await {
            Outcome::Approved(by) => known.approval = Some(format!("approved by {by}")),
            Outcome::Denied(by) => {
                known.approval = Some(format!("by {by}"));
                return Err(forbidden(Denied::ApprovalDenied));
            }
            Outcome::TimedOut => return Err(forbidden(Denied::ApprovalTimedOut)),
            Outcome::Full => return Err(Refusal::TooManyWaiting),
            Outcome::Refused(denied) => return Err(forbidden(denied)),
        }
        let now = self.clock.now();
        let permit = self.decide_now(grant, candidate, now)?;
        Ok((permit, now))
    }

    /// The policy's decision on what is in force now: the configuration, the keys behind the
    /// token's grant (and its expiry), at `now`.
    fn decide_now(
        &self,
        grant: &Option<Grant>,
        candidate: &Candidate<'_>,
        now: SystemTime,
    ) -> Result<Permit, Refusal> {
        let snapshot = self.live.borrow().clone();
        let config = snapshot
            .config
            .as_ref()
            .map_err(|e| Refusal::Unavailable(e.clone()))?;
        let key_ports = match grant {
            None => None,
            Some(grant) => {
                let keys = snapshot
                    .keys
                    .as_ref()
                    .map_err(|e| Refusal::Unavailable(e.clone()))?;
                let name = grant.key_name.clone();
                let unix = now
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                if unix > grant.expiry {
                    return Err(Refusal::Unauthorized(TokenError::Expired {
                        key: name,
                        expiry: grant.expiry,
                        now: unix,
                    }));
                }
                let withdrawn = |w| {
                    Refusal::Unauthorized(match w {
                        token::Withdrawn::Removed => TokenError::UnknownKey(name),
                        token::Withdrawn::SecretChanged => TokenError::BadSignature(name),
                        token::Withdrawn::RightRemoved(right) => {
                            TokenError::MissingRight { key: name, right }
                        }
                    })
                };
                keys.still_backs(grant).map_err(withdrawn)?.ports.as_ref()
            }
        };
        let candidate = Candidate {
            key_ports,
            ..*candidate
        };
        policy::decide(config, &candidate, now)
            .map_err(|d| Refusal::Forbidden(d, candidate.port.get()))
    }

    /// Resolves with the policy's refusal of a waiting request, at the first change (or the
    /// window's end) that refuses it; never while it stays allowed.
    fn refused_meanwhile<'a>(
        &'a self,
        grant: &'a Option<Grant>,
        candidate: &'a Candidate<'_>,
    ) -> impl std::future::Future<Output = Denied> + 'a {
        let mut live = self.live.clone();
        async move {
            let mut changes = true;
            loop {
                let now = self.clock.now();
                let due = match self.decide_now(grant, candidate, now) {
                    Err(Refusal::Forbidden(denied, _)) => return denied,
                    // A key withdrawn, or a file made invalid: the decision after the wait
                    // says so; the wait itself goes on.
                    Err(_) => None,
                    Ok(_) => self
                        .live
                        .borrow()
                        .config
                        .as_ref()
                        .ok()
                        .and_then(|c| c.incoming_enabled_until)
                        .filter(|end| *end > now),
                };
                let wait = due.map(|t| self.clock.until(t));
                tokio::select! {
                    changed = live.changed(), if changes => changes = changed.is_ok(),
                    () = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
                    () = std::future::pending(), if !changes && wait.is_none() => {}
                }
            }
        }
    }

    /// Decides a connection a relay announced: the same core as a direct one, with the
    /// relay's word or the sender's gate token as the credential. Recorded like any decision.
    pub(crate) async fn admit_relayed(
        &self,
        id: &str,
        port: Port,
        peer: SocketAddr,
        credential: Credential<'_>,
    ) -> Result<Admitted, Refusal> {
        let started = Instant::now();
        let mut known = Known {
            id: id.to_string(),
            name: self.opts.name.clone(),
            port: port.get(),
            key: RELAYED_KEY.to_string(),
            approval: None,
        };
        let ask = Ask {
            id,
            port,
            peer,
            credential,
            approval_wait: RELAY_APPROVAL_WAIT,
        };
        let result = self.admit(&ask, &mut known).await;
        self.record_decision(&known, peer, result.as_ref().err(), started);
        result
    }

    /// A direct request: parse it, check the name, then the admission core.
    async fn admit_direct(
        &self,
        head: &hyper::http::request::Parts,
        peer: SocketAddr,
        known: &mut Known,
    ) -> Result<(request::ConnectRequest, Admitted), Refusal> {
        let request = request::parse(head).map_err(Refusal::BadRequest)?;
        let span = tracing::Span::current();
        span.record("id", request.id.as_str());
        span.record("port", request.port.get());
        known.id.clone_from(&request.id);
        known.name.clone_from(&request.name);
        known.port = request.port.get();
        if !request.name.eq_ignore_ascii_case(&self.opts.name) {
            return Err(Refusal::UnknownName(request.name.clone()));
        }
        let ask = Ask {
            id: &request.id,
            port: request.port,
            peer,
            credential: Credential::Token(request.token.as_deref()),
            approval_wait: Duration::MAX,
        };
        let admitted = self.admit(&ask, known).await?;
        Ok((request, admitted))
    }

    /// Answers one HTTP request on a direct connection: a refusal, or `101` and the session
    /// in its own task.
    pub(crate) async fn answer(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let (head, body) = request.into_parts();
        let mut known = Known::default();
        let admitted = self.admit_direct(&head, peer, &mut known).await;
        self.record_decision(&known, peer, admitted.as_ref().err(), started);
        let (request, admitted) = match admitted {
            Err(refusal) => return refusal.response(),
            Ok(a) => a,
        };
        let response = switching_protocols(&request.ws_key);
        // Taken before the task, so that the task holds the pending upgrade and what its
        // records name, not the request.
        let upgrade = hyper::upgrade::on(Request::from_parts(head, body));
        let meta = SessionMeta {
            id: request.id,
            name: request.name,
            port: request.port,
        };
        tokio::spawn(
            self.clone()
                .session(upgrade, meta, admitted)
                .instrument(tracing::Span::current()),
        );
        response
    }

    /// Records a decision: the audit record and the metrics.
    fn record_decision(
        &self,
        known: &Known,
        peer: SocketAddr,
        refused: Option<&Refusal>,
        started: Instant,
    ) {
        let seconds = started.elapsed().as_secs_f64();
        let (decision, mut reason, code) = match refused {
            Some(refusal) => refusal.describe(),
            None => ("allow", "allowed".to_string(), "allowed"),
        };
        // Who answered, when someone was asked: "allowed, approved by root".
        if let Some(approval) = &known.approval {
            reason = format!("{reason}, {approval}");
        }
        self.audit.decision(&audit::Decision {
            subject: audit::Subject {
                session: &known.id,
                peer: peer.to_string(),
                name: &known.name,
                port: known.port,
                key: &known.key,
            },
            decision,
            reason: &reason,
            handshake_ms: seconds * 1000.0,
        });
        self.metrics.decision(
            DecisionLabels {
                decision,
                reason: code,
            },
            seconds,
        );
        if let Some(Refusal::Unauthorized(e)) = refused {
            self.metrics.token_failure(e.kind());
        }
    }
}

/// Why the local service could not be dialled; its text ends the `503` status line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LocalDialError {
    /// The connection failed (refused, unreachable).
    #[error("{0}")]
    Failed(std::io::Error),
    /// It did not finish in time.
    #[error("{0}")]
    TimedOut(TimedOut),
}

/// Dials the local service: `127.0.0.1:{port}`, then `[::1]:{port}`. Never another host.
async fn dial_local(port: Port, timeout: Duration) -> Result<TcpStream, LocalDialError> {
    let mut first = None;
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        let addr = SocketAddr::new(ip, port.get());
        let error = match within("dialling", timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => LocalDialError::Failed(e),
            Err(t) => LocalDialError::TimedOut(t),
        };
        // The IPv4 error is the one to report: [::1] is only a fallback.
        first.get_or_insert(error);
    }
    Err(first.expect("two addresses were tried"))
}
