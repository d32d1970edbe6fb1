//! Committing a writable mount (packs → index → trees → snapshot, then a new
//! journal) and recovering one that died: replay its journal and commit.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::id::{BlobId, SnapshotId};
use crate::format::snapshot::Summary;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::ops::writer::{save_snapshot, SnapshotPlan};
use crate::pipeline::packer::Packer;
use crate::repo::Repo;

use super::journal::{self, Journal, Record};
use super::namespace::{Namespace, WInode, ROOT};
use super::{now, WError, WResult, WritableFs, WritableOptions, MOUNT_DEV};

impl WritableFs {
    /// Writes a snapshot of everything closed so far: packs → index → trees →
    /// snapshot; then starts a new journal on top of it.
    pub fn commit(&self) -> WResult<SnapshotId> {
        let _g = self.commit_lock.lock();
        let _closes = self.close_gate.write();
        let started = std::time::Instant::now();
        // Every close so far must be stored before its chunks go in a tree.
        self.storer.wait_idle();
        self.check_store_error()?;
        self.packer.flush()?;
        let mut summary = Summary::default();
        let (root, root_meta) = {
            let ns = self.ns.lock();
            let tree = self.build_tree(&ns, ROOT, &mut summary)?;
            // The mount's root keeps what `cp -a SRC/. MNT/` set on it.
            (tree, self.meta_node(b"/".to_vec(), ROOT, ns.get(ROOT)?))
        };
        let plan = SnapshotPlan {
            host: self.opts.host.clone(),
            paths: vec![b"/".to_vec()],
            tags: self.opts.tags.clone(),
            time: None,
            root: Some(root_meta),
        };
        let base = *self.base.lock();
        let (id, _) = save_snapshot(
            &self.repo,
            &self.packer,
            &plan,
            base,
            root,
            summary,
            started,
        )?;
        let header = Record::Header {
            store_id: self.repo.config().id.clone(),
            base: Some(id),
            host: self.opts.host.clone(),
            tags: self.opts.tags.clone(),
        };
        // Hold the namespace while switching journals so no change falls between.
        let freed: Vec<String> = {
            let mut ns = self.ns.lock();
            *self.journal.lock() = Journal::create(
                &self.opts.spool_dir.join("journal"),
                &header,
                self.opts.sync == super::SyncMode::Close,
            )?;
            *self.base.lock() = Some(id);
            self.changed.store(false, Ordering::Relaxed);
            Self::take_clean_spools(&mut ns)
        };
        self.drop_spools(freed);
        *self.last_commit.lock() = Some(id);
        tracing::info!("committed snapshot {}", id.short());
        Ok(id)
    }

    /// An inode's metadata as a tree node (no size, content or subtree).
    fn meta_node(&self, name: Vec<u8>, ino: u64, i: &WInode) -> Node {
        Node {
            name,
            kind: i.kind,
            mode: i.mode,
            uid: i.uid,
            gid: i.gid,
            user: if i.user.is_empty() {
                self.names.user(i.uid)
            } else {
                i.user.clone()
            },
            group: if i.group.is_empty() {
                self.names.group(i.gid)
            } else {
                i.group.clone()
            },
            atime: i.atime,
            mtime: i.mtime,
            ctime: i.ctime,
            dev: MOUNT_DEV,
            ino,
            nlink: if i.is_dir() {
                1
            } else {
                i.links.len().max(1) as u64
            },
            rdev: i.rdev,
            xattrs: i.xattrs.clone(),
            target: i.target.clone(),
            ..Node::bare(Vec::new(), i.kind)
        }
    }

    pub(super) fn build_tree(
        &self,
        ns: &Namespace,
        dir: u64,
        sum: &mut Summary,
    ) -> WResult<BlobId> {
        let mut nodes = Vec::new();
        for (name, ino) in ns.to_nodes(dir) {
            let i = ns.get(ino)?;
            let subtree = if i.is_dir() {
                sum.dirs += 1;
                Some(self.build_tree(ns, ino, sum)?)
            } else {
                None
            };
            let size = match i.kind {
                NodeKind::File => {
                    sum.files += 1;
                    let s: u64 = i.content.iter().map(|c| c.size as u64).sum();
                    sum.bytes += s;
                    s
                }
                NodeKind::Dir => 0,
                _ => {
                    sum.others += 1;
                    0
                }
            };
            nodes.push(Node {
                size,
                content: if i.kind == NodeKind::File {
                    i.content.clone()
                } else {
                    Vec::new()
                },
                subtree,
                ..self.meta_node(name, ino, i)
            });
        }
        let tree = Tree::new(nodes);
        Ok(self
            .packer
            .save(crate::format::blob::BlobType::Tree, &tree.encode())?)
    }
}

/// Replays and commits a journal left in `spool` by a mount that did not
/// finish. Returns the snapshot it committed, if there was anything to do.
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
    if records.len() == 1 {
        let _ = std::fs::remove_file(&path);
        return Ok(None);
    }
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
    let opts = WritableOptions {
        spool_dir: spool.to_path_buf(),
        spool_cap: u64::MAX,
        host,
        tags,
        cache_bytes: 64 << 20,
        sync: super::SyncMode::Close,
    };
    let header = Record::Header {
        store_id,
        base,
        host: opts.host.clone(),
        tags: opts.tags.clone(),
    };
    let journal = Journal::create(&spool.join("journal.recovering"), &header, false)?;
    let fs = WritableFs::assemble(repo.clone(), opts, ns, journal, base, |_| packer)?;
    let id = fs
        .commit()
        .map_err(|e| Error::InvalidInput(format!("committing recovered files: {e:?}")))?;
    // The commit wrote a fresh journal; the mount that follows replaces it.
    let _ = std::fs::remove_file(spool.join("journal.recovering"));
    let _ = std::fs::remove_file(&path);
    for e in std::fs::read_dir(spool).into_iter().flatten().flatten() {
        if e.file_name() != "journal" {
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
) -> WResult<()> {
    let t = now();
    match r {
        Record::Header { .. } => {}
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
            mode,
            uid,
            gid,
            atime,
            mtime,
            ctime,
        } => {
            ns.get_mut(ns.resolve(path)?)?
                .set_attrs(*mode, *uid, *gid, *atime, *mtime, *ctime);
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
                    .ok_or(WError::Io("content lost: no spool file".into()))?;
                let f = File::open(spool.join(name))
                    .map_err(|e| WError::Io(format!("spool {name}: {e}")))?;
                let c = packer.save_stream(std::io::BufReader::new(f), *size)?;
                let total: u64 = c.iter().map(|x| x.size as u64).sum();
                if total != *size {
                    return Err(WError::Io(format!(
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
