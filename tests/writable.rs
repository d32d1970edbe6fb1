//! The writable backup-on-close mount, with real mounts and real tools.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

fn writable(env: &Env, mnt: &Path, extra: &[&str]) -> Mounted {
    let spool = env.path("spool");
    let mut args: Vec<Box<dyn AsRef<std::ffi::OsStr>>> = vec![
        Box::new("mount"),
        Box::new("--writable"),
        Box::new("--spool"),
        Box::new(spool),
    ];
    for e in extra {
        args.push(Box::new(e.to_string()));
    }
    args.push(Box::new(mnt.to_path_buf()));
    let refs: Vec<&dyn AsRef<std::ffi::OsStr>> = args
        .iter()
        .map(|b| b.as_ref() as &dyn AsRef<std::ffi::OsStr>)
        .collect();
    Mounted::start(env, mnt, &refs, 300)
}

fn run(cmd: &mut Command) -> std::process::Output {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

#[test]
fn cp_a_into_an_empty_mount_makes_an_identical_snapshot() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 256);
    env.create();
    let mnt = env.path("mnt");
    let mut m = writable(&env, &mnt, &[]);
    run(Command::new("cp").arg("-a").arg(&src).arg(&m.mnt));
    // Reads of files not yet committed return what was written.
    assert_eq!(
        std::fs::read(m.mnt.join("src/dir/multi.bin")).unwrap(),
        std::fs::read(src.join("dir/multi.bin")).unwrap()
    );
    // cp -a set each mode as a minimal ACL: it is the mode, not an xattr
    // that a later chmod would leave stale.
    let plain = m.mnt.join("src/dir/multi.bin");
    assert!(xattr::get(&plain, "system.posix_acl_access")
        .unwrap()
        .is_none());
    assert!(m.stop().unwrap().success());
    let out = env.path("out");
    env.ok(&[&"restore", &"-to", &out, &"latest:/src"]);
    assert_same_tree(&src, &out);
    env.ok(&[&"check", &"--read-data"]);

    // chmod after cp -a wins in the next snapshot.
    let mut m = writable(&env, &mnt, &["--base", "latest"]);
    run(Command::new("chmod")
        .arg("600")
        .arg(m.mnt.join("src/dir/multi.bin")));
    assert!(m.stop().unwrap().success());
    let out2 = env.path("out2");
    env.ok(&[&"restore", &"-to", &out2, &"latest:/src/dir/multi.bin"]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out2.join("multi.bin"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o600);
}

/// `cp -a SRC/. MNT/` sets the mount root's mode and times: the snapshot
/// keeps them (a restore of it equals SRC, `./` included), and a mount on
/// that snapshot as base starts from them.
#[test]
fn the_mount_root_round_trips_like_any_directory() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 16);
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o750)).unwrap();
    run(Command::new("touch")
        .args(["-d", "2001-02-03 04:05:06.789"])
        .arg(&src));
    env.create();
    let mnt = env.path("mnt");
    let mut m = writable(&env, &mnt, &[]);
    run(Command::new("cp").arg("-a").arg(src.join(".")).arg(&m.mnt));
    assert!(m.stop().unwrap().success());
    let root_of = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.mode() & 0o7777, m.mtime(), m.mtime_nsec())
    };
    let want = root_of(&src);
    assert_eq!(want.0, 0o750);
    let out = env.path("out");
    env.ok(&[&"restore", &"-to", &out, &"latest"]);
    assert_same_tree(&src, &out);
    assert_eq!(root_of(&out), want, "restored root");
    // A read-only mount of that snapshot's root shows it too.
    let ro = env.path("ro");
    let m = Mounted::start(&env, &ro, &[&"mount", &"latest:/", &ro], 60);
    assert_eq!(root_of(&m.mnt), want, "root of a read-only mount");
    drop(m);
    // A later mount on it starts from the same root.
    let mut m = writable(&env, &mnt, &["--base", "latest"]);
    assert_eq!(root_of(&m.mnt), want, "root of a mount on the base");
    std::fs::write(m.mnt.join("new"), "x").unwrap();
    assert!(m.stop().unwrap().success());
    let out2 = env.path("out2");
    env.ok(&[&"restore", &"-to", &out2, &"latest"]);
    assert_eq!(root_of(&out2).0, 0o750, "mode kept through a base");
}

