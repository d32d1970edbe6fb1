//! Unit tests of the writable mount's file lifecycle on a store in memory:
//! what a close journals, without FUSE in between (the mount tests in
//! `tests/writable.rs` run the same paths through the kernel).

use std::sync::Arc;

use super::journal::{self, NewMeta, Record};
use super::namespace::ROOT;
use super::{SyncMode, WritableFs, WritableOptions};
use crate::format::keyfile::KdfParams;
use crate::format::tree::NodeKind;
use crate::repo::Repo;
use crate::storage::MemoryStorage;

fn mount(spool: &std::path::Path) -> WritableFs {
    let kdf = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let repo = Arc::new(Repo::create(Arc::new(MemoryStorage::new()), Some(b"pw"), kdf).unwrap());
    let opts = WritableOptions {
        spool_dir: spool.to_path_buf(),
        spool_cap: 1 << 30,
        host: "h".into(),
        tags: vec![],
        cache_bytes: 1 << 20,
        sync: SyncMode::Lazy,
    };
    WritableFs::new(repo, None, opts).unwrap().0
}

fn file_meta() -> NewMeta {
    NewMeta {
        kind: NodeKind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        time: 1,
        rdev: 0,
        target: Vec::new(),
    }
}

/// The journaled contents of `path`, in order.
fn contents(spool: &std::path::Path, path: &[u8]) -> Vec<Vec<u8>> {
    journal::read(&spool.join("journal"))
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            Record::Content {
                path: p,
                inline: Some(b),
                ..
            } if p == path => Some(b.to_vec()),
            _ => None,
        })
        .collect()
}

/// `close()` sends FLUSH, then RELEASE: the same bytes are journaled and
/// stored once, and a write after a flush is journaled again.
#[test]
fn a_close_journals_its_bytes_once() {
    let d = tempfile::tempdir().unwrap();
    let fs = mount(d.path());
    let (_, fh) = fs.create(ROOT, b"a", file_meta(), true).unwrap();
    let fh = fh.unwrap();
    fs.write(fh, 0, b"hello", false).unwrap();
    fs.flush(fh, false).unwrap();
    // What the FUSE shell's release does.
    fs.flush(fh, false).unwrap();
    fs.release(fh);
    assert_eq!(contents(d.path(), b"a"), vec![b"hello".to_vec()]);

    // Two closes of one file through dup'd descriptors, a write between.
    let fh = fs
        .open(fs.lookup(ROOT, b"a").unwrap(), true, false)
        .unwrap();
    fs.write(fh, 5, b" world", false).unwrap();
    fs.flush(fh, false).unwrap();
    fs.write(fh, 11, b"!", false).unwrap();
    fs.flush(fh, false).unwrap();
    fs.flush(fh, false).unwrap();
    fs.release(fh);
    assert_eq!(
        contents(d.path(), b"a"),
        vec![
            b"hello".to_vec(),
            b"hello world".to_vec(),
            b"hello world!".to_vec()
        ]
    );
    // And the committed snapshot has the last bytes.
    let id = fs.commit().unwrap();
    let repo = fs.repo().clone();
    let snap = repo.load_snapshot(&id).unwrap();
    let root = repo.load_tree(&snap.tree).unwrap();
    let a = root.nodes.iter().find(|n| n.name == b"a").unwrap();
    assert_eq!(a.size, 12);
}
