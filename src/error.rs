//! The library's error type: variants callers branch on (not found, corrupt,
//! crypto, locked, bad input), so the CLI and FUSE layers can map them on purpose.

use crate::storage::StorageError;

/// Every fallible operation of the library returns this.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Stored bytes did not decode, verify or decrypt.
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("wrong passphrase: no key of this store opens with it")]
    WrongPassphrase,
    #[error("{0} is not a klosetfs store (no config object)")]
    NotAStore(String),
    #[error("store is locked: {0}")]
    Locked(String),
    #[error("{0}")]
    InvalidInput(String),
    /// The source is part of the message (not a `source()`), so chains print it once.
    #[error("{context}: {err}")]
    Io {
        context: String,
        err: std::io::Error,
    },
}

impl Error {
    pub fn corrupt(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Error::Corrupt {
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            err: source,
        }
    }

    /// True when the failure is an object that is missing from the store.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Storage(StorageError::NotFound { .. }))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