#[test]
fn rsync_into_a_mount_on_a_base_sends_only_changes() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..100 {
        let d = src.join(format!("d{}", i % 10));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("f{i}")), noise(i, 256 * 1024)).unwrap();
    }
    env.create();
    let mnt = env.path("mnt");
    let mut m = writable(&env, &mnt, &[]);
    run(Command::new("rsync")
        .arg("-a")
        .arg(&src)
        .arg(format!("{}/", m.mnt.display())));
    assert!(m.stop().unwrap().success());
    let before = env.store_bytes();

    // Change 1% of the files: same size, and rsync compares whole seconds of
    // mtime, so move it a minute on (the copy above may be within the second).
    let changed = src.join("d7/f7");
    std::fs::write(&changed, noise(1000, 256 * 1024)).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&changed)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    let mut m = writable(&env, &mnt, &["--base", "latest"]);
    let o = run(Command::new("rsync")
        .args(["-a", "--stats"])
        .arg(&src)
        .arg(format!("{}/", m.mnt.display())));
    let stats = String::from_utf8_lossy(&o.stdout);
    let line = stats
        .lines()
        .find(|l| l.starts_with("Number of regular files transferred"))
        .unwrap();
    assert!(
        line.ends_with(": 1"),
        "only the changed file is sent: {line}"
    );
    assert!(m.stop().unwrap().success());
    let grown = env.store_bytes() - before;
    assert!(
        grown < 600 * 1024,
        "store grew by about the change ({grown} bytes)"
    );
    let out = env.path("out");
    env.ok(&[&"restore", &"-to", &out, &"latest:/src"]);
    assert_same_tree(&src, &out);
}

#[test]
fn files_closed_before_kill_9_survive() {
    // Every durability mode keeps what a close returned for across a crash
    // of the daemon; they differ only on a power cut (design.md).
    for mode in ["lazy", "close", "commit"] {
        kill_9_after_closes(mode);
    }
}

fn kill_9_after_closes(mode: &str) {
    let env = Env::new();
    env.create();
    let mnt = env.path("mnt");
    let m = writable(&env, &mnt, &["--sync", mode]);
    std::fs::create_dir_all(m.mnt.join("docs")).unwrap();
    for i in 0..20 {
        std::fs::write(
            m.mnt.join(format!("docs/file{i}")),
            noise(i, 100_000 + i as usize),
        )
        .unwrap();
    }
    std::fs::rename(m.mnt.join("docs/file0"), m.mnt.join("docs/renamed")).unwrap();
    // Large files are recovered from the spool, small ones from the journal.
    std::fs::write(m.mnt.join("docs/large"), noise(77, 3 << 20)).unwrap();
    let pid = m.child.as_ref().unwrap().id();
    sh(&format!("kill -9 {pid}"));
    drop(m);
    assert_eq!(
        walk(&env.store.join("snapshots")).len(),
        0,
        "nothing was committed before the crash ({mode})"
    );
    // The next mount at the same place recovers and commits them.
    let mut m = writable(&env, &mnt, &[]);
    assert!(m.stop().unwrap().success());
    let ls = env.ok(&[&"ls", &"latest:/docs"]);
    assert_eq!(ls.lines().count(), 21, "{mode}: {ls}");
    let out = env.path("out");
    env.ok(&[&"restore", &"-to", &out, &"latest:/docs"]);
    assert_eq!(
        std::fs::read(out.join("renamed")).unwrap(),
        noise(0, 100_000),
        "{mode}"
    );
    for i in 1..20 {
        assert_eq!(
            std::fs::read(out.join(format!("file{i}"))).unwrap(),
            noise(i, 100_000 + i as usize),
            "{mode}: file{i}"
        );
    }
    assert!(
        std::fs::read(out.join("large")).unwrap() == noise(77, 3 << 20),
        "{mode}: large"
    );
    env.ok(&[&"check", &"--read-data"]);
}

