//! Backup options beyond a plain walk: `--stdin` and `--stdin-from-command`
//! (a stream becomes one file, dedups like any file, a failing command leaves
//! no snapshot), `--time`, and `-x` (stay on one file system).

mod common;
use common::*;

use std::io::Write;
use std::process::Stdio;

#[test]
fn stdin_is_stored_as_one_file_at_the_given_time_and_dedups() {
    let env = Env::new();
    env.create();
    let dump = noise(7, 5 << 20);
    let mut child = env
        .cmd(&[
            &"backup",
            &"--json",
            &"--stdin",
            &"--stdin-name",
            &"db.sql",
            &"--time",
            &"2020-02-29T12:34:56Z",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&dump).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["time"], "2020-02-29T12:34:56Z", "{v}");
    assert_eq!(v["bytes"], 5 << 20, "{v}");
    let cat = env.cmd(&[&"cat", &"latest:/db.sql"]).output().unwrap();
    assert!(
        cat.status.success() && cat.stdout == dump,
        "content comes back"
    );
    let ls = env.ok(&[&"ls"]);
    assert!(ls.contains("stdin:/db.sql"), "{ls}");

    // The same dump from a command: only the (new) tree is stored.
    let src = env.path("dump.bin");
    std::fs::write(&src, &dump).unwrap();
    let out = env.ok(&[
        &"backup",
        &"--json",
        &"--stdin-name",
        &"db.sql",
        &"--stdin-from-command",
        &"--",
        &"cat",
        &src,
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["new_bytes"].as_u64().unwrap() < 4096, "{v}");
    let restored = env.path("out");
    env.ok(&[&"restore", &"-to", &restored, &"latest"]);
    assert_eq!(std::fs::read(restored.join("db.sql")).unwrap(), dump);
}

#[test]
fn a_failing_command_leaves_no_snapshot_and_says_why() {
    let env = Env::new();
    env.create();
    let o = env.run(&[
        &"backup",
        &"--stdin-from-command",
        &"--",
        &"sh",
        &"-c",
        &"head -c 3000000 /dev/urandom; echo 'connection refused' >&2; exit 2",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("connection refused") && err.contains("no snapshot"),
        "{err}"
    );
    assert!(walk(&env.store.join("snapshots")).is_empty());
    assert!(walk(&env.store.join("locks")).is_empty(), "lock released");
    // A missing command is a clear error too.
    let o = env.run(&[
        &"backup",
        &"--stdin-from-command",
        &"--",
        &"/nonexistent/cmd",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(walk(&env.store.join("snapshots")).is_empty());
}

/// `backup -x` stays on the source's file system: a mount point below it is
/// kept as an empty directory; without -x its contents are backed up.
#[test]
fn one_file_system_keeps_mount_points_empty() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("needs root to mount a tmpfs; covered in CI");
        return;
    }
    let env = Env::new();
    env.create();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/here.txt"), "same fs").unwrap();
    let _guard = small_tmpfs(&src.join("mnt"), "4m");
    std::fs::write(src.join("mnt/elsewhere.txt"), "other fs").unwrap();
    env.ok(&[&"backup", &"-x", &src]);
    let root = format!("latest:{}", src.display());
    let ls = env.ok(&[&"ls", &"-R", &root]);
    assert!(ls.contains("here.txt") && ls.contains("/mnt"), "{ls}");
    assert!(!ls.contains("elsewhere.txt"), "{ls}");
    env.ok(&[&"backup", &src]);
    let ls = env.ok(&[&"ls", &"-R", &root]);
    assert!(ls.contains("elsewhere.txt"), "{ls}");
}
