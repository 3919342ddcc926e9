//! Where the configuration and keys files live, who may own them, and how they are written.
//!
//! Owns the file-level rules of SPEC §4.4: path resolution, the StrictModes-like ownership and
//! permission check, and the atomic write (temporary file, fsync, rename, `.bak`). It knows
//! nothing about what the bytes mean; [`crate::config`] and [`crate::token`] parse them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::config::{Change, Config, ConfigError, Key};

/// The configuration file's name; the keys file sits beside it.
pub const CONFIG_FILE: &str = "localconfig.json";
/// The keys file's name.
pub const KEYS_FILE: &str = "keys.json";
/// Largest configuration or keys file we read. Real ones are a few KiB; the bound keeps a
/// mistaken path (a disk image, `/dev/zero`) from being read into memory.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// A file-level failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file or its directory could be changed by someone other than root or us.
    #[error(
        "refusing to use {path}: {problem}; whoever can write it can open this host. \
         Fix: {fix}"
    )]
    Insecure {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        problem: String,
        /// The command that fixes it.
        fix: String,
    },
    /// Reading, writing or renaming failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file's contents are not a valid configuration.
    #[error("{path}: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: ConfigError,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error(
        "{path} is {size} bytes, larger than any valid file ({MAX_FILE_BYTES}); is it the right file?"
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
}

impl StoreError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> StoreError {
        StoreError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The configuration file to use: `explicit` (from `--config` or `ARCGATE_CONFIG`), else
/// `/var/opt/arcgate/localconfig.json` for root, else `$XDG_CONFIG_HOME/arcgate/...`
/// (`~/.config/arcgate/...`).
pub fn config_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if rustix::process::geteuid().is_root() {
        return system_config_dir().join(CONFIG_FILE);
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("arcgate").join(CONFIG_FILE)
}

/// Where the host's configuration lives (root's default).
pub fn system_config_dir() -> PathBuf {
    PathBuf::from(SYSTEM_DIR)
}

/// The host's configuration directory (the agent keeps its own in `/var/opt/azcmagent`).
const SYSTEM_DIR: &str = "/var/opt/arcgate";

/// The admin socket's name.
pub const ADMIN_SOCKET: &str = "admin.sock";

/// The host gate's runtime directory: the unit's `RuntimeDirectory=arcgate`.
const SYSTEM_RUNTIME_DIR: &str = "/run/arcgate";

/// The admin socket a gate serves and `arcgate status` asks by default, so that the two agree
/// with no flag: `/run/arcgate/admin.sock` for the host's configuration (the service user can
/// write there; it cannot write root's `/var/opt/arcgate`), else `admin.sock` beside the
/// configuration file.
pub fn admin_socket_path(config: &Path) -> PathBuf {
    match config == system_config_dir().join(CONFIG_FILE) {
        true => Path::new(SYSTEM_RUNTIME_DIR).join(ADMIN_SOCKET),
        false => config.with_file_name(ADMIN_SOCKET),
    }
}

/// The keys file beside a configuration file.
pub fn keys_path_beside(config: &Path) -> PathBuf {
    config.with_file_name(KEYS_FILE)
}

/// Which permission rule a file must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrecy {
    /// Anyone may read; only the owner may write (the configuration).
    Public,
    /// Only the owner may read or write (the keys: mode 0600).
    Secret,
}

/// Checks `path` the way sshd's StrictModes does: the file (if it exists) and every
/// directory from it up to `/` must be owned by root or by us and not writable by group or
/// others — a sticky world-writable directory such as `/tmp` included, since another user
/// may still create or swap names in it. Every symlink on the way is followed one hop at a
/// time and the directories holding each hop are checked too, so a `localconfig.json` that
/// links into a directory someone else can write is refused. A secret file must also not be
/// readable by group or others. Returns which file passed, for [`read_checked`] to compare
/// with the one it opens.
pub fn check_secure(path: &Path, secrecy: Secrecy) -> Result<Option<FileId>, StoreError> {
    let mut links = 0;
    check_chain(&absolute(&parent_dir(path))?, &mut links)?;
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("cannot inspect", path, e)),
    };
    if meta.file_type().is_symlink() {
        check_link(path, &mut links)?;
    }
    let meta = fs::metadata(path).map_err(|e| StoreError::io("cannot follow", path, e))?;
    let forbidden = match secrecy {
        Secrecy::Public => 0o022,
        Secrecy::Secret => 0o077,
    };
    // Root reads a secret in a directory only root can change whoever owns it (the
    // service user's keys.json); everything else must be root's or ours, as sshd asks.
    let root_secret = secrecy == Secrecy::Secret && rustix::process::geteuid().is_root();
    let owner = match root_secret && placed_by_root(path)? {
        true => Owner::Anyone,
        false => Owner::RootOrMe,
    };
    check_owner_and_mode(path, &meta, forbidden, owner)?;
    Ok(Some(FileId::of(&meta)))
}

