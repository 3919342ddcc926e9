//! The local configuration: its keys, their types and defaults, and the one parser that turns
//! raw values — from the file or from `arcgate config set` — into typed values.
//!
//! This module owns *what a valid configuration is* and the rules for changing it (monitor-mode
//! locks, list edits). It does no I/O: reading and writing the file is [`crate::state::store`]'s job,
//! printing is the command's.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Every configuration key, in the order `config list` prints them (the agent's order).
pub const KEYS: &[Key] = &[
    Key::IncomingEnabled,
    Key::IncomingPorts,
    Key::ProxyUrl,
    Key::ExtensionsAllowlist,
    Key::ExtensionsBlocklist,
    Key::ProxyBypass,
    Key::GuestConfigurationEnabled,
    Key::ExtensionsEnabled,
    Key::Mode,
];

/// The extensions monitor mode allows, exactly as the agent sets them (seed article; the
/// article prints one entry as `Microsoft.Azure.Security.Monitoring /AzureSecurityLinuxAgent`,
/// a stray space of the blog's line wrapping, dropped here).
pub const MONITOR_ALLOWLIST: &[&str] = &[
    "Microsoft.EnterpriseCloud.Monitoring/OmsAgentForLinux",
    "Microsoft.Azure.Monitoring.DependencyAgent/DependencyAgentLinux",
    "Microsoft.Azure.Monitor/AzureMonitorLinuxAgent",
    "Qualys/LinuxAgent.AzureSecurityCenter",
    "Microsoft.Azure.Security.Monitoring/AzureSecurityLinuxAgent",
    "Microsoft.Azure.AzureDefenderForServers/MDE.Linux",
    "Microsoft.Azure.Monitor.VirtualMachines.GuestHealth/GuestHealthLinuxAgent",
    "Microsoft.Azure.Monitor.VirtualMachines.GuestHealth.DEV/GuestHealthLinuxAgent",
    "Microsoft.EnterpriseCloud.Monitoring/MicrosoftMonitoringAgent",
    "Microsoft.Azure.Monitoring.DependencyAgent/DependencyAgentWindows",
    "Microsoft.Azure.Monitor/AzureMonitorWindowsAgent",
    "Qualys/WindowsAgent.AzureSecurityCenter",
    "Microsoft.Azure.AzureDefenderForServers/MDE.Windows",
    "Microsoft.Azure.AzureDefenderForSQL/AdvancedThreatProtection.Windows",
    "Microsoft.Azure.Security.Monitoring/AzureSecurityWindowsAgent",
    "Microsoft.Azure.Security/IaaSAntimalware",
    "Microsoft.Azure.Geneva/GenevaMonitoring",
    "Microsoft.Azure.AzureDefenderForSQL/VulnerabilityAssessment.Windows",
    "Microsoft.Azure.Monitor.VirtualMachines.GuestHealth/GuestHealthWindowsAgent",
    "Microsoft.Sentinel.AzureMonitorAgentExtensions.Internal/DnsExtension",
    "Microsoft.Sentinel.AzureMonitorAgentExtensions/MicrosoftDnsAgent",
];

/// An invalid key, value or change. Nothing is written when one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The key is not one of [`KEYS`].
    #[error("unknown configuration key '{key}'; known keys: {}", known_keys())]
    UnknownKey {
        /// What was given.
        key: String,
    },
    /// The value does not parse for the key.
    #[error("invalid value for {key}: '{given}' — {allowed}")]
    InvalidValue {
        /// The key being set.
        key: &'static str,
        /// What was given (shortened if long).
        given: String,
        /// What the key accepts, in words.
        allowed: String,
    },
    /// `--add`/`--remove` on a key that is not a list.
    #[error(
        "{key} is not a list; --add and --remove work on list keys only ({})",
        list_keys()
    )]
    NotAList {
        /// The key given.
        key: &'static str,
    },
    /// A change monitor mode forbids.
    #[error(
        "{key} cannot be changed while config.mode is monitor; \
         switch to full first: arcgate config set config.mode full"
    )]
    LockedInMonitor {
        /// The key given.
        key: &'static str,
    },
    /// The file has a key we do not know, or a value of the wrong JSON type.
    #[error("{0}")]
    File(String),
}

fn known_keys() -> String {
    KEYS.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
}

fn list_keys() -> String {
    KEYS.iter()
        .filter(|k| k.is_list())
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    /// `incomingconnections.enabled`
    IncomingEnabled,
    /// `incomingconnections.ports`
    IncomingPorts,
    /// `config.mode`
    Mode,
    /// `extensions.enabled`
    ExtensionsEnabled,
    /// `extensions.allowlist`
    ExtensionsAllowlist,
    /// `extensions.blocklist`
    ExtensionsBlocklist,
    /// `guestconfiguration.enabled`
    GuestConfigurationEnabled,
    /// `proxy.url`
    ProxyUrl,
    /// `proxy.bypass`
    ProxyBypass,
}

impl Key {
    /// Looks a key up by its name (case-insensitive, as the agent does).
    pub fn from_name(name: &str) -> Result<Key, ConfigError> {
        KEYS.iter()
            .copied()
            .find(|k| k.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| ConfigError::UnknownKey { key: shorten(name) })
    }

