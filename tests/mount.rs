//! The read-only mount, tested with real mounts and standard tools.

mod common;
use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

fn sorted_find(root: &Path) -> Vec<std::path::PathBuf> {
    let o = Command::new("find")
        .args([".", "-print0"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "find failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut v: Vec<std::path::PathBuf> = o
        .stdout
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| {
            std::path::PathBuf::from(
                <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(s),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn mounted_snapshot_matches_the_source_for_standard_tools() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 256);
    // A sparse file: a hole, then data.
    let f = std::fs::File::create(src.join("sparse")).unwrap();
    f.set_len(64 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"tail data", (64 << 20) - 9).unwrap();
    drop(f);
    env.create();
    env.backup(&src);
    let mnt = env.path("mnt");
    let m = Mounted::start(
        &env,
        &mnt,
        &[&"mount", &format!("latest:{}", src.display()), &mnt],
        300,
    );
    let root = m.mnt.clone();

    assert_eq!(
        sorted_find(&src),
        sorted_find(&root),
        "find lists the same entries"
    );

    // stat matches for every entry.
    for rel in sorted_find(&src) {
        let (a, b) = (src.join(&rel), root.join(&rel));
        let (ma, mb) = (
            std::fs::symlink_metadata(&a).unwrap(),
            std::fs::symlink_metadata(&b).unwrap(),
        );
        let is_root = rel == Path::new(".");
        let rel = rel.display();
        assert_eq!(ma.mode(), mb.mode(), "mode of {rel}");
        assert_eq!((ma.uid(), ma.gid()), (mb.uid(), mb.gid()), "owner of {rel}");
        if !ma.is_dir() {
            assert_eq!(ma.size(), mb.size(), "size of {rel}");
            assert_eq!(ma.nlink(), mb.nlink(), "nlink of {rel}");
            assert_eq!(ma.rdev(), mb.rdev(), "rdev of {rel}");
        }
        if !is_root {
            assert_eq!(
                (ma.mtime(), ma.mtime_nsec()),
                (mb.mtime(), mb.mtime_nsec()),
                "mtime of {rel}"
            );
        }
    }
    // Hard links share an inode on the mount.
    let (h1, h2) = (
        std::fs::metadata(root.join("small.txt")).unwrap(),
        std::fs::metadata(root.join("dir/hardlink")).unwrap(),
    );
    assert_eq!(h1.ino(), h2.ino());

    // rsync -aHAX out of the mount gives back the source exactly.
    let out = env.path("out");
    let o = Command::new("rsync")
        .args(["-aHAX"])
        .arg(format!("{}/", root.display()))
        .arg(format!("{}/", out.display()))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "rsync: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_same_tree(&src, &out);

    // Random ranges of the big file with dd.
    let big = std::fs::read(src.join("big.bin")).unwrap();
    for (skip, count) in [(0u64, 1u64), (1, 3), (77, 5), (200, 1), (255, 1), (123, 7)] {
        let o = Command::new("dd")
            .arg(format!("if={}", root.join("big.bin").display()))
            .args([
                "bs=1M",
                &format!("skip={skip}"),
                &format!("count={count}"),
                "status=none",
            ])
            .output()
            .unwrap();
        assert!(o.status.success());
        let start = (skip << 20) as usize;
        let end = (start + (count << 20) as usize).min(big.len());
        assert!(o.stdout == big[start..end], "dd skip={skip} count={count}");
    }
    // Odd offsets that straddle chunk boundaries.
    let fh = std::fs::File::open(root.join("big.bin")).unwrap();
    for off in [1_048_575u64, 5_000_001, 100_000_007, 268_435_000] {
        let mut buf = vec![0u8; 3000];
        let n = fh.read_at(&mut buf, off).unwrap();
        assert_eq!(
            &buf[..n],
            &big[off as usize..(off as usize + n)],
            "pread at {off}"
        );
        assert!(n > 0);
    }

    // 8 concurrent readers of different files all get the right bytes.
    let files = [
        "big.bin",
        "dir/multi.bin",
        "dir/text.log",
        "small.txt",
        "sparse",
        "dir/sub/deep/file.txt",
        "empty",
        "sp ace",
    ];
    std::thread::scope(|s| {
        for f in files {
            let (a, b) = (src.join(f), root.join(f));
            s.spawn(move || {
                assert!(
                    std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
                    "{f}"
                )
            });
        }
    });

    // Errors: writes are EROFS, missing xattrs ENODATA.
    let e = std::fs::write(root.join("new"), "x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    let e = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join("small.txt"))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    assert_eq!(
        xattr::get(root.join("small.txt"), "user.color")
            .unwrap()
            .unwrap(),
        b"blue"
    );
    assert_eq!(
        xattr::get(root.join("small.txt"), "user.missing").unwrap(),
        None
    );
    drop(m);
}

#[test]
fn whole_store_layout_and_snapshots_made_while_mounted() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "one").unwrap();
    env.create();
    let first = env.ok(&[
        &"backup", &"--tag", &"daily", &"--host", &"box", &"--json", &src,
    ]);
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    let id = first["id"].as_str().unwrap().to_string();
    let mnt = env.path("mnt");
    let m = Mounted::start(&env, &mnt, &[&"mount", &"--refresh", &"1", &mnt], 120);
    let root = m.mnt.clone();
    let mut top: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    top.sort();
    assert_eq!(top, ["hosts", "ids", "latest", "snapshots", "tags"]);
    let rel = src.strip_prefix("/").unwrap();
    assert_eq!(
        std::fs::read(root.join("ids").join(&id[..8]).join(rel).join("f")).unwrap(),
        b"one"
    );
    assert_eq!(
        std::fs::read(root.join("latest").join(rel).join("f")).unwrap(),
        b"one"
    );
    let hosts: Vec<_> = std::fs::read_dir(root.join("hosts/box")).unwrap().collect();
    assert_eq!(hosts.len(), 1);
    let tags: Vec<_> = std::fs::read_dir(root.join("tags/daily"))
        .unwrap()
        .collect();
    assert_eq!(tags.len(), 1);
    let link = std::fs::read_link(root.join("latest")).unwrap();
    assert!(link.to_string_lossy().starts_with("snapshots/"));

    // A new snapshot shows up while mounted.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(src.join("f"), "two").unwrap();
    let second = env.backup(&src);
    let start = std::time::Instant::now();
    loop {
        let ids: Vec<String> = std::fs::read_dir(root.join("ids"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        if ids.contains(&second[..8].to_string()) {
            break;
        }
        assert!(
            start.elapsed().as_secs() < 10,
            "new snapshot not visible: {ids:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert_eq!(
        std::fs::read_dir(root.join("snapshots")).unwrap().count(),
        2
    );
    let start = std::time::Instant::now();
    while std::fs::read(root.join("latest").join(rel).join("f")).unwrap() != b"two" {
        assert!(start.elapsed().as_secs() < 10, "latest did not move");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }

    // Removing the older snapshot (the newest stays) shows too: the kernel
    // caches listings, so the layout's mtime must move with its entries.
    env.ok(&[&"rm", &id[..8].to_string()]);
    let start = std::time::Instant::now();
    loop {
        let ids: Vec<String> = std::fs::read_dir(root.join("ids"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        if ids == [second[..8].to_string()] {
            break;
        }
        assert!(
            start.elapsed().as_secs() < 10,
            "removed snapshot still listed: {ids:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert_eq!(
        std::fs::read_dir(root.join("snapshots")).unwrap().count(),
        1
    );
    drop(m);
}

#[test]
fn a_damaged_pack_fails_only_its_reads() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("big"), noise(3, 20 << 20)).unwrap();
    std::fs::write(src.join("small"), "fine").unwrap();
    env.create();
    env.backup(&src);
    let mut packs: Vec<_> = walk(&env.store.join("packs"))
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    packs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let victim = packs.last().unwrap();
    let mut b = std::fs::read(victim).unwrap();
    b[500] ^= 1;
    std::fs::write(victim, b).unwrap();
    let mnt = env.path("mnt");
    let m = Mounted::start(
        &env,
        &mnt,
        &[&"mount", &format!("latest:{}", src.display()), &mnt],
        120,
    );
    let e = std::fs::read(m.mnt.join("big")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    assert_eq!(std::fs::read(m.mnt.join("small")).unwrap(), b"fine");
    // Reads beyond the damaged chunk still work.
    let fh = std::fs::File::open(m.mnt.join("big")).unwrap();
    let mut buf = vec![0u8; 4096];
    use std::os::unix::fs::FileExt;
    let n = fh.read_at(&mut buf, 19 << 20).unwrap();
    assert_eq!(&buf[..n], &noise(3, 20 << 20)[19 << 20..(19 << 20) + n]);
    drop(m);
}

#[test]
fn sigterm_unmounts_and_the_mountpoint_is_reusable() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "x").unwrap();
    env.create();
    env.backup(&src);
    let mnt = env.path("mnt");
    let mut m = Mounted::start(&env, &mnt, &[&"mount", &mnt], 60);
    let st = m.stop().expect("exits after SIGTERM");
    assert!(st.success(), "{st}");
    assert!(!is_mounted(&mnt));
    assert_eq!(
        std::fs::read_dir(&mnt).unwrap().count(),
        0,
        "the mountpoint is an empty directory again"
    );
    // And it can be mounted again.
    let m2 = Mounted::start(&env, &mnt, &[&"mount", &mnt], 60);
    assert!(m2.mnt.join("latest").exists());
    drop(m2);
    // kill -9: the mount goes away by itself (the watcher of `mount::deadman`).
    let mut c = env.cmd(&[&"mount", &mnt]);
    c.stderr(std::process::Stdio::null());
    let m3 = Mounted::start_cmd(c, &mnt, 60);
    let pid = m3.child.as_ref().map(|c| c.id()).unwrap();
    sh(&format!("kill -9 {pid}"));
    let start = std::time::Instant::now();
    while is_mounted(&mnt) && start.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!is_mounted(&mnt), "auto-unmount after kill -9");
    drop(m3);
}

#[test]
fn refuses_bad_mountpoints() {
    let env = Env::new();
    env.create();
    let o = env.run(&[&"mount", &env.path("missing")]);
    assert_eq!(o.status.code(), Some(1));
    let full = env.path("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("x"), "x").unwrap();
    let o = env.run(&[&"mount", &full]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not empty"));
    let inside = env.store.join("mnt");
    std::fs::create_dir_all(&inside).unwrap();
    let o = env.run(&[&"mount", &inside]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("inside the store"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_normal_user_can_mount_and_read() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("this test switches to `nobody` and needs root to set that up");
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "user data").unwrap();
    env.create();
    env.backup(&src);
    let mnt = env.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mut c = klosetfs_as_nobody(&env, &[&mnt]);
    c.arg("mount")
        .arg(format!("latest:{}", src.display()))
        .arg(&mnt);
    let m = Mounted::start_cmd(c, &mnt, 60);
    let o = as_nobody("cat").arg(m.mnt.join("f")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, b"user data");
    drop(m);
}

/// Without `--allow-other`, root's mount is root's alone, also for what the
/// kernel has cached: another user cannot read a world-readable file root has
/// just read (fuser's "allow root" would let the kernel serve it). With
/// `--allow-other`, others get what the modes allow, no more.
#[test]
fn a_mount_not_shared_is_its_owners_alone() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("this test switches to `nobody` and needs root to set that up");
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("priv")).unwrap();
    std::fs::write(src.join("pub.txt"), "for all").unwrap();
    std::fs::write(src.join("priv/s.txt"), "root only").unwrap();
    sh(&format!(
        "chmod 755 {d} {s} && chmod 644 {s}/pub.txt && chmod 700 {s}/priv",
        d = env.dir.path().display(),
        s = src.display()
    ));
    env.create();
    env.backup(&src);
    let nobody_cat = |p: &Path| as_nobody("cat").arg(p).output().unwrap();
    let mnt = env.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    sh(&format!("chmod 755 {}", mnt.display()));
    let snap = format!("latest:{}", src.display());

    let m = Mounted::start(&env, &mnt, &[&"mount", &snap, &mnt], 60);
    let line = mountinfo_line(&m.mnt).expect("the mount is listed");
    assert!(!line.contains("allow_other"), "{line}");
    assert_eq!(std::fs::read(m.mnt.join("pub.txt")).unwrap(), b"for all");
    let o = nobody_cat(&m.mnt.join("pub.txt"));
    assert!(!o.status.success(), "nobody read root's mount");
    assert!(o.stdout.is_empty());
    drop(m);

    let m = Mounted::start(&env, &mnt, &[&"mount", &"--allow-other", &snap, &mnt], 60);
    let line = mountinfo_line(&m.mnt).expect("the mount is listed");
    assert!(line.contains("allow_other"), "{line}");
    let o = nobody_cat(&m.mnt.join("pub.txt"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, b"for all");
    assert_eq!(
        std::fs::read(m.mnt.join("priv/s.txt")).unwrap(),
        b"root only"
    );
    let o = nobody_cat(&m.mnt.join("priv/s.txt"));
    assert!(
        !o.status.success(),
        "the modes still hold with --allow-other"
    );
    assert!(o.stdout.is_empty());
    drop(m);
}

#[test]
fn the_mount_helper_takes_fstab_style_options() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "via helper").unwrap();
    env.create();
    env.backup(&src);
    let pass = env.path("pass");
    std::fs::write(&pass, PASS).unwrap();
    let mnt = env.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let helper = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/mount.klosetfs");
    let o = Command::new("timeout")
        .args(["60", "sh", helper])
        .arg(&env.store)
        .arg(&mnt)
        .arg("-o")
        .arg(format!(
            "defaults,_netdev,passphrase_file={},cache_size=64M,refresh=5",
            pass.display()
        ))
        .env("KLOSETFS", env!("CARGO_BIN_EXE_klosetfs"))
        .env_remove("KLOSETFS_PASSPHRASE")
        .output()
        .unwrap();
    let mnt = std::fs::canonicalize(&mnt).unwrap();
    let _g = Unmount(mnt.clone());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(is_mounted(&mnt));
    let f = mnt
        .join("latest")
        .join(src.strip_prefix("/").unwrap())
        .join("f");
    assert_eq!(std::fs::read(f).unwrap(), b"via helper");
}

/// The daemon drops an entry once the kernel forgets its inode (its memory
/// then follows the kernel's inode cache, not everything ever visited):
/// after `drop_caches` makes the kernel forget them, every path resolves,
/// lists and reads back the same, with the same inode numbers.
#[test]
fn forgotten_inodes_come_back_the_same() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("needs root for drop_caches; covered in CI");
        return;
    }
    let env = Env::new();
    let src = env.path("src");
    for d in 0..4 {
        let dir = src.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..500 {
            std::fs::write(dir.join(format!("f{f}")), format!("{d}/{f}")).unwrap();
        }
    }
    std::fs::hard_link(src.join("d0/f0"), src.join("d1/link")).unwrap();
    env.create();
    env.backup(&src);
    let mnt = env.path("mnt");
    let m = Mounted::start(
        &env,
        &mnt,
        &[&"mount", &format!("latest:{}", src.display()), &mnt],
        300,
    );
    let walk = || {
        let o = Command::new("find")
            .arg(&m.mnt)
            .args(["-printf", "%P %i %s %n\n"])
            .output()
            .unwrap();
        assert!(o.status.success());
        let mut lines: Vec<String> = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        lines.sort();
        lines
    };
    let first = walk();
    assert_eq!(first.len(), 1 + 4 + 2000 + 1, "{:?}", &first[..5]);
    for _ in 0..2 {
        sh("sync; echo 2 > /proc/sys/vm/drop_caches");
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(walk(), first, "the same names, inodes, sizes and links");
        assert_eq!(
            std::fs::read_to_string(m.mnt.join("d3/f499")).unwrap(),
            "3/499"
        );
        assert_eq!(
            std::fs::read_to_string(m.mnt.join("d1/link")).unwrap(),
            "0/0"
        );
    }
}
