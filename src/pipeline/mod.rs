//! The data pipeline from files to packs: content-defined chunking and the
//! packer (dedup → compress → seal → pack). The way out (coalesced pack
//! reads, the chunk cache) is [`crate::view`]'s.

pub mod chunker;
pub mod packer;
