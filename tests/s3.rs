#![cfg(feature = "s3")]
//! The S3 connector against a real S3 server (SeaweedFS on 127.0.0.1): the
//! storage suite, every command end to end, both mounts, and the failures that
//! happen on networks (server gone mid-backup, wrong credentials, no bucket).

mod common;
use common::s3::{shared, unique_bucket, Weed, ACCESS_KEY, SECRET_KEY};
use common::*;
use std::process::Command;
use std::sync::Arc;

use klosetfs::storage::{S3Options, S3Storage, Storage};

fn options(server: &Weed, location: &str) -> S3Options {
    let mut o = S3Options::parse(location).unwrap();
    o.endpoint = Some(server.endpoint.clone());
    o.access_key = Some(ACCESS_KEY.into());
    o.secret_access_key = Some(SECRET_KEY.into());
    o.region = Some("us-east-1".into());
    o
}

#[test]
fn the_storage_suite_passes_on_s3() {
    let w = shared();
    let bucket = unique_bucket("suite");
    // With and without a key prefix; both in one bucket must not see each other.
    let a = S3Storage::create(options(w, &format!("s3://{bucket}"))).unwrap();
    klosetfs::storage::suite::run_all(Arc::new(a));
    let b = S3Storage::create(options(w, &format!("s3://{bucket}/some/prefix"))).unwrap();
    assert!(b.list(klosetfs::storage::Kind::Index).unwrap().is_empty());
    klosetfs::storage::suite::run_all(Arc::new(b));
}

#[test]
fn every_command_works_on_an_s3_store() {
    let env = Env::s3(shared(), "e2e");
    let src = env.path("src");
    make_tree(&src, 64);
    env.create();
    let first = env.backup(&src);
    std::fs::write(src.join("new.txt"), b"second snapshot\n").unwrap();
    let second = env.backup_json(&src);
    // The second backup uploads next to nothing: dedup works across the wire.
    assert!(
        second["stored_bytes"].as_u64().unwrap() < 1 << 20,
        "{second}"
    );
    let ls = env.ok(&[&"ls"]);
    assert_eq!(ls.lines().count(), 2, "{ls}");
    assert_eq!(
        env.ok(&[&"cat", &format!("latest:{}/new.txt", src.display())]),
        "second snapshot\n"
    );
    env.assert_latest_restores(&src, "out");
    env.ok(&[&"check", &"--read-data"]);
    env.ok(&[&"rm", &&first[..12]]);
    env.ok(&[&"prune"]);
    env.ok(&[&"check", &"--read-data"]);
    env.assert_latest_restores(&src, "out2");
    // The same commands work with the on-disk cache off, and after it is deleted.
    std::fs::remove_dir_all(env.path("cache")).ok();
    env.ok(&[&"--no-cache", &"check"]);
    env.ok(&[&"ls"]);
}

#[test]
fn mount_an_s3_store_and_rsync_out() {
    let env = Env::s3(shared(), "mount");
    let src = env.path("src");
    make_tree(&src, 32);
    env.create();
    env.backup(&src);
    let mnt = env.path("mnt");
    let m = Mounted::start(
        &env,
        &mnt,
        &[&"mount", &format!("latest:{}", src.display()), &mnt],
        300,
    );
    let out = env.path("out");
    let st = Command::new("rsync")
        .arg("-aHAX")
        .arg(format!("{}/", m.mnt.display()))
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    assert_same_tree(&src, &out);
    drop(m);
}

#[test]
fn writable_mount_commits_into_an_s3_store() {
    let env = Env::s3(shared(), "writable");
    let src = env.path("src");
    make_tree(&src, 8);
    env.create();
    let mnt = env.path("mnt");
    let spool = env.path("spool");
    let mut m = Mounted::start(
        &env,
        &mnt,
        &[&"mount", &"--writable", &"--spool", &spool, &mnt],
        300,
    );
    let st = Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&m.mnt)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(m.stop().unwrap().success());
    let out = env.path("out");
    env.ok(&[&"restore", &"-to", &out, &"latest:/src"]);
    assert_same_tree(&src, &out);
    env.ok(&[&"check", &"--read-data"]);
}

