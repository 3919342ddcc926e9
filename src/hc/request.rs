//! A Hybrid Connections request head — `connect`, `listen` or `accept` — as a typed
//! [`HcRequest`], or a [`RequestError`] (`400`).
//!
//! Pure: no I/O. Checks that the request is a WebSocket upgrade (RFC 6455 §4.2.1), takes the
//! name from `/$hc/{name}[/suffix]`, and reads `sb-hc-action`, `sb-hc-id`, `port` and the
//! token. The gate and the relay both parse with [`parse_hc`], so one rule holds for every
//! field in every mode (an `sb-hc-id` of more than 64 characters is a 400 wherever it
//! arrives; the relay-listener role applies [`check_id`] to the id a relay announces).
//! Whether the name is ours, the token valid or the port allowed is decided later.

use hyper::http::{HeaderMap, Method, Version, header, request::Parts};
use percent_encoding::percent_decode_str;

use crate::config::{Port, misleading, parse_port, shorten};

/// The port a request reaches when it names none.
pub const DEFAULT_PORT: u16 = 22;
/// Longest `sb-hc-id` accepted (SPEC §2).
pub const MAX_ID_LEN: usize = 64;
/// Longest gate name accepted: a DNS name's limit.
pub const MAX_NAME_LEN: usize = 253;
/// Header the agent's clients put the token in.
pub const SB_AUTH_HEADER: &str = "servicebusauthorization";
/// The header carrying the end-to-end token in relay mode: a token signed with a key from
/// the *gate's* keys file, beside the relay's own. Not a credential to the relay, so the
/// relay passes it to the listener in `connectHeaders`, where the gate checks it.
pub const GATE_TOKEN_HEADER: &str = "arcgate-gate-token";

/// `sb-hc-action`: what the request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A sender opening a session.
    Connect,
    /// A listener attaching its control channel (relay only).
    Listen,
    /// A listener's rendezvous (or rejection) for one connection (relay only).
    Accept,
}

/// A well-formed Hybrid Connections request head, any action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HcRequest {
    /// What it is for.
    pub action: Action,
    /// The name (`/$hc/{name}`), decoded.
    pub name: String,
    /// `sb-hc-id`, checked by [`check_id`], when given.
    pub id: Option<String>,
    /// `port`, when given.
    pub port: Option<Port>,
    /// The token, from the first place that has one.
    pub token: Option<String>,
    /// `Sec-WebSocket-Key`, for the `101` answer.
    pub ws_key: String,
    /// Every query parameter, decoded, in order.
    pub query: Vec<(String, String)>,
}

impl HcRequest {
    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A well-formed connect request, as the gate decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The gate name the request is for.
    pub name: String,
    /// The client's tracking id, or one we made.
    pub id: String,
    /// Whether `id` was made by us.
    pub id_generated: bool,
    /// Target port on this host.
    pub port: Port,
    /// The token, from the first place that has one.
    pub token: Option<String>,
    /// `Sec-WebSocket-Key`, for the `101` answer.
    pub ws_key: String,
}

