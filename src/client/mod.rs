//! The clients: `arcgate connect` (what OpenSSH runs as its `ProxyCommand`; stdout carries
//! tunnel bytes only) and `arcgate forward` (a local port, one tunnel per connection),
//! `arcgate ssh-config`, and the client profiles `arcgate ssh` uses.
//!
//! Owns SPEC §6 for the client: where the URL and token come from (flags, files, the agent's
//! relay-info form), turning a refusal into one line a person understands and an exit code a
//! script can test, and each session between local bytes and the WebSocket. Dialling (TCP,
//! proxy, TLS, upgrade) is `transport::dial`'s, URL parsing `hc::url`'s.

pub mod connect;
pub mod error;
pub mod forward;
pub mod profile;
pub mod relay_info;
pub mod sshconfig;
pub mod stdio;

pub use connect::{ConnectOptions, Connector, TokenSource, Tunnel, read_token_file};
pub use error::{ClientError, exit};
pub use relay_info::{RelayInfo, parse_relay_info};

/// How diagnostics are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One plain line per event.
    #[default]
    Human,
    /// JSON lines, the agent client's shape.
    Json,
}
