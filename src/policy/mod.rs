//! The connection policy of SPEC §3, and arcgate's own rules beyond the agent's: a pure
//! decision over (configuration, request, time).
//!
//! [`decide`] does no I/O, reads no clock and never blocks: the moment is one of its inputs.
//! The server calls it before `101` for every request, and again for every live session when
//! the configuration changes or at the moment [`next_change`] names (an access window's end,
//! a session's time limit). [`Denied`] is the single source of the reason the 403 body, the
//! audit line and the client message all use.

pub mod extension;

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::config::{Approval, Config, Mode, Port, PortSet, format_utc};

/// What the policy is asked about.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Target port on this host.
    pub port: Port,
    /// The ports the token's key is limited to, if it lists any.
    pub key_ports: Option<&'a PortSet>,
    /// The client's address (in relay mode, the one the relay reports).
    pub source: IpAddr,
    /// When the session started, for a live one; `None` for a new request.
    pub started: Option<SystemTime>,
}

/// The policy allows the connection. Carried with the admitted session (`gate::admit`) into
/// its stop signal, which re-decides for the permitted port on every policy change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit {
    /// The port that was allowed.
    pub port: Port,
    /// Whether the host's administrator must approve the session before it starts.
    pub needs_approval: bool,
}

/// Why the policy refuses a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// `config.mode` is monitor.
    MonitorMode,
    /// `incomingconnections.enabled` is false.
    IncomingDisabled,
    /// `incomingconnections.enableduntil` has passed.
    AccessWindowClosed {
        /// When it closed.
        at: SystemTime,
    },
    /// The client's address is not in `incomingconnections.allowedsources`.
    SourceNotAllowed,
    /// The port is not in `incomingconnections.ports`.
    PortNotAllowed,
    /// The token's key lists ports and this is not one of them.
    KeyPortNotAllowed,
    /// A live session has been open for `incomingconnections.maxsessionduration`.
    SessionTimeLimit {
        /// The limit.
        limit: Duration,
    },
    /// `incomingconnections.approval` is required and the host's administrator said no.
    ApprovalDenied,
    /// `incomingconnections.approval` is required and nobody answered in time.
    ApprovalTimedOut,
}

impl Denied {
    /// The `reason` of the 403 JSON body (SPEC §2, and arcgate's own values for its own
    /// keys). A key's port limit is reported as `port_not_allowed`, the value the interface
    /// defines; the audit log says which list.
    pub fn wire_reason(self) -> &'static str {
        match self {
            Denied::MonitorMode => "monitor_mode",
            Denied::IncomingDisabled => "incoming_connections_disabled",
            Denied::AccessWindowClosed { .. } => "access_window_closed",
            Denied::SourceNotAllowed => "source_not_allowed",
            Denied::PortNotAllowed | Denied::KeyPortNotAllowed => "port_not_allowed",
            Denied::SessionTimeLimit { .. } => "session_time_limit",
            Denied::ApprovalDenied => "approval_denied",
            Denied::ApprovalTimedOut => "approval_timed_out",
        }
    }

    /// The reason as the audit log records it.
    pub fn audit_reason(self) -> &'static str {
        match self {
            Denied::KeyPortNotAllowed => "key_port_not_allowed",
            other => other.wire_reason(),
        }
    }

    /// The WebSocket close reason when it ends a live session (close code 1008).
    pub fn close_reason(self) -> &'static str {
        match self {
            Denied::SessionTimeLimit { .. } => "session time limit reached",
            Denied::AccessWindowClosed { .. } => "access window closed",
            _ => "connection not allowed",
        }
    }

    /// One sentence for people: what refused it and what the host's administrator would change.
    pub fn explain(self, port: u16) -> String {
        match self {
            Denied::MonitorMode => "the host is in monitor mode: config.mode is monitor".into(),
            Denied::IncomingDisabled => {
                "incoming connections are disabled on the host: incomingconnections.enabled is false"
                    .into()
            }
            Denied::AccessWindowClosed { at } => format!(
                "incoming connections were enabled only until {} \
                 (incomingconnections.enableduntil), which has passed",
                format_utc(at)
            ),
            Denied::SourceNotAllowed => {
                "the client's address is not in incomingconnections.allowedsources on the host"
                    .into()
            }
            Denied::PortNotAllowed => {
                format!("port {port} is not in incomingconnections.ports on the host")
            }
            Denied::KeyPortNotAllowed => {
                format!("the token's key is not allowed to reach port {port}")
            }
            Denied::SessionTimeLimit { limit } => format!(
                "the session reached incomingconnections.maxsessionduration ({})",
                crate::config::format_duration(limit)
            ),
            Denied::ApprovalDenied => {
                "the host's administrator denied this session (incomingconnections.approval)".into()
            }
            Denied::ApprovalTimedOut => {
                "nobody on the host approved this session in time (incomingconnections.approval)"
                    .into()
            }
        }
    }
}

