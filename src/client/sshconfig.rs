//! `arcgate ssh-config`: a ready `Host` block for `~/.ssh/config`.
//!
//! Owns the quoting: ssh passes `ProxyCommand` to `/bin/sh -c` after expanding `%` tokens, so
//! every argument is single-quoted for the shell (which also keeps `$hc` literal) and every
//! `%` doubled for ssh. Pure: the caller resolves paths.

use std::path::PathBuf;

/// What goes into the block.
#[derive(Debug, Clone)]
pub struct HostBlock {
    /// The `Host` name users type after `ssh`.
    pub name: String,
    /// The gate URL; empty when `profile` names where it is.
    pub url: String,
    /// Connect with this client profile (`connect --profile NAME`) instead of a URL, token
    /// and CA files.
    pub profile: Option<String>,
    /// A fixed `Port`; without it `ssh -p` chooses (`-p %p` either way).
    pub port: Option<u16>,
    /// An absolute token file.
    pub token_file: Option<PathBuf>,
    /// Absolute extra CA files.
    pub ca: Vec<PathBuf>,
    /// The absolute path of the `arcgate` binary.
    pub exe: PathBuf,
    /// A `User` line.
    pub user: Option<String>,
}

/// Quotes one argument for `/bin/sh` when it needs it: `'...'`, with `'` written as `'\''`.
pub fn sh_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Renders the block, or says which value cannot go into an ssh_config line.
pub fn render(b: &HostBlock) -> Result<String, String> {
    let line_safe = |what: &str, v: &str| {
        if v.chars().any(|c| c == '\n' || c == '\r' || c == '\0') {
            Err(format!(
                "the {what} contains a line break; ssh_config cannot hold it"
            ))
        } else {
            Ok(())
        }
    };
    if b.name.is_empty()
        || b.name.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '#' | '*' | '?' | '!' | ',' | '"')
        })
    {
        return Err(format!(
            "'{}' cannot be a Host name: no spaces, quotes, '#', ',' or patterns",
            b.name
        ));
    }
    // `exe connect TARGET...`, where TARGET is the URL or `--profile NAME`.
    let mut args: Vec<String> = vec![b.exe.to_string_lossy().into_owned(), "connect".into()];
    match &b.profile {
        Some(profile) => args.extend(["--profile".to_string(), profile.clone()]),
        None => args.push(b.url.clone()),
    }
    let after_target = args.len();
    if let Some(f) = &b.token_file {
        args.push("--token-file".into());
        args.push(f.to_string_lossy().into_owned());
    }
    for ca in &b.ca {
        args.push("--ca".into());
        args.push(ca.to_string_lossy().into_owned());
    }
    for a in &args {
        line_safe("path or URL", a)?;
    }
    // `%p` is left for ssh to expand: the port given to `ssh -p` or the Port line.
    let mut command: Vec<String> = args
        .iter()
        .map(|a| sh_quote(a).replace('%', "%%"))
        .collect();
    command.insert(after_target, "-p %p".into());
    let mut out = format!("Host {}\n", b.name);
    if let Some(user) = &b.user {
        line_safe("user", user)?;
        out.push_str(&format!("    User {user}\n"));
    }
    if let Some(port) = b.port {
        out.push_str(&format!("    Port {port}\n"));
    }
    out.push_str(&format!("    ProxyCommand {}\n", command.join(" ")));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_spaces_quotes_dollars_and_percents() {
        let block = HostBlock {
            name: "myhost".into(),
            url: "wss://gate.example/$hc/myhost".into(),
            profile: None,
            port: Some(2222),
            token_file: Some("/home/o'neil/my token%1".into()),
            ca: vec!["/etc/ca dir/ca.pem".into()],
            exe: "/opt/arc gate/arcgate".into(),
            user: None,
        };
        let text = render(&block).unwrap();
        assert_eq!(
            text,
            "Host myhost\n    Port 2222\n    ProxyCommand '/opt/arc gate/arcgate' connect \
             'wss://gate.example/$hc/myhost' -p %p --token-file '/home/o'\\''neil/my token%%1' \
             --ca '/etc/ca dir/ca.pem'\n"
        );
    }

    #[test]
    fn bad_names_and_line_breaks_are_refused() {
        let mut block = HostBlock {
            name: "my host".into(),
            url: "wss://g/$hc/h".into(),
            profile: None,
            port: None,
            token_file: None,
            ca: vec![],
            exe: "/bin/arcgate".into(),
            user: None,
        };
        assert!(render(&block).is_err());
        block.name = "h".into();
        block.token_file = Some("/tmp/a\nb".into());
        assert!(render(&block).unwrap_err().contains("line break"));
    }
}