/// The default spool follows `KLOSETFS_CACHE_DIR`, holds plaintext so is
/// private (folders 0700, files 0600), and `recover` of a dead mount says where
/// the mount was, with no warning for a normal journal.
#[test]
fn recover_command_commits_a_dead_mount() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.create();
    let mnt = env.path("mnt");
    let m = Mounted::start(&env, &mnt, &[&"mount", &"--writable", &mnt], 300);
    std::fs::write(m.mnt.join("only"), "closed then crashed").unwrap();
    std::fs::write(m.mnt.join("large"), noise(5, 3 << 20)).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let spools = env.path("cache").join("spool");
    let mut private = 0;
    for p in walk(&spools).into_iter().chain([spools.clone()]) {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:o}", p.display());
        private += p.file_name().is_some_and(|n| n == "journal") as usize;
    }
    assert_eq!(private, 1, "the journal is under {}", spools.display());
    sh(&format!("kill -9 {}", m.child.as_ref().unwrap().id()));
    drop(m);
    let o = env.run(&[&"recover"]);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("snapshot"), "{out}");
    assert!(
        out.contains(&format!("mount at {}", mnt.display())),
        "recover names the mountpoint: {out}"
    );
    assert!(
        !err.contains("replay"),
        "no warning for a normal journal: {err}"
    );
    assert_eq!(env.ok(&[&"cat", &"latest:/only"]), "closed then crashed");
    let large = env.cmd(&[&"cat", &"latest:/large"]).output().unwrap();
    assert!(large.stdout == noise(5, 3 << 20));
}

#[test]
fn a_failing_store_fails_the_copy_and_commits_nothing_broken() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("needs root to mount a small tmpfs; covered in CI");
        return;
    }
    let mut env = Env::new();
    let _g = env.store_on_tmpfs("6m");
    env.create();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("big"), noise(4, 40 << 20)).unwrap();
    let mnt = env.path("mnt");
    let spool = env.path("spool");
    let mut m = Mounted::start(
        &env,
        &mnt,
        &[
            &"mount",
            &"--writable",
            &"--sync",
            &"close",
            &"--spool",
            &spool,
            &mnt,
        ],
        120,
    );
    // Under `--sync close` a large file is stored before its close returns.
    let o = Command::new("cp")
        .arg(src.join("big"))
        .arg(&m.mnt)
        .output()
        .unwrap();
    assert!(!o.status.success(), "cp must see the failure");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Input/output error") || err.contains("No space"),
        "{err}"
    );
    m.stop();
    env.ok(&[&"check"]);

    // By default it is stored in the background: the failure reaches the
    // writer's fsync (and its later writes and closes).
    let spool2 = env.path("spool2");
    let mut m = Mounted::start(
        &env,
        &mnt,
        &[&"mount", &"--writable", &"--spool", &spool2, &mnt],
        120,
    );
    let o = Command::new("dd")
        .arg(format!("if={}", src.join("big").display()))
        .arg(format!("of={}", m.mnt.join("big").display()))
        .args(["bs=1M", "conv=fsync"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "dd conv=fsync must see the failure");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("Input/output error") || err.contains("No space"),
        "{err}"
    );
    m.stop();
    env.ok(&[&"check"]);
}

