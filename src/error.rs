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
    /// A fault of this program, not of the input or the store (a worker
    /// thread that died).
    #[error("internal fault: {0}")]
    Internal(String),
    /// A writer's earlier store write failed; every later call says so,
    /// with what that failure was (an outage, damage, a full disk…).
    #[error("writing to the store failed: {0}")]
    WriteFailed(Box<Error>),
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

    /// The same failure again, for another caller (I/O errors keep their
    /// kind and OS error code, which is all their text says).
    pub fn duplicate(&self) -> Error {
        match self {
            Error::Storage(s) => Error::Storage(s.duplicate()),
            Error::Corrupt { what, detail } => Error::Corrupt {
                what: what.clone(),
                detail: detail.clone(),
            },
            Error::WrongPassphrase => Error::WrongPassphrase,
            Error::NotAStore(s) => Error::NotAStore(s.clone()),
            Error::Locked(s) => Error::Locked(s.clone()),
            Error::InvalidInput(s) => Error::InvalidInput(s.clone()),
            Error::Io { context, err } => Error::Io {
                context: context.clone(),
                err: crate::storage::duplicate_io(err),
            },
            Error::Internal(s) => Error::Internal(s.clone()),
            Error::WriteFailed(e) => Error::WriteFailed(Box::new(e.duplicate())),
        }
    }

    /// True when the failure is an object that is missing from the store.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Storage(StorageError::NotFound { .. }))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
