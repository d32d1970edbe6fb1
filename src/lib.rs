//! klosetfs: a Kloset-style backup engine (content-defined chunks, dedup,
//! zstd, XChaCha20-Poly1305, packfiles) whose main face is a FUSE filesystem.
//!
//! Layers, bottom up; each uses only those below it:
//! - [`storage`]: where a store lives (local folder, S3, memory) behind one
//!   small trait, with retry, limit, cache and fault wrappers, and
//!   [`resource`] to open a location;
//! - [`format`]: the stored objects (ids, crypto, blobs, packs, index, trees,
//!   snapshots, keys, locks, config), [`unlock`], which reads the config
//!   and keys (each kept twice) and proves a key is this store's, and
//!   [`repo`], an open store;
//! - [`pipeline`]: chunker and packer, the way in;
//! - [`view`]: the way out, which every viewer and `restore` share: the
//!   [`view::vfs`] view of snapshot trees, the chunk cache and coalesced
//!   pack reads under it, and the sequential [`view::content`] reader;
//! - [`ops`]: the one snapshot writer ([`ops::writer`]) and the walk every
//!   source shares ([`ops::source`]: local paths, an S3 prefix, a stream);
//!   then restore, archive, sync, check, repair, retention and prune;
//! - [`writable`]: the backup-on-close core (namespace, spool, journal,
//!   storers, commit) and its [`writable::session`] lifecycle, with no front
//!   end in it;
//! - [`mount`]: the FUSE shells: the read-only mount over [`view::vfs`] and
//!   the writable mount over [`writable`], and the kernel helpers both share;
//! - [`serve`]: the web UI, JSON API and read-only WebDAV (`ui`), over the
//!   same view.
//!
//! The `klosetfs` binary's CLI (`src/cli/`) sits on top.

pub mod error;
pub mod format;
pub mod fs_error;
#[doc(hidden)]
pub mod fuzzing;
pub mod mount;
pub mod ops;
pub mod pipeline;
pub mod repo;
pub mod resource;
#[cfg(feature = "ui")]
pub mod serve;
pub mod storage;
pub mod tree_packs;
pub mod unlock;
pub mod userconfig;
pub mod util;
pub mod view;
pub mod writable;

pub use error::{Error, Result};