/// Small files are stored in the background after their close is journaled:
/// a store that fails then fails the copy's later closes, and nothing whose
/// close succeeded is lost — once the store has room, `recover` commits it.
#[test]
fn a_store_failing_behind_small_files_fails_the_copy_and_loses_nothing() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("needs root to mount a small tmpfs; covered in CI");
        return;
    }
    let mut env = Env::new();
    let _g = env.store_on_tmpfs("6m");
    env.create();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    // Enough files that cp cannot finish before the failure shows: the first
    // pack is written (and fails) at 16 MiB, about 270 files in, and the
    // store queue lets cp run at most 256 files ahead of the storer. With
    // 400 files cp could win that race on a busy machine.
    const FILES: u64 = 1000;
    for i in 0..FILES {
        std::fs::write(src.join(format!("f{i:03}")), noise(i, 60_000)).unwrap();
    }
    let mnt = env.path("mnt");
    let spool = env.path("spool");
    let mut m = Mounted::start(
        &env,
        &mnt,
        &[&"mount", &"--writable", &"--spool", &spool, &mnt],
        120,
    );
    let o = Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(m.mnt.join("src"))
        .output()
        .unwrap();
    assert!(!o.status.success(), "cp must see the failure");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Input/output error"), "{err}");
    // Which files did cp finish? Those whose close succeeded are the ones
    // it did not complain about.
    let failed: std::collections::HashSet<String> = err
        .lines()
        .filter_map(|l| l.split("src/").nth(1))
        .filter_map(|rest| rest.split('\'').next())
        .map(|s| s.to_string())
        .collect();
    m.stop();
    // No snapshot may reference data that was never stored.
    env.ok(&[&"check"]);
    // Room again: everything closed successfully is still in the spool.
    sh(&format!(
        "mount -o remount,size=200m {}",
        env.path("small").display()
    ));
    env.ok(&[&"recover", &"--spool", &spool]);
    let out = env.path("out");
    env.ok(&[&"restore", &"-to", &out, &"latest"]);
    let mut kept = 0;
    for i in 0..FILES {
        let name = format!("f{i:03}");
        if failed.contains(&name) {
            continue; // cp reported it: whatever it left is fair
        }
        let got = std::fs::read(out.join("src").join(&name));
        assert!(
            got.as_ref().is_ok_and(|b| *b == noise(i, 60_000)),
            "{name} was copied without an error but is not restored whole:\n{err}"
        );
        kept += 1;
    }
    eprintln!("{kept} files kept, {} reported failed by cp", failed.len());
    assert!(
        kept > 0 && !failed.is_empty(),
        "{kept} kept, {} failed",
        failed.len()
    );
}

#[test]
fn editor_pattern_and_tar_x_work() {
    let env = Env::new();
    env.create();
    let mnt = env.path("mnt");
    let mut m = writable(&env, &mnt, &[]);
    let root = m.mnt.clone();
    // Editor: write a temp file, fsync, rename over the original.
    std::fs::write(root.join("notes.txt"), "version 1").unwrap();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(root.join(".notes.txt.swp")).unwrap();
        f.write_all(b"version 2").unwrap();
        f.sync_all().unwrap();
    }
    std::fs::rename(root.join(".notes.txt.swp"), root.join("notes.txt")).unwrap();
    // ...and fsync the directory, which makes the rename durable.
    std::fs::File::open(&root)
        .unwrap()
        .sync_all()
        .expect("fsync of a directory in the mount");
    assert_eq!(std::fs::read(root.join("notes.txt")).unwrap(), b"version 2");
    // Appends, truncation, random writes.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(root.join("notes.txt"))
            .unwrap();
        f.write_all(b" appended").unwrap();
        drop(f);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(root.join("random.bin"))
            .unwrap();
        f.seek(SeekFrom::Start(1000)).unwrap();
        f.write_all(b"at 1000").unwrap();
        f.seek(SeekFrom::Start(10)).unwrap();
        f.write_all(b"at 10").unwrap();
    }
    // tar x of a real archive.
    let t = env.path("t");
    make_tree(&t, 0);
    let tarball = env.path("t.tar");
    run(Command::new("tar")
        .args(["--xattrs", "-cf"])
        .arg(&tarball)
        .arg("-C")
        .arg(&t)
        .arg("."));
    std::fs::create_dir_all(root.join("untarred")).unwrap();
    run(Command::new("tar")
        .args(["--xattrs", "-xpf"])
        .arg(&tarball)
        .arg("-C")
        .arg(root.join("untarred")));
    // Directory operations.
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::rename(root.join("a/b"), root.join("moved")).unwrap();
    assert!(
        std::fs::remove_dir(root.join("moved")).is_err(),
        "not empty"
    );
    std::fs::remove_dir(root.join("moved/c")).unwrap();
    std::fs::remove_dir(root.join("moved")).unwrap();
    let id = Command::new(env!("CARGO_BIN_EXE_klosetfs"))
        .arg("commit")
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        id.status.success(),
        "{}",
        String::from_utf8_lossy(&id.stderr)
    );
    assert!(m.stop().unwrap().success());
    assert_eq!(
        env.ok(&[&"cat", &"latest:/notes.txt"]),
        "version 2 appended"
    );
    let r = env
        .cmd(&[&"cat", &"latest:/random.bin"])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(r.len(), 1007);
    assert_eq!(&r[10..15], b"at 10");
    assert_eq!(&r[1000..], b"at 1000");
    assert!(r[..10].iter().all(|b| *b == 0));
    let out = env.path("out");
    env.ok(&[&"restore", &"-to", &out, &"latest:/untarred"]);
    assert_same_tree(&t, &out);
    let ls = env.ok(&[&"ls", &"latest"]);
    assert_eq!(
        ls.lines().collect::<Vec<_>>(),
        vec!["a", "notes.txt", "random.bin", "untarred"]
    );
}

