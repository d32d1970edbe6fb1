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
