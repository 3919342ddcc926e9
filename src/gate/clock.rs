//! The gate's clock for the policy: the wall clock, except that it never goes back. An access
//! window's end is a wall-clock moment (it must survive a restart), but a clock stepped back
//! while the gate runs must not extend it. So the clock keeps the highest "wall time minus
//! monotonic time" it has seen and reads that plus the monotonic time now: a step forward is
//! followed (windows close early for new requests, the safe way), a step back is not. The
//! cost: a clock that was ahead when seen and is then corrected back keeps the gate ahead
//! until it restarts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// See the module header.
#[derive(Debug, Clone)]
pub(crate) struct Clock {
    at_start: Instant,
    /// The highest wall time, in nanoseconds since 1970, seen at the monotonic start.
    base: Arc<AtomicU64>,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            at_start: Instant::now(),
            base: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Now, for the policy.
    pub(crate) fn now(&self) -> SystemTime {
        let elapsed = self.at_start.elapsed();
        let wall = nanos(SystemTime::now());
        let seen = self
            .base
            .fetch_max(never_back_base(wall, elapsed), Ordering::Relaxed)
            .max(never_back_base(wall, elapsed));
        UNIX_EPOCH + Duration::from_nanos(seen) + elapsed
    }

    /// How long until `moment`, on this clock (zero when it has come).
    pub(crate) fn until(&self, moment: SystemTime) -> Duration {
        moment.duration_since(self.now()).unwrap_or_default()
    }
}

fn nanos(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The start, as this wall reading puts it: wall time minus the monotonic time since.
fn never_back_base(wall: u64, elapsed: Duration) -> u64 {
    wall.saturating_sub(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clock's reading after these (wall, elapsed) observations.
    fn reading(observations: &[(u64, u64)]) -> u64 {
        let mut base = 0;
        let mut last = 0;
        for &(wall, elapsed) in observations {
            base = base.max(never_back_base(
                wall * 1_000_000_000,
                Duration::from_secs(elapsed),
            ));
            last = base + elapsed * 1_000_000_000;
        }
        last / 1_000_000_000
    }

    #[test]
    fn a_clock_stepped_back_does_not_take_the_policy_back() {
        let start = 1_800_000_000;
        // In step: the wall clock.
        assert_eq!(reading(&[(start, 0), (start + 60, 60)]), start + 60);
        // Stepped back an hour a minute after start: still a minute after start, so a
        // window ending then is not reopened.
        assert_eq!(reading(&[(start, 0), (start + 60 - 3600, 60)]), start + 60);
        // Stepped forward (NTP after a boot behind), then back: the forward step holds.
        let forward = [(start, 0), (start + 3600 + 10, 10), (start + 20, 20)];
        assert_eq!(reading(&forward), start + 3600 + 20);
    }

    #[test]
    fn the_clock_reads_the_wall_clock_when_it_is_right() {
        let clock = Clock::new();
        let now = clock.now();
        let wall = SystemTime::now();
        let gap = wall.duration_since(now).unwrap_or_else(|e| e.duration());
        assert!(gap < Duration::from_secs(1), "{gap:?}");
        assert!(clock.now() >= now, "never back");
    }
}
