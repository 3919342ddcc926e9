//! The command line: clap definitions and what each subcommand does with the library.
//!
//! This is the only module that binds sockets, installs signal handlers, reads the clock for
//! tokens and prints to stdout; everything it calls takes those as arguments. Errors are
//! returned typed; `main` turns them into exit codes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use arcgate::client::forward::Forwarder;
use arcgate::client::sshconfig::{HostBlock, render as render_host_block};
use arcgate::client::{self, ClientError, ConnectOptions, Connector, LogFormat, TokenSource};
use arcgate::config::{Change, ConfigError, ExtensionName, KEYS, Key, Raw};
use arcgate::gate::audit::Audit;
use arcgate::gate::relay_listener::{ListenToken, ListenerOptions};
use arcgate::gate::{self, Gate, GateOptions};
use arcgate::state::live::{self, Paths};
use arcgate::state::store;
use arcgate::token::{self, KeySet};
use arcgate::transport::bridge::BridgeConfig;
use arcgate::transport::proxy::Proxy;
use arcgate::transport::tls::CertStore;
use arcgate::transport::tls::ClientTrust;

/// arcgate: incoming SSH/RDP connections, decided by a local policy only this host's
/// administrator can change.
#[derive(Debug, Parser)]
#[command(name = "arcgate", version, about, max_term_width = 100)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gate: TLS WebSocket endpoint, policy, bridge to 127.0.0.1:PORT.
    Serve(Box<ServeArgs>),
    /// Show or change the local configuration (same keys and output as `azcmagent config`).
    Config(ConfigArgs),
    /// Extension rules (extensions.enabled / allowlist / blocklist).
    Extension(ExtensionArgs),
    /// Mint an access token from a key in the keys file.
    Token(TokenArgs),
    /// Connect stdin/stdout to a port on a host through its gate (an OpenSSH ProxyCommand).
    #[command(after_help = CONNECT_EXIT_CODES)]
    Connect(ConnectArgs),
    /// Listen locally; every accepted connection becomes one tunnel (RDP, or any allowed port).
    #[command(after_help = CONNECT_EXIT_CODES)]
    Forward(ForwardArgs),
    /// Print a Host block for ~/.ssh/config that connects through the gate.
    SshConfig(SshConfigArgs),
    /// Show the policy in force and the live sessions of a running gate (needs its --admin).
    Status(StatusArgs),
    /// Run an embedded Hybrid Connections relay (gates attach with serve --relay).
    Relay(RelayArgs),
}

const CONNECT_EXIT_CODES: &str = "\
Exit codes:
  0   the session ended normally
  1   other error
  2   bad arguments or input (URL, token, relay information)
  3   403 connection not allowed: the host's policy refused
  4   401 Unauthorized: the token was not accepted
  5   404 Endpoint does not exist: the gate does not answer to that name
  6   503: the local service is down, or the gate is overloaded or misconfigured
  7   another HTTP answer (400, ...)
  8   TLS failed: untrusted certificate or name mismatch
  9   the gate (or the proxy) could not be reached: DNS, refused, timeout, CONNECT refused
  10  the session was established and then dropped or revoked";

/// Where the configuration is.
#[derive(Debug, Clone, Args)]
pub struct ConfigPathArg {
    /// Configuration file [default: /var/opt/arcgate/localconfig.json as root, else
    /// $XDG_CONFIG_HOME/arcgate/localconfig.json].
    #[arg(
        long = "config",
        env = "ARCGATE_CONFIG",
        global = true,
        value_name = "PATH"
    )]
    pub path: Option<PathBuf>,
}

impl ConfigPathArg {
    fn resolve(&self) -> PathBuf {
        store::config_path(self.path.as_deref())
    }
}

