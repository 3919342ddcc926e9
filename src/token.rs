//! Access tokens: the shared access signature (SAS) format of Azure Relay, minting and checking.
//!
//! `SharedAccessSignature sr={urlencode(resource)}&sig={urlencode(base64(hmac_sha256(key,
//! urlencode(resource) + "\n" + expiry)))}&se={expiry}&skn={keyName}` (SPEC §5). This module
//! owns the format, the keys file's contents and the verdict on a token; it reads no clock
//! (the caller passes `now`) and no file (the caller passes the bytes).

use std::fmt;

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::Deserialize;

use crate::config::{PortSet, shorten};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The prefix of every token.
pub const SCHEME: &str = "SharedAccessSignature";

/// Longest token we look at. Real tokens are a few hundred bytes; anything past this is
/// refused before any parsing or HMAC work.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Characters left as they are when URL-encoding: RFC 3986's unreserved set.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Why a token is not accepted. Each becomes the same `401 Unauthorized` on the wire (no
/// detail that helps guessing); the variant is for the audit log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token in the request.
    #[error("no token")]
    Missing,
    /// Not of the SAS shape.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `skn` names no key in the keys file.
    #[error("unknown key name '{0}'")]
    UnknownKey(String),
    /// The HMAC does not match.
    #[error("bad signature for key '{0}'")]
    BadSignature(String),
    /// `se` is in the past.
    #[error("token for key '{key}' expired at {expiry} (now {now})")]
    Expired {
        /// Key name.
        key: String,
        /// `se`.
        expiry: u64,
        /// The clock when checked.
        now: u64,
    },
    /// The resource does not name this gate.
    #[error("token for key '{key}' is for resource '{resource}', not for this gate")]
    WrongResource {
        /// Key name.
        key: String,
        /// The token's resource (shortened).
        resource: String,
    },
    /// The key may not do this (its `rights` lack it).
    #[error("key '{key}' lacks the {right} right")]
    MissingRight {
        /// Key name.
        key: String,
        /// The right needed.
        right: Right,
    },
    /// The keys file could not be used, so no token can be checked (fail closed).
    #[error("keys are unavailable: {0}")]
    KeysUnavailable(String),
}

impl TokenError {
    /// A bounded code for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Malformed(_) => "malformed",
            TokenError::UnknownKey(_) => "unknown_key",
            TokenError::BadSignature(_) => "bad_signature",
            TokenError::Expired { .. } => "expired",
            TokenError::WrongResource { .. } => "wrong_resource",
            TokenError::MissingRight { .. } => "missing_right",
            TokenError::KeysUnavailable(_) => "keys_unavailable",
        }
    }
}

/// A token taken apart; nothing about it is verified yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SasToken {
    /// `sr` exactly as it appears in the token (still URL-encoded): this is what was signed.
    pub signed_resource: String,
    /// `sr` decoded.
    pub resource: String,
    /// `sig` decoded to bytes.
    pub signature: Vec<u8>,
    /// `se`, Unix seconds.
    pub expiry: u64,
    /// `skn`.
    pub key_name: String,
}

impl SasToken {
    /// Parses `SharedAccessSignature sr=..&sig=..&se=..&skn=..` (fields in any order).
    pub fn parse(token: &str) -> Result<SasToken, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed("longer than any real token"));
        }
        let rest = token
            .trim()
            .strip_prefix(SCHEME)
            .ok_or(TokenError::Malformed(
                "does not start with SharedAccessSignature",
            ))?;
        if !rest.starts_with([' ', '+']) {
            return Err(TokenError::Malformed(
                "no space after SharedAccessSignature",
            ));
        }
        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for field in rest[1..].trim().split('&') {
            let (name, value) = field
                .split_once('=')
                .ok_or(TokenError::Malformed("field without '='"))?;
            let slot = match name {
                "sr" => &mut sr,
                "sig" => &mut sig,
                "se" => &mut se,
                "skn" => &mut skn,
                _ => return Err(TokenError::Malformed("unknown field")),
            };
            if slot.replace(value).is_some() {
                return Err(TokenError::Malformed("repeated field"));
            }
        }
        let (Some(sr), Some(sig), Some(se), Some(skn)) = (sr, sig, se, skn) else {
            return Err(TokenError::Malformed(
                "sr, sig, se and skn are all required",
            ));
        };
        let decode = |v: &str| {
            percent_decode_str(&v.replace('+', " "))
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| TokenError::Malformed("not UTF-8 after URL-decoding"))
        };
        let signature = base64::engine::general_purpose::STANDARD
            .decode(decode(sig)?.trim())
            .map_err(|_| TokenError::Malformed("sig is not base64"))?;
        if se.is_empty() || se.len() > 20 || !se.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TokenError::Malformed("se is not Unix seconds"));
        }
        let expiry = se
            .parse()
            .map_err(|_| TokenError::Malformed("se is not Unix seconds"))?;
        Ok(SasToken {
            signed_resource: sr.to_string(),
            resource: decode(sr)?,
            signature,
            expiry,
            key_name: decode(skn)?,
        })
    }
}

