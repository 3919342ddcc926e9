//! Gate URLs (`wss://HOST[:PORT]/$hc/NAME[/suffix][?query]`) and the exact addresses a relay
//! hands out: the one parser for both, used by `connect`, `forward`, `ssh-config` and the
//! relay-listener role.
//!
//! Pure: it says what to dial and which path to request ([`Endpoint`]); dialling is
//! `transport::dial`'s.

use crate::config::shorten;

/// Where to open a WebSocket: host and port to dial (and to verify the certificate for), and
/// the path and query to request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host to dial and to verify the certificate for (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Path and query to request.
    pub path_and_query: String,
}

/// Why a URL cannot be used. The text is what the user reads after `arcgate: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all.
    #[error("'{given}' is not a URL: {why}")]
    NotUrl {
        /// The URL, shortened.
        given: String,
        /// The parser's reason.
        why: String,
    },
    /// Another scheme than `wss`.
    #[error("'{0}': the scheme must be wss:// (remember to single-quote $hc in shells)")]
    NotWss(String),
    /// No host.
    #[error("'{0}' has no host")]
    NoHost(String),
    /// No `/$hc/NAME`.
    #[error(
        "'{0}' is not a gate URL; expected wss://HOST[:PORT]/$hc/NAME \
         (in a shell or ssh_config, single-quote it so that $hc is not expanded)"
    )]
    NotGateUrl(String),
}

/// A parsed gate URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateUrl {
    url: url::Url,
    host: String,
    name: String,
}

fn parse_wss(given: &str) -> Result<(url::Url, String), UrlError> {
    let url = url::Url::parse(given).map_err(|e| UrlError::NotUrl {
        given: shorten(given),
        why: e.to_string(),
    })?;
    if url.scheme() != "wss" {
        return Err(UrlError::NotWss(shorten(given)));
    }
    let host = url
        .host_str()
        .ok_or_else(|| UrlError::NoHost(shorten(given)))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((url, host))
}

fn path_and_query(url: &url::Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

impl GateUrl {
    /// Parses `wss://HOST[:PORT]/$hc/NAME[/suffix][?query]`.
    pub fn parse(given: &str) -> Result<GateUrl, UrlError> {
        let (url, host) = parse_wss(given)?;
        let name = {
            let mut segments = url.path_segments().into_iter().flatten();
            match (segments.next(), segments.next()) {
                (Some("$hc" | "%24hc"), Some(name)) if !name.is_empty() => name.to_string(),
                _ => return Err(UrlError::NotGateUrl(shorten(given))),
            }
        };
        Ok(GateUrl { url, host, name })
    }

    /// The gate name (`/$hc/{name}`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The URL as given.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    fn with_query(&self, params: &[(&str, &str)], keep_others: bool) -> Endpoint {
        let mut url = self.url.clone();
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| {
                keep_others && !matches!(k.as_ref(), "sb-hc-action" | "sb-hc-id" | "port")
            })
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        {
            let mut q = url.query_pairs_mut();
            q.clear();
            for (k, v) in params {
                q.append_pair(k, v);
            }
            for (k, v) in &kept {
                q.append_pair(k, v);
            }
        }
        Endpoint {
            host: self.host.clone(),
            port: url.port().unwrap_or(443),
            path_and_query: path_and_query(&url),
        }
    }

    /// A connect request for `port` with tracking id `id`; the URL's other query parameters
    /// are kept.
    pub fn connect(&self, port: u16, id: &str) -> Endpoint {
        let port = port.to_string();
        self.with_query(
            &[
                ("sb-hc-action", "connect"),
                ("sb-hc-id", id),
                ("port", &port),
            ],
            true,
        )
    }

    /// A listen request (relay mode's control channel) with id `id`.
    pub fn listen(&self, id: &str) -> Endpoint {
        self.with_query(&[("sb-hc-action", "listen"), ("sb-hc-id", id)], false)
    }
}

impl Endpoint {
    /// An exact `wss://` address, used as it is (a relay's accept or reject address).
    pub fn exact(address: &str) -> Result<Endpoint, UrlError> {
        let (url, host) = parse_wss(address)?;
        Ok(Endpoint {
            host,
            port: url.port().unwrap_or(443),
            path_and_query: path_and_query(&url),
        })
    }

    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<String> {
        let query = self.path_and_query.split_once('?')?.1;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_urls_become_connect_and_listen_requests() {
        let u = GateUrl::parse("wss://gate.example:8443/$hc/myhost?x=1&port=9").unwrap();
        assert_eq!((u.host(), u.name()), ("gate.example", "myhost"));
        let c = u.connect(3389, "id-1");
        assert_eq!(c.port, 8443);
        assert_eq!(
            c.path_and_query,
            "/$hc/myhost?sb-hc-action=connect&sb-hc-id=id-1&port=3389&x=1"
        );
        assert_eq!(
            u.listen("l").path_and_query,
            "/$hc/myhost?sb-hc-action=listen&sb-hc-id=l"
        );
        let v6 = GateUrl::parse("wss://[::1]/%24hc/h/suffix").unwrap();
        assert_eq!((v6.host(), v6.name()), ("::1", "h"));
        assert_eq!(v6.connect(22, "i").port, 443);
        for (bad, want) in [
            ("not a url", "is not a URL"),
            ("https://h/$hc/n", "scheme must be wss://"),
            ("wss://h/other/n", "is not a gate URL"),
            ("wss://h/$hc/", "is not a gate URL"),
        ] {
            let e = GateUrl::parse(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn exact_addresses_are_kept_as_they_are() {
        let a = Endpoint::exact("wss://relay:9443/$hc/h?sb-hc-action=accept&sb-hc-id=abc&port=22")
            .unwrap();
        assert_eq!((a.host.as_str(), a.port), ("relay", 9443));
        assert_eq!(
            a.path_and_query,
            "/$hc/h?sb-hc-action=accept&sb-hc-id=abc&port=22"
        );
        assert_eq!(a.param("port").as_deref(), Some("22"));
        assert_eq!(a.param("none"), None);
        assert!(Endpoint::exact("ws://relay/$hc/h").is_err());
    }
}
