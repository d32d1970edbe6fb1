//! klosetfs: a Kloset-style backup engine (content-defined chunks, dedup,
//! zstd, XChaCha20-Poly1305, packfiles) whose main face is a FUSE filesystem.
//!
//! Layers, bottom up: [`storage`] → [`pack`] + [`index`] → [`blob`] pipeline →
//! [`tree`] + [`snapshot`] → [`repo`] → operations ([`backup`], [`restore`], …).

pub mod backup;
pub mod blob;
pub mod cache;
pub mod check;
pub mod chunker;
pub mod config;
#[cfg(feature = "s3")]
pub mod connector;
pub mod crypto;
pub mod error;
pub mod fetch;
pub mod fsnode;
pub mod fuse;
#[doc(hidden)]
pub mod fuzzing;
pub mod id;
pub mod index;
pub mod keyfile;
pub mod lock;
pub mod mount;
pub mod pack;
pub mod packer;
pub mod prune;
pub mod repair;
pub mod repo;
pub mod resource;
pub mod restore;
pub mod snapshot;
pub mod storage;
pub mod tree;
pub mod userconfig;
pub mod util;
pub mod vfs;
pub mod writable;
pub mod writer;

pub use error::{Error, Result};
