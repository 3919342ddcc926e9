//! The binary's edge: clap definitions and what each subcommand does with the library.
//!
//! Only here are sockets bound, signal handlers installed (the library's `Watch` aside, which
//! takes SIGHUP for a reload), logging set up and command output printed to stdout; the
//! library takes bound listeners and shutdown futures. (The library does read the clock — token
//! checks, audit times — and prints the few lines tests and scripts wait for on stderr.)
//! Every command returns a [`CliError`]; `main` prints it and exits with its code.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use arcgate::client::{ClientError, LogFormat};
use arcgate::config::ConfigError;
use arcgate::state::live;
use arcgate::state::store;
use arcgate::state::store::UpdateError;
use arcgate::token;
use arcgate::transport::tls::CertStore;

mod admin;
mod client;
mod docs;
mod key;
mod notify;
mod profile;
mod relay;
mod serve;
mod sessions;

pub(crate) use admin::{ConfigArgs, ExtensionArgs, StatusArgs, TokenArgs};
pub(crate) use client::{ConnectArgs, ForwardArgs, SshConfigArgs};
pub(crate) use key::KeyArgs;
pub(crate) use profile::{ProfileArgs, SshArgs};
pub(crate) use relay::RelayArgs;
pub(crate) use serve::ServeArgs;

/// arcgate: incoming SSH/RDP connections, decided by a local policy only this host's
/// administrator can change.
#[derive(Debug, Parser)]
#[command(name = "arcgate", version = VERSION, about, max_term_width = 100)]
pub(crate) struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
    /// More log lines: each -v one level up from the command's default (RUST_LOG, when set,
    /// decides instead).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Fewer log lines: each -q one level down from the command's default.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
}

/// `arcgate --version`: the version and the commit it was built from.
use arcgate::VERSION;

/// `-v` minus `-q`, set once by [`run`] for [`init_logging`].
static VERBOSITY: std::sync::atomic::AtomicI8 = std::sync::atomic::AtomicI8::new(0);

/// Subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the gate: TLS WebSocket endpoint, policy, bridge to 127.0.0.1:PORT.
    Serve(Box<ServeArgs>),
    /// Show or change the local configuration (same keys and output as `azcmagent config`).
    Config(ConfigArgs),
    /// Extension rules (extensions.enabled / allowlist / blocklist).
    Extension(ExtensionArgs),
    /// Mint an access token from a key in the keys file.
    Token(TokenArgs),
    /// List, add, remove or rotate the keys in a keys file (the gate's, or a relay's).
    Key(KeyArgs),
    /// Connect stdin/stdout to a port on a host through its gate (an OpenSSH ProxyCommand).
    #[command(after_help = CONNECT_EXIT_CODES)]
    Connect(ConnectArgs),
    /// Listen locally; every accepted connection becomes one tunnel (RDP, or any allowed port).
    #[command(after_help = CONNECT_EXIT_CODES)]
    Forward(ForwardArgs),
    /// Print a Host block for ~/.ssh/config that connects through the gate.
    SshConfig(SshConfigArgs),
    /// Run OpenSSH to a host through its gate, from its profile: arcgate ssh [user@]NAME [ARGS].
    Ssh(SshArgs),
    /// Add, list or remove client profiles (a host's gate URL, token file, CA, port).
    Profile(ProfileArgs),
    /// Show the version, the policy in force, its file and the live sessions of the running
    /// gate (from its admin socket).
    Status(StatusArgs),
    /// Approve or deny the sessions that wait for the host's administrator
    /// (incomingconnections.approval required), or list them.
    Sessions(sessions::SessionsArgs),
    /// Run an embedded Hybrid Connections relay (gates attach with serve --relay).
    Relay(RelayArgs),
    /// Print shell completions: arcgate completions bash > /etc/bash_completion.d/arcgate.
    Completions(docs::CompletionsArgs),
    /// Write the man pages into a directory (the package ships them).
    #[command(hide = true)]
    Manpages(docs::ManpagesArgs),
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
pub(crate) struct ConfigPathArg {
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
    pub(super) fn resolve(&self) -> PathBuf {
        store::config_path(self.path.as_deref())
    }

