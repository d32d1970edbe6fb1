//! Packfiles (`packs/<xx>/<id>`): sealed blobs back to back, then a sealed header
//! listing them, then the header's length as a little-endian u32. A pack is
//! self-describing, so `check` and an index rebuild need nothing but packs.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::blob::BlobType;
use crate::format::crypto::Keys;
use crate::format::id::{content_hash, BlobId, PackId};

const HEADER_AAD: &[u8] = b"klosetfs pack header v1";
/// Refuse to allocate more than this for a header read from a store.
pub const MAX_HEADER_LEN: u32 = 64 * 1024 * 1024;

/// Where one blob lies in its pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    pub blob_type: BlobType,
    pub id: BlobId,
    pub offset: u32,
    /// Sealed length in the pack.
    pub length: u32,
    /// Length of the blob's plaintext after decompression.
    pub raw_length: u32,
}

#[derive(Serialize, Deserialize)]
struct PackHeader {
    version: u32,
    entries: Vec<PackEntry>,
}

/// Builds one pack in memory.
#[derive(Default)]
pub struct PackWriter {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// A finished pack, ready to store.
pub struct FinishedPack {
    pub id: PackId,
    pub bytes: Vec<u8>,
    pub entries: Vec<PackEntry>,
}

impl PackWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, blob_type: BlobType, id: BlobId, sealed: &[u8], raw_length: u32) {
        self.entries.push(PackEntry {
            blob_type,
            id,
            offset: self.buf.len() as u32,
            length: sealed.len() as u32,
            raw_length,
        });
        self.buf.extend_from_slice(sealed);
    }

    pub fn size(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn finish(mut self, keys: &Keys) -> Result<FinishedPack> {
        let header = postcard::to_stdvec(&PackHeader {
            version: 1,
            entries: self.entries.clone(),
        })
        .map_err(|e| Error::corrupt("pack header", e))?;
        let sealed = keys.seal(HEADER_AAD, &header)?;
        self.buf.extend_from_slice(&sealed);
        self.buf
            .extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        Ok(FinishedPack {
            id: PackId(content_hash(&self.buf)),
            bytes: self.buf,
            entries: self.entries,
        })
    }
}

/// Decodes the header from a pack's last bytes. `tail` must hold the whole
/// sealed header plus the 4-byte length; `pack_len` is the pack's full size.
pub fn decode_header(
    keys: &Keys,
    pack: &PackId,
    tail: &[u8],
    pack_len: u64,
) -> Result<Vec<PackEntry>> {
    let what = format!("pack {} header", pack.short());
    let hlen = header_len(tail, pack_len).map_err(|d| Error::corrupt(&what, d))?;
    if hlen as usize + 4 > tail.len() {
        return Err(Error::corrupt(&what, "header longer than the bytes given"));
    }
    let start = tail.len() - 4 - hlen as usize;
    let plain = keys.open(HEADER_AAD, &tail[start..tail.len() - 4], &what)?;
    let h: PackHeader = postcard::from_bytes(&plain).map_err(|e| Error::corrupt(&what, e))?;
    if h.version != 1 {
        return Err(Error::corrupt(
            &what,
            format!("unknown version {}", h.version),
        ));
    }
    let body_len = pack_len - 4 - hlen as u64;
    for e in &h.entries {
        if e.offset as u64 + e.length as u64 > body_len {
            return Err(Error::corrupt(&what, "entry points past the blobs"));
        }
    }
    Ok(h.entries)
}

/// The sealed header's length from the pack's last 4 bytes (the end of `tail`),
/// checked against the pack size.
pub fn header_len(tail: &[u8], pack_len: u64) -> std::result::Result<u32, String> {
    if tail.len() < 4 || pack_len < 4 {
        return Err("pack too short".into());
    }
    let n = u32::from_le_bytes(tail[tail.len() - 4..].try_into().expect("4 bytes"));
    if n > MAX_HEADER_LEN || n as u64 + 4 > pack_len {
        return Err(format!(
            "header length {n} does not fit a {pack_len}-byte pack"
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::blob;
    use crate::format::crypto::MasterKey;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pack_round_trip(blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..20)) {
            let keys = Keys::encrypted(&MasterKey::random().unwrap());
            let mut w = PackWriter::new();
            for b in &blobs {
                let id = keys.blob_id(b);
                let sealed = blob::encode(&keys, BlobType::Data, &id, b, 1).unwrap();
                w.add(BlobType::Data, id, &sealed, b.len() as u32);
            }
            let p = w.finish(&keys).unwrap();
            prop_assert_eq!(p.id.0, content_hash(&p.bytes));
            let entries = decode_header(&keys, &p.id, &p.bytes, p.bytes.len() as u64).unwrap();
            prop_assert_eq!(entries.len(), blobs.len());
            for (e, b) in entries.iter().zip(&blobs) {
                let s = &p.bytes[e.offset as usize..(e.offset + e.length) as usize];
                prop_assert_eq!(&blob::decode(&keys, e.blob_type, &e.id, s, e.raw_length).unwrap(), b);
            }
        }

        #[test]
        fn garbage_tails_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
            let keys = Keys::encrypted(&MasterKey::random().unwrap());
            let _ = decode_header(&keys, &PackId([0; 32]), &tail, tail.len() as u64);
        }
    }
}
