//! The files in force: where they live, who may own them and how they are written
//! ([`store`]), the snapshot the gate decides with and reloading it on change ([`live`]), and
//! token files ([`read_token_file`]) for the clients and the relay-listener role.
//!
//! What the bytes mean is the pure core's (`config`, `token`); this layer reads and writes.

pub mod live;
pub mod store;

use std::path::{Path, PathBuf};

/// A token file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// It cannot be read.
    #[error("cannot read token file {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It holds nothing but whitespace.
    #[error("token file {} is empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Reads a token file: the token is its content, surrounding whitespace removed.
pub fn read_token_file(path: &Path) -> Result<String, TokenFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(token.to_string())
}
