//! `sync` between stores with different passphrases: local → local, local →
//! S3 → local against the real S3 server, idempotent and both ways, and a
//! sync killed with SIGKILL at several moments that leaves both stores
//! `check`-clean and finishes on the next run; every copy restores identical.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::Path;

const OTHER_PASS: &str = "a different passphrase";

/// `klosetfs at SRC sync ARGS` where the other store's passphrase differs.
fn sync(env: &Env, args: &[&dyn AsRef<OsStr>]) -> std::process::Output {
    let mut c = env.cmd(&[&"sync"]);
    for a in args {
        c.arg(a.as_ref());
    }
    c.env("KLOSETFS_OTHER_PASSPHRASE", OTHER_PASS)
        .output()
        .unwrap()
}

fn sync_ok(env: &Env, args: &[&dyn AsRef<OsStr>]) -> String {
    let o = sync(env, args);
    assert!(
        o.status.success(),
        "sync failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The same store seen with the other passphrase.
fn other_env(store: &Path, like: &Env) -> Env {
    let mut e = Env::new();
    e.store = store.to_path_buf();
    e.envs = like.envs.clone();
    e.envs
        .push(("KLOSETFS_PASSPHRASE".into(), OTHER_PASS.into()));
    e
}

fn times(env: &Env) -> BTreeSet<String> {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&[&"ls", &"--json"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{} {}", s["time"], s["paths"]))
        .collect()
}

/// Restores every snapshot of `env` and compares with the trees in `want`
/// (by snapshot time).
fn restores_same(env: &Env, src: &Path, want: &[(&str, &Path)]) {
    for (i, (time, tree)) in want.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(&env.ok(&[&"ls", &"--json"])).unwrap();
        let id = v
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["time"] == *time)
            .unwrap_or_else(|| panic!("snapshot at {time} in {v}"))["id"]
            .as_str()
            .unwrap()
            .to_string();
        let out = env.path(&format!("restored-{i}"));
        env.ok(&[&"restore", &"-to", &out, &format!("{id}:{}", src.display())]);
        assert_same_tree(tree, &out);
    }
}

#[test]
fn local_to_local_both_ways_with_different_passphrases() {
    let env = Env::new();
    env.create();
    let src = env.path("src");
    make_tree(&src, 3);
    env.ok(&[&"backup", &"--time", &"2025-01-01T00:00:00Z", &src]);
    let v1 = env.path("v1");
    sh(&format!("cp -a {} {}", src.display(), v1.display()));
    std::fs::write(src.join("dir/new.bin"), noise(5, 2 << 20)).unwrap();
    env.ok(&[&"backup", &"--time", &"2025-01-02T00:00:00Z", &src]);

    let dst_path = env.path("dst");
    let dst = other_env(&dst_path, &env);
    dst.create();
    let out = sync_ok(&env, &[&"to", &dst_path]);
    assert!(out.contains("2 snapshot(s) copied"), "{out}");
    // Again: nothing to do, nothing stored.
    let out = sync_ok(&env, &[&"to", &dst_path]);
    assert!(
        out.contains("0 snapshot(s) copied, 2 already there; 0 new blobs"),
        "{out}"
    );
    assert_eq!(times(&env), times(&dst));
    dst.ok(&[&"check", &"--read-data"]);
    restores_same(
        &dst,
        &src,
        &[
            ("2025-01-01T00:00:00Z", &v1),
            ("2025-01-02T00:00:00Z", &src),
        ],
    );
    // The copy dedups like a backup: about the source store's size.
    let (a, b) = (env.store_bytes() as f64, dst.store_bytes() as f64);
    assert!((b / a - 1.0).abs() < 0.05, "store sizes {a} vs {b}");

    // A snapshot made in the destination comes back with `sync from`; a
    // sync back of the copies copies nothing.
    std::fs::write(src.join("third"), b"3").unwrap();
    dst.ok(&[&"backup", &"--time", &"2025-01-03T00:00:00Z", &src]);
    let out = sync_ok(&env, &[&"with", &dst_path]);
    assert!(out.contains("sync to"), "{out}");
    assert!(out.contains("sync from"), "{out}");
    assert!(
        out.contains("1 snapshot(s) copied, 2 already there"),
        "{out}"
    );
    assert_eq!(times(&env).len(), 3);
    assert_eq!(times(&env), times(&dst));
    env.ok(&[&"check", &"--read-data"]);
    let out = sync_ok(&env, &[&"with", &dst_path]);
    assert_eq!(out.matches("0 snapshot(s) copied").count(), 2, "{out}");

    // One snapshot by name; a wrong passphrase for the other store fails
    // clearly and copies nothing.
    let one = env.path("one");
    let one_env = other_env(&one, &env);
    one_env.create();
    sync_ok(&env, &[&"to", &one, &"latest"]);
    assert_eq!(times(&one_env).len(), 1);
    let o = env
        .cmd(&[&"sync", &"to", &one])
        .env("KLOSETFS_OTHER_PASSPHRASE", "wrong")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("passphrase"), "{err}");
    assert_eq!(times(&one_env).len(), 1);
}

