//! What the command line says about itself outside `--help`: shell completions
//! (`arcgate completions SHELL`) and man pages (`arcgate manpages DIR`), both generated from
//! the clap definitions so that they cannot drift from them. The Debian package ships the
//! copies committed under `packaging/` (a test checks they are what this generates).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, CommandFactory};

use super::{Cli, CliError, Status};

/// `arcgate completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell: bash, zsh, fish (or elvish, powershell).
    pub shell: clap_complete::Shell,
}

/// `arcgate manpages`.
#[derive(Debug, Args)]
pub(crate) struct ManpagesArgs {
    /// The directory to write arcgate.1 and one arcgate-COMMAND.1 per command into.
    pub dir: PathBuf,
}

/// The command line as documentation sees it: with the package's version alone, not the
/// commit, so that a page generated at any commit of one release is the same page.
fn command() -> clap::Command {
    let mut cmd = Cli::command().version(env!("CARGO_PKG_VERSION"));
    cmd.build();
    cmd
}

pub(super) fn completions(args: CompletionsArgs) -> Result<Status, CliError> {
    let mut cmd = command();
    clap_complete::generate(args.shell, &mut cmd, "arcgate", &mut std::io::stdout());
    Ok(0)
}

pub(super) fn manpages(args: ManpagesArgs) -> Result<Status, CliError> {
    let cmd = command();
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let mut pages = vec![("arcgate".to_string(), cmd.clone())];
    for sub in (cmd.get_subcommands()).filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        let name = format!("arcgate-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let path = args.dir.join(format!("{name}.1"));
        let mut roff = Vec::new();
        clap_mangen::Man::new(page).render(&mut roff)?;
        std::fs::write(&path, roff).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("arcgate: wrote {}", path.display());
    }
    Ok(0)
}
