//! The configuration keys: their names, what they allow, their defaults, and the raw value
//! of each (from `config set` or the file) parsed into its typed value.

use std::fmt;

use std::time::{Duration, SystemTime};

use super::{
    Approval, BypassEntry, Config, ConfigError, ExtensionName, KEYS, Mode, Network, PortRange,
    PortSet, bracketed, dedup_extensions, format_duration, format_utc, parse_lifetime,
    parse_proxy_url, parse_utc, shorten,
};

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
    /// `incomingconnections.enableduntil` (arcgate's own)
    IncomingEnabledUntil,
    /// `incomingconnections.maxsessionduration` (arcgate's own)
    MaxSessionDuration,
    /// `incomingconnections.allowedsources` (arcgate's own)
    AllowedSources,
    /// `incomingconnections.approval` (arcgate's own)
    Approval,
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
            Key::IncomingEnabledUntil => "incomingconnections.enableduntil",
            Key::MaxSessionDuration => "incomingconnections.maxsessionduration",
            Key::AllowedSources => "incomingconnections.allowedsources",
            Key::Approval => "incomingconnections.approval",
        }
    }

    /// Whether the agent has this key too; the others are arcgate's own (`config info` says
    /// which).
    pub fn is_agents(self) -> bool {
        !matches!(
            self,
            Key::IncomingEnabledUntil
                | Key::MaxSessionDuration
                | Key::AllowedSources
                | Key::Approval
        )
    }

    /// Whether the key holds a list (and so accepts `--add`/`--remove`).
    pub fn is_list(self) -> bool {
        matches!(
            self,
            Key::IncomingPorts
                | Key::ExtensionsAllowlist
                | Key::ExtensionsBlocklist
                | Key::ProxyBypass
                | Key::AllowedSources
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
                | Key::IncomingEnabledUntil
                | Key::MaxSessionDuration
                | Key::AllowedSources
                | Key::Approval
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
            Key::IncomingEnabledUntil => {
                "allowed: a UTC time in RFC 3339 form such as 2026-12-02T18:00:00Z, or empty \
                 for no end; config set incomingconnections.enabled true --for 2h sets it"
            }
            Key::MaxSessionDuration => {
                "allowed: a duration with its unit such as 8h, 90m or 2d, or empty for no limit"
            }
            Key::AllowedSources => {
                "allowed: a comma-separated list of IP addresses and CIDRs such as \
                 203.0.113.0/24 or 2001:db8::/32 (empty allows every address)"
            }
            Key::Approval => "allowed values: none, required",
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
            Key::IncomingEnabledUntil => {
                "When set, incoming connections are enabled only until this moment: after it new \
                 requests are refused (access_window_closed) and live sessions are closed"
            }
            Key::MaxSessionDuration => {
                "How long a session may stay open; it is then closed with 1008 'session time \
                 limit reached' (a new, shorter limit applies to open sessions too)"
            }
            Key::AllowedSources => {
                "The client addresses sessions may come from (in relay mode, the address the \
                 relay reports); empty allows every address"
            }
            Key::Approval => {
                "required holds every allowed session until someone on the host runs arcgate \
                 sessions approve ID (or deny ID); waiting too long is a denial"
            }
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
            Key::IncomingEnabledUntil => {
                c.incoming_enabled_until.map(format_utc).unwrap_or_default()
            }
            Key::MaxSessionDuration => c
                .max_session_duration
                .map(format_duration)
                .unwrap_or_default(),
            Key::AllowedSources => bracketed(&c.allowed_sources),
            Key::Approval => c.approval.to_string(),
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
            Key::IncomingEnabledUntil | Key::MaxSessionDuration | Key::Approval => {
                Value::String(self.display(c))
            }
            Key::AllowedSources => strings(&c.allowed_sources),
        }
    }

    /// Parses a raw value for this key. This is the only value parser: the file's values and
    /// `config set`'s arguments both arrive here as [`Raw`].
    pub(super) fn parse(self, raw: &Raw) -> Result<Parsed, ConfigError> {
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
            (Key::IncomingEnabledUntil, Raw::Scalar(s)) => match s.trim() {
                "" => Ok(Parsed::Time(None)),
                t => parse_utc(t)
                    .map(|t| Parsed::Time(Some(t)))
                    .map_err(|why| invalid(s, &why)),
            },
            (Key::MaxSessionDuration, Raw::Scalar(s)) => match s.trim() {
                "" => Ok(Parsed::Duration(None)),
                t => parse_lifetime(t, "a session")
                    .map(|d| Parsed::Duration(Some(d)))
                    .map_err(|why| invalid(s, &why)),
            },
            (Key::Approval, Raw::Scalar(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "none" => Ok(Parsed::Approval(Approval::None)),
                "required" => Ok(Parsed::Approval(Approval::Required)),
                _ => Err(invalid(s, "")),
            },
            (Key::AllowedSources, Raw::List(items)) => {
                let mut networks: Vec<Network> = Vec::with_capacity(items.len());
                for item in items {
                    let network = Network::parse(item).map_err(|why| invalid(item, why))?;
                    if !networks.contains(&network) {
                        networks.push(network);
                    }
                }
                Ok(Parsed::Networks(networks))
            }
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

    pub(super) fn assign(self, c: &mut Config, value: Parsed) {
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
            (Key::IncomingEnabledUntil, Parsed::Time(t)) => c.incoming_enabled_until = t,
            (Key::MaxSessionDuration, Parsed::Duration(d)) => c.max_session_duration = d,
            (Key::AllowedSources, Parsed::Networks(n)) => c.allowed_sources = n,
            (Key::Approval, Parsed::Approval(a)) => c.approval = a,
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
    pub(super) fn from_json(key: Key, value: &serde_json::Value) -> Result<Raw, ConfigError> {
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
pub(super) enum Parsed {
    Bool(bool),
    Mode(Mode),
    Url(Option<String>),
    Ports(PortSet),
    Extensions(Vec<ExtensionName>),
    Bypass(Vec<BypassEntry>),
    Time(Option<SystemTime>),
    Duration(Option<Duration>),
    Networks(Vec<Network>),
    Approval(Approval),
}
