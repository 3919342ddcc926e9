//! Named deadlines: every phase of a connection (TLS handshake, local dial, client
//! handshake) runs under one, and a timeout says which phase it was. Also the one reading of
//! the wall clock as Unix seconds, for token expiries.

use std::future::Future;
use std::time::Duration;

/// A phase did not finish in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{phase} timed out after {after:?}")]
pub struct TimedOut {
    /// What was being done.
    pub phase: &'static str,
    /// The deadline.
    pub after: Duration,
}

/// Runs `fut` for at most `after`; the error names `phase`.
pub async fn within<T>(
    phase: &'static str,
    after: Duration,
    fut: impl Future<Output = T>,
) -> Result<T, TimedOut> {
    tokio::time::timeout(after, fut)
        .await
        .map_err(|_| TimedOut { phase, after })
}

/// Seconds since the Unix epoch: the clock tokens' expiries are checked against (and minted
/// with). 0 if the clock is before 1970, which makes every token expired.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