#[test]
fn copying_many_files_does_not_exhaust_descriptors() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..600 {
        std::fs::write(src.join(format!("f{i}")), format!("file {i}")).unwrap();
    }
    env.create();
    let mnt = env.path("mnt");
    // The daemon gets 200 descriptors in all: one per written file would run out.
    let mut c = Command::new("prlimit");
    c.args(["--nofile=200:200", env!("CARGO_BIN_EXE_klosetfs")])
        .env("KLOSETFS_PASSPHRASE", PASS)
        .arg("at")
        .arg(&env.store)
        .args(["mount", "--writable", "--spool"])
        .arg(env.path("spool"))
        .arg(&mnt);
    let mut m = Mounted::start_cmd(c, &mnt, 120);
    run(Command::new("cp").arg("-a").arg(&src).arg(&m.mnt));
    assert!(m.stop().unwrap().success());
    assert_eq!(env.ok(&[&"ls", &"latest:/src"]).lines().count(), 600);
    assert_eq!(env.ok(&[&"cat", &"latest:/src/f599"]), "file 599");
}

/// Large files written by appends stream into the chunker while written; a
/// rewrite, a truncate or an fsync half-way changes the pattern. Whatever the
/// pattern, what was written is what reads back and what gets committed.
#[test]
fn large_files_read_back_exact_whatever_the_write_pattern() {
    use std::io::{Seek, SeekFrom, Write};
    let env = Env::new();
    env.create();
    let mnt = env.path("mnt");
    let mut m = writable(&env, &mnt, &[]);
    let root = m.mnt.clone();
    let mut expect: Vec<(&str, Vec<u8>)> = Vec::new();

    // Appends only, in odd-sized pieces.
    let data = noise(71, 24 << 20);
    let mut f = std::fs::File::create(root.join("appended")).unwrap();
    for piece in data.chunks(300_001) {
        f.write_all(piece).unwrap();
    }
    drop(f);
    expect.push(("appended", data));

    // Appends, then a rewrite near the start, then more appends.
    let mut data = noise(72, 6 << 20);
    let mut f = std::fs::File::create(root.join("rewritten")).unwrap();
    f.write_all(&data).unwrap();
    f.seek(SeekFrom::Start(100)).unwrap();
    f.write_all(b"REWRITTEN").unwrap();
    data[100..109].copy_from_slice(b"REWRITTEN");
    f.seek(SeekFrom::End(0)).unwrap();
    let more = noise(73, 3 << 20);
    f.write_all(&more).unwrap();
    data.extend_from_slice(&more);
    drop(f);
    expect.push(("rewritten", data));

    // fsync half-way, then more appends.
    let mut data = noise(74, 5 << 20);
    let mut f = std::fs::File::create(root.join("synced")).unwrap();
    f.write_all(&data).unwrap();
    f.sync_all().unwrap();
    let more = noise(75, 2 << 20);
    f.write_all(&more).unwrap();
    data.extend_from_slice(&more);
    drop(f);
    expect.push(("synced", data));

    // Truncated while being appended to.
    let data = noise(76, 4 << 20);
    let mut f = std::fs::File::create(root.join("truncated")).unwrap();
    f.write_all(&data).unwrap();
    f.set_len(1 << 20).unwrap();
    f.seek(SeekFrom::End(0)).unwrap();
    let tail = noise(77, 1 << 20);
    f.write_all(&tail).unwrap();
    drop(f);
    let mut data = data[..1 << 20].to_vec();
    data.extend_from_slice(&tail);
    expect.push(("truncated", data));

    for (name, bytes) in &expect {
        assert!(
            std::fs::read(root.join(name)).unwrap() == *bytes,
            "{name} reads back wrong from the mount"
        );
    }
    assert!(m.stop().unwrap().success());
    let out = env.path("out");
    env.ok(&[&"restore", &"-to", &out, &"latest"]);
    for (name, bytes) in &expect {
        assert!(
            std::fs::read(out.join(name)).unwrap() == *bytes,
            "{name} committed wrong"
        );
    }
    env.ok(&[&"check", &"--read-data"]);
}

