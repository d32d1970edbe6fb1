//! Snapshot objects (`snapshots/<id>`): the root tree of one backup plus who,
//! when, what and how much. Written last, so a visible snapshot is complete.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::crypto::Keys;
use crate::format::id::{content_hash, BlobId, SnapshotId};

const SNAPSHOT_AAD: &[u8] = b"klosetfs snapshot v1";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    /// Bytes of file content in the snapshot.
    pub bytes: u64,
    /// Plaintext bytes of blobs this backup added to the store.
    pub new_bytes: u64,
    /// Stored (compressed, sealed) bytes this backup added.
    pub stored_bytes: u64,
    pub new_blobs: u64,
    /// Entries that could not be read and were left out.
    pub errors: u64,
    pub duration_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    /// Nanoseconds since the epoch.
    pub time: i64,
    pub host: String,
    pub user: String,
    /// Absolute source paths (bytes) or source URIs.
    pub paths: Vec<Vec<u8>>,
    pub tags: Vec<String>,
    /// Root tree: the filesystem root, holding the backed-up paths.
    pub tree: BlobId,
    pub parent: Option<SnapshotId>,
    pub summary: Summary,
}

impl Snapshot {
    pub fn encode(&self, keys: &Keys) -> Result<(SnapshotId, Vec<u8>)> {
        let plain = postcard::to_stdvec(self).map_err(|e| Error::corrupt("snapshot", e))?;
        let sealed = keys.seal(SNAPSHOT_AAD, &plain)?;
        Ok((SnapshotId(content_hash(&sealed)), sealed))
    }

    pub fn decode(keys: &Keys, id: &SnapshotId, bytes: &[u8]) -> Result<Self> {
        let what = format!("snapshot {}", id.short());
        if content_hash(bytes) != id.0 {
            return Err(Error::corrupt(&what, "content does not match its name"));
        }
        let plain = keys.open(SNAPSHOT_AAD, bytes, &what)?;
        let s: Snapshot = postcard::from_bytes(&plain).map_err(|e| Error::corrupt(&what, e))?;
        if s.version != 1 {
            return Err(Error::corrupt(
                &what,
                format!("unknown version {}", s.version),
            ));
        }
        Ok(s)
    }

    /// Paths joined for display.
    pub fn paths_display(&self) -> String {
        self.paths
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