    /// The key's name as users type it.
    pub fn name(self) -> &'static str {
        match self {
            Key::IncomingEnabled => "incomingconnections.enabled",
            Key::IncomingPorts => "incomingconnections.ports",
            Key::Mode => "config.mode",
            Key::ExtensionsEnabled => "extensions.enabled",
            Key::ExtensionsAllowlist => "extensions.allowlist",
            Key::ExtensionsBlocklist => "extensions.blocklist",
            Key::GuestConfigurationEnabled => "guestconfiguration.enabled",
            Key::ProxyUrl => "proxy.url",
            Key::ProxyBypass => "proxy.bypass",
        }
    }

    /// Whether the key holds a list (and so accepts `--add`/`--remove`).
    pub fn is_list(self) -> bool {
        matches!(
            self,
            Key::IncomingPorts
                | Key::ExtensionsAllowlist
                | Key::ExtensionsBlocklist
                | Key::ProxyBypass
        )
    }

    /// Whether monitor mode forbids changing the key (SPEC §4.3).
    pub fn locked_in_monitor(self) -> bool {
        matches!(
            self,
            Key::IncomingEnabled
                | Key::IncomingPorts
                | Key::ExtensionsAllowlist
                | Key::ExtensionsBlocklist
                | Key::GuestConfigurationEnabled
        )
    }

    /// What the key accepts, in words (used by `config info` and in every refusal).
    pub fn allowed(self) -> &'static str {
        match self {
            Key::IncomingEnabled | Key::ExtensionsEnabled | Key::GuestConfigurationEnabled => {
                "allowed values: true, false"
            }
            Key::IncomingPorts => {
                "allowed: a comma-separated list of ports 1-65535 or ranges like 5900-5910 \
                 (empty allows nothing)"
            }
            Key::Mode => "allowed values: full, monitor",
            Key::ExtensionsAllowlist | Key::ExtensionsBlocklist => {
                "allowed: a comma-separated list of Publisher/Type names, \
                 e.g. Microsoft.Azure.Monitor/AzureMonitorLinuxAgent"
            }
            Key::ProxyUrl => {
                "allowed: an http:// URL with a host, e.g. http://proxy.example:8080 \
                 (user:password@ for Basic authentication), or empty for none"
            }
            Key::ProxyBypass => {
                "allowed: a comma-separated list of host names, .suffix patterns, \
                 IP addresses, CIDRs such as 10.0.0.0/8, or * for every destination"
            }
        }
    }

    /// A one-line description for `config info`.
    pub fn description(self) -> &'static str {
        match self {
            Key::IncomingEnabled => {
                "Local kill switch for all remote access: false refuses every incoming connection"
            }
            Key::IncomingPorts => {
                "Local ports remote sessions may reach on this host; an empty list allows nothing"
            }
            Key::Mode => {
                "full allows what the other keys allow; monitor refuses all incoming connections \
                 and limits extensions to the monitoring allowlist"
            }
            Key::ExtensionsEnabled => "false forbids installing any extension",
            Key::ExtensionsAllowlist => "When set, only these extensions may be installed",
            Key::ExtensionsBlocklist => "These extensions may never be installed",
            Key::GuestConfigurationEnabled => "Whether machine configuration may change the host",
            Key::ProxyUrl => "Outbound HTTP proxy (relay mode dials through it with CONNECT)",
            Key::ProxyBypass => "Destinations that skip the proxy",
        }
    }

    /// The default value as `config list` would print it.
    pub fn default_display(self) -> String {
        self.display(&Config::default())
    }

    /// The key's current value in `config list` form.
    pub fn display(self, c: &Config) -> String {
        match self {
            Key::IncomingEnabled => c.incoming_enabled.to_string(),
            Key::IncomingPorts => c.incoming_ports.to_string(),
            Key::Mode => c.mode.to_string(),
            Key::ExtensionsEnabled => c.extensions_enabled.to_string(),
            Key::ExtensionsAllowlist => bracketed(&c.extensions_allowlist),
            Key::ExtensionsBlocklist => bracketed(&c.extensions_blocklist),
            Key::GuestConfigurationEnabled => c.guestconfiguration_enabled.to_string(),
            Key::ProxyUrl => c.proxy_url.clone().unwrap_or_default(),
            Key::ProxyBypass => bracketed(&c.proxy_bypass),
        }
    }

    /// The key's current value as JSON (`config list -j`, and the file).
    pub fn to_json(self, c: &Config) -> serde_json::Value {
        use serde_json::Value;
        fn strings<T: fmt::Display>(items: &[T]) -> Value {
            Value::Array(items.iter().map(|i| Value::String(i.to_string())).collect())
        }
        match self {
            Key::IncomingEnabled => Value::Bool(c.incoming_enabled),
            Key::IncomingPorts => c.incoming_ports.to_json(),
            Key::Mode => Value::String(c.mode.to_string()),
            Key::ExtensionsEnabled => Value::Bool(c.extensions_enabled),
            Key::ExtensionsAllowlist => strings(&c.extensions_allowlist),
            Key::ExtensionsBlocklist => strings(&c.extensions_blocklist),
            Key::GuestConfigurationEnabled => Value::Bool(c.guestconfiguration_enabled),
            Key::ProxyUrl => Value::String(c.proxy_url.clone().unwrap_or_default()),
            Key::ProxyBypass => strings(&c.proxy_bypass),
        }
    }

    /// Parses a raw value for this key. This is the only value parser: the file's values and
    /// `config set`'s arguments both arrive here as [`Raw`].
    fn parse(self, raw: &Raw) -> Result<Parsed, ConfigError> {
        let invalid = |given: &str, why: &str| ConfigError::InvalidValue {
            key: self.name(),
            given: shorten(given),
            allowed: if why.is_empty() {
                self.allowed().to_string()
            } else {
                format!("{why}; {}", self.allowed())
            },
        };
        match (self, raw) {
            (
                Key::IncomingEnabled | Key::ExtensionsEnabled | Key::GuestConfigurationEnabled,
                Raw::Scalar(s),
            ) => match s.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(Parsed::Bool(true)),
                "false" => Ok(Parsed::Bool(false)),
                _ => Err(invalid(s, "")),
            },
            (Key::Mode, Raw::Scalar(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "full" => Ok(Parsed::Mode(Mode::Full)),
                "monitor" => Ok(Parsed::Mode(Mode::Monitor)),
                _ => Err(invalid(s, "")),
            },
            (Key::ProxyUrl, Raw::Scalar(s)) => parse_proxy_url(s)
                .map(Parsed::Url)
                .map_err(|why| invalid(s, why)),
            (Key::IncomingPorts, Raw::List(items)) => {
                let mut ranges = Vec::with_capacity(items.len());
                for item in items {
                    ranges.push(PortRange::parse(item).map_err(|why| invalid(item, why))?);
                }
                Ok(Parsed::Ports(PortSet::from_ranges(ranges)))
            }
            (Key::ExtensionsAllowlist | Key::ExtensionsBlocklist, Raw::List(items)) => {
                let mut names = Vec::with_capacity(items.len());
                for item in items {
                    names.push(ExtensionName::parse(item).map_err(|why| invalid(item, why))?);
                }
                Ok(Parsed::Extensions(dedup_extensions(names)))
            }
            (Key::ProxyBypass, Raw::List(items)) => {
                let mut entries = Vec::with_capacity(items.len());
                for item in items {
                    entries.push(BypassEntry::parse(item).map_err(|why| invalid(item, why))?);
                }
                entries.dedup();
                Ok(Parsed::Bypass(entries))
            }
            (_, Raw::List(items)) => Err(invalid(&format!("[{}]", items.join(", ")), "not a list")),
            (_, Raw::Scalar(s)) => Err(invalid(s, "expected a list")),
        }
    }

    fn assign(self, c: &mut Config, value: Parsed) {
        match (self, value) {
            (Key::IncomingEnabled, Parsed::Bool(b)) => c.incoming_enabled = b,
            (Key::ExtensionsEnabled, Parsed::Bool(b)) => c.extensions_enabled = b,
            (Key::GuestConfigurationEnabled, Parsed::Bool(b)) => c.guestconfiguration_enabled = b,
            (Key::Mode, Parsed::Mode(m)) => c.mode = m,
            (Key::ProxyUrl, Parsed::Url(u)) => c.proxy_url = u,
            (Key::IncomingPorts, Parsed::Ports(p)) => c.incoming_ports = p,
            (Key::ExtensionsAllowlist, Parsed::Extensions(e)) => c.extensions_allowlist = e,
            (Key::ExtensionsBlocklist, Parsed::Extensions(e)) => c.extensions_blocklist = e,
            (Key::ProxyBypass, Parsed::Bypass(b)) => c.proxy_bypass = b,
            (key, value) => unreachable!("{key:?} parsed to {value:?}"),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A value before parsing: one string, or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raw {
    /// A scalar (`true`, `full`, a URL).
    Scalar(String),
    /// A list (ports, extension names, bypass entries).
    List(Vec<String>),
}

impl Raw {
    /// What `config set KEY VALUE` typed: list keys split on commas (a surrounding `[...]`, as
    /// `config get` prints, is accepted), scalars taken whole.
    pub fn from_cli(key: Key, value: &str) -> Raw {
        if key.is_list() {
            let trimmed = value.trim();
            let inner = trimmed
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or(trimmed);
            Raw::List(
                inner
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            )
        } else {
            Raw::Scalar(value.to_string())
        }
    }

    /// A JSON value from the file. Numbers and booleans become their text, so that the file and
    /// the command line share one parser.
    fn from_json(key: Key, value: &serde_json::Value) -> Result<Raw, ConfigError> {
        use serde_json::Value;
        let scalar = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        let wrong = |what: &str| {
            ConfigError::File(format!(
                "{}: expected {what}, found {}; {}",
                key.name(),
                shorten(&value.to_string()),
                key.allowed()
            ))
        };
        if key.is_list() {
            match value {
                Value::Array(items) => items
                    .iter()
                    .map(|i| scalar(i).ok_or_else(|| wrong("a list of strings or numbers")))
                    .collect::<Result<_, _>>()
                    .map(Raw::List),
                _ => Err(wrong("a list")),
            }
        } else {
            scalar(value)
                .map(Raw::Scalar)
                .ok_or_else(|| wrong("a string or boolean"))
        }
    }
}

#[derive(Debug)]
enum Parsed {
    Bool(bool),
    Mode(Mode),
    Url(Option<String>),
    Ports(PortSet),
    Extensions(Vec<ExtensionName>),
    Bypass(Vec<BypassEntry>),
}

/// `config.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Everything the other keys allow.
    #[default]
    Full,
    /// No incoming connections; monitoring extensions only.
    Monitor,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Full => "full",
            Mode::Monitor => "monitor",
        })
    }
}