#[test]
fn a_killed_sync_leaves_both_stores_clean_and_resumes() {
    let env = Env::new();
    env.create();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..40 {
        std::fs::write(src.join(format!("f{i}")), noise(100 + i, 1 << 20)).unwrap();
    }
    env.ok(&[&"backup", &src]);
    let dst_path = env.path("dst");
    let dst = other_env(&dst_path, &env);
    dst.create();
    let mut killed = 0;
    for delay_ms in [30u64, 120, 300, 600, 1000, 1500, 2500] {
        let mut child = env
            .cmd(&[&"sync", &"to", &dst_path])
            .env("KLOSETFS_OTHER_PASSPHRASE", OTHER_PASS)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        // Both stores are consistent after every kill (unindexed packs
        // are warnings; a stale lock is broken by the next run).
        env.ok(&[&"check"]);
        dst.ok(&[&"unlock"]);
        dst.ok(&[&"check"]);
    }
    assert!(killed > 0, "at least one sync was killed mid-way");
    let out = sync_ok(&env, &[&"to", &dst_path]);
    assert!(out.contains("snapshot(s) copied"), "{out}");
    assert_eq!(times(&dst).len(), 1);
    dst.ok(&[&"check", &"--read-data"]);
    let out = dst.path("restored");
    dst.ok(&[
        &"restore",
        &"-to",
        &out,
        &format!("latest:{}", src.display()),
    ]);
    assert_same_tree(&src, &out);
}

#[cfg(feature = "s3")]
#[test]
fn local_to_s3_and_back() {
    let server = common::s3::shared();
    let s3 = Env::s3(server, "sync");
    let s3_store = s3.store.clone();
    let s3_other = other_env(&s3_store, &s3);
    s3_other.create();

    let mut env = Env::new();
    env.envs = s3.envs.clone();
    env.create();
    let src = env.path("src");
    make_tree(&src, 2);
    env.ok(&[&"backup", &src]);
    let out = sync_ok(&env, &[&"to", &s3_store]);
    assert!(out.contains("1 snapshot(s) copied"), "{out}");
    s3_other.ok(&[&"check", &"--read-data"]);

    // From S3 into a second local store.
    let back_path = env.path("back");
    let back = other_env(&back_path, &env);
    back.create();
    let o = back
        .cmd(&[&"sync", &"from", &s3_store])
        .env("KLOSETFS_OTHER_PASSPHRASE", OTHER_PASS)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    back.ok(&[&"check", &"--read-data"]);
    let out = back.path("restored");
    back.ok(&[
        &"restore",
        &"-to",
        &out,
        &format!("latest:{}", src.display()),
    ]);
    assert_same_tree(&src, &out);
}