/// `arcgate serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Certificate chain (PEM).
    #[arg(long, default_value = "certs-dev/server.pem", value_name = "PEM")]
    pub cert: PathBuf,
    /// Private key (PEM).
    #[arg(long, default_value = "certs-dev/server-key.pem", value_name = "PEM")]
    pub key: PathBuf,
    /// The name this gate answers to in /$hc/{name} [default: the host name].
    #[arg(long)]
    pub name: Option<String>,
    /// Only accept tokens whose resource names this host.
    #[arg(long, value_name = "HOST")]
    pub public_host: Option<String>,
    /// Keys file [default: keys.json beside the configuration file].
    #[arg(long, value_name = "PATH")]
    pub keys: Option<PathBuf>,
    /// Ping a session's client after this long without hearing from it.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// Drop a client after this many unanswered pings (a client that takes no bytes for
    /// ping interval × (this + 1) is dropped too).
    #[arg(long, default_value_t = 3)]
    pub missed_pongs: u32,
    /// Close a session after this long with no data either way [default: never; SSH has its
    /// own keepalives].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub idle_timeout: Option<Duration>,
    /// TCP accept, TLS and the HTTP request must finish within this.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// How long dialling the local service may take.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub dial_timeout: Duration,
    /// Largest request head, in bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
    /// Largest WebSocket frame accepted, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_frame_bytes: u64,
    /// Concurrent sessions.
    #[arg(long, default_value_t = 10_000)]
    pub max_sessions: usize,
    /// Concurrent sessions from one IP address.
    #[arg(long, default_value_t = 256)]
    pub max_sessions_per_ip: usize,
    /// Connections still in their TLS or HTTP handshake from one source (an IPv4 address or
    /// an IPv6 /64); more are closed at once. Real clients finish a handshake in
    /// milliseconds, so 64 at a time is far above what one host needs, and far below the
    /// total (--max-sessions), which one flooding source could otherwise hold.
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    pub max_handshakes_per_ip: usize,
    /// On SIGTERM/SIGINT, how long sessions may continue before they are closed with 1001.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// Serve /metrics, /healthz and /sessions over plain HTTP on this loopback address.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Also append audit records to this file as JSON lines (reopened on SIGHUP).
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Relay mode: attach to this Hybrid Connections relay as a listener,
    /// wss://RELAY/$hc/NAME (single-quote it for $hc).
    #[arg(long, value_name = "URL")]
    pub relay: Option<String>,
    /// The listen token for --relay, from a file (a change is sent to the relay as renewToken).
    #[arg(long, value_name = "FILE", conflicts_with = "relay_key")]
    pub relay_token_file: Option<PathBuf>,
    /// Mint the listen token for --relay from this key in the keys file.
    #[arg(long, value_name = "NAME")]
    pub relay_key: Option<String>,
    /// Lifetime of minted listen tokens; each is renewed (renewToken) at 80% of it.
    #[arg(long, default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    pub relay_token_ttl: Duration,
    /// Extra CA certificate (PEM) trusted for the relay's certificate; repeatable.
    #[arg(long, value_name = "FILE")]
    pub relay_ca: Vec<PathBuf>,
    /// With --relay: how long connecting to the relay may take (TCP, proxy, TLS and the
    /// WebSocket handshake together), for the control channel and for each rendezvous.
    #[arg(long, default_value = "15s", value_parser = parse_duration, value_name = "DURATION")]
    pub relay_connect_timeout: Duration,
    /// With --relay: no inbound listening socket at all, and so no certificate (--cert, --key
    /// and --listen are refused with it).
    #[arg(long, requires = "relay", conflicts_with_all = ["cert", "key", "listen"])]
    pub relay_only: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigPathArg,
}

/// `arcgate relay`.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:9443", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Certificate chain (PEM).
    #[arg(long, default_value = "certs-dev/server.pem", value_name = "PEM")]
    pub cert: PathBuf,
    /// Private key (PEM).
    #[arg(long, default_value = "certs-dev/server-key.pem", value_name = "PEM")]
    pub key: PathBuf,
    /// Keys file: SAS keys with optional "rights": ["listen"], ["send"] (default: both).
    #[arg(long, value_name = "PATH")]
    pub keys: PathBuf,
    /// TLS and the HTTP request head must arrive within this.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// Largest request head, in bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
    /// Largest WebSocket frame relayed, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_frame_bytes: u64,
    /// Ping listeners' control channels this often.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// Concurrent connections (listeners, senders, rendezvous).
    #[arg(long, default_value_t = 20_000)]
    pub max_connections: usize,
    /// Connections in their TLS or HTTP handshake from one source (an IPv4 address or an
    /// IPv6 /64); more are closed unanswered. The same rule as `serve`'s.
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    pub max_handshakes_per_ip: usize,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

/// `arcgate status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The gate's admin address (its --admin).
    #[arg(long, env = "ARCGATE_ADMIN", value_name = "ADDR")]
    pub admin: SocketAddr,
    /// JSON output: {"health": ..., "sessions": [...]}.
    #[arg(long)]
    pub json: bool,
}

/// `arcgate config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ConfigAction,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigPathArg,
}