/// Whether the file `path` leads to sits in a directory that only root can change (owned by
/// root, writable by nobody else). Only root can have put a file there or given it its
/// owner, so its owner is the administrator's choice: the service user's `keys.json` in
/// root's `/var/opt/arcgate`, which root's `arcgate token` and `arcgate key` use as it is.
fn placed_by_root(path: &Path) -> Result<bool, StoreError> {
    let real = fs::canonicalize(path).map_err(|e| StoreError::io("cannot follow", path, e))?;
    let dir = parent_dir(&real);
    let meta = fs::metadata(&dir).map_err(|e| StoreError::io("cannot inspect", &dir, e))?;
    Ok(meta.uid() == 0 && meta.mode() & 0o022 == 0)
}

/// Whose file a check accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// Root's or ours: every directory, and a file in a directory others can change.
    RootOrMe,
    /// Anyone's: for root, a secret root placed in a directory only root can change.
    Anyone,
    /// A directory above the file's own, where the fix is to move the file rather than to
    /// change a system directory: root's or ours.
    Above,
}

/// Which file a path led to when it was checked (device and inode), so that the file then
/// opened can be compared with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId(u64, u64);

impl FileId {
    fn of(meta: &fs::Metadata) -> FileId {
        FileId(meta.dev(), meta.ino())
    }
}

/// The kernel's own limit on symlinks followed in one lookup (ELOOP).
const MAX_LINKS: usize = 40;

/// Checks `dir` and each directory above it up to `/`, and, wherever one of them is a symlink,
/// every directory on the way to what it points to: owned by root or us, not writable by
/// group or others.
pub fn check_directories(dir: &Path) -> Result<(), StoreError> {
    check_chain(&absolute(dir)?, &mut 0)
}

fn absolute(path: &Path) -> Result<PathBuf, StoreError> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let cwd =
        std::env::current_dir().map_err(|e| StoreError::io("cannot inspect", Path::new("."), e))?;
    Ok(cwd.join(path))
}

/// Walks an absolute directory path from `/` down. Each existing component must pass; one
/// that is a symlink has the way to its target checked too (the link itself lives in the
/// component above, checked just before). The first component that does not exist ends the
/// walk: what is created there later is created under a directory that passed.
fn check_chain(dir: &Path, links: &mut usize) -> Result<(), StoreError> {
    use std::path::Component;
    let mut prefix = PathBuf::new();
    for component in dir.components() {
        match component {
            Component::CurDir => continue,
            Component::ParentDir => {
                // `..` after a symlink is its target's parent: resolve, then check that.
                prefix = match fs::canonicalize(prefix.join("..")) {
                    Ok(p) => p,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(StoreError::io("cannot follow", &prefix, e)),
                };
                check_chain(&prefix, links)?;
                continue;
            }
            other => prefix.push(other),
        }
        let meta = match fs::symlink_metadata(&prefix) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io("cannot inspect", &prefix, e)),
        };
        if meta.file_type().is_symlink() {
            check_link(&prefix, links)?;
        }
        let meta = match fs::metadata(&prefix) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io("cannot inspect", &prefix, e)),
        };
        let owner = match prefix.as_path() == dir {
            true => Owner::RootOrMe,
            false => Owner::Above,
        };
        check_owner_and_mode(&prefix, &meta, 0o022, owner)?;
    }
    Ok(())
}

