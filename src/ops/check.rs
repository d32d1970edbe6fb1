//! `check`: proves a store is whole. Indexes decode, every indexed pack exists
//! and its header agrees with the index, every snapshot and tree decodes, and
//! every blob they reference is indexed. `read_data` also reads every pack in full
//! and verifies every blob. Repairs live in [`crate::ops::repair`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::blob::BlobType;
use crate::format::id::{content_hash, BlobId, PackId};
use crate::format::pack::PackEntry;
use crate::repo::Repo;
use crate::storage::Kind;

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
    /// One line per damaged item behind the summaries in `errors` (`check -v`).
    pub details: Vec<String>,
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
    // The config and the keys, each copy of each.
    let root = crate::unlock::check_root(&**repo.storage(), repo.config())?;
    report.errors.extend(root.errors);
    report.warnings.extend(root.warnings);
    for (id, e) in repo.load_index()? {
        report.errors.push(format!(
            "index {}: {e} (`check --repair` rebuilds the index from the packs)",
            id.to_hex()
        ));
    }
    // Packs: stored vs indexed, header vs index.
    let stored: HashMap<String, u64> = repo.storage().list(Kind::Pack)?.into_iter().collect();
    let indexed = repo.index().read().by_pack();
    let unindexed: Vec<(&String, u64)> = stored
        .iter()
        .filter(|(n, _)| PackId::from_hex(n).map_or(true, |id| !indexed.contains_key(&id)))
        .map(|(n, s)| (n, *s))
        .collect();
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
        let header = match repo.read_pack_header(id, size) {
            Ok(h) => h,
            Err(e) => {
                errors.lock().push(format!(
                    "pack {}: {e} (its blobs are still found through the index; `check --repair` rewrites the pack with a fresh header)",
                    id.to_hex()
                ));
                if read_data {
                    errors.lock().extend(verify_pack_data(repo, id, want));
                }
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

    // Leftovers of killed processes: harmless, but worth a word.
    let locks = crate::format::lock::list_locks(&**repo.storage(), repo.keys())?;
    let stale = crate::format::lock::stale_locks(&locks);
    if !stale.is_empty() {
        report.warnings.push(format!(
            "{} stale lock(s) ({}): the next writer on their host clears those of dead processes; `unlock` removes them now",
            stale.len(),
            stale.join("; ")
        ));
    }
    let temps = crate::format::lock::stale_temporaries(&**repo.storage(), &locks, false)?;
    if !temps.is_empty() {
        report.warnings.push(format!(
            "{} partial object(s) of interrupted writes ({} bytes, e.g. {}): `prune` removes them",
            temps.len(),
            temps.iter().map(|t| t.1).sum::<u64>(),
            temps[0].0
        ));
    }

    // Snapshots and trees: every referenced blob must be indexed.
    let missing = check_snapshots(repo, &mut report)?;

    // Packs no index lists: harmless leftovers of an interrupted backup, unless
    // they hold what a snapshot needs or cannot be read at all.
    for (name, size) in unindexed {
        let header = PackId::from_hex(name).and_then(|id| repo.read_pack_header(&id, size));
        match header {
            Ok(entries) => {
                let needed = entries.iter().filter(|e| missing.contains(&e.id)).count();
                if needed > 0 {
                    report.errors.push(format!(
                        "pack {name} is in no index but holds {needed} blob(s) that snapshots need: \
                         `check --repair` indexes it (do not `prune` before)"
                    ));
                } else {
                    report.warnings.push(format!(
                        "pack {name} is in no index and holds nothing a snapshot needs \
                         (left by an interrupted backup; `prune` removes it)"
                    ));
                }
            }
            Err(e) => report.errors.push(format!(
                "pack {name} is in no index and its header is unreadable ({e}): what it holds \
                 cannot be known, so `prune` will not run while it is there"
            )),
        }
    }
    Ok(report)
}

/// Walks every snapshot's trees; returns the referenced blobs no index holds.
/// Missing chunks are summarised per snapshot; each one is in `details`.
fn check_snapshots(repo: &Repo, report: &mut CheckReport) -> Result<HashSet<BlobId>> {
    let names = repo.storage().list(Kind::Snapshot)?;
    let mut roots = Vec::new();
    for (name, _) in names {
        match crate::format::id::SnapshotId::from_hex(&name).and_then(|id| repo.load_snapshot(&id))
        {
            Ok(s) => roots.push((name, s.tree)),
            Err(e) => report.errors.push(format!("snapshot {name}: {e}")),
        }
    }
    report.snapshots = roots.len();
    let mut missing = HashSet::new();
    let mut seen = HashSet::new();
    for (snap, root) in roots {
        let short = &snap[..8];
        // Chunks and files of this snapshot that are not indexed.
        let (mut chunks, mut files, mut first) = (0usize, 0usize, None);
        let mut stack = vec![(root, b"/".to_vec())];
        while let Some((tid, path)) = stack.pop() {
            if !seen.insert(tid) {
                continue;
            }
            if repo.locate(&tid).is_none() {
                missing.insert(tid);
            }
            let tree = match repo.load_tree(&tid) {
                Ok(t) => t,
                Err(e) => {
                    report.errors.push(format!(
                        "snapshot {short}: tree {} at {}: {e}",
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
                let mut file_missing = false;
                for c in &n.content {
                    report.blobs += 1;
                    match repo.locate(&c.id) {
                        Some(l) if l.blob_type == BlobType::Data => {}
                        _ => {
                            missing.insert(c.id);
                            chunks += 1;
                            file_missing = true;
                            report.details.push(format!(
                                "snapshot {short}: {}: chunk {} is in no index",
                                String::from_utf8_lossy(&p),
                                c.id.to_hex()
                            ));
                        }
                    }
                }
                if file_missing {
                    files += 1;
                    first.get_or_insert_with(|| String::from_utf8_lossy(&p).into_owned());
                }
                if let Some(sub) = n.subtree.filter(|_| n.is_dir()) {
                    stack.push((sub, p));
                }
            }
        }
        if chunks > 0 {
            report.errors.push(format!(
                "snapshot {short}: {chunks} chunk(s) of {files} file(s) are in no index (first: {}; \
                 `check -v` lists each); `check --repair` rebuilds the index from the packs",
                first.unwrap_or_default()
            ));
        }
    }
    Ok(missing)
}
