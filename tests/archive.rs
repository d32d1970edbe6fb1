//! `archive`: the hostile test tree (odd names, hard links, devices, fifos,
//! xattrs, sparse files, 1970/2100 times) comes out of GNU tar identical to
//! `restore` of the same snapshot, in every format; a 1 GiB sparse file
//! archives in bounded memory.

mod common;
use common::*;

use std::path::Path;
use std::process::{Command, Stdio};

/// Extracts `archive` (a file, or `-` with `input` on stdin) into a fresh
/// directory `into` with GNU tar, keeping owners, modes and every xattr.
fn extract(archive: &Path, extra: &[&str], into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    let o = Command::new("tar")
        .args(extra)
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(archive)
        .arg("-C")
        .arg(into)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn archives_extract_identical_to_restore() {
    let env = Env::new();
    env.create();
    let src = env.path("src");
    make_tree(&src, 0);
    // A sparse file: a hole, data off a 512-byte boundary, a trailing hole.
    let sparse = src.join("sparse.img");
    let f = std::fs::File::create(&sparse).unwrap();
    f.set_len(40 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&noise(9, 3 << 20), (9 << 20) + 333).unwrap();
    drop(f);
    for (name, secs) in [("epoch", 0i64), ("y2100", 4_102_444_800)] {
        std::fs::write(src.join(name), name).unwrap();
        filetime::set_file_mtime(src.join(name), filetime::FileTime::from_unix_time(secs, 7))
            .unwrap();
    }
    let _sock = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    env.backup(&src);
    let spec = format!("latest:{}", src.display());
    let restored = env.path("restored");
    env.ok(&[&"restore", &"-to", &restored, &spec]);
    // tar cannot hold a socket; the archive says so and leaves it out.
    let mtime =
        filetime::FileTime::from_last_modification_time(&std::fs::metadata(&restored).unwrap());
    std::fs::remove_file(restored.join("sock")).unwrap();
    filetime::set_file_mtime(&restored, mtime).unwrap();

    let tar = env.path("a.tar");
    let o = env.run(&[&"archive", &"-o", &tar, &spec]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("sock"),
        "the left-out socket is named"
    );
    let ext = env.path("ext-tar");
    extract(&tar, &[], &ext);
    assert_same_tree(&restored, &ext);
    let blocks = |p: &Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).unwrap().blocks() * 512
    };
    // Holes are whole zero chunks (chunks of up to 8 MiB that hold data
    // keep their zeros), as in `restore`.
    let (e, r) = (
        blocks(&ext.join("sparse.img")),
        blocks(&restored.join("sparse.img")),
    );
    assert!(
        e <= r + (1 << 20) && e < 30 << 20,
        "the sparse file stays sparse: {e} vs {r}"
    );
    assert!(
        std::fs::metadata(&tar).unwrap().len() < 30 << 20,
        "holes are not in the archive"
    );

    // tar.gz chosen by the file name; tar.zst streamed to a pipe.
    let tgz = env.path("a.tgz");
    env.ok(&[&"archive", &"-o", &tgz, &spec]);
    let ext = env.path("ext-tgz");
    extract(&tgz, &["-z"], &ext);
    assert_same_tree(&restored, &ext);
    let zst = env.path("a.tar.zst");
    let out = std::fs::File::create(&zst).unwrap();
    let o = env
        .cmd(&[&"archive", &"--format", &"tar.zst", &spec])
        .stdout(Stdio::from(out))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ext = env.path("ext-zst");
    extract(&zst, &["--zstd"], &ext);
    assert_same_tree(&restored, &ext);

    // One file: it alone, by its name.
    let one = env.path("one.tar");
    env.ok(&[&"archive", &"-o", &one, &format!("{spec}/dir/multi.bin")]);
    let ext = env.path("ext-one");
    extract(&one, &[], &ext);
    assert_eq!(
        std::fs::read(ext.join("multi.bin")).unwrap(),
        std::fs::read(src.join("dir/multi.bin")).unwrap()
    );
    assert_eq!(std::fs::read_dir(&ext).unwrap().count(), 1);
}

