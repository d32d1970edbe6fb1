//! Synthetic stores: one snapshot of DIRS directories × FILES files written
//! straight through the library, so the mount can be measured (and tested)
//! on millions of entries without millions of real files. File contents come
//! from a pool of POOL small chunks (0–2 KiB): a small pool keeps the index
//! small so what grows is trees; a pool as large as the file count gives the
//! index of a real tree of small files (one blob per file).

use std::sync::Arc;

use crate::error::Result;
use crate::format::blob::BlobType;
use crate::format::id::SnapshotId;
use crate::format::snapshot::Summary;
use crate::format::tree::{ChunkRef, Node, NodeKind, Tree};
use crate::ops::writer::{ParentChoice, SnapshotPlan, SnapshotWriter};
use crate::repo::Repo;

/// Writes the snapshot: `/gen/dir-NNNNNN/file-NNNNNNN.dat`, seeded, so the
/// same arguments give the same tree. `pool` distinct chunks (at least one).
pub fn generate(repo: &Arc<Repo>, dirs: u64, files: u64, pool: u64) -> Result<SnapshotId> {
    let plan = SnapshotPlan {
        host: "generated".into(),
        paths: vec![b"/gen".to_vec()],
        tags: vec!["scale".into()],
        time: None,
        root: None,
    };
    let w = SnapshotWriter::start(repo, plan, ParentChoice::None)?;
    let p = w.packer();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pool: Vec<ChunkRef> = (0..pool.max(1))
        .map(|_| {
            // At least 8 bytes: distinct ids even for a pool of millions.
            let len = 8 + (next() % 2040) as usize;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let id = p.save(BlobType::Data, &data)?;
            Ok(ChunkRef {
                id,
                size: len as u32,
            })
        })
        .collect::<Result<_>>()?;
    let now = crate::util::now_ns();
    let meta = |mut n: Node, i: u64| {
        n.mode = if n.kind == NodeKind::Dir {
            0o755
        } else {
            0o644
        };
        n.mtime = now - (i as i64) * 1_000_000_000;
        n.atime = n.mtime;
        n.ctime = n.mtime;
        n.ino = i + 2;
        n
    };
    let mut summary = Summary::default();
    let mut top = Vec::with_capacity(dirs as usize);
    for d in 0..dirs {
        let nodes: Vec<Node> = (0..files)
            .map(|f| {
                let c = pool[((d * files + f) % pool.len() as u64) as usize];
                let mut n = meta(
                    Node::bare(format!("file-{f:07}.dat").into_bytes(), NodeKind::File),
                    d * files + f,
                );
                n.size = c.size as u64;
                n.content = vec![c];
                summary.bytes += n.size;
                n
            })
            .collect();
        summary.files += files;
        let id = p.save(BlobType::Tree, &Tree::new(nodes).encode())?;
        let mut n = meta(
            Node::bare(format!("dir-{d:06}").into_bytes(), NodeKind::Dir),
            d,
        );
        n.subtree = Some(id);
        top.push(n);
    }
    summary.dirs = dirs + 1;
    let gen_id = p.save(BlobType::Tree, &Tree::new(top).encode())?;
    let mut gen = meta(Node::bare(b"gen".to_vec(), NodeKind::Dir), 0);
    gen.subtree = Some(gen_id);
    let root = p.save(BlobType::Tree, &Tree::new(vec![gen]).encode())?;
    Ok(w.finish(root, summary)?.0)
}
