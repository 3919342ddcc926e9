//! `arcgate serve`: the gate, its files, its listeners and its reloads.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use arcgate::client::LogFormat;
use arcgate::gate::audit::Audit;
use arcgate::gate::relay_listener::{self, ListenToken, ListenerOptions};
use arcgate::gate::{self, Gate, GateOptions};
use arcgate::state::live::{self, Paths};
use arcgate::state::store;
use arcgate::transport::admin;
use arcgate::transport::bridge::BridgeConfig;
use arcgate::transport::tls::CertStore;
use arcgate::transport::tls::ClientTrust;

use super::{
    CliError, ConfigPathArg, Status, at_least_one, host_name, init_logging, on_workers,
    parse_duration, reload_on_change_or_hup, shutdown_signal,
};

/// `arcgate serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
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
    /// With incomingconnections.approval required: how long a session waits for the host's
    /// administrator before it is refused (approval_timed_out).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub approval_timeout: Duration,
    /// With incomingconnections.approval required: how many sessions may wait at once (more
    /// get 503).
    #[arg(long, default_value_t = 16, value_parser = at_least_one)]
    pub max_waiting_approvals: usize,
    /// On SIGTERM/SIGINT, how long sessions may continue before they are closed with 1001.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// Serve /metrics, /healthz and /sessions over plain HTTP on this loopback address.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// The admin socket `arcgate status` asks, mode 0600 [default: /run/arcgate/admin.sock
    /// for /var/opt/arcgate/localconfig.json, else admin.sock beside the configuration].
    #[arg(long, value_name = "PATH", conflicts_with = "no_admin_socket")]
    pub admin_socket: Option<PathBuf>,
    /// Serve no admin socket.
    #[arg(long)]
    pub no_admin_socket: bool,
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
    /// With --relay: admit a relayed sender only with a gate token (`connect
    /// --gate-token-file`) signed with a key from this gate's keys file, checked as a direct
    /// token is; a relay that admits a stranger then still cannot open this host.
    #[arg(long, requires = "relay")]
    pub relay_require_gate_token: bool,
    /// With --relay: no inbound listening socket at all, and so no certificate (--cert, --key
    /// and --listen are refused with it).
    #[arg(long, requires = "relay", conflicts_with_all = ["cert", "key", "listen"])]
    pub relay_only: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigPathArg,
}

