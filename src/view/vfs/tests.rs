//! Vfs tests: eviction on FORGET, single-snapshot reads and links, stable
//! inode numbers across whole-store mounts.
use super::*;
use crate::fs_error::FsError;
use crate::ops::backup::{backup, BackupOptions, Progress};
use crate::storage::{MemoryStorage, Storage};

fn fixture() -> (tempfile::TempDir, Arc<Repo>, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(src.join("data"), &data).unwrap();
    std::fs::write(src.join("sub/small"), b"small").unwrap();
    std::fs::hard_link(src.join("sub/small"), src.join("twin")).unwrap();
    std::os::unix::fs::symlink("sub/small", src.join("ln")).unwrap();
    let _ = xattr::set(src.join("data"), "user.k", b"v");
    let s: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let repo = crate::repo::test_repo(s);
    let opts = BackupOptions {
        paths: vec![src.clone()],
        ..Default::default()
    };
    backup(&repo, &opts, &Progress::default()).unwrap();
    (dir, repo, src)
}

/// A single-snapshot view of the fixture's source directory.
fn single_view() -> (tempfile::TempDir, Vfs) {
    let (d, repo, src) = fixture();
    let (_, snap) = repo.resolve_snapshot("latest").unwrap();
    let node = repo
        .find_node(&snap, src.as_os_str().as_encoded_bytes())
        .unwrap();
    let v = Vfs::single(repo, VfsOptions::default(), node, &snap);
    (d, v)
}

/// Entries live while the kernel holds a lookup of them, and come back
/// with the same inode number and attributes when looked up again.
#[test]
fn forgotten_entries_go_and_come_back_the_same() {
    let (_d, v) = single_view();
    let base = v.entry_count();
    v.readdir(ROOT_INO).unwrap();
    assert_eq!(v.entry_count(), base, "a listing registers nothing");
    let a = v.lookup(ROOT_INO, b"data").unwrap();
    let b = v.lookup(ROOT_INO, b"data").unwrap();
    assert_eq!(a, b);
    assert_eq!(v.entry_count(), base + 1);
    v.forget(a.ino, 1);
    assert_eq!(v.getattr(a.ino).unwrap(), a, "one lookup still held");
    v.forget(a.ino, 1);
    assert_eq!(v.entry_count(), base);
    assert_eq!(v.getattr(a.ino), Err(FsError::NotFound));
    assert_eq!(v.lookup(ROOT_INO, b"data").unwrap(), a);
    // The root is never dropped.
    v.forget(ROOT_INO, 5);
    assert!(v.getattr(ROOT_INO).is_ok());
}

/// A readdirplus page answers as `lookup` does, in `readdir`'s order, and
/// counts lookups only for what the shell says it sent.
#[test]
fn a_readdirplus_page_matches_lookups_and_holds_what_was_sent() {
    let (_d, v) = single_view();
    let base = v.entry_count();
    let listed = v.readdir(ROOT_INO).unwrap();
    let page = v
        .peek_children(ROOT_INO, 0)
        .unwrap()
        .expect("a snapshot directory");
    assert_eq!(page.len(), listed.len());
    assert_eq!(v.entry_count(), base, "peeking registers nothing");
    let attrs: Vec<Attr> = (0..page.len()).map(|k| v.child_attr(&page, k)).collect();
    for (k, (ino, _, name)) in listed.iter().enumerate() {
        assert_eq!(page.name(k), &name[..]);
        assert_eq!(attrs[k].ino, *ino);
    }
    // Two of them sent: two entries, each held once.
    let sent: Vec<u64> = attrs[..2].iter().map(|a| a.ino).collect();
    v.hold_children(&page, &sent);
    assert_eq!(v.entry_count(), base + 2);
    for a in &attrs[..2] {
        assert_eq!(&v.getattr(a.ino).unwrap(), a);
        assert_eq!(
            &v.lookup(
                ROOT_INO,
                page.name(attrs.iter().position(|x| x == a).unwrap())
            )
            .unwrap(),
            a
        );
        v.forget(a.ino, 2);
    }
    assert_eq!(
        v.entry_count(),
        base,
        "lookups and the page's hold given back"
    );
    // A page past the end (an offset the kernel never got) is empty.
    let past = v
        .peek_children(ROOT_INO, listed.len() + 5)
        .unwrap()
        .unwrap();
    assert!(past.is_empty());
    v.hold_children(&past, &[42]);
    assert_eq!(v.entry_count(), base);
}

