//! arcgate: an incoming-connection gatekeeper for managed hosts.
//!
//! Remote SSH and RDP sessions arrive as WebSocket connect requests over TLS; the gate decides
//! each against a local policy only the host's administrator can change, and either refuses it
//! (`403 connection not allowed`) or bridges it to the local service.
//!
//! The map: folders per role, and a folder imports only from the layers below its own
//! (within the middle layer, `transport` speaks `hc`'s wire protocol; nothing else there
//! imports sideways):
//!
//! | layer | folder | owns |
//! |---|---|---|
//! | roles | [`gate`] | `serve`: admission, sessions, the relay-listener role, admin, audit, metrics |
//! | | [`client`] | `connect` and `forward`, URL and relay-info parsing, exit codes, `ssh-config` |
//! | | [`relay`] | `arcgate relay`: the embedded Hybrid Connections relay |
//! | I/O below the roles | [`transport`] | TLS, WebSocket framing, the bridge, deadlines, accepting, dialling, proxies |
//! | | [`state`] | the files in force: where they live, who may own them, reloading them |
//! | | [`hc`] | the Hybrid Connections wire protocol: requests, control messages, answers |
//! | pure core | [`policy`] | the allow/deny decision for a connection, and the extension rule |
//! | | [`config`] | the configuration keys, their types and defaults, the one value parser |
//! | | [`token`] | SAS access tokens: format, keys file contents, verification |
//!
//! The command line (clap, signals, logging, binding sockets) is the binary's, in `src/cli/`,
//! and may use any of these. `tests/layout.rs` checks the direction on the source: the roles
//! never import each other, no folder imports from a layer above its own, the pure core and
//! `hc` never use tokio, and no two modules of `transport` import each other.

/// This build's version and the commit it was built from (`build.rs`), for `--version` and
/// `arcgate status`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("ARCGATE_COMMIT"),
    ")"
);

pub mod client;
pub mod config;
pub mod gate;
pub mod hc;
pub mod policy;
pub mod relay;
pub mod state;
pub mod token;
pub mod transport;