/// URL-encodes as the token format does.
pub fn url_encode(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

fn hmac_of(key: &str, signed_resource: &str, expiry: u64) -> HmacSha256 {
    let mut mac =
        HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(signed_resource.as_bytes());
    mac.update(b"\n");
    mac.update(expiry.to_string().as_bytes());
    mac
}

/// Mints a token for `resource`, signed with `key` named `key_name`, valid until `expiry`.
pub fn mint(resource: &str, key_name: &str, key: &str, expiry: u64) -> String {
    let sr = url_encode(resource);
    let sig = base64::engine::general_purpose::STANDARD
        .encode(hmac_of(key, &sr, expiry).finalize().into_bytes());
    format!(
        "{SCHEME} sr={sr}&sig={}&se={expiry}&skn={}",
        url_encode(&sig),
        url_encode(key_name)
    )
}

/// The resource a gate answers to: `http://{host}/{name}/`.
pub fn resource_for(host: &str, name: &str) -> String {
    format!("http://{host}/{name}/")
}

/// What a key's tokens may do (Azure Relay's rights; the keys file's `rights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Connect as a sender: reach a gate, directly or through a relay.
    Send,
    /// Attach a gate to a relay as a listener.
    Listen,
}

impl fmt::Display for Right {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Right::Send => "send",
            Right::Listen => "listen",
        })
    }
}

/// One key from the keys file.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// The key's name (`skn`).
    pub name: String,
    key: String,
    /// When set, the only ports this key's tokens may reach.
    pub ports: Option<PortSet>,
    /// What its tokens may do; a key without `rights` may only send (`listen` is granted
    /// by name, never by default).
    pub rights: Vec<Right>,
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .field("ports", &self.ports)
            .field("rights", &self.rights)
            .finish()
    }
}

impl KeyEntry {
    /// The secret, for minting.
    pub fn secret(&self) -> &str {
        &self.key
    }

    /// Whether its tokens may do `right`.
    pub fn may(&self, right: Right) -> bool {
        self.rights.contains(&right)
    }

    /// Whether its tokens may reach `port` (a key without `ports` reaches any).
    pub fn covers(&self, port: u16) -> bool {
        covers(self.ports.as_ref(), port)
    }
}

/// Whether a key's `ports` (none: any port) let its tokens reach `port`.
fn covers(ports: Option<&PortSet>, port: u16) -> bool {
    ports.is_none_or(|p| p.contains(port))
}

/// The keys file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet(Vec<KeyEntry>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: String,
    key: String,
    #[serde(default)]
    ports: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    rights: Option<Vec<String>>,
}

/// Why a keys file's contents cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysFileError {
    /// Not the expected JSON.
    #[error(
        "not a valid keys file: {0} (expected [{{\"name\":\"...\",\"key\":\"...\",\"ports\":[22]}}], ports optional)"
    )]
    NotJson(String),
    /// A name that is empty, too long or misleading.
    #[error("key name '{0}' is empty, too long or has control or text-direction characters")]
    BadName(String),
    /// A secret too short to be random.
    #[error("key '{0}' is shorter than 16 characters; use a random 256-bit key")]
    ShortKey(String),
    /// A name used twice.
    #[error("key name '{0}' appears twice")]
    Twice(String),
    /// A `ports` list that is not one.
    #[error("key '{key}' ports: {why}")]
    BadPorts {
        /// The key.
        key: String,
        /// Why.
        why: String,
    },
    /// A right that does not exist.
    #[error("key '{key}': unknown right '{right}'; rights are send and listen")]
    UnknownRight {
        /// The key.
        key: String,
        /// The right given.
        right: String,
    },
}