/// A TCP port, 1–65535.
pub type Port = std::num::NonZeroU16;

/// Parses a port number strictly: decimal digits only — no sign, no space, no leading
/// zero — 1–65535. (`port=+22` in a query is " 22" once form-decoded: refused.)
pub fn parse_port(s: &str) -> Result<Port, &'static str> {
    let digits = s;
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("a port is a number from 1 to 65535");
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return Err("a port has no leading zeros");
    }
    match digits.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(Port::new(n as u16).expect("1..=65535 is non-zero")),
        _ => Err("a port is a number from 1 to 65535"),
    }
}

/// An inclusive range of ports; a single port is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange {
    start: u16,
    end: u16,
}

impl PortRange {
    /// Parses `22` or `5900-5910`.
    pub fn parse(s: &str) -> Result<PortRange, &'static str> {
        let s = s.trim();
        match s.split_once('-') {
            None => {
                let p = parse_port(s)?.get();
                Ok(PortRange { start: p, end: p })
            }
            Some((a, b)) => {
                let (a, b) = (parse_port(a.trim())?.get(), parse_port(b.trim())?.get());
                if a > b {
                    return Err("a range is written low-high, e.g. 5900-5910");
                }
                Ok(PortRange { start: a, end: b })
            }
        }
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// A set of ports, kept as sorted, non-overlapping ranges. Empty allows nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortSet(Vec<PortRange>);

impl PortSet {
    /// Builds a set from any ranges: sorted, with overlapping ranges merged.
    pub fn from_ranges(mut ranges: Vec<PortRange>) -> PortSet {
        ranges.sort();
        let mut out: Vec<PortRange> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match out.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => out.push(r),
            }
        }
        PortSet(out)
    }

    /// Whether the set allows `port`.
    pub fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|r| r.contains(port))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The union of the two sets.
    pub fn union(&self, other: &PortSet) -> PortSet {
        PortSet::from_ranges(self.0.iter().chain(&other.0).copied().collect())
    }

    /// This set without any port of `other` (ranges are split as needed).
    pub fn difference(&self, other: &PortSet) -> PortSet {
        let mut out = Vec::new();
        for r in &self.0 {
            let mut pieces = vec![*r];
            for cut in &other.0 {
                pieces = pieces
                    .into_iter()
                    .flat_map(|p| {
                        let mut keep = Vec::new();
                        if cut.end < p.start || cut.start > p.end {
                            keep.push(p);
                        } else {
                            if cut.start > p.start {
                                keep.push(PortRange {
                                    start: p.start,
                                    end: cut.start - 1,
                                });
                            }
                            if cut.end < p.end {
                                keep.push(PortRange {
                                    start: cut.end + 1,
                                    end: p.end,
                                });
                            }
                        }
                        keep
                    })
                    .collect();
            }
            out.extend(pieces);
        }
        PortSet::from_ranges(out)
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.0
                .iter()
                .map(|r| {
                    if r.start == r.end {
                        serde_json::Value::from(r.start)
                    } else {
                        serde_json::Value::String(r.to_string())
                    }
                })
                .collect(),
        )
    }

    /// Parses a JSON list of ports/ranges (numbers or strings), as the keys file holds them.
    pub fn from_json_list(values: &[serde_json::Value]) -> Result<PortSet, String> {
        let mut ranges = Vec::with_capacity(values.len());
        for v in values {
            let text = match v {
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::String(s) => s.clone(),
                other => return Err(format!("'{}' is not a port", shorten(&other.to_string()))),
            };
            ranges.push(
                PortRange::parse(&text).map_err(|why| format!("'{}': {why}", shorten(&text)))?,
            );
        }
        Ok(PortSet::from_ranges(ranges))
    }
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bracketed(&self.0))
    }
}

