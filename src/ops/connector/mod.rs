//! Connectors that move files between a snapshot and something other than the
//! local filesystem: S3 prefixes as a backup source and a restore destination.
//! (Local directories are the `backup` and `restore` modules themselves.)

pub mod s3_dest;
pub mod s3_source;

use crate::storage::{S3Options, StorageError};

/// Parses an `s3://bucket/prefix` source or destination; endpoint and
/// credentials come from the `AWS_*` environment and profiles.
pub fn s3_options(location: &str) -> crate::Result<S3Options> {
    S3Options::parse(location).map_err(|e| match e {
        StorageError::Backend(m) => crate::Error::InvalidInput(m),
        e => e.into(),
    })
}

/// The prefix as a key prefix: `a/b/` (or empty for the whole bucket).
pub fn key_prefix(o: &S3Options) -> String {
    if o.prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", o.prefix)
    }
}
