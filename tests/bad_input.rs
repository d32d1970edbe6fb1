//! Bad input gets a clear message and a non-zero exit, never a panic, and
//! loses nothing.

mod common;
use common::*;
use std::process::Output;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_fails(o: &Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn wrong_passphrase_missing_store_and_existing_store() {
    let env = Env::new();
    let o = env.run(&[&"ls"]);
    assert_fails(&o, 1, "no store at");
    std::fs::create_dir_all(&env.store).unwrap();
    let o = env.run(&[&"ls"]);
    assert_fails(&o, 1, "is not a klosetfs store");
    env.create();
    let o = env
        .cmd(&[&"ls"])
        .env("KLOSETFS_PASSPHRASE", "nope")
        .output()
        .unwrap();
    assert_fails(&o, 1, "wrong passphrase");
    let o = env.run(&[&"create"]);
    assert_fails(&o, 1, "already holds a store");
    // A non-empty directory that is not a store is never taken over.
    let other = env.path("stuff");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("precious"), "x").unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_klosetfs"))
        .env("KLOSETFS_PASSPHRASE", PASS)
        .args(["at".as_ref(), other.as_os_str(), "create".as_ref()])
        .output()
        .unwrap();
    assert_fails(&o, 1, "not empty");
    // No passphrase and no terminal.
    let o = env
        .cmd(&[&"ls"])
        .env_remove("KLOSETFS_PASSPHRASE")
        .output()
        .unwrap();
    assert_fails(&o, 1, "no passphrase");
}

#[test]
fn passphrase_sources_and_extra_keys() {
    let env = Env::new();
    env.create();
    let pf = env.path("pw");
    std::fs::write(&pf, format!("{PASS}\n")).unwrap();
    let o = env
        .cmd(&[&"ls", &"--passphrase-file", &pf])
        .env_remove("KLOSETFS_PASSPHRASE")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = env
        .cmd(&[&"ls", &"--passphrase-command", &format!("echo '{PASS}'")])
        .env_remove("KLOSETFS_PASSPHRASE")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = env
        .cmd(&[&"key", &"add"])
        .env("KLOSETFS_NEW_PASSPHRASE", "second")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = env
        .cmd(&[&"ls"])
        .env("KLOSETFS_PASSPHRASE", "second")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "the second passphrase opens the store: {}",
        stderr(&o)
    );
    let keys = env.ok(&[&"key", &"list"]);
    assert_eq!(keys.lines().count(), 2, "{keys}");
    let current = keys.lines().find(|l| l.starts_with('*')).unwrap()[2..10].to_string();
    let other = keys.lines().find(|l| !l.starts_with('*')).unwrap()[2..10].to_string();
    assert_fails(
        &env.run(&[&"key", &"rm", &current]),
        1,
        "refusing to remove the key you opened",
    );
    env.ok(&[&"key", &"rm", &other]);
    let o = env
        .cmd(&[&"ls"])
        .env("KLOSETFS_PASSPHRASE", "second")
        .output()
        .unwrap();
    assert_fails(&o, 1, "wrong passphrase");
}

#[test]
fn named_stores_from_the_config_file() {
    let env = Env::new();
    let cfg = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_klosetfs"))
            .env("KLOSETFS_CONFIG", env.path("config.toml"))
            .env_remove("KLOSETFS_PASSPHRASE")
            .args(args)
            .output()
            .unwrap()
    };
    let pf = env.path("pw");
    std::fs::write(&pf, PASS).unwrap();
    let loc = format!("location={}", env.store.display());
    let pfs = format!("passphrase_file={}", pf.display());
    assert!(cfg(&["config", "store", "create", "home", &loc, &pfs])
        .status
        .success());
    assert!(cfg(&["at", "@home", "create"]).status.success());
    let o = cfg(&["--store", "@home", "ls"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let show = cfg(&["config", "store", "show", "home"]);
    assert!(String::from_utf8_lossy(&show.stdout).contains("passphrase_file="));
    assert_fails(
        &cfg(&["config", "store", "set", "home", "bogus=1"]),
        1,
        "unknown setting",
    );
    assert_fails(
        &cfg(&["at", "@nowhere", "ls"]),
        1,
        "no store named @nowhere",
    );
    assert!(cfg(&["config", "store", "rm", "home"]).status.success());
    assert_fails(&cfg(&["at", "@home", "ls"]), 1, "no store named @home");
}

#[test]
fn ambiguous_and_unknown_snapshot_ids() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    env.create();
    let mut ids = Vec::new();
    // Enough snapshots that two share a first hex digit.
    for i in 0..20 {
        std::fs::write(src.join("f"), format!("{i}")).unwrap();
        ids.push(env.backup(&src));
    }
    let mut shared = None;
    for a in &ids {
        if ids.iter().filter(|b| b[..1] == a[..1]).count() > 1 {
            shared = Some(a[..1].to_string());
        }
    }
    let prefix = shared.expect("20 ids share some first digit");
    assert_fails(&env.run(&[&"ls", &prefix]), 1, "ambiguous");
    assert_fails(&env.run(&[&"ls", &"zz"]), 1, "not a snapshot id");
    let unused = (0..16)
        .map(|d| format!("{d:x}{d:x}{d:x}{d:x}{d:x}{d:x}"))
        .find(|p| !ids.iter().any(|i| i.starts_with(p)))
        .unwrap();
    assert_fails(&env.run(&[&"ls", &unused]), 1, "no snapshot matches");
    assert_fails(
        &env.run(&[&"ls", &format!("latest:{}/missing", src.display())]),
        1,
        "no such file",
    );
}