/// `arcgate config` actions.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print every key and its value.
    List {
        /// JSON output.
        #[arg(short, long)]
        json: bool,
    },
    /// Print one key's value.
    Get {
        /// The key.
        key: String,
        /// JSON output.
        #[arg(short, long)]
        json: bool,
    },
    /// Set a key (lists: comma-separated; replaces the list unless --add/--remove).
    Set {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Add to a list key instead of replacing it.
        #[arg(short, long, conflicts_with = "remove")]
        add: bool,
        /// Remove from a list key.
        #[arg(short, long)]
        remove: bool,
    },
    /// Put a key back to its default.
    Clear {
        /// The key.
        key: String,
    },
    /// Describe the keys and their allowed values.
    Info {
        /// One key only.
        key: Option<String>,
    },
}

/// `arcgate extension`.
#[derive(Debug, Args)]
pub struct ExtensionArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ExtensionAction,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigPathArg,
}

/// `arcgate extension` actions.
#[derive(Debug, Subcommand)]
pub enum ExtensionAction {
    /// Exit 0 if Publisher/Type may be installed, 1 if not; print why.
    Check {
        /// Publisher/Type.
        name: String,
    },
}

/// `arcgate token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The key to sign with.
    #[arg(long, default_value = "default")]
    pub key_name: String,
    /// How long the token is valid (90s, 30m, 1h, 7d).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// The resource [default: http://{host}/{name}/].
    #[arg(long, value_name = "URL", conflicts_with_all = ["name", "host"])]
    pub resource: Option<String>,
    /// The gate name the token is for [default: the host name].
    #[arg(long)]
    pub name: Option<String>,
    /// The host in the resource [default: the gate name].
    #[arg(long)]
    pub host: Option<String>,
    /// Keys file [default: keys.json beside the configuration file].
    #[arg(long, value_name = "PATH")]
    pub keys: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigPathArg,
}

/// `arcgate connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientArgs,
}

/// `arcgate forward`.
#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// Local address to listen on, e.g. 127.0.0.1:13389 (port 0 picks a free one).
    pub listen: SocketAddr,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientArgs,
    /// On Ctrl-C/SIGTERM, how long open tunnels may continue before they are closed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

/// What both clients take.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Gate URL, wss://HOST:PORT/$hc/NAME (port optional; single-quote it for $hc). Optional with
    /// -r or SSHPROXY_RELAY_INFO.
    pub url: Option<String>,
    /// Target port on the host.
    #[arg(short, long, default_value_t = 22)]
    pub port: u16,
    /// Relay information file (base64 JSON, the agent's form).
    #[arg(short = 'r', long = "relay-info", value_name = "FILE")]
    pub relay_info: Option<PathBuf>,
    /// The token (prefer --token-file: arguments are visible to other users).
    #[arg(long, env = "ARCGATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the token (read again for every tunnel).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Extra CA certificate (PEM) to trust besides the system store; repeatable.
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<PathBuf>,
    /// Do not verify the gate's certificate (DANGEROUS; for diagnosis only).
    #[arg(long)]
    pub insecure: bool,
    /// TCP + TLS + WebSocket handshake deadline.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Ping the gate after this long without hearing from it (0 disables).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// Diagnostics format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

/// `arcgate ssh-config`.
#[derive(Debug, Args)]
pub struct SshConfigArgs {
    /// The Host name to use with ssh.
    pub name: String,
    /// Gate URL, wss://HOST:PORT/$hc/NAME.
    pub url: String,
    /// A fixed SSH port (default: whatever `ssh -p` says, 22).
    #[arg(short, long)]
    pub port: Option<u16>,
    /// Token file for the ProxyCommand.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Extra CA certificate for the ProxyCommand; repeatable.
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<PathBuf>,
    /// A User line.
    #[arg(long)]
    pub user: Option<String>,
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("'{s}' is not a whole number of at least 1")),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    token::parse_duration(s)
}

/// A usage error found after parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit status of a command that ran to completion without an error: `extension check`
/// answers "no" with 1.
pub type Status = u8;

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<Status> {
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Config(args) => config(args),
        Command::Extension(args) => extension(args),
        Command::Token(args) => mint_token(args),
        Command::Connect(args) => connect(args.client),
        Command::Forward(args) => forward(args),
        Command::SshConfig(args) => ssh_config(args),
        Command::Status(args) => status(args),
        Command::Relay(args) => relay(args),
    }
}