/// The mount declines OPEN, so its files live by the kernel's references:
/// a file unlinked while open is still read and written through its
/// descriptor and never reaches a snapshot. And every read of the control
/// file commits anew (each `cat` gets a fresh inode, so no cached page
/// serves an old id), while a `stat` of it commits nothing.
#[test]
fn open_unlinked_files_live_on_and_every_commit_read_commits() {
    use std::io::{Read, Seek, Write};
    let env = Env::new();
    env.create();
    let mnt = env.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mut m = writable(&env, &mnt, &[]);
    let root = m.mnt.clone();

    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(root.join("scratch"))
        .unwrap();
    f.write_all(b"abc").unwrap();
    std::fs::remove_file(root.join("scratch")).unwrap();
    assert!(!root.join("scratch").exists());
    f.write_all(b"def").unwrap();
    f.flush().unwrap();
    f.rewind().unwrap();
    let mut back = String::new();
    f.read_to_string(&mut back).unwrap();
    assert_eq!(back, "abcdef");

    let control = root.join(".klosetfs-commit");
    std::fs::write(root.join("kept"), "one").unwrap();
    let before = env.ok(&[&"ls"]).lines().count();
    assert_eq!(std::fs::metadata(&control).unwrap().len(), 65);
    assert_eq!(
        env.ok(&[&"ls"]).lines().count(),
        before,
        "a stat of the control file committed"
    );
    let first = std::fs::read_to_string(&control).unwrap();
    assert_eq!(first.trim().len(), 64, "{first:?}");
    assert_eq!(env.ok(&[&"ls", &"latest"]).trim(), "kept");
    std::fs::write(root.join("second"), "two").unwrap();
    let second = std::fs::read_to_string(&control).unwrap();
    assert_ne!(first, second, "the second read served the first commit");
    assert_eq!(
        env.ok(&[&"ls", &"latest"]).lines().collect::<Vec<_>>(),
        vec!["kept", "second"]
    );
    // Still open, still readable, still not in any snapshot.
    f.rewind().unwrap();
    back.clear();
    f.read_to_string(&mut back).unwrap();
    assert_eq!(back, "abcdef");
    drop(f);
    assert!(m.stop().unwrap().success());
    assert_eq!(
        env.ok(&[&"ls", &"latest"]).lines().collect::<Vec<_>>(),
        vec!["kept", "second"]
    );
}

