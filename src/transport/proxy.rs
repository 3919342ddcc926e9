//! Outbound connections through an HTTP proxy (HTTP `CONNECT`), and which destinations skip it.
//!
//! Used by the one dialer (`transport::dial`) for the clients (`HTTPS_PROXY`/`NO_PROXY`, as
//! curl reads them) and for relay mode's listener (`proxy.url`/`proxy.bypass`). Owns the CONNECT exchange; the URL and the
//! bypass rules are parsed by [`crate::config`]'s one grammar ([`ProxyUrl`], [`BypassEntry`]),
//! so what `config set` accepts is exactly what works here. Knows nothing about TLS or
//! WebSockets, which run over the stream it returns.

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{BypassEntry, ProxyUrl, shorten};

/// Largest proxy answer head we read: real ones are a few hundred bytes.
const MAX_ANSWER: usize = 16 * 1024;

/// A proxy and the destinations that bypass it.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    host: String,
    port: u16,
    /// `user:password`, sent as Basic credentials.
    credentials: Option<String>,
    bypass: Vec<BypassEntry>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Proxy({}:{}", self.host, self.port)?;
        if self.credentials.is_some() {
            f.write_str(", with credentials")?;
        }
        write!(f, ", bypass {:?})", self.bypass)
    }
}

/// Why a connection through (or to) the proxy failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The proxy URL is not usable.
    #[error("proxy URL '{url}': {why}")]
    BadUrl {
        /// The URL (credentials removed).
        url: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The proxy could not be reached.
    #[error("cannot reach the proxy {proxy}: {error}")]
    Unreachable {
        /// host:port of the proxy.
        proxy: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// The proxy answered CONNECT with something other than 200.
    #[error("the proxy {proxy} refused CONNECT {target}: {status_line}")]
    Refused {
        /// host:port of the proxy.
        proxy: String,
        /// host:port asked for.
        target: String,
        /// The proxy's status line.
        status_line: String,
    },
    /// The proxy broke the exchange.
    #[error("the proxy {proxy} gave no valid answer to CONNECT: {why}")]
    BadAnswer {
        /// host:port of the proxy.
        proxy: String,
        /// What was wrong.
        why: String,
    },
}

impl Proxy {
    /// Parses `[http://][user:pass@]host[:port]` ([`ProxyUrl`]) with the bypass entries.
    pub fn new(
        url: &str,
        bypass: impl IntoIterator<Item = BypassEntry>,
    ) -> Result<Proxy, ProxyError> {
        let parsed = ProxyUrl::parse(url).map_err(|why| ProxyError::BadUrl {
            url: redact(url),
            why,
        })?;
        Ok(Proxy {
            host: parsed.host,
            port: parsed.port,
            credentials: parsed.credentials,
            bypass: bypass.into_iter().collect(),
        })
    }

    /// The proxy `HTTPS_PROXY` (or `https_proxy`, `ALL_PROXY`, `all_proxy`) names, with
    /// `NO_PROXY`/`no_proxy` as the bypass list; `None` when none is set.
    pub fn from_env() -> Result<Option<Proxy>, ProxyError> {
        let var = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
        };
        let Some(url) = var(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]) else {
            return Ok(None);
        };
        let no_proxy = var(&["NO_PROXY", "no_proxy"]).unwrap_or_default();
        // An entry the grammar refuses is skipped with a warning rather than failing every
        // connection: NO_PROXY is shared with every other program on the machine.
        let bypass = no_proxy
            .split(',')
            .filter(|e| !e.trim().is_empty())
            .filter_map(|e| match BypassEntry::parse(e) {
                Ok(entry) => Some(entry),
                Err(why) => {
                    tracing::warn!(entry = %shorten(e), why, "NO_PROXY entry ignored");
                    None
                }
            });
        Proxy::new(&url, bypass.collect::<Vec<_>>()).map(Some)
    }

    /// Whether connections to `host` go through the proxy.
    pub fn applies_to(&self, host: &str) -> bool {
        !self.bypass.iter().any(|b| b.matches(host))
    }

    fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Opens a tunnel to `host:port` through the proxy.
    pub async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, ProxyError> {
        let proxy = self.address();
        let mut stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|error| ProxyError::Unreachable {
                proxy: proxy.clone(),
                error,
            })?;
        let _ = stream.set_nodelay(true);
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(creds) = &self.credentials {
            let encoded = base64::engine::general_purpose::STANDARD.encode(creds);
            request.push_str(&format!("Proxy-Authorization: Basic {encoded}\r\n"));
        }
        request.push_str("\r\n");
        let bad = |why: String| ProxyError::BadAnswer {
            proxy: proxy.clone(),
            why,
        };
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| bad(e.to_string()))?;
        // Read byte-wise up to the blank line: nothing past the answer head may be consumed,
        // it belongs to the TLS stream that follows.
        let mut head = Vec::with_capacity(256);
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() >= MAX_ANSWER {
                return Err(bad("answer head larger than 16 KiB".into()));
            }
            match stream.read_u8().await {
                Ok(b) => head.push(b),
                Err(e) => return Err(bad(format!("connection ended: {e}"))),
            }
        }
        let text = String::from_utf8_lossy(&head);
        let status_line = text.lines().next().unwrap_or("").trim().to_string();
        let code = status_line.split_whitespace().nth(1).unwrap_or("");
        if !status_line.starts_with("HTTP/1.") || code.len() != 3 {
            return Err(bad(format!(
                "'{}' is not an HTTP status line",
                shorten(&status_line)
            )));
        }
        if code != "200" {
            return Err(ProxyError::Refused {
                proxy,
                target,
                status_line: shorten(&status_line),
            });
        }
        Ok(stream)
    }
}

/// A proxy URL without its password, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => shorten(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bypass_rules() {
        let entries = |list: &[&str]| -> Vec<BypassEntry> {
            list.iter()
                .map(|e| BypassEntry::parse(e).unwrap())
                .collect()
        };
        let p = Proxy::new(
            "http://proxy:3128",
            entries(&["localhost", ".corp.example", "10.0.0.0/8", "::1", "*.svc"]),
        )
        .unwrap();
        for (host, via_proxy) in [
            ("localhost", false),
            ("LOCALHOST", false),
            ("a.corp.example", false),
            ("corp.example", false),
            ("notcorp.example", true),
            ("10.1.2.3", false),
            ("11.1.2.3", true),
            ("[::1]", false),
            ("x.svc", false),
            ("xsvc", true),
            ("gate.example", true),
            ("10.0.0.1.example", true),
        ] {
            assert_eq!(p.applies_to(host), via_proxy, "{host}");
        }
        assert!(
            !Proxy::new("proxy:3128", entries(&["*"]))
                .unwrap()
                .applies_to("anything")
        );
    }

    #[test]
    fn proxy_urls() {
        let p = Proxy::new("http://us%40er:p%3Ass@proxy.example:8080", vec![]).unwrap();
        assert_eq!(p.address(), "proxy.example:8080");
        assert_eq!(p.credentials.as_deref(), Some("us@er:p:ss"));
        assert!(
            !format!("{p:?}").contains("p:ss"),
            "credentials never printed"
        );
        assert!(Proxy::new("https://proxy", vec![]).is_err());
        assert!(Proxy::new("http://", vec![]).is_err());
        assert_eq!(Proxy::new("proxy", vec![]).unwrap().address(), "proxy:1080");
        let err = Proxy::new("socks5://u:secret@h", vec![])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}