impl KeySet {
    /// Parses `[{"name":"ops","key":"...","ports":[22]}]`.
    pub fn from_json(bytes: &[u8]) -> Result<KeySet, KeysFileError> {
        let raw: Vec<RawKey> =
            serde_json::from_slice(bytes).map_err(|e| KeysFileError::NotJson(e.to_string()))?;
        let mut keys = Vec::with_capacity(raw.len());
        for k in raw {
            check_name(&k.name)?;
            if k.key.len() < 16 {
                return Err(KeysFileError::ShortKey(k.name));
            }
            if keys.iter().any(|e: &KeyEntry| e.name == k.name) {
                return Err(KeysFileError::Twice(k.name));
            }
            let ports =
                match k.ports {
                    None => None,
                    Some(list) => Some(PortSet::from_json_list(&list).map_err(|why| {
                        KeysFileError::BadPorts {
                            key: k.name.clone(),
                            why,
                        }
                    })?),
                };
            let rights = match k.rights {
                // No rights: send only. A key that may attach listeners takes over a
                // name's sessions, so that right is never implied.
                None => vec![Right::Send],
                Some(list) => list
                    .iter()
                    .map(|r| match r.to_ascii_lowercase().as_str() {
                        "send" => Ok(Right::Send),
                        "listen" => Ok(Right::Listen),
                        other => Err(KeysFileError::UnknownRight {
                            key: k.name.clone(),
                            right: shorten(other),
                        }),
                    })
                    .collect::<Result<_, _>>()?,
            };
            keys.push(KeyEntry {
                name: k.name,
                key: k.key,
                ports,
                rights,
            });
        }
        Ok(KeySet(keys))
    }

    /// A keys file holding one new random 256-bit key named `name`, with the send right.
    pub fn generate_json(name: &str) -> Vec<u8> {
        let (keys, _) = KeySet::default()
            .change(&KeyChange::Add {
                name: name.to_string(),
                secret: None,
                rights: vec![Right::Send],
                ports: None,
            })
            .expect("an empty set takes any valid name");
        keys.to_json()
    }

    /// The file's contents for this set: what [`KeySet::from_json`] reads back.
    pub fn to_json(&self) -> Vec<u8> {
        let file: Vec<serde_json::Value> = self
            .0
            .iter()
            .map(|k| {
                let mut entry = serde_json::json!({
                    "name": k.name,
                    "key": k.key,
                    "rights": k.rights.iter().map(Right::to_string).collect::<Vec<_>>(),
                });
                if let Some(ports) = &k.ports {
                    entry["ports"] = ports.to_json();
                }
                entry
            })
            .collect();
        let mut out = serde_json::to_vec_pretty(&file).expect("plain JSON serializes");
        out.push(b'\n');
        out
    }

    /// Every key, in file order.
    pub fn entries(&self) -> &[KeyEntry] {
        &self.0
    }

    /// The set after `change`, and the new secret when the change made one (add, rotate):
    /// it is shown once, to whoever made the change, and never again.
    pub fn change(&self, change: &KeyChange) -> Result<(KeySet, Option<String>), KeyChangeError> {
        let mut keys = self.0.clone();
        let position = |name: &str| keys.iter().position(|k| k.name == name);
        match change {
            KeyChange::Add {
                name,
                secret,
                rights,
                ports,
            } => {
                check_name(name).map_err(|_| KeyChangeError::BadName(shorten(name)))?;
                if position(name).is_some() {
                    return Err(KeyChangeError::Exists(name.clone()));
                }
                if rights.is_empty() {
                    return Err(KeyChangeError::NoRights(name.clone()));
                }
                if secret.as_ref().is_some_and(|s| s.len() < 16) {
                    return Err(KeyChangeError::ShortSecret(name.clone()));
                }
                let (key, made) = match secret {
                    Some(given) => (given.clone(), None),
                    None => {
                        let made = new_secret();
                        (made.clone(), Some(made))
                    }
                };
                keys.push(KeyEntry {
                    name: name.clone(),
                    key,
                    ports: ports.clone(),
                    rights: rights.clone(),
                });
                Ok((KeySet(keys), made))
            }
            KeyChange::Remove(name) => {
                let i = position(name).ok_or_else(|| KeyChangeError::NoSuch(shorten(name)))?;
                keys.remove(i);
                Ok((KeySet(keys), None))
            }
            KeyChange::Rotate(name) => {
                let i = position(name).ok_or_else(|| KeyChangeError::NoSuch(shorten(name)))?;
                let secret = new_secret();
                keys[i].key.clone_from(&secret);
                Ok((KeySet(keys), Some(secret)))
            }
        }
    }

    /// The key named `name`.
    pub fn get(&self, name: &str) -> Option<&KeyEntry> {
        self.0.iter().find(|k| k.name == name)
    }

    /// The names of all keys (never the secrets).
    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|k| k.name.as_str()).collect()
    }

    /// The names of keys that may both send and listen: whoever holds one can attach a
    /// listener beside the real gate and take its senders' sessions.
    pub fn with_both_rights(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter(|k| k.may(Right::Send) && k.may(Right::Listen))
            .map(|k| k.name.as_str())
            .collect()
    }

    /// The key that still backs `grant` — same name, same secret, still with the right the
    /// grant was for — or why none does. Its `ports` are the ones that now apply to the
    /// grant's sessions.
    pub fn still_backs(&self, grant: &Grant) -> Result<&KeyEntry, Withdrawn> {
        let entry = self.get(&grant.key_name).ok_or(Withdrawn::Removed)?;
        if digest(&entry.key) != grant.secret_digest {
            return Err(Withdrawn::SecretChanged);
        }
        if !entry.may(grant.right) {
            return Err(Withdrawn::RightRemoved(grant.right));
        }
        Ok(entry)
    }
}

