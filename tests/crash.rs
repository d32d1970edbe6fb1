//! Crash consistency: a backup interrupted at every storage write of a small
//! run leaves a store that opens, checks clean, still restores every earlier
//! snapshot byte-exact, shows no half-written snapshot, and takes the next
//! backup (reusing what was uploaded).

use std::path::Path;
use std::sync::Arc;

use klosetfs::format::config::{ChunkerParams, StoreConfig};
use klosetfs::format::keyfile::KdfParams;
use klosetfs::ops::backup::{backup, BackupOptions, Progress};
use klosetfs::ops::check::{check, CheckProgress};
use klosetfs::ops::restore::{restore, RestoreOptions, RestoreProgress};
use klosetfs::repo::Repo;
use klosetfs::storage::{FaultPlan, FaultStorage, Kind, MemoryStorage, Storage};

const PW: &[u8] = b"pw";

fn kdf() -> KdfParams {
    KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    }
}

fn write_tree(root: &Path, version: u8) {
    for i in 0..12u32 {
        let d = root.join(format!("d{}", i % 3));
        std::fs::create_dir_all(&d).unwrap();
        let len = 2000 + (i as usize) * 3000;
        let mut x: u32 = 0x9E37_79B9 ^ (i * 7919 + version as u32 * 104_729);
        let body: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        // Version 2 changes a third of the files.
        if version == 1 || i % 3 == 0 {
            std::fs::write(d.join(format!("f{i}")), body).unwrap();
        }
    }
}

/// A store with tiny packs and chunks, so one small backup makes many writes.
fn tiny_store() -> Arc<MemoryStorage> {
    let base = Arc::new(MemoryStorage::new());
    let mut cfg = StoreConfig::new(true).unwrap();
    cfg.pack_size = 8 * 1024;
    cfg.chunker = ChunkerParams {
        min_size: 1024,
        avg_size: 4096,
        max_size: 16384,
    };
    Repo::create_with(base.clone(), Some(PW), kdf(), cfg).unwrap();
    base
}

/// A copy of `src` at `dst` (`cp -a`), to compare restores against later.
fn copy_of(src: &Path, dst: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dst).unwrap();
    assert!(std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(dst)
        .status()
        .unwrap()
        .success());
    dst.to_path_buf()
}

fn open(s: Arc<dyn Storage>) -> Arc<Repo> {
    let r = Arc::new(Repo::open(s, &|| Ok(PW.to_vec())).unwrap());
    r.load_index().unwrap();
    r
}

fn backup_of(
    repo: &Arc<Repo>,
    src: &Path,
) -> klosetfs::Result<klosetfs::ops::backup::BackupResult> {
    let opts = BackupOptions {
        paths: vec![src.to_path_buf()],
        threads: 2,
        ..Default::default()
    };
    backup(repo, &opts, &Progress::default())
}

fn assert_restores(repo: &Arc<Repo>, snap: &str, src_copy: &Path, work: &Path, path: &Path) {
    let (_, s) = repo.resolve_snapshot(snap).unwrap();
    let node = repo
        .find_node(&s, path.as_os_str().as_encoded_bytes())
        .unwrap();
    let out = work.join(format!("restore-{}", rand_name()));
    let r = restore(
        repo,
        &node,
        &out,
        &RestoreOptions {
            owners: false,
            skip_existing: false,
            threads: 0,
        },
        &RestoreProgress::default(),
    )
    .unwrap();
    assert!(r.damaged.is_empty() && r.errors.is_empty(), "{r:?}");
    let o = std::process::Command::new("diff")
        .arg("-r")
        .arg(src_copy)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "restored snapshot differs: {}",
        String::from_utf8_lossy(&o.stdout)
    );
}

fn rand_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

#[test]
fn a_backup_interrupted_at_every_write_loses_nothing() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    write_tree(&src, 1);
    let v1 = copy_of(&src, &work.path().join("v1"));

    let base = tiny_store();
    let first = backup_of(&open(base.clone()), &src).unwrap();
    let first_id = first.id.to_hex();

    write_tree(&src, 2);
    // Count the writes of the second backup.
    let probe = Arc::new(FaultStorage::new(
        Arc::new(base.fork()),
        FaultPlan::default(),
    ));
    backup_of(&open(probe.clone()), &src).unwrap();
    let writes = probe.puts();
    assert!(
        writes >= 8,
        "a run with several packs and indexes ({writes} writes)"
    );

    for crash_at in 0..writes {
        let state = Arc::new(base.fork());
        let faulty = Arc::new(FaultStorage::new(
            state.clone(),
            FaultPlan {
                crash_after_puts: Some(crash_at),
                ..Default::default()
            },
        ));
        let r = backup_of(&open(faulty.clone()), &src);
        // Pack boundaries can differ a little between runs (worker threads), so a
        // run may finish in fewer writes than the probe's; then it must not crash.
        let finished_early = r.is_ok() && faulty.puts() <= crash_at;
        assert!(
            r.is_err() || finished_early,
            "crash after {crash_at} of {writes} writes must fail the backup"
        );

        // What the crash left: the store opens, checks clean, shows only the first snapshot.
        // A lock may be left behind by the "dead" process; it is stale-able, not damage.
        let repo = open(state.clone());
        let report = check(&repo, true, &CheckProgress::default()).unwrap();
        assert!(
            report.errors.is_empty(),
            "crash at {crash_at}: {:?}",
            report.errors
        );
        let snaps = repo.snapshots().unwrap();
        // A run that finished before the crash point saved its snapshot whole.
        assert_eq!(
            snaps.len(),
            if finished_early { 2 } else { 1 },
            "crash at {crash_at}: no half-written snapshot"
        );
        assert_restores(&repo, &first_id[..8], &v1, work.path(), &src);

        // The next backup succeeds and reuses what was uploaded.
        klosetfs::format::lock::break_locks(&**repo.storage(), repo.keys(), true).unwrap();
        let before = state.list(Kind::Pack).unwrap().len();
        let next = backup_of(&repo, &src).unwrap();
        let repo = open(state.clone());
        assert!(check(&repo, true, &CheckProgress::default())
            .unwrap()
            .errors
            .is_empty());
        assert_restores(&repo, &next.id.to_hex()[..12], &src, work.path(), &src);
        if crash_at > writes / 2 {
            assert!(before > 0);
        }
    }
}

