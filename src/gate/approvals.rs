//! Sessions the host's administrator approves (`incomingconnections.approval required`): the
//! requests the policy allows, held — at most `max_waiting` at once, each at most `timeout` —
//! until someone on the host answers through the admin socket (`arcgate sessions approve ID`
//! or `deny ID`), and the standing approvals that let one key in for a bounded time without
//! asking again (`approve ID --for-key 1h`). Waiting too long is a denial.
//!
//! It owns only the waiting and the answers; whether the request is allowed at all is the
//! policy's, decided before and again after the wait (`gate::admit`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// The longest a standing approval may last: a maintenance window, not a second policy.
pub const MAX_STANDING: Duration = Duration::from_secs(24 * 3600);

/// A request waiting for an answer, as `arcgate status` and `sessions list` show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Waiting {
    /// What `approve`/`deny` take.
    pub id: String,
    /// The session id it will have (`sb-hc-id`).
    pub session: String,
    /// The client's address.
    pub peer: String,
    /// The token's key.
    pub key: String,
    /// The port asked for.
    pub port: u16,
    /// How long it has waited, seconds.
    pub waiting_seconds: u64,
}

/// A key let in without asking, until a moment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Standing {
    /// The key.
    pub key: String,
    /// Until when (RFC 3339 UTC).
    pub until: String,
    /// Who gave it.
    pub by: String,
}

/// What `GET /approvals` answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Listing {
    /// The requests waiting, oldest first.
    pub waiting: Vec<Waiting>,
    /// The standing approvals in force.
    pub standing: Vec<Standing>,
}

/// An administrator's answer.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Let it in; with `standing`, let the same key in without asking for that long.
    Approve {
        /// Who.
        by: String,
        /// For how long the key needs no approval.
        standing: Option<Duration>,
    },
    /// Refuse it.
    Deny {
        /// Who.
        by: String,
    },
}

/// How a wait ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Approved, by whom (or by whose standing approval).
    Approved(String),
    /// Denied, by whom.
    Denied(String),
    /// Nobody answered in time.
    TimedOut,
    /// Too many requests wait already.
    Full,
    /// The policy refused it while it waited (the kill switch, the window's end, ...).
    Refused(crate::policy::Denied),
}

/// Why an answer was not taken.
#[derive(Debug, thiserror::Error)]
pub enum NotTaken {
    /// No request waits under that id (answered already, timed out, refused meanwhile).
    #[error("no session waits for approval as '{0}'; arcgate status lists those that do")]
    NotWaiting(String),
    /// A standing approval for a session without a key of the gate's own.
    #[error(
        "session '{0}' came through a relay without a gate token: a standing approval needs a \
         key of the gate's own; approve it without --for-key"
    )]
    NoKeyToStand(String),
}

/// A request to hold.
#[derive(Debug)]
pub(crate) struct Asking<'a> {
    pub(crate) session: &'a str,
    pub(crate) peer: &'a str,
    pub(crate) key: &'a str,
    pub(crate) port: u16,
    /// The secret that signed its token (`Grant::secret_id`); `None`: the relay's word.
    pub(crate) secret: Option<[u8; 32]>,
    /// How long it may wait (the gate's timeout, or less through a relay).
    pub(crate) wait: Duration,
}

struct Held {
    info: Waiting,
    since: Instant,
    secret: Option<[u8; 32]>,
    answer: oneshot::Sender<Answer>,
}

struct Given {
    key: String,
    secret: [u8; 32],
    until: Instant,
    until_wall: SystemTime,
    by: String,
}

