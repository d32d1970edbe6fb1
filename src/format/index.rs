//! Index objects (`index/<id>`): which blobs each pack holds, so readers find a
//! blob without opening pack headers. The in-memory [`MasterIndex`] merges them.

pub use crate::format::master_index::{BlobLocation, MasterIndex};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::crypto::Keys;
use crate::format::id::{content_hash, IndexId, PackId};
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::blob::BlobType;
    use crate::format::crypto::MasterKey;
    use crate::format::id::BlobId;

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
        let m = MasterIndex::build([(f.packs[0].id, f.packs[0].entries.as_slice())]);
        assert_eq!(m.get(&BlobId([2; 32])).unwrap().length, 50);
    }
}
