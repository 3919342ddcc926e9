//! The HTTP answers both the gate and the relay write: a refusal's status line (with its
//! reason phrase made safe for the wire) and body, and `101 Switching Protocols`. Which
//! refusal a request gets is each role's one table (`gate::Refusal`, the relay's own); how a
//! refusal is written is here, once.

use bytes::Bytes;
use http_body_util::Full;
use hyper::ext::ReasonPhrase;
use hyper::http::{HeaderValue, Response, StatusCode, header};

/// A plain-text refusal: `status` with `reason` as its phrase and `body` plus a newline.
pub(crate) fn text(status: StatusCode, reason: &str, body: &str) -> Response<Full<Bytes>> {
    refusal(status, reason, format!("{body}\n"), "text/plain")
}

/// `403 connection not allowed` with the JSON body clients read the explanation from:
/// `{"error":"connection not allowed","reason":REASON,"port":PORT,"detail":DETAIL}`.
pub(crate) fn not_allowed(reason: &str, port: u16, detail: &str) -> Response<Full<Bytes>> {
    refusal(
        StatusCode::FORBIDDEN,
        NOT_ALLOWED,
        not_allowed_body(reason, port, detail),
        "application/json",
    )
}

/// A refusal whose JSON body explains it to a person: `{"error":REASON,"detail":DETAIL}`
/// (the client prints the detail after the status line).
pub(crate) fn explained(status: StatusCode, reason: &str, detail: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": reason, "detail": detail }).to_string();
    refusal(status, reason, body, "application/json")
}

/// The reason phrase of every policy refusal (SPEC §2).
pub(crate) const NOT_ALLOWED: &str = "connection not allowed";

/// The body of [`not_allowed`].
pub(crate) fn not_allowed_body(reason: &str, port: u16, detail: &str) -> String {
    serde_json::json!({
        "error": NOT_ALLOWED,
        "reason": reason,
        "port": port,
        "detail": detail,
    })
    .to_string()
}

/// A refusal: `status` with `reason` as its reason phrase, and `Connection: close`.
pub(crate) fn refusal(
    status: StatusCode,
    reason: &str,
    body: String,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if let Ok(phrase) = ReasonPhrase::try_from(reason_phrase_bytes(reason)) {
        response.extensions_mut().insert(phrase);
    }
    response
}

/// `101 Switching Protocols` for a WebSocket key.
pub(crate) fn switching_protocols(ws_key: &str) -> Response<Full<Bytes>> {
    let accept = tungstenite::handshake::derive_accept_key(ws_key.as_bytes());
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    response
}

/// A reason phrase may hold only visible ASCII, space and tab (RFC 9112 §4).
fn reason_phrase_bytes(reason: &str) -> Vec<u8> {
    reason
        .bytes()
        .map(|b| {
            if b == b'\t' || (b' '..=b'~').contains(&b) {
                b
            } else {
                b'?'
            }
        })
        .collect()
}