/// A change to a keys file made by command (`arcgate key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChange {
    /// A new key: with a new random secret, or one given (another file's, or an Azure Relay
    /// shared access policy's).
    Add {
        /// Its name.
        name: String,
        /// The secret to use instead of a new random one.
        secret: Option<String>,
        /// What its tokens may do (at least one right).
        rights: Vec<Right>,
        /// The only ports its tokens may reach, if limited.
        ports: Option<PortSet>,
    },
    /// The key goes: every session it opened is closed.
    Remove(String),
    /// The key gets a new random secret: tokens signed with the old one stop working, and
    /// the sessions they opened are closed.
    Rotate(String),
}

/// Why a [`KeyChange`] was refused; nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyChangeError {
    /// `add` with a name already in the file.
    #[error("a key named '{0}' already exists; rotate it, or remove it first")]
    Exists(String),
    /// `remove` or `rotate` of a name not in the file.
    #[error("no key named '{0}'; `arcgate key list` shows the names")]
    NoSuch(String),
    /// A name that is empty, too long or misleading.
    #[error(
        "key name '{0}' is empty, longer than 256 bytes or has control or text-direction characters"
    )]
    BadName(String),
    /// `add` with no right.
    #[error("key '{0}' needs a right: --rights send (the default) or --rights listen")]
    NoRights(String),
    /// `add` with a given secret too short to be random.
    #[error(
        "the secret given for key '{0}' is shorter than 16 characters; use a random 256-bit key"
    )]
    ShortSecret(String),
}

fn check_name(name: &str) -> Result<(), KeysFileError> {
    if name.is_empty() || name.len() > 256 || name.chars().any(crate::config::misleading) {
        return Err(KeysFileError::BadName(shorten(name)));
    }
    Ok(())
}

/// A new random 256-bit secret, base64.
fn new_secret() -> String {
    let mut secret = [0u8; 32];
    rand::fill(&mut secret);
    base64::engine::general_purpose::STANDARD.encode(secret)
}

/// What a valid token grants: the key it was signed with, and that key's port restriction.
/// It remembers which secret signed it (as a digest), so that a live session can be asked
/// whether a later keys file still backs it ([`KeySet::still_backs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The key's name.
    pub key_name: String,
    /// The key's ports, if it lists any.
    pub ports: Option<PortSet>,
    /// The right the token was checked for.
    pub right: Right,
    /// The token's `se`: when it stops being valid (Unix seconds).
    pub expiry: u64,
    /// SHA-256 of the secret that signed the token: never the secret itself.
    secret_digest: [u8; 32],
}

impl Grant {
    /// Which secret signed the token (its SHA-256: never the secret): a standing approval
    /// holds for that secret only, not for a key given a new one under the same name.
    pub fn secret_id(&self) -> [u8; 32] {
        self.secret_digest
    }

    /// Whether the key's `ports`, as they were when the token was checked, reach `port`.
    pub fn covers(&self, port: u16) -> bool {
        covers(self.ports.as_ref(), port)
    }
}

/// Why a keys file no longer backs a grant: each ends the sessions it opened (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Withdrawn {
    /// No key has the grant's name any more.
    #[error("removed")]
    Removed,
    /// The key has a new secret: tokens signed with the old one are no longer valid.
    #[error("given a new secret")]
    SecretChanged,
    /// The key lost the right the grant was for.
    #[error("no longer has the {0} right")]
    RightRemoved(Right),
}

fn digest(secret: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(secret.as_bytes()).into()
}

/// What a token's resource must name.
#[derive(Debug, Clone)]
pub struct Audience<'a> {
    /// The gate's name.
    pub name: &'a str,
    /// When set (`--public-host`), the resource's host must be this.
    pub host: Option<&'a str>,
}

impl Audience<'_> {
    /// Whether the resource `http://{host}/{name}/` (or `http://{host}/`) names this gate.
    /// Split by hand rather than by a URL parser: a parser normalizes hosts (an all-digit
    /// host is an IPv4 number to it, and too large a one an error), and the host is only
    /// compared, never resolved.
    fn accepts(&self, resource: &str) -> bool {
        let Some((scheme, rest)) = resource.split_once("://") else {
            return false;
        };
        if !["http", "https", "sb"]
            .iter()
            .any(|s| s.eq_ignore_ascii_case(scheme))
        {
            return false;
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') || path.contains(['?', '#']) {
            return false;
        }
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => authority.split(':').next().unwrap_or(""),
        };
        if let Some(want) = self.host
            && !host.eq_ignore_ascii_case(want)
        {
            return false;
        }
        let name = path.strip_prefix('/').unwrap_or(path);
        let name = name.strip_suffix('/').unwrap_or(name);
        name.is_empty() || name.eq_ignore_ascii_case(self.name)
    }
}