/// Decides a connection at the moment `now`: allowed only when the mode is full, incoming
/// connections are enabled (and their window, if any, has not closed), the client's address
/// is allowed, the port is listed, the key (if it lists ports) lists it, and a live session
/// is within its time limit — checked in that order, so the reason names the broadest switch
/// that refuses. The window is open while `now` is before its end, closed from that moment.
pub fn decide(
    config: &Config,
    candidate: &Candidate<'_>,
    now: SystemTime,
) -> Result<Permit, Denied> {
    let port = candidate.port.get();
    if config.mode == Mode::Monitor {
        return Err(Denied::MonitorMode);
    }
    if !config.incoming_enabled {
        return Err(Denied::IncomingDisabled);
    }
    if let Some(end) = config.incoming_enabled_until
        && now >= end
    {
        return Err(Denied::AccessWindowClosed { at: end });
    }
    if !config.allowed_sources.is_empty()
        && !config
            .allowed_sources
            .iter()
            .any(|n| n.contains(candidate.source))
    {
        return Err(Denied::SourceNotAllowed);
    }
    if !config.incoming_ports.contains(port) {
        return Err(Denied::PortNotAllowed);
    }
    if let Some(ports) = candidate.key_ports
        && !ports.contains(port)
    {
        return Err(Denied::KeyPortNotAllowed);
    }
    if let (Some(limit), Some(started)) = (config.max_session_duration, candidate.started)
        && started.checked_add(limit).is_some_and(|end| now >= end)
    {
        return Err(Denied::SessionTimeLimit { limit });
    }
    Ok(Permit {
        port: candidate.port,
        needs_approval: config.approval == Approval::Required,
    })
}

