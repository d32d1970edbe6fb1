//! Blobs: the unit of dedup. A chunk of file data or a serialized tree,
//! compressed with zstd (kept raw when that does not shrink it), then sealed with
//! its type and id as associated data so a blob cannot be swapped for another.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::crypto::Keys;
use crate::format::id::BlobId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BlobType {
    Data,
    Tree,
}

impl BlobType {
    fn tag(self) -> u8 {
        match self {
            BlobType::Data => 0,
            BlobType::Tree => 1,
        }
    }
}

/// No blob is larger than this (chunks are at most 16 MiB): a hostile index
/// cannot make a reader allocate more.
const MAX_BLOB: u32 = 256 * 1024 * 1024;

const RAW: u8 = 0;
const ZSTD: u8 = 1;

/// Associated data of a blob: its type byte and id.
fn aad(t: BlobType, id: &BlobId) -> [u8; 33] {
    let mut a = [0u8; 33];
    a[0] = t.tag();
    a[1..].copy_from_slice(&id.0);
    a
}

thread_local! {
    /// One zstd context per thread: creating one per blob is costly.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn compress(raw: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().map(|(l, _)| *l) != Some(level) {
            *c = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        let (_, comp) = c.as_mut().expect("set above");
        comp.compress(raw)
    })
}

/// One-shot decompression into a buffer of the recorded size (the index says
/// how big the plaintext is, so no streaming or regrowing is needed).
fn decompress(body: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        d.as_mut().expect("set above").decompress(body, raw_len)
    })
}

/// Compresses then seals one blob.
pub fn encode(keys: &Keys, t: BlobType, id: &BlobId, raw: &[u8], level: i32) -> Result<Vec<u8>> {
    let mut payload = Vec::with_capacity(raw.len() / 2 + 16);
    payload.push(ZSTD);
    let compressed = compress(raw, level).map_err(|e| Error::io("compressing a blob", e))?;
    if compressed.len() < raw.len() {
        payload.extend_from_slice(&compressed);
    } else {
        payload[0] = RAW;
        payload.extend_from_slice(raw);
    }
    keys.seal(&aad(t, id), &payload)
}

/// Opens, decompresses and verifies one blob against its id.
pub fn decode(
    keys: &Keys,
    t: BlobType,
    id: &BlobId,
    sealed: &[u8],
    raw_len: u32,
) -> Result<Vec<u8>> {
    let what = || format!("{t:?} blob {}", id.to_hex());
    if raw_len > MAX_BLOB {
        return Err(Error::corrupt(
            what(),
            format!("implausible size {raw_len}"),
        ));
    }
    let payload = keys.open(&aad(t, id), sealed, &what())?;
    let raw = match payload.split_first() {
        Some((&RAW, body)) => body.to_vec(),
        Some((&ZSTD, body)) => {
            decompress(body, raw_len as usize).map_err(|e| Error::corrupt(what(), e))?
        }
        _ => return Err(Error::corrupt(what(), "unknown compression flag")),
    };
    if raw.len() != raw_len as usize || keys.blob_id(&raw) != *id {
        return Err(Error::corrupt(what(), "content does not match its id"));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::crypto::MasterKey;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(0u8..4, 0..20000), enc in any::<bool>()) {
            let keys = if enc { Keys::encrypted(&MasterKey::random().unwrap()) } else { Keys::plaintext([3; 32]) };
            let id = keys.blob_id(&data);
            let sealed = encode(&keys, BlobType::Data, &id, &data, 3).unwrap();
            prop_assert_eq!(decode(&keys, BlobType::Data, &id, &sealed, data.len() as u32).unwrap(), data.clone());
            // The type is bound: a data blob does not open as a tree blob.
            if enc {
                prop_assert!(decode(&keys, BlobType::Tree, &id, &sealed, data.len() as u32).is_err());
            }
        }
    }

    #[test]
    fn incompressible_data_stays_raw_and_plaintext_is_verified() {
        let keys = Keys::plaintext([1; 32]);
        let mut data = vec![0u8; 4096];
        crate::format::crypto::fill_random(&mut data).unwrap();
        let id = keys.blob_id(&data);
        let mut sealed = encode(&keys, BlobType::Data, &id, &data, 3).unwrap();
        assert_eq!(sealed[0], RAW);
        assert_eq!(sealed.len(), data.len() + 1);
        sealed[100] ^= 1;
        assert!(decode(&keys, BlobType::Data, &id, &sealed, 4096).is_err());
    }
}