/// Root's own writable mount leaves permission checks to the daemon (no
/// `default_permissions`: one request fewer per copied file); root's rule
/// still holds there — no running or `access(X_OK)` of a file without an
/// execute bit — and nobody else gets in. Another user's mount keeps the
/// kernel's checks, so its owner cannot write a file its mode forbids.
#[test]
fn permission_checks_on_root_and_user_writable_mounts() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("this test switches to `nobody` and needs root to set that up");
        return;
    }
    let env = Env::new();
    env.create();
    let mnt = env.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    // Searchable by all up to the mount: only the mount's own rule keeps
    // `nobody` out.
    sh(&format!(
        "chmod 755 {} {}",
        env.dir.path().display(),
        mnt.display()
    ));
    let m = writable(&env, &mnt, &[]);
    let line = mountinfo_line(&m.mnt).expect("the mount is listed");
    assert!(!line.contains("default_permissions"), "{line}");
    assert!(!line.contains("allow_other"), "{line}");
    let script = m.mnt.join("s.sh");
    std::fs::write(&script, "#!/bin/sh\necho ran\n").unwrap();
    sh(&format!("chmod 644 {}", script.display()));
    let test_x = |p: &Path| Command::new("test").arg("-x").arg(p).status().unwrap();
    assert!(!test_x(&script).success(), "X_OK on a 0644 file");
    let e = Command::new(&script).output().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
    sh(&format!("chmod 755 {}", script.display()));
    assert!(test_x(&script).success());
    assert_eq!(run(&mut Command::new(&script)).stdout, b"ran\n");
    assert!(test_x(&m.mnt).success(), "a directory is searchable");
    // Root writes a file whose mode says read-only, as on any filesystem.
    std::fs::write(m.mnt.join("ro"), "x").unwrap();
    sh(&format!("chmod 444 {}", m.mnt.join("ro").display()));
    std::fs::write(m.mnt.join("ro"), "root may").unwrap();
    let o = as_nobody("cat").arg(&script).output().unwrap();
    assert!(!o.status.success(), "nobody got into root's mount");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    drop(m);

    // The same as `nobody`: the kernel checks.
    let spool = env.path("user-spool");
    std::fs::create_dir_all(&spool).unwrap();
    let mut c = klosetfs_as_nobody(&env, &[&mnt, &spool]);
    c.arg("mount")
        .arg("--writable")
        .arg("--spool")
        .arg(&spool)
        .arg(&mnt);
    let m = Mounted::start_cmd(c, &mnt, 60);
    let line = mountinfo_line(&m.mnt).expect("the mount is listed");
    assert!(line.contains("default_permissions"), "{line}");
    let ro = m.mnt.join("ro");
    let o = as_nobody("sh")
        .arg("-c")
        .arg(format!(
            "echo x > {r} && chmod 444 {r} && echo y > {r}",
            r = ro.display()
        ))
        .output()
        .unwrap();
    assert!(!o.status.success(), "nobody wrote its 0444 file");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = as_nobody("cat").arg(&ro).output().unwrap();
    assert_eq!(o.stdout, b"x\n");
    drop(m);
}

/// Changing files of the base in place: `open(O_TRUNC)` (a plain `cp` or
/// shell redirect over a file), `truncate(2)` by path with no descriptor
/// open, and a write into the middle of a large file. Each reaches the
/// snapshot `klosetfs commit` makes, and the files left alone keep their bytes.
#[test]
fn files_of_the_base_changed_in_place_reach_the_next_commit() {
    use std::os::unix::fs::FileExt;
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("over"), noise(1, 100_000)).unwrap();
    std::fs::write(src.join("cut"), "hello world").unwrap();
    std::fs::write(src.join("big"), noise(2, 3 << 20)).unwrap();
    std::fs::write(src.join("same"), noise(3, 50_000)).unwrap();
    env.create();
    env.backup(&src);
    let mnt = env.path("mnt");
    let mut m = writable(&env, &mnt, &["--base", "latest"]);
    // The base holds the backed-up folder under its full path.
    let inside = m.mnt.join(src.strip_prefix("/").unwrap());
    std::fs::write(inside.join("over"), "replaced").unwrap();
    nix::unistd::truncate(&inside.join("cut"), 5).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(inside.join("big"))
        .unwrap();
    f.write_all_at(b"XY", 1 << 20).unwrap();
    drop(f);
    run(Command::new(env!("CARGO_BIN_EXE_klosetfs"))
        .arg("commit")
        .arg(&m.mnt));
    let cat = |p: &str| {
        env.cmd(&[&"cat", &format!("latest:{}/{p}", src.display())])
            .output()
            .unwrap()
            .stdout
    };
    assert_eq!(cat("over"), b"replaced");
    assert_eq!(cat("cut"), b"hello");
    let mut big = noise(2, 3 << 20);
    big[1 << 20..(1 << 20) + 2].copy_from_slice(b"XY");
    assert!(cat("big") == big, "big differs");
    assert!(cat("same") == noise(3, 50_000), "same differs");
    assert!(m.stop().unwrap().success());
}