/// Sets up logging to stderr. `default` is the level when `RUST_LOG` is unset.
pub fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.with_ansi(false).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}

/// The host name: the default gate name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn serve(args: ServeArgs) -> anyhow::Result<Status> {
    init_logging(args.log_format, "info");
    let config_path = args.config.resolve();
    let keys_path = args
        .keys
        .clone()
        .unwrap_or_else(|| store::keys_path_beside(&config_path));
    let paths = Paths {
        config: config_path.clone(),
        keys: keys_path.clone(),
    };
    let dir = config_path.parent().unwrap_or(Path::new("."));
    store::ensure_dir(dir)?;
    if !config_path.exists() {
        tracing::warn!(
            config = %config_path.display(),
            "no configuration file: using the defaults, where incomingconnections.ports is [] \
             and allows nothing; allow SSH with: arcgate config set incomingconnections.ports 22"
        );
    }
    if live::ensure_keys(&keys_path)? {
        tracing::warn!(
            keys = %keys_path.display(),
            "created a keys file with one random key named 'default'; \
             mint a token with: arcgate token --key-name default --ttl 1h"
        );
    }
    let name = args.name.clone().unwrap_or_else(host_name);
    // Relay-only: nothing accepts TLS here, so no certificate is loaded or watched.
    let certs = match args.relay_only {
        true => None,
        false => Some(Arc::new(CertStore::load(&args.cert, &args.key)?)),
    };
    if let Some(admin) = &args.admin {
        arcgate::gate::admin::check_address(admin).map_err(UsageError)?;
    }
    let audit = Arc::new(Audit::open(args.audit_log.as_deref()).with_context(|| {
        format!(
            "cannot open the audit log {}",
            args.audit_log.as_deref().unwrap_or(Path::new("")).display()
        )
    })?);
    if certs.is_some() && (args.cert.starts_with("certs-dev") || args.key.starts_with("certs-dev"))
    {
        tracing::warn!(
            "USING THE DEVELOPMENT CERTIFICATES in certs-dev/: for development and tests only. \
             their private key is in the repository; pass --cert and --key for real use"
        );
    }
    let opts = GateOptions {
        name: name.clone(),
        public_host: args.public_host.clone(),
        handshake_timeout: args.handshake_timeout,
        max_header_bytes: args.max_header_bytes,
        dial_timeout: args.dial_timeout,
        max_sessions: args.max_sessions,
        max_sessions_per_ip: args.max_sessions_per_ip,
        max_handshakes_per_ip: args.max_handshakes_per_ip,
        shutdown_grace: args.shutdown_grace,
        bridge: BridgeConfig {
            role: arcgate::transport::ws::Role::Server,
            peer_close_ends_session: false,
            ping_interval: (!args.ping_interval.is_zero()).then_some(args.ping_interval),
            missed_pongs: args.missed_pongs,
            idle_timeout: args.idle_timeout.filter(|d| !d.is_zero()),
            max_frame: args.max_frame_bytes,
            // Buffers start small and grow to this only while reads fill them. 256 KiB rather
            // than 64: each system call and wake-up moves four times as much, which cut
            // forward+serve CPU per GiB by 12% in the bench; a busy session holds at most
            // about 1.3 MiB (README, Limits).
            buf_size: arcgate::transport::CHUNK,
            // RFC 6455 leaves the wait for the peer's Close to the endpoint; 5 s is generous
            // for any live peer and short enough not to hold dead ones.
            close_timeout: Some(Duration::from_secs(5)),
        },
    };
    runtime()?.block_on(async move {
        // The watch is armed before the files are first read: a change written at any moment
        // after this line is either in that read or wakes the watcher (a `config set` made
        // while the gate started was lost when the watch came after the read).
        let watch = live::Watch::start(paths.clone())
            .context("cannot watch the configuration directory")?;
        let snapshot = live::load_initial(&paths)?;
        let listener = if args.relay_only {
            None
        } else {
            Some(
                tokio::net::TcpListener::bind(args.listen)
                    .await
                    .with_context(|| format!("cannot listen on {}", args.listen))?,
            )
        };
        tracing::info!(policy = %snapshot.summary(), config = %config_path.display(), "policy loaded");
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(snapshot));
        let gate = Gate::new(opts, rx, audit.clone());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let metrics = gate.metrics().clone();
        let watcher = tokio::spawn(watch.run(tx, stopped(stop_rx.clone()), move |ok| {
            metrics.reload(ok)
        }));
        let cert_watch = match &certs {
            Some(certs) => Some((
                live::FileWatch::start(&certs.paths())
                    .context("cannot watch the certificate files")?,
                certs.clone(),
            )),
            None => None,
        };
        tokio::spawn(reload_on_change_or_hup(
            cert_watch,
            audit.clone(),
            stopped(stop_rx.clone()),
        ));
        if let Some(listener) = &listener {
            // The line tests and scripts wait for: the address actually bound.
            let local = listener.local_addr()?;
            eprintln!("arcgate: listening on {local} as '{name}'");
            tracing::info!(address = %local, name = %name, "gate listening");
        }
        if let Some(url) = args.relay.clone() {
            let token = match (&args.relay_token_file, &args.relay_key) {
                (Some(file), _) => ListenToken::File(file.clone()),
                (None, Some(key)) => ListenToken::Key(key.clone(), args.relay_token_ttl),
                (None, None) => ListenToken::Key("default".into(), args.relay_token_ttl),
            };
            let opts = ListenerOptions {
                url,
                token,
                trust: ClientTrust {
                    ca_files: args.relay_ca.clone(),
                    insecure: false,
                },
                connect_timeout: args.relay_connect_timeout,
                ping_interval: args.ping_interval,
            };
            tokio::spawn(arcgate::gate::relay_listener::run(gate.clone(), opts, stopped(stop_rx.clone())));
        }
        if let Some(addr) = args.admin {
            let admin = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on --admin {addr}"))?;
            let bound = admin.local_addr()?;
            eprintln!("arcgate: admin endpoint on http://{bound}/");
            tokio::spawn(arcgate::gate::admin::serve(admin, gate.clone(), stopped(stop_rx.clone())));
        }
        let shutdown = shutdown_signal(stop_tx);
        match listener.zip(certs) {
            Some((listener, certs)) => {
                let tls = arcgate::transport::tls::server_config(certs);
                gate::run(listener, tls, gate, shutdown).await
            }
            None => gate::run_without_listener(gate, shutdown).await,
        }
        if let Err(e) = watcher.await {
            tracing::error!(error = %e, "configuration watcher panicked");
        }
        tracing::info!("stopped");
        Ok::<_, anyhow::Error>(0)
    })
}

