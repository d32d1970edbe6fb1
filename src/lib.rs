//! klosetfs: a Kloset-style backup engine (content-defined chunks, dedup,
//! zstd, XChaCha20-Poly1305, packfiles) whose main face is a FUSE filesystem.
//!
//! Layers, bottom up; each uses only those below it:
//! - [`storage`]: where a store lives (local folder, S3, memory) behind one
//!   small trait, with retry, limit, cache and fault wrappers, and
//!   [`storage::resource`] to open a location;
//! - [`format`]: the stored objects (ids, crypto, blobs, packs, index, trees,
//!   snapshots, keys, locks, config), [`unlock`], which reads the config
//!   and keys (each kept twice) and proves a key is this store's, and
//!   [`repo`], an open store;
//! - [`pipeline`]: chunker and packer on the way in, coalesced reads and the
//!   chunk cache on the way out;
//! - [`ops`]: the one snapshot writer ([`ops::writer`]) and the walk every
//!   source shares ([`ops::source`]: local paths, an S3 prefix, a stream);
//!   then restore, archive, sync, check, repair, retention and prune;
//! - [`mount`]: the [`mount::vfs`] view, the FUSE helpers both shells share
//!   ([`mount::kernel`]), the read-only shell and the writable
//!   backup-on-close mount;
//! - [`serve`]: the web UI, JSON API and read-only WebDAV (`ui`), reading
//!   through the same chunk cache as the mounts.
//!
//! The `klosetfs` binary's CLI (`src/cli/`) sits on top.

pub mod error;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
pub mod mount;
pub mod ops;
pub mod pipeline;
pub mod repo;
#[cfg(feature = "ui")]
pub mod serve;
pub mod storage;
pub mod tree_packs;
pub mod unlock;
pub mod userconfig;
pub mod util;

pub use error::{Error, Result};