#[test]
fn damaged_objects_are_named_and_the_rest_restores() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    // Separate packs: a 20 MiB file fills one, the small file lands in the last.
    std::fs::write(src.join("big"), noise(5, 20 << 20)).unwrap();
    std::fs::write(src.join("small"), "small and intact").unwrap();
    env.create();
    env.backup(&src);
    env.ok(&[&"check", &"--read-data"]);
    // Flip a byte in the middle of the biggest pack.
    let mut packs: Vec<_> = walk(&env.store.join("packs"))
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    packs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let victim = packs.last().unwrap();
    let mut bytes = std::fs::read(victim).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(victim, bytes).unwrap();
    let name = victim.file_name().unwrap().to_string_lossy().to_string();

    let o = env.run(&[&"check", &"--read-data"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&name),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let out = env.path("out");
    let o = env.run(&[
        &"restore",
        &"-to",
        &out,
        &format!("latest:{}", src.display()),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("damaged") && stderr(&o).contains("big"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(out.join("small")).unwrap(),
        b"small and intact"
    );
    assert_eq!(std::fs::metadata(out.join("big")).unwrap().len(), 20 << 20);

    // A truncated snapshot object is named by check and skipped by ls.
    let snap = walk(&env.store.join("snapshots")).pop().unwrap();
    let b = std::fs::read(&snap).unwrap();
    std::fs::write(&snap, &b[..b.len() / 2]).unwrap();
    let o = env.run(&[&"check"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("snapshot"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(env.ok(&[&"ls"]).lines().count(), 0);
}

#[test]
fn missing_index_is_repaired_from_packs() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 0);
    env.create();
    env.backup(&src);
    for i in walk(&env.store.join("index")) {
        std::fs::remove_file(i).unwrap();
    }
    let o = env.run(&[&"check"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "missing index means missing blobs"
    );
    env.ok(&[&"check", &"--repair"]);
    env.ok(&[&"check", &"--read-data"]);
    let out = env.path("out");
    env.ok(&[
        &"restore",
        &"-to",
        &out,
        &format!("latest:{}", src.display()),
    ]);
    assert_same_tree(&src, &out);
}

#[test]
fn missing_source_path_is_an_error_and_nothing_is_written() {
    let env = Env::new();
    env.create();
    let o = env.run(&[&"backup", &env.path("nope")]);
    assert_fails(&o, 1, "cannot back up");
    assert_eq!(walk(&env.store.join("snapshots")).len(), 0);
}

#[test]
fn full_disk_at_the_store_fails_cleanly() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("needs root to mount a small tmpfs; covered in CI");
        return;
    }
    let mut env = Env::new();
    let _guard = env.store_on_tmpfs("4m");
    env.create();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("big"), noise(9, 40 << 20)).unwrap();
    let o = env.run(&[&"backup", &src]);
    assert_fails(&o, 1, "No space left");
    assert!(
        walk(&env.store.join("snapshots")).is_empty(),
        "no snapshot after a failed backup"
    );
    assert!(
        walk(&env.store.join("locks")).is_empty(),
        "the lock is released"
    );
    let o = env.run(&[&"check"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn unreadable_source_files_are_skipped_and_reported() {
    // Root reads everything, so run the backup as `nobody` when we are root.
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("ok"), "fine").unwrap();
    std::fs::write(src.join("secret"), "hidden").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(src.join("secret"), std::fs::Permissions::from_mode(0o000)).unwrap();
    env.create();
    let root = nix::unistd::geteuid().is_root();
    if root {
        // Let `nobody` reach the test directory and own the store.
        sh(&format!(
            "chmod 755 {} && chown -R nobody {}",
            env.dir.path().display(),
            env.store.display()
        ));
        sh(&format!("chmod 755 {}", src.display()));
    }
    let bin = env!("CARGO_BIN_EXE_klosetfs");
    let mut c = if root {
        as_nobody(bin)
    } else {
        std::process::Command::new(bin)
    };
    let o = c
        .env("KLOSETFS_PASSPHRASE", PASS)
        .arg("at")
        .arg(&env.store)
        .arg("backup")
        .arg(&src)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("secret"), "{}", stderr(&o));
    let ls = env.ok(&[&"ls", &format!("latest:{}", src.display())]);
    assert_eq!(ls.trim(), "ok");
}

#[test]
fn damaged_key_and_config_files_are_named() {
    let env = Env::new();
    env.create();
    // A flipped byte in both copies of the only key file: not "wrong
    // passphrase", but damage. (One copy damaged is not fatal: tests/repair.rs.)
    for key in walk(&env.store.join("keys")) {
        let mut b = std::fs::read(&key).unwrap();
        let i = b.iter().position(|c| *c == b'"').unwrap() + 1;
        b[i] ^= 0x20;
        std::fs::write(&key, &b).unwrap();
    }
    let o = env.run(&[&"ls"]);
    assert_fails(&o, 1, "damaged");
    // A config from a newer klosetfs is refused as such (its copy unused).
    let env = Env::new();
    env.create();
    let cfg = env.store.join("config");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"version\": 2", "\"version\": 7");
    std::fs::write(&cfg, text).unwrap();
    assert_fails(
        &env.run(&[&"ls"]),
        1,
        "newer than this klosetfs understands",
    );
    // Both copies mangled: a clear message.
    std::fs::write(&cfg, b"\x00garbage").unwrap();
    std::fs::write(env.store.join("config-copy"), b"\x00garbage").unwrap();
    assert_fails(&env.run(&[&"ls"]), 1, "corrupt config");
    // A damaged index object is named by check and repaired.
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), noise(8, 100_000)).unwrap();
    env.create();
    env.backup(&src);
    let idx = walk(&env.store.join("index")).pop().unwrap();
    let mut b = std::fs::read(&idx).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 1;
    std::fs::write(&idx, &b).unwrap();
    // Before any repair, the blobs the damaged index listed are found in
    // the pack headers: the file reads whole.
    let out = env
        .cmd(&[&"cat", &format!("latest:{}/f", src.display())])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout == noise(8, 100_000),
        "read through the pack headers: {}",
        stderr(&out)
    );
    let restored = env.path("restored");
    env.ok(&[
        &"restore",
        &"-to",
        &restored,
        &format!("latest:{}", src.display()),
    ]);
    assert_eq!(
        std::fs::read(restored.join("f")).unwrap(),
        noise(8, 100_000)
    );
    let o = env.run(&[&"check"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stdout)
        .contains(&idx.file_name().unwrap().to_string_lossy().to_string()));
    env.ok(&[&"check", &"--repair"]);
    env.ok(&[&"check", &"--read-data"]);
    let out = env
        .cmd(&[&"cat", &format!("latest:{}/f", src.display())])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout == noise(8, 100_000),
        "the data is whole after the repair"
    );
}

