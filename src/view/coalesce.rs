//! Reading many blobs with few requests: the blobs are grouped by pack, sorted
//! by offset, and neighbours are read as one range. Restores use this, since a
//! remote store answers one 16 MiB range far faster than a thousand small ones.
//! Restores and the mount's read-ahead both read through here.

use std::collections::HashMap;

use parking_lot::Mutex;
use rayon::prelude::*;

use crate::format::blob::BlobType;
use crate::format::id::BlobId;
use crate::format::index::BlobLocation;
use crate::repo::Repo;
use crate::storage::Kind;

/// Blobs closer than this in one pack are read together, gap included.
const MAX_GAP: u64 = 256 * 1024;
/// No single range is longer than this.
const MAX_SPAN: u64 = 32 << 20;

/// Reads and decodes the data blobs `ids` (duplicates allowed). Blobs that are
/// not indexed or fail to read or verify are left out: the caller reads those
/// one by one and gets the precise error.
pub fn data_blobs(repo: &Repo, ids: &[BlobId]) -> HashMap<BlobId, Vec<u8>> {
    let out = Mutex::new(HashMap::new());
    for_each_data_blob(repo, ids, |id, got| {
        if let Some(d) = got {
            out.lock().insert(id, d);
        }
    });
    out.into_inner()
}

/// Reads the data blobs `ids` in coalesced ranges, in parallel, and calls `f`
/// once per distinct id as soon as its range is in: with the decoded bytes, or
/// `None` when the blob is not indexed or its range failed to read or verify.
pub fn for_each_data_blob(repo: &Repo, ids: &[BlobId], f: impl Fn(BlobId, Option<Vec<u8>>) + Sync) {
    let mut locs = Vec::new();
    {
        let idx = repo.index().read();
        let mut seen = std::collections::HashSet::new();
        for id in ids {
            if !seen.insert(*id) {
                continue;
            }
            match idx.get(id) {
                Some(l) => locs.push((*id, l)),
                None => f(*id, None),
            }
        }
    }
    locs.sort_by_key(|(_, l)| (l.pack, l.offset));
    let mut runs: Vec<Vec<(BlobId, BlobLocation)>> = Vec::new();
    for (id, l) in locs {
        if let Some(run) = runs.last_mut() {
            let first = run[0].1;
            let last = run[run.len() - 1].1;
            let end = last.offset as u64 + last.length as u64;
            if first.pack == l.pack
                && (l.offset as u64) < end + MAX_GAP
                && l.offset as u64 + l.length as u64 - first.offset as u64 <= MAX_SPAN
            {
                run.push((id, l));
                continue;
            }
        }
        runs.push(vec![(id, l)]);
    }
    runs.par_iter().for_each(|run| read_run(repo, run, &f));
}

fn read_run(
    repo: &Repo,
    run: &[(BlobId, BlobLocation)],
    f: &(impl Fn(BlobId, Option<Vec<u8>>) + Sync),
) {
    let start = run[0].1.offset as u64;
    let end = run
        .iter()
        .map(|(_, l)| l.offset as u64 + l.length as u64)
        .max()
        .unwrap_or(start);
    let bytes = repo
        .storage()
        .get_range(Kind::Pack, &run[0].1.pack.to_hex(), start, end - start)
        .ok();
    run.par_iter().for_each(|(id, l)| {
        let decoded = bytes.as_ref().and_then(|b| {
            let off = (l.offset as u64 - start) as usize;
            let sealed = b.get(off..off + l.length as usize)?;
            repo.decode_blob(BlobType::Data, id, sealed, l.raw_length)
                .ok()
        });
        f(*id, decoded);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::packer::Packer;
    use crate::storage::{FaultPlan, FaultStorage, MemoryStorage, Storage};
    use std::sync::Arc;

    #[test]
    fn reads_neighbours_in_one_request_and_skips_what_fails() {
        let mem: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let f = Arc::new(FaultStorage::new(mem, FaultPlan::default()));
        let repo = crate::repo::test_repo(f.clone());
        let p = Packer::new(repo.clone());
        let blobs: Vec<Vec<u8>> = (0..50u32)
            .map(|i| (0..1000 + i).map(|j| (j * 7 + i) as u8).collect())
            .collect();
        let ids: Vec<BlobId> = blobs
            .iter()
            .map(|b| p.save(BlobType::Data, b).unwrap())
            .collect();
        p.flush().unwrap();
        let before = f.gets();
        let got = data_blobs(&repo, &ids);
        assert_eq!(f.gets() - before, 1, "one pack, one range read");
        for (id, b) in ids.iter().zip(&blobs) {
            assert_eq!(&got[id], b);
        }
        // A damaged range leaves its blobs out rather than failing the call.
        f.set_plan(FaultPlan {
            flip_on_get: Some(Kind::Pack),
            ..Default::default()
        });
        assert!(data_blobs(&repo, &ids).len() < ids.len());
    }
}
