//! `prune`: drops blobs no snapshot references. Packs with nothing in use are
//! deleted; packs mostly unused are repacked (their live blobs copied, still
//! sealed, into new packs). Runs under an exclusive lock and refuses to act on an
//! incomplete view: if any snapshot or tree cannot be read, nothing is deleted.
//! Order: new packs → new index (superseding the old) → delete old indexes → delete packs.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::id::BlobId;
use crate::format::index::IndexPack;
use crate::format::pack::PackWriter;
use crate::repo::Repo;
use crate::storage::ignore_missing;
use crate::storage::Kind;

#[derive(Clone, Debug)]
pub struct PruneOptions {
    pub dry_run: bool,
    /// Repack a pack when less than this fraction of its bytes is in use.
    pub repack_below: f64,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            repack_below: 0.8,
        }
    }
}

/// Live counters for a progress display.
#[derive(Debug, Default)]
pub struct PruneProgress {
    pub trees: std::sync::atomic::AtomicU64,
    /// Bytes of packs read for repacking.
    pub bytes: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Default)]
pub struct PruneReport {
    pub packs_deleted: usize,
    pub packs_repacked: usize,
    pub packs_written: usize,
    pub orphan_packs: usize,
    pub bytes_freed: u64,
    pub blobs_removed: usize,
    /// Partial objects of interrupted writes (removed unless a dry run).
    pub temporaries: usize,
}

/// Every blob reachable from a snapshot. Fails if anything is unreadable.
pub fn used_blobs(repo: &Repo, progress: &PruneProgress) -> Result<HashSet<BlobId>> {
    let mut used = HashSet::new();
    for (name, _) in repo.storage().list(Kind::Snapshot)? {
        let id = crate::format::id::SnapshotId::from_hex(&name)?;
        let s = repo.load_snapshot(&id).map_err(|e| {
            Error::InvalidInput(format!(
                "snapshot {name} is unreadable ({e}); refusing to prune (run `check`)"
            ))
        })?;
        let mut stack = vec![s.tree];
        while let Some(t) = stack.pop() {
            if !used.insert(t) {
                continue;
            }
            progress
                .trees
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tree = repo.load_tree(&t).map_err(|e| {
                Error::InvalidInput(format!(
                    "tree {} is unreadable ({e}); refusing to prune (run `check`)",
                    t.short()
                ))
            })?;
            for n in &tree.nodes {
                used.extend(n.content.iter().map(|c| c.id));
                if let Some(sub) = n.subtree.filter(|_| n.is_dir()) {
                    stack.push(sub);
                }
            }
        }
    }
    Ok(used)
}

/// Prune deletes only what it can prove nothing needs. It refuses while a
/// snapshot references a blob no index holds (the blob may sit in a pack that
/// is about to look unreferenced) or while any pack header is unreadable (what
/// such a pack holds is not known for sure).
fn refuse_on_damage(
    repo: &Repo,
    used: &HashSet<BlobId>,
    stored: &HashMap<String, u64>,
) -> Result<()> {
    let unindexed = {
        let idx = repo.index().read();
        used.iter().filter(|b| !idx.contains(b)).count()
    };
    if unindexed > 0 {
        return Err(Error::InvalidInput(format!(
            "snapshots reference {unindexed} blob(s) that no index holds; refusing to prune, \
             since a pack that holds them would look unused (run `check`, then `check --repair`)"
        )));
    }
    let mut bad: Vec<String> = stored
        .par_iter()
        .filter_map(|(name, size)| {
            let r = crate::format::id::PackId::from_hex(name)
                .and_then(|id| repo.read_pack_header(&id, *size));
            r.err().map(|e| format!("pack {name}: {e}"))
        })
        .collect();
    if !bad.is_empty() {
        bad.sort();
        return Err(Error::InvalidInput(format!(
            "{} pack header(s) are unreadable; refusing to prune (run `check --repair`, which \
             rewrites a damaged pack from the index): {}",
            bad.len(),
            bad.join("; ")
        )));
    }
    Ok(())
}

