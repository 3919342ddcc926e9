//! Records the commit the binary is built from, for `arcgate --version`: its short hash,
//! `-dirty` when tracked files differed from it, "unknown" outside a git checkout (e.g. a
//! package built from a tarball).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        // `git status` otherwise refreshes .git/index, which this script watches: every build
        // would then make the next one run it again and rebuild the crate (the bench's
        // nested build rebuilt it each run).
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).filter(|c| !c.is_empty());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let version = match (commit, dirty) {
        (Some(c), true) => format!("{c}-dirty"),
        (Some(c), false) => c,
        (None, _) => "unknown".to_string(),
    };
    println!("cargo:rustc-env=ARCGATE_COMMIT={version}");
    // A new commit moves HEAD or its branch; a checkout may keep them elsewhere (a worktree's
    // .git is a file). An edit to the sources may make the tree dirty or clean again.
    let mut watched = vec!["src".to_string(), "Cargo.toml".to_string()];
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        watched.extend(["HEAD", "index", "logs/HEAD"].map(|f| format!("{dir}/{f}")));
    }
    if let Some(common) = git(&["rev-parse", "--git-common-dir"]) {
        watched.extend(["refs/heads", "packed-refs"].map(|f| format!("{common}/{f}")));
    }
    for path in watched {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
