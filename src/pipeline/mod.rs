//! The data pipeline between files and packs: content-defined chunking and
//! the packer (dedup → compress → seal → pack) on the way in; coalesced pack
//! reads and the byte-bounded chunk cache on the way out.

pub mod chunk_cache;
pub mod chunker;
pub mod coalesce;
pub mod packer;
