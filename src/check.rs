//! `check`: proves a store is whole. Indexes decode, every indexed pack exists
//! and its header agrees with the index, every snapshot and tree decodes, and
//! every blob they reference is indexed. `read_data` also reads every pack in full
//! and verifies every blob. `repair_index` rebuilds the index from pack headers.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rayon::prelude::*;

use crate::blob::BlobType;
use crate::error::{Error, Result};
use crate::id::{content_hash, BlobId, IndexId, PackId};
use crate::index::{IndexFile, IndexPack};
use crate::pack::{self, PackEntry};
use crate::repo::Repo;
use crate::storage::{Kind, StorageError};

#[derive(Default, Debug)]
pub struct CheckProgress {
    pub packs: AtomicU64,
    pub bytes: AtomicU64,
}

#[derive(Debug, Default)]
pub struct CheckReport {
    pub snapshots: usize,
    pub trees: usize,
    pub packs: usize,
    pub blobs: usize,
    /// Damage: each names the object and what is wrong with it.
    pub errors: Vec<String>,
    /// Not damage, but worth knowing (e.g. packs no index lists).
    pub warnings: Vec<String>,
}

/// Reads a pack's header from its tail.
pub fn read_pack_header(repo: &Repo, id: &PackId, size: u64) -> Result<Vec<PackEntry>> {
    let name = id.to_hex();
    if size < 4 {
        return Err(Error::corrupt(format!("pack {}", id.short()), "too short"));
    }
    let len_bytes = repo.storage().get_range(Kind::Pack, &name, size - 4, 4)?;
    let hlen = pack::header_len(&len_bytes, size)
        .map_err(|d| Error::corrupt(format!("pack {}", id.short()), d))?;
    let tail =
        repo.storage()
            .get_range(Kind::Pack, &name, size - 4 - hlen as u64, hlen as u64 + 4)?;
    pack::decode_header(repo.keys(), id, &tail, size)
}

/// Verifies a whole pack: its name is its hash, and every blob decodes.
fn verify_pack_data(repo: &Repo, id: &PackId, entries: &[PackEntry]) -> Vec<String> {
    let bytes = match repo.storage().get(Kind::Pack, &id.to_hex()) {
        Ok(b) => b,
        Err(e) => return vec![format!("pack {}: {e}", id.to_hex())],
    };
    let mut errs = Vec::new();
    if content_hash(&bytes) != id.0 {
        errs.push(format!(
            "pack {}: content does not match its name",
            id.to_hex()
        ));
    }
    for e in entries {
        let end = e.offset as usize + e.length as usize;
        let r = bytes
            .get(e.offset as usize..end)
            .ok_or_else(|| Error::corrupt("pack", "blob past the end"))
            .and_then(|s| repo.decode_blob(e.blob_type, &e.id, s, e.raw_length));
        if let Err(err) = r {
            errs.push(format!(
                "pack {}: {:?} blob {}: {err}",
                id.to_hex(),
                e.blob_type,
                e.id.to_hex()
            ));
        }
    }
    errs
}

