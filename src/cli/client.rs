//! The clients' commands: `connect`, `forward` and `ssh-config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use arcgate::client::forward::Forwarder;
use arcgate::client::sshconfig::{HostBlock, render as render_host_block};
use arcgate::client::{self, ClientError, ConnectOptions, Connector, LogFormat, TokenSource};
use arcgate::transport::proxy::Proxy;
use arcgate::transport::tls::ClientTrust;

use super::{CliError, Status, client_runtime, init_logging, parse_duration, shutdown_signal};

/// `arcgate connect`.
#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientArgs,
}

/// `arcgate forward`.
#[derive(Debug, Args)]
pub(crate) struct ForwardArgs {
    /// Local address to listen on, e.g. 127.0.0.1:13389 (port 0 picks a free one).
    pub listen: SocketAddr,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientArgs,
    /// On Ctrl-C/SIGTERM, how long open tunnels may continue before they are closed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Do not open a test tunnel at start (by default one is opened and closed at once, so
    /// that a refusal - gate, token, policy - ends `forward` before it listens).
    #[arg(long)]
    pub no_check: bool,
}

/// What both clients take.
#[derive(Debug, Clone, Args)]
pub(crate) struct ClientArgs {
    /// Gate URL, wss://HOST:PORT/$hc/NAME (port optional; single-quote it for $hc). Optional with
    /// --profile, -r or SSHPROXY_RELAY_INFO.
    pub url: Option<String>,
    /// Take the URL, token files and CA files from this client profile (arcgate profile add);
    /// flags given as well take precedence.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Target port on the host [default: the profile's, else 22].
    #[arg(short, long)]
    pub port: Option<u16>,
    /// Relay information file (base64 JSON, the agent's form).
    #[arg(short = 'r', long = "relay-info", value_name = "FILE")]
    pub relay_info: Option<PathBuf>,
    /// The token (prefer --token-file: arguments are visible to other users).
    #[arg(long, env = "ARCGATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the token (read again for every tunnel).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Through a relay: file holding a token for the gate itself, signed with a key from the
    /// gate's keys file (read again for every tunnel). Sent beside the relay's token; a gate
    /// started with --relay-require-gate-token admits no one without it.
    #[arg(long, value_name = "FILE")]
    pub gate_token_file: Option<PathBuf>,
    /// Extra CA certificate (PEM) to trust besides the system store; repeatable.
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<PathBuf>,
    /// Do not verify the gate's certificate (DANGEROUS; for diagnosis only).
    #[arg(long)]
    pub insecure: bool,
    /// TCP + TLS + WebSocket handshake deadline.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// For a host that holds sessions until its administrator approves them
    /// (incomingconnections.approval): how long to wait for the gate's answer, e.g. 2m (more
    /// than the gate's --approval-timeout, 60s) [default: --connect-timeout].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub approval_wait: Option<Duration>,
    /// Ping the gate after this long without hearing from it (0 disables).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// Diagnostics format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

/// `arcgate ssh-config`.
#[derive(Debug, Args)]
pub(crate) struct SshConfigArgs {
    /// The Host name to use with ssh.
    pub name: String,
    /// Gate URL, wss://HOST:PORT/$hc/NAME [default: use the client profile NAME, written
    /// once with `arcgate profile add`].
    pub url: Option<String>,
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

/// What both clients resolve from their arguments before connecting.
struct ClientSetup {
    connector: Connector,
    token: TokenSource,
    ping_interval: Option<Duration>,
}

/// The arguments with the profile's values where no flag gave one.
fn with_profile(args: &ClientArgs) -> Result<ClientArgs, ClientError> {
    let mut args = args.clone();
    if let Some(name) = &args.profile {
        let profile = client::profile::get(&client::profile::profiles_path(), name)?;
        // Relay information given as well brings its own URL and token: it wins.
        if args.relay_info.is_none() {
            args.url = args.url.or(Some(profile.url));
            if args.token.is_none() {
                args.token_file = args.token_file.or(profile.token_file);
            }
        }
        args.port = args.port.or(Some(profile.port));
        args.gate_token_file = args.gate_token_file.or(profile.gate_token_file);
        args.ca.extend(profile.ca);
    }
    Ok(args)
}

fn client_setup(args: &ClientArgs) -> Result<ClientSetup, ClientError> {
    let args = &with_profile(args)?;
    let (url, relay_token) = resolve_target(args)?;
    let token = match (&args.token_file, &args.token, relay_token) {
        (Some(file), _, _) => TokenSource::File(file.clone()),
        (None, Some(t), _) => TokenSource::Literal(t.clone()),
        (None, None, Some(t)) => TokenSource::Literal(t),
        (None, None, None) => {
            return Err(ClientError::Missing(
                "no token: pass --token-file FILE, --token, ARCGATE_TOKEN or relay information \
                 (mint one on the host with `arcgate token`)",
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
    let proxy = Proxy::from_env()?;
    let ping_interval = (!args.ping_interval.is_zero()).then_some(args.ping_interval);
    let connector = Connector::new(ConnectOptions {
        url,
        port: args.port.unwrap_or(22),
        trust: ClientTrust {
            ca_files: args.ca.clone(),
            insecure: args.insecure,
            ca_flag: "--ca",
        },
        proxy,
        connect_timeout: args.connect_timeout,
        approval_wait: args.approval_wait,
        gate_token: match &args.gate_token_file {
            Some(file) => TokenSource::File(file.clone()),
            None => TokenSource::None,
        },
    })?;
    Ok(ClientSetup {
        connector,
        token,
        ping_interval,
    })
}

/// Prints a client failure in the requested format; `main` then only takes its exit code.
fn client_failure(e: ClientError, args: &ClientArgs) -> CliError {
    if args.log_format == LogFormat::Json {
        for line in e.json_lines(args.url.as_deref().unwrap_or_default()) {
            eprintln!("{line}");
        }
        CliError::Reported(e)
    } else {
        e.into()
    }
}

pub(super) fn connect(args: ClientArgs) -> Result<Status, CliError> {
    init_logging(args.log_format, "warn");
    let result = (|| -> Result<(), ClientError> {
        let setup = client_setup(&args)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| ClientError::Setup {
                what: "start the runtime",
                source,
            })?;
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
        signal(kind).map_err(|source| ClientError::Setup {
            what: "install a signal handler",
            source,
        })
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

pub(super) fn forward(args: ForwardArgs) -> Result<Status, CliError> {
    init_logging(args.client.log_format, "info");
    let setup = client_setup(&args.client).map_err(|e| client_failure(e, &args.client))?;
    let url = match (&args.client.url, &args.client.profile) {
        (Some(url), _) => url.clone(),
        (None, Some(profile)) => format!("profile {profile}"),
        (None, None) => String::new(),
    };
    let port = with_profile(&args.client)
        .map_err(|e| client_failure(e, &args.client))?
        .port
        .unwrap_or(22);
    client_runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        // Bound first, so that a busy address fails before the gate is bothered.
        if !args.no_check {
            // As IAP's tunnel does: a refusal now is one clear line and its exit code, not a
            // listener whose every connection is closed.
            let check = async {
                let token = setup.token.read()?;
                setup.connector.open(token.as_deref()).await?.close().await
            };
            check.await.map_err(|e| client_failure(e, &args.client))?;
            tracing::info!(
                "test tunnel opened and closed: the gate, the token and the policy allow it"
            );
        }
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
        Ok::<_, CliError>(0)
    })
}

pub(super) fn ssh_config(args: SshConfigArgs) -> Result<Status, CliError> {
    let absolute = |p: &Path| -> anyhow::Result<PathBuf> {
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir()?.join(p)
        };
        Ok(p)
    };
    // Without a URL, the block uses the profile of the same name (which must exist).
    let (url, profile, port) = match &args.url {
        Some(url) => {
            arcgate::hc::url::GateUrl::parse(url).map_err(ClientError::from)?;
            (url.clone(), None, args.port)
        }
        None => {
            let found = client::profile::get(&client::profile::profiles_path(), &args.name)
                .map_err(ClientError::from)?;
            (
                String::new(),
                Some(args.name.clone()),
                args.port.or(Some(found.port)),
            )
        }
    };
    let block = HostBlock {
        name: args.name,
        url,
        profile,
        port,
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
    print!("{}", render_host_block(&block).map_err(CliError::Usage)?);
    Ok(0)
}

fn resolve_target(args: &ClientArgs) -> Result<(String, Option<String>), ClientError> {
    let relay_text =
        match (&args.relay_info, std::env::var("SSHPROXY_RELAY_INFO")) {
            (Some(path), _) => Some(std::fs::read_to_string(path).map_err(|e| {
                ClientError::RelayInfo(format!("cannot read {}: {e}", path.display()))
            })?),
            (None, Ok(env)) if args.url.is_none() && !env.trim().is_empty() => Some(env),
            _ => None,
        };
    match (relay_text, &args.url) {
        (Some(text), url) => {
            let info = client::parse_relay_info(&text, arcgate::transport::deadline::unix_now())?;
            Ok((url.clone().unwrap_or(info.url), Some(info.token)))
        }
        (None, Some(url)) => Ok((url.clone(), None)),
        (None, None) => Err(ClientError::Missing(
            "no gate URL: pass wss://HOST/$hc/NAME, -r RELAY_INFO_FILE or SSHPROXY_RELAY_INFO",
        )),
    }
}
