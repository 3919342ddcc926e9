//! The control channel's messages (SPEC §7): `accept` (relay → listener), `renewToken`
//! (listener → relay), and the rejection a listener appends to an accept address — both ends
//! of each rule, so that the relay and the relay-listener role cannot read them differently.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::config::shorten;

/// The `accept` control message (SPEC §7), relay → listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AcceptMessage {
    /// The body.
    pub accept: Accept,
}

/// The body of an `accept` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Accept {
    /// Where to open the rendezvous WebSocket (or send the rejection).
    pub address: String,
    /// The connection's id (the sender's `sb-hc-id`).
    pub id: String,
    /// Headers the sender sent (credentials removed).
    #[serde(default)]
    pub connect_headers: HashMap<String, String>,
    /// The sender's address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_endpoint: Option<RemoteEndpoint>,
}

/// The sender's address in an `accept` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RemoteEndpoint {
    /// IP address.
    pub address: String,
    /// Port.
    pub port: u16,
}

/// The `renewToken` control message, listener → relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RenewTokenMessage {
    /// The body.
    pub renew_token: RenewToken,
}

/// The body of a `renewToken` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RenewToken {
    /// The new token.
    pub token: String,
}

/// The rejection query a listener appends to an accept address; [`rejection`] reads it.
pub(crate) fn reject_address(address: &str, status: u16, description: &str) -> String {
    let sep = if address.contains('?') { '&' } else { '?' };
    format!(
        "{address}{sep}sb-hc-statusCode={status}&sb-hc-statusDescription={}",
        percent_encoding::utf8_percent_encode(description, percent_encoding::NON_ALPHANUMERIC)
    )
}

/// A rejection a listener sent, read from the accept request's query: the status (a 4xx or
/// 5xx, else 403) and its description (shortened; "connection not allowed" when missing).
/// `None` when the request is an acceptance.
pub(crate) fn rejection(
    status_code: Option<&str>,
    description: Option<&str>,
) -> Option<(u16, String)> {
    let code = status_code?;
    let status = code
        .parse::<u16>()
        .ok()
        .filter(|c| (400..600).contains(c))
        .unwrap_or(403);
    let description = description
        .map(shorten)
        .unwrap_or_else(|| "connection not allowed".into());
    Some((status, description))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn accept_messages_parse_with_and_without_remote_endpoint_and_ignore_unknown_fields() {
        let full = r#"{"accept":{"address":"wss://r/$hc/h?sb-hc-action=accept&sb-hc-id=1","id":"1",
            "connectHeaders":{"Host":"r"},"remoteEndpoint":{"address":"10.0.0.1","port":4242},
            "futureField":true}}"#;
        let m: AcceptMessage = serde_json::from_str(full).unwrap();
        assert_eq!(m.accept.remote_endpoint.unwrap().port, 4242);
        let bare =
            r#"{"accept":{"address":"wss://r/$hc/h?sb-hc-action=accept&sb-hc-id=2","id":"2"}}"#;
        let m: AcceptMessage = serde_json::from_str(bare).unwrap();
        assert!(m.accept.remote_endpoint.is_none() && m.accept.connect_headers.is_empty());
        let renew: RenewTokenMessage =
            serde_json::from_str(r#"{"renewToken":{"token":"SharedAccessSignature x"}}"#).unwrap();
        assert_eq!(renew.renew_token.token, "SharedAccessSignature x");
        assert_eq!(
            serde_json::to_string(&renew).unwrap(),
            r#"{"renewToken":{"token":"SharedAccessSignature x"}}"#
        );
    }

    #[test]
    fn reject_addresses_encode_the_description() {
        assert_eq!(
            reject_address(
                "wss://r/$hc/h?sb-hc-action=accept&sb-hc-id=1",
                403,
                "connection not allowed"
            ),
            "wss://r/$hc/h?sb-hc-action=accept&sb-hc-id=1&sb-hc-statusCode=403&sb-hc-statusDescription=connection%20not%20allowed"
        );
        let d = reject_address(
            "wss://r/x?a=1",
            503,
            "connection to localhost:22 failed: refused.",
        );
        assert!(
            d.ends_with(
                "sb-hc-statusDescription=connection%20to%20localhost%3A22%20failed%3A%20refused%2E"
            ),
            "{d}"
        );
    }

    #[test]
    fn a_rejection_is_read_back_as_it_was_written() {
        assert_eq!(
            rejection(None, Some("x")),
            None,
            "no status code: an acceptance"
        );
        assert_eq!(
            rejection(Some("503"), Some("down")),
            Some((503, "down".into()))
        );
        assert_eq!(
            rejection(Some("200"), None),
            Some((403, "connection not allowed".into())),
            "not an error status: the refusal the protocol means"
        );
    }
}
