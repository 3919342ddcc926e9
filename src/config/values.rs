//! The typed values configuration keys hold: the mode, ports, port ranges and sets, and
//! extension names, each with its one parser.

use std::fmt;

use super::{bracketed, shorten};

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

/// `incomingconnections.approval`: whether each allowed session waits for the host's
/// administrator (`arcgate sessions approve ID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Approval {
    /// What the policy allows starts at once.
    #[default]
    None,
    /// Each allowed session is held until someone on the host approves or denies it.
    Required,
}

impl fmt::Display for Approval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Approval::None => "none",
            Approval::Required => "required",
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

    /// The set as a JSON list: numbers for single ports, "a-b" strings for ranges.
    pub fn to_json(&self) -> serde_json::Value {
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
pub struct ExtensionName(pub(super) String);

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

pub(super) fn dedup_extensions(names: Vec<ExtensionName>) -> Vec<ExtensionName> {
    let mut out: Vec<ExtensionName> = Vec::with_capacity(names.len());
    for n in names {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}
/// A client network for `incomingconnections.allowedsources`, and the address part of a
/// `proxy.bypass` entry: `ADDRESS/BITS` (a CIDR) or one address. One grammar for both. Two
/// networks are equal when they hold the same addresses (`10.1.2.3/8` is `10.0.0.0/8`,
/// `::ffff:192.0.2.0/120` is `192.0.2.0/24`), whatever their spelling.
#[derive(Debug, Clone)]
pub struct Network {
    /// As given (trimmed), for `config list`.
    text: String,
    addr: std::net::IpAddr,
    bits: u8,
}

impl Network {
    /// Parses `10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7` or `[::1]`.
    pub fn parse(s: &str) -> Result<Network, &'static str> {
        let text = s.trim().to_string();
        let unbracket = |a: &str| {
            a.strip_prefix('[')
                .and_then(|v| v.strip_suffix(']'))
                .unwrap_or(a)
                .to_string()
        };
        let (addr, bits) = match text.split_once('/') {
            Some((addr, bits)) => {
                let addr: std::net::IpAddr = unbracket(addr)
                    .parse()
                    .map_err(|_| "a CIDR is ADDRESS/BITS")?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                match bits.parse::<u8>() {
                    Ok(b) if b <= max && !bits.starts_with('+') => (addr, b),
                    _ => return Err("a CIDR prefix length is 0-32 (IPv4) or 0-128 (IPv6)"),
                }
            }
            None => {
                let addr: std::net::IpAddr = unbracket(&text)
                    .parse()
                    .map_err(|_| "not an IP address or a CIDR such as 10.0.0.0/8")?;
                (addr, if addr.is_ipv4() { 32 } else { 128 })
            }
        };
        // An IPv4-mapped IPv6 network is the IPv4 one: peers are compared that way too.
        let (addr, bits) = match addr {
            std::net::IpAddr::V6(v6) if bits >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (std::net::IpAddr::V4(v4), bits - 96),
                None => (addr, bits),
            },
            _ => (addr, bits),
        };
        Ok(Network { text, addr, bits })
    }

    /// The network itself: its first address and prefix length.
    fn identity(&self) -> (std::net::IpAddr, u8) {
        use std::net::IpAddr;
        let first = match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        (first, self.bits)
    }

    /// Whether `ip` is in this network (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        match (ip.to_canonical(), self.addr) {
            (IpAddr::V4(a), IpAddr::V4(n)) => {
                let bits = u32::from(self.bits.min(32));
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(a) & mask == u32::from(n) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(n)) => {
                let bits = u32::from(self.bits.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(a) & mask == u128::from(n) & mask
            }
            _ => false,
        }
    }
}

impl PartialEq for Network {
    fn eq(&self, other: &Network) -> bool {
        self.identity() == other.identity()
    }
}

impl Eq for Network {}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}