/// Checks the way from a symlink to what it points to, one hop at a time: the directories
/// holding each next hop, so that no link along the way sits where someone else can swap it.
fn check_link(link: &Path, links: &mut usize) -> Result<(), StoreError> {
    *links += 1;
    if *links > MAX_LINKS {
        return Err(StoreError::io(
            "cannot follow",
            link,
            io::Error::from_raw_os_error(rustix::io::Errno::LOOP.raw_os_error()),
        ));
    }
    let target = fs::read_link(link).map_err(|e| StoreError::io("cannot follow", link, e))?;
    let target = parent_dir(link).join(target);
    check_chain(&absolute(&parent_dir(&target))?, links)?;
    match fs::symlink_metadata(&target) {
        Ok(meta) if meta.file_type().is_symlink() => check_link(&target, links),
        _ => Ok(()),
    }
}

/// One step of the check: `owner` says whose file or directory `p` may be.
fn check_owner_and_mode(
    p: &Path,
    meta: &fs::Metadata,
    forbidden: u32,
    owner: Owner,
) -> Result<(), StoreError> {
    let above = owner == Owner::Above;
    let me = rustix::process::geteuid().as_raw();
    let (uid, mode) = (meta.uid(), meta.mode() & 0o7777);
    let elsewhere = || {
        format!(
            "keep the file in a directory whose every parent only root or you can write, \
             such as {}",
            Path::new("/var/opt/arcgate").display()
        )
    };
    if uid != 0 && uid != me && owner != Owner::Anyone {
        return Err(StoreError::Insecure {
            path: p.to_path_buf(),
            problem: format!("it is owned by uid {uid}, not by root or by you (uid {me})"),
            fix: match owner {
                Owner::Above => elsewhere(),
                _ if meta.is_dir() => format!("chown {me} {}", p.display()),
                _ => format!(
                    "chown {me} {}, or keep it in a directory only root can write",
                    p.display()
                ),
            },
        });
    }
    if mode & forbidden != 0 {
        let who = if forbidden == 0o077 {
            "readable or writable by group or others"
        } else if mode & 0o1000 != 0 {
            "writable by group or others (the sticky bit still lets others create names in it)"
        } else {
            "writable by group or others"
        };
        let chmod = if forbidden == 0o077 { "600" } else { "go-w" };
        return Err(StoreError::Insecure {
            path: p.to_path_buf(),
            problem: format!("it is {who} (mode {mode:04o})"),
            fix: if above && mode & 0o1000 != 0 {
                elsewhere()
            } else {
                format!("chmod {chmod} {}", p.display())
            },
        });
    }
    Ok(())
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// How often a file that was replaced between its check and its opening is checked again:
/// `config set` and `arcgate key` replace files by rename, so one replacement is an
/// administrator's change, not an attack; a file replaced every time is refused.
const REPLACED_RETRIES: usize = 3;

/// Reads a whole file after the permission check; `Ok(None)` when it does not exist.
pub fn read_checked(path: &Path, secrecy: Secrecy) -> Result<Option<Vec<u8>>, StoreError> {
    let mut attempt = 0;
    let (file, meta) = loop {
        let checked = check_secure(path, secrecy)?;
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("cannot open", path, e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| StoreError::io("cannot inspect", path, e))?;
        // The file opened must be the one checked: a path swapped between the two is checked
        // again, and refused if it keeps changing.
        if checked == Some(FileId::of(&meta)) {
            break (file, meta);
        }
        attempt += 1;
        if attempt >= REPLACED_RETRIES {
            return Err(StoreError::Insecure {
                path: path.to_path_buf(),
                problem: "it was replaced every time it was being checked".into(),
                fix: "find out who is changing it; then run the command again".into(),
            });
        }
    };
    let size = meta.len();
    if size > MAX_FILE_BYTES {
        return Err(StoreError::TooLarge {
            path: path.to_path_buf(),
            size,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    io::Read::read_to_end(&mut io::Read::take(file, MAX_FILE_BYTES + 1), &mut bytes)
        .map_err(|e| StoreError::io("cannot read", path, e))?;
    Ok(Some(bytes))
}

/// Loads the configuration; a missing file is the defaults.
pub fn load_config(path: &Path) -> Result<Config, StoreError> {
    match read_checked(path, Secrecy::Public)? {
        None => Ok(Config::default()),
        Some(bytes) => Config::from_json(&bytes).map_err(|source| StoreError::Invalid {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The outcome of [`update_config`]: the value before and after, as `config list` shows them.
#[derive(Debug)]
pub struct Updated {
    /// The configuration before the change.
    pub before: Config,
    /// The configuration now on disk.
    pub after: Config,
}

/// Applies one change to the file under an exclusive lock on its directory, so that two
/// administrators' `config set`s cannot lose each other's change. Nothing is written when
/// the change is refused.
pub fn update_config(path: &Path, key: Key, change: &Change) -> Result<Updated, UpdateError> {
    update_config_all(path, &[(key, change.clone())])
}

/// [`update_config`] for changes that go together (`enabled true --for 2h`: the switch and
/// its window's end), applied in order and written once, or not at all.
pub fn update_config_all(path: &Path, changes: &[(Key, Change)]) -> Result<Updated, UpdateError> {
    let _lock = lock_dir(path)?;
    let before = load_config(path)?;
    let mut after = before.clone();
    for (key, change) in changes {
        after = after.change(*key, change)?;
    }
    write_atomic(path, &after.to_json(), 0o644)?;
    Ok(Updated { before, after })
}

/// Takes an exclusive lock on the directory of `path` (created if missing), held until the
/// returned file is dropped: every read-change-write of a file there goes through it.
pub fn lock_dir(path: &Path) -> Result<File, StoreError> {
    let dir = parent_dir(path);
    ensure_dir(&dir)?;
    let lock = File::open(&dir).map_err(|e| StoreError::io("cannot open", &dir, e))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| StoreError::io("cannot lock", &dir, e.into()))?;
    Ok(lock)
}

/// Why [`update_config`] wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The change itself is invalid (a usage error: exit code 2).
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The file could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates the directory (mode 0700) if it is missing.
pub fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    match fs::metadata(dir) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| StoreError::io("cannot create directory", dir, e)),
        Err(e) => Err(StoreError::io("cannot inspect", dir, e)),
    }
}

/// Replaces `path` with `bytes` so that a reader (or a crash, or a full disk) sees either the
/// old file or the new one, never a torn one: write a temporary file in the same directory,
/// fsync it, keep the current file as `NAME.bak`, rename the temporary over `path`, fsync
/// the directory. The new file (and the `.bak`) keeps what the administrator gave the old
/// one: its owner and group, when root writes (root's `config set` keeps the group the
/// configuration was given), and no wider permissions than it had.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    replace(path, bytes, mode, Keep::BackupAndOwner)
}

/// [`write_atomic`] for a secret the store manages (a keys file), mode 0600, with no `.bak`:
/// a removed or rotated key must not live on beside the file. Root's `arcgate key rotate` on
/// the service user's `keys.json` leaves a file the service still owns.
pub fn write_secret_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    replace(path, bytes, 0o600, Keep::Owner)
}

/// A new secret of ours at `path` (a minted token), mode 0600, owned by whoever runs this:
/// never given the owner of what was there before, which may be anyone's file or link.
pub fn write_new_secret(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    replace(path, bytes, 0o600, Keep::Nothing)
}

/// What a replacement keeps of the file it replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// A `.bak` copy, and the owner, group and narrower mode.
    BackupAndOwner,
    /// The owner, group and narrower mode.
    Owner,
    /// Nothing.
    Nothing,
}

/// The owner, group and mode a replacement of `path` gets: `mode`, narrowed to the old
/// file's, with its owner when we are root. Only a regular file at `path` itself counts
/// (not what a symlink there points to).
fn inherited(path: &Path, mode: u32, keep: Keep) -> Result<Inherit, StoreError> {
    let none = Inherit { mode, owner: None };
    if keep == Keep::Nothing {
        return Ok(none);
    }
    let old = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => meta,
        Ok(_) => return Ok(none),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(none),
        Err(e) => return Err(StoreError::io("cannot inspect", path, e)),
    };
    let owner = rustix::process::geteuid()
        .is_root()
        .then(|| (old.uid(), old.gid()));
    Ok(Inherit {
        mode: old.mode() & mode & 0o777,
        owner,
    })
}

