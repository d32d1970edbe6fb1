//! One error for everything the file-system front ends serve (the FUSE
//! mounts, the WebDAV views): the read view, the writable namespace and the
//! writable core all fail with [`FsError`], and each shell maps it once
//! (`mount::kernel::errno`, `serve::dav::dav_error`), chosen per variant.
//! A store failure keeps what it was: an outage (which may pass), damage
//! (which `check` reports), or a local fault, so logs and clients can say
//! which.

use crate::error::Error;
use crate::storage::StorageError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("already exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    /// A name or an operation the tree cannot take (`.`, `..`, a rename
    /// into its own subtree, the commit file).
    #[error("invalid name or operation")]
    Invalid,
    /// No such extended attribute.
    #[error("no such attribute")]
    NoData,
    /// The writable session's spool (or the disk under it) is full.
    #[error("no space left in the spool")]
    NoSpace,
    /// The store did not answer, or answered with a failure that may pass
    /// (a timeout, throttling, a 5xx, a refused connection).
    #[error("the store is unreachable: {0}")]
    Unavailable(String),
    /// What the store holds is missing, or fails to decode, verify or
    /// decrypt: `check` names it.
    #[error("damaged in the store: {0}")]
    Damaged(String),
    /// A local failure: the spool's disk, a background store, an internal
    /// fault.
    #[error("{0}")]
    Io(String),
}

pub type FsResult<T> = std::result::Result<T, FsError>;

impl From<Error> for FsError {
    fn from(e: Error) -> Self {
        match &e {
            Error::Storage(StorageError::Unavailable(_) | StorageError::Backend(_)) => {
                FsError::Unavailable(e.to_string())
            }
            Error::Storage(StorageError::NotFound { .. })
            | Error::Corrupt { .. }
            | Error::WrongPassphrase => FsError::Damaged(e.to_string()),
            Error::WriteFailed(first) => {
                FsError::from(first.duplicate()).within("writing to the store failed")
            }
            _ => FsError::Io(e.to_string()),
        }
    }
}

impl FsError {
    /// The same failure, its message prefixed with what was being done.
    pub fn within(self, doing: &str) -> Self {
        match self {
            FsError::Unavailable(m) => FsError::Unavailable(format!("{doing}: {m}")),
            FsError::Damaged(m) => FsError::Damaged(format!("{doing}: {m}")),
            FsError::Io(m) => FsError::Io(format!("{doing}: {m}")),
            e => e,
        }
    }

    /// Whether this is a failure of the store or the disk (logged by the
    /// shells), rather than an answer about the tree (not found, exists…).
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            FsError::Unavailable(_) | FsError::Damaged(_) | FsError::Io(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_failures_keep_what_they_were() {
        let outage = Error::Storage(StorageError::Unavailable("connection refused".into()));
        assert!(matches!(FsError::from(outage), FsError::Unavailable(m) if m.contains("refused")));
        let missing = Error::Storage(StorageError::NotFound {
            kind: crate::storage::Kind::Pack,
            name: "ab".into(),
        });
        assert!(matches!(FsError::from(missing), FsError::Damaged(_)));
        assert!(matches!(
            FsError::from(Error::corrupt("pack ab", "bad tag")),
            FsError::Damaged(m) if m.contains("pack ab")
        ));
        let local = Error::io("spool", std::io::Error::from_raw_os_error(libc::EACCES));
        assert!(matches!(FsError::from(local), FsError::Io(_)));
        assert!(!FsError::NotFound.is_failure());
    }
}
