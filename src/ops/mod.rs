//! What users do to a store: write snapshots (the one [`writer`] and its
//! sources: local paths in [`backup`], S3 prefixes in [`connector`], a stream
//! in [`stream_source`]), restore
//! them, forget them (`rm`), check, repair and prune. Each operation that
//! changes the store takes its lock itself.

pub mod archive;
pub mod backup;
pub mod check;
#[cfg(feature = "s3")]
pub mod connector;
pub mod diff;
pub mod exclude;
pub mod generate;
pub mod local_node;
pub mod prune;
pub mod remove;
pub mod repair;
pub mod restore;
pub mod retention;
pub mod source;
pub mod stream_source;
pub mod sync;
pub mod versions;
pub mod writer;
