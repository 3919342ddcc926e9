//! Named deadlines: every phase of a connection (TLS handshake, local dial, client
//! handshake) runs under one, and a timeout says which phase it was.

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
