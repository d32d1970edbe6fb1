//! Index objects (`index/<id>`): which blobs each pack holds, so readers find a
//! blob without opening pack headers. The in-memory [`MasterIndex`] merges them.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::blob::BlobType;
use crate::format::crypto::Keys;
use crate::format::id::{content_hash, BlobId, IndexId, PackId};
use crate::format::pack::PackEntry;

const INDEX_AAD: &[u8] = b"klosetfs index v1";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IndexPack {
    pub id: PackId,
    pub entries: Vec<PackEntry>,
}

/// The body of one index object.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct IndexFile {
    pub version: u32,
    /// Index objects this one replaces (written by prune); readers ignore them.
    pub supersedes: Vec<IndexId>,
    pub packs: Vec<IndexPack>,
}

impl IndexFile {
    pub fn encode(&self, keys: &Keys) -> Result<(IndexId, Vec<u8>)> {
        let plain = postcard::to_stdvec(self).map_err(|e| Error::corrupt("index", e))?;
        let sealed = keys.seal(INDEX_AAD, &plain)?;
        Ok((IndexId(content_hash(&sealed)), sealed))
    }

    pub fn decode(keys: &Keys, id: &IndexId, bytes: &[u8]) -> Result<Self> {
        let what = format!("index {}", id.short());
        if content_hash(bytes) != id.0 {
            return Err(Error::corrupt(&what, "content does not match its name"));
        }
        let plain = keys.open(INDEX_AAD, bytes, &what)?;
        let f: IndexFile = postcard::from_bytes(&plain).map_err(|e| Error::corrupt(&what, e))?;
        if f.version != 1 {
            return Err(Error::corrupt(
                &what,
                format!("unknown version {}", f.version),
            ));
        }
        Ok(f)
    }
}

/// Where a blob is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    pub pack: PackId,
    pub blob_type: BlobType,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
}

/// Every blob of the store, by id.
#[derive(Default)]
pub struct MasterIndex {
    blobs: HashMap<BlobId, BlobLocation>,
    packs: HashSet<PackId>,
}

impl MasterIndex {
    pub fn add_pack(&mut self, pack: PackId, entries: &[PackEntry]) {
        self.packs.insert(pack);
        for e in entries {
            self.blobs.entry(e.id).or_insert(BlobLocation {
                pack,
                blob_type: e.blob_type,
                offset: e.offset,
                length: e.length,
                raw_length: e.raw_length,
            });
        }
    }

    pub fn get(&self, id: &BlobId) -> Option<&BlobLocation> {
        self.blobs.get(id)
    }

    pub fn contains(&self, id: &BlobId) -> bool {
        self.blobs.contains_key(id)
    }

    pub fn has_pack(&self, id: &PackId) -> bool {
        self.packs.contains(id)
    }

    pub fn packs(&self) -> impl Iterator<Item = &PackId> {
        self.packs.iter()
    }

    pub fn blobs(&self) -> impl Iterator<Item = (&BlobId, &BlobLocation)> {
        self.blobs.iter()
    }

    /// Every pack's entries, as the pack headers list them.
    pub fn by_pack(&self) -> HashMap<PackId, Vec<PackEntry>> {
        let mut packs: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
        for (id, l) in &self.blobs {
            packs.entry(l.pack).or_default().push(PackEntry {
                blob_type: l.blob_type,
                id: *id,
                offset: l.offset,
                length: l.length,
                raw_length: l.raw_length,
            });
        }
        packs
    }

    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    /// Bytes the index takes in memory: its hash tables' slots (one id and
    /// location, and a control byte, per slot) at their current capacity.
    pub fn mem_bytes(&self) -> usize {
        use std::mem::size_of;
        self.blobs.capacity() * (size_of::<(BlobId, BlobLocation)>() + 1)
            + self.packs.capacity() * (size_of::<PackId>() + 1)
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::crypto::MasterKey;

    #[test]
    fn encode_decode_and_name_check() {
        let keys = Keys::encrypted(&MasterKey::random().unwrap());
        let f = IndexFile {
            version: 1,
            supersedes: vec![],
            packs: vec![IndexPack {
                id: PackId([1; 32]),
                entries: vec![PackEntry {
                    blob_type: BlobType::Data,
                    id: BlobId([2; 32]),
                    offset: 0,
                    length: 50,
                    raw_length: 40,
                }],
            }],
        };
        let (id, bytes) = f.encode(&keys).unwrap();
        assert_eq!(IndexFile::decode(&keys, &id, &bytes).unwrap(), f);
        let mut bad = bytes.clone();
        bad[30] ^= 1;
        assert!(IndexFile::decode(&keys, &id, &bad).is_err());
        let mut m = MasterIndex::default();
        m.add_pack(f.packs[0].id, &f.packs[0].entries);
        assert_eq!(m.get(&BlobId([2; 32])).unwrap().length, 50);
    }
}
