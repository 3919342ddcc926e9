//! The configuration and keys in force, and keeping them current while `serve` runs.
//!
//! Owns SPEC §4.4's reload rules: watch the files' *directory* (editors and `rename` replace
//! the file), reload on `SIGHUP` too, swap the snapshot atomically, and fail closed — a file
//! that stops parsing is logged loudly and leaves the gate refusing new connections until a
//! valid one appears. Sessions subscribe to the snapshot to re-check themselves.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};

use crate::config::{Config, Key};
use crate::state::store::{self, Secrecy, StoreError};
use crate::token::{KeyChange, KeyChangeError, KeySet, KeysFileError};

/// How long to let a burst of file events settle before reloading: editors write, rename and
/// chmod in quick succession. Well inside SPEC §4.4's "in force within one second".
const SETTLE: Duration = Duration::from_millis(100);

/// Where the files are.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The configuration file.
    pub config: PathBuf,
    /// The keys file.
    pub keys: PathBuf,
}

/// What is in force. Errors are kept as text: they are only ever logged and reported.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The configuration, or why there is none usable.
    pub config: Result<Arc<Config>, String>,
    /// The keys, or why there are none usable.
    pub keys: Result<Arc<KeySet>, String>,
    /// Increases with every reload.
    pub generation: u64,
    /// When this snapshot was loaded.
    pub loaded_at: SystemTime,
}

impl Snapshot {
    /// One line describing the policy, for logs.
    pub fn summary(&self) -> String {
        match (&self.config, &self.keys) {
            (Ok(c), Ok(k)) => {
                let mut line = format!(
                    "config.mode={} incomingconnections.enabled={} incomingconnections.ports={}",
                    Key::Mode.display(c),
                    Key::IncomingEnabled.display(c),
                    Key::IncomingPorts.display(c),
                );
                // arcgate's own keys, when they say something.
                for key in [
                    Key::IncomingEnabledUntil,
                    Key::MaxSessionDuration,
                    Key::AllowedSources,
                    Key::Approval,
                ] {
                    if key.display(c) != key.default_display() {
                        line.push_str(&format!(" {}={}", key.name(), key.display(c)));
                    }
                }
                line.push_str(&format!(" keys={:?}", k.names()));
                line
            }
            (Err(e), _) | (_, Err(e)) => format!("INVALID, refusing new connections: {e}"),
        }
    }
}

/// A startup failure: `serve` stops with it.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration cannot be used.
    #[error("cannot start with this configuration: {0}")]
    Config(StoreError),
    /// The keys file cannot be used.
    #[error("cannot start with this keys file: {0}")]
    Keys(KeysError),
}

/// Why the keys file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// It fails its permission check or cannot be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// It does not exist.
    #[error("{} does not exist; no token can be checked", .0.display())]
    Missing(PathBuf),
    /// Its contents are refused.
    #[error("{}: {error}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: KeysFileError,
    },
}

/// Reads and parses a keys file after its permission check (0600, owner).
/// Warns about each key that may both send and listen, every time the file is loaded.
pub fn load_keys(path: &Path) -> Result<KeySet, KeysError> {
    let keys = match store::read_checked(path, Secrecy::Secret)? {
        Some(bytes) => KeySet::from_json(&bytes).map_err(|error| KeysError::Invalid {
            path: path.to_path_buf(),
            error,
        })?,
        None => return Err(KeysError::Missing(path.to_path_buf())),
    };
    for name in keys.with_both_rights() {
        tracing::warn!(
            key = name,
            file = %path.display(),
            "key has both the send and the listen right: whoever holds it can attach a \
             listener beside the real gate and take its sessions; give each key one right"
        );
    }
    Ok(keys)
}

/// Creates the keys file with one random 256-bit key named `default` if it does not exist.
/// Returns whether it did.
pub fn ensure_keys(path: &Path) -> Result<bool, StoreError> {
    if path.exists() {
        return Ok(false);
    }
    store::ensure_dir(path.parent().unwrap_or(Path::new(".")))?;
    store::write_secret_atomic(path, &KeySet::generate_json("default"))?;
    Ok(true)
}

/// Applies one change to a keys file (the gate's or the relay's) under the lock of its
/// directory, after the same checks as every read (owner, 0600, directories): the set now on
/// disk and the new secret, if the change made one. Nothing is written when it is refused.
/// A running gate or relay sees the change through its watch, as any edit of the file.
pub fn update_keys(
    path: &Path,
    change: &KeyChange,
) -> Result<(KeySet, Option<String>), KeysUpdateError> {
    let _lock = store::lock_dir(path)?;
    let before = match store::read_checked(path, Secrecy::Secret)? {
        Some(bytes) => KeySet::from_json(&bytes).map_err(|error| KeysError::Invalid {
            path: path.to_path_buf(),
            error,
        })?,
        // `add` may create the file; the others need one.
        None if matches!(change, KeyChange::Add { .. }) => KeySet::default(),
        None => return Err(KeysError::Missing(path.to_path_buf()).into()),
    };
    let (after, secret) = before.change(change)?;
    store::write_secret_atomic(path, &after.to_json())?;
    Ok((after, secret))
}