pub fn check(repo: &Repo, read_data: bool, progress: &CheckProgress) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    for (id, e) in repo.load_index()? {
        report.errors.push(format!("index {}: {e}", id.to_hex()));
    }
    // Packs: stored vs indexed, header vs index.
    let stored: HashMap<String, u64> = repo.storage().list(Kind::Pack)?.into_iter().collect();
    let indexed = repo.index().read().by_pack();
    for name in stored.keys() {
        match PackId::from_hex(name) {
            Ok(id) if indexed.contains_key(&id) => {}
            _ => report.warnings.push(format!(
                "pack {name} is in no index (left by an interrupted backup; `prune` removes it, `check --repair` indexes it)"
            )),
        }
    }
    report.packs = indexed.len();
    let errors = Mutex::new(Vec::new());
    indexed.par_iter().for_each(|(id, want)| {
        let Some(&size) = stored.get(&id.to_hex()) else {
            errors.lock().push(format!(
                "pack {}: missing, but the index lists {} blobs in it",
                id.to_hex(),
                want.len()
            ));
            return;
        };
        let header = match read_pack_header(repo, id, size) {
            Ok(h) => h,
            Err(e) => {
                errors.lock().push(format!("pack {}: {e}", id.to_hex()));
                return;
            }
        };
        let have: HashSet<(BlobId, u32, u32)> =
            header.iter().map(|e| (e.id, e.offset, e.length)).collect();
        for w in want {
            if !have.contains(&(w.id, w.offset, w.length)) {
                errors.lock().push(format!(
                    "pack {}: blob {} listed by the index is not in its header",
                    id.to_hex(),
                    w.id.to_hex()
                ));
            }
        }
        if read_data {
            errors.lock().extend(verify_pack_data(repo, id, &header));
        }
        progress.packs.fetch_add(1, Ordering::Relaxed);
        progress.bytes.fetch_add(size, Ordering::Relaxed);
    });
    report.errors.extend(errors.into_inner());

    // Snapshots and trees.
    let names = repo.storage().list(Kind::Snapshot)?;
    let mut roots = Vec::new();
    for (name, _) in names {
        match crate::id::SnapshotId::from_hex(&name).and_then(|id| repo.load_snapshot(&id)) {
            Ok(s) => roots.push((name, s.tree)),
            Err(e) => report.errors.push(format!("snapshot {name}: {e}")),
        }
    }
    report.snapshots = roots.len();
    let mut seen = HashSet::new();
    for (snap, root) in roots {
        let mut stack = vec![(root, b"/".to_vec())];
        while let Some((tid, path)) = stack.pop() {
            if !seen.insert(tid) {
                continue;
            }
            let tree = match repo.load_tree(&tid) {
                Ok(t) => t,
                Err(e) => {
                    report.errors.push(format!(
                        "snapshot {}: tree {} at {}: {e}",
                        &snap[..8],
                        tid.short(),
                        String::from_utf8_lossy(&path)
                    ));
                    continue;
                }
            };
            report.trees += 1;
            for n in &tree.nodes {
                let mut p = path.clone();
                if !p.ends_with(b"/") {
                    p.push(b'/');
                }
                p.extend_from_slice(&n.name);
                for c in &n.content {
                    report.blobs += 1;
                    match repo.locate(&c.id) {
                        Some(l) if l.blob_type == BlobType::Data => {}
                        _ => report.errors.push(format!(
                            "snapshot {}: {}: chunk {} is missing",
                            &snap[..8],
                            String::from_utf8_lossy(&p),
                            c.id.to_hex()
                        )),
                    }
                }
                if let Some(sub) = n.subtree.filter(|_| n.is_dir()) {
                    stack.push((sub, p));
                }
            }
        }
    }
    Ok(report)
}

/// Rebuilds the index from the headers of every readable pack, superseding
/// all existing index objects. Nothing is deleted before the new index is stored.
pub fn repair_index(repo: &Repo) -> Result<(usize, usize)> {
    let old = repo.index_ids()?;
    let packs = repo.storage().list(Kind::Pack)?;
    let results: Vec<(String, Result<Vec<PackEntry>>)> = packs
        .par_iter()
        .map(|(name, size)| {
            let r = PackId::from_hex(name).and_then(|id| read_pack_header(repo, &id, *size));
            (name.clone(), r)
        })
        .collect();
    let mut good = Vec::new();
    let mut bad = 0;
    for (name, r) in results {
        match r {
            Ok(entries) => good.push(IndexPack {
                id: PackId::from_hex(&name)?,
                entries,
            }),
            Err(e) => {
                tracing::warn!("pack {name} left out of the new index: {e}");
                bad += 1;
            }
        }
    }
    let n = good.len();
    write_full_index(repo, good, old.clone())?;
    for id in old {
        match repo.storage().delete(Kind::Index, &id.to_hex()) {
            Ok(()) | Err(StorageError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    repo.load_index()?;
    Ok((n, bad))
}

/// Writes `packs` as index objects; only the last one names `supersedes`, so a
/// crash part-way leaves the old indexes in force.
pub fn write_full_index(
    repo: &Repo,
    packs: Vec<IndexPack>,
    supersedes: Vec<IndexId>,
) -> Result<()> {
    let mut batches: Vec<Vec<IndexPack>> = packs.chunks(256).map(|c| c.to_vec()).collect();
    if batches.is_empty() {
        batches.push(Vec::new());
    }
    let last = batches.len() - 1;
    for (i, b) in batches.into_iter().enumerate() {
        let f = IndexFile {
            version: 1,
            supersedes: if i == last {
                supersedes.clone()
            } else {
                Vec::new()
            },
            packs: b,
        };
        let (id, bytes) = f.encode(repo.keys())?;
        match repo.storage().put(Kind::Index, &id.to_hex(), &bytes) {
            Ok(()) | Err(StorageError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