/// A reader that closes the pipe ends every command quietly, as Unix tools do.
#[test]
fn a_closed_pipe_ends_commands_quietly() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 0);
    env.create();
    env.backup(&src);
    let commands: [&[&dyn AsRef<std::ffi::OsStr>]; 7] = [
        &[&"ls"],
        &[&"ls", &"--json"],
        &[&"ls", &"-l", &"-R", &"latest"],
        &[&"info"],
        &[&"check"],
        &[&"locate", &"*"],
        &[&"key", &"list"],
    ];
    for args in commands {
        let mut child = env
            .cmd(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.code() == Some(0) && !stderr(&o).contains("panicked"),
            "{:?}: {}: {}",
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect::<Vec<_>>(),
            o.status,
            stderr(&o)
        );
    }
}

#[test]
fn a_store_path_that_is_a_file_is_named_as_such() {
    let env = Env::new();
    std::fs::write(&env.store, "not a folder").unwrap();
    for cmd in ["ls", "create"] {
        assert_fails(&env.run(&[&cmd]), 1, "is not a directory");
    }
    assert_eq!(std::fs::read(&env.store).unwrap(), b"not a folder");
}

/// A backup killed with -9 leaves its lock (and maybe a partial object):
/// check reports them, the next writer on this host clears dead processes'
/// locks, prune removes old partial objects.
#[test]
fn leftovers_of_killed_writers_are_reported_and_cleared() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("big"), noise(3, 200 << 20)).unwrap();
    env.create();
    let mut child = env.cmd(&[&"backup", &src]).spawn().unwrap();
    let t0 = std::time::Instant::now();
    while walk(&env.store.join("locks")).is_empty() {
        assert!(t0.elapsed().as_secs() < 60, "backup took no lock");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(walk(&env.store.join("locks")).len(), 1);
    // A partial object as a writer killed mid-put leaves it, two hours old.
    let tmp = env.store.join("tmp").join("4242-0-deadbeef");
    std::fs::write(&tmp, vec![7u8; 4096]).unwrap();
    let old =
        filetime::FileTime::from_unix_time(filetime::FileTime::now().unix_seconds() - 7200, 0);
    filetime::set_file_mtime(&tmp, old).unwrap();

    let o = env.run(&[&"check"]);
    assert!(
        stderr(&o).contains("stale lock") && stderr(&o).contains("partial object"),
        "{}",
        stderr(&o)
    );
    std::fs::write(src.join("big"), b"small now").unwrap();
    env.backup(&src);
    assert!(
        walk(&env.store.join("locks")).is_empty(),
        "the dead process's lock is cleared by the next writer"
    );
    let out = env.ok(&[&"prune"]);
    assert!(out.contains("1 partial objects removed"), "{out}");
    assert!(!tmp.exists());
    let o = env.run(&[&"check"]);
    assert!(
        o.status.success() && !stderr(&o).contains("partial"),
        "{}",
        stderr(&o)
    );
}

