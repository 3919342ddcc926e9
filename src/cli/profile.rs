//! `arcgate profile` and `arcgate ssh`: a host's gate written down once, then reached by
//! name with OpenSSH — no URL to type, nothing to single-quote.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use arcgate::client::ClientError;
use arcgate::client::profile::{self, Profile};
use arcgate::client::sshconfig::sh_quote;

use super::{CliError, Status};

/// `arcgate profile`.
#[derive(Debug, Args)]
pub(crate) struct ProfileArgs {
    #[command(subcommand)]
    pub action: ProfileAction,
}

/// What to do with the profiles.
#[derive(Debug, Subcommand)]
pub(crate) enum ProfileAction {
    /// Add (or replace) the profile for a host.
    Add {
        /// The host's name, as you will type it after `arcgate ssh`.
        name: String,
        /// Its gate, wss://GATE[:PORT]/$hc/NAME (single-quote it this once).
        #[arg(long)]
        url: String,
        /// The token file.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// Through a relay: the gate token file.
        #[arg(long, value_name = "FILE")]
        gate_token_file: Option<PathBuf>,
        /// An extra CA certificate to trust; repeatable.
        #[arg(long, value_name = "FILE")]
        ca: Vec<PathBuf>,
        /// The port on the host.
        #[arg(short, long, default_value_t = 22)]
        port: u16,
    },
    /// List the profiles.
    List,
    /// Remove a profile.
    Remove {
        /// The host's name.
        name: String,
    },
}

/// `arcgate ssh`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub(crate) struct SshArgs {
    /// `[user@]NAME [ssh options] [command]`: NAME is a profile (arcgate profile add);
    /// everything after it goes to ssh as it is (`-v`, `-h`, `--` included).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        num_args = 1..,
        required = true,
        value_name = "[USER@]NAME [ARGS]"
    )]
    pub args: Vec<String>,
}

fn absolute(p: &Path) -> Result<PathBuf, CliError> {
    Ok(match p.is_absolute() {
        true => p.to_path_buf(),
        false => std::env::current_dir()
            .map_err(|e| CliError::Usage(format!("cannot find the current directory: {e}")))?
            .join(p),
    })
}

pub(super) fn profile(args: ProfileArgs) -> Result<Status, CliError> {
    let path = profile::profiles_path();
    let failed = |e: profile::ProfileError| CliError::from(ClientError::from(e));
    match args.action {
        ProfileAction::Add {
            name,
            url,
            token_file,
            gate_token_file,
            ca,
            port,
        } => {
            let profile = Profile {
                url,
                token_file: token_file.as_deref().map(absolute).transpose()?,
                gate_token_file: gate_token_file.as_deref().map(absolute).transpose()?,
                ca: ca.iter().map(|c| absolute(c)).collect::<Result<_, _>>()?,
                port,
            };
            profile::put(&path, &name, profile).map_err(failed)?;
            eprintln!(
                "arcgate: {}: profile '{name}' saved; reach it with: arcgate ssh [user@]{name}",
                path.display()
            );
        }
        ProfileAction::List => {
            for (name, p) in profile::load(&path).map_err(failed)? {
                println!("{name}\t{}\tport {}", p.url, p.port);
            }
        }
        ProfileAction::Remove { name } => {
            profile::remove(&path, &name).map_err(failed)?;
            eprintln!("arcgate: {}: profile '{name}' removed", path.display());
        }
    }
    Ok(0)
}

/// Runs OpenSSH to `[user@]NAME` with `arcgate connect --profile NAME` as its ProxyCommand;
/// this process becomes ssh, so its exit code is ssh's.
pub(super) fn ssh(args: SshArgs) -> Result<Status, CliError> {
    let (target, ssh_args) = args.args.split_first().expect("clap requires the target");
    // The host name comes first; what follows it is ssh's (`-h` there is ssh's too).
    if target.starts_with('-') {
        return Err(CliError::Usage(
            "usage: arcgate ssh [USER@]NAME [ssh options] [command], NAME first (arcgate \
             profile list shows them); arcgate help ssh says more"
                .into(),
        ));
    }
    let name = target
        .rsplit_once('@')
        .map_or(target.as_str(), |(_, host)| host);
    let found = profile::get(&profile::profiles_path(), name)
        .map_err(|e| CliError::from(ClientError::from(e)))?;
    let exe = std::env::current_exe()
        .map_err(|e| CliError::Usage(format!("cannot find this program's own path: {e}")))?;
    // ssh expands `%` tokens: every `%` of ours is doubled, `%p` (its port) is left.
    let escaped = |s: &str| sh_quote(s).replace('%', "%%");
    let proxy = format!(
        "{} connect --profile {} -p %p",
        escaped(&exe.to_string_lossy()),
        escaped(name)
    );
    let end = options_end(ssh_args);
    // Our options go before a `--` that ends the user's.
    let dashes = end > 0 && ssh_args[end - 1] == "--";
    let options = &ssh_args[..end - usize::from(dashes)];
    let mut cmd = std::process::Command::new("ssh");
    cmd.args(options)
        // After the user's options: ssh takes the first value it gets for each, so a `-p`,
        // `-oPort=` or `-o ProxyCommand=` given by the user wins over the profile's.
        .arg("-o")
        .arg(format!("Port={}", found.port))
        .arg("-o")
        .arg(format!("ProxyCommand={proxy}"))
        .args(dashes.then_some("--"))
        .arg(target)
        .args(&ssh_args[end..]);
    let e = cmd.exec();
    Err(CliError::Usage(format!(
        "cannot run ssh: {e}; is OpenSSH's client installed?"
    )))
}

/// Where ssh's options end in `args` and the remote command begins, read as ssh's getopt
/// does: `-vL 8080:h:80` is `-v` and `-L` with a value, `-p2200` carries its value, `--`
/// ends the options.
fn options_end(args: &[String]) -> usize {
    // ssh options that take a value (ssh(1)).
    const VALUED: &[u8] = b"BbcDEeFIiJLlmOoPpQRSWw";
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_bytes();
        if a == b"--" {
            return i + 1;
        }
        if a.len() < 2 || a[0] != b'-' {
            return i;
        }
        i += 1;
        // The first valued letter takes the rest of the argument, or the next one.
        if let Some(at) = a[1..].iter().position(|c| VALUED.contains(c))
            && at + 2 == a.len()
        {
            i += 1;
        }
    }
    args.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_goes_after_ssh_s_options_and_before_the_command() {
        let split = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            options_end(&args)
        };
        assert_eq!(
            split(&["-o", "BatchMode=yes", "-i", "key", "echo", "hi"]),
            4
        );
        assert_eq!(split(&["-v", "-oBatchMode=yes", "uptime"]), 2);
        assert_eq!(split(&["-L", "8080:localhost:80", "-N"]), 3);
        assert_eq!(split(&["--", "-weird-command"]), 1);
        assert_eq!(split(&["-vL", "8080:l:80", "-N", "ls"]), 3);
        assert_eq!(split(&["-46p2200", "uptime"]), 1);
        assert_eq!(split(&["-p", "2200", "mkdir", "-p", "/x"]), 2);
        assert_eq!(split(&["ls", "-l"]), 0);
        assert_eq!(split(&[]), 0);
    }
}
