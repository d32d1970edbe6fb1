//! The store format: one module per kind of stored object, each with its
//! encoding, sealing and checks (`docs/design.md` is their specification).
//! Nothing here does I/O but [`lock`], which takes, refreshes and drops its
//! objects through the storage trait; [`crate::repo`] reads and writes the others.

pub mod blob;
pub mod config;
pub mod crypto;
pub mod id;
pub mod index;
pub mod keyfile;
pub mod lock;
pub mod master_index;
pub mod pack;
pub mod snapshot;
pub mod tree;