#[test]
fn wrong_credentials_and_missing_buckets_get_clear_messages() {
    let w = shared();
    let env = Env::s3(w, "creds");
    env.create();
    let mut bad = Env::s3(w, "creds");
    bad.store = env.store.clone();
    for (k, v) in bad.envs.iter_mut() {
        if k == "AWS_SECRET_ACCESS_KEY" {
            *v = "not-the-secret".into();
        }
    }
    let o = bad.run(&[&"ls"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("credentials were refused"), "{err}");

    let mut missing = Env::s3(w, "nobucket");
    missing.store = format!("s3://{}/x", unique_bucket("never-made")).into();
    let o = missing.run(&[&"ls"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn a_server_that_dies_mid_backup_loses_nothing() {
    let mut w = Weed::start();
    let env = Env::s3(&w, "dies");
    let src = env.path("src");
    make_tree(&src, 0);
    for i in 0..40 {
        std::fs::write(src.join(format!("n{i}.bin")), noise(i, 1 << 20)).unwrap();
    }
    env.create();
    let first = env.backup(&src);
    // Change every big file, then stop the server while that backup runs.
    for i in 0..40 {
        std::fs::write(src.join(format!("n{i}.bin")), noise(100 + i, 1 << 20)).unwrap();
    }
    let child = env
        .cmd(&[&"backup", &src])
        // Quick retries so the dead server fails the backup in seconds.
        .env("KLOSETFS_RETRY_ATTEMPTS", "2")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    w.stop();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "backup against a dead server succeeded"
    );
    assert!(
        err.contains("unreachable") || err.contains("no answer"),
        "{err}"
    );
    // The server returns: nothing references missing data, and the next backup works.
    w.restart();
    env.ok(&[&"unlock"]);
    env.ok(&[&"check", &"--read-data"]);
    let snaps = env.ok(&[&"ls"]);
    assert_eq!(snaps.lines().count(), 1, "no half snapshot: {snaps}");
    assert!(snaps.contains(&first[..8]));
    env.backup(&src);
    env.assert_latest_restores(&src, "out");
    env.ok(&[&"check", &"--read-data"]);
}

#[test]
fn backup_from_and_restore_to_an_s3_prefix() {
    use klosetfs::storage::S3Bucket;
    let w = shared();
    let src_loc = format!("s3://{}/photos", unique_bucket("src"));
    let b = S3Bucket::connect(&options(w, &src_loc)).unwrap();
    b.ensure_exists().unwrap();
    // Small, empty, nested, multi-chunk and odd-named objects, one folder marker.
    let mut objects: Vec<(String, Vec<u8>)> = vec![
        ("a.txt".into(), b"hello\n".to_vec()),
        ("empty".into(), Vec::new()),
        ("2024/06/big.bin".into(), noise(7, 20 << 20)),
        ("2024/06/small.jpg".into(), noise(8, 3000)),
        ("with space & ümlaut.txt".into(), b"odd name".to_vec()),
    ];
    for (k, v) in &objects {
        let ct = k.ends_with(".jpg").then_some("image/jpeg");
        b.put(&format!("photos/{k}"), v, false, ct, "test put")
            .unwrap();
    }
    b.put("photos/", b"", false, None, "test put").unwrap();
    b.put("photos/emptydir/", b"", false, None, "test put")
        .unwrap();
    b.put(
        "elsewhere/not-this.txt",
        b"outside the prefix",
        false,
        None,
        "test put",
    )
    .unwrap();

    let env = Env::s3(w, "src-store");
    env.create();
    let first = env.ok(&[&"backup", &"--json", &src_loc]);
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["files"], 5, "{first}");
    assert!(env
        .ok(&[&"ls", &"latest:/"])
        .contains("with space & ümlaut.txt"));
    assert_eq!(env.ok(&[&"cat", &"latest:/a.txt"]), "hello\n");
    // A second backup finds every object unchanged and reads none of them.
    let again = env.ok(&[&"backup", &"--json", &src_loc]);
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["new_bytes"], 0, "{again}");
    assert_eq!(again["files"], 5, "{again}");
    // ... and records the first as its parent, as a local backup does.
    let info = env.ok(&[
        &"info",
        &"--json",
        &again["id"].as_str().unwrap().to_string(),
    ]);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["parent"], first["id"], "{info}");

    // Restore to another bucket's prefix and compare byte for byte.
    let dst_loc = format!("s3://{}/restored", unique_bucket("dst"));
    env.ok(&[&"restore", &"-to", &dst_loc, &"latest"]);
    let d = S3Bucket::connect(&options(w, &dst_loc)).unwrap();
    let mut listed: Vec<String> = d
        .list("restored/", "test list")
        .unwrap()
        .into_iter()
        .map(|o| o.key["restored/".len()..].to_string())
        .collect();
    listed.sort();
    objects.sort();
    assert_eq!(
        listed,
        objects.iter().map(|o| o.0.clone()).collect::<Vec<_>>()
    );
    for (k, v) in &objects {
        let (got, ct) = d.get(&format!("restored/{k}"), None, "test get").unwrap();
        assert!(got == *v, "{k} differs");
        if k.ends_with(".jpg") {
            assert_eq!(ct.as_deref(), Some("image/jpeg"));
        }
    }
    // And a path inside the snapshot, to a local folder, is byte-exact too.
    let out = env.path("out");
    env.ok(&[&"restore", &"-to", &out, &"latest:/2024"]);
    assert_eq!(
        std::fs::read(out.join("06/big.bin")).unwrap(),
        objects.iter().find(|o| o.0 == "2024/06/big.bin").unwrap().1
    );
}