/// The next moment after `now` at which time alone could change [`decide`]'s answer for a
/// live session that started at `started` under `config`: the access window's end, or the
/// session's time limit, whichever comes first. `None`: nothing is due.
pub fn next_change(config: &Config, started: SystemTime, now: SystemTime) -> Option<SystemTime> {
    let window = config.incoming_enabled_until.filter(|end| *end > now);
    let limit = config
        .max_session_duration
        .and_then(|d| started.checked_add(d))
        .filter(|t| *t > now);
    match (window, limit) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PortRange, parse_port};

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    /// A moment: `s` seconds after a fixed one (2027-01-15T08:00:00Z).
    fn at(s: i64) -> SystemTime {
        let base = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        if s >= 0 {
            base + Duration::from_secs(s as u64)
        } else {
            base - Duration::from_secs(s.unsigned_abs())
        }
    }

    fn ports(list: &[&str]) -> PortSet {
        PortSet::from_ranges(list.iter().map(|p| PortRange::parse(p).unwrap()).collect())
    }

    #[test]
    fn decision_table() {
        let open = Config {
            incoming_ports: ports(&["22", "5900-5910"]),
            ..Config::default()
        };
        let disabled = Config {
            incoming_enabled: false,
            ..open.clone()
        };
        let monitor = Config {
            mode: Mode::Monitor,
            ..open.clone()
        };
        let monitor_enabled = Config {
            mode: Mode::Monitor,
            incoming_enabled: true,
            ..open.clone()
        };
        let empty = Config::default();
        let only22 = ports(&["22"]);
        type Row<'a> = (&'a Config, u16, Option<&'a PortSet>, Result<(), Denied>);
        let table: &[Row<'_>] = &[
            (&open, 22, None, Ok(())),
            (&open, 5905, None, Ok(())),
            (&open, 5911, None, Err(Denied::PortNotAllowed)),
            (&open, 3389, None, Err(Denied::PortNotAllowed)),
            (&empty, 22, None, Err(Denied::PortNotAllowed)),
            (&disabled, 22, None, Err(Denied::IncomingDisabled)),
            (&monitor, 22, None, Err(Denied::MonitorMode)),
            (&monitor_enabled, 22, None, Err(Denied::MonitorMode)),
            (&open, 22, Some(&only22), Ok(())),
            (&open, 5900, Some(&only22), Err(Denied::KeyPortNotAllowed)),
            (&empty, 22, Some(&only22), Err(Denied::PortNotAllowed)),
        ];
        for (config, port, key_ports, want) in table {
            let candidate = Candidate {
                port: parse_port(&port.to_string()).unwrap(),
                key_ports: *key_ports,
                source: LOCAL,
                started: None,
            };
            let got = decide(config, &candidate, at(0)).map(|_| ());
            assert_eq!(
                got, *want,
                "port {port} key {key_ports:?} config {config:?}"
            );
        }
    }

    #[test]
    fn windows_sources_and_time_limits_decide_at_the_moment_given() {
        use crate::config::{Change, Key, Raw};
        let set = |c: &Config, key: Key, value: &str| {
            c.change(key, &Change::Set(Raw::from_cli(key, value)))
                .unwrap()
        };
        let open = set(&Config::default(), Key::IncomingPorts, "22");
        let end = crate::config::format_utc(at(3600));
        let window = set(&open, Key::IncomingEnabledUntil, &end);
        let sources = set(&open, Key::AllowedSources, "127.0.0.1/32, 2001:db8::/32");
        let limited = set(&window, Key::MaxSessionDuration, "8h");
        let two = "127.0.0.2".parse().unwrap();
        let v6 = "2001:db8::7".parse().unwrap();
        let mapped = "::ffff:127.0.0.1".parse().unwrap();
        let closed = Err(Denied::AccessWindowClosed { at: at(3600) });
        let cut = Err(Denied::SessionTimeLimit {
            limit: Duration::from_secs(8 * 3600),
        });
        type Row<'a> = (&'a Config, IpAddr, Option<i64>, i64, Result<(), Denied>);
        let table: &[Row<'_>] = &[
            // The window: open through its last second, closed from its end on.
            (&window, LOCAL, None, 0, Ok(())),
            (&window, LOCAL, None, 3599, Ok(())),
            (&window, LOCAL, None, 3600, closed),
            (&window, LOCAL, None, 86_400, closed),
            // A live session is closed by the window too, whenever it started.
            (&window, LOCAL, Some(3000), 3599, Ok(())),
            (&window, LOCAL, Some(3000), 3600, closed),
            // Sources: listed addresses only, IPv4-mapped IPv6 as its IPv4 address.
            (&sources, LOCAL, None, 0, Ok(())),
            (&sources, two, None, 0, Err(Denied::SourceNotAllowed)),
            (&sources, v6, None, 0, Ok(())),
            (&sources, mapped, None, 0, Ok(())),
            (&open, two, None, 0, Ok(())),
            // A time limit crossed while a session streams, and the window still wins first.
            (
                &set(&open, Key::MaxSessionDuration, "8h"),
                LOCAL,
                Some(0),
                8 * 3600 - 1,
                Ok(()),
            ),
            (
                &set(&open, Key::MaxSessionDuration, "8h"),
                LOCAL,
                Some(0),
                8 * 3600,
                cut,
            ),
            (
                &set(&open, Key::MaxSessionDuration, "8h"),
                LOCAL,
                None,
                9 * 3600,
                Ok(()),
            ),
            (&limited, LOCAL, Some(0), 3600, closed),
        ];
        for (config, source, started, now, want) in table {
            let candidate = Candidate {
                port: parse_port("22").unwrap(),
                key_ports: None,
                source: *source,
                started: started.map(at),
            };
            let got = decide(config, &candidate, at(*now)).map(|_| ());
            assert_eq!(got, *want, "source {source} started {started:?} now {now}");
        }
        // Switching access off ends its window; monitor mode outranks a closed window.
        let disabled = window
            .change(
                Key::IncomingEnabled,
                &Change::Set(Raw::from_cli(Key::IncomingEnabled, "false")),
            )
            .unwrap();
        assert_eq!(
            disabled.incoming_enabled_until, None,
            "switching access ends its window"
        );
        let monitor = Config {
            mode: Mode::Monitor,
            ..window.clone()
        };
        let candidate = Candidate {
            port: parse_port("22").unwrap(),
            key_ports: None,
            source: LOCAL,
            started: None,
        };
        assert_eq!(
            decide(&monitor, &candidate, at(7200)),
            Err(Denied::MonitorMode)
        );
        // Removing the last source is refused: it would allow every address.
        let err = sources
            .change(
                Key::AllowedSources,
                &Change::Remove(Raw::from_cli(
                    Key::AllowedSources,
                    "127.0.0.1,2001:DB8::/32",
                )),
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("would allow every address"),
            "{err}"
        );
        // Networks are compared as networks, and mapped IPv4 networks as IPv4 ones.
        let mapped_net = set(&open, Key::AllowedSources, "::ffff:127.0.0.0/104");
        let from = Candidate {
            source: "127.9.9.9".parse().unwrap(),
            ..candidate
        };
        assert!(decide(&mapped_net, &from, at(0)).is_ok());

        // What is due next: the window's end, or the time limit, whichever is first.
        assert_eq!(next_change(&window, at(0), at(10)), Some(at(3600)));
        assert_eq!(next_change(&window, at(0), at(3600)), None);
        let short = set(&window, Key::MaxSessionDuration, "10m");
        assert_eq!(next_change(&short, at(100), at(200)), Some(at(700)));
        assert_eq!(next_change(&short, at(3500), at(3550)), Some(at(3600)));
        assert_eq!(next_change(&open, at(0), at(0)), None);
    }

    #[test]
    fn approval_is_asked_of_what_the_policy_allows() {
        use crate::config::{Change, Key, Raw};
        let open = Config::default()
            .change(
                Key::IncomingPorts,
                &Change::Set(Raw::from_cli(Key::IncomingPorts, "22")),
            )
            .unwrap();
        let held = open
            .change(
                Key::Approval,
                &Change::Set(Raw::from_cli(Key::Approval, "required")),
            )
            .unwrap();
        let candidate = Candidate {
            port: parse_port("22").unwrap(),
            key_ports: None,
            source: LOCAL,
            started: None,
        };
        assert!(!decide(&open, &candidate, at(0)).unwrap().needs_approval);
        assert!(decide(&held, &candidate, at(0)).unwrap().needs_approval);
        let other = Candidate {
            port: parse_port("23").unwrap(),
            ..candidate
        };
        assert_eq!(decide(&held, &other, at(0)), Err(Denied::PortNotAllowed));
    }

    #[test]
    fn wire_reasons_are_the_interface_values() {
        assert_eq!(Denied::MonitorMode.wire_reason(), "monitor_mode");
        assert_eq!(
            Denied::IncomingDisabled.wire_reason(),
            "incoming_connections_disabled"
        );
        assert_eq!(Denied::KeyPortNotAllowed.wire_reason(), "port_not_allowed");
        assert_eq!(
            Denied::KeyPortNotAllowed.audit_reason(),
            "key_port_not_allowed"
        );
        assert_eq!(
            Denied::PortNotAllowed.explain(22),
            "port 22 is not in incomingconnections.ports on the host"
        );
    }
}
