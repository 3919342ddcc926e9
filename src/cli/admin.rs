//! The administrator's commands: `status`, `config`, `extension` and `token`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use arcgate::config::{Change, ConfigError, ExtensionName, KEYS, Key, Raw};
use arcgate::state::store;
use arcgate::token::{self, KeySet};

use super::{CliError, ConfigPathArg, Status, host_name};

/// Which running gate to ask.
#[derive(Debug, Args)]
pub(crate) struct GateAt {
    /// Ask the gate's --admin address instead of its admin socket (read-only: approvals
    /// need the socket).
    #[arg(long, env = "ARCGATE_ADMIN", value_name = "ADDR", global = true)]
    pub admin: Option<SocketAddr>,
    /// The gate's admin socket [default: the one a gate with this configuration serves:
    /// /run/arcgate/admin.sock for the host's].
    #[arg(long, value_name = "PATH", conflicts_with = "admin", global = true)]
    pub socket: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigPathArg,
}

impl GateAt {
    pub(super) fn endpoint(&self) -> arcgate::transport::admin::Endpoint {
        use arcgate::transport::admin::Endpoint;
        match (self.admin, &self.socket) {
            (Some(addr), _) => Endpoint::Tcp(addr),
            (None, Some(path)) => Endpoint::Unix(path.clone()),
            (None, None) => Endpoint::Unix(default_socket(&self.config)),
        }
    }
}

/// `arcgate status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// JSON output: {"health": ..., "sessions": [...], "approvals": {...}}.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub at: GateAt,
}

/// `arcgate config`.
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ConfigAction,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigPathArg,
}

/// `arcgate config` actions.
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigAction {
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
        /// With incomingconnections.enabled true: only for this long (30m, 2h, 1d); the end,
        /// in UTC, goes in incomingconnections.enableduntil.
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_window)]
        window: Option<Duration>,
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
pub(crate) struct ExtensionArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ExtensionAction,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigPathArg,
}

/// `arcgate extension` actions.
#[derive(Debug, Subcommand)]
pub(crate) enum ExtensionAction {
    /// Exit 0 if Publisher/Type may be installed, 1 if not; print why.
    Check {
        /// Publisher/Type.
        name: String,
    },
}

/// `arcgate token`.
#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// The key to sign with.
    #[arg(long, default_value = "default")]
    pub key_name: String,
    /// How long the token is valid, with its unit (90s, 30m, 8h, 7d).
    #[arg(long, default_value = "1h", value_parser = token::parse_ttl)]
    pub ttl: Duration,
    /// Write the token to this file, mode 0600 (a shell's `> file` makes it readable by
    /// others).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
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

pub(super) fn status(args: StatusArgs) -> Result<Status, CliError> {
    use arcgate::gate::admin::{Health, render_status};
    use arcgate::gate::approvals::Listing;
    use arcgate::transport::admin::fetch;
    let at = args.at.endpoint();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (health, sessions, approvals) = rt.block_on(async {
        let (_, health) = fetch(&at, "/healthz").await?;
        let (code, sessions) = fetch(&at, "/sessions").await?;
        anyhow::ensure!(code.is_success(), "/sessions answered {code}");
        // A gate from before approvals (still running through an upgrade) has no such page.
        let (code, approvals) = fetch(&at, "/approvals").await?;
        let approvals = match code {
            hyper::http::StatusCode::NOT_FOUND => {
                bytes::Bytes::from_static(b"{\"waiting\":[],\"standing\":[]}")
            }
            code if code.is_success() => approvals,
            code => anyhow::bail!("/approvals answered {code}"),
        };
        let health: Health = serde_json::from_slice(&health).context("bad /healthz answer")?;
        let sessions: Vec<arcgate::gate::sessions::SessionInfo> =
            serde_json::from_slice(&sessions).context("bad /sessions answer")?;
        let approvals: Listing =
            serde_json::from_slice(&approvals).context("bad /approvals answer")?;
        Ok::<_, anyhow::Error>((health, sessions, approvals))
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "health": health, "sessions": sessions, "approvals": approvals })
        );
    } else {
        print!("{}", render_status(&health, &sessions, &approvals));
    }
    Ok(0)
}

/// `--for`: a window needs a unit and some length.
fn parse_window(s: &str) -> Result<Duration, String> {
    arcgate::config::parse_lifetime(s, "an access window")
}