/// Why a client will not send the token it holds: what the gate would refuse with a bare
/// `401`, said precisely before dialling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenProblem {
    /// Not a token at all.
    #[error(
        "the token is not a SharedAccessSignature token ({0}); mint one on the host with `arcgate token`"
    )]
    Malformed(&'static str),
    /// Its `se` has passed by this machine's clock.
    #[error(
        "the token expired at {} ({} ago by this machine's clock); mint a new one on the host with `arcgate token`",
        crate::config::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(*.expiry)),
        ago(*.now - *.expiry)
    )]
    Expired {
        /// `se`.
        expiry: u64,
        /// The clock.
        now: u64,
    },
    /// Its resource names another gate.
    #[error(
        "the token is for {resource}, not for '{name}'; mint one for this gate on the host with `arcgate token --name {name}`"
    )]
    OtherGate {
        /// The token's resource (shortened).
        resource: String,
        /// The name in the URL.
        name: String,
    },
}

impl TokenProblem {
    /// Whether it is a usage error (not a token) rather than one the gate would answer `401`.
    pub fn is_malformed(&self) -> bool {
        matches!(self, TokenProblem::Malformed(_))
    }
}

/// `secs` as a person says it: `45s`, `12m`, `3h`, `2d`.
fn ago(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs}s"),
        120..7200 => format!("{}m", secs / 60),
        7200..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// How far a client's clock may run ahead of the gate's before it calls a token expired
/// itself: a token that expired less than this long ago is sent, and the gate decides.
pub const CLOCK_SKEW: u64 = 300;

/// What a client can tell about its own token before sending it: that it is one, that it
/// has not expired, and — when `name` is given — that its resource names that gate (or is
/// host-wide). The host's keys decide the rest; this only turns a sure `401` into words.
pub fn precheck(token: &str, name: Option<&str>, now: u64) -> Result<(), TokenProblem> {
    let sas = SasToken::parse(token).map_err(|e| match e {
        TokenError::Malformed(why) => TokenProblem::Malformed(why),
        _ => TokenProblem::Malformed("unreadable"),
    })?;
    // Within CLOCK_SKEW the gate's clock decides: this machine's may run ahead.
    if sas.expiry.saturating_add(CLOCK_SKEW) <= now {
        return Err(TokenProblem::Expired {
            expiry: sas.expiry,
            now,
        });
    }
    if let Some(name) = name {
        let audience = Audience { name, host: None };
        if !audience.accepts(&sas.resource) {
            return Err(TokenProblem::OtherGate {
                resource: shorten(&sas.resource),
                name: shorten(name),
            });
        }
    }
    Ok(())
}

/// Checks a token for the send right (a client reaching a gate). See [`verify_for`].
pub fn verify(
    keys: &KeySet,
    token: &str,
    audience: &Audience<'_>,
    now: u64,
) -> Result<Grant, TokenError> {
    verify_for(keys, token, audience, now, Right::Send)
}

/// Checks a token: shape, key, signature (constant-time), expiry, resource, right. Order
/// matters for what the audit log says, not for what the client sees: every failure is a 401.
pub fn verify_for(
    keys: &KeySet,
    token: &str,
    audience: &Audience<'_>,
    now: u64,
    right: Right,
) -> Result<Grant, TokenError> {
    let sas = SasToken::parse(token)?;
    let entry = keys
        .get(&sas.key_name)
        .ok_or_else(|| TokenError::UnknownKey(shorten(&sas.key_name)))?;
    // `verify_slice` compares in constant time.
    hmac_of(&entry.key, &sas.signed_resource, sas.expiry)
        .verify_slice(&sas.signature)
        .map_err(|_| TokenError::BadSignature(entry.name.clone()))?;
    if sas.expiry <= now {
        return Err(TokenError::Expired {
            key: entry.name.clone(),
            expiry: sas.expiry,
            now,
        });
    }
    if !audience.accepts(&sas.resource) {
        return Err(TokenError::WrongResource {
            key: entry.name.clone(),
            resource: shorten(&sas.resource),
        });
    }
    if !entry.rights.contains(&right) {
        return Err(TokenError::MissingRight {
            key: entry.name.clone(),
            right,
        });
    }
    Ok(Grant {
        key_name: entry.name.clone(),
        ports: entry.ports.clone(),
        right,
        expiry: sas.expiry,
        secret_digest: digest(&entry.key),
    })
}