/// An extension name, `Publisher/Type`. Compared case-insensitively, shown as written.
#[derive(Debug, Clone)]
pub struct ExtensionName(String);

impl ExtensionName {
    /// Parses `Publisher/Type`: each part letters, digits, `.`, `_` or `-`.
    pub fn parse(s: &str) -> Result<ExtensionName, &'static str> {
        let s = s.trim();
        let ok_part = |p: &str| {
            !p.is_empty()
                && p.len() <= 256
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
        match s.split_once('/') {
            Some((publisher, kind)) if ok_part(publisher) && ok_part(kind) => {
                Ok(ExtensionName(s.to_string()))
            }
            _ => Err("an extension is named Publisher/Type"),
        }
    }
}

impl PartialEq for ExtensionName {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl fmt::Display for ExtensionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn dedup_extensions(names: Vec<ExtensionName>) -> Vec<ExtensionName> {
    let mut out: Vec<ExtensionName> = Vec::with_capacity(names.len());
    for n in names {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// A `proxy.bypass` entry — and a `NO_PROXY` entry: the clients and relay mode read both with
/// this one grammar. `*` (everything), a host name or `.suffix` (`*.suffix` too; each matches
/// the name and every name under it, as curl does), an IP address, or a CIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BypassEntry {
    /// As given (trimmed), for `config list`.
    text: String,
    rule: Bypass,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Bypass {
    All,
    /// Lower-case, without a leading `.` or `*.`.
    Domain(String),
    Cidr(std::net::IpAddr, u8),
}

impl BypassEntry {
    /// Parses one entry.
    pub fn parse(s: &str) -> Result<BypassEntry, &'static str> {
        let text = s.trim().to_string();
        let e = text.to_ascii_lowercase();
        let rule = if e == "*" {
            Bypass::All
        } else if let Some((addr, bits)) = e.split_once('/') {
            let addr = addr.trim_start_matches('[').trim_end_matches(']');
            let addr: std::net::IpAddr = addr.parse().map_err(|_| "a CIDR is ADDRESS/BITS")?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            match bits.parse::<u8>() {
                Ok(b) if b <= max && !bits.starts_with('+') => Bypass::Cidr(addr, b),
                _ => return Err("a CIDR prefix length is 0-32 (IPv4) or 0-128 (IPv6)"),
            }
        } else if let Ok(ip) = e
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or(&e)
            .parse::<std::net::IpAddr>()
        {
            Bypass::Cidr(ip, if ip.is_ipv4() { 32 } else { 128 })
        } else {
            // A fully qualified name's trailing dot names the same host; `_` appears in real
            // names (SRV-style labels) that NO_PROXY lists carry.
            let host = e
                .strip_prefix("*.")
                .or_else(|| e.strip_prefix('.'))
                .unwrap_or(&e);
            let host = host.strip_suffix('.').unwrap_or(host);
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            };
            if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
                return Err("not *, a host name, .suffix, IP address or CIDR");
            }
            Bypass::Domain(host.to_string())
        };
        Ok(BypassEntry { text, rule })
    }

