//! Tests of the disk cache in front of a remote store (`cache.rs`).

use super::*;
use crate::storage::{FaultPlan, FaultStorage, MemoryStorage};

#[test]
fn passes_the_storage_suite() {
    let d = tempfile::tempdir().unwrap();
    let s = Arc::new(CacheStorage::new(
        Arc::new(MemoryStorage::new()),
        d.path(),
        1 << 20,
    ));
    crate::storage::suite::run_all(s);
}

#[test]
fn opening_ahead_fetches_each_object_once_and_never_hides_a_write() {
    let d = tempfile::tempdir().unwrap();
    let mem: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    mem.put(Kind::Key, "k1", b"key").unwrap();
    mem.put(Kind::Key, "k1-copy", b"key").unwrap();
    mem.put(Kind::Index, "i1", b"index").unwrap();
    mem.put(Kind::Snapshot, "s1", b"snap").unwrap();
    let f = Arc::new(FaultStorage::new(mem, FaultPlan::default()));
    let c = Arc::new(CacheStorage::new(f.clone(), d.path(), 0));
    c.clone().look_ahead();
    let names = |k| {
        let mut l: Vec<String> = c.list(k).unwrap().into_iter().map(|(n, _)| n).collect();
        l.sort();
        l
    };
    assert_eq!(names(Kind::Key), ["k1", "k1-copy"]);
    assert_eq!(c.get(Kind::Key, "k1").unwrap(), b"key");
    assert_eq!(names(Kind::Index), ["i1"]);
    assert_eq!(c.get(Kind::Index, "i1").unwrap(), b"index");
    // A write after the look-ahead: the next listing shows it.
    c.put(Kind::Snapshot, "s2", b"snap 2").unwrap();
    assert_eq!(names(Kind::Snapshot), ["s1", "s2"]);
    assert_eq!(c.get(Kind::Snapshot, "s1").unwrap(), b"snap");
    // Key, index and snapshot: each fetched once, by the look-ahead (the
    // key's twin is read only when the first copy fails).
    assert_eq!(f.gets(), 3);
    // A second process on the same cache: only the key is fetched again.
    let c2 = Arc::new(CacheStorage::new(f.clone(), d.path(), 0));
    c2.clone().look_ahead();
    assert_eq!(c2.get(Kind::Key, "k1").unwrap(), b"key");
    assert_eq!(c2.get(Kind::Index, "i1").unwrap(), b"index");
    assert_eq!(c2.get(Kind::Snapshot, "s2").unwrap(), b"snap 2");
    assert_eq!(f.gets(), 4);
}

#[test]
fn serves_hits_locally_and_survives_damage_and_deletion() {
    let d = tempfile::tempdir().unwrap();
    let mem: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    mem.put(Kind::Pack, "ab12", &body).unwrap();
    mem.put(Kind::Index, "cd34", b"index bytes").unwrap();
    let f = Arc::new(FaultStorage::new(mem, FaultPlan::default()));
    let c = CacheStorage::new(f.clone(), d.path().join("c"), 1 << 20);
    assert_eq!(
        c.get_meta_range(Kind::Pack, "ab12", 10, 100).unwrap(),
        &body[10..110]
    );
    assert_eq!(c.get(Kind::Index, "cd34").unwrap(), b"index bytes");
    // The remote now hides everything: hits still work.
    f.set_plan(FaultPlan {
        hide: Some(Kind::Pack),
        ..Default::default()
    });
    assert_eq!(
        c.get_meta_range(Kind::Pack, "ab12", 10, 100).unwrap(),
        &body[10..110]
    );
    assert!(
        c.get_range(Kind::Pack, "ab12", 0, 5).is_err(),
        "a miss asks the remote"
    );
    // A damaged entry is dropped, not served.
    let e = c.entry(Kind::Pack, "ab12", Some((10, 100, true)));
    let mut raw = fs::read(&e).unwrap();
    raw[3] ^= 1;
    fs::write(&e, raw).unwrap();
    assert!(c.get_meta_range(Kind::Pack, "ab12", 10, 100).is_err());
    assert!(!e.exists());
    // The whole folder deleted under us: requests still succeed.
    f.set_plan(FaultPlan::default());
    fs::remove_dir_all(d.path().join("c")).unwrap();
    assert_eq!(c.get_range(Kind::Pack, "ab12", 0, 5).unwrap(), &body[..5]);
    assert_eq!(c.get(Kind::Index, "cd34").unwrap(), b"index bytes");
}

#[test]
fn hinted_tree_ranges_are_served_without_the_remote() {
    let d = tempfile::tempdir().unwrap();
    let mem: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let f = Arc::new(FaultStorage::new(mem, FaultPlan::default()));
    let c = CacheStorage::new(f.clone(), d.path(), 0);
    let pack: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
    c.put(Kind::Pack, "ab77", &pack).unwrap();
    c.hint_meta_ranges(Kind::Pack, "ab77", &[(0, 100), (100, 900)], &pack);
    let before = f.gets();
    assert_eq!(
        c.get_meta_range(Kind::Pack, "ab77", 100, 900).unwrap(),
        &pack[100..1000]
    );
    assert_eq!(f.gets(), before, "served from the cache");
}

