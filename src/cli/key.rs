//! `arcgate key`: the keys files (the gate's `keys.json`, or a relay's `--keys` file) managed
//! by command, so that nobody edits secrets by hand: `list` never shows a secret; `add` and
//! `rotate` show the new one once; every change is a locked, atomic write after the same
//! file checks as every read, and a running gate or relay applies it at once (a removed or
//! rotated key's sessions are closed with 1008).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use arcgate::config::PortSet;
use arcgate::state::live::{self, KeysUpdateError};
use arcgate::state::store;
use arcgate::token::{KeyChange, KeySet, Right};

use super::{CliError, ConfigPathArg, Status};

/// `arcgate key`.
#[derive(Debug, Args)]
pub(crate) struct KeyArgs {
    #[command(subcommand)]
    pub action: KeyAction,
    /// Keys file [default: keys.json beside the configuration file; for a relay, its --keys].
    #[arg(long, value_name = "PATH", global = true)]
    pub keys: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigPathArg,
}

/// What to do with the keys.
#[derive(Debug, Subcommand)]
pub(crate) enum KeyAction {
    /// List the keys: name, rights, ports (never the secrets).
    List,
    /// Add a key with a new random 256-bit secret, printed once on stdout.
    Add {
        /// Its name (the `skn` of its tokens).
        name: String,
        /// What its tokens may do; repeat or separate with commas. `listen` attaches a gate
        /// to a relay and is never implied.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "send")]
        rights: Vec<RightArg>,
        /// The only ports its tokens may reach, e.g. 22,3389 or 2200-2299 [default: any].
        #[arg(long, value_name = "PORTS")]
        ports: Option<String>,
        /// Use the secret in this file (mode 0600, as `add` writes one) instead of a new
        /// random one: another keys file's key, or an Azure Relay shared access policy's.
        #[arg(long, value_name = "FILE")]
        secret_file: Option<PathBuf>,
    },
    /// Remove a key: its tokens stop working and its live sessions are closed.
    Remove {
        /// The key's name.
        name: String,
    },
    /// Give a key a new random secret, printed once: tokens signed with the old one stop
    /// working and the sessions they opened are closed.
    Rotate {
        /// The key's name.
        name: String,
    },
}

/// A right, as the command line spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RightArg {
    /// Open sessions: a direct connect, or a sender at a relay.
    Send,
    /// Attach a gate to a relay as a listener.
    Listen,
}

impl From<RightArg> for Right {
    fn from(r: RightArg) -> Right {
        match r {
            RightArg::Send => Right::Send,
            RightArg::Listen => Right::Listen,
        }
    }
}

pub(super) fn key(args: KeyArgs) -> Result<Status, CliError> {
    let path = match &args.keys {
        Some(path) => path.clone(),
        None => store::keys_path_beside(&args.config.resolve_admin()?),
    };
    let change = match args.action {
        KeyAction::List => {
            let keys = live::load_keys(&path).map_err(|e| CliError::Usage(e.to_string()))?;
            print!("{}", listing(&keys));
            return Ok(0);
        }
        KeyAction::Add {
            name,
            rights,
            ports,
            secret_file,
        } => {
            let secret = secret_file.map(|f| read_secret(&f)).transpose()?;
            // The keys file's own parser, given the list as the file would hold it.
            let ports = ports
                .map(|p| {
                    let items: Vec<serde_json::Value> =
                        p.split(',').map(|s| s.trim().into()).collect();
                    PortSet::from_json_list(&items)
                })
                .transpose()
                .map_err(|why| CliError::Usage(format!("--ports: {why}")))?;
            let mut rights: Vec<Right> = rights.into_iter().map(Right::from).collect();
            rights.dedup();
            KeyChange::Add {
                name,
                secret,
                rights,
                ports,
            }
        }
        KeyAction::Remove { name } => KeyChange::Remove(name),
        KeyAction::Rotate { name } => KeyChange::Rotate(name),
    };
    let (keys, secret) = live::update_keys(&path, &change).map_err(|e| match e {
        KeysUpdateError::Invalid(e) => CliError::Usage(e.to_string()),
        KeysUpdateError::Keys(e) => CliError::Usage(e.to_string()),
    })?;
    let (what, name) = match &change {
        KeyChange::Add { name, .. } => ("added", name),
        KeyChange::Remove(name) => ("removed", name),
        KeyChange::Rotate(name) => ("rotated", name),
    };
    eprintln!("arcgate: {}: key '{name}' {what}", path.display());
    if let Some(secret) = secret {
        // The only time the secret is shown: stdout, so that it can go straight to a file.
        println!("{secret}");
        eprintln!(
            "arcgate: the secret above is shown once; mint tokens with: arcgate token --keys {} --key-name {name}",
            path.display()
        );
    }
    if keys.with_both_rights().iter().any(|k| k == name) {
        eprintln!(
            "arcgate: WARNING: key '{name}' may both send and listen: whoever holds it can attach \
             a listener beside the real gate and take its sessions; give each key one right"
        );
    }
    Ok(0)
}

/// A secret from a file that only its owner can read (the same check as a keys file).
fn read_secret(path: &std::path::Path) -> Result<String, CliError> {
    let bytes = store::read_checked(path, store::Secrecy::Secret)
        .map_err(|e| CliError::Usage(format!("--secret-file: {e}")))?
        .ok_or_else(|| {
            CliError::Usage(format!("--secret-file: {} does not exist", path.display()))
        })?;
    String::from_utf8(bytes)
        .map(|s| s.trim().to_string())
        .map_err(|_| CliError::Usage(format!("--secret-file: {} is not text", path.display())))
}

/// One line per key: name, rights, ports.
fn listing(keys: &KeySet) -> String {
    let mut out = String::new();
    for k in keys.entries() {
        let rights: Vec<String> = k.rights.iter().map(Right::to_string).collect();
        let ports = match &k.ports {
            Some(p) => p.to_string(),
            None => "any".to_string(),
        };
        out.push_str(&format!(
            "{}\trights={}\tports={ports}\n",
            k.name,
            rights.join(",")
        ));
    }
    out
}