    /// Whether a connection to `host` (a name or an IP address, IPv6 possibly bracketed)
    /// skips the proxy under this entry.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        let host = host.strip_suffix('.').unwrap_or(&host);
        match &self.rule {
            Bypass::All => true,
            Bypass::Domain(d) => {
                host == d
                    || host
                        .strip_suffix(d.as_str())
                        .is_some_and(|rest| rest.ends_with('.'))
            }
            Bypass::Cidr(net, bits) => host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| in_cidr(ip, *net, *bits)),
        }
    }
}

fn in_cidr(ip: std::net::IpAddr, net: std::net::IpAddr, bits: u8) -> bool {
    use std::net::IpAddr;
    match (ip.to_canonical(), net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let bits = u32::from(bits.min(32));
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let bits = u32::from(bits.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

impl fmt::Display for BypassEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A proxy URL, parsed: `[http://][user:password@]host[:port]`, port 1080 when none is given
/// (as curl does). The one parser for `proxy.url` and `HTTPS_PROXY`, so that `config set`
/// accepts exactly what relay mode and the clients can use.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `user:password`, percent-decoded, for Basic authentication.
    pub credentials: Option<String>,
}

impl ProxyUrl {
    /// Parses a proxy URL; the error says what is wrong in words.
    pub fn parse(s: &str) -> Result<ProxyUrl, &'static str> {
        let s = s.trim();
        let with_scheme = if s.contains("://") {
            s.to_string()
        } else {
            format!("http://{s}")
        };
        let url = url::Url::parse(&with_scheme).map_err(|_| "not a URL")?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err(
                    "https:// proxies (TLS to the proxy itself) are not supported; \
                     give the proxy's plain http:// address: what passes through it is TLS \
                     end to end anyway",
                );
            }
            _ => return Err("the scheme must be http:// (CONNECT over plain HTTP)"),
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("the URL has no host")?
            .trim_matches(['[', ']'])
            .to_string();
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err("a proxy URL has no path, query or fragment");
        }
        let credentials = (!url.username().is_empty()).then(|| {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            format!(
                "{}:{}",
                decode(url.username()),
                decode(url.password().unwrap_or(""))
            )
        });
        // `url` drops a port equal to the scheme's default (`:80`); an explicit port must be
        // kept, only a missing one becomes 1080.
        let port = url
            .port()
            .or_else(|| explicit_port(&with_scheme))
            .unwrap_or(1080);
        Ok(ProxyUrl {
            host,
            port,
            credentials,
        })
    }
}

/// The port written in a URL's authority, if any (`http://u:p@[::1]:80` → 80).
fn explicit_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = host_port.rsplit_once(':')?;
    if host.starts_with('[') && !host.ends_with(']') {
        return None;
    }
    port.parse().ok()
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({}:{}", self.host, self.port)?;
        if self.credentials.is_some() {
            f.write_str(", with credentials")?;
        }
        f.write_str(")")
    }
}

fn parse_proxy_url(s: &str) -> Result<Option<String>, &'static str> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    ProxyUrl::parse(s)?;
    Ok(Some(s.to_string()))
}

fn bracketed<T: fmt::Display>(items: &[T]) -> String {
    let inner: Vec<String> = items.iter().map(ToString::to_string).collect();
    format!("[{}]", inner.join(", "))
}

