//! klosetfs: a Kloset-style backup engine (content-defined chunks, dedup,
//! zstd, XChaCha20-Poly1305, packfiles) whose main face is a FUSE filesystem.
//!
//! Layers, bottom up; each uses only those below it:
//! - [`storage`]: where a store lives (local folder, S3, memory) behind one
//!   small trait, with retry, limit, cache and fault wrappers, and
//!   [`storage::resource`] to open a location;
//! - [`format`]: the stored objects (ids, crypto, blobs, packs, index, trees,
//!   snapshots, keys, locks, config), and [`repo`], an open store;
//! - [`pipeline`]: chunker and packer on the way in, coalesced reads and the
//!   chunk cache on the way out;
//! - [`ops`]: the snapshot writer and its sources, restore, check, repair, prune;
//! - [`mount`]: the [`mount::vfs`] view, the read-only FUSE shell and the
//!   writable backup-on-close mount.
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
pub mod storage;
pub mod userconfig;
pub mod util;

pub use error::{Error, Result};