pub fn prune(repo: &Repo, opts: &PruneOptions, progress: &PruneProgress) -> Result<PruneReport> {
    let _lock = crate::format::lock::acquire(repo.storage(), repo.keys(), true)?;
    let bad = repo.load_index()?;
    if !bad.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{} index object(s) are damaged; run `check --repair` before pruning",
            bad.len()
        )));
    }
    let used = used_blobs(repo, progress)?;
    let stored: HashMap<String, u64> = repo.storage().list(Kind::Pack)?.into_iter().collect();
    refuse_on_damage(repo, &used, &stored)?;

    let packs = repo.index().read().by_pack();
    for (id, entries) in &packs {
        if !stored.contains_key(&id.to_hex()) && entries.iter().any(|e| used.contains(&e.id)) {
            return Err(Error::InvalidInput(format!(
                "pack {} is missing but still in use; refusing to prune (run `check`)",
                id.to_hex()
            )));
        }
    }

    let mut report = PruneReport::default();
    let mut keep = Vec::new();
    let mut delete = Vec::new();
    let mut repack = Vec::new();
    for (id, entries) in packs {
        let total: u64 = entries.iter().map(|e| e.length as u64).sum();
        let live: u64 = entries
            .iter()
            .filter(|e| used.contains(&e.id))
            .map(|e| e.length as u64)
            .sum();
        if live == 0 {
            report.blobs_removed += entries.len();
            delete.push(id);
        } else if (live as f64) < opts.repack_below * total as f64 {
            report.blobs_removed += entries.iter().filter(|e| !used.contains(&e.id)).count();
            repack.push((id, entries));
        } else {
            keep.push(IndexPack { id, entries });
        }
    }
    let indexed: HashSet<String> = keep
        .iter()
        .map(|p| p.id.to_hex())
        .chain(delete.iter().map(|p| p.to_hex()))
        .chain(repack.iter().map(|p| p.0.to_hex()))
        .collect();
    let orphans: Vec<String> = stored
        .keys()
        .filter(|n| !indexed.contains(*n))
        .cloned()
        .collect();
    report.orphan_packs = orphans.len();
    report.packs_deleted = delete.len() + orphans.len();
    report.packs_repacked = repack.len();
    let size_of = |n: &str| stored.get(n).copied().unwrap_or(0);
    report.bytes_freed = delete.iter().map(|p| size_of(&p.to_hex())).sum::<u64>()
        + orphans.iter().map(|n| size_of(n)).sum::<u64>();
    let locks = crate::format::lock::list_locks(&**repo.storage(), repo.keys())?;
    let temps = crate::format::lock::stale_temporaries(&**repo.storage(), &locks, !opts.dry_run)?;
    report.temporaries = temps.len();
    report.bytes_freed += temps.iter().map(|t| t.1).sum::<u64>();
    if opts.dry_run {
        // What the real run would write: the live blobs of the repacked packs,
        // filling packs of the configured size.
        let live: u64 = repack
            .iter()
            .flat_map(|(_, entries)| entries.iter().filter(|e| used.contains(&e.id)))
            .map(|e| e.length as u64)
            .sum();
        report.packs_written = live.div_ceil(repo.config().pack_size.max(1) as u64) as usize;
        // And what it would free by repacking: the old packs, less the live
        // blobs written again (the new packs' headers aside).
        report.bytes_freed += repack
            .iter()
            .map(|(id, _)| size_of(&id.to_hex()))
            .sum::<u64>()
            .saturating_sub(live);
        return Ok(report);
    }

    // Copy live blobs out of packs being repacked, verifying each on the way.
    let mut written = Vec::new();
    let mut writer = PackWriter::new();
    let mut copied = HashSet::new();
    for (id, entries) in &repack {
        let bytes = repo.storage().get(Kind::Pack, &id.to_hex())?;
        progress
            .bytes
            .fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        for e in entries.iter().filter(|e| used.contains(&e.id)) {
            if !copied.insert(e.id) {
                continue;
            }
            let sealed = bytes
                .get(e.offset as usize..(e.offset + e.length) as usize)
                .ok_or_else(|| {
                    Error::corrupt(format!("pack {}", id.short()), "blob past the end")
                })?;
            repo.decode_blob(e.blob_type, &e.id, sealed, e.raw_length)?;
            writer.add(e.blob_type, e.id, sealed, e.raw_length);
            if writer.size() >= repo.config().pack_size as usize {
                written.push(repo.store_pack(std::mem::take(&mut writer))?);
            }
        }
        report.bytes_freed += size_of(&id.to_hex());
    }
    if !writer.is_empty() {
        written.push(repo.store_pack(writer)?);
    }
    report.packs_written = written.len();
    report.bytes_freed = report
        .bytes_freed
        .saturating_sub(written.iter().map(|(_, n)| *n).sum::<u64>());

    let old = repo.index_ids()?;
    keep.extend(written.into_iter().map(|(p, _)| p));
    repo.write_full_index(keep, old.clone())?;
    for id in old {
        ignore_missing(repo.storage().delete(Kind::Index, &id.to_hex()))?;
    }
    for id in delete.iter().chain(repack.iter().map(|r| &r.0)) {
        ignore_missing(repo.storage().delete(Kind::Pack, &id.to_hex()))?;
    }
    for n in &orphans {
        ignore_missing(repo.storage().delete(Kind::Pack, n))?;
    }
    repo.load_index()?;
    Ok(report)
}
