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

/// `scripts/latency-proxy.py` in front of a server: a real delay on every
/// round trip, and the requests counted by method. Killed on drop.
struct Proxy {
    child: std::process::Child,
    port: u16,
    target: u16,
    delay_ms: u32,
    counts: std::path::PathBuf,
}

impl Proxy {
    fn start(server: &Weed, delay_ms: u32, counts: std::path::PathBuf) -> Proxy {
        let target: u16 = server.endpoint.rsplit(':').next().unwrap().parse().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut p = Proxy {
            child: Command::new("true").spawn().unwrap(),
            port,
            target,
            delay_ms,
            counts,
        };
        p.launch();
        p
    }

    fn launch(&mut self) {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/latency-proxy.py");
        let _ = std::fs::remove_file(&self.counts);
        self.child = Command::new("python3")
            .arg(script)
            .args([
                self.port.to_string(),
                self.target.to_string(),
                self.delay_ms.to_string(),
            ])
            .arg(&self.counts)
            .spawn()
            .expect("python3 runs the latency proxy");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err()
            || !self.counts.exists()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the proxy did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// GET requests seen so far.
    fn gets(&self) -> u64 {
        let t = std::fs::read_to_string(&self.counts).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
        v["GET"].as_u64().unwrap_or(0)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every regular file under `root`, depth first in name order (the order
/// `find`, `cp -r` and `rsync` meet them in a mount, which lists by name).
fn files_in_walk_order(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            out.extend(files_in_walk_order(&p));
        } else if m.is_file() {
            out.push(p);
        }
    }
    out
}

/// Issue 36: with an empty cache, through a real delay, a walk of a remote
/// store waits for round trips per tree pack, not per directory, and a reader
/// of small files in walk order per batch of files, not per file; `restore`
/// on a new machine likewise. Counted in GET requests at the proxy, never
/// timed. The link dropping mid-walk gives EIO for what cannot be read and
/// the mount serves again once it is back.
#[test]
fn a_cold_walk_of_a_remote_store_costs_round_trips_per_pack_not_per_directory() {
    let server = shared();
    let mut env = Env::s3(server, "coldwalk");
    let src = env.path("src");
    let (mut dirs, mut files) = (0usize, 0usize);
    for a in 0..16 {
        for b in 0..20 {
            let d = src.join(format!("d{a:02}")).join(format!("e{b:02}"));
            std::fs::create_dir_all(&d).unwrap();
            dirs += 1;
            for f in 0..9 {
                let seed = (a * 1000 + b * 10 + f) as u64;
                std::fs::write(
                    d.join(format!("f{f}.txt")),
                    noise(seed, 500 + (seed as usize * 37) % 3000),
                )
                .unwrap();
                files += 1;
            }
        }
    }
    env.create();
    env.backup(&src);
    let mut proxy = Proxy::start(server, 5, env.path("counts.json"));
    for (k, v) in env.envs.iter_mut() {
        if k == "AWS_ENDPOINT_URL" {
            *v = proxy.endpoint();
        }
    }
    env.envs
        .push(("KLOSETFS_RETRY_ATTEMPTS".into(), "2".into()));
    let rel = src.strip_prefix("/").unwrap().to_path_buf();

    // A mount with an empty cache (a new machine): the walk.
    env.envs.push((
        "KLOSETFS_CACHE_DIR".into(),
        env.path("cache-a").display().to_string(),
    ));
    let mnt = env.path("mnt");
    let m = Mounted::start(&env, &mnt, &[&"mount", &mnt], 300);
    let tree = mnt.join("latest").join(&rel);
    let before = proxy.gets();
    let listed = files_in_walk_order(&tree);
    let walk_gets = proxy.gets() - before;
    assert_eq!(listed.len(), files);
    assert!(
        walk_gets <= 10,
        "a cold walk of {dirs} directories took {walk_gets} GETs (one per tree pack expected, not one per directory)"
    );
    // Every file read in walk order, byte-exact: batches, not one GET a file.
    let before = proxy.gets();
    for p in &listed {
        let want = std::fs::read(src.join(p.strip_prefix(&tree).unwrap())).unwrap();
        assert!(std::fs::read(p).unwrap() == want, "{p:?}");
    }
    let read_gets = proxy.gets() - before;
    assert!(
        read_gets * 20 <= files as u64,
        "reading {files} small files in walk order took {read_gets} GETs"
    );
    drop(m);

    // restore on a new machine: few requests for the trees and the data.
    env.envs.push((
        "KLOSETFS_CACHE_DIR".into(),
        env.path("cache-b").display().to_string(),
    ));
    let before = proxy.gets();
    env.assert_latest_restores(&src, "restored");
    let restore_gets = proxy.gets() - before;
    assert!(
        restore_gets <= 40,
        "restore of {files} files in {dirs} directories took {restore_gets} GETs"
    );
    eprintln!("GETs: walk {walk_gets}, read {read_gets}, restore {restore_gets} ({dirs} dirs, {files} files)");

    // The link drops mid-walk: EIO for what cannot be read, and the mount
    // serves again once the link is back.
    env.envs.push((
        "KLOSETFS_CACHE_DIR".into(),
        env.path("cache-c").display().to_string(),
    ));
    let m = Mounted::start(&env, &mnt, &[&"mount", &mnt], 300);
    let tree = mnt.join("latest").join(&rel);
    assert!(tree.join("d00").is_dir());
    proxy.kill();
    let err = std::fs::read_dir(tree.join("d01").join("e05"))
        .and_then(|d| d.collect::<Result<Vec<_>, _>>());
    match err {
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}"),
        Ok(_) => {
            // The tree pack came whole with d00: the data is what is cut off.
            let e = std::fs::read(tree.join("d01/e05/f0.txt")).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
        }
    }
    proxy.launch();
    assert_eq!(files_in_walk_order(&tree.join("d01")).len(), 20 * 9);
    let want = std::fs::read(src.join("d01/e05/f0.txt")).unwrap();
    assert_eq!(std::fs::read(tree.join("d01/e05/f0.txt")).unwrap(), want);
    drop(m);
}

/// Issue 40: named sources and destinations with credentials of their own.
/// A bucket readable only by "alice" is backed up into a store only the test
/// identity reaches, and restored into a bucket only "bob" may write, in
/// one command each, with no AWS_* variable set; the wrong keys fail and
/// write nothing. Bad settings are refused with one line.
#[test]
fn named_sources_and_destinations_use_their_own_credentials() {
    let scoped = |name: &str, key: &str, bucket: &str| {
        format!(
            r#"{{"name":"{name}","credentials":[{{"accessKey":"{key}","secretKey":"{key}-secret"}}],"actions":["Read:{bucket}","Write:{bucket}","List:{bucket}","Tagging:{bucket}"]}}"#
        )
    };
    let src_bucket = unique_bucket("alice");
    let dst_bucket = unique_bucket("bob");
    let server = Weed::start_with_identities(&format!(
        "{},{}",
        scoped("alice", "alicekey", &src_bucket),
        scoped("bob", "bobkey", &dst_bucket)
    ));
    // The admin makes both buckets and puts the source's objects in place.
    let admin = |b: &str| {
        let bucket =
            klosetfs::storage::S3Bucket::connect(&options(&server, &format!("s3://{b}"))).unwrap();
        bucket.ensure_exists().unwrap();
        bucket
    };
    let src = admin(&src_bucket);
    admin(&dst_bucket);
    let files: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| {
            (
                format!("photos/img{i:02}.jpg"),
                noise(i, 1000 + i as usize * 977),
            )
        })
        .collect();
    for (k, b) in &files {
        src.put(k, b, false, None, "seeding").unwrap();
    }