/// See the module header.
pub(crate) struct Approvals {
    held: Mutex<BTreeMap<String, Held>>,
    standing: Mutex<Vec<Given>>,
    max_waiting: usize,
    timeout: Duration,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("max_waiting", &self.max_waiting)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Takes a held request out of the table when its wait ends however it ends (an answer, the
/// timeout, or the client going away and the admission future being dropped).
struct Unhold<'a>(&'a Approvals, String);

impl Drop for Unhold<'_> {
    fn drop(&mut self) {
        lock(&self.0.held).remove(&self.1);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Approvals {
    pub(crate) fn new(max_waiting: usize, timeout: Duration) -> Approvals {
        Approvals {
            held: Mutex::new(BTreeMap::new()),
            standing: Mutex::new(Vec::new()),
            max_waiting,
            timeout,
        }
    }

    /// How long a request may wait at most (`serve --approval-timeout`).
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Holds a request until it is answered, its wait runs out, or `refused` resolves (the
    /// policy refused it meanwhile).
    pub(crate) async fn ask(
        &self,
        asking: Asking<'_>,
        refused: impl std::future::Future<Output = crate::policy::Denied>,
    ) -> Outcome {
        let Asking {
            session,
            peer,
            key,
            port,
            secret,
            wait,
        } = asking;
        if let Some(by) = secret.and_then(|s| self.standing_for(key, s)) {
            return Outcome::Approved(format!("{by} (standing approval for key '{key}')"));
        }
        let (tx, mut rx) = oneshot::channel();
        let id = {
            let mut held = lock(&self.held);
            if held.len() >= self.max_waiting {
                return Outcome::Full;
            }
            // Short enough to type; 32 random bits, drawn again on the rare collision.
            let id = loop {
                let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
                if !held.contains_key(&id) {
                    break id;
                }
            };
            held.insert(
                id.clone(),
                Held {
                    info: Waiting {
                        id: id.clone(),
                        session: session.to_string(),
                        peer: peer.to_string(),
                        key: key.to_string(),
                        port,
                        waiting_seconds: 0,
                    },
                    since: Instant::now(),
                    secret,
                    answer: tx,
                },
            );
            id
        };
        let _unhold = Unhold(self, id.clone());
        tracing::warn!(
            approval = %id,
            peer,
            key,
            port,
            timeout_s = wait.as_secs(),
            "session waits for approval: arcgate sessions approve {id} (or deny {id})"
        );
        let ended = tokio::select! {
            answer = &mut rx => return self.answered(answer.ok(), key, secret),
            () = tokio::time::sleep(wait) => Outcome::TimedOut,
            denied = refused => Outcome::Refused(denied),
        };
        // The wait ran out: unless an answer took the entry in this instant (then it is on
        // its way, and counts), nobody can answer it any more.
        if lock(&self.held).remove(&id).is_some() {
            return ended;
        }
        self.answered(rx.await.ok(), key, secret)
    }

    fn answered(&self, answer: Option<Answer>, key: &str, secret: Option<[u8; 32]>) -> Outcome {
        match answer {
            Some(Answer::Approve { by, standing }) => {
                if let (Some(d), Some(secret)) = (standing, secret) {
                    self.stand(key, secret, d.min(MAX_STANDING), &by);
                }
                Outcome::Approved(by)
            }
            Some(Answer::Deny { by }) => Outcome::Denied(by),
            None => Outcome::TimedOut,
        }
    }

    /// Answers the request waiting as `id`.
    pub(crate) fn answer(&self, id: &str, answer: Answer) -> Result<Waiting, NotTaken> {
        let mut table = lock(&self.held);
        let not_waiting = || NotTaken::NotWaiting(crate::config::shorten(id));
        let held = table.get(id).ok_or_else(not_waiting)?;
        if matches!(
            answer,
            Answer::Approve {
                standing: Some(_),
                ..
            }
        ) && held.secret.is_none()
        {
            return Err(NotTaken::NoKeyToStand(held.info.session.clone()));
        }
        let held = table.remove(id).ok_or_else(not_waiting)?;
        drop(table);
        let mut info = held.info;
        info.waiting_seconds = held.since.elapsed().as_secs();
        // Taken out of the table under its lock: the waiting side, if its wait ran out in
        // this instant, finds it gone and takes this answer. A client that went away gets
        // none, and then nobody was let in.
        held.answer.send(answer).map_err(|_| not_waiting())?;
        Ok(info)
    }

    /// What waits, oldest first, and the standing approvals in force.
    pub(crate) fn listing(&self) -> Listing {
        let mut waiting: Vec<(Instant, Waiting)> = lock(&self.held)
            .values()
            .map(|h| {
                let mut w = h.info.clone();
                w.waiting_seconds = h.since.elapsed().as_secs();
                (h.since, w)
            })
            .collect();
        waiting.sort_by_key(|(since, _)| *since);
        let now = Instant::now();
        let standing = lock(&self.standing)
            .iter()
            .filter(|g| g.until > now)
            .map(|g| Standing {
                key: g.key.clone(),
                until: crate::config::format_utc(g.until_wall),
                by: g.by.clone(),
            })
            .collect();
        Listing {
            waiting: waiting.into_iter().map(|(_, w)| w).collect(),
            standing,
        }
    }

    fn standing_for(&self, key: &str, secret: [u8; 32]) -> Option<String> {
        let now = Instant::now();
        let mut standing = lock(&self.standing);
        standing.retain(|g| g.until > now);
        standing
            .iter()
            .find(|g| g.key == key && g.secret == secret)
            .map(|g| g.by.clone())
    }

    fn stand(&self, key: &str, secret: [u8; 32], d: Duration, by: &str) {
        let mut standing = lock(&self.standing);
        standing.retain(|g| g.key != key);
        standing.push(Given {
            key: key.to_string(),
            secret,
            until: Instant::now() + d,
            until_wall: SystemTime::now() + d,
            by: by.to_string(),
        });
    }

    /// Withdraws the standing approvals (`incomingconnections.approval` switched off and on
    /// again must ask again); true when there were some.
    pub(crate) fn withdraw_standing(&self) -> bool {
        let mut standing = lock(&self.standing);
        let had = !standing.is_empty();
        standing.clear();
        had
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asking(session: &str, key: &str, wait_ms: u64) -> Asking<'static> {
        Asking {
            session: Box::leak(session.to_string().into_boxed_str()),
            peer: "p",
            key: Box::leak(key.to_string().into_boxed_str()),
            port: 22,
            secret: Some([7; 32]),
            wait: Duration::from_millis(wait_ms),
        }
    }

    fn never() -> impl std::future::Future<Output = crate::policy::Denied> {
        std::future::pending()
    }

    #[tokio::test]
    async fn a_wait_ends_with_its_answer_its_timeout_a_refusal_or_a_full_table() {
        let approvals = std::sync::Arc::new(Approvals::new(1, Duration::from_secs(60)));
        // Timed out: nobody answers.
        assert_eq!(
            approvals.ask(asking("s1", "ops", 200), never()).await,
            Outcome::TimedOut
        );
        assert!(
            approvals.listing().waiting.is_empty(),
            "the timed-out one is gone"
        );
        // Refused meanwhile: the policy's word ends the wait.
        let refused = async { crate::policy::Denied::IncomingDisabled };
        assert_eq!(
            approvals.ask(asking("s0", "ops", 60_000), refused).await,
            Outcome::Refused(crate::policy::Denied::IncomingDisabled)
        );

        // Answered: it is listed while it waits, and approve lets it in.
        let asking_task = {
            let a = approvals.clone();
            tokio::spawn(async move { a.ask(asking("s2", "ops", 60_000), never()).await })
        };
        let id = loop {
            if let Some(w) = approvals.listing().waiting.first() {
                break w.id.clone();
            }
            tokio::task::yield_now().await;
        };
        // Only one may wait.
        assert_eq!(
            approvals.ask(asking("s3", "ops", 60_000), never()).await,
            Outcome::Full
        );
        let info = approvals
            .answer(
                &id,
                Answer::Approve {
                    by: "root".into(),
                    standing: Some(Duration::from_secs(3600)),
                },
            )
            .unwrap();
        assert_eq!((info.session.as_str(), info.port), ("s2", 22));
        assert_eq!(asking_task.await.unwrap(), Outcome::Approved("root".into()));
        assert!(
            approvals
                .answer(&id, Answer::Deny { by: "root".into() })
                .is_err()
        );

        // The standing approval lets the key in without asking — with the same secret only;
        // another key, or the key re-keyed, still waits.
        assert_eq!(
            approvals.ask(asking("s4", "ops", 60_000), never()).await,
            Outcome::Approved("root (standing approval for key 'ops')".into())
        );
        assert_eq!(approvals.listing().standing[0].key, "ops");
        assert_eq!(
            approvals.ask(asking("s5", "other", 100), never()).await,
            Outcome::TimedOut
        );
        let rekeyed = Asking {
            secret: Some([8; 32]),
            ..asking("s6", "ops", 100)
        };
        assert_eq!(approvals.ask(rekeyed, never()).await, Outcome::TimedOut);
        assert!(approvals.withdraw_standing());
        assert_eq!(
            approvals.ask(asking("s7", "ops", 100), never()).await,
            Outcome::TimedOut
        );
    }
}
