//! One entry point per decoder of stored bytes, shared by the `cargo fuzz`
//! targets (fuzz/) and the corpus replay test that runs on stable in CI.
//!
//! Each function takes arbitrary bytes and must return without panicking,
//! hanging or allocating without bound, whatever the bytes say; it answers
//! whether the bytes decoded (real objects, the corpus seeds, must). The sealed
//! objects (index, snapshot, pack header, blob) are decoded with plaintext
//! keys, so the fuzzer reaches the parsers behind the AEAD instead of
//! stopping at the authentication tag; content-addressed names are computed
//! from the input so that check passes too.

use std::path::Path;

use crate::format::blob::{self, BlobType};
use crate::format::config::StoreConfig;
use crate::format::crypto::Keys;
use crate::format::id::{content_hash, BlobId, IndexId, PackId, SnapshotId};
use crate::format::index::IndexFile;
use crate::format::keyfile::KeyFile;
use crate::format::snapshot::Snapshot;
use crate::format::tree::Tree;

/// A decoder entry point: whether the bytes decoded.
pub type Target = fn(&[u8]) -> bool;

/// The targets, by the name of their corpus folder.
pub const TARGETS: [(&str, Target); 8] = [
    ("config", config),
    ("keyfile", keyfile),
    ("pack_header", pack_header),
    ("index", index),
    ("snapshot", snapshot),
    ("tree", tree),
    ("blob", blob),
    ("journal", journal),
];

fn keys() -> Keys {
    Keys::plaintext([7; 32])
}

/// `config`: JSON, validated (format version, chunker bounds, …).
pub fn config(data: &[u8]) -> bool {
    match StoreConfig::decode(data) {
        // A config that decodes must give usable plaintext keys or a clear error.
        Ok(c) => c.encryption != "none" || crate::repo::plaintext_keys(&c).is_ok(),
        Err(_) => false,
    }
}

/// `keys/<id>`: JSON; unwrapping runs Argon2 with the file's parameters, so it
/// is only tried when they are cheap (the bound on costly ones is checked by
/// a unit test, not by the fuzzer).
pub fn keyfile(data: &[u8]) -> bool {
    let Ok(k) = KeyFile::decode(data) else {
        return false;
    };
    if k.params.memory_kib <= 64 && k.params.iterations <= 1 && k.params.parallelism <= 1 {
        return k.unwrap_master(b"passphrase").is_ok();
    }
    true
}

/// A whole pack: the header found through the last 4 bytes, then every
/// entry it lists opened as a blob.
pub fn pack_header(data: &[u8]) -> bool {
    let keys = keys();
    let id = PackId(content_hash(data));
    let Ok(entries) = crate::format::pack::decode_header(&keys, &id, data, data.len() as u64)
    else {
        return false;
    };
    for e in entries.iter().take(64) {
        let start = e.offset as usize;
        let end = start + e.length as usize;
        if let Some(sealed) = data.get(start..end) {
            let _ = blob::decode(&keys, e.blob_type, &e.id, sealed, e.raw_length);
        }
    }
    true
}

/// `index/<id>`.
pub fn index(data: &[u8]) -> bool {
    IndexFile::decode(&keys(), &IndexId(content_hash(data)), data).is_ok()
}

/// `snapshots/<id>`.
pub fn snapshot(data: &[u8]) -> bool {
    Snapshot::decode(&keys(), &SnapshotId(content_hash(data)), data).is_ok()
}

/// A tree blob's plaintext.
pub fn tree(data: &[u8]) -> bool {
    Tree::decode(&BlobId(content_hash(data)), data).is_ok()
}

/// A blob's stored form: the first 4 bytes give the claimed raw length, the
/// rest is the payload (compression flag + body).
/// The id check is against keyed BLAKE3 with the fuzzing key, so only the
/// decompression path is exercised; "decoded" means it decompressed to the
/// claimed length.
pub fn blob(data: &[u8]) -> bool {
    if data.len() < 4 {
        return false;
    }
    let raw_len = u32::from_le_bytes(data[..4].try_into().expect("4 bytes"));
    let body = &data[4..];
    match blob::decode(&keys(), BlobType::Data, &BlobId([0; 32]), body, raw_len) {
        Ok(_) => true,
        Err(e) => e.to_string().contains("does not match its id"),
    }
}

/// The writable mount's journal (a local file, but read back after crashes).
pub fn journal(data: &[u8]) -> bool {
    !crate::writable::journal::read_from(data, Path::new("fuzz-journal")).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_survives_trivial_inputs() {
        for (name, f) in TARGETS {
            for input in [&b""[..], b"{}", &[0xff; 64]] {
                assert!(!f(input), "{name} accepted {input:?}");
            }
            // A zero byte is an empty tree (a valid encoding), nothing else.
            assert_eq!(f(b"\0"), name == "tree", "{name} on a zero byte");
        }
    }
}
