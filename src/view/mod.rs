//! The read side every viewer shares: the [`vfs`] view of snapshot trees
//! (inodes, listings, attributes, reads) that knows nothing of FUSE or
//! HTTP, the byte-bounded [`chunk_cache`] with read-ahead under it, the
//! [`coalesce`]d pack reads both use, and the [`content`] reader that
//! streams one file's chunks in order (`cat`, `archive`). The read-only
//! mount, the web UI and WebDAV are shells over it.

pub mod chunk_cache;
pub mod coalesce;
pub mod content;
pub mod vfs;
