//! The one grammar for outbound proxies: `proxy.url` ([`ProxyUrl`], `http://` only) and
//! `proxy.bypass` / `NO_PROXY` entries ([`BypassEntry`]), used by `config set`, `serve` and
//! the clients alike.

use std::fmt;

use super::Network;

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
pub(super) enum Bypass {
    All,
    /// Lower-case, without a leading `.` or `*.`.
    Domain(String),
    Network(Network),
}

impl BypassEntry {
    /// Parses one entry.
    pub fn parse(s: &str) -> Result<BypassEntry, &'static str> {
        let text = s.trim().to_string();
        let e = text.to_ascii_lowercase();
        let rule = if e == "*" {
            Bypass::All
        } else if let Ok(net) = Network::parse(&e) {
            Bypass::Network(net)
        } else if e.contains('/') {
            return Err(Network::parse(&e).expect_err("just failed"));
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
            Bypass::Network(net) => host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| net.contains(ip)),
        }
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
pub(super) fn explicit_port(url: &str) -> Option<u16> {
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

pub(super) fn parse_proxy_url(s: &str) -> Result<Option<String>, &'static str> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    ProxyUrl::parse(s)?;
    Ok(Some(s.to_string()))
}