/// Whether `c` would make client text mislead a reader of a log, the audit file or `arcgate
/// status`: control characters (a newline forges a log line) and the Unicode direction
/// controls that reorder what is shown (U+202A–U+202E embeddings and overrides, U+2066–U+2069
/// isolates, and the LRM, RLM and ALM marks: the "Trojan Source" characters), the Unicode
/// line and paragraph separators, which some viewers break lines at, and the invisible
/// format characters that make two different strings look the same (zero-width spaces and
/// joiners, word joiner and invisible operators, deprecated format controls, the byte-order
/// mark, soft hyphen, and the tag characters).
pub fn misleading(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{061C}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{00AD}'
                | '\u{200B}'..='\u{200D}'
                | '\u{2060}'..='\u{2064}'
                | '\u{206A}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

/// Shortens what a user gave for an error message, so that a megabyte of input does not
/// become a megabyte of error; misleading characters become `?`.
pub fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.chars()
            .map(|c| if misleading(c) { '?' } else { c })
            .collect()
    } else {
        let head: String = s
            .chars()
            .take(MAX)
            .map(|c| if misleading(c) { '?' } else { c })
            .collect();
        format!("{head}… ({} bytes)", s.len())
    }
}

/// The typed configuration. Every instance is valid: it is only built by [`Config::default`],
/// [`Config::from_json`] and [`Config::change`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `incomingconnections.enabled`
    pub incoming_enabled: bool,
    /// `incomingconnections.ports`
    pub incoming_ports: PortSet,
    /// `config.mode`
    pub mode: Mode,
    /// `extensions.enabled`
    pub extensions_enabled: bool,
    /// `extensions.allowlist`
    pub extensions_allowlist: Vec<ExtensionName>,
    /// `extensions.blocklist`
    pub extensions_blocklist: Vec<ExtensionName>,
    /// `guestconfiguration.enabled`
    pub guestconfiguration_enabled: bool,
    /// `proxy.url` (`None` when empty)
    pub proxy_url: Option<String>,
    /// `proxy.bypass`
    pub proxy_bypass: Vec<BypassEntry>,
}

impl Default for Config {
    /// The agent's defaults right after installation (seed article).
    fn default() -> Config {
        Config {
            incoming_enabled: true,
            incoming_ports: PortSet::default(),
            mode: Mode::Full,
            extensions_enabled: true,
            extensions_allowlist: Vec::new(),
            extensions_blocklist: Vec::new(),
            guestconfiguration_enabled: true,
            proxy_url: None,
            proxy_bypass: Vec::new(),
        }
    }
}

/// The file as serde sees it: every key optional (absent means default), unknown keys refused.
/// Field order is the order the file is written in.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(rename = "incomingconnections.enabled")]
    incoming_enabled: Option<serde_json::Value>,
    #[serde(rename = "incomingconnections.ports")]
    incoming_ports: Option<serde_json::Value>,
    #[serde(rename = "proxy.url")]
    proxy_url: Option<serde_json::Value>,
    #[serde(rename = "extensions.allowlist")]
    extensions_allowlist: Option<serde_json::Value>,
    #[serde(rename = "extensions.blocklist")]
    extensions_blocklist: Option<serde_json::Value>,
    #[serde(rename = "proxy.bypass")]
    proxy_bypass: Option<serde_json::Value>,
    #[serde(rename = "guestconfiguration.enabled")]
    guestconfiguration_enabled: Option<serde_json::Value>,
    #[serde(rename = "extensions.enabled")]
    extensions_enabled: Option<serde_json::Value>,
    #[serde(rename = "config.mode")]
    mode: Option<serde_json::Value>,
}

impl RawFile {
    fn slot(&mut self, key: Key) -> &mut Option<serde_json::Value> {
        match key {
            Key::IncomingEnabled => &mut self.incoming_enabled,
            Key::IncomingPorts => &mut self.incoming_ports,
            Key::Mode => &mut self.mode,
            Key::ExtensionsEnabled => &mut self.extensions_enabled,
            Key::ExtensionsAllowlist => &mut self.extensions_allowlist,
            Key::ExtensionsBlocklist => &mut self.extensions_blocklist,
            Key::GuestConfigurationEnabled => &mut self.guestconfiguration_enabled,
            Key::ProxyUrl => &mut self.proxy_url,
            Key::ProxyBypass => &mut self.proxy_bypass,
        }
    }
}

/// A change asked for by `config set`/`config clear`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Replace the value.
    Set(Raw),
    /// Add items to a list.
    Add(Raw),
    /// Remove items from a list.
    Remove(Raw),
    /// Back to the default.
    Clear,
}