/// The second half of `config set incomingconnections.enabled true --for D`: the window's end,
/// D from now (to the second), in `incomingconnections.enableduntil`.
fn window_change(key: Key, value: &str, window: Duration) -> Result<(Key, Change), CliError> {
    if key != Key::IncomingEnabled || !value.trim().eq_ignore_ascii_case("true") {
        return Err(CliError::Usage(
            "--for opens an access window: it goes with config set incomingconnections.enabled \
             true (to close access, set it to false)"
                .into(),
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let end = std::time::UNIX_EPOCH + Duration::from_secs(now.as_secs()) + window;
    let end = arcgate::config::format_utc(end);
    Ok((
        Key::IncomingEnabledUntil,
        Change::Set(Raw::from_cli(Key::IncomingEnabledUntil, &end)),
    ))
}

/// The admin socket of the gate whose configuration this is; a user with no configuration
/// of their own, on a host that has one, asks the host's gate (and is told to be root).
fn default_socket(config: &ConfigPathArg) -> PathBuf {
    let path = config.resolve();
    let own = config.path.is_some() || path.parent().is_some_and(Path::exists);
    match own || !store::system_config_dir().exists() {
        true => store::admin_socket_path(&path),
        false => store::admin_socket_path(&store::system_config_dir().join(store::CONFIG_FILE)),
    }
}

pub(super) fn config(args: ConfigArgs) -> Result<Status, CliError> {
    // `info` reads no file.
    let path = match args.action {
        ConfigAction::Info { .. } => args.config.resolve(),
        _ => args.config.resolve_admin()?,
    };
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
            window,
        } => {
            let key = Key::from_name(&key)?;
            let raw = Raw::from_cli(key, &value);
            let change = match (add, remove) {
                (true, _) => Change::Add(raw),
                (_, true) => Change::Remove(raw),
                _ => Change::Set(raw),
            };
            let mut changes = vec![(key, change)];
            if let Some(window) = window {
                changes.push(window_change(key, &value, window)?);
            }
            let updated = store::update_config_all(&path, &changes)?;
            for (key, _) in &changes {
                println!(
                    "Config property {} set to value {} (previously {})",
                    key.name(),
                    key.display(&updated.after),
                    key.display(&updated.before)
                );
            }
            if key == Key::IncomingEnabled
                && window.is_none()
                && updated.before.incoming_enabled_until.is_some()
            {
                eprintln!(
                    "arcgate: the access window (until {}) is gone: incoming connections \
                     are {} with no end",
                    Key::IncomingEnabledUntil.display(&updated.before),
                    if updated.after.incoming_enabled {
                        "enabled"
                    } else {
                        "disabled"
                    }
                );
            }
            wrote(&path);
            if key == Key::Mode && updated.after.mode == arcgate::config::Mode::Monitor {
                println!(
                    "Monitor mode: incoming connections and guest configuration are disabled, \
                     and extensions are limited to the monitoring allowlist"
                );
            }
            if key == Key::Mode
                && updated.before.mode == arcgate::config::Mode::Monitor
                && updated.after.mode == arcgate::config::Mode::Full
            {
                // Switching back changes nothing else (SPEC 4.3): say what monitor mode left.
                for kept in [
                    Key::IncomingEnabled,
                    Key::GuestConfigurationEnabled,
                    Key::ExtensionsAllowlist,
                ] {
                    eprintln!(
                        "arcgate: {} stays {}, as monitor mode left it; set it as you want it \
                         (arcgate config set {} ...)",
                        kept.name(),
                        kept.display(&updated.after),
                        kept.name()
                    );
                }
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
            if key == Key::IncomingEnabled && updated.before.incoming_enabled_until.is_some() {
                eprintln!(
                    "arcgate: the access window (until {}) is gone too",
                    Key::IncomingEnabledUntil.display(&updated.before)
                );
            }
            wrote(&path);
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
                if !key.is_agents() {
                    println!("  arcgate's own key: the agent (azcmagent) has no such key");
                }
                if key.locked_in_monitor() {
                    println!("  cannot be changed while config.mode is monitor");
                }
            }
        }
    }
    Ok(0)
}

/// Names the file a change was written to (on stderr: stdout keeps the agent's lines).
fn wrote(path: &Path) {
    eprintln!("arcgate: wrote {}", path.display());
}

pub(super) fn extension(args: ExtensionArgs) -> Result<Status, CliError> {
    let path = args.config.resolve_admin()?;
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

pub(super) fn mint_token(args: TokenArgs) -> Result<Status, CliError> {
    let keys_path = match &args.keys {
        Some(path) => path.clone(),
        None => store::keys_path_beside(&args.config.resolve_admin()?),
    };
    let bytes = store::read_checked(&keys_path, store::Secrecy::Secret)?.ok_or_else(|| {
        CliError::Usage(format!(
            "{} does not exist; `arcgate serve` creates it on first start",
            keys_path.display()
        ))
    })?;
    let keys = KeySet::from_json(&bytes)
        .with_context(|| format!("{} cannot be used", keys_path.display()))?;
    let entry = keys.get(&args.key_name).ok_or_else(|| {
        CliError::Usage(format!(
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
    let expiry = arcgate::transport::deadline::unix_now().saturating_add(args.ttl.as_secs());
    let minted = token::mint(&resource, &entry.name, entry.secret(), expiry);
    match &args.out {
        Some(path) => {
            // A new 0600 file renamed into place: a symlink there is replaced, not followed,
            // and a reader of the old file never sees a torn or empty one.
            store::write_new_secret(path, format!("{minted}\n").as_bytes())
                .with_context(|| format!("cannot write the token to {}", path.display()))?;
            eprintln!(
                "arcgate: token for {resource} written to {} (mode 0600)",
                path.display()
            );
        }
        None => {
            println!("{minted}");
            warn_if_stdout_is_readable_by_others();
        }
    }
    Ok(0)
}

/// A token printed into a file (`> file`) that others can read is a secret given away: say so.
fn warn_if_stdout_is_readable_by_others() {
    let Ok(stat) = rustix::fs::fstat(std::io::stdout()) else {
        return;
    };
    let mode = stat.st_mode;
    let regular = rustix::fs::FileType::from_raw_mode(mode) == rustix::fs::FileType::RegularFile;
    if regular && mode & 0o077 != 0 {
        eprintln!(
            "arcgate: WARNING: the token went to a file others can read (mode {:04o}); \
             chmod 600 it, or use --out FILE, which writes it 0600",
            mode & 0o7777
        );
    }
}
