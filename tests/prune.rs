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
    let out = env.ok(&[&"prune", &"--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
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