impl Config {
    /// Parses the file's bytes: JSON object, known keys only, every value through the
    /// same parser `config set` uses.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let mut raw: RawFile = serde_json::from_slice(bytes).map_err(|e| {
            ConfigError::File(format!(
                "not a valid configuration file: {e} (expected a JSON object of the keys \
                 `arcgate config info` lists)"
            ))
        })?;
        let mut config = Config::default();
        for &key in KEYS {
            if let Some(value) = raw.slot(key).take() {
                let parsed = key.parse(&Raw::from_json(key, &value)?)?;
                key.assign(&mut config, parsed);
            }
        }
        Ok(config)
    }

    /// The file's bytes: every key, in [`KEYS`] order, pretty-printed, with a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut raw = RawFile::default();
        for &key in KEYS {
            *raw.slot(key) = Some(key.to_json(self));
        }
        let mut out = serde_json::to_vec_pretty(&raw).expect("plain JSON values serialize");
        out.push(b'\n');
        out
    }

    /// Applies a change and returns the new configuration, or refuses it whole. Setting
    /// `config.mode` to monitor also applies the monitor settings (SPEC §4.3).
    pub fn change(&self, key: Key, change: &Change) -> Result<Config, ConfigError> {
        if self.mode == Mode::Monitor && key.locked_in_monitor() {
            return Err(ConfigError::LockedInMonitor { key: key.name() });
        }
        let mut next = self.clone();
        match change {
            Change::Clear => {
                let default = Config::default();
                let value = key.parse(&raw_of(key, &default))?;
                key.assign(&mut next, value);
            }
            Change::Set(raw) => {
                let value = key.parse(raw)?;
                key.assign(&mut next, value);
            }
            Change::Add(raw) | Change::Remove(raw) => {
                if !key.is_list() {
                    return Err(ConfigError::NotAList { key: key.name() });
                }
                let add = matches!(change, Change::Add(_));
                let items = key.parse(raw)?;
                next.edit_list(key, items, add);
            }
        }
        if key == Key::Mode && next.mode == Mode::Monitor {
            next.incoming_enabled = false;
            next.guestconfiguration_enabled = false;
            next.extensions_allowlist = MONITOR_ALLOWLIST
                .iter()
                .map(|s| ExtensionName(s.to_string()))
                .collect();
        }
        Ok(next)
    }

    fn edit_list(&mut self, key: Key, items: Parsed, add: bool) {
        fn edit<T: PartialEq>(list: &mut Vec<T>, items: Vec<T>, add: bool) {
            if add {
                for i in items {
                    if !list.contains(&i) {
                        list.push(i);
                    }
                }
            } else {
                list.retain(|x| !items.contains(x));
            }
        }
        match (key, items) {
            (Key::IncomingPorts, Parsed::Ports(p)) => {
                self.incoming_ports = if add {
                    self.incoming_ports.union(&p)
                } else {
                    self.incoming_ports.difference(&p)
                }
            }
            (Key::ExtensionsAllowlist, Parsed::Extensions(e)) => {
                edit(&mut self.extensions_allowlist, e, add)
            }
            (Key::ExtensionsBlocklist, Parsed::Extensions(e)) => {
                edit(&mut self.extensions_blocklist, e, add)
            }
            (Key::ProxyBypass, Parsed::Bypass(b)) => edit(&mut self.proxy_bypass, b, add),
            (key, items) => unreachable!("{key:?} is not a list of {items:?}"),
        }
    }
}

