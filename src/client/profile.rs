//! Client profiles: what reaching one host through its gate takes — gate URL, token file,
//! CA files, target port — written once (`arcgate profile add`) and used by name
//! (`arcgate ssh NAME`, `connect --profile NAME`, `ssh-config NAME`), so that nobody types
//! or quotes a `wss://.../$hc/...` URL again.
//!
//! Kept in `$XDG_CONFIG_HOME/arcgate/profiles.json` (`~/.config/...`), mode 0600, written
//! atomically after the same file checks as every configuration file. The file holds paths,
//! never a token.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::hc::url::GateUrl;
use crate::state::store::{self, Secrecy, StoreError};

/// One host's profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// `wss://GATE/$hc/NAME`.
    pub url: String,
    /// The token file (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Through a relay: the gate token file (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_token_file: Option<PathBuf>,
    /// Extra CA files (absolute).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca: Vec<PathBuf>,
    /// The port on the host (SSH's, unless `ssh -p` says otherwise).
    #[serde(default = "default_port")]
    pub port: u16,
}

fn default_port() -> u16 {
    22
}

/// Why a profile cannot be used or written.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file fails its checks or cannot be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The file is not the expected JSON.
    #[error("{}: not a profiles file: {why}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// No profile by that name.
    #[error(
        "no profile named '{0}'; add one with: arcgate profile add {0} --url 'wss://GATE/$hc/NAME' --token-file FILE"
    )]
    Unknown(String),
    /// A name that cannot be one (it is also an ssh host name).
    #[error(
        "'{0}' cannot be a profile name: a letter or digit first, then letters, digits, '.', '-' and '_'"
    )]
    BadName(String),
    /// The URL is not a gate URL.
    #[error(transparent)]
    Url(#[from] crate::hc::url::UrlError),
}

/// The profiles file for this user.
pub fn profiles_path() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("arcgate").join("profiles.json")
}

/// All profiles in `path` (none when it does not exist).
pub fn load(path: &Path) -> Result<BTreeMap<String, Profile>, ProfileError> {
    match store::read_checked(path, Secrecy::Public)? {
        None => Ok(BTreeMap::new()),
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| ProfileError::Invalid {
            path: path.to_path_buf(),
            why: e.to_string(),
        }),
    }
}

/// The profile `name` in `path`.
pub fn get(path: &Path, name: &str) -> Result<Profile, ProfileError> {
    load(path)?
        .remove(name)
        .ok_or_else(|| ProfileError::Unknown(name.to_string()))
}

/// Adds or replaces the profile `name`, under the directory's lock.
pub fn put(path: &Path, name: &str, profile: Profile) -> Result<(), ProfileError> {
    check_name(name)?;
    GateUrl::parse(&profile.url)?;
    let _lock = store::lock_dir(path)?;
    let mut all = load(path)?;
    all.insert(name.to_string(), profile);
    write(path, &all)
}

/// Removes the profile `name`.
pub fn remove(path: &Path, name: &str) -> Result<(), ProfileError> {
    let _lock = store::lock_dir(path)?;
    let mut all = load(path)?;
    all.remove(name)
        .ok_or_else(|| ProfileError::Unknown(name.to_string()))?;
    write(path, &all)
}

fn write(path: &Path, all: &BTreeMap<String, Profile>) -> Result<(), ProfileError> {
    let mut bytes = serde_json::to_vec_pretty(all).expect("plain data serializes");
    bytes.push(b'\n');
    Ok(store::write_atomic(path, &bytes, 0o600)?)
}

/// A profile's name is typed after `ssh` and written into `ssh_config`: kept plain.
fn check_name(name: &str) -> Result<(), ProfileError> {
    // A leading letter or digit: `-x` would be an option to ssh.
    let plain = name
        .as_bytes()
        .first()
        .is_some_and(u8::is_ascii_alphanumeric)
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    match plain {
        true => Ok(()),
        false => Err(ProfileError::BadName(crate::config::shorten(name))),
    }
}
