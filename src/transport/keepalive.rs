//! The one keepalive rule, for every WebSocket we hold open — a session's bridge, the relay's
//! control channel to each listener and the gate's control channel to its relay: after an
//! interval in which nothing was heard from the peer, ping it; after `limit` such pings in a
//! row went unanswered (nothing heard since), the peer is gone.
//!
//! Anything heard counts as an answer (data, a ping, a pong, a control message): a peer
//! busy sending is plainly alive, and pinging it would only add frames.

use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior};

/// What to do at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Beat {
    /// The peer was heard since the last tick: nothing to do.
    Heard,
    /// Nothing heard: send a ping.
    Ping,
    /// `limit` pings in a row went unanswered: the peer is gone.
    Gone,
}

/// One connection's keepalive.
#[derive(Debug)]
pub(crate) struct Keepalive {
    ticker: Interval,
    limit: u32,
    missed: u32,
    last_heard: u64,
}

impl Keepalive {
    /// Ticks every `every` (the first one `every` from now); gone after `limit` unanswered
    /// pings. Zero means never (`--ping-interval 0`).
    pub(crate) fn new(every: Duration, limit: u32) -> Keepalive {
        let every = match every.is_zero() {
            true => Duration::from_secs(86400 * 365),
            false => every,
        };
        let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Keepalive {
            ticker,
            limit,
            missed: 0,
            last_heard: 0,
        }
    }

    /// Waits for the next tick and says what to do; `heard` tells, at the tick, how much has
    /// been heard from the peer so far (any count that grows when something arrives: read at
    /// the tick, not before the wait, since the peer may be heard by another task meanwhile).
    /// Cancel-safe.
    pub(crate) async fn tick(&mut self, heard: impl FnOnce() -> u64) -> Beat {
        self.ticker.tick().await;
        self.judge(heard())
    }

    fn judge(&mut self, heard: u64) -> Beat {
        if heard != self.last_heard {
            (self.last_heard, self.missed) = (heard, 0);
            return Beat::Heard;
        }
        if self.missed >= self.limit {
            return Beat::Gone;
        }
        self.missed += 1;
        Beat::Ping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn silence_pings_then_gives_up_and_anything_heard_starts_over() {
        let mut k = Keepalive::new(Duration::from_secs(1), 2);
        assert_eq!(k.judge(0), Beat::Ping);
        assert_eq!(k.judge(0), Beat::Ping);
        assert_eq!(k.judge(1), Beat::Heard, "an answer resets the count");
        assert_eq!(k.judge(1), Beat::Ping);
        assert_eq!(k.judge(1), Beat::Ping);
        assert_eq!(k.judge(1), Beat::Gone, "two unanswered pings in a row");
    }
}