/// A damaged newest snapshot: `latest` means an older one, and every command
/// that resolves `latest` or lists snapshots says so.
#[test]
fn a_damaged_newest_snapshot_is_announced() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), "one").unwrap();
    env.create();
    env.backup(&src);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(src.join("b"), "two").unwrap();
    let newest = env.backup(&src);
    let p = env.store.join("snapshots").join(&newest);
    let mut b = std::fs::read(&p).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 1;
    std::fs::write(&p, b).unwrap();
    let in_latest = format!("latest:{}", src.display());
    let missing = format!("latest:{}/nope", src.display());
    let commands: [&[&dyn AsRef<std::ffi::OsStr>]; 3] =
        [&[&"ls"], &[&"ls", &in_latest], &[&"cat", &missing]];
    for args in commands {
        let o = env.run(args);
        assert!(
            stderr(&o).contains(&format!("snapshot {} is damaged", &newest[..8])),
            "{}",
            stderr(&o)
        );
    }
    // A missing path names the snapshot `latest` resolved to.
    let o = env.run(&[&"cat", &missing]);
    assert_fails(&o, 1, "in snapshot ");
}

/// Issue 37: a key file opens only the store it belongs to. Another store's
/// key (same passphrase) in place of this one's, beside it, renamed, or
/// made with another passphrase: never used, named as foreign, and nothing
/// in the store changes; a misnamed key file is reported, not skipped in
/// silence, and "wrong passphrase" is said only when every key was tried.
#[test]
fn a_key_file_opens_only_its_own_store() {
    let a = Env::new();
    a.create();
    let src = a.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"data of store a").unwrap();
    a.backup(&src);
    let b = Env::new();
    b.create();
    let keys = |e: &Env| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = walk(&e.store.join("keys"))
            .into_iter()
            .filter(|p| p.is_file())
            .collect();
        v.sort();
        v
    };
    let own = keys(&a);
    let own_bytes: Vec<Vec<u8>> = own.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert_eq!(own.len(), 2, "a key file and its copy");
    let put_own = || {
        for (p, bytes) in own.iter().zip(&own_bytes) {
            std::fs::write(p, bytes).unwrap();
        }
    };
    let put_foreign = || {
        for p in keys(&b) {
            std::fs::copy(&p, a.store.join("keys").join(p.file_name().unwrap())).unwrap();
        }
    };

    // In place of the store's own key: refused, named, nothing written.
    for p in &own {
        std::fs::remove_file(p).unwrap();
    }
    put_foreign();
    let before = a.store_files();
    for args in [
        &[&"ls" as &dyn AsRef<std::ffi::OsStr>][..],
        &[&"backup", &src],
    ] {
        let o = a.run(args);
        assert_fails(&o, 1, "belongs to another store");
        assert!(!stderr(&o).contains("wrong passphrase"), "{}", stderr(&o));
    }
    assert_eq!(
        a.store_files(),
        before,
        "nothing written with a foreign key"
    );

    // Beside the right one: the right one opens, whichever is listed first
    // (the ids sort either way across runs of this test), and check names
    // the foreign one.
    put_own();
    let o = a.run(&[&"ls"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = a.run(&[&"check"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stdout).contains("belongs to another store"));
    a.ok(&[&"backup", &src]);
    for p in keys(&b) {
        std::fs::remove_file(a.store.join("keys").join(p.file_name().unwrap())).unwrap();
    }
    a.ok(&[&"check", &"--read-data"]);

    // Renamed (upper case, .bak): not silently skipped.
    for (i, p) in own.iter().enumerate() {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let new = if i == 0 {
            name.to_uppercase()
        } else {
            format!("{name}.bak")
        };
        std::fs::rename(p, p.with_file_name(&new)).unwrap();
    }
    let o = a.run(&[&"ls"]);
    assert_fails(&o, 1, "not key files");
    assert!(!stderr(&o).contains("wrong passphrase:"), "{}", stderr(&o));
    for p in walk(&a.store.join("keys")) {
        if p.is_file() {
            std::fs::remove_file(p).unwrap();
        }
    }
    put_own();
    a.ok(&[&"ls"]);

    // Another store's key made with another passphrase: foreign, not "wrong".
    let c = Env::new();
    c.cmd(&[&"create"])
        .env("KLOSETFS_PASSPHRASE", "another one entirely")
        .output()
        .unwrap();
    for p in &own {
        std::fs::remove_file(p).unwrap();
    }
    for p in keys(&c) {
        std::fs::copy(&p, a.store.join("keys").join(p.file_name().unwrap())).unwrap();
    }
    assert_fails(&a.run(&[&"ls"]), 1, "belongs to another store");
    for p in keys(&c) {
        std::fs::remove_file(a.store.join("keys").join(p.file_name().unwrap())).unwrap();
    }
    put_own();
    // And the plain case still reads as it should.
    let o = a
        .cmd(&[&"ls"])
        .env("KLOSETFS_PASSPHRASE", "nope")
        .output()
        .unwrap();
    assert_fails(&o, 1, "wrong passphrase");
}

/// Issue 37, format 1: a key of another format-1 store (no store id in it)
/// that opens with the passphrase is proved foreign by the store's own
/// objects, before anything is written with it.
#[test]
fn a_format_1_store_refuses_a_foreign_format_1_key() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-store");
    let env = Env::new();
    std::fs::create_dir_all(&env.store).unwrap();
    sh(&format!(
        "cp -a {}/. {}/",
        fixture.display(),
        env.store.display()
    ));
    let kdf = klosetfs::format::keyfile::KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let m = klosetfs::format::crypto::MasterKey::random().unwrap();
    let (id, body) = klosetfs::format::keyfile::KeyFile::new(&m, b"fixture passphrase", kdf, None)
        .unwrap()
        .encode();
    for p in walk(&env.store.join("keys")) {
        if p.is_file() {
            std::fs::remove_file(p).unwrap();
        }
    }
    std::fs::write(env.store.join("keys").join(id.to_hex()), body).unwrap();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    let o = env
        .cmd(&[&"backup", &src])
        .env("KLOSETFS_PASSPHRASE", "fixture passphrase")
        .output()
        .unwrap();
    assert_fails(&o, 1, "belongs to another store");
    assert!(
        walk(&env.store.join("snapshots"))
            .iter()
            .filter(|p| p.is_file())
            .count()
            == 1
    );
}