pub(super) fn serve(args: ServeArgs) -> Result<Status, CliError> {
    init_logging(args.log_format, "info");
    // Relay-only: nothing accepts TLS here, so no certificate is loaded or watched. Loaded
    // first: a start that cannot serve creates no files.
    let certs = match args.relay_only {
        true => None,
        false => Some(Arc::new(load_certificate(&args)?)),
    };
    let paths = prepare_files(&args)?;
    if let Some(admin) = &args.admin {
        arcgate::transport::admin::check_address(admin)
            .map_err(|e| CliError::Usage(e.to_string()))?;
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
    on_workers(run(args, paths, certs, audit))?
}

/// The gate's certificate pair; a missing development pair (the default, relative to the
/// current directory) says how to pass a real one instead of a bare I/O error.
fn load_certificate(args: &ServeArgs) -> Result<CertStore, CliError> {
    let defaults = args.cert == Path::new(DEV_CERT) && args.key == Path::new(DEV_KEY);
    if defaults && !args.cert.exists() {
        return Err(CliError::Usage(format!(
            "no certificate at {DEV_CERT}: that is the development certificate, found only when \
             serve runs in arcgate's source directory; pass --cert FULLCHAIN.pem --key \
             PRIVKEY.pem (e.g. from certbot), or --relay-only with --relay, which needs none"
        )));
    }
    Ok(CertStore::load(&args.cert, &args.key)?)
}

/// The development certificate pair, relative to the source directory.
const DEV_CERT: &str = "certs-dev/server.pem";
const DEV_KEY: &str = "certs-dev/server-key.pem";

/// The files `serve` reads: the directory made if missing, a keys file created with one
/// random key if missing, and a warning when there is no configuration file.
fn prepare_files(args: &ServeArgs) -> anyhow::Result<Paths> {
    let config = args.config.resolve();
    let keys = args
        .keys
        .clone()
        .unwrap_or_else(|| store::keys_path_beside(&config));
    store::ensure_dir(config.parent().unwrap_or(Path::new(".")))?;
    if !config.exists() {
        tracing::warn!(
            config = %config.display(),
            "no configuration file: using the defaults, where incomingconnections.ports is [] \
             and allows nothing; allow SSH with: arcgate config set incomingconnections.ports 22"
        );
    }
    let created = live::ensure_keys(&keys).with_context(|| {
        format!(
            "there is no keys file {} and the gate cannot create one; as root, create it with \
             arcgate key add default --keys {} and give it to the user the gate runs as \
             (the package's: chown arcgate:arcgate)",
            keys.display(),
            keys.display()
        )
    })?;
    if created {
        tracing::warn!(
            keys = %keys.display(),
            "created a keys file with one random key named 'default'; \
             mint a token with: arcgate token --key-name default --ttl 1h"
        );
    }
    Ok(Paths { config, keys })
}

/// Everything about the gate that comes from flags, not from the policy files.
fn gate_options(args: &ServeArgs, name: String, config_path: &Path) -> GateOptions {
    GateOptions {
        name,
        config_path: config_path.to_path_buf(),
        approval_timeout: args.approval_timeout,
        max_waiting_approvals: args.max_waiting_approvals,
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
    }
}

/// Relay mode's options, when `--relay` is given.
fn listener_options(args: &ServeArgs) -> Result<Option<ListenerOptions>, CliError> {
    let Some(url) = args.relay.clone() else {
        return Ok(None);
    };
    let token = match (&args.relay_token_file, &args.relay_key) {
        (Some(file), _) => ListenToken::File(file.clone()),
        (None, Some(key)) => ListenToken::Key(key.clone(), args.relay_token_ttl),
        (None, None) => return Err(CliError::Usage(
            "--relay needs the listen credentials: --relay-key NAME (a key in the keys file with \
             the listen right) or --relay-token-file FILE"
                .into(),
        )),
    };
    Ok(Some(ListenerOptions {
        url,
        token,
        trust: ClientTrust {
            ca_files: args.relay_ca.clone(),
            insecure: false,
            ca_flag: "--relay-ca",
        },
        connect_timeout: args.relay_connect_timeout,
        ping_interval: args.ping_interval,
        require_gate_token: args.relay_require_gate_token,
    }))
}

/// The admin socket, bound; a gate that cannot serve it still serves sessions, and says why
/// `arcgate status` will not find it.
fn admin_socket(args: &ServeArgs, paths: &Paths) -> Option<admin::SocketListener> {
    if args.no_admin_socket {
        return None;
    }
    let path =
        (args.admin_socket.clone()).unwrap_or_else(|| store::admin_socket_path(&paths.config));
    let bound = store::ensure_dir(path.parent().unwrap_or(Path::new(".")))
        .map_err(|e| e.to_string())
        .and_then(|()| admin::SocketListener::bind(&path).map_err(|e| e.to_string()));
    match bound {
        Ok(socket) => {
            tracing::info!(socket = %path.display(), "admin socket ready");
            Some(socket)
        }
        Err(error) => {
            tracing::warn!(
                %error,
                "no admin socket: arcgate status will not find this gate \
                 (serving sessions goes on)"
            );
            None
        }
    }
}

/// Resolves once `rx` says the gate is stopping.
async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The gate's life: the policy watched and loaded, the listeners bound, the background tasks
/// started, the gate served until a signal, then the watcher awaited.
async fn run(
    args: ServeArgs,
    paths: Paths,
    certs: Option<Arc<CertStore>>,
    audit: Arc<Audit>,
) -> Result<Status, CliError> {
    // The watch is armed before the files are first read: a change written at any moment
    // after this line is either in that read or wakes the watcher (a `config set` made while
    // the gate started was lost when the watch came after the read).
    let watch =
        live::Watch::start(paths.clone()).context("cannot watch the configuration directory")?;
    let snapshot = live::load_initial(&paths)?;
    let listener = match args.relay_only {
        true => None,
        false => Some(
            tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?,
        ),
    };
    tracing::info!(policy = %snapshot.summary(), config = %paths.config.display(), "policy loaded");
    let name = args.name.clone().unwrap_or_else(host_name);
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(snapshot));
    let gate = Gate::new(
        gate_options(&args, name.clone(), &paths.config),
        rx,
        audit.clone(),
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let metrics = gate.metrics().clone();
    let watcher =
        tokio::spawn(watch.run(tx, stopped(stop_rx.clone()), move |ok| metrics.reload(ok)));
    let cert_watch = match &certs {
        Some(certs) => Some((
            live::FileWatch::start(&certs.paths()).context("cannot watch the certificate files")?,
            certs.clone(),
        )),
        None => None,
    };
    tokio::spawn(reload_on_change_or_hup(
        cert_watch,
        move || audit.reopen(),
        stopped(stop_rx.clone()),
    ));
    // Before the gate says it listens: whoever waits for that line may run `arcgate status`.
    if let Some(socket) = admin_socket(&args, &paths) {
        let serving = arcgate::gate::admin::serve(
            admin::Listener::Unix(socket),
            gate.clone(),
            stopped(stop_rx.clone()),
        );
        tokio::spawn(serving);
    }
    if let Some(listener) = &listener {
        // The line tests and scripts wait for: the address actually bound.
        let local = listener.local_addr()?;
        eprintln!("arcgate: listening on {local} as '{name}'");
        tracing::info!(address = %local, name = %name, "gate listening");
    }
    // Relay mode whose credentials never work ends `serve` with the reason.
    let (unusable_tx, unusable_rx) = tokio::sync::oneshot::channel();
    if let Some(opts) = listener_options(&args)? {
        relay_listener::check_credentials(&gate, &opts)
            .map_err(|e| CliError::Usage(format!("relay mode: {e}")))?;
        let attached = relay_listener::run(gate.clone(), opts, stopped(stop_rx.clone()));
        tokio::spawn(async move {
            if let Err(e) = attached.await {
                let _ = unusable_tx.send(e);
            }
        });
    }
    if let Some(addr) = args.admin {
        let admin = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on --admin {addr}"))?;
        let bound = admin.local_addr()?;
        eprintln!("arcgate: admin endpoint on http://{bound}/");
        let serving = arcgate::gate::admin::serve(
            admin::Listener::Tcp(admin),
            gate.clone(),
            stopped(stop_rx.clone()),
        );
        tokio::spawn(serving);
    }
    // Every socket is bound: `systemctl start` (Type=notify) may return.
    super::notify::notify("READY=1");
    let (unusable, unusable_seen) = (Arc::new(std::sync::Mutex::new(None)), stop_tx.clone());
    let shutdown = {
        let unusable = unusable.clone();
        async move {
            tokio::select! {
                () = shutdown_signal(stop_tx) => {}
                Ok(e) = unusable_rx => {
                    *unusable.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    let _ = unusable_seen.send(true);
                }
            }
        }
    };
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
    if let Some(e) = unusable.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(CliError::Usage(format!("relay mode: {e}")));
    }
    Ok(0)
}