/// Parses a token lifetime: a duration with its unit (`90s`, `30m`, `8h`, `7d`), never
/// zero. A bare number is refused: `--ttl 8` meant 8 seconds to nobody who typed it.
pub fn parse_ttl(s: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_lifetime(s, "a token")
}

/// Parses a duration such as `90`, `90s`, `30m`, `1h`, `7d`.
pub use crate::config::parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn keys() -> KeySet {
        KeySet::from_json(
            br#"[{"name":"ops","key":"0123456789abcdef0123"},
                 {"name":"narrow","key":"fedcba9876543210fedc","ports":[22]}]"#,
        )
        .unwrap()
    }

    fn gate() -> Audience<'static> {
        Audience {
            name: "myhost",
            host: None,
        }
    }

    #[test]
    fn minted_token_verifies_and_carries_the_key() {
        let t = mint(
            "http://gate.example/myhost/",
            "ops",
            "0123456789abcdef0123",
            NOW + 60,
        );
        let grant = verify(&keys(), &t, &gate(), NOW).unwrap();
        assert_eq!(grant.key_name, "ops");
        assert_eq!(grant.ports, None);
        let t = mint(
            "http://gate.example/myhost/",
            "narrow",
            "fedcba9876543210fedc",
            NOW + 60,
        );
        let grant = verify(&keys(), &t, &gate(), NOW).unwrap();
        assert!(grant.ports.unwrap().contains(22));
    }

    #[test]
    fn matches_azure_relays_published_signature() {
        // Signature computed independently with Python's hmac/base64 and
        // urllib.parse.quote_plus, the algorithm of Azure's published SAS samples.
        let t = mint("http://h/n/", "k", "0123456789abcdef0123", 1700000000);
        assert_eq!(
            t,
            "SharedAccessSignature sr=http%3A%2F%2Fh%2Fn%2F&sig=H7WRURznuwYFmsAa3hXCubliSp7XdsgeHTflmCCJmOg%3D&se=1700000000&skn=k"
        );
    }

    #[test]
    fn every_bad_token_is_refused_with_its_reason() {
        let good = mint("http://g/myhost/", "ops", "0123456789abcdef0123", NOW + 60);
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "malformed"),
            ("Bearer abc".into(), "malformed"),
            (good.replace("skn=ops", "skn=nobody"), "unknown key"),
            (good.replace("&se=", "&se=1"), "bad signature"),
            (
                mint("http://g/myhost/", "ops", "wrong-key-wrong-key", NOW + 60),
                "bad signature",
            ),
            (
                mint("http://g/myhost/", "ops", "0123456789abcdef0123", NOW - 1),
                "expired",
            ),
            (
                mint("http://g/other/", "ops", "0123456789abcdef0123", NOW + 60),
                "not for this gate",
            ),
            (
                mint(
                    "http://g/myhost/x/",
                    "ops",
                    "0123456789abcdef0123",
                    NOW + 60,
                ),
                "not for this gate",
            ),
            (format!("{good}&skn=ops"), "malformed"),
            ("A".repeat(1 << 20), "malformed"),
            (good.replace("se=", "se=+"), "malformed"),
        ];
        for (token, want) in cases {
            let err = verify(&keys(), &token, &gate(), NOW)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{}: {err}", shorten(&token));
        }
    }

    #[test]
    fn host_wide_token_covers_every_name_and_public_host_pins_the_host() {
        let t = mint("http://g.example/", "ops", "0123456789abcdef0123", NOW + 60);
        assert!(verify(&keys(), &t, &gate(), NOW).is_ok());
        let pinned = Audience {
            name: "myhost",
            host: Some("other.example"),
        };
        assert!(verify(&keys(), &t, &pinned, NOW).is_err());
        let pinned = Audience {
            name: "myhost",
            host: Some("G.example"),
        };
        assert!(verify(&keys(), &t, &pinned, NOW).is_ok());
    }

    #[test]
    fn any_host_name_works_when_the_host_is_not_pinned() {
        // Found by the `token` fuzz target: an all-digit host is an IPv4 number to a URL
        // parser, and one too large for that made every token for it fail to verify.
        let t = mint(
            "http://66666666666666666666/myhost/",
            "ops",
            "0123456789abcdef0123",
            NOW + 60,
        );
        assert!(verify(&keys(), &t, &gate(), NOW).is_ok());
        for bad in [
            "http:/x/myhost/",
            "ftp://x/myhost/",
            "http:///myhost/",
            "http://u@x/myhost/",
            "http://x/myhost/?q",
        ] {
            let t = mint(bad, "ops", "0123456789abcdef0123", NOW + 60);
            assert!(verify(&keys(), &t, &gate(), NOW).is_err(), "{bad}");
        }
        let pinned = Audience {
            name: "myhost",
            host: Some("gate.example"),
        };
        let t = mint(
            "https://GATE.example:443/myhost",
            "ops",
            "0123456789abcdef0123",
            NOW + 60,
        );
        assert!(verify(&keys(), &t, &pinned, NOW).is_ok());
    }

    #[test]
    fn keys_file_errors_are_clear() {
        for (bytes, want) in [
            (&b"{}"[..], "not a valid keys file"),
            (br#"[{"name":"a","key":"short"}]"#, "shorter than 16"),
            (
                br#"[{"name":"a","key":"0123456789abcdef","ports":[0]}]"#,
                "ports",
            ),
            (
                br#"[{"name":"a","key":"0123456789abcdef","extra":1}]"#,
                "unknown field",
            ),
        ] {
            let err = KeySet::from_json(bytes).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        let generated = KeySet::from_json(&KeySet::generate_json("default")).unwrap();
        assert_eq!(generated.names(), vec!["default"]);
        assert_eq!(generated.get("default").unwrap().secret().len(), 44);
    }

    #[test]
    fn rights_limit_what_a_key_may_do() {
        let keys = KeySet::from_json(
            br#"[{"name":"gate","key":"0123456789abcdef0123","rights":["listen"]}]"#,
        )
        .unwrap();
        let t = mint("http://r/myhost/", "gate", "0123456789abcdef0123", NOW + 60);
        assert!(verify_for(&keys, &t, &gate(), NOW, Right::Listen).is_ok());
        let err = verify_for(&keys, &t, &gate(), NOW, Right::Send).unwrap_err();
        assert!(matches!(err, TokenError::MissingRight { .. }), "{err}");
        assert!(
            KeySet::from_json(
                br#"[{"name":"g","key":"0123456789abcdef0123","rights":["manage"]}]"#
            )
            .is_err()
        );
    }

    #[test]
    fn a_key_without_rights_may_send_but_never_listen() {
        // The README's old set-up: the relay's listen key in the gate's keys file without
        // `rights` opened sessions at the direct gate, and any sender key could attach
        // listeners beside the real gate.
        let keys = KeySet::from_json(
            br#"[{"name":"plain","key":"0123456789abcdef0123"},
                 {"name":"both","key":"fedcba9876543210fedc","rights":["send","listen"]}]"#,
        )
        .unwrap();
        let t = mint(
            "http://r/myhost/",
            "plain",
            "0123456789abcdef0123",
            NOW + 60,
        );
        assert!(verify_for(&keys, &t, &gate(), NOW, Right::Send).is_ok());
        let err = verify_for(&keys, &t, &gate(), NOW, Right::Listen).unwrap_err();
        assert_eq!(err.to_string(), "key 'plain' lacks the listen right");
        assert_eq!(keys.with_both_rights(), vec!["both"]);
        let generated = KeySet::from_json(&KeySet::generate_json("default")).unwrap();
        assert_eq!(generated.get("default").unwrap().rights, vec![Right::Send]);
        assert!(generated.with_both_rights().is_empty());
    }

    #[test]
    fn a_grant_is_backed_only_by_its_own_key_secret_and_right() {
        let t = mint(
            "http://g/myhost/",
            "narrow",
            "fedcba9876543210fedc",
            NOW + 60,
        );
        let grant = verify(&keys(), &t, &gate(), NOW).unwrap();
        let entry = keys().still_backs(&grant).map(|e| e.ports.clone());
        assert_eq!(entry, Ok(grant.ports.clone()), "the same file backs it");
        let cases: [(&[u8], Result<(), Withdrawn>); 5] = [
            (
                br#"[{"name":"ops","key":"0123456789abcdef0123"}]"#,
                Err(Withdrawn::Removed),
            ),
            (
                br#"[{"name":"narrow","key":"a-new-secret-0123456789"}]"#,
                Err(Withdrawn::SecretChanged),
            ),
            (
                br#"[{"name":"narrow","key":"fedcba9876543210fedc","rights":["listen"]}]"#,
                Err(Withdrawn::RightRemoved(Right::Send)),
            ),
            // Narrower ports still back the grant: the caller re-decides with them.
            (
                br#"[{"name":"narrow","key":"fedcba9876543210fedc","ports":[2222]}]"#,
                Ok(()),
            ),
            (
                br#"[{"name":"narrow","key":"fedcba9876543210fedc","rights":["send"]}]"#,
                Ok(()),
            ),
        ];
        for (file, want) in cases {
            let keys = KeySet::from_json(file).unwrap();
            assert_eq!(
                keys.still_backs(&grant).map(|_| ()),
                want,
                "{}",
                String::from_utf8_lossy(file)
            );
        }
    }

    #[test]
    fn key_changes_keep_everything_else_and_show_a_secret_once() {
        let start = keys();
        let (added, secret) = start
            .change(&KeyChange::Add {
                name: "users".into(),
                secret: None,
                rights: vec![Right::Send],
                ports: Some(PortSet::from_json_list(&[22.into(), "3389-3390".into()]).unwrap()),
            })
            .unwrap();
        let secret = secret.unwrap();
        assert_eq!(secret.len(), 44);
        // What is written reads back the same, with the secret that was shown.
        let reread = KeySet::from_json(&added.to_json()).unwrap();
        assert_eq!(reread, added);
        assert_eq!(reread.get("users").unwrap().secret(), secret);
        assert!(reread.get("users").unwrap().covers(3390));
        assert!(!reread.get("users").unwrap().covers(23));
        assert_eq!(reread.get("ops"), start.get("ops"));

        let (rotated, new) = reread.change(&KeyChange::Rotate("users".into())).unwrap();
        assert_ne!(new.unwrap(), secret);
        assert_eq!(
            rotated.get("users").unwrap().ports,
            reread.get("users").unwrap().ports
        );
        let (imported, shown) = start
            .change(&KeyChange::Add {
                name: "gates".into(),
                secret: Some("the-relays-own-secret-0123".into()),
                rights: vec![Right::Listen],
                ports: None,
            })
            .unwrap();
        assert_eq!(shown, None, "a given secret is not printed again");
        assert_eq!(
            imported.get("gates").unwrap().secret(),
            "the-relays-own-secret-0123"
        );
        let (removed, none) = rotated.change(&KeyChange::Remove("users".into())).unwrap();
        assert_eq!((removed, none), (start.clone(), None));

        for (change, want) in [
            (
                KeyChange::Add {
                    name: "ops".into(),
                    secret: None,
                    rights: vec![Right::Send],
                    ports: None,
                },
                KeyChangeError::Exists("ops".into()),
            ),
            (
                KeyChange::Remove("nobody".into()),
                KeyChangeError::NoSuch("nobody".into()),
            ),
            (
                KeyChange::Rotate("nobody".into()),
                KeyChangeError::NoSuch("nobody".into()),
            ),
            (
                KeyChange::Add {
                    name: "a\u{202e}b".into(),
                    secret: None,
                    rights: vec![Right::Send],
                    ports: None,
                },
                KeyChangeError::BadName("a?b".into()),
            ),
            (
                KeyChange::Add {
                    name: "x".into(),
                    secret: None,
                    rights: vec![],
                    ports: None,
                },
                KeyChangeError::NoRights("x".into()),
            ),
            (
                KeyChange::Add {
                    name: "x".into(),
                    secret: Some("short".into()),
                    rights: vec![Right::Send],
                    ports: None,
                },
                KeyChangeError::ShortSecret("x".into()),
            ),
        ] {
            assert_eq!(start.change(&change).unwrap_err(), want, "{change:?}");
        }
    }

    #[test]
    fn a_client_tells_why_its_token_would_be_refused() {
        let t = mint("http://g/myhost/", "ops", "0123456789abcdef0123", NOW + 60);
        assert_eq!(precheck(&t, Some("myhost"), NOW), Ok(()));
        assert_eq!(precheck(&t, Some("MyHost"), NOW), Ok(()));
        assert_eq!(precheck(&t, None, NOW), Ok(()));
        let err = precheck(&t, Some("other"), NOW).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the token is for http://g/myhost/, not for 'other'; mint one for this gate on the host with `arcgate token --name other`"
        );
        let err = precheck(&t, Some("myhost"), NOW + 60 + 300).unwrap_err();
        assert!(
            err.to_string().starts_with("the token expired at "),
            "{err}"
        );
        assert!(
            err.to_string().contains("(5m ago by this machine's clock)"),
            "{err}"
        );
        let wide = mint("http://g/", "ops", "0123456789abcdef0123", NOW + 60);
        assert_eq!(precheck(&wide, Some("anything"), NOW), Ok(()));
        assert!(
            precheck("Bearer x", Some("myhost"), NOW)
                .unwrap_err()
                .is_malformed()
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h").unwrap().as_secs(), 3600);
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("7d").unwrap().as_secs(), 604800);
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("-1h").is_err());
        assert_eq!(parse_ttl("8h").unwrap().as_secs(), 8 * 3600);
        assert_eq!(
            parse_ttl("8").unwrap_err(),
            "'8' has no unit; write 8s, 8m, 8h or 8d"
        );
        assert!(parse_ttl("0s").unwrap_err().contains("at least 1s"));
        assert!(parse_ttl("0").unwrap_err().contains("at least 1s"));
        assert_eq!(parse_ttl("05m").unwrap().as_secs(), 300);
    }
}