#[test]
fn torn_writes_and_flipped_reads_are_detected() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    write_tree(&src, 1);
    let base = Arc::new(MemoryStorage::new());
    let mut cfg = StoreConfig::new(true).unwrap();
    cfg.pack_size = 8 * 1024;
    Repo::create_with(base.clone(), Some(PW), kdf(), cfg).unwrap();
    let probe = Arc::new(FaultStorage::new(
        Arc::new(base.fork()),
        FaultPlan::default(),
    ));
    backup_of(&open(probe.clone()), &src).unwrap();
    let writes = probe.puts();
    // Tear each write in turn: check names the damage, nothing panics.
    for n in 1..=writes {
        let state = Arc::new(base.fork());
        let faulty = Arc::new(FaultStorage::new(
            state.clone(),
            FaultPlan {
                tear_put: Some(n),
                ..Default::default()
            },
        ));
        let _ = backup_of(&open(faulty.clone()), &src);
        let repo = Arc::new(Repo::open(state.clone(), &|| Ok(PW.to_vec())).unwrap());
        let report = check(&repo, true, &CheckProgress::default()).unwrap();
        match faulty.torn() {
            // A torn lock object is no data: the backup goes on, removes it,
            // and the store is whole.
            Some(Kind::Lock) => {
                assert!(report.errors.is_empty(), "write {n}: {:?}", report.errors);
                assert!(state.list(Kind::Lock).unwrap().is_empty());
            }
            Some(kind) => assert!(
                !report.errors.is_empty(),
                "write {n} of {writes}: a torn {kind} must be named by check"
            ),
            // This run needed fewer writes than the probe (pack boundaries vary
            // with thread timing): nothing was torn, so the store must be whole.
            None => {
                assert!(faulty.puts() < n, "write {n} should have been torn");
                assert!(report.errors.is_empty(), "{:?}", report.errors);
            }
        }
    }
    // Flipped bytes on read: every blob read fails verification.
    let state: Arc<dyn Storage> = Arc::new(base.fork());
    backup_of(&open(state.clone()), &src).unwrap();
    let flipping = Arc::new(FaultStorage::new(
        state,
        FaultPlan {
            flip_on_get: Some(Kind::Pack),
            ..Default::default()
        },
    ));
    let repo = open(flipping);
    let report = check(&repo, true, &CheckProgress::default()).unwrap();
    assert!(!report.errors.is_empty());
}

/// A prune interrupted at every write and every deletion: the store stays
/// whole (check clean, the kept snapshot restores byte-exact), and the next
/// prune finishes the job.
#[test]
fn a_prune_interrupted_at_every_write_and_delete_loses_nothing() {
    use klosetfs::ops::prune::{prune, PruneOptions, PruneProgress};
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    write_tree(&src, 1);
    let base = tiny_store();
    let first = backup_of(&open(base.clone()), &src).unwrap();
    write_tree(&src, 2);
    let second = backup_of(&open(base.clone()), &src).unwrap();
    let v2 = copy_of(&src, &work.path().join("v2"));
    // Forget the first snapshot: its unique chunks are garbage now.
    base.delete(Kind::Snapshot, &first.id.to_hex()).unwrap();
    let keep = second.id.to_hex();
    let opts = PruneOptions {
        dry_run: false,
        repack_below: 0.99,
    };

    let probe = Arc::new(FaultStorage::new(
        Arc::new(base.fork()),
        FaultPlan::default(),
    ));
    prune(&open(probe.clone()), &opts, &PruneProgress::default()).unwrap();
    let steps = probe.mutations();
    assert!(
        steps >= 4,
        "prune writes and deletes several objects ({steps})"
    );

    for crash_at in 0..steps {
        let state = Arc::new(base.fork());
        let faulty = Arc::new(FaultStorage::new(
            state.clone(),
            FaultPlan {
                crash_after_mutations: Some(crash_at),
                ..Default::default()
            },
        ));
        let r = prune(&open(faulty.clone()), &opts, &PruneProgress::default());
        // Only releasing the lock fails silently (the work is done; the stale
        // lock it leaves is broken below). The step count is not used here:
        // it can differ by one between runs under load.
        let lock_left = !state.list(Kind::Lock).unwrap().is_empty();
        assert!(
            r.is_err() || faulty.mutations() <= crash_at || lock_left,
            "crash after {crash_at} of {steps} steps must fail the prune"
        );
        let repo = open(state.clone());
        klosetfs::format::lock::break_locks(&**repo.storage(), repo.keys(), true).unwrap();
        let report = check(&repo, true, &CheckProgress::default()).unwrap();
        assert!(
            report.errors.is_empty(),
            "crash at {crash_at} of {steps}: {:?}",
            report.errors
        );
        assert_restores(&repo, &keep[..12], &v2, work.path(), &src);
        // The next prune completes and leaves a clean store.
        prune(&repo, &opts, &PruneProgress::default()).unwrap();
        let repo = open(state.clone());
        assert!(check(&repo, true, &CheckProgress::default())
            .unwrap()
            .errors
            .is_empty());
        assert_restores(&repo, &keep[..12], &v2, work.path(), &src);
    }
}