#[test]
fn refusals() {
    let env = Env::new();
    env.create();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    env.backup(&src);
    let fails = |args: &[&dyn AsRef<std::ffi::OsStr>], why: &str| {
        let o = env.run(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{why}: {err}");
        assert!(err.contains(why), "{err}");
    };
    fails(
        &[&"archive", &"--format", &"rar", &"latest"],
        "unknown archive format",
    );
    fails(
        &[&"archive", &"-o", &env.path("x.tar"), &"latest:/nope"],
        "no such",
    );
    assert!(
        !env.path("x.tar").exists(),
        "no file left for a failed archive"
    );
}

/// A 1 GiB sparse file goes through in bounded memory.
#[test]
fn a_big_sparse_file_archives_in_bounded_memory() {
    let env = Env::new();
    env.create();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let f = std::fs::File::create(src.join("disk.img")).unwrap();
    f.set_len(1 << 30).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&noise(4, 1 << 20), 512 << 20).unwrap();
    drop(f);
    env.backup(&src);
    // Peak RSS of the archive process alone, from a wrapper that runs it.
    let tar = env.path("big.tar");
    let o = Command::new("python3")
        .args([
            "-c",
            "import resource,subprocess,sys\n\
             r=subprocess.run(sys.argv[1:])\n\
             print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
             sys.exit(r.returncode)",
        ])
        .arg(env!("CARGO_BIN_EXE_klosetfs"))
        .args(env.cmd(&[]).get_args())
        .args(["archive", "-o"])
        .arg(&tar)
        .arg(format!("latest:{}", src.display()))
        .envs(
            env.cmd(&[])
                .get_envs()
                .filter_map(|(k, v)| v.map(|v| (k, v))),
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let kib: u64 = out.lines().last().unwrap().trim().parse().unwrap();
    eprintln!("archive of a 1 GiB sparse file: peak RSS {kib} KiB");
    assert!(kib < 100 << 10, "archive peak RSS {kib} KiB");
    let ext = env.path("ext");
    extract(&tar, &[], &ext);
    let a = std::fs::read(ext.join("disk.img")).unwrap();
    let b = std::fs::read(src.join("disk.img")).unwrap();
    assert!(a == b, "same content");
}

/// zip keeps names, contents, permission bits and symlinks (checked with
/// Python's zipfile), streamed to a pipe, and says what it drops.
#[test]
fn zip_keeps_what_zip_can_and_says_what_it_drops() {
    let env = Env::new();
    env.create();
    let src = env.path("src");
    make_tree(&src, 0);
    env.backup(&src);
    let zip = env.path("a.zip");
    let out = std::fs::File::create(&zip).unwrap();
    let o = env
        .cmd(&[
            &"archive",
            &"--format",
            &"zip",
            &format!("latest:{}", src.display()),
        ])
        .stdout(Stdio::from(out))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("fifo") && err.contains("drops owners, xattrs"),
        "{err}"
    );
    assert!(err.contains("not UTF-8"), "{err}");
    // Every regular file's content and mode, and every symlink's target.
    let check = r#"
import os, stat, sys, zipfile
z = zipfile.ZipFile(sys.argv[1]); src = os.fsencode(sys.argv[2]); n = 0
for i in z.infolist():
    mode = i.external_attr >> 16
    p = os.path.join(src, os.fsencode(i.filename.rstrip('/')))
    if b'\xef\xbf\xbd' in p:
        continue  # a name that was not UTF-8
    st = os.lstat(p)
    assert mode & 0o777 == st.st_mode & 0o777, (i.filename, oct(mode), oct(st.st_mode))
    if stat.S_ISLNK(st.st_mode):
        assert stat.S_ISLNK(mode) and z.read(i) == os.readlink(p), i.filename
    elif stat.S_ISREG(st.st_mode):
        assert z.read(i) == open(p, 'rb').read(), i.filename
    n += 1
print(n)
"#;
    let o = Command::new("python3")
        .args(["-c", check])
        .arg(&zip)
        .arg(&src)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let n: usize = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    assert!(n >= 15, "{n} entries checked");
}

