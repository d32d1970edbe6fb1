//! `rm` + `prune` reclaim space without touching what remaining snapshots need,
//! and the lock protocol keeps prune away from a running writer.

mod common;
use common::*;

#[test]
fn prune_frees_space_and_keeps_every_remaining_snapshot_whole() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..8 {
        std::fs::write(src.join(format!("keep{i}")), noise(i, 3 << 20)).unwrap();
    }
    std::fs::write(src.join("temp"), noise(100, 20 << 20)).unwrap();
    env.create();
    let first = env.backup(&src);
    std::fs::remove_file(src.join("temp")).unwrap();
    std::fs::write(src.join("new"), noise(200, 2 << 20)).unwrap();
    let second = env.backup(&src);
    let before = env.store_bytes();

    // Dry run changes nothing.
    env.ok(&[&"prune", &"--dry-run"]);
    assert_eq!(env.store_bytes(), before);
    // Nothing unreferenced yet: prune keeps everything.
    env.ok(&[&"prune"]);
    env.ok(&[&"check", &"--read-data"]);

    env.ok(&[&"rm", &first[..10].to_string()]);
    let dry: serde_json::Value =
        serde_json::from_str(&env.ok(&[&"prune", &"--dry-run", &"--json"])).unwrap();
    let out = env.ok(&[&"prune", &"--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    // The dry run announces what the run does, freed bytes included (its
    // estimate leaves out only the new packs' headers).
    for k in [
        "packs_deleted",
        "packs_repacked",
        "packs_written",
        "blobs_removed",
    ] {
        assert_eq!(dry[k], report[k], "{k}: {dry} vs {report}");
    }
    let (d, r) = (
        dry["bytes_freed"].as_u64().unwrap(),
        report["bytes_freed"].as_u64().unwrap(),
    );
    assert!(d.abs_diff(r) <= r / 100 + 4096, "{dry} vs {report}");
    assert!(
        report["bytes_freed"].as_u64().unwrap() >= 18 << 20,
        "{report}"
    );
    let after = env.store_bytes();
    assert!(
        before - after >= 18 << 20,
        "the 20 MiB only the first snapshot used is gone ({before} -> {after}): {out}"
    );
    env.ok(&[&"check", &"--read-data"]);
    let restored = env.path("out");
    env.ok(&[
        &"restore",
        &"-to",
        &restored,
        &format!("{}:{}", &second[..10], src.display()),
    ]);
    assert_same_tree(&src, &restored);
    assert_eq!(env.ok(&[&"ls"]).lines().count(), 1);
}

#[test]
fn prune_refuses_while_a_backup_holds_the_store_and_unlock_breaks_stale_locks() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), noise(1, 1 << 20)).unwrap();
    env.create();
    env.backup(&src);
    // A writable mount holds a shared lock for its whole life, like a backup.
    let mnt = env.path("mnt");
    let spool = env.path("spool");
    let m = Mounted::start(
        &env,
        &mnt,
        &[&"mount", &"--writable", &"--spool", &spool, &mnt],
        120,
    );
    let o = env.run(&[&"prune"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("locked"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Two backups at once share the store fine.
    let a = env.cmd(&[&"backup", &src]).spawn().unwrap();
    let b = env.cmd(&[&"backup", &src]).spawn().unwrap();
    assert!(a.wait_with_output().unwrap().status.success());
    assert!(b.wait_with_output().unwrap().status.success());
    drop(m);
    env.ok(&[&"prune"]);
    env.ok(&[&"check", &"--read-data"]);
    assert_eq!(env.ok(&[&"ls"]).lines().count(), 3);
}

/// Waits until `child` holds a lock in the store, then freezes it (SIGSTOP).
/// `false` if it finished before it could be caught.
fn freeze_once_locked(env: &Env, child: &mut std::process::Child) -> bool {
    use nix::sys::signal::{kill, Signal};
    let locks = env.store.join("locks");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if std::fs::read_dir(&locks).is_ok_and(|mut d| d.next().is_some()) {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            kill(pid, Signal::SIGSTOP).unwrap();
            return child.try_wait().unwrap().is_none();
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_micros(500));
    }
    panic!("no lock appeared within a minute");
}

fn resume(child: &std::process::Child) {
    use nix::sys::signal::{kill, Signal};
    kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGCONT,
    )
    .unwrap();
}

/// Real processes racing: a prune started while a backup runs is refused and
/// the backup completes; a backup started while a prune runs is refused and
/// the prune completes; a backup killed with `kill -9` leaves a lock that is
/// recognised as stale (its process is gone) and removed by `unlock`. After
/// all of it the store checks clean and the newest snapshot restores exact.
#[test]
fn prune_and_backup_started_during_each_other_stay_safe() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let fill = |seed: u64| {
        for i in 0..48u64 {
            std::fs::write(src.join(format!("f{i}")), noise(seed * 100 + i, 1 << 20)).unwrap();
        }
    };
    fill(1);
    env.create();
    env.backup(&src);

    // 1. A backup frozen while it holds its (shared) lock: prune refuses.
    fill(2);
    let mut b = env.cmd(&[&"backup", &"-q", &src]).spawn().unwrap();
    assert!(
        freeze_once_locked(&env, &mut b),
        "the backup ended before it could be frozen"
    );
    let o = env.run(&[&"prune"]);
    resume(&b);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("shared lock") && err.contains("unlock"),
        "{err}"
    );
    assert!(
        b.wait().unwrap().success(),
        "the backup finishes after the refused prune"
    );

    // 2. A prune frozen while it holds its (exclusive) lock: backup refuses.
    let mut caught = false;
    for round in 0..5u64 {
        fill(10 + round);
        env.backup(&src);
        let oldest = env.ok(&[&"ls", &"--json"]);
        let v: serde_json::Value = serde_json::from_str(&oldest).unwrap();
        let first = v[0]["id"].as_str().unwrap().to_string();
        env.ok(&[&"rm", &first]);
        let mut p = env.cmd(&[&"prune", &"-q"]).spawn().unwrap();
        if !freeze_once_locked(&env, &mut p) {
            assert!(p.wait().unwrap().success());
            continue; // it finished first; try again with new garbage
        }
        let o = env.run(&[&"backup", &src]);
        resume(&p);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("exclusive lock"), "{err}");
        assert!(
            p.wait().unwrap().success(),
            "the prune finishes after the refused backup"
        );
        caught = true;
        break;
    }
    assert!(caught, "no prune could be frozen while it held its lock");

    // 3. kill -9 of a backup holding its lock: the lock is stale at once (its
    // process is gone on this host), prune goes ahead and, as the next taker on
    // this host, removes it; `unlock` finds nothing left.
    fill(3);
    let mut b = env.cmd(&[&"backup", &"-q", &src]).spawn().unwrap();
    assert!(freeze_once_locked(&env, &mut b));
    b.kill().unwrap();
    b.wait().unwrap();
    assert_eq!(
        walk(&env.store.join("locks")).len(),
        1,
        "the dead backup's lock"
    );
    env.ok(&[&"prune"]);
    assert!(walk(&env.store.join("locks")).is_empty());
    assert!(env.ok(&[&"unlock"]).contains("removed 0 lock"));

    env.ok(&[&"check", &"--read-data"]);
    env.backup(&src);
    env.assert_latest_restores(&src, "out");
}
