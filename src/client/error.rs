//! How `connect` and `forward` fail: [`ClientError`], its one line for a person, its JSON
//! lines in the agent client's shape, and its exit code — each chosen in one function.

use crate::hc::url::UrlError;
use crate::state::TokenFileError;
use crate::token::TokenProblem;
use crate::transport::dial::DialError;
use crate::transport::proxy::ProxyError;
use crate::transport::tls::TlsError;

/// Exit codes of `arcgate connect`, one per kind of failure, documented in `--help`.
pub mod exit {
    /// The session ended normally.
    pub const OK: u8 = 0;
    /// Anything not listed below.
    pub const OTHER: u8 = 1;
    /// Bad arguments or input (URL, token, relay info).
    pub const USAGE: u8 = 2;
    /// `403 connection not allowed`: the host's policy refused.
    pub const FORBIDDEN: u8 = 3;
    /// `401 Unauthorized`: the token was not accepted.
    pub const UNAUTHORIZED: u8 = 4;
    /// `404 Endpoint does not exist`: the gate does not answer to that name.
    pub const NOT_FOUND: u8 = 5;
    /// `503`: the local service is down, or the gate is overloaded or misconfigured.
    pub const UNAVAILABLE: u8 = 6;
    /// Another HTTP answer (400, ...).
    pub const HTTP_OTHER: u8 = 7;
    /// TLS failed: untrusted certificate, name mismatch.
    pub const TLS: u8 = 8;
    /// The gate could not be reached: DNS, refused, timeout.
    pub const NETWORK: u8 = 9;
    /// The session was established and then ended abnormally (dropped, revoked).
    pub const SESSION_LOST: u8 = 10;
}

/// Why `connect` failed. The `Display` form is the one line printed after `arcgate: `.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Something the command needs was not given.
    #[error("{0}")]
    Missing(&'static str),
    /// The URL cannot be used.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The token file cannot be used.
    #[error(transparent)]
    TokenFile(#[from] TokenFileError),
    /// The relay information cannot be used.
    #[error("relay information: {0}")]
    RelayInfo(String),
    /// The profile cannot be used.
    #[error(transparent)]
    Profile(#[from] crate::client::profile::ProfileError),
    /// A token the client holds would be refused: said before dialling.
    #[error("{which}: {problem}")]
    Token {
        /// `token`, or `gate token`.
        which: &'static str,
        /// Why.
        problem: TokenProblem,
    },
    /// The CA files cannot be used.
    #[error(transparent)]
    Trust(#[from] TlsError),
    /// The proxy environment variables cannot be used.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// The process could not set itself up (runtime, signal handlers).
    #[error("cannot {what}: {source}")]
    Setup {
        /// What it was doing.
        what: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The gate answered with something other than 101.
    #[error("{name} refused the connection: {status} {reason}{}", explain(.status, .detail))]
    Refused {
        /// The gate name.
        name: String,
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: String,
        /// The explanation from the body (403 reason, 503 detail).
        detail: Option<String>,
    },
    /// The gate could not be reached, TLS failed, or it did not answer as a gate: the
    /// dialer's own words.
    #[error(transparent)]
    Dial(DialError),
    /// The session ended abnormally.
    #[error("{0}")]
    SessionLost(String),
    /// A signal came before the tunnel was open: nothing was established.
    #[error("{0}")]
    Interrupted(String),
}

fn explain(status: &u16, detail: &Option<String>) -> String {
    match detail {
        Some(d) => format!(" ({d})"),
        None => match status {
            401 => " (the token was not accepted: check that it is current and was made for this host; `arcgate token` on the host mints one)".to_string(),
            404 => " (the gate does not answer to this name; check the name after /$hc/ in the URL)".to_string(),
            _ => String::new(),
        },
    }
}

impl ClientError {
    /// The exit code: the one place a client failure becomes a number.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Missing(_)
            | ClientError::Url(_)
            | ClientError::TokenFile(_)
            | ClientError::RelayInfo(_)
            | ClientError::Profile(_)
            | ClientError::Trust(_)
            | ClientError::Proxy(_)
            | ClientError::Dial(DialError::BadName { .. }) => exit::USAGE,
            ClientError::Setup { .. } => exit::OTHER,
            ClientError::Token { problem, .. } if problem.is_malformed() => exit::USAGE,
            ClientError::Token { .. } => exit::UNAUTHORIZED,
            ClientError::Refused { status, .. } => Self::refused_code(*status),
            ClientError::Dial(DialError::Tls { .. }) => exit::TLS,
            ClientError::Dial(DialError::Network { .. }) => exit::NETWORK,
            ClientError::Dial(DialError::Protocol(_)) | ClientError::Interrupted(_) => exit::OTHER,
            ClientError::Dial(DialError::Refused { status, .. }) => Self::refused_code(*status),
            ClientError::SessionLost(_) => exit::SESSION_LOST,
        }
    }

    /// The lines `--log-format json` prints, in the agent client's shape.
    pub fn json_lines(&self, url: &str) -> Vec<String> {
        let version = env!("CARGO_PKG_VERSION");
        let line = |level: &str, msg: String| {
            serde_json::json!({"level": level, "msg": msg, "proxyVersion": version}).to_string()
        };
        match self {
            ClientError::Refused { status, reason, .. } => vec![
                line(
                    "error",
                    format!(
                        "error connecting to {url}. {status} {reason}. websocket: bad handshake "
                    ),
                ),
                line(
                    "fatal",
                    format!(
                        "sshproxy: error connecting to the address: {status} {reason}. websocket: bad handshake"
                    ),
                ),
            ],
            other => vec![line(
                "fatal",
                format!("sshproxy: error connecting to the address: {other}"),
            )],
        }
    }
}

impl ClientError {
    /// A dial's failure, for gate `name`: a refusal is told in the gate's name.
    pub fn dialling(name: &str, e: DialError) -> ClientError {
        match e {
            DialError::Refused {
                status,
                reason,
                detail,
            } => ClientError::Refused {
                name: name.to_string(),
                status,
                reason,
                detail,
            },
            other => ClientError::Dial(other),
        }
    }

    fn refused_code(status: u16) -> u8 {
        match status {
            403 => exit::FORBIDDEN,
            401 => exit::UNAUTHORIZED,
            404 => exit::NOT_FOUND,
            503 => exit::UNAVAILABLE,
            _ => exit::HTTP_OTHER,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_lines_and_exit_codes() {
        let e = ClientError::Refused {
            name: "myhost".into(),
            status: 403,
            reason: "connection not allowed".into(),
            detail: Some("port 22 is not in incomingconnections.ports on the host".into()),
        };
        assert_eq!(
            e.to_string(),
            "myhost refused the connection: 403 connection not allowed (port 22 is not in incomingconnections.ports on the host)"
        );
        assert_eq!(e.exit_code(), exit::FORBIDDEN);
        let lines = e.json_lines("wss://g/$hc/myhost");
        let fatal: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(fatal["level"], "fatal");
        assert_eq!(
            fatal["msg"],
            "sshproxy: error connecting to the address: 403 connection not allowed. websocket: bad handshake"
        );
    }
}