/// A pack's tree ranges come in one read and one cache entry; later
/// reads of any of them ask nothing of the remote, in this process or
/// the next; a damaged span is dropped and read again, never served.
#[test]
fn warmed_tree_ranges_come_in_one_read_and_are_served_locally() {
    let d = tempfile::tempdir().unwrap();
    let mem: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let pack: Vec<u8> = (0..50_000u32).map(|i| (i % 241) as u8).collect();
    mem.put(Kind::Pack, "ab99", &pack).unwrap();
    let f = Arc::new(FaultStorage::new(mem, FaultPlan::default()));
    let ranges: Vec<(u64, u64)> = (0..100).map(|i| (i * 400, 350)).collect();
    let c = CacheStorage::new(f.clone(), d.path(), 0);
    assert!(c.keeps_meta());
    let before = f.gets();
    assert_eq!(
        c.warm_meta(Kind::Pack, "ab99", &ranges).unwrap(),
        (1, 39_950)
    );
    assert_eq!(f.gets(), before + 1);
    // Warm again: nothing to fetch.
    assert_eq!(c.warm_meta(Kind::Pack, "ab99", &ranges).unwrap(), (0, 0));
    let check = |c: &CacheStorage| {
        for &(o, l) in &ranges {
            let got = c.get_meta_range(Kind::Pack, "ab99", o, l).unwrap();
            assert_eq!(got, &pack[o as usize..(o + l) as usize]);
        }
    };
    check(&c);
    // A new process reads the span from disk.
    let c2 = CacheStorage::new(f.clone(), d.path(), 0);
    check(&c2);
    assert_eq!(f.gets(), before + 1, "every tree served locally");
    // Damage the span on disk: a new process drops it and asks again.
    let span = walk_files(d.path())
        .into_iter()
        .find(|p| p.to_string_lossy().contains(".span."))
        .unwrap();
    let mut raw = fs::read(&span).unwrap();
    raw[100] ^= 1;
    fs::write(&span, raw).unwrap();
    let c3 = CacheStorage::new(f.clone(), d.path(), 0);
    check(&c3);
    assert!(f.gets() > before + 1, "the damaged span was not served");
    // Deleting the pack drops its span.
    c3.delete(Kind::Pack, "ab99").unwrap();
    assert!(!walk_files(d.path())
        .iter()
        .any(|p| p.to_string_lossy().contains(".span.")));
}

fn walk_files(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(d).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn data_ranges_stay_under_the_cap() {
    let d = tempfile::tempdir().unwrap();
    let mem: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    mem.put(Kind::Pack, "ab12", &vec![7u8; 1 << 20]).unwrap();
    let c = CacheStorage::new(mem, d.path(), 64 * 1024);
    for i in 0..64u64 {
        c.get_range(Kind::Pack, "ab12", i * 4096, 4096).unwrap();
    }
    let on_disk = dir_size(&d.path().join("data"));
    assert!(on_disk <= 64 * 1024 + 4096 + TRAILER as u64, "{on_disk}");
    assert!(on_disk > 0);
}

#[test]
fn a_cache_on_a_full_disk_is_a_no_op() {
    // A cache "folder" that is a file: every write fails.
    let d = tempfile::tempdir().unwrap();
    let blocker = d.path().join("file");
    fs::write(&blocker, b"x").unwrap();
    let mem: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let c = CacheStorage::new(mem, &blocker, 1 << 20);
    c.put(Kind::Index, "ee56", b"idx").unwrap();
    assert_eq!(c.get(Kind::Index, "ee56").unwrap(), b"idx");
}

/// A data range inside one cached earlier (a second walk whose reads are
/// batched differently) is served from disk, in this process and the next;
/// one that reaches past every cached run asks the remote; a damaged run
/// is dropped and read again, never served.
#[test]
fn a_data_range_inside_a_cached_one_is_served_locally() {
    let d = tempfile::tempdir().unwrap();
    let mem: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let pack: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    mem.put(Kind::Pack, "cd55", &pack).unwrap();
    let f = Arc::new(FaultStorage::new(mem, FaultPlan::default()));
    let slice = |o: u64, l: u64| &pack[o as usize..(o + l) as usize];
    let c = CacheStorage::new(f.clone(), d.path(), 1 << 20);
    assert_eq!(
        c.get_range(Kind::Pack, "cd55", 1000, 100_000).unwrap(),
        slice(1000, 100_000)
    );
    let before = f.gets();
    let inside = [(1000, 10), (5000, 4000), (100_990, 10), (1000, 100_000)];
    for c in [&c, &CacheStorage::new(f.clone(), d.path(), 1 << 20)] {
        for (o, l) in inside {
            assert_eq!(c.get_range(Kind::Pack, "cd55", o, l).unwrap(), slice(o, l));
        }
    }
    assert_eq!(
        f.gets(),
        before,
        "every range inside the run served locally"
    );
    let c2 = CacheStorage::new(f.clone(), d.path(), 1 << 20);
    assert_eq!(
        c2.get_range(Kind::Pack, "cd55", 100_000, 2000).unwrap(),
        slice(100_000, 2000)
    );
    assert_eq!(f.gets(), before + 1, "past the run's end: the remote");
    let run = walk_files(d.path())
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with("cd55.1000.100000"))
        .unwrap();
    let mut raw = fs::read(&run).unwrap();
    raw[500] ^= 1;
    fs::write(&run, raw).unwrap();
    let c3 = CacheStorage::new(f.clone(), d.path(), 1 << 20);
    assert_eq!(
        c3.get_range(Kind::Pack, "cd55", 1400, 300).unwrap(),
        slice(1400, 300)
    );
    assert_eq!(f.gets(), before + 2, "the damaged run was not served");
    assert!(!run.exists());
}
