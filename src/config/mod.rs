//! The local configuration: its keys, their types and defaults, and the one parser that turns
//! raw values — from the file or from `arcgate config set` — into typed values.
//!
//! This module owns *what a valid configuration is* and the rules for changing it (monitor-mode
//! locks, list edits). It does no I/O: reading and writing the file is [`crate::state::store`]'s job,
//! printing is the command's.

use serde::{Deserialize, Serialize};

mod key;
mod proxy;
mod text;
mod time;
mod values;

use key::Parsed;
pub use key::{Key, Raw};
use proxy::parse_proxy_url;
pub use proxy::{BypassEntry, ProxyUrl};
use text::bracketed;
pub use text::{misleading, rfc3339, shorten, shorten_sentence};
pub use time::{format_duration, format_utc, parse_duration, parse_lifetime, parse_utc};
use values::dedup_extensions;
pub use values::{Approval, ExtensionName, Mode, Network, Port, PortRange, PortSet, parse_port};

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
    // arcgate's own, after the agent's.
    Key::IncomingEnabledUntil,
    Key::MaxSessionDuration,
    Key::AllowedSources,
    Key::Approval,
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
    /// `incomingconnections.enableduntil`: the end of the access window (`None`: no end).
    pub incoming_enabled_until: Option<std::time::SystemTime>,
    /// `incomingconnections.maxsessionduration` (`None`: no limit).
    pub max_session_duration: Option<std::time::Duration>,
    /// `incomingconnections.allowedsources` (empty: every address).
    pub allowed_sources: Vec<Network>,
    /// `incomingconnections.approval`.
    pub approval: Approval,
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
            incoming_enabled_until: None,
            max_session_duration: None,
            allowed_sources: Vec::new(),
            approval: Approval::None,
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
    #[serde(rename = "incomingconnections.enableduntil")]
    incoming_enabled_until: Option<serde_json::Value>,
    #[serde(rename = "incomingconnections.maxsessionduration")]
    max_session_duration: Option<serde_json::Value>,
    #[serde(rename = "incomingconnections.allowedsources")]
    allowed_sources: Option<serde_json::Value>,
    #[serde(rename = "incomingconnections.approval")]
    approval: Option<serde_json::Value>,
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
            Key::IncomingEnabledUntil => &mut self.incoming_enabled_until,
            Key::MaxSessionDuration => &mut self.max_session_duration,
            Key::AllowedSources => &mut self.allowed_sources,
            Key::Approval => &mut self.approval,
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
                // An empty list of sources allows every address: removing the last one must
                // not open the host to all of them by accident.
                if key == Key::AllowedSources
                    && !self.allowed_sources.is_empty()
                    && next.allowed_sources.is_empty()
                {
                    return Err(ConfigError::InvalidValue {
                        key: key.name(),
                        given: shorten(&key.display(self)),
                        allowed: "removing the last source would allow every address; to allow \
                                  every address, run: arcgate config clear \
                                  incomingconnections.allowedsources"
                            .into(),
                    });
                }
            }
        }
        // Switching access on or off ends any access window: `--for` opens a new one.
        if key == Key::IncomingEnabled && !matches!(change, Change::Add(_) | Change::Remove(_)) {
            next.incoming_enabled_until = None;
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
            (Key::AllowedSources, Parsed::Networks(n)) => edit(&mut self.allowed_sources, n, add),
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
            // arcgate's own: no window, no limit, every source, no approval.
            ("incomingconnections.enableduntil", ""),
            ("incomingconnections.maxsessionduration", ""),
            ("incomingconnections.allowedsources", "[]"),
            ("incomingconnections.approval", "none"),
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
            ("incomingconnections.enableduntil", "2026-12-02T18:00:00Z"),
            ("incomingconnections.maxsessionduration", "90m"),
            (
                "incomingconnections.allowedsources",
                "192.0.2.0/24, 2001:db8::/32,127.0.0.1",
            ),
            ("incomingconnections.approval", "required"),
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