/// See [`inherited`].
#[derive(Debug, Clone, Copy)]
struct Inherit {
    mode: u32,
    owner: Option<(u32, u32)>,
}

fn replace(path: &Path, bytes: &[u8], mode: u32, keep: Keep) -> Result<(), StoreError> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| CONFIG_FILE.to_string());
    let tmp = dir.join(format!(".{name}.tmp-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let like = inherited(path, mode, keep)?;
        write_synced(&tmp, bytes, like)?;
        if keep == Keep::BackupAndOwner && path.exists() {
            let bak = dir.join(format!("{name}.bak"));
            let bak_tmp = dir.join(format!(".{name}.bak.tmp-{}", uuid::Uuid::new_v4().simple()));
            let old = fs::read(path).map_err(|e| StoreError::io("cannot read", path, e))?;
            let saved = write_synced(&bak_tmp, &old, like).and_then(|()| {
                fs::rename(&bak_tmp, &bak).map_err(|e| StoreError::io("cannot rename", &bak, e))
            });
            if saved.is_err() {
                let _ = fs::remove_file(&bak_tmp);
            }
            saved?;
        }
        fs::rename(&tmp, path).map_err(|e| StoreError::io("cannot replace", path, e))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::io("cannot sync directory", &dir, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A new file with `bytes`, its mode and owner set on the open file before it is synced.
fn write_synced(path: &Path, bytes: &[u8], like: Inherit) -> Result<(), StoreError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(like.mode)
        .open(path)
        .map_err(|e| StoreError::io("cannot create", path, e))?;
    if let Some((uid, gid)) = like.owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
            .map_err(|e| StoreError::io("cannot give the old file's owner to", path, e))?;
    }
    // Exactly, whatever the umask: root's umask 077 must not leave a configuration the
    // service user cannot read; a narrower mode the old file had is kept.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(like.mode))
        .map_err(|e| StoreError::io("cannot set the mode of", path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::io("cannot write", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A private directory in a place whose every parent passes the check (not /tmp): beside
    /// the test binary, or in the home directory when the build tree is not such a place.
    pub(crate) fn private_dir() -> tempfile::TempDir {
        let exe = std::env::current_exe().unwrap();
        let candidates = [exe.parent().map(Path::to_path_buf), std::env::home_dir()];
        let base = candidates
            .into_iter()
            .flatten()
            .find(|b| check_directories(b).is_ok())
            .expect("a directory whose parents only root or we can write");
        let dir = tempfile::tempdir_in(base).unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    #[test]
    fn every_directory_up_to_the_root_and_behind_a_symlink_is_checked() {
        let dir = private_dir();
        // A world-writable directory with the sticky bit, like /tmp, inside our private one.
        let shared = dir.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        let nested = shared.join("mine");
        fs::create_dir(&nested).unwrap();
        fs::set_permissions(&nested, fs::Permissions::from_mode(0o700)).unwrap();
        let deep = nested.join(CONFIG_FILE);
        fs::write(&deep, b"{}").unwrap();
        let err = load_config(&deep).unwrap_err().to_string();
        assert!(
            err.contains(&format!("refusing to use {}", shared.display()))
                && err.contains("sticky bit"),
            "a parent two levels up is checked too: {err}"
        );

        // The file is a symlink in a good directory pointing into the shared one.
        let good = dir.path().join("good");
        fs::create_dir(&good).unwrap();
        fs::set_permissions(&good, fs::Permissions::from_mode(0o700)).unwrap();
        let target = shared.join("swappable.json");
        fs::write(&target, b"{}").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
        let link = good.join(CONFIG_FILE);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = load_config(&link).unwrap_err().to_string();
        assert!(
            err.contains("sticky bit"),
            "the link's target directory: {err}"
        );

        // A symlink to a good place is fine, and so is the good directory itself.
        let real = good.join("real.json");
        fs::write(&real, b"{}").unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o644)).unwrap();
        fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        load_config(&link).unwrap();

        // A symlinked directory into the shared one is caught through the resolved chain.
        let alias = dir.path().join("alias");
        std::os::unix::fs::symlink(&nested, &alias).unwrap();
        assert!(load_config(&alias.join(CONFIG_FILE)).is_err());

        // Two hops: hop -> shared/relink -> good. The final target's chain passes, but the
        // middle link sits where others can swap it.
        let relink = shared.join("relink");
        std::os::unix::fs::symlink(&good, &relink).unwrap();
        let hop = dir.path().join("hop");
        std::os::unix::fs::symlink(&relink, &hop).unwrap();
        load_config(&good.join("real.json")).unwrap();
        let err = load_config(&hop.join("real.json")).unwrap_err().to_string();
        assert!(
            err.contains("sticky bit"),
            "the middle hop's directory: {err}"
        );

        // A directory that does not exist yet under a bad one is refused too.
        let missing = shared.join("not-yet").join(CONFIG_FILE);
        assert!(
            load_config(&missing).is_err(),
            "checked from the nearest existing parent"
        );
    }

    #[test]
    fn atomic_write_keeps_a_backup_and_leaves_no_temporary_files() {
        let dir = private_dir();
        let path = dir.path().join(CONFIG_FILE);
        write_atomic(&path, b"one", 0o644).unwrap();
        write_atomic(&path, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::read(dir.path().join("localconfig.json.bak")).unwrap(),
            b"one"
        );
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn group_writable_file_or_directory_is_refused() {
        let dir = private_dir();
        let path = dir.path().join(CONFIG_FILE);
        fs::write(&path, b"{}").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o664)).unwrap();
        let err = load_config(&path).unwrap_err().to_string();
        assert!(
            err.contains("writable by group or others") && err.contains("chmod go-w"),
            "{err}"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        load_config(&path).unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        assert!(load_config(&path).is_err());
    }

    #[test]
    fn secret_file_must_not_be_readable_by_others() {
        let dir = private_dir();
        let path = dir.path().join(KEYS_FILE);
        fs::write(&path, b"[]").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_checked(&path, Secrecy::Secret)
            .unwrap_err()
            .to_string();
        assert!(err.contains("chmod 600"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_checked(&path, Secrecy::Secret).unwrap().is_some());
    }

    #[test]
    fn a_secret_root_placed_is_used_and_replaced_with_its_owner_and_mode() {
        // The package's layout: the service user's keys.json in root's directory.
        assert!(
            rustix::process::geteuid().is_root(),
            "this test gives files to another user: run the suite as root"
        );
        let dir = private_dir();
        let give = |path: &Path, mode, uid, gid| {
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
            std::os::unix::fs::chown(path, uid, gid).unwrap();
        };
        let keys = dir.path().join(KEYS_FILE);
        fs::write(&keys, b"[]").unwrap();
        give(&keys, 0o600, Some(65534), Some(65534));
        assert!(read_checked(&keys, Secrecy::Secret).unwrap().is_some());
        write_secret_atomic(&keys, b"[1]").unwrap();
        let meta = fs::metadata(&keys).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (65534, 65534, 0o600)
        );
        assert_eq!(fs::read(&keys).unwrap(), b"[1]");

        // The policy is another matter: whoever owns it could open the host.
        let config = dir.path().join(CONFIG_FILE);
        fs::write(&config, b"{}").unwrap();
        give(&config, 0o644, Some(65534), None);
        let err = load_config(&config).unwrap_err().to_string();
        assert!(err.contains("owned by uid 65534"), "{err}");

        // A configuration the administrator gave a group and a narrower mode keeps both, and
        // so does its backup.
        give(&config, 0o640, Some(0), Some(65534));
        write_atomic(&config, b"{ }", 0o644).unwrap();
        write_atomic(&config, b"{  }", 0o644).unwrap();
        for path in [config.clone(), dir.path().join("localconfig.json.bak")] {
            let meta = fs::metadata(&path).unwrap();
            assert_eq!(
                (meta.uid(), meta.gid(), meta.mode() & 0o7777),
                (0, 65534, 0o640)
            );
        }

        // A new secret (a minted token) is ours, whoever owned what it replaces.
        let token = dir.path().join("token");
        fs::write(&token, b"theirs").unwrap();
        give(&token, 0o600, Some(65534), Some(65534));
        write_new_secret(&token, b"ours").unwrap();
        let meta = fs::metadata(&token).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o600));
    }

    #[test]
    fn refused_change_writes_nothing() {
        let dir = private_dir();
        let path = dir.path().join(CONFIG_FILE);
        let key = Key::IncomingPorts;
        update_config(
            &path,
            key,
            &Change::Set(crate::config::Raw::from_cli(key, "22")),
        )
        .unwrap();
        let before = fs::read(&path).unwrap();
        let err = update_config(
            &path,
            key,
            &Change::Set(crate::config::Raw::from_cli(key, "0")),
        );
        assert!(matches!(err, Err(UpdateError::Invalid(_))));
        assert_eq!(fs::read(&path).unwrap(), before);
    }
}