#[test]
fn single_snapshot_view_reads_lists_and_links() {
    let (_d, v) = single_view();
    let names: Vec<Vec<u8>> = v
        .readdir(ROOT_INO)
        .unwrap()
        .into_iter()
        .map(|e| e.2)
        .collect();
    assert_eq!(
        names,
        vec![
            b"data".to_vec(),
            b"ln".to_vec(),
            b"sub".to_vec(),
            b"twin".to_vec()
        ]
    );
    let data = v.lookup(ROOT_INO, b"data").unwrap();
    assert_eq!(data.size, 3_000_000);
    let fh = data.ino;
    let want: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    // Reads across chunk boundaries, at the end, and past it.
    assert_eq!(v.read(fh, 0, 4096).unwrap(), &want[..4096]);
    assert_eq!(
        v.read(fh, 1_000_000, 1_500_000).unwrap(),
        &want[1_000_000..2_500_000]
    );
    assert_eq!(v.read(fh, 2_999_990, 100).unwrap(), &want[2_999_990..]);
    assert!(v.read(fh, 3_000_000, 10).unwrap().is_empty());
    // Hard links share an inode; symlinks read back.
    let sub = v.lookup(ROOT_INO, b"sub").unwrap().ino;
    assert_eq!(
        v.lookup(sub, b"small").unwrap().ino,
        v.lookup(ROOT_INO, b"twin").unwrap().ino
    );
    let ln = v.lookup(ROOT_INO, b"ln").unwrap().ino;
    assert_eq!(v.readlink(ln).unwrap(), b"sub/small");
    // Errors.
    assert_eq!(v.lookup(ROOT_INO, b"nope"), Err(FsError::NotFound));
    assert_eq!(v.lookup(data.ino, b"x"), Err(FsError::NotDir));
    assert_eq!(v.getxattr(data.ino, b"user.missing"), Err(FsError::NoData));
    assert_eq!(v.read(sub, 0, 1), Err(FsError::IsDir));
    assert_eq!(v.parent(sub).unwrap(), ROOT_INO);
}

#[test]
fn whole_store_layout_has_stable_inodes() {
    let (_d, repo, src) = fixture();
    let a = Vfs::whole_store(repo.clone(), VfsOptions::default()).unwrap();
    let b = Vfs::whole_store(repo.clone(), VfsOptions::default()).unwrap();
    let top: Vec<Vec<u8>> = a
        .readdir(ROOT_INO)
        .unwrap()
        .into_iter()
        .map(|e| e.2)
        .collect();
    assert_eq!(
        top,
        [&b"hosts"[..], b"ids", b"latest", b"snapshots", b"tags"]
    );
    let file = src.join("sub/small");
    let path = |v: &Vfs| {
        let latest = v.lookup(ROOT_INO, b"latest").unwrap().ino;
        let target = v.readlink(latest).unwrap();
        let snaps = v.lookup(ROOT_INO, b"snapshots").unwrap().ino;
        let name = target.strip_prefix(b"snapshots/").unwrap();
        let mut ino = v.lookup(snaps, name).unwrap().ino;
        use std::os::unix::ffi::OsStrExt;
        for c in file.iter().skip(1) {
            ino = v.lookup(ino, c.as_bytes()).unwrap().ino;
        }
        ino
    };
    assert_eq!(path(&a), path(&b), "same inode in two mounts");
}
