//! arcgate: an incoming-connection gatekeeper for managed hosts.
//!
//! Remote SSH and RDP sessions arrive as WebSocket connect requests over TLS; the gate decides
//! each against a local policy only the host's administrator can change, and either refuses it
//! (`403 connection not allowed`) or bridges it to the local service. The map:
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | the configuration keys, their types, defaults and the one value parser |
//! | [`store`] | where the files live, who may own them, atomic writes |
//! | [`policy`] | the pure allow/deny decision for a connection |
//! | [`extension`] | the pure extension install rule |
//! | [`token`] | SAS access tokens: format, keys file contents, verification |
//! | [`request`] | the connect request: HTTP head → typed request, or 400 |
//! | [`live`] | the snapshot in force and reloading it on change |
//! | [`server`] | TLS accept, the answers table, sessions |
//! | [`sessions`] | the live session table and the session limits |
//! | [`audit`] | audit records: the log and the `--audit-log` file |
//! | [`metrics`] | Prometheus metrics |
//! | [`admin`] | the loopback admin endpoint and `arcgate status` |
//! | [`ws`] | WebSocket framing for the data path |
//! | [`bridge`] | one session: WebSocket ⇄ local stream, half-close, pings, close codes |
//! | [`client`] | `arcgate connect`: URL, token, TLS, handshake, refusals |
//! | [`forward`] | `arcgate forward`: a local listener, one tunnel per connection |
//! | [`proxy`] | outbound HTTP CONNECT proxies and their bypass rules |
//! | [`readahead`] | clients' large socket reads under TLS while data streams, none while idle |
//! | [`relay`] | `arcgate relay`: the embedded Hybrid Connections relay |
//! | [`listener`] | relay mode's gate side: the listener control channel and accepts |
//! | [`stdio`] | `connect`'s standard input and output: pipes without a blocking thread |
//! | [`sshconfig`] | `arcgate ssh-config`: a Host block with safe quoting |
//! | [`tls`] | TLS configurations |
//! | [`tlsserver`] | the gate's TLS streams: rustls' unbuffered connection, buffers freed while idle |
//! | [`deadline`] | named timeouts for every phase |
//! | [`net`] | accepting connections without spinning on errors |
//! | [`linger`] | lingering close, so that refusals reach clients that were still sending |
//! | [`cli`] | the command line; the only place that binds sockets and handles signals |

pub mod admin;
pub mod audit;
pub mod bridge;
pub mod cli;
pub mod client;
pub mod config;
pub mod deadline;
pub mod extension;
pub mod forward;
pub mod linger;
pub mod listener;
pub mod live;
pub mod metrics;
pub mod net;
pub mod policy;
pub mod proxy;
pub mod readahead;
pub mod relay;
pub mod request;
pub mod server;
pub mod sessions;
pub mod sshconfig;
pub mod stdio;
pub mod store;
pub mod tls;
pub mod tlsserver;
pub mod token;
pub mod ws;