/// Why a request is malformed (`400 Bad Request`). The text is the response body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not a WebSocket upgrade.
    #[error("not a WebSocket upgrade: {0}")]
    NotWebSocket(&'static str),
    /// The path is not `/$hc/{name}[/suffix]`.
    #[error("bad path: {0}; expected /$hc/NAME")]
    BadPath(&'static str),
    /// `sb-hc-action` is missing or not one this endpoint serves.
    #[error("bad sb-hc-action '{given}'; expected {expected}")]
    BadAction {
        /// What was given (empty when missing).
        given: String,
        /// What this endpoint serves.
        expected: &'static str,
    },
    /// `port` is not a port.
    #[error("bad port '{given}': {why}")]
    BadPort {
        /// What was given.
        given: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// `sb-hc-id` is unusable.
    #[error("bad sb-hc-id: {0}")]
    BadId(&'static str),
    /// A parameter appears twice.
    #[error("query parameter '{0}' appears more than once")]
    Duplicate(&'static str),
    /// The query is not valid percent-encoded UTF-8.
    #[error("the query string is not valid UTF-8 after decoding")]
    BadQuery,
}

/// The parameters that may appear once only.
const SINGLE: [&str; 4] = ["sb-hc-action", "sb-hc-id", "port", "sb-hc-token"];
/// The parameters that may appear once only in an accept (a listener's rejection).
const SINGLE_IN_ACCEPT: [&str; 2] = ["sb-hc-statusCode", "sb-hc-statusDescription"];

/// Parses a request head of any action: the one parser the gate and the relay share.
pub fn parse_hc(head: &Parts) -> Result<HcRequest, RequestError> {
    let ws_key = check_upgrade(head)?;
    let name = parse_path(head.uri.path())?;
    let query = query_pairs(head.uri.query().unwrap_or(""))?;
    once_each(&query, &SINGLE)?;
    let get = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let action = match get("sb-hc-action").map(String::as_str) {
        Some("connect") => Action::Connect,
        Some("listen") => Action::Listen,
        Some("accept") => Action::Accept,
        other => {
            return Err(RequestError::BadAction {
                given: shorten(other.unwrap_or_default()),
                expected: "connect, listen or accept",
            });
        }
    };
    if action == Action::Accept {
        once_each(&query, &SINGLE_IN_ACCEPT)?;
    }
    let port = get("port")
        .map(|p| {
            parse_port(p).map_err(|why| RequestError::BadPort {
                given: shorten(p),
                why,
            })
        })
        .transpose()?;
    let id = get("sb-hc-id").cloned();
    if let Some(id) = &id {
        check_id(id)?;
    }
    let token = header_text(&head.headers, SB_AUTH_HEADER)
        .or_else(|| get("sb-hc-token").cloned())
        .or_else(|| header_text(&head.headers, header::AUTHORIZATION.as_str()));
    Ok(HcRequest {
        action,
        name,
        id,
        port,
        token,
        ws_key,
        query,
    })
}

/// A [`RequestError::Duplicate`] for the first of `names` that appears twice.
fn once_each(query: &[(String, String)], names: &[&'static str]) -> Result<(), RequestError> {
    for (i, (k, _)) in query.iter().enumerate() {
        if let Some(single) = names.iter().find(|s| *s == k)
            && query[..i].iter().any(|(earlier, _)| earlier == k)
        {
            return Err(RequestError::Duplicate(single));
        }
    }
    Ok(())
}

/// Parses a connect request: [`parse_hc`], the action `connect`, the default port and an id
/// of our own when the client sent none.
pub fn parse(head: &Parts) -> Result<ConnectRequest, RequestError> {
    // What the gate serves is connect only, and its 400 says so.
    let hc = parse_hc(head).map_err(|e| match e {
        RequestError::BadAction { given, .. } => RequestError::BadAction {
            given,
            expected: "connect",
        },
        other => other,
    })?;
    if hc.action != Action::Connect {
        return Err(RequestError::BadAction {
            given: shorten(hc.param("sb-hc-action").unwrap_or_default()),
            expected: "connect",
        });
    }
    let (id, id_generated) = match hc.id {
        Some(id) => (id, false),
        None => (uuid::Uuid::new_v4().to_string(), true),
    };
    Ok(ConnectRequest {
        name: hc.name,
        id,
        id_generated,
        port: hc
            .port
            .unwrap_or(Port::new(DEFAULT_PORT).expect("22 is non-zero")),
        token: hc.token,
        ws_key: hc.ws_key,
    })
}

/// The one `sb-hc-id` rule: 1 to 64 characters of any text, as the interface says, but
/// nothing that misleads a reader — the id is printed in every log line and by
/// `arcgate status`.
pub fn check_id(id: &str) -> Result<(), RequestError> {
    if id.is_empty() || id.chars().count() > MAX_ID_LEN {
        return Err(RequestError::BadId("it must be 1 to 64 characters"));
    }
    if id.chars().any(misleading) {
        return Err(RequestError::BadId(
            "it must not contain control or text-direction characters",
        ));
    }
    Ok(())
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn query_pairs(query: &str) -> Result<Vec<(String, String)>, RequestError> {
    let decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| RequestError::BadQuery)
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// `/$hc/{name}[/suffix]`, with `$` possibly percent-encoded. The suffix is ignored.
fn parse_path(path: &str) -> Result<String, RequestError> {
    let mut segments = path.split('/');
    if segments.next() != Some("") {
        return Err(RequestError::BadPath("it must start with /"));
    }
    match segments.next() {
        Some("$hc") | Some("%24hc") | Some("%24HC") => {}
        _ => return Err(RequestError::BadPath("it must start with /$hc/")),
    }
    let raw = segments.next().unwrap_or("");
    let name = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| RequestError::BadPath("the name is not UTF-8"))?;
    if name.is_empty() {
        return Err(RequestError::BadPath("the name is empty"));
    }
    check_name(&name).map_err(RequestError::BadPath)?;
    Ok(name.into_owned())
}

/// A gate name, decoded: letters, digits, `-`, `_` and `.`, not `.` or `..`, at most a DNS
/// name's length. The relay checks names with this too.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name.len() > MAX_NAME_LEN
        || name == "."
        || name == ".."
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("the name may hold only letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// RFC 6455 §4.2.1: GET, HTTP/1.1, `Upgrade: websocket`, `Connection: upgrade`,
/// `Sec-WebSocket-Version: 13`, a `Sec-WebSocket-Key` of 16 base64-encoded bytes.
fn check_upgrade(head: &Parts) -> Result<String, RequestError> {
    use base64::Engine as _;
    if head.method != Method::GET {
        return Err(RequestError::NotWebSocket("the method must be GET"));
    }
    if head.version != Version::HTTP_11 {
        return Err(RequestError::NotWebSocket("HTTP/1.1 is required"));
    }
    let has_token = |name: header::HeaderName, token: &str| {
        head.headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::UPGRADE, "websocket") {
        return Err(RequestError::NotWebSocket("no 'Upgrade: websocket' header"));
    }
    if !has_token(header::CONNECTION, "upgrade") {
        return Err(RequestError::NotWebSocket(
            "no 'Connection: Upgrade' header",
        ));
    }
    let version = head.headers.get_all(header::SEC_WEBSOCKET_VERSION);
    if version.iter().count() != 1
        || head
            .headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .map(|v| v.as_bytes())
            != Some(b"13")
    {
        return Err(RequestError::NotWebSocket(
            "Sec-WebSocket-Version must be 13",
        ));
    }
    let keys = head.headers.get_all(header::SEC_WEBSOCKET_KEY);
    let mut keys = keys.iter();
    let (Some(key), None) = (keys.next(), keys.next()) else {
        return Err(RequestError::NotWebSocket(
            "exactly one Sec-WebSocket-Key is required",
        ));
    };
    let key = key
        .to_str()
        .map_err(|_| RequestError::NotWebSocket("Sec-WebSocket-Key is not ASCII"))?
        .trim();
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(raw) if raw.len() == 16 => Ok(key.to_string()),
        _ => Err(RequestError::NotWebSocket(
            "Sec-WebSocket-Key must be 16 base64-encoded bytes",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::http::Request;

    fn head(uri: &str, extra: &[(&str, &str)]) -> Parts {
        let mut b = Request::builder()
            .uri(uri)
            .header("upgrade", "websocket")
            .header("connection", "keep-alive, Upgrade")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn well_formed_requests() {
        let r = parse(&head(
            "/$hc/myhost?sb-hc-action=connect&sb-hc-id=abc-1&port=3389",
            &[],
        ))
        .unwrap();
        assert_eq!(
            (r.name.as_str(), r.id.as_str(), r.port.get()),
            ("myhost", "abc-1", 3389)
        );
        let r = parse(&head("/%24hc/myhost/v2?sb-hc-action=connect", &[])).unwrap();
        assert_eq!(r.port.get(), 22, "default port; suffix ignored");
        assert!(r.id_generated);
        let r = parse(&head(
            "/$hc/h?sb-hc-action=connect&sb-hc-id=caf%C3%A9+id",
            &[],
        ))
        .unwrap();
        assert_eq!(r.id, "café id", "any text without control characters");
    }

    #[test]
    fn token_sources_in_order() {
        let uri = "/$hc/h?sb-hc-action=connect&sb-hc-token=SharedAccessSignature%20sr%3Dq";
        let both = [("servicebusauthorization", "H"), ("authorization", "A")];
        assert_eq!(
            parse(&head(uri, &both)).unwrap().token.as_deref(),
            Some("H")
        );
        let auth = [("authorization", "A")];
        assert_eq!(
            parse(&head(uri, &auth)).unwrap().token.as_deref(),
            Some("SharedAccessSignature sr=q")
        );
        let r = parse(&head("/$hc/h?sb-hc-action=connect", &auth)).unwrap();
        assert_eq!(r.token.as_deref(), Some("A"));
    }

    #[test]
    fn malformed_requests_are_400() {
        let cases = [
            "/$hc/h",
            "/$hc/h?sb-hc-action=connect&port=0",
            "/$hc/h?sb-hc-action=connect&port=65536",
            "/$hc/h?sb-hc-action=connect&port=%2B22",
            "/$hc/h?sb-hc-action=connect&port=+22",
            "/$hc/h?sb-hc-action=connect&port=%2022",
            "/$hc/h?sb-hc-action=connect&port=22&port=3389",
            "/$hc/h?sb-hc-action=connect&port=",
            "/$hc/h?sb-hc-action=connect&sb-hc-id=",
            "/$hc/h?sb-hc-action=connect&sb-hc-id=a%0Ab",
            // U+202E RIGHT-TO-LEFT OVERRIDE and U+2066 LEFT-TO-RIGHT ISOLATE reorder what a
            // log reader sees.
            "/$hc/h?sb-hc-action=connect&sb-hc-id=a%E2%80%AEb",
            "/$hc/h?sb-hc-action=connect&sb-hc-id=a%E2%81%A6b",
            "/$hc/h?sb-hc-action=connect&sb-hc-action=connect",
            "/$hc/h?sb-hc-action=connect&port=%FF",
            "/$hc/?sb-hc-action=connect",
            "/$hc/..?sb-hc-action=connect",
            "/$hc/%2E%2E?sb-hc-action=connect",
            "/$hc/a%2Fb?sb-hc-action=connect",
            "/other/h?sb-hc-action=connect",
            "/?sb-hc-action=connect",
        ];
        for uri in cases {
            assert!(parse(&head(uri, &[])).is_err(), "{uri} accepted");
        }
        let long_id = format!("/$hc/h?sb-hc-action=connect&sb-hc-id={}", "a".repeat(65));
        assert!(matches!(
            parse(&head(&long_id, &[])),
            Err(RequestError::BadId(_))
        ));
    }

    #[test]
    fn every_action_parses_with_the_same_rules_and_the_gate_takes_only_connect() {
        let listen = parse_hc(&head("/$hc/h?sb-hc-action=listen&sb-hc-id=l1", &[])).unwrap();
        assert_eq!(
            (listen.action, listen.id.as_deref()),
            (Action::Listen, Some("l1"))
        );
        assert!(matches!(
            parse(&head("/$hc/h?sb-hc-action=listen", &[])),
            Err(RequestError::BadAction {
                expected: "connect",
                ..
            })
        ));
        let accept = "/$hc/h?sb-hc-action=accept&sb-hc-id=x&sb-hc-statusCode=403";
        assert_eq!(
            parse_hc(&head(accept, &[]))
                .unwrap()
                .param("sb-hc-statusCode"),
            Some("403")
        );
        for bad in [
            "/$hc/h?sb-hc-action=other",
            "/$hc/h?sb-hc-action=listen&sb-hc-id=".to_string().as_str(),
            "/$hc/h?sb-hc-action=accept&sb-hc-id=x&sb-hc-statusCode=1&sb-hc-statusCode=2",
            "/$hc/h?sb-hc-action=connect&port=22&port=23",
        ] {
            assert!(parse_hc(&head(bad, &[])).is_err(), "{bad} accepted");
        }
        assert!(
            parse(&head(
                "/$hc/h?sb-hc-action=connect&sb-hc-statusCode=1&sb-hc-statusCode=2",
                &[]
            ))
            .is_ok(),
            "rejection parameters are an accept's business"
        );
        assert!(matches!(
            parse(&head("/$hc/h?sb-hc-action=other", &[])),
            Err(RequestError::BadAction {
                expected: "connect",
                ..
            })
        ));
        let long_id = format!("/$hc/h?sb-hc-action=listen&sb-hc-id={}", "é".repeat(64));
        assert!(
            parse_hc(&head(&long_id, &[])).is_ok(),
            "64 characters, 128 bytes"
        );
        let long_id = format!("/$hc/h?sb-hc-action=connect&sb-hc-id={}", "é".repeat(65));
        assert!(matches!(
            parse_hc(&head(&long_id, &[])),
            Err(RequestError::BadId(_))
        ));
    }

    #[test]
    fn not_an_upgrade_is_400() {
        let uri = "/$hc/h?sb-hc-action=connect";
        let plain = Request::get(uri).body(()).unwrap().into_parts().0;
        assert!(matches!(parse(&plain), Err(RequestError::NotWebSocket(_))));
        let mut h = head(uri, &[]);
        h.version = Version::HTTP_10;
        assert!(parse(&h).is_err());
        let mut h = head(uri, &[]);
        h.headers
            .insert("sec-websocket-key", "c2hvcnQ=".parse().unwrap());
        assert!(parse(&h).is_err());
        let mut h = head(uri, &[]);
        h.headers.append(
            "sec-websocket-key",
            "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap(),
        );
        assert!(parse(&h).is_err(), "duplicate key");
        let mut h = head(uri, &[]);
        h.headers
            .insert("sec-websocket-version", "8".parse().unwrap());
        assert!(parse(&h).is_err());
        let mut h = head(uri, &[]);
        h.method = Method::POST;
        assert!(parse(&h).is_err());
    }
}