    let env = Env::new();
    let cfg = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_klosetfs"))
            .env("KLOSETFS_CONFIG", env.path("config.toml"))
            .env("KLOSETFS_PASSPHRASE", PASS)
            .env("KLOSETFS_CACHE_DIR", env.path("cache"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("KLOSETFS_STORE")
            .args(args)
            .output()
            .unwrap()
    };
    let ok = |args: &[&str]| {
        let o = cfg(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o
    };
    let fails = |args: &[&str], why: &str| {
        let o = cfg(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(err.contains(why), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    };
    let ep = format!("endpoint={}", server.endpoint);
    let alice_secret = env.path("alice-secret");
    std::fs::write(&alice_secret, "alicekey-secret\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&alice_secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let store_bucket = unique_bucket("store");
    ok(&[
        "config",
        "store",
        "create",
        "home",
        &format!("location=s3://{store_bucket}/kfs"),
        &ep,
        &format!("access_key={ACCESS_KEY}"),
        &format!("secret_access_key={SECRET_KEY}"),
        "region=us-east-1",
    ]);
    ok(&[
        "config",
        "source",
        "create",
        "photos",
        &format!("location=s3://{src_bucket}/photos"),
        &ep,
        "access_key=alicekey",
        &format!("secret_access_key_file={}", alice_secret.display()),
        "region=us-east-1",
    ]);
    let o = ok(&[
        "config",
        "destination",
        "create",
        "restored",
        &format!("location=s3://{dst_bucket}/back"),
        &ep,
        "access_key=bobkey",
        "secret_access_key=bobkey-secret",
        "region=us-east-1",
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("kept in clear"));
    // show never prints a secret.
    let shown = String::from_utf8_lossy(&ok(&["config", "destination", "show", "restored"]).stdout)
        .into_owned();
    assert!(
        shown.contains("secret_access_key=********") && !shown.contains("bobkey-secret"),
        "{shown}"
    );
    // A local source with default excludes, beside it.
    let local = env.path("local");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("keep.txt"), b"kept").unwrap();
    std::fs::write(local.join("skip.tmp"), b"excluded").unwrap();
    ok(&[
        "config",
        "source",
        "create",
        "notes",
        &format!("location={}", local.display()),
        "exclude=*.tmp",
    ]);

    ok(&["at", "@home", "create"]);
    // Each with its own keys: alice's for the source, the store's own.
    ok(&["at", "@home", "backup", "--tag", "photos", "@photos"]);
    ok(&["at", "@home", "backup", "@notes"]);
    let ls = String::from_utf8_lossy(
        &ok(&[
            "at",
            "@home",
            "ls",
            "-l",
            &format!("latest:{}", local.display()),
        ])
        .stdout,
    )
    .into_owned();
    assert!(ls.contains("keep.txt") && !ls.contains("skip.tmp"), "{ls}");
    // Bob's keys for the destination: the photos land in his bucket.
    let snaps = String::from_utf8_lossy(&ok(&["at", "@home", "ls", "--json"]).stdout).into_owned();
    let v: serde_json::Value = serde_json::from_str(&snaps).unwrap();
    let photos = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["tags"][0] == "photos")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&["at", "@home", "restore", "-to", "@restored", &photos]);
    let dst = admin(&dst_bucket);
    for (k, b) in &files {
        let (got, _) = dst
            .get(
                &format!("back/{}", k.strip_prefix("photos/").unwrap()),
                None,
                "checking",
            )
            .unwrap();
        assert!(&got == b, "{k}");
    }

    // The wrong keys fail and nothing is written to the store.
    let before = String::from_utf8_lossy(&ok(&["at", "@home", "ls"]).stdout).into_owned();
    ok(&[
        "config",
        "source",
        "set",
        "photos",
        "access_key=bobkey",
        "secret_access_key_file=",
        "secret_access_key=bobkey-secret",
    ]);
    let o = cfg(&["at", "@home", "backup", "@photos"]);
    assert!(!o.status.success(), "bob's keys cannot read alice's bucket");
    assert_eq!(
        String::from_utf8_lossy(&ok(&["at", "@home", "ls"]).stdout),
        before
    );

    // Bad input: one line each, non-zero, nothing saved.
    fails(
        &[
            "config",
            "source",
            "create",
            "x",
            "location=/tmp",
            "colour=blue",
        ],
        "unknown source setting",
    );
    fails(
        &[
            "config",
            "destination",
            "create",
            "x",
            "exclude=*.o",
            "location=/tmp",
        ],
        "unknown destination setting",
    );
    ok(&["config", "source", "create", "x", &ep]);
    fails(&["at", "@home", "backup", "@x"], "has no location");
    fails(
        &["config", "source", "set", "x", "type", "s3", "uri", "/tmp"],
        "does not fit location",
    );
    // The template's way: create, then `set NAME key value`.
    ok(&[
        "config",
        "source",
        "set",
        "x",
        "type",
        "fs",
        "uri",
        &local.display().to_string(),
    ]);
    ok(&["at", "@home", "backup", "@x"]);
    fails(
        &["config", "source", "create", "home", "location=/tmp"],
        "already a store",
    );
    fails(
        &["config", "store", "create", "photos", "location=/tmp"],
        "already a source",
    );
    fails(
        &[
            "config",
            "source",
            "create",
            "y",
            "location=/tmp",
            "access_key=a",
            "access_key_command=echo b",
        ],
        "give one of",
    );
    fails(
        &["at", "@home", "backup", "@nosuch"],
        "no source named @nosuch",
    );
    fails(&["at", "@home", "backup", "@home"], "is a store");
    fails(
        &["at", "@home", "restore", "-to", "@photos", "latest"],
        "is a source",
    );
    ok(&[
        "config",
        "source",
        "create",
        "unread",
        &format!("location=s3://{src_bucket}/photos"),
        &ep,
        "access_key=alicekey",
        &format!("secret_access_key_file={}", env.path("missing").display()),
    ]);
    fails(
        &["at", "@home", "backup", "@unread"],
        "cannot read secret_access_key_file",
    );
    std::fs::set_permissions(&alice_secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    ok(&[
        "config",
        "source",
        "set",
        "photos",
        "access_key=alicekey",
        "secret_access_key=",
        &format!("secret_access_key_file={}", alice_secret.display()),
    ]);
    let o = ok(&["at", "@home", "backup", "@photos"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("readable by others"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    ok(&[
        "config",
        "source",
        "create",
        "gone",
        &format!("location=s3://{}/x", unique_bucket("none")),
        &ep,
        "access_key=alicekey",
        "secret_access_key=alicekey-secret",
    ]);
    let before = String::from_utf8_lossy(&ok(&["at", "@home", "ls"]).stdout).into_owned();
    let o = cfg(&["at", "@home", "backup", "@gone"]);
    assert!(!o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&ok(&["at", "@home", "ls"]).stdout),
        before,
        "nothing written"
    );
}