/// Issue 37: `-o` never removes what this command did not make. A device,
/// a fifo or a symlink given to `-o` is written through and stays, whatever
/// happens; a regular file is replaced only by a complete archive (a
/// failure leaves the old one and no temporary file); a reader that goes
/// away is an error (exit 1, said on stderr), as in `tar`. `cat` and
/// `restore` keep the same rules.
#[test]
fn output_paths_that_are_not_ours_survive_every_failure() {
    use std::os::unix::fs::FileTypeExt;
    let env = Env::new();
    env.create();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("big"), noise(3, 3 << 20)).unwrap();
    std::fs::write(src.join("small"), b"small").unwrap();
    env.backup(&src);
    let spec = format!("latest:{}", src.display());
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // A full device (/dev/full's numbers): ENOSPC, and the node is still there.
    let dev = env.path("full-dev");
    sh(&format!("mknod {} c 1 7", dev.display()));
    let o = env.run(&[&"archive", &"-o", &dev, &spec]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let m = std::fs::symlink_metadata(&dev).expect("the device node is kept");
    assert!(m.file_type().is_char_device());

    // A fifo whose reader stops after 1000 bytes: cut short, said, fifo kept.
    let fifo = env.path("fifo");
    sh(&format!("mkfifo {}", fifo.display()));
    let reader = Command::new("sh")
        .arg("-c")
        .arg(format!("head -c 1000 < {} > /dev/null", fifo.display()))
        .spawn()
        .unwrap();
    let o = env.run(&[&"archive", &"-o", &fifo, &spec]);
    let mut reader = reader;
    reader.wait().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("cut short"), "{}", stderr(&o));
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());

    // A symlink to our own stdout, read by `head`: the link stays, exit 1.
    let link = env.path("stdout-link");
    std::os::unix::fs::symlink("/proc/self/fd/1", &link).unwrap();
    let mut child = env
        .cmd(&[&"archive", &"--format", &"tar", &"-o", &link, &spec])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = vec![0u8; 1000];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("cut short"), "{}", stderr(&o));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());

    // `cat` into a closed pipe says so too.
    let mut child = env
        .cmd(&[&"cat", &format!("latest:{}/big", src.display())])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("cut short"), "{}", stderr(&o));

    // A regular file: a failed archive (its data damaged) leaves the old
    // file whole and no temporary beside it; a good one replaces it.
    let out = env.path("outdir");
    std::fs::create_dir_all(&out).unwrap();
    let old = out.join("old.tar");
    std::fs::write(&old, b"the previous archive").unwrap();
    let packs: Vec<_> = walk(&env.store.join("packs"))
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    let saved: Vec<_> = packs.iter().map(|p| std::fs::read(p).unwrap()).collect();
    for p in &packs {
        let mut b = std::fs::read(p).unwrap();
        let n = b.len();
        for x in &mut b[..n / 2] {
            *x ^= 0x55;
        }
        std::fs::write(p, b).unwrap();
    }
    let o = env.run(&[&"--no-cache", &"archive", &"-o", &old, &spec]);
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(&old).unwrap(), b"the previous archive");
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        1,
        "no temporary left"
    );
    for (p, b) in packs.iter().zip(saved) {
        std::fs::write(p, b).unwrap();
    }
    env.ok(&[&"archive", &"-o", &old, &spec]);
    extract(&old, &[], &env.path("x"));
    assert_eq!(std::fs::read(env.path("x/small")).unwrap(), b"small");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);

    // `restore` onto a device node or a fifo in its target replaces the node
    // with the file; it never writes into the device, never waits on the fifo.
    let target = env.path("restore-into");
    std::fs::create_dir_all(&target).unwrap();
    sh(&format!("mknod {}/big c 1 7", target.display()));
    sh(&format!("mkfifo {}/small", target.display()));
    let mut child = env
        .cmd(&[&"restore", &"-to", &target, &spec])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("restore waited on the fifo in its target");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(target.join("small")).unwrap(), b"small");
    assert_eq!(
        std::fs::read(target.join("big")).unwrap(),
        noise(3, 3 << 20)
    );
}