/// Reloads the certificate pair when its files change, and on SIGHUP also reopens the audit
/// log (logrotate's postrotate sends SIGHUP). A broken pair is logged and the one in use kept.
/// `certs` is `None` when there is no certificate (relay-only): SIGHUP still reopens the log.
async fn reload_on_change_or_hup(
    certs: Option<(live::FileWatch, Arc<CertStore>)>,
    audit: Arc<Audit>,
    stop: impl std::future::Future<Output = ()>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut stop = std::pin::pin!(stop);
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot listen for SIGHUP; certificates reload on file changes only");
        return;
    };
    let (mut files, certs) = certs.unzip();
    loop {
        let changed = async {
            match &mut files {
                Some(files) => files.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut stop => return,
            Some(()) = changed => {}
            Some(()) = hup.recv() => audit.reopen(),
        }
        let Some(certs) = &certs else { continue };
        match certs.reload() {
            Ok(()) => tracing::info!("TLS certificate reloaded; new connections use it"),
            Err(e) => tracing::error!(
                error = %e,
                "TLS certificate reload FAILED; still serving the previous certificate"
            ),
        }
    }
}

fn relay(args: RelayArgs) -> anyhow::Result<Status> {
    init_logging(args.log_format, "info");
    if !args.keys.exists() {
        return Err(UsageError(format!("{} does not exist", args.keys.display())).into());
    }
    let keys = live::load_keys(&args.keys).map_err(anyhow::Error::msg)?;
    let certs = Arc::new(CertStore::load(&args.cert, &args.key)?);
    let tls = arcgate::transport::tls::server_config(certs);
    let relay = arcgate::relay::Relay::new(
        arcgate::relay::RelayOptions {
            handshake_timeout: args.handshake_timeout,
            max_header_bytes: args.max_header_bytes,
            max_frame: args.max_frame_bytes,
            ping_interval: args.ping_interval,
            max_connections: args.max_connections,
            max_handshakes_per_ip: args.max_handshakes_per_ip,
        },
        keys,
    );
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let local = listener.local_addr()?;
        let mut watch = live::FileWatch::start(&[args.keys.as_path()])
            .context("cannot watch the keys file")?;
        {
            let relay = relay.clone();
            let path = args.keys.clone();
            tokio::spawn(async move {
                while watch.next().await.is_some() {
                    match live::load_keys(&path) {
                        Ok(keys) => {
                            relay.set_keys(keys).await;
                            tracing::info!("relay keys reloaded");
                        }
                        Err(e) => tracing::error!(error = %e, "relay keys reload FAILED; keeping the previous keys"),
                    }
                }
            });
        }
        eprintln!("arcgate: relay listening on {local}");
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(shutdown_signal(stop_tx));
        let stop = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        };
        arcgate::relay::run(listener, tls, relay, stop).await;
        Ok::<_, anyhow::Error>(0)
    })
}

