//! Whether an extension may be installed under the local configuration (SPEC §4.1): the
//! agent's rule, which gives the `extensions.*` keys a consumer. Pure.

use crate::config::{Config, ExtensionName};

/// The verdict of [`check`], with the rule that decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed: on the allowlist.
    AllowedListed,
    /// Allowed: no allowlist is set and it is not blocked.
    AllowedNoAllowlist,
    /// Refused: `extensions.enabled` is false.
    ExtensionsDisabled,
    /// Refused: on the blocklist.
    Blocked,
    /// Refused: an allowlist is set and does not list it.
    NotAllowlisted,
}

impl Verdict {
    /// Whether the extension may be installed.
    pub fn allowed(self) -> bool {
        matches!(self, Verdict::AllowedListed | Verdict::AllowedNoAllowlist)
    }

    /// The one line `arcgate extension check` prints.
    pub fn explain(self, name: &ExtensionName) -> String {
        match self {
            Verdict::AllowedListed => format!("{name} is allowed: it is in extensions.allowlist"),
            Verdict::AllowedNoAllowlist => {
                format!("{name} is allowed: no extensions.allowlist is set and it is not blocked")
            }
            Verdict::ExtensionsDisabled => {
                format!("{name} is not allowed: extensions.enabled is false")
            }
            Verdict::Blocked => format!("{name} is not allowed: it is in extensions.blocklist"),
            Verdict::NotAllowlisted => {
                format!("{name} is not allowed: it is not in extensions.allowlist")
            }
        }
    }
}

/// The rule: disabled → nothing; blocklisted → never; allowlist set → only what it lists;
/// neither list → everything.
pub fn check(config: &Config, name: &ExtensionName) -> Verdict {
    if !config.extensions_enabled {
        Verdict::ExtensionsDisabled
    } else if config.extensions_blocklist.contains(name) {
        Verdict::Blocked
    } else if config.extensions_allowlist.is_empty() {
        Verdict::AllowedNoAllowlist
    } else if config.extensions_allowlist.contains(name) {
        Verdict::AllowedListed
    } else {
        Verdict::NotAllowlisted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(s: &str) -> ExtensionName {
        ExtensionName::parse(s).unwrap()
    }

    #[test]
    fn the_agents_rule() {
        let a = ext("Pub/A");
        let mut c = Config::default();
        assert_eq!(check(&c, &a), Verdict::AllowedNoAllowlist);
        c.extensions_blocklist = vec![ext("pub/a")];
        assert_eq!(
            check(&c, &a),
            Verdict::Blocked,
            "names compare case-insensitively"
        );
        c.extensions_allowlist = vec![ext("Pub/A")];
        assert_eq!(check(&c, &a), Verdict::Blocked, "the blocklist wins");
        c.extensions_blocklist.clear();
        assert_eq!(check(&c, &a), Verdict::AllowedListed);
        assert_eq!(check(&c, &ext("Pub/B")), Verdict::NotAllowlisted);
        c.extensions_enabled = false;
        assert_eq!(check(&c, &a), Verdict::ExtensionsDisabled);
    }
}