    /// [`ConfigPathArg::resolve`] for the administrator's commands (`config`, `extension`,
    /// `key`, `token`): a user who is not root and has no configuration of their own, on a
    /// host that has one (no directory of their own), is refused rather than shown or given
    /// a file the gate never reads (as `azcmagent` expects elevation).
    pub(super) fn resolve_admin(&self) -> Result<PathBuf, CliError> {
        let path = self.resolve();
        let system_dir = store::system_config_dir();
        // The user's own directory (their config or keys file, a gate of their own) counts.
        let own_dir = path.parent().is_some_and(Path::exists);
        if self.path.is_none()
            && !rustix::process::geteuid().is_root()
            && system_dir.exists()
            && !own_dir
        {
            return Err(CliError::Usage(format!(
                "this host's configuration is in {}, and you are not root; run the command as \
                 root (sudo arcgate ...) to read or change it, or pass --config FILE (or set \
                 ARCGATE_CONFIG) for a file of your own (not {})",
                system_dir.display(),
                path.display()
            )));
        }
        Ok(path)
    }
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

/// Every way a command fails. [`CliError::exit_code`] is the one place a failure becomes an
/// exit code; `main` prints the error (unless it was already printed) and exits with it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// A usage error found after parsing (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// A configuration key or value is refused (exit code 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A configuration change failed: refused (2) or not written (1).
    #[error(transparent)]
    Update(#[from] UpdateError),
    /// A client failed: its documented exit codes.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A client failure already printed in the requested format (`--log-format json`).
    #[error("{0}")]
    Reported(ClientError),
    /// Anything else (exit code 1), with its causes.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl CliError {
    /// The exit code: 2 for usage and validation errors, the client's documented codes for
    /// `connect` and `forward`, 1 for anything else.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_)
            | CliError::Config(_)
            | CliError::Update(UpdateError::Invalid(_)) => 2,
            CliError::Client(e) | CliError::Reported(e) => e.exit_code(),
            CliError::Update(_) | CliError::Other(_) => 1,
        }
    }

    /// Whether `main` still has to print it.
    pub(crate) fn unprinted(&self) -> bool {
        !matches!(self, CliError::Reported(_))
    }
}

macro_rules! other_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for CliError {
            fn from(e: $t) -> CliError {
                CliError::Other(e.into())
            }
        }
    )*};
}
other_errors!(
    arcgate::state::store::StoreError,
    arcgate::state::live::StartupError,
    arcgate::transport::tls::TlsError,
    std::io::Error
);

/// The exit status of a command that ran to completion without an error: `extension check`
/// answers "no" with 1.
pub(crate) type Status = u8;

/// Runs a parsed command line.
pub(crate) fn run(cli: Cli) -> Result<Status, CliError> {
    let verbosity = i16::from(cli.verbose) - i16::from(cli.quiet);
    VERBOSITY.store(
        verbosity.clamp(-4, 4) as i8,
        std::sync::atomic::Ordering::Relaxed,
    );
    match cli.command {
        Command::Serve(args) => serve::serve(*args),
        Command::Config(args) => admin::config(args),
        Command::Extension(args) => admin::extension(args),
        Command::Token(args) => admin::mint_token(args),
        Command::Key(args) => key::key(args),
        Command::Connect(args) => client::connect(args.client),
        Command::Forward(args) => client::forward(args),
        Command::SshConfig(args) => client::ssh_config(args),
        Command::Ssh(args) => profile::ssh(args),
        Command::Profile(args) => profile::profile(args),
        Command::Status(args) => admin::status(args),
        Command::Relay(args) => relay::relay(args),
        Command::Sessions(args) => sessions::sessions(args),
        Command::Completions(args) => docs::completions(args),
        Command::Manpages(args) => docs::manpages(args),
    }
}

/// Sets up logging to stderr. `default` is the level when `RUST_LOG` is unset.
pub(crate) fn init_logging(format: LogFormat, default: &str) {
    let level = adjusted_level(
        default,
        VERBOSITY.load(std::sync::atomic::Ordering::Relaxed),
    );
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
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

/// A command's default log level moved by `-v`/`-q`: the same steps for every command.
fn adjusted_level(default: &str, verbosity: i8) -> &'static str {
    const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
    let at = LEVELS.iter().position(|l| *l == default).unwrap_or(2) as i8;
    LEVELS[(at + verbosity).clamp(0, 4) as usize]
}

/// The host name: the default gate name.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Runs a server's `main` on a multi-threaded runtime, in a task on its workers rather than
/// in `block_on` on this thread: an accept loop there handed every new connection from this
/// thread to a worker, a futex wake and an eventfd write per connection (strace).
fn on_workers<F>(main: F) -> Result<F::Output, CliError>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(CliError::Other)?;
    match rt.block_on(rt.spawn(main)) {
        Ok(output) => Ok(output),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(CliError::Other(anyhow::anyhow!("the main task ended: {e}"))),
    }
}

/// A runtime on this thread alone, for a client: one session or one user's tunnels, whose
/// every wake-up then stays on one thread (no hand-off between workers).
fn client_runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(CliError::Other)
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
    notify::notify("STOPPING=1");
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

/// Reloads the certificate pair when its files change or on SIGHUP, which also runs `on_hup`
/// (the gate reopens its audit log: logrotate's postrotate sends SIGHUP). A broken pair is
/// logged and the one in use kept. `certs` is `None` when there is no certificate
/// (relay-only): SIGHUP still runs `on_hup`.
pub(crate) async fn reload_on_change_or_hup(
    certs: Option<(live::FileWatch, Arc<CertStore>)>,
    on_hup: impl Fn(),
    stop: impl std::future::Future<Output = ()>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut stop = std::pin::pin!(stop);
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(hup) => Some(hup),
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; certificates reload on file changes only");
            None
        }
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
            Some(()) = async {
                match &mut hup {
                    Some(hup) => hup.recv().await,
                    None => std::future::pending().await,
                }
            } => on_hup(),
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