/// Why [`update_keys`] wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum KeysUpdateError {
    /// The change itself is refused (a usage error).
    #[error(transparent)]
    Invalid(#[from] KeyChangeError),
    /// The file cannot be used.
    #[error(transparent)]
    Keys(#[from] KeysError),
}

impl From<StoreError> for KeysUpdateError {
    fn from(e: StoreError) -> KeysUpdateError {
        KeysUpdateError::Keys(KeysError::Store(e))
    }
}

/// Loads both files strictly: any error stops `serve` (SPEC §4.4).
pub fn load_initial(paths: &Paths) -> Result<Snapshot, StartupError> {
    let config = store::load_config(&paths.config).map_err(StartupError::Config)?;
    let keys = load_keys(&paths.keys).map_err(StartupError::Keys)?;
    Ok(Snapshot {
        config: Ok(Arc::new(config)),
        keys: Ok(Arc::new(keys)),
        generation: 0,
        loaded_at: SystemTime::now(),
    })
}

fn reload(paths: &Paths, generation: u64) -> Snapshot {
    Snapshot {
        config: store::load_config(&paths.config)
            .map(Arc::new)
            .map_err(|e| e.to_string()),
        keys: load_keys(&paths.keys)
            .map(Arc::new)
            .map_err(|e| e.to_string()),
        generation,
        loaded_at: SystemTime::now(),
    }
}

/// Whether a directory event may have changed one of the files named `names`. Opening or
/// reading a file is not a change — and our own reload reads them, so counting that would
/// reload forever.
fn is_change(event: &notify::Event, names: &[std::ffi::OsString]) -> bool {
    !matches!(event.kind, notify::EventKind::Access(_))
        && event
            .paths
            .iter()
            .any(|p| p.file_name().is_some_and(|n| names.iter().any(|m| m == n)))
}

/// Changes to a set of files, seen through their directories (editors and `rename` replace
/// files, so watching a file itself would lose it at the first save).
#[derive(Debug)]
pub struct FileWatch {
    _watcher: notify::RecommendedWatcher,
    /// One message per burst of changes; at most one is ever pending.
    pub changes: mpsc::Receiver<()>,
}

fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

impl FileWatch {
    /// Starts watching the directories of `files`.
    pub fn start(files: &[&Path]) -> Result<FileWatch, notify::Error> {
        use notify::Watcher as _;
        // One pending message is enough: a reload reads the files as they are by then.
        let (kick, changes) = mpsc::channel::<()>(1);
        let names: Vec<_> = files
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_os_string()))
            .collect();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let relevant = match &event {
                    Ok(ev) => is_change(ev, &names),
                    // A watcher error (queue overflow) may hide a change: reload to be sure.
                    Err(_) => true,
                };
                if relevant {
                    let _ = kick.try_send(());
                }
            })?;
        let mut dirs: Vec<&Path> = files.iter().map(|f| dir_of(f)).collect();
        dirs.dedup();
        for dir in dirs {
            watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
        }
        Ok(FileWatch {
            _watcher: watcher,
            changes,
        })
    }

    /// The next change, after letting its burst settle.
    pub async fn next(&mut self) -> Option<()> {
        self.changes.recv().await?;
        tokio::time::sleep(SETTLE).await;
        // A change that arrived while settling is covered by the reload that follows.
        let _ = self.changes.try_recv();
        Some(())
    }
}

/// The configuration watch and the `SIGHUP` handler, set up before the gate says it listens
/// so that no change made after that can be missed.
#[derive(Debug)]
pub struct Watch {
    paths: Paths,
    files: FileWatch,
    hup: tokio::signal::unix::Signal,
}

impl Watch {
    /// Starts watching the files' directories and `SIGHUP`. Must run inside the runtime.
    pub fn start(paths: Paths) -> Result<Watch, notify::Error> {
        let files = FileWatch::start(&[&paths.config, &paths.keys])?;
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(notify::Error::io)?;
        Ok(Watch { paths, files, hup })
    }

    /// Publishes a new snapshot on every change until `shutdown` resolves; `on_reload` hears
    /// whether each reload produced a valid snapshot.
    pub async fn run(
        mut self,
        tx: watch::Sender<Arc<Snapshot>>,
        shutdown: impl std::future::Future<Output = ()>,
        on_reload: impl Fn(bool),
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut generation = tx.borrow().generation;
        let paths = self.paths.clone();
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                Some(()) = self.files.next() => {}
                Some(()) = self.hup.recv() => tracing::info!("SIGHUP: reloading configuration"),
            }
            generation += 1;
            let next = reload(&paths, generation);
            let after = next.summary();
            // Compared whole, not by the summary: a key given a new secret changes no line
            // of it, and must not be logged as "unchanged".
            let changed = {
                let before = tx.borrow();
                before.config != next.config || before.keys != next.keys
            };
            let valid = next.config.is_ok() && next.keys.is_ok();
            on_reload(valid);
            if !valid {
                tracing::error!(
                    config = %paths.config.display(),
                    problem = %after,
                    "configuration reload FAILED: refusing new connections until the files are valid"
                );
            } else if changed {
                tracing::info!(policy = %after, "configuration reloaded");
            } else {
                tracing::info!(policy = %after, "configuration unchanged");
            }
            tx.send_replace(Arc::new(next));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RenameMode};

    #[test]
    fn only_changes_to_our_files_count() {
        let names = vec!["localconfig.json".into(), "keys.json".into()];
        let ev = |kind, path: &str| notify::Event::new(kind).add_path(PathBuf::from(path));
        let cases = [
            (
                EventKind::Access(AccessKind::Open(AccessMode::Any)),
                "/d/localconfig.json",
                false,
            ),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Read)),
                "/d/keys.json",
                false,
            ),
            (
                EventKind::Modify(ModifyKind::Any),
                "/d/localconfig.json",
                true,
            ),
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                "/d/keys.json",
                true,
            ),
            (
                EventKind::Create(CreateKind::File),
                "/d/.localconfig.json.tmp-1",
                false,
            ),
            (
                EventKind::Remove(notify::event::RemoveKind::File),
                "/d/localconfig.json",
                true,
            ),
            (EventKind::Modify(ModifyKind::Any), "/d/other", false),
        ];
        for (kind, path, want) in cases {
            assert_eq!(is_change(&ev(kind, path), &names), want, "{kind:?} {path}");
        }
    }
}