fn status(args: StatusArgs) -> anyhow::Result<Status> {
    use arcgate::gate::admin::{Health, fetch, render_status};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (health, sessions) = rt.block_on(async {
        let (_, health) = fetch(args.admin, "/healthz")
            .await
            .map_err(anyhow::Error::msg)?;
        let (code, sessions) = fetch(args.admin, "/sessions")
            .await
            .map_err(anyhow::Error::msg)?;
        anyhow::ensure!(code.is_success(), "/sessions answered {code}");
        let health: Health = serde_json::from_slice(&health).context("bad /healthz answer")?;
        let sessions: Vec<arcgate::gate::sessions::SessionInfo> =
            serde_json::from_slice(&sessions).context("bad /sessions answer")?;
        Ok::<_, anyhow::Error>((health, sessions))
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "health": health, "sessions": sessions })
        );
    } else {
        print!("{}", render_status(&health, &sessions));
    }
    Ok(0)
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits at once.
async fn shutdown_signal(stop: tokio::sync::watch::Sender<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the gate with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    stop.send_replace(true);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::warn!("second signal: exiting now");
        std::process::exit(1);
    });
}

fn config(args: ConfigArgs) -> anyhow::Result<Status> {
    let path = args.config.resolve();
    match args.action {
        ConfigAction::List { json } => {
            let config = store::load_config(&path)?;
            if json {
                let settings: Vec<_> = KEYS
                    .iter()
                    .map(|k| serde_json::json!({"key": k.name(), "value": k.to_json(&config)}))
                    .collect();
                println!("{}", serde_json::json!({ "localsettings": settings }));
            } else {
                println!("Local Configuration Settings");
                for key in KEYS {
                    println!("{:<44}: {}", key.name(), key.display(&config));
                }
            }
        }
        ConfigAction::Get { key, json } => {
            let key = Key::from_name(&key)?;
            let config = store::load_config(&path)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"key": key.name(), "value": key.to_json(&config)})
                );
            } else {
                println!("{:<44}: {}", key.name(), key.display(&config));
            }
        }
        ConfigAction::Set {
            key,
            value,
            add,
            remove,
        } => {
            let key = Key::from_name(&key)?;
            let raw = Raw::from_cli(key, &value);
            let change = match (add, remove) {
                (true, _) => Change::Add(raw),
                (_, true) => Change::Remove(raw),
                _ => Change::Set(raw),
            };
            let updated = store::update_config(&path, key, &change)?;
            println!(
                "Config property {} set to value {} (previously {})",
                key.name(),
                key.display(&updated.after),
                key.display(&updated.before)
            );
            if key == Key::Mode && updated.after.mode == arcgate::config::Mode::Monitor {
                println!(
                    "Monitor mode: incoming connections and guest configuration are disabled, \
                     and extensions are limited to the monitoring allowlist"
                );
            }
        }
        ConfigAction::Clear { key } => {
            let key = Key::from_name(&key)?;
            let updated = store::update_config(&path, key, &Change::Clear)?;
            println!(
                "Config property {} cleared to its default {} (previously {})",
                key.name(),
                key.display(&updated.after),
                key.display(&updated.before)
            );
        }
        ConfigAction::Info { key } => {
            let keys: Vec<Key> = match key {
                Some(k) => vec![Key::from_name(&k)?],
                None => KEYS.to_vec(),
            };
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                println!("{}", key.name());
                println!("  {}", key.description());
                println!("  type: {}", if key.is_list() { "list" } else { "value" });
                println!("  default: {}", key.default_display());
                println!("  {}", key.allowed());
                if key.locked_in_monitor() {
                    println!("  cannot be changed while config.mode is monitor");
                }
            }
        }
    }
    Ok(0)
}

