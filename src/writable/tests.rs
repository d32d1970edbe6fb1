//! Unit tests of the writable mount's file lifecycle on a store in memory:
//! what a close journals, without FUSE in between (the mount tests in
//! `tests/writable.rs` run the same paths through the kernel).

use std::sync::Arc;

use super::journal::{self, NewMeta, Record};
use super::namespace::ROOT;
use super::{SyncMode, WritableFs, WritableOptions};
use crate::format::tree::NodeKind;
use crate::storage::MemoryStorage;

fn mount(spool: &std::path::Path) -> WritableFs {
    mount_excluding(spool, &[])
}

fn mount_excluding(spool: &std::path::Path, globs: &[&str]) -> WritableFs {
    let repo = crate::repo::test_repo(Arc::new(MemoryStorage::new()));
    let opts = WritableOptions {
        spool_dir: spool.to_path_buf(),
        spool_cap: 1 << 30,
        host: "h".into(),
        tags: vec![],
        cache_bytes: 1 << 20,
        sync: SyncMode::Lazy,
        excludes: super::Excludes::new(globs.iter().map(|g| g.to_string()).collect()).unwrap(),
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

/// Every `close()` sends FLUSH (a reader's too): the same bytes are
/// journaled and stored once, and a write after a flush is journaled again.
#[test]
fn a_close_journals_its_bytes_once() {
    let d = tempfile::tempdir().unwrap();
    let fs = mount(d.path());
    let ino = fs.create(ROOT, b"a", file_meta()).unwrap();
    fs.write(ino, 0, b"hello", false).unwrap();
    fs.flush(ino, false).unwrap();
    // A reader's close of the same file.
    fs.flush(ino, false).unwrap();
    assert_eq!(contents(d.path(), b"a"), vec![b"hello".to_vec()]);

    // Two closes of one file through dup'd descriptors, a write between.
    fs.write(ino, 5, b" world", false).unwrap();
    fs.flush(ino, false).unwrap();
    fs.write(ino, 11, b"!", false).unwrap();
    fs.flush(ino, false).unwrap();
    fs.flush(ino, false).unwrap();
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

/// A file unlinked while the kernel still holds it (a process has it open)
/// can still be read and written; it goes, spool and all, when the kernel
/// forgets it — not before.
#[test]
fn an_unlinked_file_lives_until_the_kernel_forgets_it() {
    let d = tempfile::tempdir().unwrap();
    let fs = mount(d.path());
    let ino = fs.create(ROOT, b"tmp", file_meta()).unwrap();
    fs.looked_up(ino, |_| ()).unwrap();
    fs.write(ino, 0, b"scratch", false).unwrap();
    fs.unlink(ROOT, b"tmp", false).unwrap();
    assert!(fs.lookup(ROOT, b"tmp").is_err());
    fs.write(ino, 7, b" space", false).unwrap();
    fs.flush(ino, false).unwrap();
    assert_eq!(fs.read(ino, 0, 100).unwrap(), b"scratch space");
    fs.forget(ino, 1);
    assert!(
        fs.read(ino, 0, 100).is_err(),
        "forgotten and nameless: gone"
    );
    // Nothing of it is in the snapshot.
    let id = fs.commit().unwrap();
    let repo = fs.repo().clone();
    let root = repo
        .load_tree(&repo.load_snapshot(&id).unwrap().tree)
        .unwrap();
    assert!(root.nodes.is_empty());
}

/// A drain drops the spools of closed files while they may still be open:
/// a read then comes from the store, and the next write starts a new spool
/// from the stored bytes.
#[test]
fn a_drained_file_reads_from_the_store_and_takes_new_writes() {
    let d = tempfile::tempdir().unwrap();
    let fs = mount(d.path());
    let ino = fs.create(ROOT, b"f", file_meta()).unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    fs.write(ino, 0, &big, false).unwrap();
    fs.flush(ino, false).unwrap();
    fs.storer.wait_idle();
    fs.drain_spool().unwrap();
    assert!(fs.with_inode(ino, |i| i.spool.is_none()).unwrap());
    assert_eq!(fs.read(ino, 1000, 50).unwrap(), &big[1000..1050]);
    fs.write(ino, 10, b"XY", false).unwrap();
    fs.flush(ino, false).unwrap();
    let mut want = big.clone();
    want[10..12].copy_from_slice(b"XY");
    assert_eq!(fs.read(ino, 0, 400_000).unwrap(), want);
    let id = fs.commit().unwrap();
    let repo = fs.repo().clone();
    let root = repo
        .load_tree(&repo.load_snapshot(&id).unwrap().tree)
        .unwrap();
    assert_eq!(root.nodes[0].size, want.len() as u64);
}

/// A front end without FUSE drives a whole session: files created and
/// closed through the core's API land in the snapshot `finish` commits,
/// interval commits stop at `finish`, and where it was served is noted.
#[test]
fn a_session_without_fuse_commits_what_was_closed() {
    use super::session::{served_at, Finished, Session};
    let d = tempfile::tempdir().unwrap();
    let fs = mount(d.path());
    let repo = fs.repo().clone();
    let opts = WritableOptions {
        spool_dir: d.path().join("session"),
        spool_cap: 1 << 30,
        host: "h".into(),
        tags: vec![],
        cache_bytes: 1 << 20,
        sync: SyncMode::Lazy,
        excludes: Default::default(),
    };
    drop(fs);
    let started = Session::start(repo.clone(), None, opts, b"http://127.0.0.1:1/").unwrap();
    assert!(started.recovered.is_none());
    let mut s = started.session;
    s.commit_every(std::time::Duration::from_secs(3600), |_| {});
    let ino = s.fs().create(ROOT, b"report.txt", file_meta()).unwrap();
    s.fs().write(ino, 0, b"quarterly", false).unwrap();
    s.fs().flush(ino, false).unwrap();

    assert_eq!(
        served_at(&d.path().join("session")).unwrap(),
        b"http://127.0.0.1:1/"
    );
    let Finished::Committed(id) = s.finish().unwrap() else {
        panic!("a changed session commits at its end");
    };
    let snap = repo.load_snapshot(&id).unwrap();
    let node = repo.find_node(&snap, b"/report.txt").unwrap();
    assert_eq!(node.size, 9);
    let bytes: Vec<u8> = node
        .content
        .iter()
        .flat_map(|c| {
            repo.read_blob(crate::format::blob::BlobType::Data, &c.id)
                .unwrap()
        })
        .collect();
    assert_eq!(bytes, b"quarterly");
}

/// The bytes of `path` in snapshot `id`.
fn snapshot_file(
    repo: &crate::repo::Repo,
    id: &crate::format::id::SnapshotId,
    path: &[u8],
) -> Vec<u8> {
    let snap = repo.load_snapshot(id).unwrap();
    let node = repo.find_node(&snap, path).unwrap();
    node.content
        .iter()
        .flat_map(|c| {
            repo.read_blob(crate::format::blob::BlobType::Data, &c.id)
                .unwrap()
        })
        .collect()
}

/// Changes made while a commit saves its snapshot are not in it: they go
/// on into the journal the commit starts, so a crash right after the commit
/// loses none of them (nor a close that builds on them), and recovery needs
/// no second session to commit them.
#[test]
fn changes_during_a_commit_survive_a_crash_after_it() {
    let d = tempfile::tempdir().unwrap();
    let fs = mount(d.path());
    let repo = fs.repo().clone();
    let a = fs.create(ROOT, b"a", file_meta()).unwrap();
    fs.write(a, 0, b"first", false).unwrap();
    fs.flush(a, false).unwrap();
    let mut b = 0;
    let first = fs
        .commit_with(|| {
            fs.rename(ROOT, b"a", ROOT, b"a2", false).unwrap();
            b = fs.create(ROOT, b"b", file_meta()).unwrap();
        })
        .unwrap();
    assert!(fs.has_changes(), "what came during the commit is not in it");
    let tree = repo
        .load_tree(&repo.load_snapshot(&first).unwrap().tree)
        .unwrap();
    let names: Vec<&[u8]> = tree.nodes.iter().map(|n| &n.name[..]).collect();
    assert_eq!(
        names,
        vec![&b"a"[..]],
        "the commit holds its instant's tree"
    );
    // A close that needs the created name, then a crash (no last commit).
    fs.write(b, 0, b"second", false).unwrap();
    fs.flush(b, false).unwrap();
    fs.sync_journal().unwrap();
    drop(fs);
    let got = super::recover(&repo, &[d.path().to_path_buf()]).unwrap();
    assert_eq!(got.len(), 1, "the journal had changes to commit");
    let id = got[0].1;
    assert_eq!(repo.load_snapshot(&id).unwrap().parent, Some(first));
    assert_eq!(snapshot_file(&repo, &id, b"/a2"), b"first");
    assert_eq!(snapshot_file(&repo, &id, b"/b"), b"second");
    assert!(
        !d.path().join("journal").exists(),
        "a recovered spool is emptied"
    );
}

/// A large file renamed after its close: its stored chunks are journaled
/// under the name it has by then, so recovery finds them after the rename.
#[test]
fn a_large_file_renamed_after_its_close_recovers_under_its_new_name() {
    let d = tempfile::tempdir().unwrap();
    let fs = mount(d.path());
    let repo = fs.repo().clone();
    let big: Vec<u8> = (0..(3u32 << 20)).map(|i| (i * 31 % 251) as u8).collect();
    let ino = fs.create(ROOT, b"large", file_meta()).unwrap();
    for (k, piece) in big.chunks(1 << 20).enumerate() {
        fs.write(ino, (k << 20) as u64, piece, false).unwrap();
    }
    fs.flush(ino, false).unwrap();
    fs.rename(ROOT, b"large", ROOT, b"moved", false).unwrap();
    fs.storer.wait_idle();
    fs.sync_journal().unwrap();
    drop(fs);
    let got = super::recover(&repo, &[d.path().to_path_buf()]).unwrap();
    assert_eq!(snapshot_file(&repo, &got[0].1, b"/moved"), big);
}

/// Excluded names live in the session (an editor's temporary file renamed
/// over the real one is kept under its new name) but no commit holds them,
/// nor a recovery after a crash: the journal carries the patterns across
/// commits.
#[test]
fn excluded_names_stay_out_of_commits_and_recoveries() {
    let d = tempfile::tempdir().unwrap();
    let fs = mount_excluding(d.path(), &["._*", ".DS_Store", "~$*", "/scratch"]);
    let repo = fs.repo().clone();
    let put = |dir: u64, name: &[u8], body: &[u8]| {
        let ino = fs.create(dir, name, file_meta()).unwrap();
        fs.write(ino, 0, body, false).unwrap();
        fs.flush(ino, false).unwrap();
        ino
    };
    let mut dir_meta = file_meta();
    dir_meta.kind = NodeKind::Dir;
    let docs = fs.create(ROOT, b"docs", dir_meta.clone()).unwrap();
    let scratch = fs.create(ROOT, b"scratch", dir_meta).unwrap();
    put(docs, b"._report.txt", b"resource fork");
    put(docs, b".DS_Store", b"finder");
    put(scratch, b"notes", b"scratch notes");
    put(docs, b"~$report.txt", b"the saved text");
    fs.rename(docs, b"~$report.txt", docs, b"report.txt", false)
        .unwrap();
    put(docs, b"~$lock", b"office lock");
    // Usable in the session.
    let fork = fs.lookup(docs, b"._report.txt").unwrap();
    assert_eq!(fs.read(fork, 0, 100).unwrap(), b"resource fork");

    let names = |id| -> Vec<Vec<u8>> {
        let snap = repo.load_snapshot(&id).unwrap();
        let mut out = Vec::new();
        let root = repo.load_tree(&snap.tree).unwrap();
        for n in &root.nodes {
            out.push(n.name.clone());
            if let Some(t) = &n.subtree {
                for c in &repo.load_tree(t).unwrap().nodes {
                    out.push([&n.name[..], b"/", &c.name[..]].concat());
                }
            }
        }
        out
    };
    let first = fs.commit().unwrap();
    assert_eq!(
        names(first),
        vec![b"docs".to_vec(), b"docs/report.txt".to_vec()]
    );
    assert_eq!(
        snapshot_file(&repo, &first, b"/docs/report.txt"),
        b"the saved text"
    );
    assert_eq!(repo.load_snapshot(&first).unwrap().summary.files, 1);

    // The next journal still carries the patterns: a crash now recovers
    // without the new litter.
    put(docs, b"._more", b"fork");
    put(ROOT, b"kept", b"kept");
    fs.sync_journal().unwrap();
    drop(fs);
    let got = super::recover(&repo, &[d.path().to_path_buf()]).unwrap();
    assert_eq!(
        names(got[0].1),
        vec![
            b"docs".to_vec(),
            b"docs/report.txt".to_vec(),
            b"kept".to_vec()
        ]
    );
}

/// What a crash in the middle of handing over an upload leaves: the
/// journal as it is at that instant holds nothing of the new file, so a
/// recovery makes no empty file of it; a completed upload beside it stays.
#[test]
fn a_crash_while_an_upload_is_handed_over_leaves_no_file() {
    let d = tempfile::tempdir().unwrap();
    let fs = mount(d.path());
    let repo = fs.repo().clone();
    let how = super::Upload {
        create: true,
        create_new: false,
        truncate: true,
        offset: 0,
        mtime: None,
        mode: 0o644,
        uid: 0,
        gid: 0,
    };
    fs.put(ROOT, b"done", &how, &mut &b"complete"[..]).unwrap();
    let crashed = tempfile::tempdir().unwrap();
    /// Gives 3 MiB in 1 MiB reads; after the first, copies the journal as
    /// a `kill -9` would leave it.
    struct Body<'a> {
        fs: &'a WritableFs,
        left: usize,
        at_crash: &'a std::path::Path,
    }
    impl std::io::Read for Body<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.left == 2 << 20 {
                self.fs.sync_journal().unwrap();
                std::fs::copy(
                    self.fs.spool_dir().join("journal"),
                    self.at_crash.join("journal"),
                )?;
            }
            let n = buf.len().min(self.left).min(1 << 20);
            buf[..n].fill(7);
            self.left -= n;
            Ok(n)
        }
    }
    let mut body = Body {
        fs: &fs,
        left: 3 << 20,
        at_crash: crashed.path(),
    };
    fs.put(ROOT, b"big.iso", &how, &mut body).unwrap();
    assert!(crashed.path().join("journal").exists());
    drop(fs);
    let got = super::recover(&repo, &[crashed.path().to_path_buf()]).unwrap();
    let snap = repo.load_snapshot(&got[0].1).unwrap();
    assert!(repo.find_node(&snap, b"/big.iso").is_err());
    assert_eq!(snapshot_file(&repo, &got[0].1, b"/done"), b"complete");
}