#[test]
fn listings_follow_pagination() {
    use klosetfs::storage::Kind;
    let w = shared();
    let s = Arc::new(
        S3Storage::create(options(w, &format!("s3://{}/p", unique_bucket("pages")))).unwrap(),
    );
    // More keys than one ListObjectsV2 page (1000) holds.
    std::thread::scope(|sc| {
        for t in 0..8 {
            let s = s.clone();
            sc.spawn(move || {
                for i in (t..1100).step_by(8) {
                    s.put(Kind::Index, &format!("{i:04x}"), b"x").unwrap();
                }
            });
        }
    });
    let l = s.list(Kind::Index).unwrap();
    assert_eq!(l.len(), 1100);
}

#[test]
fn two_hosts_back_up_into_one_store_at_once() {
    let w = shared();
    let a = Env::s3(w, "twohosts");
    let mut b = Env::s3(w, "twohosts");
    b.store = a.store.clone();
    let (sa, sb) = (a.path("src"), b.path("src"));
    make_tree(&sa, 16);
    make_tree(&sb, 0);
    std::fs::write(sb.join("only-b.txt"), b"host b").unwrap();
    a.create();
    let pa = a
        .cmd(&[&"backup", &"--host", &"alpha", &sa])
        .spawn()
        .unwrap();
    let pb = b
        .cmd(&[&"backup", &"--host", &"beta", &sb])
        .spawn()
        .unwrap();
    assert!(pa.wait_with_output().unwrap().status.success());
    assert!(pb.wait_with_output().unwrap().status.success());
    a.ok(&[&"check", &"--read-data"]);
    let (oa, ob) = (a.path("out"), b.path("out"));
    let ls = a.ok(&[&"ls"]);
    assert_eq!(ls.lines().count(), 2, "{ls}");
    let id = |host: &str| {
        ls.lines()
            .find(|l| l.contains(host))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {host} snapshot in {ls}"))
            .to_string()
    };
    let (id_a, id_b) = (id("alpha"), id("beta"));
    a.ok(&[&"restore", &"-to", &oa, &format!("{id_a}:{}", sa.display())]);
    b.ok(&[&"restore", &"-to", &ob, &format!("{id_b}:{}", sb.display())]);
    assert_same_tree(&sa, &oa);
    assert_same_tree(&sb, &ob);
}
