//! The agent's relay information (`-r FILE`, `SSHPROXY_RELAY_INFO`): base64 JSON naming the
//! relay namespace, the hybrid connection and an access key.

use base64::Engine as _;

use crate::client::ClientError;

/// The agent's relay information, decoded: the URL and token it implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayInfo {
    /// `wss://{namespaceName}.{namespaceNameSuffix}/$hc/{hybridConnectionName}`.
    pub url: String,
    /// `accessKey`.
    pub token: String,
}

/// Decodes the base64 JSON relay information (`-r FILE`, `SSHPROXY_RELAY_INFO`); raw JSON is
/// accepted too.
pub fn parse_relay_info(text: &str, now: u64) -> Result<RelayInfo, ClientError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Relay {
        namespace_name: String,
        namespace_name_suffix: String,
        hybrid_connection_name: String,
        access_key: String,
        #[serde(default)]
        expires_on: Option<serde_json::Value>,
    }
    #[derive(serde::Deserialize)]
    struct Info {
        relay: Relay,
    }
    let bad = ClientError::RelayInfo;
    let text = text.trim();
    let json = if text.starts_with('{') {
        text.as_bytes().to_vec()
    } else {
        let compact: String = text.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(compact.as_bytes()))
            .map_err(|e| bad(format!("not base64 ({e})")))?
    };
    let info: Info = serde_json::from_slice(&json).map_err(|e| {
        bad(format!(
            "not the expected JSON ({e}); expected {{\"relay\":{{\"namespaceName\",\"namespaceNameSuffix\",\"hybridConnectionName\",\"accessKey\",...}}}}"
        ))
    })?;
    let r = info.relay;
    let expiry = match &r.expires_on {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    if let Some(expiry) = expiry
        && expiry <= now
    {
        return Err(bad(format!(
            "it expired at {expiry} (Unix time; now {now}); fetch fresh relay information"
        )));
    }
    Ok(RelayInfo {
        url: format!(
            "wss://{}.{}/$hc/{}",
            r.namespace_name, r.namespace_name_suffix, r.hybrid_connection_name
        ),
        token: r.access_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_info_in_the_agents_form() {
        let json = r#"{"relay":{"namespaceName":"ns","namespaceNameSuffix":"servicebus.example","hybridConnectionName":"hc1","accessKey":"SharedAccessSignature sr=x","expiresOn":2000000000,"serviceConfigurationToken":"t"}}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(json);
        let info = parse_relay_info(&b64, 1_900_000_000).unwrap();
        assert_eq!(info.url, "wss://ns.servicebus.example/$hc/hc1");
        assert_eq!(info.token, "SharedAccessSignature sr=x");
        assert_eq!(parse_relay_info(json, 0).unwrap(), info);
        let err = parse_relay_info(&b64, 2_100_000_000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expired"), "{err}");
        assert!(parse_relay_info("!!!", 0).is_err());
    }
}