fn raw_of(key: Key, c: &Config) -> Raw {
    let json = key.to_json(c);
    Raw::from_json(key, &json).expect("a typed value renders to a parseable raw value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_shown_to_people_loses_controls_and_direction_overrides() {
        let hostile = "ok\u{202E}txt.exe\u{2066}\u{2069}\u{200F}\n\u{1b}[31m";
        assert_eq!(shorten(hostile), "ok?txt.exe?????[31m");
        assert_eq!(
            shorten("café — naïve"),
            "café — naïve",
            "other text is kept"
        );
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{2067}', '\u{2068}',
        ] {
            assert!(misleading(c), "{:04X}", c as u32);
        }
        assert!(misleading('\u{2028}') && !misleading('é') && !misleading(' '));
        for c in [
            '\u{200B}',
            '\u{200D}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{E0041}',
            '\u{00AD}',
        ] {
            assert!(misleading(c), "invisible {:04X}", c as u32);
        }
    }

    fn set(c: &Config, key: &str, value: &str) -> Result<Config, ConfigError> {
        let key = Key::from_name(key)?;
        c.change(key, &Change::Set(Raw::from_cli(key, value)))
    }

    #[test]
    fn defaults_match_the_agent_after_installation() {
        let c = Config::default();
        let shown: Vec<(String, String)> = KEYS
            .iter()
            .map(|k| (k.name().to_string(), k.display(&c)))
            .collect();
        let expect = [
            ("incomingconnections.enabled", "true"),
            ("incomingconnections.ports", "[]"),
            ("proxy.url", ""),
            ("extensions.allowlist", "[]"),
            ("extensions.blocklist", "[]"),
            ("proxy.bypass", "[]"),
            ("guestconfiguration.enabled", "true"),
            ("extensions.enabled", "true"),
            ("config.mode", "full"),
        ];
        let expect: Vec<(String, String)> = expect
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(shown, expect);
    }

    #[test]
    fn every_key_round_trips_through_the_file() {
        let mut c = Config::default();
        for (k, v) in [
            ("incomingconnections.enabled", "false"),
            ("incomingconnections.ports", "22, 3389,5900-5910"),
            ("proxy.url", "http://proxy.example:8080"),
            ("extensions.allowlist", "A.B/C,D/E-F"),
            ("extensions.blocklist", "X/Y"),
            ("proxy.bypass", ".corp.example,10.0.0.0/8,Arc,::1"),
            ("guestconfiguration.enabled", "false"),
            ("extensions.enabled", "false"),
        ] {
            c = set(&c, k, v).unwrap();
        }
        let back = Config::from_json(&c.to_json()).unwrap();
        assert_eq!(back, c);
        assert_eq!(Key::IncomingPorts.display(&back), "[22, 3389, 5900-5910]");
    }

    #[test]
    fn ports_are_parsed_strictly() {
        for bad in [
            "0",
            "70000",
            "65536",
            "+22",
            "-1",
            "22a",
            "022",
            "",
            "5910-5900",
            "1-",
        ] {
            assert!(PortRange::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(PortRange::parse("65535").unwrap().to_string(), "65535");
        let err = set(&Config::default(), "incomingconnections.ports", "22,70000").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("incomingconnections.ports"), "{msg}");
        assert!(msg.contains("'70000'"), "{msg}");
        assert!(msg.contains("1 to 65535"), "{msg}");
    }

    #[test]
    fn add_and_remove_edit_lists_and_split_ranges() {
        let c = set(
            &Config::default(),
            "incomingconnections.ports",
            "22,5900-5910",
        )
        .unwrap();
        let key = Key::IncomingPorts;
        let c = c
            .change(key, &Change::Add(Raw::from_cli(key, "3389,22")))
            .unwrap();
        assert_eq!(key.display(&c), "[22, 3389, 5900-5910]");
        let c = c
            .change(key, &Change::Remove(Raw::from_cli(key, "5905,22")))
            .unwrap();
        assert_eq!(key.display(&c), "[3389, 5900-5904, 5906-5910]");
        let err = c
            .change(Key::Mode, &Change::Add(Raw::from_cli(Key::Mode, "full")))
            .unwrap_err();
        assert!(matches!(err, ConfigError::NotAList { .. }));
    }

    #[test]
    fn monitor_mode_sets_its_values_and_locks_keys() {
        let c = set(&Config::default(), "incomingconnections.ports", "22").unwrap();
        let m = set(&c, "config.mode", "monitor").unwrap();
        assert!(!m.incoming_enabled);
        assert!(!m.guestconfiguration_enabled);
        assert_eq!(m.extensions_allowlist.len(), MONITOR_ALLOWLIST.len());
        assert_eq!(m.incoming_ports, c.incoming_ports, "ports are kept");
        for key in [
            "incomingconnections.enabled",
            "incomingconnections.ports",
            "extensions.allowlist",
            "extensions.blocklist",
            "guestconfiguration.enabled",
        ] {
            let err = set(&m, key, "true").unwrap_err();
            assert!(
                matches!(err, ConfigError::LockedInMonitor { .. }),
                "{key}: {err}"
            );
            assert!(err.to_string().contains("config.mode full"));
        }
        assert!(set(&m, "extensions.enabled", "false").is_ok());
        let full = set(&m, "config.mode", "full").unwrap();
        assert!(
            !full.incoming_enabled,
            "switching back changes no other key"
        );
        assert_eq!(full.extensions_allowlist, m.extensions_allowlist);
    }

    #[test]
    fn file_errors_name_the_problem() {
        let cases: &[(&[u8], &str)] = &[
            (b"{\"bogus.key\": 1}", "bogus.key"),
            (
                b"{\"incomingconnections.enabled\": \"yes\"}",
                "incomingconnections.enabled",
            ),
            (b"{\"incomingconnections.ports\": 22}", "expected a list"),
            (b"{\"incomingconnections.ports\": [0]}", "'0'"),
            (b"\x00\xff garbage", "not a valid configuration file"),
            (b"[]", "not a valid configuration file"),
        ];
        for (bytes, want) in cases {
            let err = Config::from_json(bytes).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
        assert_eq!(Config::from_json(b"{}").unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_and_values_say_what_is_allowed() {
        let err = Key::from_name("incomingconnections.port")
            .unwrap_err()
            .to_string();
        assert!(err.contains("incomingconnections.ports"), "{err}");
        let err = set(&Config::default(), "config.mode", "audit")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("full, monitor") && err.contains("'audit'"),
            "{err}"
        );
        let err = set(&Config::default(), "proxy.url", "ftp://x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be http://"), "{err}");
        // The clients and relay mode cannot use a TLS proxy: refused here, with the reason,
        // not accepted and then failing at every reconnect.
        let err = set(
            &Config::default(),
            "proxy.url",
            "https://proxy.example:3128",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("https:// proxies") && err.contains("not supported"),
            "{err}"
        );
        // One bypass grammar: what NO_PROXY accepts, proxy.bypass accepts.
        let c = set(
            &Config::default(),
            "proxy.bypass",
            "*,*.svc,.corp,[::1],10.0.0.0/8",
        )
        .unwrap();
        let entry = |host| c.proxy_bypass.iter().any(|e| e.matches(host));
        assert!(entry("anything.example") && entry("x.svc") && entry("::1"));
        let c = set(
            &Config::default(),
            "proxy.bypass",
            "corp.example.,_srv.corp,[fd00::]/8",
        )
        .unwrap();
        let entry = |host| c.proxy_bypass.iter().any(|e| e.matches(host));
        assert!(entry("a.corp.example") && entry("_srv.corp") && entry("fd00::1"));
        for (url, port) in [
            ("http://proxy:80", 80),
            ("http://u:p@proxy:80", 80),
            ("http://[::1]:80", 80),
            ("http://proxy", 1080),
            ("proxy:3128", 3128),
        ] {
            assert_eq!(ProxyUrl::parse(url).map(|p| p.port), Ok(port), "{url}");
        }
        for bad in ["a b", "*x", "10.0.0.0/33", "http://x"] {
            assert!(
                set(&Config::default(), "proxy.bypass", bad).is_err(),
                "{bad}"
            );
        }
        let long = "9".repeat(1 << 20);
        let err = set(&Config::default(), "incomingconnections.ports", &long)
            .unwrap_err()
            .to_string();
        assert!(err.len() < 400, "a huge value gives a short error");
    }
}
