//! Recovering a writable session that died: its journal is replayed onto
//! the snapshot it started from (closed files' bytes come from the journal
//! itself or the spool), and the rebuilt namespace is committed by the same
//! [`write_snapshot`](super::commit::write_snapshot) a live session uses.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::id::SnapshotId;
use crate::fs_error::{FsError, FsResult};
use crate::ops::local_node::NameCache;
use crate::pipeline::packer::Packer;
use crate::repo::Repo;

use super::journal::{self, Record};
use super::namespace::Namespace;
use super::now;
use crate::ops::exclude::Excludes;

/// Replays and commits a journal left in `spool` by a mount that did not
/// finish. Returns the snapshot it committed, if there was anything to do.
/// The caller holds the spool's lock.
pub fn recover_dir(repo: &Arc<Repo>, spool: &Path) -> Result<Option<SnapshotId>> {
    let path = spool.join("journal");
    if !path.exists() {
        return Ok(None);
    }
    let records = journal::read(&path)?;
    let Some(Record::Header {
        store_id,
        base,
        host,
        tags,
    }) = records.first().cloned()
    else {
        return Err(Error::corrupt("journal", "no header"));
    };
    if store_id != repo.config().id {
        return Err(Error::InvalidInput(format!(
            "the journal in {} belongs to another store ({})",
            spool.display(),
            &store_id[..8.min(store_id.len())]
        )));
    }
    let mut excludes = Excludes::default();
    for r in &records {
        if let Record::Excludes { patterns } = r {
            // A pattern this build cannot read keeps everything: leaving out
            // too little loses nothing.
            match Excludes::new(patterns.clone()) {
                Ok(e) => excludes = e,
                Err(e) => tracing::warn!("journal excludes {patterns:?} not applied: {e}"),
            }
        }
    }
    if records
        .iter()
        .all(|r| matches!(r, Record::Header { .. } | Record::Excludes { .. }))
    {
        let _ = std::fs::remove_file(&path);
        return Ok(None);
    }
    let started = std::time::Instant::now();
    repo.load_index()?;
    let base_snapshot = base.map(|id| repo.load_snapshot(&id)).transpose()?;
    let mut ns = Namespace::load(repo, base_snapshot.as_ref(), now())?;
    let packer = Packer::new(repo.clone());
    // A large file's close is journaled twice: first with its spool file,
    // then with its chunks once they are stored, after which the spool file
    // may be gone. Such a first record needs no replay of its bytes.
    let mut last_of_spool = std::collections::HashMap::new();
    for (i, r) in records.iter().enumerate() {
        if let Record::Content {
            spool: Some(name), ..
        } = r
        {
            last_of_spool.insert(name.as_str(), i);
        }
    }
    for (i, r) in records.iter().enumerate().skip(1) {
        let superseded = match r {
            Record::Content {
                spool: Some(name),
                chunks,
                inline: None,
                ..
            } => {
                chunks.is_empty() && last_of_spool[name.as_str()] > i && !spool.join(name).exists()
            }
            _ => false,
        };
        if superseded {
            continue;
        }
        if let Err(e) = replay(&mut ns, r, spool, &packer, repo) {
            tracing::warn!("journal replay: skipping {}: {e}", r.describe());
        }
    }
    // The one commit, as a live session makes it; no session is needed.
    // (`write_snapshot` flushes the packer before it seals.)
    let origin = super::commit::Origin {
        host: &host,
        tags: &tags,
        base,
    };
    let tree = super::commit::tree(&ns, &packer, &NameCache::default(), &excludes)
        .map_err(|e| Error::InvalidInput(format!("building the recovered tree: {e}")))?;
    let id = super::commit::write_snapshot(repo, &packer, &origin, tree, started)?;
    // Everything the journal and the spool held is in that snapshot now.
    let _ = std::fs::remove_file(&path);
    // (Not the lock file: the caller holds it, and a new file would let a
    // second session in beside this one.)
    for e in std::fs::read_dir(spool).into_iter().flatten().flatten() {
        if e.file_name() != super::SPOOL_LOCK_FILE {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(Some(id))
}

fn replay(
    ns: &mut Namespace,
    r: &Record,
    spool: &Path,
    packer: &Packer,
    repo: &Arc<Repo>,
) -> FsResult<()> {
    let t = now();
    match r {
        Record::Header { .. } | Record::Excludes { .. } => {}
        Record::Create { path, meta } => {
            let (dir, name) = ns.resolve_parent(path)?;
            ns.create(dir, name, meta)?;
        }
        Record::Link { target, path } => {
            let ino = ns.resolve(target)?;
            let (dir, name) = ns.resolve_parent(path)?;
            ns.link(ino, dir, name, t)?;
        }
        Record::Unlink { path } => {
            let (dir, name) = ns.resolve_parent(path)?;
            let is_dir = ns.get(ns.lookup(dir, name)?)?.is_dir();
            ns.unlink(dir, name, is_dir, t)?;
        }
        Record::Rename { from, to } => {
            let (d1, n1) = ns.resolve_parent(from)?;
            let (d2, n2) = ns.resolve_parent(to)?;
            ns.rename(d1, n1, d2, n2, false, t)?;
        }
        Record::SetAttr {
            path,
            change,
            ctime,
        } => {
            ns.get_mut(ns.resolve(path)?)?.set_attrs(*change, *ctime);
        }
        Record::SetXattrs { path, xattrs } => {
            ns.get_mut(ns.resolve(path)?)?.xattrs = xattrs.clone();
        }
        Record::Content {
            path,
            size,
            mtime,
            chunks,
            spool: file,
            inline,
        } => {
            let ino = ns.resolve(path)?;
            // A close journals its bytes before they are chunked (the
            // chunks follow in a later record): no chunks is not "stored".
            let all_stored = chunks.iter().map(|c| c.size as u64).sum::<u64>() == *size && {
                let idx = repo.index().read();
                chunks.iter().all(|c| idx.contains(&c.id))
            };
            let content = if all_stored {
                chunks.clone()
            } else if let Some(bytes) = inline {
                packer.save_stream(&bytes[..], *size)?
            } else if file.is_none() {
                // The chunks of an in-memory file that never became durable:
                // its earlier record (with the bytes) already restored it.
                return Ok(());
            } else {
                // The packs with these chunks never became durable: store the
                // bytes again from the spool.
                let name = file
                    .as_ref()
                    .ok_or(FsError::Io("content lost: no spool file".into()))?;
                let f = File::open(spool.join(name))
                    .map_err(|e| FsError::Io(format!("spool {name}: {e}")))?;
                let c = packer.save_stream(std::io::BufReader::new(f), *size)?;
                let total: u64 = c.iter().map(|x| x.size as u64).sum();
                if total != *size {
                    return Err(FsError::Io(format!(
                        "spool {name} no longer matches its close"
                    )));
                }
                c
            };
            let i = ns.get_mut(ino)?;
            i.content = content;
            i.size = *size;
            i.mtime = *mtime;
        }
    }
    Ok(())
}
