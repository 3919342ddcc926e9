//! The connection policy of SPEC §3: a pure decision over (configuration, request).
//!
//! [`decide`] does no I/O, reads no clock and never blocks; the server calls it before `101`
//! for every request and again for every live session when the configuration changes.
//! [`Denied`] is the single source of the reason the 403 body, the audit line and the client
//! message all use.

pub mod extension;

use crate::config::{Config, Mode, Port, PortSet};

/// What the policy is asked about.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Target port on this host.
    pub port: Port,
    /// The ports the token's key is limited to, if it lists any.
    pub key_ports: Option<&'a PortSet>,
}

/// The policy allows the connection. Carried with the admitted session (`gate::admit`) into
/// its stop signal, which re-decides for the permitted port on every policy change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit {
    /// The port that was allowed.
    pub port: Port,
}

/// Why the policy refuses a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// `config.mode` is monitor.
    MonitorMode,
    /// `incomingconnections.enabled` is false.
    IncomingDisabled,
    /// The port is not in `incomingconnections.ports`.
    PortNotAllowed,
    /// The token's key lists ports and this is not one of them.
    KeyPortNotAllowed,
}

impl Denied {
    /// The `reason` of the 403 JSON body (SPEC §2). A key's port limit is reported as
    /// `port_not_allowed`, the value the interface defines; the audit log says which list.
    pub fn wire_reason(self) -> &'static str {
        match self {
            Denied::MonitorMode => "monitor_mode",
            Denied::IncomingDisabled => "incoming_connections_disabled",
            Denied::PortNotAllowed | Denied::KeyPortNotAllowed => "port_not_allowed",
        }
    }

    /// The reason as the audit log records it.
    pub fn audit_reason(self) -> &'static str {
        match self {
            Denied::KeyPortNotAllowed => "key_port_not_allowed",
            other => other.wire_reason(),
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
            Denied::PortNotAllowed => {
                format!("port {port} is not in incomingconnections.ports on the host")
            }
            Denied::KeyPortNotAllowed => {
                format!("the token's key is not allowed to reach port {port}")
            }
        }
    }
}

/// Decides a connection: allowed only when the mode is full, incoming connections are enabled,
/// the port is listed, and the key (if it lists ports) lists it — checked in that order, so the
/// reason names the broadest switch that refuses.
pub fn decide(config: &Config, candidate: &Candidate<'_>) -> Result<Permit, Denied> {
    let port = candidate.port.get();
    if config.mode == Mode::Monitor {
        return Err(Denied::MonitorMode);
    }
    if !config.incoming_enabled {
        return Err(Denied::IncomingDisabled);
    }
    if !config.incoming_ports.contains(port) {
        return Err(Denied::PortNotAllowed);
    }
    if let Some(ports) = candidate.key_ports
        && !ports.contains(port)
    {
        return Err(Denied::KeyPortNotAllowed);
    }
    Ok(Permit {
        port: candidate.port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PortRange, parse_port};

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
            };
            let got = decide(config, &candidate).map(|_| ());
            assert_eq!(
                got, *want,
                "port {port} key {key_ports:?} config {config:?}"
            );
        }
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