fn extension(args: ExtensionArgs) -> anyhow::Result<Status> {
    let path = args.config.resolve();
    match args.action {
        ExtensionAction::Check { name } => {
            let name = ExtensionName::parse(&name).map_err(|why| ConfigError::InvalidValue {
                key: "extension",
                given: arcgate::config::shorten(&name),
                allowed: why.to_string(),
            })?;
            let config = store::load_config(&path)?;
            let verdict = arcgate::policy::extension::check(&config, &name);
            println!("{}", verdict.explain(&name));
            Ok(if verdict.allowed() { 0 } else { 1 })
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn mint_token(args: TokenArgs) -> anyhow::Result<Status> {
    let config_path = args.config.resolve();
    let keys_path = args
        .keys
        .clone()
        .unwrap_or_else(|| store::keys_path_beside(&config_path));
    let bytes = store::read_checked(&keys_path, store::Secrecy::Secret)?.ok_or_else(|| {
        UsageError(format!(
            "{} does not exist; `arcgate serve` creates it on first start",
            keys_path.display()
        ))
    })?;
    let keys =
        KeySet::from_json(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", keys_path.display()))?;
    let entry = keys.get(&args.key_name).ok_or_else(|| {
        UsageError(format!(
            "no key named '{}' in {}; keys there: {:?}",
            args.key_name,
            keys_path.display(),
            keys.names()
        ))
    })?;
    let resource = match args.resource {
        Some(r) => r,
        None => {
            let name = args.name.unwrap_or_else(host_name);
            let host = args.host.unwrap_or_else(|| name.clone());
            token::resource_for(&host, &name)
        }
    };
    let expiry = unix_now().saturating_add(args.ttl.as_secs());
    println!(
        "{}",
        token::mint(&resource, &entry.name, entry.secret(), expiry)
    );
    Ok(0)
}

/// What both clients resolve from their arguments before connecting.
struct ClientSetup {
    connector: Connector,
    token: TokenSource,
    ping_interval: Option<Duration>,
}

fn client_setup(args: &ClientArgs) -> Result<ClientSetup, ClientError> {
    let (url, relay_token) = resolve_target(args)?;
    let token = match (&args.token_file, &args.token, relay_token) {
        (Some(file), _, _) => TokenSource::File(file.clone()),
        (None, Some(t), _) => TokenSource::Literal(t.clone()),
        (None, None, Some(t)) => TokenSource::Literal(t),
        (None, None, None) => {
            return Err(ClientError::Usage(
                "no token: pass --token-file FILE, --token, ARCGATE_TOKEN or relay information \
                 (mint one on the host with `arcgate token`)"
                    .into(),
            ));
        }
    };
    // Fail now, not at the first tunnel, if the file is unreadable.
    token.read()?;
    if args.insecure {
        eprintln!(
            "arcgate: WARNING: --insecure: the gate's certificate is NOT verified; \
             anyone on the path can impersonate it"
        );
    }
    let proxy = Proxy::from_env().map_err(|e| ClientError::Usage(e.to_string()))?;
    let ping_interval = (!args.ping_interval.is_zero()).then_some(args.ping_interval);
    let connector = Connector::new(ConnectOptions {
        url,
        port: args.port,
        trust: ClientTrust {
            ca_files: args.ca.clone(),
            insecure: args.insecure,
        },
        proxy,
        connect_timeout: args.connect_timeout,
    })?;
    Ok(ClientSetup {
        connector,
        token,
        ping_interval,
    })
}

/// Prints a client failure in the requested format; `main` then only takes its exit code.
fn client_failure(e: ClientError, args: &ClientArgs) -> anyhow::Error {
    if args.log_format == LogFormat::Json {
        for line in e.json_lines(args.url.as_deref().unwrap_or_default()) {
            eprintln!("{line}");
        }
        ReportedError(e).into()
    } else {
        e.into()
    }
}

fn connect(args: ClientArgs) -> anyhow::Result<Status> {
    init_logging(args.log_format, "warn");
    let result = (|| -> Result<(), ClientError> {
        let setup = client_setup(&args)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Usage(format!("cannot start the runtime: {e}")))?;
        let result = rt.block_on(async {
            // Before the tunnel opens, so that a signal at any moment ends the session in
            // order rather than killing the process mid-stream.
            let mut exiting = Box::pin(client_exit_signal()?);
            let token = setup.token.read()?;
            let tunnel = tokio::select! {
                tunnel = setup.connector.open(token.as_deref()) => tunnel?,
                () = &mut exiting => {
                    return Err(ClientError::Interrupted(
                        "interrupted before the tunnel was open".into(),
                    ));
                }
            };
            tunnel
                .run(
                    arcgate::client::stdio::stdin(),
                    arcgate::client::stdio::stdout(),
                    setup.ping_interval,
                    exiting,
                )
                .await
        });
        // A blocking stdin read may still be pending; do not wait for it.
        rt.shutdown_background();
        result
    })();
    result.map(|()| 0).map_err(|e| client_failure(e, &args))
}

/// Resolves at SIGHUP, SIGTERM or SIGINT. ssh sends its `ProxyCommand` SIGHUP when the
/// session is over; closing the WebSocket and TLS in order then is what lets the gate record
/// an orderly end by the client instead of a lost connection.
fn client_exit_signal() -> Result<impl std::future::Future<Output = ()>, ClientError> {
    use tokio::signal::unix::{SignalKind, signal};
    let install = |kind: SignalKind| {
        signal(kind)
            .map_err(|e| ClientError::Usage(format!("cannot install a signal handler: {e}")))
    };
    let (mut hup, mut term, mut int) = (
        install(SignalKind::hangup())?,
        install(SignalKind::terminate())?,
        install(SignalKind::interrupt())?,
    );
    Ok(async move {
        let name = tokio::select! {
            _ = hup.recv() => "SIGHUP",
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::debug!(signal = name, "closing the session");
    })
}

fn forward(args: ForwardArgs) -> anyhow::Result<Status> {
    init_logging(args.client.log_format, "info");
    let setup = client_setup(&args.client).map_err(|e| client_failure(e, &args.client))?;
    let url = args.client.url.clone().unwrap_or_default();
    let port = args.client.port;
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let local = listener.local_addr()?;
        // The line tests and scripts wait for: the address actually bound.
        eprintln!("arcgate: forwarding {local} to {url} port {port}");
        let forwarder = Arc::new(Forwarder {
            connector: setup.connector,
            token: setup.token,
            ping_interval: setup.ping_interval,
            grace: args.shutdown_grace,
        });
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(shutdown_signal(stop_tx));
        let stop = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        };
        let cut = arcgate::client::forward::run(listener, forwarder, stop).await;
        tracing::info!(tunnels_cut_at_deadline = cut, "stopped");
        Ok::<_, anyhow::Error>(0)
    })
}

fn ssh_config(args: SshConfigArgs) -> anyhow::Result<Status> {
    let absolute = |p: &Path| -> anyhow::Result<PathBuf> {
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir()?.join(p)
        };
        Ok(p)
    };
    arcgate::hc::url::GateUrl::parse(&args.url).map_err(ClientError::from)?;
    let block = HostBlock {
        name: args.name,
        url: args.url,
        port: args.port,
        token_file: args.token_file.as_deref().map(absolute).transpose()?,
        ca: args
            .ca
            .iter()
            .map(|c| absolute(c))
            .collect::<anyhow::Result<_>>()?,
        exe: std::env::current_exe().context("cannot find this program's own path")?,
        user: args.user,
    };
    if let Some(f) = &block.token_file
        && !f.exists()
    {
        eprintln!(
            "arcgate: note: the token file {} does not exist yet",
            f.display()
        );
    }
    print!("{}", render_host_block(&block).map_err(UsageError)?);
    Ok(0)
}

/// An error already printed in the requested format; `main` only takes its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReportedError(pub ClientError);

fn resolve_target(args: &ClientArgs) -> Result<(String, Option<String>), ClientError> {
    let relay_text = match (&args.relay_info, std::env::var("SSHPROXY_RELAY_INFO")) {
        (Some(path), _) => Some(std::fs::read_to_string(path).map_err(|e| {
            ClientError::Usage(format!(
                "cannot read relay information {}: {e}",
                path.display()
            ))
        })?),
        (None, Ok(env)) if args.url.is_none() && !env.trim().is_empty() => Some(env),
        _ => None,
    };
    match (relay_text, &args.url) {
        (Some(text), url) => {
            let info = client::parse_relay_info(&text, unix_now())?;
            Ok((url.clone().unwrap_or(info.url), Some(info.token)))
        }
        (None, Some(url)) => Ok((url.clone(), None)),
        (None, None) => Err(ClientError::Usage(
            "no gate URL: pass wss://HOST/$hc/NAME, -r RELAY_INFO_FILE or SSHPROXY_RELAY_INFO"
                .into(),
        )),
    }
}
